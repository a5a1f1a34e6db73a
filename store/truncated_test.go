package store_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
)

func TestCheckSize_RefusesTruncatedFiles(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	path := filepath.Join(t.TempDir(), "ica.db")
	st, err := store.Open(path, store.Options{Key: key})
	require.NoError(t, err)
	for i := range 200 {
		_, _, err := st.StartRun(context.Background(), &ica.RunStart{PipelineName: "p", RunID: "r" + string(rune('a'+i%26)) + string(rune('a'+i/26)),
			Branch: "main", Commit: "0123456789abcdef", TriggeredBy: "alice"}, "ado")
		require.NoError(t, err)
	}
	require.NoError(t, st.Close())
	require.NoError(t, store.CheckSize(path), "a whole file passes")

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	short := filepath.Join(t.TempDir(), "short.db")
	require.NoError(t, os.WriteFile(short, raw[:len(raw)/3], 0o600))
	require.ErrorContains(t, store.CheckSize(short), "is truncated")

	garbage := filepath.Join(t.TempDir(), "garbage.db")
	require.NoError(t, os.WriteFile(garbage, []byte("not a ledger"), 0o600))
	require.NoError(t, store.CheckSize(garbage), "no valid meta page: Open reports it")
	require.Error(t, store.CheckSize(filepath.Join(t.TempDir(), "missing.db")))
}
