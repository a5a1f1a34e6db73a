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
	// ApprovalsCreated calls fn for every approval created in [from, to).
	ApprovalsCreated(ctx context.Context, from, to time.Time, fn func(a *ica.Approval) error) error
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
	// Run ids are the only per-run strings kept; the few pipeline and
	// status strings are interned.
	names := map[string]string{}
	intern := func(s string) string {
		if v, ok := names[s]; ok {
			return v
		}
		names[s] = s
		return s
	}
	if err := src.RunIndex(ctx, RunsFrom(now), RunsTo(now), func(start time.Time, runID, pipeline, status string) error {
		in.Runs = append(in.Runs, RunRow{Start: start, RunID: runID, Pipeline: intern(pipeline), Status: intern(status)})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("dashboard: runs: %w", err)
	}
	if err := src.ApprovalsCreated(ctx, SLAFrom(now), now.Add(time.Nanosecond), func(a *ica.Approval) error {
		r := NewApprovalRow(a)
		r.Pipeline, r.Target, r.Status = intern(r.Pipeline), intern(r.Target), intern(r.Status)
		r.TechnicalBy, r.BusinessBy = intern(r.TechnicalBy), intern(r.BusinessBy)
		in.Approvals = append(in.Approvals, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("dashboard: approvals: %w", err)
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

// DefaultCacheTTL is how long a loaded Input serves requests. The figures
// are about days and weeks, so 30 s of staleness is invisible, and it bounds
// the index walks to one per 30 s however many people (or tools polling
// /api/v1/stats) look.
const DefaultCacheTTL = 30 * time.Second

// cache keeps the last Input for a TTL and lets one load run at a time:
// concurrent requests for a stale Input wait for the load in progress
// instead of starting their own.
type cache struct {
	src   Source
	clock ica.Clock
	ttl   time.Duration

	mu      sync.Mutex
	in      *Input
	at      time.Time
	loading chan struct{}
	err     error
}

func (c *cache) get(ctx context.Context) (*Input, error) {
	for {
		c.mu.Lock()
		now := c.clock.Now()
		if c.in != nil && c.ttl > 0 && now.Sub(c.at) < c.ttl && !now.Before(c.at) {
			in := c.in
			c.mu.Unlock()
			return in, nil
		}
		if c.loading == nil {
			done := make(chan struct{})
			c.loading = done
			c.mu.Unlock()
			in, err := Load(ctx, c.src, now)
			c.mu.Lock()
			c.loading, c.err = nil, err
			if err == nil {
				c.in, c.at = in, now
			}
			c.mu.Unlock()
			close(done)
			return in, err
		}
		wait := c.loading
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
