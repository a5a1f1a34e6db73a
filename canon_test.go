package ica

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// referenceCanonicalJSON is the canonical form as encoding/json makes it
// (decode with UseNumber, encode with sorted map keys, no HTML escaping),
// with repeated keys and invalid UTF-8 refused: what Canonicalizer must
// produce byte for byte.
func referenceCanonicalJSON(raw []byte) ([]byte, error) {
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("canonical json: invalid UTF-8")
	}
	if err := referenceUniqueKeys(raw); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("canonical json: data after the value")
	}
	return referenceMarshal(v)
}

// referenceUniqueKeys walks the tokens of raw and refuses an object with a
// repeated key.
func referenceUniqueKeys(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	type frame struct {
		obj    bool
		keys   map[string]bool
		expKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.expKey {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return fmt.Errorf("key %q appears twice in one object", k)
				}
				top.keys[k] = true
				top.expKey = false
				continue
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if top != nil && top.obj {
					top.expKey = true
				}
				stack = append(stack, &frame{obj: true, keys: map[string]bool{}, expKey: true})
			case '[':
				if top != nil && top.obj {
					top.expKey = true
				}
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
			}
		default:
			if top != nil && top.obj {
				top.expKey = true
			}
		}
	}
}

func referenceMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

var canonSeeds = []string{
	` { "z" : "a\u0041\n\t\"\\<>&\u2028" , "y":-0.5e+10, "x":{}, "w":[] } `,
	`"\ud83d\ude00 plain"`,
	`[1e5,0,-0,123456789012345678901234567890]`,
	`{"\u00e9":1,"e":2}`,
	`null`, `true`, `false`, `12`, `"\b\f\u0001\u007f"`,
	`{"b":{"d":[1,{"f":2,"e":3}],"c":null},"a":"\ud800 lone"}`,
}

func TestCanonicalizer_MatchesEncodingJSON(t *testing.T) {
	c := NewCanonicalizer()
	for _, s := range canonSeeds {
		want, err := referenceCanonicalJSON([]byte(s))
		require.NoError(t, err, s)
		got, err := c.Canonical([]byte(s), nil)
		require.NoError(t, err, s)
		require.Equal(t, string(want), string(got), s)
		got, err = CanonicalJSON([]byte(s))
		require.NoError(t, err, s)
		require.Equal(t, string(want), string(got), s)
	}
	for _, bad := range []string{``, ` `, `{`, `{"a"}`, `[1,]`, `01`, `1.`, `"x`, `{"a":1}x`, `tru`, "\"a\x01\"",
		`{"a":1,"a":2}`, "\"bad \xff utf8\"", `{"e":2,"\u0065":3}`, `{"a":{"b":1,"b":1}}`, "\"\\n\xff\"", `nul`, `-`, `1e`, `[1 2]`} {
		_, err := c.Canonical([]byte(bad), nil)
		require.Error(t, err, bad)
		require.ErrorContains(t, err, "canonical json: ", bad)
		_, err = referenceCanonicalJSON([]byte(bad))
		require.Error(t, err, bad)
	}
	var keys []string
	_, err := c.Canonical([]byte(`{"status":"success","run_id":"r-1","x":{"status":"nested"}}`), func(k, v []byte) {
		keys = append(keys, string(k)+"="+string(v))
	})
	require.NoError(t, err)
	require.Equal(t, []string{`run_id="r-1"`, `status="success"`, `x={"status":"nested"}`}, keys)
}

// FuzzCanonicalizer checks the one-pass canonicaliser against encoding/json.
func FuzzCanonicalizer(f *testing.F) {
	for _, s := range canonSeeds {
		f.Add([]byte(s))
	}
	c := NewCanonicalizer()
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := c.Canonical(b, nil)
		if !json.Valid(b) {
			require.Error(t, err)
			return
		}
		want, werr := referenceCanonicalJSON(b)
		if werr != nil {
			// Repeated keys and invalid UTF-8 are refused by both;
			// encoding/json also refuses some valid documents (too deep).
			if bytes.Contains([]byte(werr.Error()), []byte("appears twice")) || !utf8.Valid(b) {
				require.Error(t, err)
			}
			return
		}
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	})
}

// TestMarshalRecord_MatchesJSONMarshal: the store's fast encoding of an
// entry is json.Marshal's, byte for byte, whatever the strings hold.
func TestMarshalRecord_MatchesJSONMarshal(t *testing.T) {
	at := time.Date(2026, 12, 7, 18, 30, 0, 123456789, time.UTC)
	for _, e := range []LedgerEntry{
		{Seq: 1, Time: at, Kind: "run.started", Subject: "20261207.1", Actor: "token:ado", Data: []byte(`{"a":1}`), PrevHash: GenesisHash, Hash: "ab"},
		{Seq: 2, Time: at.Truncate(time.Second), Kind: "k", Subject: "s", Actor: "a"},
		{Seq: 3, Time: at, Kind: "k<&>", Subject: "s\"\n", Actor: "é", Data: []byte(`{"x":"<b>&"}`)},
		{Seq: 4, Time: at, Kind: "k", Subject: "s\u2028", Actor: "a\\b", Data: []byte(`"\u2028"`)},
		{Seq: 5, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600)), Kind: "k", Data: []byte(`[]`)},
	} {
		want, err := json.Marshal(&e)
		require.NoError(t, err)
		got, err := e.MarshalRecord()
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
}

func FuzzMarshalRecord(f *testing.F) {
	f.Add("run.event", "20261207.1", "token:ado", []byte(`{"b":[1,"<x>"],"a":null}`), int64(1700000000123456789))
	f.Add("k", "s\x01", "\xff", []byte(`"&"`), int64(0))
	c := NewCanonicalizer()
	f.Fuzz(func(t *testing.T, kind, subject, actor string, data []byte, ns int64) {
		canon, err := c.Canonical(data, nil)
		if err != nil {
			canon = nil
		}
		e := LedgerEntry{Seq: uint64(len(data)), Time: time.Unix(0, ns).UTC(), Kind: kind, Subject: subject, Actor: actor,
			Data: canon, PrevHash: GenesisHash, Hash: kind}
		want, werr := json.Marshal(&e)
		got, err := e.MarshalRecord()
		if werr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	})
}
