package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
)

// A ledger written before the Merkle log (no tree in meta, no nodes) gets
// its tree at the next start, and it is the tree the entries make.
func TestStore_Merkle_BackfilledOnOpen(t *testing.T) {
	target := storetest.New(t)
	key := testKey(t)
	s := target.MustOpen(store.Options{Key: key, CheckpointEvery: 1000})
	ctx := context.Background()
	_, _, err := s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	for i := range 40 {
		_, _, err := s.AddEvent(ctx, "r1", &ica.EventInput{EventType: "e", EventData: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}, "ado")
		require.NoError(t, err)
	}
	want, err := s.Root(41)
	require.NoError(t, err)
	keys, err := s.Keys("merkle")
	require.NoError(t, err)
	require.Len(t, keys, 3, "nodes from level 4 up: [0,16), [16,32) and [0,32)")
	// What an older ICA left: no tree at all.
	require.NoError(t, s.Tamper(func(tx store.Tx) error {
		for _, k := range keys {
			if err := tx.Bucket([]byte("merkle")).Delete(k); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Delete([]byte("merkle"))
	}))
	require.NoError(t, s.Close())
	s = target.MustOpen(store.Options{Key: key, CheckpointEvery: 1000})
	defer s.Close()
	got, err := s.Root(41)
	require.NoError(t, err)
	require.Equal(t, want, got)
	rep, err := s.Check()
	require.NoError(t, err)
	require.Empty(t, rep.Problems)
	for seq := uint64(1); seq <= 41; seq++ {
		cp, err := s.Checkpoint()
		require.NoError(t, err)
		b, err := s.Proof(ctx, seq)
		require.NoError(t, err)
		require.Equal(t, cp.Seq, b.TreeSize)
		_, err = b.Verify(s.PublicKey())
		require.NoError(t, err)
	}
}
