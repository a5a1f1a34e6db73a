package cost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// cmMapSink is the store's contract in miniature: a map keyed by scope, day
// and resource type, where a repeat replaces the amount.
type cmMapSink struct {
	mu       sync.Mutex
	costs    map[string]DailyCost
	calls    map[string]int
	syncedAt []time.Time
	err      error
}

func newMapSink() *cmMapSink {
	return &cmMapSink{costs: map[string]DailyCost{}, calls: map[string]int{}}
}

func (m *cmMapSink) UpsertDailyCosts(_ context.Context, scope string, costs []DailyCost, syncedAt time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[scope]++
	m.syncedAt = append(m.syncedAt, syncedAt)
	if m.err != nil {
		return m.err
	}
	for _, c := range costs {
		if c.Scope != scope || !c.Date.Equal(cmDayOf(c.Date)) {
			return errors.New("bad entry")
		}
		m.costs[scope+"|"+c.Date.Format(time.DateOnly)+"|"+c.ResourceType] = c
	}
	return nil
}

func cmDayOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func (m *cmMapSink) Calls(scope string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[scope]
}

func (m *cmMapSink) Total(scope string) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum float64
	for k, c := range m.costs {
		if strings.HasPrefix(k, scope+"|") {
			sum += c.CostUSD
		}
	}
	return sum
}

func (m *cmMapSink) Get(scope, day, typ string) (DailyCost, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.costs[scope+"|"+day+"|"+typ]
	return c, ok
}

const cmSub2 = "subscriptions/11111111-1111-1111-1111-111111111111"

// cmPeriod reads the timePeriod of a recorded query body.
func cmPeriod(t *testing.T, body string) (from, to string) {
	t.Helper()
	var q queryRequest
	require.NoError(t, json.Unmarshal([]byte(body), &q))
	return q.TimePeriod.From, q.TimePeriod.To
}

func mustSyncer(t *testing.T, f *fakeCM, sink Sink, clock ica.Clock, log *slog.Logger, mod func(*Config)) *Syncer {
	t.Helper()
	cfg := Config{Endpoint: f.srv.URL, HTTPClient: f.srv.Client(), Scopes: []string{cmSub, "/" + cmSub2}}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg, &cmCred{}, clock)
	require.NoError(t, err)
	s, err := NewSyncer(c, sink, cfg, clock, log)
	require.NoError(t, err)
	return s
}

// cmTwoScopes answers each scope with its own costs, in the days around
// the month boundary that the default window covers.
func cmTwoScopes(_ int, c cmCall) cmReply {
	if c.Scope == cmSub2 {
		return cmReply{Body: cmAnswer("", []any{7.0, 20230302, "Container Registry", "USD"})}
	}
	return cmReply{Body: cmAnswer("",
		[]any{1.0, 20230226, "Storage", "USD"},
		[]any{2.0, 20230228, "Azure Kubernetes Service", "USD"},
		[]any{3.0, 20230301, "Azure Kubernetes Service", "USD"},
		[]any{0.5, 20230301, "Kubernetes", "USD"},
		[]any{4.0, 20230302, "Virtual Machines", "USD"},
	)}
}

func TestSyncer_SyncNow_OncePerScope(t *testing.T) {
	f := newFakeCM(t, cmTwoScopes)
	sink := newMapSink()
	clock := ica.NewFakeClock(cmT0) // 2023-03-02 10:00 UTC
	s := mustSyncer(t, f, sink, clock, nil, nil)

	require.NoError(t, s.SyncNow(context.Background()))
	require.Equal(t, 1, sink.Calls(cmSub))
	require.Equal(t, 1, sink.Calls(cmSub2))

	// Default window: three days before the month, through today.
	calls := f.Calls()
	require.Len(t, calls, 2)
	for _, c := range calls {
		from, to := cmPeriod(t, c.Body)
		require.Equal(t, "2023-02-26T00:00:00Z", from)
		require.Equal(t, "2023-03-02T23:59:59Z", to)
	}
	require.InDelta(t, 10.5, sink.Total(cmSub), 1e-9)
	require.InDelta(t, 7.0, sink.Total(cmSub2), 1e-9)
	c, ok := sink.Get(cmSub, "2023-03-01", "aks")
	require.True(t, ok)
	require.Equal(t, DailyCost{cmSub, cmDay(2023, 3, 1), "aks", "Azure Kubernetes Service; Kubernetes", 3.5, "USD"}, c)
	// Days without a type up to the last reported day are zeros, so a
	// later answer can only replace, never leave stale amounts behind.
	c, ok = sink.Get(cmSub, "2023-02-27", "blob")
	require.True(t, ok)
	require.Zero(t, c.CostUSD)
	_, ok = sink.Get(cmSub, "2023-03-03", "aks")
	require.False(t, ok)

	at, err := s.LastSync()
	require.NoError(t, err)
	require.Equal(t, cmT0, at)
	require.Equal(t, []time.Time{cmT0, cmT0}, sink.syncedAt)
}

func TestSyncer_SyncNow_Idempotent(t *testing.T) {
	f := newFakeCM(t, cmTwoScopes)
	once := newMapSink()
	twice := newMapSink()
	clock := ica.NewFakeClock(cmT0)

	require.NoError(t, mustSyncer(t, f, once, clock, nil, nil).SyncNow(context.Background()))
	s := mustSyncer(t, f, twice, clock, nil, nil)
	require.NoError(t, s.SyncNow(context.Background()))
	clock.Advance(6 * time.Hour)
	require.NoError(t, s.SyncNow(context.Background()))

	require.Equal(t, 2, twice.Calls(cmSub))
	for _, scope := range []string{cmSub, cmSub2} {
		require.Equal(t, once.Total(scope), twice.Total(scope), scope)
	}
	require.Equal(t, len(once.costs), len(twice.costs))
}

func TestSyncer_SyncNow_ReversedChargeIsZeroed(t *testing.T) {
	answers := []string{
		cmAnswer("", []any{5.0, 20230301, "Virtual Machines", "USD"}, []any{3.0, 20230302, "Storage", "USD"}),
		cmAnswer("", []any{3.0, 20230302, "Storage", "USD"}), // the VM charge was reversed
	}
	var n int
	var mu sync.Mutex
	f := newFakeCM(t, func(int, cmCall) cmReply {
		mu.Lock()
		defer mu.Unlock()
		a := answers[min(n, 1)]
		n++
		return cmReply{Body: a}
	})
	sink := newMapSink()
	s := mustSyncer(t, f, sink, ica.NewFakeClock(cmT0), nil, func(c *Config) { c.Scopes = []string{cmSub} })
	require.NoError(t, s.SyncNow(context.Background()))
	require.InDelta(t, 8.0, sink.Total(cmSub), 1e-9)
	require.NoError(t, s.SyncNow(context.Background()))
	require.InDelta(t, 3.0, sink.Total(cmSub), 1e-9)
}

func TestSyncer_SyncNow_Lookback(t *testing.T) {
	f := newFakeCM(t, cmTwoScopes)
	s := mustSyncer(t, f, newMapSink(), ica.NewFakeClock(cmT0), nil, func(c *Config) { c.Lookback = 7 })
	require.NoError(t, s.SyncNow(context.Background()))
	from, to := cmPeriod(t, f.Calls()[0].Body)
	require.Equal(t, "2023-02-23T00:00:00Z", from)
	require.Equal(t, "2023-03-02T23:59:59Z", to)
}

func TestSyncer_SyncNow_OneScopeFails(t *testing.T) {
	var mu sync.Mutex
	fail := true
	f := newFakeCM(t, func(n int, c cmCall) cmReply {
		mu.Lock()
		defer mu.Unlock()
		if c.Scope == cmSub && fail {
			return cmReply{Status: 403, Body: `{"error":{"code":"RBACAccessDenied","message":"The client does not have authorization to perform action."}}`}
		}
		return cmTwoScopes(n, c)
	})
	sink := newMapSink()
	var logs bytes.Buffer
	clock := ica.NewFakeClock(cmT0)
	s := mustSyncer(t, f, sink, clock, slog.New(slog.NewTextHandler(&logs, nil)), nil)

	err := s.SyncNow(context.Background())
	require.ErrorContains(t, err, "sync costs of "+cmSub)
	require.ErrorContains(t, err, "HTTP 403 RBACAccessDenied")
	require.Equal(t, 0, sink.Calls(cmSub))
	require.Equal(t, 1, sink.Calls(cmSub2), "the other scope is still synced")
	at, lastErr := s.LastSync()
	require.True(t, at.IsZero())
	require.Equal(t, err, lastErr)
	require.Contains(t, logs.String(), "RBACAccessDenied")
	require.NotContains(t, logs.String(), cmTestToken)

	mu.Lock()
	fail = false
	mu.Unlock()
	clock.Advance(time.Hour)
	require.NoError(t, s.SyncNow(context.Background()))
	at, lastErr = s.LastSync()
	require.NoError(t, lastErr)
	require.Equal(t, cmT0.Add(time.Hour), at)

	sink.err = errors.New("disk full")
	require.ErrorContains(t, s.SyncNow(context.Background()), "store costs of "+cmSub+": disk full")
}

func TestSyncer_SyncNow_NonUSDWarnsOnce(t *testing.T) {
	f := newFakeCM(t, func(int, cmCall) cmReply {
		return cmReply{Body: cmAnswer("", []any{100.0, 20230301, "Storage", "EUR"})}
	})
	sink := newMapSink()
	var logs bytes.Buffer
	s := mustSyncer(t, f, sink, ica.NewFakeClock(cmT0), slog.New(slog.NewTextHandler(&logs, nil)), nil)
	require.NoError(t, s.SyncNow(context.Background()))
	require.NoError(t, s.SyncNow(context.Background()))
	require.Equal(t, 1, strings.Count(logs.String(), "other than USD"), logs.String())
	c, ok := sink.Get(cmSub, "2023-03-01", "blob")
	require.True(t, ok)
	require.Equal(t, 100.0, c.CostUSD, "not converted")
	require.Equal(t, "EUR", c.Currency)
}

func TestSyncer_StartStop(t *testing.T) {
	f := newFakeCM(t, cmTwoScopes)
	sink := newMapSink()
	clock := ica.NewFakeClock(cmT0)
	s := mustSyncer(t, f, sink, clock, nil, func(c *Config) { c.Interval = 2 * time.Hour })

	s.Start(context.Background())
	s.Start(context.Background()) // no second loop
	require.Eventually(t, func() bool { return sink.Calls(cmSub2) == 1 && clock.Waiters() == 1 }, 5*time.Second, time.Millisecond)

	clock.Advance(2*time.Hour - time.Second)
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, 1, sink.Calls(cmSub), "synced before the interval")
	clock.Advance(time.Second)
	require.Eventually(t, func() bool { return sink.Calls(cmSub2) == 2 && clock.Waiters() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 2, sink.Calls(cmSub))

	s.Stop()
	clock.Advance(10 * time.Hour)
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, 2, sink.Calls(cmSub), "no sync after Stop")
	s.Stop() // idempotent
}

func TestSyncer_Start_RetriesSoonerAfterFailure(t *testing.T) {
	f := newFakeCM(t, func(int, cmCall) cmReply {
		return cmReply{Status: 400, Body: `{"error":{"code":"BadRequest","message":"no"}}`}
	})
	clock := ica.NewFakeClock(cmT0)
	s := mustSyncer(t, f, newMapSink(), clock, nil, func(c *Config) { c.Scopes = []string{cmSub} })
	ctx, cancel := context.WithCancel(context.Background())
	defer s.Stop()
	s.Start(ctx)
	require.Eventually(t, func() bool { return len(f.Calls()) == 1 && clock.Waiters() == 1 }, 5*time.Second, time.Millisecond)
	clock.Advance(30 * time.Minute)
	require.Eventually(t, func() bool { return len(f.Calls()) == 2 && clock.Waiters() == 1 }, 5*time.Second, time.Millisecond)
	cancel() // the parent context ends the loop too
	s.Stop()
}

func TestNewSyncer_Validates(t *testing.T) {
	f := newFakeCM(t, cmTwoScopes)
	c, _ := mustClient(t, f, nil, nil)
	_, err := NewSyncer(c, newMapSink(), Config{}, nil, nil)
	require.ErrorContains(t, err, "no scopes")
	_, err = NewSyncer(c, nil, Config{Scopes: []string{cmSub}}, nil, nil)
	require.Error(t, err)
	_, err = NewSyncer(c, newMapSink(), Config{Scopes: []string{"subscriptions/../x"}}, nil, nil)
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
}
