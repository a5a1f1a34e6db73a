package store

// Pre-checks: what a read can refuse never enters the writer.
//
// The writer runs one operation at a time, so a request that was always
// going to fail (a guessed dashboard link, an event for an unknown or
// finished run, a conflicting repeat) still costs everyone its place in the
// group commit and waits for the group's fsync. A pre-check reads the same
// records in a read snapshot first and answers such requests at once. It only
// refuses, or answers a repeat whose answer cannot change (a run once started
// or finished stays so; an event id once recorded stays recorded): the write
// transaction still decides everything else, so a request the pre-check lets
// through may still be refused there (a race with another writer).
//
// Where a read transaction is cheap (bbolt: memory-mapped, in process) every
// pipeline write is pre-checked. On PostgreSQL a read transaction costs round
// trips and a pooled connection for every request, good ones included, while
// the group commit already fetches a whole group's reads in one round trip
// and drops a failing operation's overlay: there only the unauthenticated
// dashboard link is pre-checked (precheckAlways).

import (
	"bytes"

	"github.com/ica-governance/ica"
)

// remoteReads marks an engine whose read transactions cost round trips to a
// server.
func (*pgEngine) remoteReads() bool { return true }

// precheck runs fn in a read snapshot when reads are local (see above). fn
// returns done when it answered the request completely (a repeat), or a
// refusal. Anything else that goes wrong in the read (an engine error, a
// record that does not decode) is left to the write, which reports it.
func (s *Store) precheck(fn func(tx Tx) (done bool, err error)) (bool, error) {
	if s.noPrecheck {
		return false, nil
	}
	if r, ok := s.eng.(interface{ remoteReads() bool }); ok && r.remoteReads() {
		return false, nil
	}
	return s.precheckAlways(fn)
}

// precheckAlways is precheck on every engine: for routes anyone can call.
func (s *Store) precheckAlways(fn func(tx Tx) (done bool, err error)) (bool, error) {
	if s.noPrecheck {
		return false, nil
	}
	var done bool
	err := s.eng.View(func(tx Tx) error {
		var err error
		done, err = fn(tx)
		return err
	})
	switch ica.ErrorCode(err) {
	case "":
		return done, nil
	case ica.ENOTFOUND, ica.ECONFLICT, ica.EUNAUTHORIZED:
		return false, err
	}
	return false, nil
}

// approvalRefusal is what a read can tell of an approval request before the
// writer: an unknown run, a run that failed or was cancelled, or a request
// that conflicts with the open (or approved) approval of the same run and
// target. It mirrors the first checks of requestApprovalTx, which decides;
// TestPrecheck_SameAnswers keeps the two in step.
func approvalRefusal(tx Tx, in *ica.ApprovalRequest) error {
	r, err := mustRun(tx, in.RunID)
	if err != nil {
		return err
	}
	if r.Status == ica.RunFailed || r.Status == ica.RunCancelled {
		return ica.Errorf(ica.ECONFLICT, "run %s finished as %s and cannot be deployed", r.RunID, r.Status)
	}
	prefix := join([]byte(in.RunID), sep)
	c := tx.Bucket(bucketApprByRun).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		old, err := getApproval(tx, string(k[len(prefix)+8:]))
		if err != nil || old == nil {
			return nil // the write reports a broken index
		}
		if old.Target == in.DeploymentTarget && (!old.Final() || old.Status == ica.ApprovalApproved || old.Status == ica.ApprovalBypassed) &&
			old.EstimatedCost != *in.EstimatedCost {
			return ica.Errorf(ica.ECONFLICT, "approval %s for run %s to %s is already %s with estimated_cost %.2f",
				old.ID, old.RunID, old.Target, old.Status, old.EstimatedCost)
		}
	}
	return nil
}

// precheckApproval refuses an approval request a read can refuse.
func (s *Store) precheckApproval(in *ica.ApprovalRequest) error {
	_, err := s.precheck(func(tx Tx) (bool, error) { return false, approvalRefusal(tx, in) })
	return err
}
