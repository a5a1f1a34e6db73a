package ica

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// OutboxMessage is an outbound message (a Mattermost post, a PagerDuty event,
// a pipeline callback) written in the same transaction as the state change
// that causes it, and delivered later by the dispatcher.
type OutboxMessage struct {
	ID          uint64 `json:"id"`
	Destination string `json:"destination"` // mattermost, pagerduty, ado, ...
	Kind        string `json:"kind"`
	// Key makes enqueueing idempotent: a second message with the same key is
	// dropped while the first is still queued or was delivered.
	Key string `json:"key,omitempty"`
	// OrderKey serialises delivery: a message waits while an earlier message
	// with the same OrderKey is still undelivered.
	OrderKey string          `json:"order_key,omitempty"`
	Payload  json.RawMessage `json:"payload"`
	// Sealed is a secret the deliverer needs (an Azure DevOps job token),
	// encrypted with a key kept outside the ledger. It goes with the
	// message: erased when the message is delivered, never dead-lettered.
	Sealed      []byte    `json:"sealed,omitempty"`
	Attempts    int       `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
	// ClaimedBy and ClaimedUntil are the lease of the replica delivering it.
	ClaimedBy    string    `json:"claimed_by,omitempty"`
	ClaimedUntil time.Time `json:"claimed_until,omitzero"`
}

// Deliverer sends one outbox message. retry reports whether a failure is
// transient; a RetryAfterError asks for a particular delay.
type Deliverer interface {
	Deliver(ctx context.Context, msg *OutboxMessage) (retry bool, err error)
}

// DelivererFunc adapts a function to Deliverer.
type DelivererFunc func(ctx context.Context, msg *OutboxMessage) (bool, error)

// Deliver calls f.
func (f DelivererFunc) Deliver(ctx context.Context, msg *OutboxMessage) (bool, error) {
	return f(ctx, msg)
}

// RetryAfterError is a transient failure whose peer said when to come back.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter returns the delay asked for by err, if any.
func RetryAfter(err error) (time.Duration, bool) {
	var r *RetryAfterError
	if errors.As(err, &r) {
		return r.After, true
	}
	return 0, false
}

// Notifier turns state changes into outbound messages. The store calls it
// inside the transaction that makes the change, so the messages are durable
// exactly when the change is. prev is nil for a new approval.
type Notifier interface {
	ApprovalMessages(prev, next *Approval) []*OutboxMessage
}

// NopNotifier sends nothing (no Mattermost configured).
type NopNotifier struct{}

// ApprovalMessages returns nil.
func (NopNotifier) ApprovalMessages(prev, next *Approval) []*OutboxMessage { return nil }
