package store

// Reads for the dashboard (package dashboard): runs in a time window, joined
// from two indexes without decoding a single run record; approvals created in
// a time window, found by binary search over their sequence; a month's cost
// entries. Each is one short read transaction bounded by the window, never a
// scan of the whole ledger.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/ica-governance/ica"
)

// runStatuses are the values of the status index's first key part.
var runStatuses = []string{ica.RunRunning, ica.RunSuccess, ica.RunFailed, ica.RunCancelled}

// RunIndex calls fn for every run that started in [from, to), with its start
// time, pipeline and current status, in one read transaction.
//
// It reads keys only: the status index (status ‖ 0 ‖ start ‖ run_id) gives
// each run's status, the pipeline index (pipeline ‖ 0 ‖ start ‖ run_id) its
// pipeline. The pipeline index is walked pipeline by pipeline, seeking to
// the window inside each one and then past the pipeline, so the cost is
// O(runs in the window + pipelines × log(all runs)), whatever the size of the
// ledger. Strings passed to fn (but run ids) are shared between calls.
func (s *Store) RunIndex(ctx context.Context, from, to time.Time, fn func(start time.Time, runID, pipeline, status string) error) error {
	if !to.After(from) {
		return nil
	}
	lo, hi := timeKey(from), timeKey(to)
	return s.view(func(tx Tx) error {
		status := map[string]string{}
		c := tx.Bucket(bucketRunByStatus).Cursor()
		for _, st := range runStatuses {
			prefix := join([]byte(st), sep)
			end := join(prefix, hi)
			for k, _ := c.Seek(join(prefix, lo)); k != nil && bytes.Compare(k, end) < 0; k, _ = c.Next() {
				if len(k) <= len(prefix)+8 {
					continue
				}
				status[string(k[len(prefix)+8:])] = st
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if len(status) == 0 {
			return nil
		}
		c = tx.Bucket(bucketRunByPipeline).Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("run index %s: key without a separator", bucketRunByPipeline)
			}
			pipeline := string(k[:i])
			prefix := append([]byte(nil), k[:i+1]...)
			end := join(prefix, hi)
			for k, _ = c.Seek(join(prefix, lo)); k != nil && bytes.Compare(k, end) < 0; k, _ = c.Next() {
				if len(k) <= len(prefix)+8 {
					continue
				}
				id := string(k[len(prefix)+8:])
				st, ok := status[id]
				if !ok {
					return fmt.Errorf("run %s is in the pipeline index but not in the status index", id)
				}
				start := time.Unix(0, int64(binary.BigEndian.Uint64(k[len(prefix):]))).UTC()
				if err := fn(start, id, pipeline, st); err != nil {
					return err
				}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			// Next pipeline: every key of this one starts with name ‖ 0, and
			// names hold no control characters, so name ‖ 1 is past them all.
			prefix[len(prefix)-1] = 1
			k, _ = c.Seek(prefix)
		}
		return nil
	})
}

// approvalSeqProbe bounds the look-ahead over a missing approval id during
// the binary search (ids come from NextSequence in the creating transaction,
// so they are dense; the look-ahead only guards against a hole).
const approvalSeqProbe = 64

// approvalBrief is the part of a stored approval that statistics read;
// decoding only these fields halves the cost of a full ica.Approval.
type approvalBrief struct {
	ID           string    `json:"approval_id"`
	RunID        string    `json:"run_id"`
	PipelineName string    `json:"pipeline_name"`
	Target       string    `json:"deployment_target"`
	Status       string    `json:"status"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	Technical    *struct {
		Username string    `json:"username"`
		At       time.Time `json:"at"`
	} `json:"technical"`
	Business *struct {
		Username string    `json:"username"`
		At       time.Time `json:"at"`
	} `json:"business"`
}

func (b *approvalBrief) approval() *ica.Approval {
	a := &ica.Approval{ID: b.ID, RunID: b.RunID, PipelineName: b.PipelineName, Target: b.Target, Status: b.Status,
		CreatedAt: b.CreatedAt, ExpiresAt: b.ExpiresAt}
	if b.Technical != nil {
		a.Technical = &ica.Decision{Decider: ica.Decider{Username: b.Technical.Username}, At: b.Technical.At}
	}
	if b.Business != nil {
		a.Business = &ica.Decision{Decider: ica.Decider{Username: b.Business.Username}, At: b.Business.At}
	}
	return a
}

// ApprovalSummaries calls fn, oldest first, for every approval created in
// [from, to), for statistics: the approvals passed to fn carry only their
// id, run, pipeline, target, status, creation and expiry times and who made
// the technical and business decisions and when (no other field is set).
//
// The approvals bucket has no time index, but approval ids are
// A-<NextSequence> allocated in the creating transaction, so creation time
// grows with the sequence: a binary search over the sequence finds the first
// approval of the window in O(log n) reads, and the walk stops at the first
// one created at or after to. The window's records are copied out of one
// short read transaction and decoded on every core. Cost: O(log(all
// approvals) + approvals in the window).
func (s *Store) ApprovalSummaries(ctx context.Context, from, to time.Time, fn func(a *ica.Approval) error) error {
	if !to.After(from) {
		return nil
	}
	var raws [][]byte
	err := s.view(func(tx Tx) error {
		b := tx.Bucket(bucketApprovals)
		n := b.Sequence()
		key := func(i uint64) []byte { return []byte("A-" + strconv.FormatUint(i, 10)) }
		created := func(v []byte) (time.Time, error) {
			var c struct {
				CreatedAt time.Time `json:"created_at"`
			}
			err := json.Unmarshal(v, &c)
			return c.CreatedAt, err
		}
		// probe returns the creation time of the first approval at or after
		// i (within the look-ahead); ok is false when there is none.
		probe := func(i uint64) (t time.Time, ok bool, err error) {
			for j := i; j <= n && j < i+approvalSeqProbe; j++ {
				if v := b.Get(key(j)); v != nil {
					t, err = created(v)
					return t, err == nil, err
				}
			}
			return time.Time{}, false, nil
		}
		// first returns the first sequence whose approval was created at or
		// after t (n+1 when none).
		first := func(t time.Time) (uint64, error) {
			lo, hi := uint64(1), n+1
			for lo < hi {
				mid := lo + (hi-lo)/2
				c, ok, err := probe(mid)
				if err != nil {
					return 0, err
				}
				if !ok || !c.Before(t) {
					hi = mid
				} else {
					lo = mid + 1
				}
			}
			return lo, nil
		}
		lo, err := first(from)
		if err != nil {
			return err
		}
		hi, err := first(to)
		if err != nil {
			return err
		}
		// Copy the window's records out undecoded; they are decoded (and
		// checked against the window) outside the transaction.
		for i := lo; i < hi; i++ {
			if v := b.Get(key(i)); v != nil {
				raws = append(raws, append([]byte(nil), v...))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	briefs := make([]approvalBrief, len(raws))
	errs := make([]error, len(raws))
	workers := max(1, min(runtime.GOMAXPROCS(0), len(raws)/256))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(raws); i += workers {
				errs[i] = json.Unmarshal(raws[i], &briefs[i])
			}
		})
	}
	wg.Wait()
	for i := range briefs {
		if errs[i] != nil {
			return fmt.Errorf("approval record: %w", errs[i])
		}
		if c := briefs[i].CreatedAt; c.Before(from) || !c.Before(to) {
			continue
		}
		if err := fn(briefs[i].approval()); err != nil {
			return err
		}
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// MonthCosts returns the cost entries whose billing day is in month
// (YYYY-MM), through the month index.
func (s *Store) MonthCosts(ctx context.Context, month string) ([]*ica.CostEntry, error) {
	var out []*ica.CostEntry
	err := s.view(func(tx Tx) error {
		prefix := join([]byte(month), sep)
		c := tx.Bucket(bucketCostByMonth).Cursor()
		costs := tx.Bucket(bucketCosts)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var e ica.CostEntry
			if err := json.Unmarshal(costs.Get(k[len(prefix):]), &e); err != nil {
				return fmt.Errorf("cost %s: %w", k[len(prefix):], err)
			}
			out = append(out, &e)
		}
		return nil
	})
	return out, err
}

// LedgerTail returns the last n ledger entries, newest first, in one read
// transaction.
func (s *Store) LedgerTail(ctx context.Context, n int) ([]*ica.LedgerEntry, error) {
	var out []*ica.LedgerEntry
	err := s.view(func(tx Tx) error {
		c := tx.Bucket(bucketLedger).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			var e ica.LedgerEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("ledger entry %d is unreadable: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, &e)
		}
		return nil
	})
	return out, err
}
