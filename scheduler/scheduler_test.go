package scheduler_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ica-governance/ica/store/storetest"

	"github.com/ica-governance/ica/internal/testclock"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/scheduler"
	"github.com/ica-governance/ica/store"
)

func TestScheduler_Tick_RemindsOnceThenExpires(t *testing.T) {
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key})
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	_, _, err = st.StartRun(ctx, &ica.RunStart{PipelineName: "p", RunID: "r1", Branch: "main", Commit: "0123456789abcdef", TriggeredBy: "alice"}, "ado")
	require.NoError(t, err)
	cost := 1.0
	a, _, err := st.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r1", DeploymentTarget: "production", EstimatedCost: &cost}, "ado")
	require.NoError(t, err)

	reminders := 0
	s := scheduler.New(st, clock, slog.New(slog.NewTextHandler(io.Discard, nil)), scheduler.Options{
		ReminderBefore: func(string) time.Duration { return time.Hour },
		Reminder: func(a *ica.Approval) []*ica.OutboxMessage {
			reminders++
			return []*ica.OutboxMessage{{Destination: "test", Kind: "reminder", Key: a.ID + ":reminder", Payload: json.RawMessage(`{}`)}}
		},
	})

	next := s.Tick(ctx)
	require.Equal(t, a.ExpiresAt.Add(-time.Hour), next, "the next thing due is the reminder")
	require.Zero(t, reminders)

	clock.Set(next)
	require.Equal(t, a.ExpiresAt, s.Tick(ctx), "after the reminder, the deadline is next")
	require.Equal(t, 1, reminders)
	s.Tick(ctx)
	require.Equal(t, 1, reminders, "one reminder only")
	got, err := st.Approval(ctx, a.ID)
	require.NoError(t, err)
	require.True(t, got.ReminderSent)
	require.Equal(t, ica.ApprovalPending, got.Status)

	clock.Set(a.ExpiresAt)
	require.True(t, s.Tick(ctx).IsZero(), "nothing left to do")
	got, err = st.Approval(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalExpired, got.Status)
	e, err := st.Entry(st.LedgerEntries())
	require.NoError(t, err)
	require.Equal(t, "approval.expired", e.Kind)
}

func TestScheduler_StartStop_WakesAtTheDeadline(t *testing.T) {
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key,
		ApprovalTimeout: func(string) time.Duration { return 30 * time.Second }})
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	_, _, err = st.StartRun(ctx, &ica.RunStart{PipelineName: "p", RunID: "r1", Branch: "main", Commit: "0123456789abcdef", TriggeredBy: "alice"}, "ado")
	require.NoError(t, err)
	cost := 1.0
	a, _, err := st.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r1", DeploymentTarget: "staging", EstimatedCost: &cost}, "ado")
	require.NoError(t, err)
	s := scheduler.New(st, clock, slog.New(slog.NewTextHandler(io.Discard, nil)), scheduler.Options{})
	s.Start(ctx)
	defer s.Stop()
	require.Eventually(t, func() bool { return clock.Waiters() > 0 }, 5*time.Second, time.Millisecond, "the scheduler sleeps")
	clock.Advance(30 * time.Second)
	require.Eventually(t, func() bool {
		got, _ := st.Approval(ctx, a.ID)
		return got.Status == ica.ApprovalExpired
	}, 5*time.Second, 5*time.Millisecond, "expired when the fake clock reaches the deadline, without sleeping")
}

// TestScheduler_Notify_WakesForANewDeadline: the scheduler started with
// nothing pending sleeps its longest nap; an approval created afterwards,
// which queued no message (no Mattermost), is expired at its own deadline
// because its creator notifies the scheduler.
func TestScheduler_Notify_WakesForANewDeadline(t *testing.T) {
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key,
		ApprovalTimeout: func(string) time.Duration { return 5 * time.Second }})
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	s := scheduler.New(st, clock, slog.New(slog.NewTextHandler(io.Discard, nil)), scheduler.Options{})
	s.Start(ctx)
	defer s.Stop()
	require.Eventually(t, func() bool { return clock.Waiters() > 0 }, 5*time.Second, time.Millisecond, "asleep, nothing pending")

	_, _, err = st.StartRun(ctx, &ica.RunStart{PipelineName: "p", RunID: "r1", Branch: "main", Commit: "0123456789abcdef", TriggeredBy: "alice"}, "ado")
	require.NoError(t, err)
	cost := 1.0
	a, _, err := st.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r1", DeploymentTarget: "staging", EstimatedCost: &cost}, "ado")
	require.NoError(t, err)
	s.Notify()
	// Asleep again, now until the new deadline (the nap it was woken from
	// stays registered with the fake clock).
	require.Eventually(t, func() bool { return clock.Waiters() >= 2 }, 5*time.Second, time.Millisecond)
	clock.Set(a.ExpiresAt)
	require.Eventually(t, func() bool {
		got, _ := st.Approval(ctx, a.ID)
		return got.Status == ica.ApprovalExpired
	}, 5*time.Second, 5*time.Millisecond, "expired at its deadline, well before the one-minute nap ends")
	require.Equal(t, a.ExpiresAt, clock.Now())
}
