package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ica-governance/ica"
)

// outboxKeyTTL is how long the idempotency key of a delivered message is
// remembered, so a late repeat of the same cause is not delivered twice.
const outboxKeyTTL = 7 * 24 * time.Hour

// enqueue adds messages to the outbox inside tx. A message whose Key was
// already enqueued (and is queued or recently delivered) is dropped.
func (s *Store) enqueue(tx *bolt.Tx, st *txState, msgs []*ica.OutboxMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	ob, keys := tx.Bucket(bucketOutbox), tx.Bucket(bucketOutboxKeys)
	added := 0
	for _, m := range msgs {
		if m.Destination == "" {
			return fmt.Errorf("outbox message %q has no destination", m.Kind)
		}
		if m.Key != "" && keys.Get([]byte(m.Key)) != nil {
			continue
		}
		b, err := ob.CreateBucketIfNotExists([]byte(m.Destination))
		if err != nil {
			return err
		}
		id, err := ob.NextSequence()
		if err != nil {
			return err
		}
		c := *m
		c.ID, c.CreatedAt, c.NextAttempt, c.Attempts = id, st.now, st.now, 0
		if err := putJSON(b, u64(id), &c); err != nil {
			return err
		}
		if c.Key != "" {
			// Value: the enqueue time, so old keys can be pruned.
			if err := keys.Put([]byte(c.Key), timeKey(st.now)); err != nil {
				return err
			}
		}
		added++
	}
	if added > 0 {
		st.req.enqueued = true
		tx.OnCommit(func() { s.outboxDepth.Add(int64(added)) })
	}
	return nil
}

// Enqueue adds messages to the outbox in a transaction of their own, for
// messages that are not caused by a state change (a DM, a test post).
func (s *Store) Enqueue(ctx context.Context, msgs ...*ica.OutboxMessage) error {
	return s.update(func(tx *bolt.Tx, st *txState) error { return s.enqueue(tx, st, msgs) })
}

// PendingOutbox returns up to limit undelivered messages for a destination,
// oldest first (due or not: the dispatcher keeps per-key order).
func (s *Store) PendingOutbox(ctx context.Context, dest string, limit int) ([]*ica.OutboxMessage, error) {
	var out []*ica.OutboxMessage
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox).Bucket([]byte(dest))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var m ica.OutboxMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("outbox %s/%d is unreadable: %w", dest, binary.BigEndian.Uint64(k), err)
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
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

func (s *Store) outboxUpdate(dest string, id uint64, fn func(tx *bolt.Tx, st *txState, b *bolt.Bucket, m *ica.OutboxMessage) error) error {
	return s.update(func(tx *bolt.Tx, st *txState) error {
		b := tx.Bucket(bucketOutbox).Bucket([]byte(dest))
		if b == nil {
			return ica.Errorf(ica.ENOTFOUND, "outbox message %s/%d not found", dest, id)
		}
		m, err := getJSON[ica.OutboxMessage](b, u64(id))
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
	return s.outboxUpdate(dest, id, func(tx *bolt.Tx, st *txState, b *bolt.Bucket, m *ica.OutboxMessage) error {
		tx.OnCommit(func() { s.outboxDepth.Add(-1) })
		return b.Delete(u64(id))
	})
}

// RetryOutbox records a failed attempt and when to try again.
func (s *Store) RetryOutbox(ctx context.Context, dest string, id uint64, next time.Time, lastErr string) error {
	return s.outboxUpdate(dest, id, func(tx *bolt.Tx, st *txState, b *bolt.Bucket, m *ica.OutboxMessage) error {
		m.Attempts++
		m.NextAttempt, m.LastError = next, lastErr
		return putJSON(b, u64(id), m)
	})
}

// FailOutbox moves an undeliverable message to the dead-letter bucket and
// records that in the ledger, so an operator can see what was never sent.
func (s *Store) FailOutbox(ctx context.Context, dest string, id uint64, reason string) error {
	return s.outboxUpdate(dest, id, func(tx *bolt.Tx, st *txState, b *bolt.Bucket, m *ica.OutboxMessage) error {
		m.Attempts++
		m.LastError = reason
		if err := putJSON(tx.Bucket(bucketOutboxDead), u64(id), m); err != nil {
			return err
		}
		if _, err := s.appendLedger(tx, st.now, ica.KindOutboxUndeliverable, fmt.Sprintf("%s/%d", dest, id), "dispatcher",
			map[string]any{"destination": dest, "kind": m.Kind, "key": m.Key, "attempts": m.Attempts, "reason": reason}); err != nil {
			return err
		}
		tx.OnCommit(func() { s.outboxDepth.Add(-1) })
		return b.Delete(u64(id))
	})
}

// DeadLetters returns messages that could not be delivered.
func (s *Store) DeadLetters(ctx context.Context, limit int) ([]*ica.OutboxMessage, error) {
	var out []*ica.OutboxMessage
	err := s.db.View(func(tx *bolt.Tx) error {
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
	err := s.update(func(tx *bolt.Tx, st *txState) error {
		n = 0
		cut := uint64(st.now.Add(-outboxKeyTTL).UnixNano())
		c := tx.Bucket(bucketOutboxKeys).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) == 8 && binary.BigEndian.Uint64(v) < cut {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}
