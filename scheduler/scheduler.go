// Package scheduler expires approvals at their deadline and sends one
// reminder before it. Deadlines live in the ledger, so a restart loses none:
// overdue approvals are expired as soon as the scheduler starts.
package scheduler

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ica-governance/ica"
)

// Store is what the scheduler needs from the ledger.
type Store interface {
	ExpireDue(ctx context.Context) ([]*ica.Approval, error)
	NextDeadline(ctx context.Context) (time.Time, error)
	PendingApprovals(ctx context.Context) ([]*ica.Approval, error)
	UpdateApproval(ctx context.Context, id, actor string, fn func(a *ica.Approval) (string, any, []*ica.OutboxMessage, error)) (*ica.Approval, error)
}

// Options configure reminders.
type Options struct {
	// ReminderBefore gives, per target, how long before expiry to remind (0: no reminder).
	ReminderBefore func(target string) time.Duration
	// Reminder returns the messages that remind the approvers (nil: none).
	Reminder func(a *ica.Approval) []*ica.OutboxMessage
	// MaxSleep bounds a sleep so a missed wake-up costs at most this (default 1m).
	MaxSleep time.Duration
	// Tasks are more scheduled work (the deployment policy's lock timeouts
	// and check answers): each runs every tick and says when it is due next
	// (zero: nothing waits).
	Tasks []func(ctx context.Context) (time.Time, error)
}

// Scheduler owns one goroutine.
type Scheduler struct {
	store Store
	clock ica.Clock
	log   *slog.Logger
	opt   Options
	wake  chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a scheduler; Start runs it.
func New(st Store, clock ica.Clock, log *slog.Logger, opt Options) *Scheduler {
	if opt.MaxSleep == 0 {
		opt.MaxSleep = time.Minute
	}
	return &Scheduler{store: st, clock: clock, log: log, opt: opt, wake: make(chan struct{}, 1)}
}

// Notify tells the scheduler that deadlines may have changed.
func (s *Scheduler) Notify() {
	if s == nil {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start runs the loop until Stop.
func (s *Scheduler) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			next := s.Tick(ctx)
			d := s.opt.MaxSleep
			if !next.IsZero() {
				d = min(d, max(next.Sub(s.clock.Now()), 0))
			}
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			case <-s.clock.After(d):
			}
		}
	}()
}

// Stop ends the loop and waits for it.
func (s *Scheduler) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

// Tick expires what is due, sends due reminders, and returns when the next
// thing is due (zero: nothing pending).
func (s *Scheduler) Tick(ctx context.Context) time.Time {
	// Expiring is a write (a commit and an fsync); reading the next
	// deadline is not. Write only when something is due.
	next, err := s.store.NextDeadline(ctx)
	if err != nil || (!next.IsZero() && !next.After(s.clock.Now())) {
		if exp, err := s.store.ExpireDue(ctx); err != nil {
			s.log.Error("expire approvals", "err", err)
		} else {
			for _, a := range exp {
				s.log.Info("approval expired", "approval_id", a.ID, "run_id", a.RunID, "target", a.Target)
			}
		}
		next, err = s.store.NextDeadline(ctx)
	}
	if err != nil {
		s.log.Error("next deadline", "err", err)
	}
	for _, task := range s.opt.Tasks {
		at, err := task(ctx)
		if err != nil {
			s.log.Error("scheduled task", "err", err)
		}
		if !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if s.opt.ReminderBefore == nil || s.opt.Reminder == nil {
		return next
	}
	pending, err := s.store.PendingApprovals(ctx)
	if err != nil {
		s.log.Error("pending approvals", "err", err)
		return next
	}
	now := s.clock.Now()
	for _, a := range pending {
		before := s.opt.ReminderBefore(a.Target)
		if a.ReminderSent || before <= 0 {
			continue
		}
		at := a.ExpiresAt.Add(-before)
		if at.After(now) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		_, err := s.store.UpdateApproval(ctx, a.ID, "scheduler", func(cur *ica.Approval) (string, any, []*ica.OutboxMessage, error) {
			if cur.ReminderSent || cur.Final() {
				return "", nil, nil, nil
			}
			cur.ReminderSent = true
			return ica.KindApprovalReminder, map[string]any{"approval_id": cur.ID, "step": cur.Step(), "expires_at": cur.ExpiresAt}, s.opt.Reminder(cur), nil
		})
		if err != nil {
			s.log.Error("send reminder", "approval_id", a.ID, "err", err)
		}
	}
	return next
}
