package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// TestStore_NonceBuckets_Pruned: expired records leave both their bucket and
// the expiry index, a bounded number per write.
func TestStore_NonceBuckets_Pruned(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	clock := ica.NewFakeClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	s, err := Open(filepath.Join(t.TempDir(), "ica.db"), Options{Clock: clock, Key: key})
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	for i := range 300 {
		require.NoError(t, s.UseTrigger(ctx, fmt.Sprintf("k%d", i), clock.Now().Add(time.Minute)))
	}
	require.NoError(t, s.AddDialogNonce(ctx, "d1", "u", clock.Now().Add(time.Minute)))
	count := func() (triggers, dialogs, idx int) {
		require.NoError(t, s.view(func(tx Tx) error {
			triggers = countKeys(tx.Bucket(bucketUsedTriggers))
			dialogs = countKeys(tx.Bucket(bucketDialogNonces))
			idx = countKeys(tx.Bucket(bucketNonceExpiry))
			return nil
		}))
		return
	}
	tr, dl, ix := count()
	require.Equal(t, []int{300, 1, 301}, []int{tr, dl, ix})
	clock.Advance(2 * time.Minute)
	require.NoError(t, s.UseTrigger(ctx, "fresh1", clock.Now().Add(time.Minute)))
	tr, dl, ix = count()
	require.Equal(t, 301-prunePerWrite+1, ix, "one write prunes at most prunePerWrite")
	require.NoError(t, s.UseTrigger(ctx, "fresh2", clock.Now().Add(time.Minute)))
	tr, dl, ix = count()
	require.Equal(t, []int{2, 0, 2}, []int{tr, dl, ix})
}
