package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// StatusOf maps an error code to its HTTP status. It is the one place that
// does so (docs/design.md "Errors").
func StatusOf(code string) int {
	switch code {
	case ica.EINVALID:
		return http.StatusBadRequest
	case ica.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case ica.EFORBIDDEN:
		return http.StatusForbidden
	case ica.ENOTFOUND:
		return http.StatusNotFound
	case ica.ECONFLICT:
		return http.StatusConflict
	case ica.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case ica.EPOLICY:
		return http.StatusUnprocessableEntity
	case ica.ERATELIMIT:
		return http.StatusTooManyRequests
	case ica.EUNAVAILABLE, ica.ENOTCONFIGURED:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// WriteError answers with the JSON error document. Internal errors are
// logged with their cause and answered without it.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := ica.ErrorCode(err)
	status := StatusOf(code)
	rid := RequestID(r.Context())
	if code == ica.EINTERNAL || code == ica.EUNAVAILABLE {
		log.Error("request failed", "request_id", rid, "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	if code == ica.EUNAVAILABLE && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: ica.ErrorMessage(err), Field: ica.ErrorField(err), RequestID: rid}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// MaxBodyBytes is the default request body limit.
const MaxBodyBytes = 1 << 20

// decodeJSON decodes exactly one JSON object into v, refusing unknown fields
// and trailing data, and turns every failure into an EINVALID naming the field.
// Before decoding, the raw bytes are checked for what encoding/json would
// silently rewrite to U+FFFD (lone surrogate escapes, invalid UTF-8): the
// ledger records exactly what was sent, or nothing.
func decodeJSON(r *http.Request, v any) error {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return decodeError(err)
		}
		return ica.Errorf(ica.EINVALID, "could not read the request body")
	}
	if err := ica.CheckJSONText(raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if dec.More() {
		return ica.Errorf(ica.EINVALID, "request body has data after the JSON object")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err == nil {
		return ica.Errorf(ica.EINVALID, "request body has data after the JSON object")
	} else if mb := (*http.MaxBytesError)(nil); errors.As(err, &mb) {
		return decodeError(err)
	}
	return nil
}

func decodeError(err error) error {
	var (
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		mb   *http.MaxBytesError
		tpar *time.ParseError
	)
	switch {
	case errors.As(err, &mb):
		return ica.Errorf(ica.ETOOLARGE, "request body is larger than %d bytes", mb.Limit)
	case errors.Is(err, io.EOF):
		return ica.Errorf(ica.EINVALID, "request body is empty; a JSON object is required")
	case errors.As(err, &syn):
		return ica.Errorf(ica.EINVALID, "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return ica.Errorf(ica.EINVALID, "request body must be a JSON object, not %s", typ.Value)
		}
		return ica.FieldErrorf(ica.EINVALID, field, "%s must be %s, not %s", field, kindName(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &tpar):
		return ica.Errorf(ica.EINVALID, "a time is not in RFC 3339 form (e.g. 2026-11-27T10:00:00Z)")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return ica.FieldErrorf(ica.EINVALID, name, "unknown field %q", name)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return ica.Errorf(ica.EINVALID, "malformed JSON: the body ends in the middle of a value")
	}
	return ica.Errorf(ica.EINVALID, "malformed JSON: %s", err.Error())
}

func kindName(k string) string {
	switch k {
	case "string":
		return "a string"
	case "float64", "int", "int64", "uint64", "ptr":
		return "a number"
	case "map", "struct":
		return "an object"
	case "slice":
		return "an array"
	case "bool":
		return "true or false"
	}
	return fmt.Sprintf("of type %s", k)
}
