package store

// The outbox. Messages are written in the transaction of the change that
// causes them, under outbox/<destination ‖ 0 ‖ id>, and delivered by the
// dispatcher (package outbox) of any replica: a replica claims the messages
// it is about to deliver with a lease (ClaimOutbox), written in a store
// transaction, so each message is in one replica's hands at a time, and a
// claim whose holder died is taken over when its lease ends. Order per
// OrderKey is kept across replicas: only the oldest undelivered message of
// a key can be claimed.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ica-governance/ica"
)

// outboxKeyTTL is how long the idempotency key of a delivered message is
// remembered, so a late repeat of the same cause is not delivered twice.
const outboxKeyTTL = 7 * 24 * time.Hour

// maxClaimScan bounds how many queued messages of one destination a claim
// looks at.
const maxClaimScan = 1000

func outboxKey(dest string, id uint64) []byte {
	k := make([]byte, 0, len(dest)+9)
	k = append(k, dest...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, id)
}

func outboxPrefix(dest string) []byte { return append([]byte(dest), 0) }

// enqueue adds messages to the outbox inside tx. A message whose Key was
// already enqueued (and is queued or recently delivered) is dropped.
func (s *Store) enqueue(tx Tx, st *txState, msgs []*ica.OutboxMessage) error {
	return s.enqueueAt(tx, st.now, st, msgs)
}

// enqueueAt is enqueue for callers without the operation's state (a
// checkpoint signed inside an append): st may be nil, and then the commit
// wakes this process's dispatcher itself.
func (s *Store) enqueueAt(tx Tx, now time.Time, st *txState, msgs []*ica.OutboxMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	ob, keys := tx.Bucket(bucketOutbox), tx.Bucket(bucketOutboxKeys)
	added := 0
	for _, m := range msgs {
		if m.Destination == "" || bytes.IndexByte([]byte(m.Destination), 0) >= 0 {
			return fmt.Errorf("outbox message %q has no valid destination", m.Kind)
		}
		if m.Key != "" && keys.Get([]byte(m.Key)) != nil {
			continue
		}
		id, err := ob.NextSequence()
		if err != nil {
			return err
		}
		c := *m
		c.ID, c.CreatedAt, c.NextAttempt, c.Attempts = id, now, now, 0
		c.ClaimedBy, c.ClaimedUntil = "", time.Time{}
		if err := putJSON(ob, outboxKey(c.Destination, id), &c); err != nil {
			return err
		}
		if c.Key != "" {
			// Value: the enqueue time, so old keys can be pruned.
			if err := keys.Put([]byte(c.Key), timeKey(now)); err != nil {
				return err
			}
		}
		added++
	}
	if added > 0 {
		if st != nil {
			st.req.enqueued = true
		} else if wake := s.opt.OnEnqueue; wake != nil {
			tx.OnCommit(wake)
		}
		tx.OnCommit(func() { s.outboxDepth.Add(int64(added)) })
	}
	return nil
}

// Enqueue adds messages to the outbox in a transaction of their own, for
// messages that are not caused by a state change (a DM, a test post).
func (s *Store) Enqueue(ctx context.Context, msgs ...*ica.OutboxMessage) error {
	return s.update(func(tx Tx, st *txState) error { return s.enqueue(tx, st, msgs) })
}

// PendingOutbox returns up to limit undelivered messages for a destination,
// oldest first, claimed or not (for inspection and tests).
func (s *Store) PendingOutbox(ctx context.Context, dest string, limit int) ([]*ica.OutboxMessage, error) {
	var out []*ica.OutboxMessage
	err := s.view(func(tx Tx) error {
		prefix := outboxPrefix(dest)
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
			var m ica.OutboxMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("outbox %s/%d is unreadable: %w", dest, binary.BigEndian.Uint64(k[len(prefix):]), err)
			}
			out = append(out, &m)
		}
		return nil
	})
	return out, err
}

// OutboxDestinations lists the destinations that have queued messages.
func (s *Store) OutboxDestinations(ctx context.Context) ([]string, error) {
	var out []string
	err := s.view(func(tx Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("outbox key %q has no destination", k)
			}
			out = append(out, string(k[:i]))
			// Past every key of this destination: dest ‖ 1.
			k, _ = c.Seek(append(bytes.Clone(k[:i]), 1))
		}
		return nil
	})
	return out, err
}

// ClaimOutbox claims, for owner, up to limit messages of a destination that
// are due now, in id order, for lease: messages not claimed by another
// owner whose lease still runs, and only the oldest undelivered message of
// each OrderKey. A message owner already holds is returned again with its
// lease renewed. It also returns when the next message not claimable now
// becomes due (zero: none waiting).
func (s *Store) ClaimOutbox(ctx context.Context, dest, owner string, lease time.Duration, limit int) (msgs []*ica.OutboxMessage, next time.Time, err error) {
	err = s.update(func(tx Tx, st *txState) error {
		msgs, next = nil, time.Time{}
		ob := tx.Bucket(bucketOutbox)
		prefix := outboxPrefix(dest)
		blocked := map[string]bool{}
		var claim []*ica.OutboxMessage
		scanned := 0
		c := ob.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(claim) < limit && scanned < maxClaimScan; k, v = c.Next() {
			scanned++
			var m ica.OutboxMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("outbox %s/%d is unreadable: %w", dest, binary.BigEndian.Uint64(k[len(prefix):]), err)
			}
			if m.OrderKey != "" && blocked[m.OrderKey] {
				continue
			}
			if m.OrderKey != "" {
				blocked[m.OrderKey] = true // later messages of this key wait for this one
			}
			held := m.ClaimedBy != "" && m.ClaimedBy != owner && st.now.Before(m.ClaimedUntil)
			switch {
			case held:
				if next.IsZero() || m.ClaimedUntil.Before(next) {
					next = m.ClaimedUntil // a dead holder's claim ends then
				}
			case m.NextAttempt.After(st.now):
				if next.IsZero() || m.NextAttempt.Before(next) {
					next = m.NextAttempt
				}
			default:
				claim = append(claim, &m)
			}
		}
		if scanned == maxClaimScan && len(claim) == 0 && next.IsZero() {
			next = st.now.Add(time.Second)
		}
		for _, m := range claim {
			m.ClaimedBy, m.ClaimedUntil = owner, st.now.Add(lease)
			if err := putJSON(ob, outboxKey(dest, m.ID), m); err != nil {
				return err
			}
		}
		msgs = claim
		return nil
	})
	return msgs, next, err
}

func (s *Store) outboxUpdate(dest string, id uint64, fn func(tx Tx, st *txState, b Bucket, m *ica.OutboxMessage) error) error {
	return s.update(func(tx Tx, st *txState) error {
		b := tx.Bucket(bucketOutbox)
		m, err := getJSON[ica.OutboxMessage](b, outboxKey(dest, id))
		if err != nil {
			return err
		}
		if m == nil {
			return ica.Errorf(ica.ENOTFOUND, "outbox message %s/%d not found", dest, id)
		}
		return fn(tx, st, b, m)
	})
}

// CompleteOutbox removes a delivered message.
func (s *Store) CompleteOutbox(ctx context.Context, dest string, id uint64) error {
	return s.outboxUpdate(dest, id, func(tx Tx, st *txState, b Bucket, m *ica.OutboxMessage) error {
		tx.OnCommit(func() { s.outboxDepth.Add(-1) })
		return b.Delete(outboxKey(dest, id))
	})
}

// RetryOutbox records a failed attempt and when to try again, and releases
// the message's claim.
func (s *Store) RetryOutbox(ctx context.Context, dest string, id uint64, next time.Time, lastErr string) error {
	return s.outboxUpdate(dest, id, func(tx Tx, st *txState, b Bucket, m *ica.OutboxMessage) error {
		m.Attempts++
		m.NextAttempt, m.LastError = next, lastErr
		m.ClaimedBy, m.ClaimedUntil = "", time.Time{}
		return putJSON(b, outboxKey(dest, id), m)
	})
}

// ReleaseOutbox gives a claimed message back without counting an attempt
// (a replica shutting down mid-delivery).
func (s *Store) ReleaseOutbox(ctx context.Context, dest string, id uint64) error {
	return s.outboxUpdate(dest, id, func(tx Tx, st *txState, b Bucket, m *ica.OutboxMessage) error {
		m.ClaimedBy, m.ClaimedUntil = "", time.Time{}
		return putJSON(b, outboxKey(dest, id), m)
	})
}

// FailOutbox moves an undeliverable message to the dead-letter bucket and
// records that in the ledger, so an operator can see what was never sent.
func (s *Store) FailOutbox(ctx context.Context, dest string, id uint64, reason string) error {
	return s.outboxUpdate(dest, id, func(tx Tx, st *txState, b Bucket, m *ica.OutboxMessage) error {
		m.Attempts++
		m.LastError = reason
		m.ClaimedBy, m.ClaimedUntil = "", time.Time{}
		m.Sealed = nil // a dead letter is never sent: its secret goes now
		if err := putJSON(tx.Bucket(bucketOutboxDead), u64(id), m); err != nil {
			return err
		}
		if _, err := s.appendLedger(tx, st.now, ica.KindOutboxUndeliverable, fmt.Sprintf("%s/%d", dest, id), "dispatcher",
			map[string]any{"destination": dest, "kind": m.Kind, "key": m.Key, "attempts": m.Attempts, "reason": reason}); err != nil {
			return err
		}
		tx.OnCommit(func() { s.outboxDepth.Add(-1) })
		return b.Delete(outboxKey(dest, id))
	})
}

// DeadLetters returns messages that could not be delivered.
func (s *Store) DeadLetters(ctx context.Context, limit int) ([]*ica.OutboxMessage, error) {
	var out []*ica.OutboxMessage
	err := s.view(func(tx Tx) error {
		c := tx.Bucket(bucketOutboxDead).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var m ica.OutboxMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			out = append(out, &m)
		}
		return nil
	})
	return out, err
}

// PruneOutboxKeys forgets idempotency keys older than the TTL.
func (s *Store) PruneOutboxKeys(ctx context.Context) (int, error) {
	n := 0
	err := s.update(func(tx Tx, st *txState) error {
		n = 0
		cut := uint64(st.now.Add(-outboxKeyTTL).UnixNano())
		b := tx.Bucket(bucketOutboxKeys)
		var old [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) == 8 && binary.BigEndian.Uint64(v) < cut {
				old = append(old, bytes.Clone(k))
			}
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}
