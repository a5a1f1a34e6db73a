package cost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ica-governance/ica"
)

// retryAfterFailure bounds the wait after a failed sync, so a transient
// failure does not leave the budget a whole Interval out of date.
const retryAfterFailure = 30 * time.Minute

// Syncer copies daily costs of the configured scopes from Cost Management
// into a Sink, now (SyncNow) and every Interval (Start). It owns one
// goroutine, started by Start and ended by Stop.
type Syncer struct {
	q     Querier
	sink  Sink
	cfg   Config
	clock ica.Clock
	log   *slog.Logger

	run    sync.Mutex // one sync at a time, whether scheduled or SyncNow
	warned bool       // non-USD warning logged (under run)

	mu      sync.Mutex
	lastOK  time.Time
	lastErr error
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewSyncer returns a Syncer of cfg.Scopes (cfg.Interval and cfg.Lookback
// apply; the rest is the client's). q is usually a *Client; log may be nil.
func NewSyncer(q Querier, sink Sink, cfg Config, clock ica.Clock, log *slog.Logger) (*Syncer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if q == nil || sink == nil {
		return nil, errors.New("cost syncer needs a client and a sink")
	}
	if len(cfg.Scopes) == 0 {
		return nil, ica.FieldErrorf(ica.EINVALID, "scopes", "cost sync has no scopes")
	}
	scopes := make([]string, len(cfg.Scopes))
	for i, s := range cfg.Scopes {
		scopes[i], _ = cleanScope(s) // validated above
	}
	cfg.Scopes = scopes
	if clock == nil {
		clock = ica.SystemClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Syncer{q: q, sink: sink, cfg: cfg, clock: clock, log: log}, nil
}

// Window returns the days a sync at now re-fetches, inclusive: today back
// to Lookback days before, or (Lookback 0) from three days before the
// month's start, so that charges Azure posts late for the previous month's
// last days are corrected too.
func (s *Syncer) Window(now time.Time) (from, to time.Time) {
	to = day(now)
	if s.cfg.Lookback > 0 {
		return to.AddDate(0, 0, -s.cfg.Lookback), to
	}
	return ica.MonthStart(to).AddDate(0, 0, -3), to
}

// Start runs the sync loop until ctx ends or Stop is called: one sync at
// once, then one every Interval (after a failure, within 30 minutes).
// Starting a started Syncer does nothing.
func (s *Syncer) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go s.loop(ctx)
}

// Stop ends the loop and waits for it, cancelling a sync in flight.
func (s *Syncer) Stop() {
	s.mu.Lock()
	cancel := s.cancel
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.wg.Wait()
}

func (s *Syncer) loop(ctx context.Context) {
	defer s.wg.Done()
	for {
		err := s.SyncNow(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := s.cfg.Interval
		if err != nil {
			wait = min(wait, retryAfterFailure)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(wait):
		}
	}
}

// SyncNow syncs every scope once: it queries the window's days and hands
// each scope's costs to the sink in one call. A failing scope does not stop
// the others; the error joins every scope's failure.
func (s *Syncer) SyncNow(ctx context.Context) error {
	s.run.Lock()
	defer s.run.Unlock()
	from, to := s.Window(s.clock.Now())
	var errs []error
	for _, scope := range s.cfg.Scopes {
		if err := s.syncScope(ctx, scope, from, to); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	err := errors.Join(errs...)
	s.mu.Lock()
	s.lastErr = err
	if err == nil {
		s.lastOK = s.clock.Now()
	}
	s.mu.Unlock()
	return err
}

func (s *Syncer) syncScope(ctx context.Context, scope string, from, to time.Time) error {
	start := s.clock.Now()
	costs, err := s.q.Query(ctx, scope, from, to)
	if err != nil {
		s.log.Error("cost sync: query failed", "scope", scope, "from", from.Format(time.DateOnly), "to", to.Format(time.DateOnly), "err", err)
		return fmt.Errorf("sync costs of %s: %w", scope, err)
	}
	costs = fillMissing(scope, costs, from)
	for _, c := range costs {
		if c.Currency != "" && c.Currency != "USD" && !s.warned {
			s.warned = true
			s.log.Warn("cost sync: Azure reports costs in a currency other than USD; ICA assumes USD and stores the amounts unconverted, so budget figures are in that currency",
				"scope", scope, "currency", c.Currency)
		}
	}
	syncedAt := s.clock.Now()
	if err := s.sink.UpsertDailyCosts(ctx, scope, costs, syncedAt); err != nil {
		s.log.Error("cost sync: storing costs failed", "scope", scope, "err", err)
		return fmt.Errorf("store costs of %s: %w", scope, err)
	}
	s.log.Info("cost sync", "scope", scope, "from", from.Format(time.DateOnly), "to", to.Format(time.DateOnly),
		"entries", len(costs), "took", syncedAt.Sub(start))
	return nil
}

// fillMissing adds a zero entry for every resource type missing on each
// day from `from` through the last day Azure reported. The sink replaces
// per (scope, day, type), so without these a charge that Azure later
// reclassifies or reverses to nothing would linger at its old amount. Days
// after the last reported one are left alone: Azure has not reported them.
func fillMissing(scope string, costs []DailyCost, from time.Time) []DailyCost {
	if len(costs) == 0 {
		return costs
	}
	last := costs[0].Date
	currency := ""
	type key struct {
		date time.Time
		typ  string
	}
	have := make(map[key]bool, len(costs))
	for _, c := range costs {
		if c.Date.After(last) {
			last = c.Date
		}
		if currency == "" {
			currency = c.Currency
		}
		have[key{c.Date, c.ResourceType}] = true
	}
	out := costs
	for d := day(from); !d.After(last); d = d.AddDate(0, 0, 1) {
		for _, typ := range []string{ica.ResourceAKS, ica.ResourceACR, ica.ResourceBlob, ica.ResourceOther} {
			if !have[key{d, typ}] {
				out = append(out, DailyCost{Scope: scope, Date: d, ResourceType: typ, Currency: currency})
			}
		}
	}
	sortCosts(out)
	return out
}

// LastSync returns when the last sync in which every scope succeeded
// finished (zero if none has), and the error of the most recent sync (nil if
// it succeeded or none has run). Health checks use it to report stale costs.
func (s *Syncer) LastSync() (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastOK, s.lastErr
}
