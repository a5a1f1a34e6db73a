package store

import (
	bolt "go.etcd.io/bbolt"

	"github.com/ica-governance/ica"
)

// SetBeforeCommit installs a hook that can fail every transaction just before
// commit (simulating a full disk); nil removes it. Tests only.
func (s *Store) SetBeforeCommit(fn func() error) { s.beforeCommit = fn }

// TamperEntryFile rewrites one ledger entry in a closed ledger file,
// bypassing the chain, so tests can check that Check notices.
func TamperEntryFile(path string, seq uint64, fn func(e *ica.LedgerEntry)) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(btx *bolt.Tx) error {
		tx := &boltTx{tx: btx}
		e, err := getEntry(tx, seq)
		if err != nil {
			return err
		}
		fn(e)
		return putJSON(tx.Bucket(bucketLedger), u64(seq), e)
	})
}

// EventRecordJSON exposes the event encoding for its canonical-form test.
var EventRecordJSON = eventRecordJSON
