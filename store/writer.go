package store

import (
	"context"
	"fmt"
	"time"

	"github.com/ica-governance/ica"
)

// writeReq is one write operation waiting for a shared commit.
type writeReq struct {
	fn       func(tx Tx, st *txState) error
	hints    []readHint // what fn is about to read (fetched for the group at once)
	done     chan error
	enqueued bool // set through txState when the operation queued outbox messages
}

// txState is what a write operation knows of its transaction and reports
// back to the writer.
type txState struct {
	req *writeReq
	now time.Time
}

// wake asks for the dispatchers and the scheduler (of every replica) to look
// again after the commit: something was queued, or a deadline changed.
func (st *txState) wake() { st.req.enqueued = true }

// update runs fn in a write transaction shared with other concurrent writers
// (group commit): one commit (one fsync) serves every operation in the group,
// so throughput does not fall to one commit per request. fn runs once, in
// an overlay of its own: when it returns an error, its writes are dropped
// and its neighbours are neither re-run nor rolled back. fn must only touch
// tx and its own result variables.
//
// hints name what fn will read; an engine that pays a round trip per read
// (PostgreSQL) fetches the reads of a whole group together first. They are
// only hints: a read that was not named is fetched when it is made.
func (s *Store) update(fn func(tx Tx, st *txState) error, hints ...readHint) error {
	req := &writeReq{fn: fn, hints: hints, done: make(chan error, 1)}
	select {
	case <-s.closing:
		return ica.Unavailable("ledger is shutting down; retry", ErrClosed)
	case s.writes <- req:
	}
	return <-req.done
}

// writer owns every write transaction. It takes the first queued request,
// begins a transaction (on a shared database that waits for the chain
// lock), and then takes whatever else is queued (up to MaxBatch): requests
// that arrived while the lock was awaited join this group instead of
// waiting for the next one. No timer: a lone request commits at once and
// load forms bigger groups by itself.
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
					s.group(r)
				default:
					return
				}
			}
		}
		s.group(first)
	}
}

// group begins a transaction for first and the requests queued behind it,
// and commits them together.
func (s *Store) group(first *writeReq) {
	start := time.Now()
	wtx, err := s.eng.Begin(context.Background())
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
	if err != nil {
		s.unavailable(err, batch)
		return
	}
	s.commit(wtx, batch, start)
}

// unavailable answers a group that the engine could not write: nothing of
// it was recorded.
func (s *Store) unavailable(err error, reqs []*writeReq) {
	s.log.Error("ledger commit failed", "err", err, "writes", len(reqs))
	for _, r := range reqs {
		r.done <- ica.Unavailable("the ledger could not be written; nothing was recorded, retry later", err)
	}
	// The in-memory counters may be ahead of the ledger now; re-read them.
	s.refreshCounters()
}

// commit runs a group of operations in one engine transaction. Each
// operation runs in its own overlay; a failed one is answered at once and
// leaves no trace. Only a failure of the engine itself (merge, commit)
// fails the group: then every operation in it is answered "unavailable"
// and nothing of it is recorded.
func (s *Store) commit(wtx writeTx, batch []*writeReq, start time.Time) {
	if p, can := wtx.(interface{ prefetch([]readHint) }); can {
		// Every group appends: the head and the Merkle log's range.
		hints := []readHint{hintGet(bucketMeta, keyHead), hintGet(bucketMeta, keyMerkle)}
		for _, r := range batch {
			hints = append(hints, r.hints...)
		}
		p.prefetch(hints)
	}
	ok := make([]*writeReq, 0, len(batch))
	ov := newOverlay(wtx)
	for _, r := range batch {
		ov.reset()
		st := &txState{req: r, now: s.clock.Now()}
		err := runFn(r, ov, st)
		if f, isPG := wtx.(interface{ Err() error }); isPG && f.Err() != nil {
			// The engine failed under the operation (a lost database
			// connection): what it read cannot be trusted, nor the group.
			wtx.Rollback()
			s.unavailable(f.Err(), append(ok, r))
			return
		}
		if err != nil {
			r.done <- err
			continue
		}
		if err := ov.merge(); err != nil {
			// The group's transaction may hold part of this operation:
			// none of the group can be trusted.
			wtx.Rollback()
			s.unavailable(fmt.Errorf("merge: %w", err), append(ok, r))
			return
		}
		ok = append(ok, r)
		if r.enqueued {
			if w, shared := wtx.(interface{ setWake() }); shared {
				w.setWake() // other replicas' dispatchers and scheduler
			}
		}
	}
	if len(ok) == 0 {
		wtx.Rollback()
		return
	}
	if s.beforeCommit != nil {
		if err := s.beforeCommit(); err != nil {
			wtx.Rollback()
			s.unavailable(err, ok)
			return
		}
	}
	if err := wtx.Commit(); err != nil {
		s.unavailable(err, ok)
		return
	}
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
	for _, r := range ok {
		if r.enqueued && !woke && s.opt.OnEnqueue != nil {
			s.opt.OnEnqueue()
			woke = true
		}
		r.done <- nil
	}
}

// runFn calls one write operation, turning a panic into an internal error
// so one bad request cannot take the writer down.
func runFn(r *writeReq, tx Tx, st *txState) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("write panicked: %v", p)
		}
	}()
	return r.fn(tx, st)
}

func (s *Store) refreshCounters() {
	_ = s.eng.View(func(tx Tx) error {
		seq, _ := readHead(tx)
		s.entries.Store(seq)
		return nil
	})
}
