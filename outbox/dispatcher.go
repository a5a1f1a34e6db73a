// Package outbox delivers the messages the store queued, one worker per
// destination, with exponential backoff and jitter, keeping order per
// OrderKey. Delivery is at least once: a message is removed only after its
// Deliverer succeeded, so deliverers use the message Key to stay idempotent.
// Several replicas may deliver from one store: each claims the messages it
// is about to deliver with a lease kept in the store, so a message is in one
// replica's hands at a time and a dead replica's claims are taken over when
// their lease ends.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/ica-governance/ica"
)

// Queue is the part of the store the dispatcher needs.
type Queue interface {
	// ClaimOutbox claims up to limit due messages of dest for owner for
	// lease (only the oldest undelivered message of each OrderKey), and
	// says when the next message not claimable now is due.
	ClaimOutbox(ctx context.Context, dest, owner string, lease time.Duration, limit int) ([]*ica.OutboxMessage, time.Time, error)
	ReleaseOutbox(ctx context.Context, dest string, id uint64) error
	CompleteOutbox(ctx context.Context, dest string, id uint64) error
	RetryOutbox(ctx context.Context, dest string, id uint64, next time.Time, lastErr string) error
	FailOutbox(ctx context.Context, dest string, id uint64, reason string) error
}

// Policy tunes retries.
type Policy struct {
	BaseDelay   time.Duration // first retry delay (default 1s)
	MaxDelay    time.Duration // cap (default 5m)
	MaxAttempts int           // then the message is dead-lettered (default 300: about a day at the 5m cap)
	Timeout     time.Duration // per delivery attempt (default 15s)
	BatchSize   int           // messages claimed at a time (default 20)
	// Lease is how long a claim keeps a message from other replicas
	// (default 30s); it must exceed Timeout.
	Lease time.Duration
	// Owner names this replica in claims (default: host name and a random suffix).
	Owner string
}

func (p *Policy) defaults() {
	if p.BaseDelay == 0 {
		p.BaseDelay = time.Second
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = 5 * time.Minute
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 300
	}
	if p.Timeout == 0 {
		p.Timeout = 15 * time.Second
	}
	if p.BatchSize == 0 {
		p.BatchSize = 20
	}
	if p.Lease == 0 {
		p.Lease = 30 * time.Second
	}
	if p.Lease <= p.Timeout {
		p.Lease = 2 * p.Timeout
	}
	if p.Owner == "" {
		host, _ := os.Hostname()
		p.Owner = fmt.Sprintf("%s-%08x", host, rand.Uint32())
	}
}

// Backoff returns the delay before attempt n+1 (n >= 1 failed attempts):
// exponential from BaseDelay, capped at MaxDelay, with ±20% jitter so a
// recovering peer is not hit by every message at once.
func (p Policy) Backoff(n int) time.Duration {
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, p.MaxDelay)
	j := time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return j
}

// Observer receives delivery outcomes (metrics).
type Observer func(dest string, outcome string, d time.Duration)

// Dispatcher owns one worker goroutine per registered destination.
type Dispatcher struct {
	q       Queue
	clock   ica.Clock
	log     *slog.Logger
	policy  Policy
	observe Observer

	mu      sync.Mutex
	workers map[string]*worker

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type worker struct {
	dest string
	d    ica.Deliverer
	wake chan struct{}
}

// New returns a dispatcher; register deliverers, then Start.
func New(q Queue, clock ica.Clock, log *slog.Logger, p Policy, observe Observer) *Dispatcher {
	p.defaults()
	if observe == nil {
		observe = func(string, string, time.Duration) {}
	}
	return &Dispatcher{q: q, clock: clock, log: log, policy: p, observe: observe, workers: map[string]*worker{}}
}

// Register sets the deliverer of a destination. Messages for destinations
// with no deliverer stay queued (delivery disabled) until one is registered.
func (d *Dispatcher) Register(dest string, del ica.Deliverer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.workers[dest] = &worker{dest: dest, d: del, wake: make(chan struct{}, 1)}
}

// Start launches the workers.
func (d *Dispatcher) Start(ctx context.Context) {
	d.ctx, d.cancel = context.WithCancel(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.workers {
		d.wg.Add(1)
		go d.run(w)
	}
}

// Notify wakes every worker: something was enqueued.
func (d *Dispatcher) Notify() {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.workers {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Stop cancels delivery and waits for the workers, at most until ctx ends.
func (d *Dispatcher) Stop(ctx context.Context) error {
	if d.cancel == nil {
		return nil
	}
	d.cancel()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Dispatcher) run(w *worker) {
	defer d.wg.Done()
	for {
		next, err := d.pass(w)
		if err != nil && d.ctx.Err() == nil {
			d.log.Error("outbox pass failed", "destination", w.dest, "err", err)
			next = d.clock.Now().Add(d.policy.BaseDelay)
		}
		var timer <-chan time.Time
		if !next.IsZero() {
			timer = d.clock.After(next.Sub(d.clock.Now()))
		}
		select {
		case <-d.ctx.Done():
			return
		case <-w.wake:
		case <-timer:
		}
	}
}

// pass claims and delivers due messages until none is claimable, keeping
// order per OrderKey (the store hands out only the oldest undelivered
// message of a key). It returns when the next message not claimable now is
// due (zero: nothing waiting).
func (d *Dispatcher) pass(w *worker) (time.Time, error) {
	for {
		msgs, next, err := d.q.ClaimOutbox(d.ctx, w.dest, d.policy.Owner, d.policy.Lease, d.policy.BatchSize)
		if err != nil {
			return time.Time{}, err
		}
		if len(msgs) == 0 {
			return next, nil
		}
		leaseEnds := d.clock.Now().Add(d.policy.Lease)
		for i, m := range msgs {
			if d.ctx.Err() != nil || d.clock.Now().Add(d.policy.Timeout).After(leaseEnds) {
				// Shutting down, or the lease could end mid-attempt: give
				// the rest back (claimed again at once by the next pass).
				d.release(w, msgs[i:])
				break
			}
			d.deliver(w, m)
		}
		if d.ctx.Err() != nil {
			return time.Time{}, nil
		}
	}
}

func (d *Dispatcher) release(w *worker, msgs []*ica.OutboxMessage) {
	bg := context.WithoutCancel(d.ctx)
	for _, m := range msgs {
		if err := d.q.ReleaseOutbox(bg, w.dest, m.ID); err != nil {
			d.log.Warn("outbox: could not release a claim (it ends with its lease)", "destination", w.dest, "id", m.ID, "err", err)
		}
	}
}

// deliver makes one attempt and records its outcome; it reports success,
// or when the message is to be tried again.
func (d *Dispatcher) deliver(w *worker, m *ica.OutboxMessage) (bool, time.Time) {
	ctx, cancel := context.WithTimeout(d.ctx, d.policy.Timeout)
	start := time.Now()
	retry, err := w.d.Deliver(ctx, m)
	cancel()
	elapsed := time.Since(start)
	bg := context.WithoutCancel(d.ctx)
	if err == nil {
		d.observe(w.dest, "delivered", elapsed)
		if err := d.q.CompleteOutbox(bg, w.dest, m.ID); err != nil {
			d.log.Error("outbox: delivered but not marked", "destination", w.dest, "id", m.ID, "err", err)
		}
		return true, time.Time{}
	}
	if d.ctx.Err() != nil && errors.Is(err, context.Canceled) {
		d.release(w, []*ica.OutboxMessage{m}) // shutting down: the attempt does not count
		return false, time.Time{}
	}
	attempts := m.Attempts + 1
	if !retry || attempts >= d.policy.MaxAttempts {
		d.observe(w.dest, "failed", elapsed)
		d.log.Error("outbox: message undeliverable", "destination", w.dest, "id", m.ID, "kind", m.Kind, "attempts", attempts, "err", err)
		if err := d.q.FailOutbox(bg, w.dest, m.ID, err.Error()); err != nil {
			d.log.Error("outbox: could not dead-letter", "destination", w.dest, "id", m.ID, "err", err)
		}
		return !retry, time.Time{} // a permanent failure does not block later messages of its key
	}
	delay := d.policy.Backoff(attempts)
	if ra, ok := ica.RetryAfter(err); ok && ra > delay {
		delay = ra
	}
	d.observe(w.dest, "retry", elapsed)
	d.log.Warn("outbox: delivery failed, will retry", "destination", w.dest, "id", m.ID, "kind", m.Kind,
		"attempt", attempts, "retry_in", delay.String(), "err", err)
	at := d.clock.Now().Add(delay)
	if err := d.q.RetryOutbox(bg, w.dest, m.ID, at, err.Error()); err != nil {
		d.log.Error("outbox: could not record retry", "destination", w.dest, "id", m.ID, "err", err)
	}
	return false, at
}
