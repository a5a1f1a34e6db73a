package store_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
)

func TestStore_UseTrigger_Once(t *testing.T) {
	s, clock := MustOpen(t)
	ctx := context.Background()
	before := s.LedgerEntries()
	require.NoError(t, s.UseTrigger(ctx, "c1:u1:1", clock.Now().Add(time.Minute)))
	err := s.UseTrigger(ctx, "c1:u1:1", clock.Now().Add(time.Minute))
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err), "a replay is refused")
	require.NoError(t, s.UseTrigger(ctx, "c2:u1:1", clock.Now().Add(time.Minute)))
	require.Equal(t, before, s.LedgerEntries(), "operational state stays out of the ledger")

	// Racing uses of one trigger: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.UseTrigger(ctx, "race", clock.Now().Add(time.Minute)) == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, wins)
}

func TestStore_UseTrigger_Pruned(t *testing.T) {
	s, clock := MustOpen(t)
	ctx := context.Background()
	for i := range 600 {
		require.NoError(t, s.UseTrigger(ctx, fmt.Sprintf("k%d", i), clock.Now().Add(time.Minute)))
	}
	clock.Advance(2 * time.Minute)
	// Each write drops up to 256 expired records; after three the old ones are gone.
	for i := range 3 {
		require.NoError(t, s.UseTrigger(ctx, fmt.Sprintf("new%d", i), clock.Now().Add(time.Minute)))
	}
	// An expired record no longer refuses (it is stale anyway).
	require.NoError(t, s.UseTrigger(ctx, "k599", clock.Now().Add(time.Minute)))
	require.Error(t, s.UseTrigger(ctx, "new2", clock.Now().Add(time.Minute)))
}

func TestStore_DialogNonce(t *testing.T) {
	s, clock := MustOpen(t)
	ctx := context.Background()
	require.NoError(t, s.AddDialogNonce(ctx, "n1", "tech1-id", clock.Now().Add(15*time.Minute)))
	require.Error(t, s.AddDialogNonce(ctx, "n1", "tech1-id", clock.Now().Add(15*time.Minute)))

	open, err := s.DialogNonceOpen(ctx, "n1", "biz1-id")
	require.NoError(t, err)
	require.False(t, open, "bound to its user")
	open, err = s.DialogNonceOpen(ctx, "n1", "tech1-id")
	require.NoError(t, err)
	require.True(t, open)
	open, _ = s.DialogNonceOpen(ctx, "unknown", "tech1-id")
	require.False(t, open)

	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(s.TakeDialogNonce(ctx, "n1", "biz1-id")), "another user cannot take it")
	require.NoError(t, s.TakeDialogNonce(ctx, "n1", "tech1-id"))
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(s.TakeDialogNonce(ctx, "n1", "tech1-id")), "once only")

	require.NoError(t, s.AddDialogNonce(ctx, "n2", "tech1-id", clock.Now().Add(time.Minute)))
	clock.Advance(2 * time.Minute)
	open, _ = s.DialogNonceOpen(ctx, "n2", "tech1-id")
	require.False(t, open, "expired")
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(s.TakeDialogNonce(ctx, "n2", "tech1-id")))
}

// TestStore_DialogNonce_Reopen: a dialog opened before a restart can be
// submitted after it (any process sharing the store sees it).
func TestStore_DialogNonce_Reopen(t *testing.T) {
	dir := t.TempDir()
	clock := ica.NewFakeClock(t0)
	key := testKey(t)
	ctx := context.Background()
	s, err := store.Open(filepath.Join(dir, "ica.db"), store.Options{Clock: clock, Key: key})
	require.NoError(t, err)
	require.NoError(t, s.AddDialogNonce(ctx, "n1", "u", clock.Now().Add(time.Hour)))
	id, err := s.LedgerID()
	require.NoError(t, err)
	require.Len(t, id, 32)
	require.NoError(t, s.Close())

	s, err = store.Open(filepath.Join(dir, "ica.db"), store.Options{Clock: clock, Key: key})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.TakeDialogNonce(ctx, "n1", "u"))
	again, err := s.LedgerID()
	require.NoError(t, err)
	require.Equal(t, id, again, "the ledger id is kept")
}

func TestStore_LedgerID_Distinct(t *testing.T) {
	a, _ := MustOpen(t)
	b, _ := MustOpen(t)
	ida, err := a.LedgerID()
	require.NoError(t, err)
	idb, err := b.LedgerID()
	require.NoError(t, err)
	require.NotEqual(t, ida, idb)
	again, err := a.LedgerID()
	require.NoError(t, err)
	require.Equal(t, ida, again)

	// A backup carries the id.
	var buf bytes.Buffer
	_, err = a.WriteBackup(&buf)
	require.NoError(t, err)
	require.Contains(t, buf.String(), ida)
}

func TestStore_RunRequester(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	_, _, err := s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	r := ica.RunRequester{Email: "tech1@example.com", ID: "6f1c9a1e-0b1d-4c53-9d2f-7d0c6a0c1b11"}
	require.Equal(t, ica.ENOTFOUND, ica.ErrorCode(s.RecordRunRequester(ctx, "nope", r, "ado")))
	require.NoError(t, s.RecordRunRequester(ctx, "r1", r, "ado"))
	n := s.LedgerEntries()
	require.NoError(t, s.RecordRunRequester(ctx, "r1", r, "ado"), "a repeat is fine")
	require.Equal(t, n, s.LedgerEntries(), "and records nothing")
	err = s.RecordRunRequester(ctx, "r1", ica.RunRequester{Email: "other@example.com", ID: r.ID}, "ado")
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
	require.Contains(t, ica.ErrorMessage(err), "requested_for_email")
	got, err := s.RunRequester(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, r, got)
	e, err := s.Entry(n)
	require.NoError(t, err)
	require.Equal(t, store.KindRunRequester, e.Kind)
	got, err = s.RunRequester(ctx, "unknown")
	require.NoError(t, err)
	require.Equal(t, ica.RunRequester{}, got)
}
