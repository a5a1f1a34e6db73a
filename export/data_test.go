package export

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

var canonSeeds = []string{
	`{"b":1,"a":[1,2,{"d":null,"c":true}],"é":"x"}`,
	` { "z" : "a\u0041\n\t\"\\<>&\u2028" , "y":-0.5e+10, "x":{}, "w":[] } `,
	`"\ud83d\ude00 plain"`,
	`[1e5,0,-0,123456789012345678901234567890]`,
	`{"\u00e9":1,"e":2}`,
	`null`, `true`, `false`, `12`, `"\b\f\u0001\u007f"`,
}

func TestCanon_MatchesCanonicalJSON(t *testing.T) {
	dc := newDataCanon()
	for _, s := range canonSeeds {
		want, err := ica.CanonicalJSON([]byte(s))
		require.NoError(t, err, s)
		got, _, err := dc.canon([]byte(s))
		require.NoError(t, err, s)
		require.Equal(t, string(want), string(got), s)
	}
	for _, bad := range []string{`{`, `{"a"}`, `[1,]`, `01`, `1.`, `"x`, `{"a":1}x`, `tru`, "\"a\x01\"",
		`{"a":1,"a":2}`, "\"bad \xff utf8\"", `{"e":2,"\u0065":3}`} {
		_, _, err := dc.canon([]byte(bad))
		require.Error(t, err, bad)
		_, err = ica.CanonicalJSON([]byte(bad))
		require.Error(t, err, bad)
	}
	_, d, err := dc.canon([]byte(`{"status":"success","run_id":"r-1","pipeline_name":"payments","x":{"status":"nested"}}`))
	require.NoError(t, err)
	require.Equal(t, derived{RunID: "r-1", Pipeline: "payments", Status: "success"}, d)
}

// FuzzCanonical checks the byte-level canonicaliser against ica.CanonicalJSON.
func FuzzCanonical(f *testing.F) {
	for _, s := range canonSeeds {
		f.Add([]byte(s))
	}
	dc := newDataCanon()
	f.Fuzz(func(t *testing.T, b []byte) {
		got, _, err := dc.canon(b)
		if len(b) == 0 {
			return
		}
		if !json.Valid(b) {
			require.Error(t, err)
			return
		}
		want, werr := ica.CanonicalJSON(b)
		if werr != nil {
			// encoding/json refuses some valid documents (e.g. too deep).
			return
		}
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	})
}

func TestHasher_MatchesComputeHash(t *testing.T) {
	h := newHasher()
	c := sample(t, 4)
	odd := &ica.LedgerEntry{Seq: 99, Time: time.Date(2025, 1, 2, 3, 4, 5, 600, time.FixedZone("X", 3600)),
		Kind: "k<&>", Subject: "s\"\n\u2028", Actor: "é", Data: []byte(` {"b" : 1, "a":"x"} `), PrevHash: "p"}
	for _, e := range append(c.entries, odd, &ica.LedgerEntry{Seq: 1}) {
		want, err := e.ComputeHash()
		require.NoError(t, err)
		got, err := h.hash(e)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
}
