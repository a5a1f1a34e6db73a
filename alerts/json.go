package alerts

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// This file holds the lenient accessors Parse uses on a decoded JSON tree.
// Azure Monitor is inconsistent between alert kinds (numbers sent as strings,
// JSON sent inside strings, keys whose case differs between versions), so
// every accessor accepts the reasonable variants and names the JSON path of
// the field when it cannot.

type object = map[string]any

// decodeTree decodes body into a generic tree, keeping numbers as json.Number
// so nothing is rounded.
func decodeTree(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &ica.Error{Code: ica.EINVALID, Message: "body is not valid JSON: " + jsonProblem(err), Cause: err}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, ica.Errorf(ica.EINVALID, "body is not valid JSON: unexpected data after the top-level value")
	}
	return v, nil
}

// jsonProblem describes a decoding error without quoting the input back.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return syn.Error() + " at offset " + strconv.FormatInt(syn.Offset, 10)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return "cannot decode"
}

// lookup returns m[key], falling back to a case-insensitive match.
func lookup(m object, key string) (any, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func typeError(path, want string) error {
	return ica.FieldErrorf(ica.EINVALID, path, "%s must be %s", path, want)
}

// getObject returns the object at m[key]; nil when absent or null. An object
// sent as a JSON string is decoded.
func getObject(m object, path, key string) (object, error) {
	p := join(path, key)
	v, _ := lookup(m, key)
	switch t := v.(type) {
	case nil:
		return nil, nil
	case object:
		return t, nil
	case string:
		s := strings.TrimSpace(t)
		if s == "" {
			return nil, nil
		}
		if strings.HasPrefix(s, "{") {
			if inner, err := decodeTree([]byte(s)); err == nil {
				if o, ok := inner.(object); ok {
					return o, nil
				}
			}
		}
	}
	return nil, typeError(p, "an object")
}

// requireObject is getObject for objects that must be present.
func requireObject(m object, path, key string) (object, error) {
	o, err := getObject(m, path, key)
	if err == nil && o == nil {
		p := join(path, key)
		err = ica.FieldErrorf(ica.EINVALID, p, "%s is required", p)
	}
	return o, err
}

// scalarString converts a JSON scalar to text: strings as they are, numbers
// in their original spelling, booleans as true/false.
func scalarString(v any) (string, bool) {
	switch t := v.(type) {
	case nil:
		return "", true
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	case bool:
		return strconv.FormatBool(t), true
	}
	return "", false
}

// getString returns m[key] as trimmed text; "" when absent or null.
func getString(m object, path, key string) (string, error) {
	v, _ := lookup(m, key)
	s, ok := scalarString(v)
	if !ok {
		return "", typeError(join(path, key), "a string")
	}
	return strings.TrimSpace(s), nil
}

// requireString is getString for fields that must be present and non-empty.
func requireString(m object, path, key string) (string, error) {
	s, err := getString(m, path, key)
	if err == nil && s == "" {
		p := join(path, key)
		err = ica.FieldErrorf(ica.EINVALID, p, "%s is required", p)
	}
	return s, err
}

// getStrings returns a list of strings. Azure sends arrays, null, a single
// string, or an array encoded as a JSON string (sometimes with Python-style
// single quotes, as in targetResourceTypes); all are accepted. Empty entries
// are dropped.
func getStrings(m object, path, key string) ([]string, error) {
	p := join(path, key)
	v, _ := lookup(m, key)
	var items []any
	switch t := v.(type) {
	case nil:
		return nil, nil
	case []any:
		items = t
	case string:
		s := strings.TrimSpace(t)
		if s == "" {
			return nil, nil
		}
		if !strings.HasPrefix(s, "[") {
			return []string{s}, nil
		}
		inner, err := decodeTree([]byte(s))
		if err != nil {
			inner, err = decodeTree([]byte(strings.ReplaceAll(s, "'", `"`)))
		}
		arr, ok := inner.([]any)
		if err != nil || !ok {
			return nil, typeError(p, "a list of strings")
		}
		items = arr
	case json.Number, bool:
		s, _ := scalarString(t)
		return []string{s}, nil
	default:
		return nil, typeError(p, "a list of strings")
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, ok := scalarString(it)
		if !ok {
			return nil, typeError(p+"["+strconv.Itoa(i)+"]", "a string")
		}
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// timeLayouts are the time formats seen in Azure Monitor payloads: RFC 3339
// with 0 to 7 fractional digits, the same without a zone (UTC is meant),
// and the US-style "3/22/2019 1:36:31 PM" of older log alerts.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999-0700",
	"1/2/2006 3:04:05 PM",
	"01/02/2006 15:04:05",
	time.RFC1123,
	time.RFC1123Z,
}

func parseTime(s string) (time.Time, bool) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// getTime returns m[key] as a UTC time; zero when absent, null or "".
// Numbers are taken as Unix seconds (or milliseconds when too large).
func getTime(m object, path, key string) (time.Time, error) {
	p := join(path, key)
	v, _ := lookup(m, key)
	switch t := v.(type) {
	case nil:
		return time.Time{}, nil
	case string:
		s := strings.TrimSpace(t)
		if s == "" {
			return time.Time{}, nil
		}
		if tm, ok := parseTime(s); ok {
			return tm, nil
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return unixTime(n), nil
		}
	case json.Number:
		if n, err := t.Int64(); err == nil {
			return unixTime(n), nil
		}
	}
	return time.Time{}, ica.FieldErrorf(ica.EINVALID, p, "%s is not a time ICA understands (use RFC 3339)", p)
}

func unixTime(n int64) time.Time {
	if n > 1e11 || n < -1e11 {
		return time.UnixMilli(n).UTC()
	}
	return time.Unix(n, 0).UTC()
}

// requireTime is getTime for times that must be present.
func requireTime(m object, path, key string) (time.Time, error) {
	t, err := getTime(m, path, key)
	if err == nil && t.IsZero() {
		p := join(path, key)
		err = ica.FieldErrorf(ica.EINVALID, p, "%s is required", p)
	}
	return t, err
}
