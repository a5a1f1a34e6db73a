package outbox_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ica-governance/ica/store/storetest"

	"github.com/ica-governance/ica/internal/testclock"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/outbox"
	"github.com/ica-governance/ica/store"
)

type fakePeer struct {
	mu        sync.Mutex
	got       []string
	failFirst map[string]int // key -> transient failures before success
	permanent map[string]bool
	retryAt   time.Duration
}

func (p *fakePeer) Deliver(ctx context.Context, m *ica.OutboxMessage) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.permanent[m.Key] {
		return false, errors.New("400 bad event")
	}
	if p.failFirst[m.Key] > 0 {
		p.failFirst[m.Key]--
		if p.retryAt > 0 {
			return true, &ica.RetryAfterError{After: p.retryAt, Err: errors.New("429")}
		}
		return true, errors.New("503")
	}
	p.got = append(p.got, m.Key)
	return false, nil
}

func (p *fakePeer) delivered() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got...)
}

func setup(t *testing.T, peer ica.Deliverer) (*store.Store, *outbox.Dispatcher, *ica.FakeClock) {
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	var d *outbox.Dispatcher
	s, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key,
		OnEnqueue: func() { d.Notify() }})
	require.NoError(t, err)
	d = outbox.New(s, clock, slog.New(slog.NewTextHandler(io.Discard, nil)), outbox.Policy{MaxAttempts: 5}, nil)
	d.Register("peer", peer)
	d.Start(context.Background())
	t.Cleanup(func() {
		require.NoError(t, d.Stop(context.Background()))
		require.NoError(t, s.Close())
	})
	return s, d, clock
}

func msg(key, order string) *ica.OutboxMessage {
	return &ica.OutboxMessage{Destination: "peer", Kind: "test", Key: key, OrderKey: order, Payload: json.RawMessage(`{}`)}
}

func TestDispatcher_DeliversInOrderPerKeyWithRetries(t *testing.T) {
	peer := &fakePeer{failFirst: map[string]int{"a1": 2}, permanent: map[string]bool{}}
	s, _, clock := setup(t, peer)
	ctx := context.Background()
	require.NoError(t, s.Enqueue(ctx, msg("a1", "A"), msg("b1", "B"), msg("a2", "A"), msg("b2", "B")))
	// b1 and b2 go through at once; a2 waits behind a1.
	require.Eventually(t, func() bool { return len(peer.delivered()) == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"b1", "b2"}, peer.delivered())
	require.Eventually(t, func() bool {
		clock.Advance(time.Second)
		return len(peer.delivered()) == 4
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"b1", "b2", "a1", "a2"}, peer.delivered())
	require.Eventually(t, func() bool { return s.OutboxDepth() == 0 }, 5*time.Second, 5*time.Millisecond)
}

func TestDispatcher_HonoursRetryAfter(t *testing.T) {
	peer := &fakePeer{failFirst: map[string]int{"k": 1}, retryAt: 30 * time.Second}
	s, _, clock := setup(t, peer)
	require.NoError(t, s.Enqueue(context.Background(), msg("k", "")))
	require.Eventually(t, func() bool {
		m, _ := s.PendingOutbox(context.Background(), "peer", 1)
		return len(m) == 1 && m[0].Attempts == 1
	}, 5*time.Second, 5*time.Millisecond)
	m, _ := s.PendingOutbox(context.Background(), "peer", 1)
	require.WithinDuration(t, clock.Now().Add(30*time.Second), m[0].NextAttempt, time.Millisecond)
	clock.Advance(29 * time.Second)
	time.Sleep(20 * time.Millisecond)
	require.Empty(t, peer.delivered())
	clock.Advance(2 * time.Second)
	require.Eventually(t, func() bool { return len(peer.delivered()) == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestDispatcher_PermanentFailureIsDeadLettered(t *testing.T) {
	peer := &fakePeer{permanent: map[string]bool{"bad": true}}
	s, _, _ := setup(t, peer)
	ctx := context.Background()
	require.NoError(t, s.Enqueue(ctx, msg("bad", "X"), msg("good", "X")))
	require.Eventually(t, func() bool { return len(peer.delivered()) == 1 }, 5*time.Second, 5*time.Millisecond)
	dead, err := s.DeadLetters(ctx, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Equal(t, "bad", dead[0].Key)
	e, err := s.Entry(s.LedgerEntries())
	require.NoError(t, err)
	require.Equal(t, ica.KindOutboxUndeliverable, e.Kind, "an undeliverable message is in the ledger")
}

func TestDispatcher_GivesUpAfterMaxAttempts(t *testing.T) {
	peer := &fakePeer{failFirst: map[string]int{"k": 100}}
	s, _, clock := setup(t, peer)
	ctx := context.Background()
	require.NoError(t, s.Enqueue(ctx, msg("k", "")))
	require.Eventually(t, func() bool {
		clock.Advance(10 * time.Minute)
		d, _ := s.DeadLetters(ctx, 1)
		return len(d) == 1
	}, 5*time.Second, 5*time.Millisecond)
	d, _ := s.DeadLetters(ctx, 1)
	require.Equal(t, 5, d[0].Attempts)
}

func TestPolicy_Backoff(t *testing.T) {
	p := outbox.Policy{BaseDelay: time.Second, MaxDelay: time.Minute}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 20: time.Minute} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			got := p.Backoff(n)
			require.GreaterOrEqual(t, got, want*8/10)
			require.LessOrEqual(t, got, want*12/10)
		})
	}
}
