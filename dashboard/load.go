package dashboard

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ica-governance/ica"
)

// Source is what the dashboard reads (implemented over *store.Store by
// cmd/ica, which adds the configured budget). Every method is bounded by an
// index: nothing here walks the whole ledger.
type Source interface {
	// RunIndex calls fn for every run that started in [from, to), from the
	// run indexes' keys (no run record is decoded).
	RunIndex(ctx context.Context, from, to time.Time, fn func(start time.Time, runID, pipeline, status string) error) error
	// ApprovalSummaries calls fn for every approval created in [from, to)
	// (with the fields the SLA figures read).
	ApprovalSummaries(ctx context.Context, from, to time.Time, fn func(a *ica.Approval) error) error
	// PendingApprovals returns the approvals that are not final.
	PendingApprovals(ctx context.Context) ([]*ica.Approval, error)
	// Budget returns the month's budget figures with the configured budget.
	Budget(ctx context.Context) (*ica.Budget, error)
	// MonthCosts returns the cost entries of a month (YYYY-MM).
	MonthCosts(ctx context.Context, month string) ([]*ica.CostEntry, error)
	// OpenIncidents calls fn for every incident that is not resolved.
	OpenIncidents(fn func(inc *ica.Incident, overridden bool) error) error
	// LedgerTail returns the newest n ledger entries, newest first.
	LedgerTail(ctx context.Context, n int) ([]*ica.LedgerEntry, error)
	// Run returns one run (for the failed-runs table).
	Run(ctx context.Context, runID string) (*ica.Run, error)
}

// Load reads the Input of the figures at now through src.
func Load(ctx context.Context, src Source, now time.Time) (*Input, error) {
	now = now.UTC()
	in := &Input{Now: now}
	// The two window walks are independent: run them side by side.
	apprDone := make(chan error, 1)
	go func() {
		intern := interner()
		apprDone <- src.ApprovalSummaries(ctx, SLAFrom(now), now.Add(time.Nanosecond), func(a *ica.Approval) error {
			r := NewApprovalRow(a)
			r.Pipeline, r.Target, r.Status = intern(r.Pipeline), intern(r.Target), intern(r.Status)
			r.TechnicalBy, r.BusinessBy = intern(r.TechnicalBy), intern(r.BusinessBy)
			in.Approvals = append(in.Approvals, r)
			return nil
		})
	}()
	// Run ids are the only per-run strings kept; the few pipeline and
	// status strings are interned.
	intern := interner()
	runErr := src.RunIndex(ctx, RunsFrom(now), RunsTo(now), func(start time.Time, runID, pipeline, status string) error {
		in.Runs = append(in.Runs, RunRow{Start: start, RunID: runID, Pipeline: intern(pipeline), Status: intern(status)})
		return nil
	})
	if err := <-apprDone; err != nil {
		return nil, fmt.Errorf("dashboard: approvals: %w", err)
	}
	if runErr != nil {
		return nil, fmt.Errorf("dashboard: runs: %w", runErr)
	}
	pending, err := src.PendingApprovals(ctx)
	if err != nil {
		return nil, fmt.Errorf("dashboard: pending approvals: %w", err)
	}
	for _, a := range pending {
		in.Pending = append(in.Pending, NewApprovalRow(a))
	}
	if in.Budget, err = src.Budget(ctx); err != nil {
		return nil, fmt.Errorf("dashboard: budget: %w", err)
	}
	costs, err := src.MonthCosts(ctx, now.Format("2006-01"))
	if err != nil {
		return nil, fmt.Errorf("dashboard: costs: %w", err)
	}
	for _, c := range costs {
		in.Costs = append(in.Costs, CostRow{Day: c.BillingPeriod, CostUSD: c.CostUSD})
	}
	if err := src.OpenIncidents(func(inc *ica.Incident, _ bool) error {
		in.Incidents = append(in.Incidents, inc)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("dashboard: incidents: %w", err)
	}
	if in.Ledger, err = src.LedgerTail(ctx, LedgerRows); err != nil {
		return nil, fmt.Errorf("dashboard: ledger: %w", err)
	}
	return in, nil
}

// interner returns a function that shares equal strings.
func interner() func(string) string {
	names := map[string]string{}
	return func(s string) string {
		if v, ok := names[s]; ok {
			return v
		}
		names[s] = s
		return s
	}
}

// enrichFailed fills in the failed runs' details (a point read each, at most
// FailedRows). A run that cannot be read keeps what the index said.
func enrichFailed(ctx context.Context, src Source, s *Stats) {
	for i := range s.Runs.Failed {
		f := &s.Runs.Failed[i]
		if r, err := src.Run(ctx, f.RunID); err == nil && r != nil {
			f.Branch, f.URL, f.TriggeredBy = r.Branch, r.URL, r.TriggeredBy
		}
	}
}

// DefaultCacheTTL is how long a loaded Input serves requests as fresh. The
// figures are about days and weeks, so 30 s of staleness is invisible, and it
// bounds the index walks to one per 30 s however many people (or tools
// polling /api/v1/stats) look.
const DefaultCacheTTL = 30 * time.Second

// MaxStale is how old an Input may be and still answer a request while a
// fresh one loads in the background (stale-while-revalidate): requests then
// never wait for a load, except the first one and after a long idle time.
const MaxStale = 5 * time.Minute

// backgroundLoadTimeout bounds a load no request waits for.
const backgroundLoadTimeout = 30 * time.Second

// cache keeps the last Input. Within the TTL it is served as is; up to
// MaxStale it is served while one background load refreshes it; older (or
// none) a request loads it, and concurrent requests wait for that one load
// instead of starting their own.
type cache struct {
	src   Source
	clock ica.Clock
	ttl   time.Duration
	log   func(msg string, args ...any)

	mu      sync.Mutex
	in      *Input
	at      time.Time
	loading chan struct{}
	err     error // of the last load
	wg      sync.WaitGroup
}

func (c *cache) get(ctx context.Context) (*Input, error) {
	c.mu.Lock()
	now := c.clock.Now()
	age := now.Sub(c.at)
	if c.in != nil && c.ttl > 0 && age >= 0 && age < c.ttl {
		in := c.in
		c.mu.Unlock()
		return in, nil
	}
	if c.in != nil && c.ttl > 0 && age >= 0 && age < MaxStale {
		in := c.in
		if c.loading == nil {
			c.startLocked(context.Background(), now, true)
		}
		c.mu.Unlock()
		return in, nil
	}
	wait := c.loading
	if wait == nil {
		wait = c.startLocked(ctx, now, false)
	}
	c.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	return c.in, nil
}

// startLocked starts one load; c.mu is held. A background load has its own
// deadline; a foreground one runs on the request's context.
func (c *cache) startLocked(ctx context.Context, now time.Time, background bool) chan struct{} {
	done := make(chan struct{})
	c.loading = done
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		lctx, cancel := ctx, context.CancelFunc(func() {})
		if background {
			lctx, cancel = context.WithTimeout(ctx, backgroundLoadTimeout)
		}
		in, err := Load(lctx, c.src, now)
		cancel()
		c.mu.Lock()
		c.loading, c.err = nil, err
		if err == nil {
			c.in, c.at = in, now
		} else if c.log != nil {
			c.log("dashboard figures could not be loaded", "err", err, "background", background)
		}
		c.mu.Unlock()
		close(done)
	}()
	return done
}

// warm loads the figures once in the background (at start-up, so the first
// person to open the dashboard does not wait for the index walks).
func (c *cache) warm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loading == nil && c.in == nil {
		c.startLocked(context.Background(), c.clock.Now(), true)
	}
}
