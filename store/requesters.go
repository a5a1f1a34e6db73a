package store

// The Azure DevOps identity a run was requested for (requested_for_email,
// requested_for_id), recorded beside the run's triggered_by so that the
// requester check can compare it too. It is recorded in the ledger
// (run.requester) and kept per run in its own bucket.

import (
	"context"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/ica-governance/ica"
)

// bucketRunRequesters holds run id → ica.RunRequester; created by the first
// record, so older ledgers open unchanged.
var bucketRunRequesters = []byte("run_requesters")

// KindRunRequester is the ledger kind of a recorded requester.
const KindRunRequester = "run.requester"

// RecordRunRequester records the requester of a started run, once. A repeat
// with the same identity changes nothing; a different one is a conflict
// naming the fields that differ (as a repeated run start is).
func (s *Store) RecordRunRequester(ctx context.Context, runID string, r ica.RunRequester, actor string) error {
	if r.Email == "" && r.ID == "" {
		return nil
	}
	return s.update(func(tx *bolt.Tx, st *txState) error {
		if _, err := mustRun(tx, runID); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(bucketRunRequesters)
		if err != nil {
			return err
		}
		old, err := getJSON[ica.RunRequester](b, []byte(runID))
		if err != nil {
			return err
		}
		if old != nil {
			var d []string
			if old.Email != r.Email {
				d = append(d, "requested_for_email")
			}
			if old.ID != r.ID {
				d = append(d, "requested_for_id")
			}
			if len(d) > 0 {
				return ica.Errorf(ica.ECONFLICT, "run %s was already started with a different %s", runID, strings.Join(d, ", "))
			}
			return nil
		}
		if _, err := s.appendLedger(tx, st.now, KindRunRequester, runID, actor, r); err != nil {
			return err
		}
		return putJSON(b, []byte(runID), r)
	})
}

// RunRequester returns the recorded requester of a run (empty when none was
// recorded).
func (s *Store) RunRequester(ctx context.Context, runID string) (ica.RunRequester, error) {
	var out ica.RunRequester
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRunRequesters)
		if b == nil {
			return nil
		}
		r, err := getJSON[ica.RunRequester](b, []byte(runID))
		if r != nil {
			out = *r
		}
		return err
	})
	return out, err
}
