package store

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ica-governance/ica"
)

// writeReq is one write transaction function waiting for a shared commit.
type writeReq struct {
	fn       func(tx *bolt.Tx) error
	done     chan error
	enqueued bool // set by fn through txState when it queued outbox messages
}

// txState is what a write function reports back to the writer.
type txState struct {
	req *writeReq
	now time.Time
}

var errAbortBatch = errors.New("abort batch")

// update runs fn in a write transaction shared with other concurrent writers
// (group commit): one fsync serves every request in the group, so throughput
// does not fall to one fsync per request. fn may run more than once, when
// another member of its group fails; it must only touch tx and its own
// result variables. Domain errors returned by fn roll back only fn's work.
func (s *Store) update(fn func(tx *bolt.Tx, st *txState) error) error {
	req := &writeReq{done: make(chan error, 1)}
	req.fn = func(tx *bolt.Tx) error {
		req.enqueued = false
		return fn(tx, &txState{req: req, now: s.clock.Now()})
	}
	select {
	case <-s.closing:
		return ica.Unavailable("ledger is shutting down; retry", ErrClosed)
	case s.writes <- req:
	}
	return <-req.done
}

// writer owns every write transaction. It takes what is queued (up to
// MaxBatch) and commits it together; no timer, so a lone request commits at
// once and load forms bigger groups by itself.
func (s *Store) writer() {
	defer s.wg.Done()
	for {
		var first *writeReq
		select {
		case first = <-s.writes:
		case <-s.closing:
			// Drain what was accepted before Close.
			for {
				select {
				case r := <-s.writes:
					s.commit([]*writeReq{r})
				default:
					return
				}
			}
		}
		batch := []*writeReq{first}
	fill:
		for len(batch) < s.opt.MaxBatch {
			select {
			case r := <-s.writes:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

func (s *Store) commit(batch []*writeReq) {
	for len(batch) > 0 {
		failed, ferr := -1, error(nil)
		start := time.Now()
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, r := range batch {
				if err := runFn(r, tx); err != nil {
					failed, ferr = i, err
					return errAbortBatch
				}
			}
			if s.beforeCommit != nil {
				return s.beforeCommit()
			}
			return nil
		})
		if err == nil {
			if s.opt.ObserveCommit != nil {
				s.opt.ObserveCommit(time.Since(start))
			}
			if every := s.opt.ReleaseMappedEvery; every > 0 {
				if now := time.Now(); now.Sub(s.lastRelease) >= every {
					s.releaseMapped()
					s.lastRelease = now
				}
			}
			woke := false
			for _, r := range batch {
				if r.enqueued && !woke && s.opt.OnEnqueue != nil {
					s.opt.OnEnqueue()
					woke = true
				}
				r.done <- nil
			}
			return
		}
		if failed >= 0 {
			batch[failed].done <- ferr
			batch = append(batch[:failed:failed], batch[failed+1:]...)
			continue
		}
		s.log.Error("ledger commit failed", "err", err, "writes", len(batch))
		for _, r := range batch {
			r.done <- ica.Unavailable("the ledger could not be written; nothing was recorded, retry later", err)
		}
		// The in-memory counters may be ahead of the file now; re-read them.
		s.refreshCounters()
		return
	}
}

// runFn calls one write function, turning a panic into an internal error so
// one bad request cannot take the writer down.
func runFn(r *writeReq, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("write panicked: %v", p)
		}
	}()
	return r.fn(tx)
}

func (s *Store) refreshCounters() {
	_ = s.db.View(func(tx *bolt.Tx) error {
		seq, _ := readHead(tx)
		s.entries.Store(seq)
		return nil
	})
}
