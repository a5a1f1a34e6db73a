package ica_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func entry(seq uint64, prev string, data string) *ica.LedgerEntry {
	return &ica.LedgerEntry{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Kind: ica.KindRunEvent,
		Subject: "run-1", Actor: "bench", Data: json.RawMessage(data), PrevHash: prev}
}

// mustHash sets e.Hash and returns e.
func mustHash(tb testing.TB, e *ica.LedgerEntry) *ica.LedgerEntry {
	tb.Helper()
	h, err := e.ComputeHash()
	require.NoError(tb, err)
	e.Hash = h
	return e
}

// chain returns n correctly linked entries.
func chain(tb testing.TB, n int) []*ica.LedgerEntry {
	tb.Helper()
	prev := ica.GenesisHash
	var out []*ica.LedgerEntry
	for i := 1; i <= n; i++ {
		e := mustHash(tb, entry(uint64(i), prev, `{"i":`+strings.Repeat("1", i)+`}`))
		out = append(out, e)
		prev = e.Hash
	}
	return out
}

// TestLedgerEntry_ComputeHash_Golden pins the hash format: changing it
// would make every existing ledger and export fail to verify.
func TestLedgerEntry_ComputeHash_Golden(t *testing.T) {
	e := &ica.LedgerEntry{Seq: 1, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600)),
		Kind: "run.started", Subject: "r<1>", Actor: "a&b", Data: json.RawMessage(`{ "z": 1, "a": "<x>" }`), PrevHash: ica.GenesisHash}
	body := `{"actor":"a&b","data":{"a":"<x>","z":1},"kind":"run.started","seq":1,"subject":"r<1>","time":"2026-01-02T02:04:05.000000006Z"}`
	sum := sha256.Sum256([]byte(ica.GenesisHash + body))
	h, err := e.ComputeHash()
	require.NoError(t, err)
	require.Equal(t, hex.EncodeToString(sum[:]), h)
}

func TestLedgerEntry_ComputeHash_StableUnderDataEncoding(t *testing.T) {
	base := `{"a":1,"b":{"x":[1,2,3],"y":"z"},"c":null}`
	variants := []string{
		`{"c":null,"b":{"y":"z","x":[1,2,3]},"a":1}`,
		"{\n  \"b\": { \"y\" : \"z\", \"x\": [ 1, 2, 3 ] },\n\t\"a\": 1,\r\n \"c\": null }\n",
		`{"a":1,"b":{"x":[1,2,3],"y":"\u007a"},"c":null}`,
	}
	want, err := entry(1, ica.GenesisHash, base).ComputeHash()
	require.NoError(t, err)
	for _, v := range variants {
		got, err := entry(1, ica.GenesisHash, v).ComputeHash()
		require.NoError(t, err)
		require.Equal(t, want, got, "data %q", v)
	}
	// The same instant in another zone, or with a monotonic reading, hashes the same.
	e := entry(1, ica.GenesisHash, base)
	e.Time = e.Time.In(time.FixedZone("EST", -5*3600))
	got, err := e.ComputeHash()
	require.NoError(t, err)
	require.Equal(t, want, got)
	// Absent data and explicit null are the same.
	a, err := entry(1, ica.GenesisHash, "").ComputeHash()
	require.NoError(t, err)
	b, err := entry(1, ica.GenesisHash, "null").ComputeHash()
	require.NoError(t, err)
	require.Equal(t, a, b)
}

func TestLedgerEntry_ComputeHash_ChangesWithEveryField(t *testing.T) {
	base := entry(5, strings.Repeat("ab", 32), `{"k":"v","n":1}`)
	want, err := base.ComputeHash()
	require.NoError(t, err)
	edits := map[string]func(e *ica.LedgerEntry){
		"seq":       func(e *ica.LedgerEntry) { e.Seq++ },
		"time_1ns":  func(e *ica.LedgerEntry) { e.Time = e.Time.Add(time.Nanosecond) },
		"kind":      func(e *ica.LedgerEntry) { e.Kind = ica.KindRunFinished },
		"subject":   func(e *ica.LedgerEntry) { e.Subject = "run-2" },
		"actor":     func(e *ica.LedgerEntry) { e.Actor = "other" },
		"data":      func(e *ica.LedgerEntry) { e.Data = json.RawMessage(`{"k":"w","n":1}`) },
		"data_num":  func(e *ica.LedgerEntry) { e.Data = json.RawMessage(`{"k":"v","n":2}`) },
		"data_key":  func(e *ica.LedgerEntry) { e.Data = json.RawMessage(`{"K":"v","n":1}`) },
		"data_type": func(e *ica.LedgerEntry) { e.Data = json.RawMessage(`{"k":"v","n":"1"}`) },
		"prev_hash": func(e *ica.LedgerEntry) { e.PrevHash = strings.Repeat("ab", 31) + "ac" },
		// Hash itself is not an input of the hash.
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			e := *base
			edit(&e)
			got, err := e.ComputeHash()
			require.NoError(t, err)
			require.NotEqual(t, want, got)
		})
	}
	e := *base
	e.Hash = "anything"
	got, err := e.ComputeHash()
	require.NoError(t, err)
	require.Equal(t, want, got)

	// A field's content cannot slide into the next one: moving a character
	// from kind to subject changes the hash.
	x, y := *base, *base
	x.Kind, x.Subject = "ab", "c"
	y.Kind, y.Subject = "a", "bc"
	hx, _ := x.ComputeHash()
	hy, _ := y.ComputeHash()
	require.NotEqual(t, hx, hy)
}

func TestLedgerEntry_ComputeHash_BadData(t *testing.T) {
	_, err := entry(1, ica.GenesisHash, `{"a":`).ComputeHash()
	require.Error(t, err)
}

func TestLedgerEntry_Verify(t *testing.T) {
	es := chain(t, 4)
	var prev *ica.LedgerEntry
	for _, e := range es {
		require.NoError(t, e.Verify(prev))
		prev = e
	}

	t.Run("first_entry_must_be_seq_1", func(t *testing.T) {
		err := es[1].Verify(nil)
		require.ErrorContains(t, err, "entry seq 2: expected seq 1")
	})
	t.Run("first_entry_must_follow_genesis", func(t *testing.T) {
		e := mustHash(t, entry(1, strings.Repeat("1", 64), `{}`))
		require.ErrorContains(t, e.Verify(nil), "entry seq 1: prev_hash")
	})
	t.Run("missing", func(t *testing.T) {
		err := es[2].Verify(es[0])
		require.ErrorContains(t, err, "entry seq 3: expected seq 2")
		require.ErrorContains(t, err, "missing")
	})
	t.Run("out_of_order", func(t *testing.T) {
		err := es[1].Verify(es[2])
		require.ErrorContains(t, err, "entry seq 2: expected seq 4")
		require.ErrorContains(t, err, "out of order")
	})
	t.Run("repeated", func(t *testing.T) {
		require.ErrorContains(t, es[1].Verify(es[1]), "entry seq 2: expected seq 3")
	})
	t.Run("altered_data", func(t *testing.T) {
		e := *es[2]
		e.Data = json.RawMessage(`{"i":999}`)
		err := e.Verify(es[1])
		require.ErrorContains(t, err, "entry seq 3")
		require.ErrorContains(t, err, "altered")
	})
	for name, edit := range map[string]func(e *ica.LedgerEntry){
		"altered_actor": func(e *ica.LedgerEntry) { e.Actor = "mallory" },
		"altered_time":  func(e *ica.LedgerEntry) { e.Time = e.Time.Add(-time.Hour) },
		"altered_kind":  func(e *ica.LedgerEntry) { e.Kind = ica.KindRunFinished },
		"altered_hash":  func(e *ica.LedgerEntry) { e.Hash = strings.Repeat("0", 64) },
	} {
		t.Run(name, func(t *testing.T) {
			e := *es[2]
			edit(&e)
			require.ErrorContains(t, e.Verify(es[1]), "entry seq 3: hash does not match")
		})
	}
	t.Run("altered_and_rehashed_breaks_the_next_link", func(t *testing.T) {
		e := *es[2]
		e.Actor = "mallory"
		mustHash(t, &e)
		require.NoError(t, e.Verify(es[1]))
		require.ErrorContains(t, es[3].Verify(&e), "entry seq 4: prev_hash does not match the hash of entry 3")
	})
	t.Run("unparsable_data", func(t *testing.T) {
		e := *es[2]
		e.Data = json.RawMessage(`{`)
		require.ErrorContains(t, e.Verify(es[1]), "entry seq 3")
	})
}

// TestLedgerEntry_JSONRoundTrip checks that an entry read back from its
// stored JSON (as an export verifier does) still verifies.
func TestLedgerEntry_JSONRoundTrip(t *testing.T) {
	es := chain(t, 2)
	es[1].Data = json.RawMessage(`{"html":"<b>&</b>","big":12345678901234567890,"f":1e400,"u":"é"}`)
	mustHash(t, es[1])
	buf, err := json.Marshal(es[1])
	require.NoError(t, err)
	var back ica.LedgerEntry
	require.NoError(t, json.Unmarshal(buf, &back))
	require.NoError(t, back.Verify(es[0]))
}

func TestCanonicalJSON(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{` { "a" : [ 1 , 2 ] } `, `{"a":[1,2]}`},
		{`{"a":{"d":1,"c":2},"b":[{"y":1,"x":2}]}`, `{"a":{"c":2,"d":1},"b":[{"x":2,"y":1}]}`},
		// Numbers are kept digit for digit: no float64 round trip.
		{`12345678901234567890`, `12345678901234567890`},
		{`{"n":12345678901234567890}`, `{"n":12345678901234567890}`},
		{`1e400`, `1e400`},
		{`{"n":-1e-400}`, `{"n":-1e-400}`},
		{`0.1000000000000000000000001`, `0.1000000000000000000000001`},
		{`9007199254740993`, `9007199254740993`},
		// ...which also means equal numbers written differently stay different.
		{`1.0`, `1.0`},
		{`1E2`, `1E2`},
		{`-0`, `-0`},
		// No HTML escaping; escapes of plain characters are undone.
		{`"<a href='x'>&</a>"`, `"<a href='x'>&</a>"`},
		{`"\u00e9\u0041"`, `"éA"`},
		{`"\/"`, `"/"`},
		// Control characters and the JavaScript line separators stay escaped.
		{`"\n\t\u0001"`, `"\n\t\u0001"`},
		{`"\u2028"`, `"\u2028"`},
		{`{"":null,"a":true,"b":false}`, `{"":null,"a":true,"b":false}`},
		{`[]`, `[]`},
		{`{}`, `{}`},
		// Keys sort by their bytes (UTF-8), not by UTF-16 units.
		{`{"é":1,"z":2,"Z":3}`, `{"Z":3,"z":2,"é":1}`},
	}
	for _, c := range cases {
		got, err := ica.CanonicalJSON([]byte(c.in))
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, string(got), "input %s", c.in)
	}
	for _, bad := range []string{``, `{`, `{"a"}`, `[1,]`, `'x'`, `NaN`, `{"a":Infinity}`, `[1,2`} {
		_, err := ica.CanonicalJSON([]byte(bad))
		require.Error(t, err, "input %q", bad)
	}
}

// TestCanonicalJSON_KnownLossy records inputs that CanonicalJSON accepts but
// does not represent faithfully (see report): trailing data after the first
// value is dropped, a repeated key keeps only its last value, and invalid
// UTF-8 or lone surrogates become U+FFFD. Each means two different inputs
// hash the same.
func TestCanonicalJSON_KnownLossy(t *testing.T) {
	lossy := map[string]string{
		`{"a":1} trailing`: `{"a":1}`,
		`{"a":1}{"b":2}`:   `{"a":1}`,
		`{"a":1,"a":2}`:    `{"a":2}`,
		"\"\xff\"":         `"` + "\ufffd" + `"`,
		`01`:               `0`,
		`"\ud800"`:         `"` + "\ufffd" + `"`,
	}
	for in, out := range lossy {
		got, err := ica.CanonicalJSON([]byte(in))
		if err != nil {
			continue // fixed: refusing is the right answer
		}
		if string(got) == out {
			t.Logf("known lossy input %q -> %q", in, got)
		}
	}
	if got, err := ica.CanonicalJSON([]byte(`{"a":1} x`)); err == nil {
		t.Fatalf("CanonicalJSON ignores data after the first value (%q); see report", got)
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":[1,2,{"d":null,"c":"x"}]}`, `12345678901234567890`, `1e400`, `-0.0e-0`,
		`"\u2028<>&\ud800"`, "\"\xff\"", `{"a":1,"a":2}`, `[[[[[]]]]]`, `{"":{"":""}}`, `true`, ` null `,
		`{"a":1} x`, `"\u0000"`, `{"é":1,"e":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c1, err := ica.CanonicalJSON(in)
		if err != nil {
			return
		}
		if !json.Valid(c1) {
			t.Fatalf("canonical form of %q is not valid JSON: %q", in, c1)
		}
		c2, err := ica.CanonicalJSON(c1)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse again: %v", c1, in, err)
		}
		if !bytes.Equal(c1, c2) {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, c1, c2)
		}
		// A canonical form has no insignificant whitespace.
		var compact bytes.Buffer
		if err := json.Compact(&compact, c1); err != nil || !bytes.Equal(compact.Bytes(), c1) {
			t.Fatalf("canonical form %q is not compact", c1)
		}
		// Hashing an entry with this data must succeed and agree with the
		// hash of the same entry holding the canonical form.
		e1 := entry(1, ica.GenesisHash, string(in))
		e2 := entry(1, ica.GenesisHash, string(c1))
		h1, err1 := e1.ComputeHash()
		h2, err2 := e2.ComputeHash()
		if err1 != nil || err2 != nil || h1 != h2 {
			t.Fatalf("hash of %q (%s, %v) differs from hash of its canonical form (%s, %v)", in, h1, err1, h2, err2)
		}
	})
}

func TestCheckpoint_SignVerify(t *testing.T) {
	_, key, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	hash := strings.Repeat("cd", 32)
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.FixedZone("X", 7200))
	cp := ica.SignCheckpoint(key, 1000, hash, at)
	require.NoError(t, cp.Verify())
	require.Equal(t, uint64(1000), cp.Seq)
	require.Equal(t, hash, cp.Hash)
	require.Equal(t, time.UTC, cp.Time.Location())
	require.True(t, cp.Time.Equal(at))
	require.Equal(t, hex.EncodeToString(key.Public().(ed25519.PublicKey)), cp.PublicKey)
	require.Equal(t, "ica-checkpoint:v1:1000:"+hash, string(ica.CheckpointMessage(1000, hash)))

	// Round trip through JSON, as in an export.
	buf, err := json.Marshal(cp)
	require.NoError(t, err)
	var back ica.Checkpoint
	require.NoError(t, json.Unmarshal(buf, &back))
	require.NoError(t, back.Verify())

	_, other, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	flip := func(s string) string { // change the last hex digit
		b := []byte(s)
		if b[len(b)-1] == '0' {
			b[len(b)-1] = '1'
		} else {
			b[len(b)-1] = '0'
		}
		return string(b)
	}
	tampered := map[string]func(c *ica.Checkpoint){
		"seq":           func(c *ica.Checkpoint) { c.Seq++ },
		"hash":          func(c *ica.Checkpoint) { c.Hash = flip(c.Hash) },
		"signature":     func(c *ica.Checkpoint) { c.Signature = flip(c.Signature) },
		"other_key":     func(c *ica.Checkpoint) { c.PublicKey = hex.EncodeToString(other.Public().(ed25519.PublicKey)) },
		"re_signed":     func(c *ica.Checkpoint) { c.Signature = ica.SignCheckpoint(other, c.Seq, c.Hash, at).Signature },
		"bad_key_hex":   func(c *ica.Checkpoint) { c.PublicKey = "zz" + c.PublicKey[2:] },
		"short_key":     func(c *ica.Checkpoint) { c.PublicKey = c.PublicKey[:62] },
		"bad_sig_hex":   func(c *ica.Checkpoint) { c.Signature = "xyz" },
		"short_sig":     func(c *ica.Checkpoint) { c.Signature = c.Signature[:126] },
		"empty_sig":     func(c *ica.Checkpoint) { c.Signature = "" },
		"hash_case":     func(c *ica.Checkpoint) { c.Hash = strings.ToUpper(c.Hash) },
		"seq_to_zero":   func(c *ica.Checkpoint) { c.Seq = 0 },
		"hash_appended": func(c *ica.Checkpoint) { c.Hash += "00" },
	}
	for name, edit := range tampered {
		t.Run(name, func(t *testing.T) {
			c := cp
			edit(&c)
			err := c.Verify()
			require.Error(t, err)
			require.Contains(t, err.Error(), "checkpoint")
		})
	}
	// The time is informational: it is not signed.
	c := cp
	c.Time = c.Time.Add(time.Hour)
	require.NoError(t, c.Verify())
}

func TestKeyFingerprint(t *testing.T) {
	pub := make([]byte, ed25519.PublicKeySize)
	for i := range pub {
		pub[i] = byte(i)
	}
	h := hex.EncodeToString(pub)
	fp := ica.KeyFingerprint(h)
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{4}(:[0-9a-f]{4}){7}$`), fp)
	sum := sha256.Sum256(pub)
	require.Equal(t, hex.EncodeToString(sum[:16]), strings.ReplaceAll(fp, ":", ""))
	require.Equal(t, fp, ica.KeyFingerprint(h), "stable")
	require.Equal(t, fp, ica.KeyFingerprint(strings.ToUpper(h)), "hex case does not matter")
	pub[0] ^= 1
	require.NotEqual(t, fp, ica.KeyFingerprint(hex.EncodeToString(pub)))
	require.Equal(t, "invalid", ica.KeyFingerprint("not hex"))
	require.Equal(t, "invalid", ica.KeyFingerprint("abc"))
}
