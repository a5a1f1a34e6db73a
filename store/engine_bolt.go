package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltEngine keeps the buckets in one bbolt file: the embedded default, for
// one process.
type boltEngine struct {
	db   *bolt.DB
	path string
}

var _ engine = (*boltEngine)(nil)

// errEmptyKey is what a write of an empty key gets on every engine.
var errEmptyKey = errors.New("store: empty key")

// appendOnlyBuckets only ever grow at their end: full pages instead of
// bbolt's default half-full ones halve the file and the pages a scan reads.
var appendOnlyBuckets = map[string]bool{
	string(bucketLedger): true, string(bucketLedgerByTime): true, string(bucketMerkle): true,
}

// openBoltEngine opens (or creates) a bbolt ledger file. It fails fast when
// another process holds the file, and refuses a truncated or corrupted file
// without writing to it.
func openBoltEngine(path string, timeout time.Duration, readOnly bool) (*boltEngine, error) {
	if fi, err := os.Stat(path); err == nil {
		// bbolt initialises an empty file in place; an existing empty or
		// short file is a damaged ledger, and must not be overwritten.
		if fi.Size() < 4*4096 {
			return nil, fmt.Errorf("ledger file %s is truncated (%d bytes); it was left untouched: restore it from a backup", path, fi.Size())
		}
	} else if readOnly {
		return nil, fmt.Errorf("no ledger at %s: %w", path, err)
	}
	db, err := openBolt(path, timeout, readOnly)
	if err != nil {
		return nil, err
	}
	e := &boltEngine{db: db, path: path}
	if !readOnly {
		if err := e.migrate(); err != nil {
			db.Close()
			return nil, err
		}
	}
	return e, nil
}

func openBolt(path string, timeout time.Duration, readOnly bool) (db *bolt.DB, err error) {
	defer func() {
		// bbolt panics on some kinds of damage while reading the meta pages.
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("ledger file %s is corrupted (%v); it was left untouched: restore it from a backup", path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("ledger is locked by another process: %s (is another ica serving this data directory?)", path)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
		return nil, fmt.Errorf("ledger file %s is corrupted (%v); it was left untouched: restore it from a backup", path, err)
	case err != nil:
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	return db, nil
}

// migrate creates the buckets of a new file and brings an older one to the
// current schema: buckets added by later versions are created, and the
// nested per-destination outbox buckets of schema 1 are flattened into the
// engine-neutral key layout (destination ‖ 0 ‖ id).
func (e *boltEngine) migrate() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ledger file %s is corrupted (%v); it was left untouched: restore it from a backup", e.path, r)
		}
	}()
	fresh := false
	if err := e.db.View(func(tx *bolt.Tx) error {
		fresh = tx.Bucket(bucketMeta) == nil
		if fresh {
			return nil
		}
		// The buckets every ledger has from its first start must be there.
		for _, b := range [][]byte{bucketMeta, bucketLedger, bucketRuns} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("ledger file %s is corrupted: bucket %s is missing", e.path, b)
			}
		}
		v := string(tx.Bucket(bucketMeta).Get(keySchema))
		if v != "1" && v != schemaVersion {
			return fmt.Errorf("ledger file %s has schema %q; this ica understands up to %q: upgrade ica", e.path, v, schemaVersion)
		}
		return nil
	}); err != nil {
		return err
	}
	return e.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("upgrade ledger %s: bucket %s: %w", e.path, b, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if fresh {
			return meta.Put(keySchema, []byte(schemaVersion))
		}
		if string(meta.Get(keySchema)) == "1" {
			if err := flattenOutbox(tx); err != nil {
				return fmt.Errorf("upgrade ledger %s: outbox: %w", e.path, err)
			}
		}
		return meta.Put(keySchema, []byte(schemaVersion))
	})
}

// flattenOutbox moves schema 1's nested outbox buckets (one per
// destination) to flat keys in the outbox bucket.
func flattenOutbox(tx *bolt.Tx) error {
	ob := tx.Bucket(bucketOutbox)
	var dests [][]byte
	if err := ob.ForEachBucket(func(k []byte) error {
		dests = append(dests, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, d := range dests {
		nb := ob.Bucket(d)
		var pairs [][2][]byte
		if err := nb.ForEach(func(k, v []byte) error {
			pairs = append(pairs, [2][]byte{append([]byte(nil), k...), append([]byte(nil), v...)})
			return nil
		}); err != nil {
			return err
		}
		if err := ob.DeleteBucket(d); err != nil {
			return err
		}
		for _, p := range pairs {
			if err := ob.Put(outboxKey(string(d), binary.BigEndian.Uint64(p[0])), p[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *boltEngine) View(fn func(Tx) error) error {
	return e.db.View(func(tx *bolt.Tx) error { return fn(&boltTx{tx: tx}) })
}

func (e *boltEngine) Begin(context.Context) (writeTx, error) {
	tx, err := e.db.Begin(true)
	if err != nil {
		return nil, err
	}
	return &boltTx{tx: tx}, nil
}

func (e *boltEngine) Backup(w io.Writer) (int64, error) {
	var n int64
	err := e.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

func (e *boltEngine) Ping(context.Context) error {
	if e.db.IsReadOnly() {
		return errors.New("ledger is read-only")
	}
	return e.db.View(func(*bolt.Tx) error { return nil })
}

func (e *boltEngine) Close() error     { return e.db.Close() }
func (e *boltEngine) Describe() string { return e.path }

// boltTx adapts a bbolt transaction to Tx (and a writable one to writeTx).
type boltTx struct {
	tx *bolt.Tx
}

func (t *boltTx) Bucket(name []byte) Bucket {
	b := t.tx.Bucket(name)
	if b == nil {
		if !t.tx.Writable() {
			// A read-only view of a file written by an older version
			// (a backup being verified): the bucket is empty.
			return emptyBucket{}
		}
		panic(fmt.Sprintf("store: unknown bucket %q", name))
	}
	if appendOnlyBuckets[string(name)] {
		b.FillPercent = 1.0
	}
	return boltBucket{b}
}

func (t *boltTx) OnCommit(fn func()) { t.tx.OnCommit(fn) }
func (t *boltTx) Commit() error      { return t.tx.Commit() }
func (t *boltTx) Rollback()          { _ = t.tx.Rollback() }

type boltBucket struct{ *bolt.Bucket }

func (b boltBucket) Cursor() Cursor { return b.Bucket.Cursor() }

func (b boltBucket) ForEach(fn func(k, v []byte) error) error {
	return b.Bucket.ForEach(func(k, v []byte) error {
		if v == nil {
			return nil // a nested bucket (schema 1): not a key of this keyspace
		}
		return fn(k, v)
	})
}

// emptyBucket is a bucket that holds nothing and cannot be written.
type emptyBucket struct{}

var errReadOnly = errors.New("store: read-only transaction")

func (emptyBucket) Get([]byte) []byte                     { return nil }
func (emptyBucket) Put([]byte, []byte) error              { return errReadOnly }
func (emptyBucket) Delete([]byte) error                   { return errReadOnly }
func (emptyBucket) Cursor() Cursor                        { return emptyCursor{} }
func (emptyBucket) ForEach(func(k, v []byte) error) error { return nil }
func (emptyBucket) NextSequence() (uint64, error)         { return 0, errReadOnly }
func (emptyBucket) Sequence() uint64                      { return 0 }
func (emptyBucket) SetSequence(uint64) error              { return errReadOnly }

type emptyCursor struct{}

func (emptyCursor) First() ([]byte, []byte)      { return nil, nil }
func (emptyCursor) Last() ([]byte, []byte)       { return nil, nil }
func (emptyCursor) Seek([]byte) ([]byte, []byte) { return nil, nil }
func (emptyCursor) Next() ([]byte, []byte)       { return nil, nil }
func (emptyCursor) Prev() ([]byte, []byte)       { return nil, nil }
