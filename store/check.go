package store

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/ica-governance/ica"
)

// CheckReport is the outcome of a full consistency check.
type CheckReport struct {
	Entries     uint64 `json:"entries"`
	Head        string `json:"head"`
	Checkpoints int    `json:"checkpoints"`
	Runs        int    `json:"runs"`
	Approvals   int    `json:"approvals"`
	Incidents   int    `json:"incidents"`
	// Problems lists what is wrong, the first bad ledger entry first; empty means consistent.
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether the check found nothing wrong.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

const maxProblems = 20

func (r *CheckReport) add(format string, args ...any) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check walks the whole hash chain, the checkpoints and the indexes. The
// chain is read in pages (short transactions) so a check can run while the
// server serves; the indexes are compared in one read transaction.
func (s *Store) Check() (*CheckReport, error) {
	rep := &CheckReport{}
	pub := hex.EncodeToString(s.opt.Key.Public().(ed25519.PublicKey))
	var prev *ica.LedgerEntry
	chainBroken := false
	err := s.ScanLedger(1, func(e *ica.LedgerEntry) error {
		if !chainBroken {
			if err := e.Verify(prev); err != nil {
				rep.add("ledger: first bad entry: %v", err)
				chainBroken = true
			}
		}
		prev = e
		rep.Entries++
		return nil
	})
	if err != nil {
		rep.add("ledger: %v", err)
	}
	return rep, s.view(func(tx Tx) error {
		seq, hash := readHead(tx)
		rep.Head = hash
		if prev != nil && (prev.Seq != seq || prev.Hash != hash) {
			rep.add("ledger: head says entry %d %s but the last entry is %d %s", seq, hash, prev.Seq, prev.Hash)
		}
		// Checkpoints must sign entries that exist, with this ledger's key.
		_ = tx.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
			rep.Checkpoints++
			var cp ica.Checkpoint
			if err := json.Unmarshal(v, &cp); err != nil {
				rep.add("checkpoint %x: unreadable", k)
				return nil
			}
			if err := cp.Verify(); err != nil {
				rep.add("%v", err)
			} else if cp.PublicKey != pub {
				rep.add("checkpoint %d: signed by another key (%s)", cp.Seq, ica.KeyFingerprint(cp.PublicKey))
			}
			if cp.Seq > 0 {
				if e, err := getEntry(tx, cp.Seq); err != nil || e.Hash != cp.Hash {
					rep.add("checkpoint %d: does not match ledger entry %d", cp.Seq, cp.Seq)
				}
			}
			return nil
		})
		s.checkRuns(tx, rep)
		s.checkApprovals(tx, rep)
		rep.Incidents = s.checkIncidents(tx, rep)
		return nil
	})
}

func (s *Store) checkRuns(tx Tx, rep *CheckReport) {
	runs := map[string]*ica.Run{}
	_ = tx.Bucket(bucketRuns).ForEach(func(k, v []byte) error {
		var r ica.Run
		if err := json.Unmarshal(v, &r); err != nil {
			rep.add("run %s: unreadable", k)
			return nil
		}
		runs[r.RunID] = &r
		return nil
	})
	rep.Runs = len(runs)
	want := map[string]map[string]bool{
		string(bucketRunByStart): {}, string(bucketRunByPipeline): {}, string(bucketRunByStatus): {},
	}
	for _, r := range runs {
		tk := timeKey(r.StartTime)
		want[string(bucketRunByStart)][string(join(tk, []byte(r.RunID)))] = true
		want[string(bucketRunByPipeline)][string(join([]byte(r.PipelineName), sep, tk, []byte(r.RunID)))] = true
		want[string(bucketRunByStatus)][string(statusKey(r))] = true
		if e, err := getEntry(tx, r.StartSeq); err != nil || e.Kind != ica.KindRunStarted || e.Subject != r.RunID {
			rep.add("run %s: start entry %d is not its run.started entry", r.RunID, r.StartSeq)
		}
		n := 0
		prefix := append([]byte(r.RunID), 0)
		c := tx.Bucket(bucketEvents).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) == len(prefix)+4 {
				n++
			}
		}
		if r.Final() && n != r.EventCount {
			rep.add("run %s: event_count is %d but %d events are stored", r.RunID, r.EventCount, n)
		}
	}
	for name, keys := range want {
		got := 0
		_ = tx.Bucket([]byte(name)).ForEach(func(k, _ []byte) error {
			got++
			if !keys[string(k)] {
				rep.add("index %s: stray key %q", name, k)
			}
			return nil
		})
		if got != len(keys) {
			rep.add("index %s: %d keys for %d runs", name, got, len(keys))
		}
	}
}

func (s *Store) checkApprovals(tx Tx, rep *CheckReport) {
	open := map[string]bool{}
	_ = tx.Bucket(bucketApprovals).ForEach(func(k, v []byte) error {
		if k == nil || v == nil {
			return nil
		}
		var a ica.Approval
		if err := json.Unmarshal(v, &a); err != nil {
			rep.add("approval %s: unreadable", k)
			return nil
		}
		rep.Approvals++
		if !a.Final() {
			open[string(deadlineKey(&a))] = true
		}
		if r, _ := getRun(tx, a.RunID); r == nil {
			rep.add("approval %s: run %s is missing", a.ID, a.RunID)
		}
		return nil
	})
	got := 0
	_ = tx.Bucket(bucketApprDeadline).ForEach(func(k, _ []byte) error {
		got++
		if !open[string(k)] {
			rep.add("index %s: stray key for approval %s", bucketApprDeadline, k[8:])
		}
		return nil
	})
	if got != len(open) {
		rep.add("index %s: %d keys for %d open approvals", bucketApprDeadline, got, len(open))
	}
}
