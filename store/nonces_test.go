package store_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
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
	target := storetest.New(t)
	clock := ica.NewFakeClock(t0)
	key := testKey(t)
	ctx := context.Background()
	s := target.MustOpen(store.Options{Clock: clock, Key: key})
	require.NoError(t, s.AddDialogNonce(ctx, "n1", "u", clock.Now().Add(time.Hour)))
	id := s.LedgerID()
	require.Len(t, id, 26)
	require.NoError(t, s.Close())

	s = target.MustOpen(store.Options{Clock: clock, Key: key})
	defer s.Close()
	require.NoError(t, s.TakeDialogNonce(ctx, "n1", "u"))
	require.Equal(t, id, s.LedgerID(), "the ledger id is kept")
}

func TestStore_LedgerID_Distinct(t *testing.T) {
	a, _ := MustOpen(t)
	b, _ := MustOpen(t)
	ida, idb := a.LedgerID(), b.LedgerID()
	require.NotEmpty(t, ida)
	require.NotEqual(t, ida, idb)

	// A backup carries the id.
	var buf bytes.Buffer
	_, err := a.WriteBackup(&buf)
	require.NoError(t, err)
	require.Contains(t, buf.String(), ida)
}

// TestStore_RunRequester: who Azure DevOps says a run is for is part of
// the run, recorded by its start (one transaction, in its run.started
// entry); a repeat of the start naming someone else is a conflict.
func TestStore_RunRequester(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	in := start("r1")
	in.RequestedForEmail, in.RequestedForID = "tech1@example.com", "6f1c9a1e-0b1d-4c53-9d2f-7d0c6a0c1b11"
	_, _, err := s.StartRun(ctx, in, "ado")
	require.NoError(t, err)
	got, err := s.RunRequester(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, ica.RunRequester{Email: "tech1@example.com", ID: "6f1c9a1e-0b1d-4c53-9d2f-7d0c6a0c1b11"}, got)
	e, err := s.Entry(1)
	require.NoError(t, err)
	require.Contains(t, string(e.Data), `"requested_for_email":"tech1@example.com"`, "the start's entry carries it")

	other := *in
	other.RequestedForEmail = "other@example.com"
	_, _, err = s.StartRun(ctx, &other, "ado")
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
	require.Contains(t, ica.ErrorMessage(err), "requested_for_email")
	_, err = s.RunRequester(ctx, "unknown")
	require.Equal(t, ica.ENOTFOUND, ica.ErrorCode(err))
}
