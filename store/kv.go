package store

// The store seam. Every business operation of the store (start a run,
// decide an approval, record an alert, append to the chain, enqueue an
// outbox message) is written once against Tx: named keyspaces ("buckets") of
// ordered byte keys. An engine provides them: bbolt (engine_bolt.go), the
// embedded default, or PostgreSQL (engine_pg.go), shared by replicas. The
// engines differ only in storage, locks, leases and claims; the operations,
// the hash chain, the Merkle tree and the outbox are the same code on both.
//
// Writes are grouped: the writer (writer.go) runs every queued operation in
// one engine transaction, each in its own overlay (overlay.go) that is merged
// into the group only when the operation succeeds, so one failing request
// never re-runs or rolls back its neighbours.

import (
	"context"
	"io"
)

// Bucket is one keyspace of a transaction: byte keys in byte order, byte
// values. Keys are never empty. Values returned by Get and by cursors are
// valid only until the transaction ends (copy what is kept), and must not be
// modified.
type Bucket interface {
	// Get returns the value of key, nil when it is absent. A present key
	// may have an empty (non-nil) value.
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	Cursor() Cursor
	// ForEach calls fn for every key in order; an error stops it.
	ForEach(fn func(k, v []byte) error) error
	// NextSequence increments the bucket's sequence and returns it.
	NextSequence() (uint64, error)
	// Sequence returns the bucket's sequence without changing it.
	Sequence() uint64
	// SetSequence sets the bucket's sequence.
	SetSequence(v uint64) error
}

// Cursor walks a bucket in key order. Each method returns nil keys past
// either end.
type Cursor interface {
	First() (k, v []byte)
	Last() (k, v []byte)
	// Seek moves to the first key >= seek.
	Seek(seek []byte) (k, v []byte)
	Next() (k, v []byte)
	Prev() (k, v []byte)
}

// Tx is a transaction over the store's buckets.
type Tx interface {
	// Bucket returns the named bucket. Every bucket of the schema exists;
	// an unknown name is a programming error (it panics).
	Bucket(name []byte) Bucket
	// OnCommit registers fn to run after the transaction is durable. In a
	// read-only transaction it is never called.
	OnCommit(fn func())
}

// writeTx is an engine's group write transaction.
type writeTx interface {
	Tx
	Commit() error
	Rollback()
}

// engine stores the buckets.
type engine interface {
	// View runs fn in a consistent read-only snapshot.
	View(fn func(Tx) error) error
	// Begin starts the group write transaction. Engines serialise write
	// transactions (bbolt has one writer; PostgreSQL takes a lock in the
	// database, shared by every replica).
	Begin(ctx context.Context) (writeTx, error)
	// Backup writes a consistent copy of every bucket to w as a bbolt
	// ledger file, whatever the engine, and returns the bytes written.
	Backup(w io.Writer) (int64, error)
	// Ping checks that the engine answers and can be written.
	Ping(ctx context.Context) error
	// Close releases the engine.
	Close() error
	// Describe names where the ledger is (a file path, a database without
	// its password), for messages.
	Describe() string
}

// kvSortedKeys are the ordered keys of a bucket snapshot (tests, copy).
type kvPair struct{ k, v []byte }

// forEach walks b with a cursor (ForEach for engines whose native walk has
// other semantics).
func forEach(b Bucket, fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// countKeys returns how many keys b holds (a walk: for checks, not hot paths).
func countKeys(b Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
