package store

import (
	"crypto/rand"
	"encoding/hex"

	bolt "go.etcd.io/bbolt"
)

// keyLedgerID holds the ledger's own id in the meta bucket: made once,
// kept forever (backups and restores copy the meta bucket with the rest).
var keyLedgerID = []byte("ledger_id")

// LedgerID returns the ledger's id, a random 128-bit hex string that tells
// this ledger from every other one (approval ids restart at A-1 in every
// ledger, so the id is part of a card's identity). A ledger made before ids
// existed gets one at its first call.
func (s *Store) LedgerID() (string, error) {
	var id string
	if err := s.db.View(func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bucketMeta).Get(keyLedgerID))
		return nil
	}); err != nil || id != "" {
		return id, err
	}
	err := s.update(func(tx *bolt.Tx, st *txState) error {
		b := tx.Bucket(bucketMeta)
		if v := b.Get(keyLedgerID); v != nil {
			id = string(v)
			return nil
		}
		raw := make([]byte, 16)
		if _, err := rand.Read(raw); err != nil {
			return err
		}
		id = hex.EncodeToString(raw)
		return b.Put(keyLedgerID, []byte(id))
	})
	return id, err
}
