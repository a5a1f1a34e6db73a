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
	case ica.ENOTFOUND, ica.ECONFLICT, ica.EUNAUTHORIZED, ica.EFORBIDDEN:
		return false, err
	}
	return false, nil
}

// precheckApproval refuses an approval request a read can refuse.
func (s *Store) precheckApproval(in *ica.ApprovalRequest) error {
	_, err := s.precheck(func(tx Tx) (bool, error) {
		_, _, err := s.existingApprovalTx(tx, s.clock.Now(), in)
		return false, err
	})
	return err
}
