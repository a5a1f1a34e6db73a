package store

import (
	"context"
	"fmt"
)

// CopyFrom copies every bucket and sequence of src, verbatim, into this
// store, which must hold an empty ledger (ica copy-store: moving a ledger
// between engines keeps its seqs, hashes, checkpoints, ids and outbox).
// progress, when set, is told of each bucket as it is done.
func (s *Store) CopyFrom(ctx context.Context, src *Store, progress func(bucket string, keys int)) error {
	if n := s.LedgerEntries(); n > 0 {
		return fmt.Errorf("the destination %s already holds a ledger (%d entries): copy only into an empty one", s.Describe(), n)
	}
	empty := true
	if err := s.view(func(tx Tx) error {
		for _, b := range [][]byte{bucketRuns, bucketApprovals, bucketIncidents, bucketCosts} {
			if k, _ := tx.Bucket(b).Cursor().First(); k != nil {
				empty = false
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("the destination %s is not empty: copy only into an empty ledger", s.Describe())
	}
	counts := map[string]int{}
	err := src.view(func(stx Tx) error {
		return copyBuckets(stx, func(fn func(dst Tx) error) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			wtx, err := s.eng.Begin(ctx)
			if err != nil {
				return err
			}
			counter := &countingTx{Tx: wtx, counts: counts}
			if err := fn(counter); err != nil {
				wtx.Rollback()
				return err
			}
			if f, ok := wtx.(interface{ Err() error }); ok && f.Err() != nil {
				wtx.Rollback()
				return f.Err()
			}
			return wtx.Commit()
		})
	})
	if err != nil {
		return fmt.Errorf("copy into %s: %w", s.Describe(), err)
	}
	if progress != nil {
		for _, b := range allBuckets {
			progress(string(b), counts[string(b)])
		}
	}
	// What the destination knows of itself in memory is now the copy's.
	return s.init()
}

// countingTx counts the keys written per bucket.
type countingTx struct {
	Tx
	counts map[string]int
}

func (c *countingTx) Bucket(name []byte) Bucket {
	return &countingBucket{Bucket: c.Tx.Bucket(name), n: func() { c.counts[string(name)]++ }}
}

type countingBucket struct {
	Bucket
	n func()
}

func (b *countingBucket) Put(k, v []byte) error {
	b.n()
	return b.Bucket.Put(k, v)
}

// eraser is an engine whose whole ledger can be erased in one transaction.
type eraser interface {
	erase(ctx context.Context) error
}

// Erase removes the whole ledger from a database, in one transaction, for a
// restore that replaces it (the caller keeps a backup first). The embedded
// engine refuses: a restore replaces its file instead.
func (s *Store) Erase(ctx context.Context) error {
	e, ok := s.eng.(eraser)
	if !ok {
		return fmt.Errorf("%s: an embedded ledger is replaced as a file, not erased", s.Describe())
	}
	if err := e.erase(ctx); err != nil {
		return err
	}
	s.entries.Store(0)
	s.outboxDepth.Store(0)
	return nil
}
