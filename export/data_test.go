package export

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// TestCanon: an export's data column is ica.CanonicalJSON of the entry's
// data ("null" when it has none), its errors say the data is not valid
// JSON, and the readable columns come from the top level only.
func TestCanon(t *testing.T) {
	dc := newDataCanon()
	for _, s := range []string{`{"b":1,"a":[1,2,{"d":null,"c":true}],"é":"x"}`, ` {"z" : "<&>\u2028"} `, `12`} {
		want, err := ica.CanonicalJSON([]byte(s))
		require.NoError(t, err, s)
		got, _, err := dc.canon([]byte(s))
		require.NoError(t, err, s)
		require.Equal(t, string(want), string(got), s)
	}
	got, d, err := dc.canon(nil)
	require.NoError(t, err)
	require.Equal(t, "null", string(got))
	require.Equal(t, derived{}, d)
	for _, bad := range []string{`{`, `{"a":1,"a":2}`, "\"bad \xff utf8\""} {
		_, _, err := dc.canon([]byte(bad))
		require.ErrorIs(t, err, errBadJSON, bad)
	}
	_, d, err = dc.canon([]byte(`{"status":"success","run_id":"r-1","pipeline_name":"payments","x":{"status":"nested"}}`))
	require.NoError(t, err)
	require.Equal(t, derived{RunID: "r-1", Pipeline: "payments", Status: "success"}, d)
	_, d, err = dc.canon([]byte(`{"x":{"status":"nested","run_id":"r-2"}}`))
	require.NoError(t, err)
	require.Equal(t, derived{}, d, "nested fields are not the record's")
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
