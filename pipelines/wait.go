package pipelines

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Defaults for WaitOptions.
const (
	DefaultMinInterval = 5 * time.Second
	DefaultMaxInterval = 60 * time.Second
	// DefaultExpiryGrace is how long past an approval's expires_at a wait
	// without its own timeout keeps polling, so it sees the server's
	// "expired" rather than timing out a moment before it.
	DefaultExpiryGrace = 2 * time.Minute
	// ExpiryPollDelay is how long after an approval's expires_at a wait
	// polls, so it reports the expiry promptly whatever its interval.
	ExpiryPollDelay = time.Second
)

// ErrWaitTimeout is wrapped by the error WaitApproval returns when its own
// timeout ends the wait before the approval was decided.
var ErrWaitTimeout = errors.New("timed out waiting for the approval")

// WaitOptions tunes WaitApproval.
type WaitOptions struct {
	// MinInterval and MaxInterval bound the time between polls. The interval
	// starts at MinInterval, doubles while nothing changes, is jittered, and
	// falls back to MinInterval when the status changes.
	MinInterval, MaxInterval time.Duration
	// Timeout ends the wait with ErrWaitTimeout. Zero waits until the
	// approval's expires_at plus ExpiryGrace (or for ever when the server
	// sends no expires_at; ctx still ends it).
	Timeout     time.Duration
	ExpiryGrace time.Duration
	// Progress is called after every successful poll that does not end the
	// wait, with the time until the next poll.
	Progress func(a *ica.Approval, next time.Duration)
	// PollError is called when a poll failed transiently (after the client's
	// own retries); the wait goes on.
	PollError func(err error, next time.Duration)
	// Bind names the deployment about to be made: every poll checks that
	// the approval covers it, and reads what the gate says.
	Bind *Binding
	// Use opens the gate (POST …/use) once it can (needs Bind): the wait
	// ends only when ICA recorded the use.
	Use bool
	// Gate is called after a poll that found the approval decided but the
	// gate shut (a change window, the lock, a freeze …).
	Gate func(g *ApprovalGate, next time.Duration)
}

// DecisionError is the error for an approval that ended without permission
// to deploy: rejected (or voided) or expired. Its message says who and why.
type DecisionError struct {
	Approval *ica.Approval
}

// Error implements error.
func (e *DecisionError) Error() string { return DescribeOutcome(e.Approval) }

// DescribeOutcome says in one line what happened to an approval, naming who
// decided and why: "Approval A-12 was rejected by biz1: budget exhausted".
func DescribeOutcome(a *ica.Approval) string {
	switch a.Status {
	case ica.ApprovalRejected:
		s := "Approval " + a.ID + " was rejected"
		if d := a.Rejection; d != nil {
			if d.Username != "" {
				s += " by " + d.Username
			}
			if d.Via != "" && d.Via != "mattermost" {
				s += " (via " + d.Via + ")"
			}
			if d.Comment != "" {
				s += ": " + d.Comment
			}
		}
		return s
	case ica.ApprovalExpired:
		at := a.ExpiresAt
		if at.IsZero() && a.ExpiredAt != nil {
			at = *a.ExpiredAt
		}
		s := "Approval " + a.ID + " expired at " + at.UTC().Format(time.RFC3339)
		if a.Technical != nil && a.Technical.Username != "" {
			return s + " after the technical approval by " + a.Technical.Username + ", without a business approval"
		}
		return s + " without a technical approval"
	case ica.ApprovalApproved:
		s := "Approval " + a.ID + " was approved"
		if a.Technical != nil && a.Business != nil {
			s += " by " + a.Technical.Username + " (technical) and " + a.Business.Username + " (business)"
		}
		return s
	case ica.ApprovalBypassed:
		s := "Approval " + a.ID + " was bypassed (break-glass)"
		if d := a.Bypass; d != nil {
			if d.Username != "" {
				s += " by " + d.Username
			}
			if d.Comment != "" {
				s += ": " + d.Comment
			}
		}
		return s
	case ica.ApprovalSuperseded:
		s := "Approval " + a.ID + " was superseded"
		if a.SupersededBy != "" {
			s += " by run " + a.SupersededBy + ", a newer run of " + a.PipelineName
		}
		return s
	case ica.ApprovalTechnical:
		s := "Approval " + a.ID + " has its technical approval"
		if a.Technical != nil && a.Technical.Username != "" {
			s += " by " + a.Technical.Username
		}
		return s + "; waiting for the business approval"
	}
	return "Approval " + a.ID + " is " + a.Status + "; waiting for the technical approval"
}

// WaitApproval polls an approval until it is decided. It returns the
// approval and nil when it is approved or bypassed, the approval and a
// *DecisionError when it is rejected or expired, and ErrWaitTimeout (wrapped)
// when opts.Timeout passes first. Transient poll failures do not end the
// wait; other errors (unknown approval, bad token) do.
func (c *Client) WaitApproval(ctx context.Context, id string, opts WaitOptions) (*ica.Approval, error) {
	if opts.MinInterval <= 0 {
		opts.MinInterval = DefaultMinInterval
	}
	if opts.MaxInterval <= 0 {
		opts.MaxInterval = DefaultMaxInterval
	}
	if opts.MaxInterval < opts.MinInterval {
		opts.MaxInterval = opts.MinInterval
	}
	if opts.ExpiryGrace <= 0 {
		opts.ExpiryGrace = DefaultExpiryGrace
	}
	start := c.clock.Now()
	var deadline time.Time
	if opts.Timeout > 0 {
		deadline = start.Add(opts.Timeout)
	}
	interval := opts.MinInterval
	var last *ica.Approval
	var lastWaiting string
	for {
		var a *ica.Approval
		var g *ApprovalGate
		var err error
		if opts.Bind != nil {
			if g, err = c.ApprovalGate(ctx, id, *opts.Bind); err == nil {
				a = &g.Approval
			}
		} else {
			a, err = c.GetApproval(ctx, id)
		}
		if err != nil && !IsTransient(err) {
			if ctx.Err() != nil {
				return last, fmt.Errorf("waiting for approval %s: %w", id, ctx.Err())
			}
			return last, err
		}
		if err == nil {
			if last != nil && (a.Status != last.Status || a.Version != last.Version) {
				interval = opts.MinInterval
			}
			last = a
			switch a.Status {
			case ica.ApprovalApproved, ica.ApprovalBypassed:
				if g == nil || g.CanDeploy == nil {
					return a, nil // a server without the deployment gate
				}
				if g.Unusable() {
					return a, &UnusableError{Gate: g}
				}
				if g.Open() {
					if !opts.Use {
						return a, nil
					}
					u, uerr := c.UseApproval(ctx, id, *opts.Bind)
					if uerr == nil {
						return &u.Approval, nil
					}
					ug := GateOf(uerr)
					switch {
					case ug != nil && ug.Unusable():
						return a, &UnusableError{Gate: ug}
					case ug != nil && ug.Covers != nil && !*ug.Covers:
						return a, uerr
					case ug != nil:
						g = ug // lost a race for the lock: wait on
					case !IsTransient(uerr):
						return a, uerr
					}
				}
				if w := strings.Join(g.WaitingFor, ","); w != lastWaiting {
					lastWaiting, interval = w, opts.MinInterval
				}
				if opts.Timeout <= 0 {
					deadline = time.Time{}
					if g.UsableUntil != nil {
						deadline = g.UsableUntil.Add(opts.ExpiryGrace)
					}
				}
			case ica.ApprovalRejected, ica.ApprovalExpired, ica.ApprovalSuperseded:
				return a, &DecisionError{Approval: a}
			default:
				if opts.Timeout <= 0 && !a.ExpiresAt.IsZero() {
					deadline = a.ExpiresAt.Add(opts.ExpiryGrace)
				}
			}
		}
		now := c.clock.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			status := "undecided"
			if last != nil {
				status = last.Status
			}
			return last, fmt.Errorf("approval %s is still %s after waiting %s: %w",
				id, status, now.Sub(start).Round(time.Second), ErrWaitTimeout)
		}
		next := c.jitterInterval(interval, opts)
		if err == nil && !a.ExpiresAt.IsZero() {
			// The server expires the approval at expires_at: poll just
			// after it rather than up to a whole interval later.
			if untilExpiry := a.ExpiresAt.Sub(now) + ExpiryPollDelay; untilExpiry > 0 && untilExpiry < next {
				next = untilExpiry
			}
		}
		if g != nil && g.OpensAt != nil && g.OpensAt.After(now) && g.OpensAt.Sub(now) < next {
			next = g.OpensAt.Sub(now) + time.Second // look again as the gate opens
		}
		if !deadline.IsZero() {
			next = min(next, deadline.Sub(now))
		}
		switch {
		case err != nil:
			if opts.PollError != nil {
				opts.PollError(err, next)
			}
		case g != nil && (a.Status == ica.ApprovalApproved || a.Status == ica.ApprovalBypassed):
			if opts.Gate != nil {
				opts.Gate(g, next)
			}
		case opts.Progress != nil:
			opts.Progress(a, next)
		}
		if err := sleep(ctx, c.clock, next); err != nil {
			return last, fmt.Errorf("waiting for approval %s: %w", id, err)
		}
		interval = min(interval*2, opts.MaxInterval)
	}
}

// jitterInterval spreads d over [0.75d, 1.25d], kept within the bounds, so
// many pipelines waiting on one ICA do not poll in lockstep.
func (c *Client) jitterInterval(d time.Duration, o WaitOptions) time.Duration {
	j := time.Duration(float64(d) * (0.75 + 0.5*c.rand()))
	return max(o.MinInterval, min(j, o.MaxInterval))
}

var _ error = (*DecisionError)(nil)
