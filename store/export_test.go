package store

import (
	"context"
	"encoding/hex"
	"encoding/json"

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

// Tamper runs fn in a raw write transaction of the engine, bypassing the
// chain, the Merkle log and the replay: what an insider with write access
// to the ledger's storage (the bbolt file, the database) can do. Tests only.
func (s *Store) Tamper(fn func(tx Tx) error) error {
	wtx, err := s.eng.Begin(context.Background())
	if err != nil {
		return err
	}
	if err := fn(wtx); err != nil {
		wtx.Rollback()
		return err
	}
	if err := wtx.Commit(); err != nil {
		return err
	}
	s.refreshCounters()
	return nil
}

// RewriteChain is the insider who also holds the signing key: edit gets the
// entries from seq from to the head and returns the chain's new tail
// (entries changed, dropped or inserted); every later hash and link is
// recomputed, the Merkle log rebuilt from scratch and every local
// checkpoint signed again with the ledger's key. The state records are
// left alone (the test decides). Tests only.
func (s *Store) RewriteChain(from uint64, edit func(tail []*ica.LedgerEntry) []*ica.LedgerEntry) error {
	return s.Tamper(func(tx Tx) error {
		head, _ := readHead(tx)
		var tail []*ica.LedgerEntry
		for seq := from; seq <= head; seq++ {
			e, err := getEntry(tx, seq)
			if err != nil {
				return err
			}
			tail = append(tail, e)
		}
		tail = edit(tail)
		prev := ica.GenesisHash
		if from > 1 {
			e, err := getEntry(tx, from-1)
			if err != nil {
				return err
			}
			prev = e.Hash
		}
		lb, tb := tx.Bucket(bucketLedger), tx.Bucket(bucketLedgerByTime)
		for seq := from; seq <= head; seq++ {
			e, _ := getEntry(tx, seq)
			if err := lb.Delete(u64(seq)); err != nil {
				return err
			}
			if err := tb.Delete(append(timeKey(e.Time), u64(seq)...)); err != nil {
				return err
			}
		}
		seq := from
		for _, e := range tail {
			e.Seq, e.PrevHash = seq, prev
			canon, err := ica.CanonicalJSON(e.Data)
			if err != nil {
				return err
			}
			e.Data = canon
			if e.Hash, err = e.HashCanonical(); err != nil {
				return err
			}
			if err := putJSON(lb, u64(seq), e); err != nil {
				return err
			}
			if err := tb.Put(append(timeKey(e.Time), u64(seq)...), nil); err != nil {
				return err
			}
			prev = e.Hash
			seq++
		}
		newHead := seq - 1
		if err := tx.Bucket(bucketMeta).Put(keyHead, append(u64(newHead), prev...)); err != nil {
			return err
		}
		// The Merkle log, from scratch.
		mb := tx.Bucket(bucketMerkle)
		var keys [][]byte
		c := mb.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := mb.Delete(k); err != nil {
				return err
			}
		}
		r := rangeFactory.NewEmptyRange(0)
		if err := merkleCatchUp(tx, r, newHead, int(newHead)); err != nil {
			return err
		}
		if err := writeRange(tx, r); err != nil {
			return err
		}
		// Every checkpoint, signed again.
		cb := tx.Bucket(bucketCheckpoints)
		var cps []ica.Checkpoint
		cc := cb.Cursor()
		for k, v := cc.First(); k != nil; k, v = cc.Next() {
			var cp ica.Checkpoint
			if err := json.Unmarshal(v, &cp); err != nil {
				return err
			}
			cps = append(cps, cp)
		}
		for _, cp := range cps {
			if err := cb.Delete(u64(cp.Seq)); err != nil {
				return err
			}
			if cp.Seq > newHead {
				continue
			}
			hash := ica.GenesisHash
			if cp.Seq > 0 {
				e, err := getEntry(tx, cp.Seq)
				if err != nil {
					return err
				}
				hash = e.Hash
			}
			root, err := rootAt(tx, cp.Seq)
			if err != nil {
				return err
			}
			n := ica.SignCheckpoint(s.opt.Key, cp.Seq, hash, cp.Time)
			n.Origin, n.Root = cp.Origin, hex.EncodeToString(root)
			if n.Origin != "" {
				if n.Note, err = ica.SignCheckpointNote(s.opt.Key, &ica.CheckpointNote{Origin: n.Origin, Size: n.Seq, Root: root, ChainHead: hash, Time: cp.Time}); err != nil {
					return err
				}
			}
			if err := putJSON(cb, u64(cp.Seq), &n); err != nil {
				return err
			}
		}
		return nil
	})
}

// Keys lists a bucket's keys (tests).
func (s *Store) Keys(bucket string) ([][]byte, error) {
	var out [][]byte
	err := s.view(func(tx Tx) error {
		c := tx.Bucket([]byte(bucket)).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			out = append(out, append([]byte(nil), k...))
		}
		return nil
	})
	return out, err
}
