package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"

	"github.com/ica-governance/ica"
)

// ExportRange selects ledger entries for an export: entries with from <=
// time < to (zero: unbounded), up to and including seq Until (the head
// checkpoint the export ends at, so entries written during the export are
// left out: the export is a consistent snapshot), and when Pipeline is set,
// only the entries of that pipeline's runs and their approvals.
type ExportRange struct {
	From, To time.Time
	Until    uint64
	Pipeline string
}

// seqBounds returns the first and last seq of the range (first > last: empty).
func (s *Store) seqBounds(r ExportRange) (uint64, uint64, error) {
	first, last := uint64(1), r.Until
	err := s.view(func(tx Tx) error {
		head, _ := readHead(tx)
		if last == 0 || last > head {
			last = head
		}
		c := tx.Bucket(bucketLedgerByTime).Cursor()
		if !r.From.IsZero() {
			k, _ := c.Seek(timeKey(r.From))
			if k == nil {
				first = last + 1
			} else {
				first = max(first, binary.BigEndian.Uint64(k[8:]))
			}
		}
		if !r.To.IsZero() {
			k, _ := c.Seek(timeKey(r.To))
			if k != nil {
				last = min(last, binary.BigEndian.Uint64(k[8:])-1)
			}
		}
		return nil
	})
	return first, last, err
}

// pipelineSubjects returns the run ids and approval ids of a pipeline.
func (s *Store) pipelineSubjects(pipeline string) (map[string]bool, error) {
	subjects := map[string]bool{}
	err := s.view(func(tx Tx) error {
		prefix := join([]byte(pipeline), sep)
		c := tx.Bucket(bucketRunByPipeline).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			run := string(k[len(prefix)+8:])
			subjects[run] = true
			ap := join([]byte(run), sep)
			ac := tx.Bucket(bucketApprByRun).Cursor()
			for ak, _ := ac.Seek(ap); ak != nil && bytes.HasPrefix(ak, ap); ak, _ = ac.Next() {
				subjects[string(ak[len(ap)+8:])] = true
			}
		}
		return nil
	})
	return subjects, err
}

// ExportEntries calls fn for every entry of the range, in seq order, reading
// in short transactions.
func (s *Store) ExportEntries(ctx context.Context, r ExportRange, fn func(e *ica.LedgerEntry) error) error {
	first, last, err := s.seqBounds(r)
	if err != nil || first > last {
		return err
	}
	var subjects map[string]bool
	if r.Pipeline != "" {
		if subjects, err = s.pipelineSubjects(r.Pipeline); err != nil {
			return err
		}
	}
	return s.ScanLedger(first, func(e *ica.LedgerEntry) error {
		if e.Seq > last {
			return errStopScan
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if subjects != nil && !subjects[e.Subject] {
			return nil
		}
		return fn(e)
	})
}

// CountExport counts the entries of the range: exact and instant without a
// pipeline filter, a scan with one.
func (s *Store) CountExport(ctx context.Context, r ExportRange) (int, error) {
	first, last, err := s.seqBounds(r)
	if err != nil || first > last {
		return 0, err
	}
	if r.Pipeline == "" {
		return int(last - first + 1), nil
	}
	n := 0
	err = s.ExportEntries(ctx, r, func(*ica.LedgerEntry) error { n++; return nil })
	return n, err
}
