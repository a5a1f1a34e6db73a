package store

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ica-governance/ica"
)

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func timeKey(t time.Time) []byte { return u64(uint64(t.UnixNano())) }

func readHead(tx Tx) (uint64, string) {
	v := tx.Bucket(bucketMeta).Get(keyHead)
	if len(v) < 8 {
		return 0, ica.GenesisHash
	}
	return binary.BigEndian.Uint64(v[:8]), string(v[8:])
}

func getEntry(tx Tx, seq uint64) (*ica.LedgerEntry, error) {
	v := tx.Bucket(bucketLedger).Get(u64(seq))
	if v == nil {
		return nil, fmt.Errorf("entry %d is missing", seq)
	}
	var e ica.LedgerEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("entry %d is unreadable: %w", seq, err)
	}
	return &e, nil
}

// appendLedger adds one entry to the hash chain inside tx, and signs a
// checkpoint every CheckpointEvery entries.
func (s *Store) appendLedger(tx Tx, now time.Time, kind, subject, actor string, data any) (*ica.LedgerEntry, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("ledger data for %s: %w", kind, err)
	}
	// The data is stored canonically, so what is read back hashes the same
	// whatever re-encodes it; it is canonicalised once, here.
	canon, err := ica.CanonicalJSON(raw)
	if err != nil {
		return nil, err
	}
	return s.appendCanonical(tx, now, kind, subject, actor, canon)
}

// appendCanonical is appendLedger for data that is already canonical JSON
// (the hot path of events, whose record type encodes canonically).
func (s *Store) appendCanonical(tx Tx, now time.Time, kind, subject, actor string, canon []byte) (*ica.LedgerEntry, error) {
	var err error
	seq, prev := readHead(tx)
	e := &ica.LedgerEntry{Seq: seq + 1, Time: now.UTC(), Kind: kind, Subject: subject, Actor: actor, Data: canon, PrevHash: prev}
	if e.Hash, err = e.HashCanonical(); err != nil {
		return nil, err
	}
	buf, err := e.MarshalRecord()
	if err != nil {
		return nil, err
	}
	// Both buckets only ever grow at their end (seq, then time ‖ seq; see
	// appendOnlyBuckets).
	lb, tb := tx.Bucket(bucketLedger), tx.Bucket(bucketLedgerByTime)
	if err := lb.Put(u64(e.Seq), buf); err != nil {
		return nil, err
	}
	if err := tb.Put(append(timeKey(e.Time), u64(e.Seq)...), nil); err != nil {
		return nil, err
	}
	head := append(u64(e.Seq), e.Hash...)
	if err := tx.Bucket(bucketMeta).Put(keyHead, head); err != nil {
		return nil, err
	}
	// The Merkle log: one leaf per entry, in the same transaction.
	r, err := readRange(tx)
	if err != nil {
		return nil, err
	}
	if r.End() != seq {
		// Entries appended by a replica of an older version (rolling update).
		if err := merkleCatchUp(tx, r, seq, int(seq)); err != nil {
			return nil, err
		}
	}
	if err := merkleAppend(tx, r, e.Hash); err != nil {
		return nil, err
	}
	if err := writeRange(tx, r); err != nil {
		return nil, err
	}
	if e.Seq%s.opt.CheckpointEvery == 0 {
		root, err := rootOf(r)
		if err != nil {
			return nil, err
		}
		if _, err := s.signCheckpoint(tx, now, e.Seq, e.Hash, root); err != nil {
			return nil, err
		}
	}
	tx.OnCommit(func() { s.entries.Store(e.Seq) })
	return e, nil
}

// keyOrigin is the meta key of the checkpoints' origin, fixed by the first
// checkpoint signed with a note.
var keyOrigin = []byte("checkpoint_origin")

// origin returns the ledger's checkpoint origin, fixing it on first use:
// "<public host>/ledger/<ledger id>". It never changes afterwards, whatever
// ICA_PUBLIC_URL becomes, so every witness names the log the same way.
func (s *Store) origin(tx Tx) (string, error) {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keyOrigin); len(v) > 0 {
		return string(v), nil
	}
	o := ica.CheckpointOrigin(s.opt.PublicHost, s.ledgerID)
	return o, meta.Put(keyOrigin, []byte(o))
}

// Origin returns the origin of the ledger's checkpoints (empty until the
// first one is signed).
func (s *Store) Origin() (string, error) {
	var o string
	err := s.view(func(tx Tx) error {
		o = string(tx.Bucket(bucketMeta).Get(keyOrigin))
		return nil
	})
	return o, err
}

// signCheckpoint signs the tree of seq entries (chain head hash, Merkle
// root root) twice, as an ica-checkpoint:v1 signature and as a C2SP signed
// note, stores it and queues its publication to the witnesses.
func (s *Store) signCheckpoint(tx Tx, now time.Time, seq uint64, hash string, root []byte) (ica.Checkpoint, error) {
	origin, err := s.origin(tx)
	if err != nil {
		return ica.Checkpoint{}, err
	}
	cp := ica.SignCheckpoint(s.opt.Key, seq, hash, now)
	cp.Origin, cp.Root = origin, hex.EncodeToString(root)
	cp.Note, err = ica.SignCheckpointNote(s.opt.Key, &ica.CheckpointNote{Origin: origin, Size: seq, Root: root, ChainHead: hash, Time: cp.Time})
	if err != nil {
		return ica.Checkpoint{}, err
	}
	buf, err := json.Marshal(cp)
	if err != nil {
		return ica.Checkpoint{}, err
	}
	if err := tx.Bucket(bucketCheckpoints).Put(u64(seq), buf); err != nil {
		return ica.Checkpoint{}, err
	}
	if s.opt.CheckpointMessages != nil && !givenUp(tx, seq) {
		if err := s.enqueueAt(tx, now, nil, s.opt.CheckpointMessages(s.ledgerID, &cp)); err != nil {
			return ica.Checkpoint{}, err
		}
	}
	return cp, nil
}

// givenUp reports whether the witness already holds a checkpoint of size
// seq from the history an accepted rollback gave up: publishing this one
// could only fail (the witness never overwrites), and the rollback's entry
// already records why they differ.
func givenUp(tx Tx, seq uint64) bool {
	v := tx.Bucket(bucketMeta).Get(keyRollbacks)
	if v == nil {
		return false
	}
	var rbs []acceptedRollback
	if json.Unmarshal(v, &rbs) != nil {
		return false
	}
	for _, rb := range rbs {
		if seq > rb.From && seq <= rb.Abandons {
			return true
		}
	}
	return false
}

// Checkpoint signs the current head (if it has no checkpoint with a note
// yet) and returns it. Exports end at such a checkpoint; the scheduler calls
// it every ICA_CHECKPOINT_INTERVAL, so a head that moved is witnessed.
func (s *Store) Checkpoint() (ica.Checkpoint, error) {
	var cp ica.Checkpoint
	found := false
	if err := s.view(func(tx Tx) error {
		seq, _ := readHead(tx)
		if v := tx.Bucket(bucketCheckpoints).Get(u64(seq)); v != nil {
			if err := json.Unmarshal(v, &cp); err != nil {
				return err
			}
			found = cp.Note != ""
		}
		return nil
	}); err != nil || found {
		return cp, err
	}
	err := s.update(func(tx Tx, st *txState) error {
		seq, hash := readHead(tx)
		if v := tx.Bucket(bucketCheckpoints).Get(u64(seq)); v != nil {
			if err := json.Unmarshal(v, &cp); err != nil {
				return err
			}
			if cp.Note != "" {
				return nil
			}
			// Signed before the ledger was a Merkle log: sign it again with
			// its note (the v1 signature is the same).
		}
		root, err := rootAt(tx, seq)
		if err != nil {
			return err
		}
		cp, err = s.signCheckpoint(tx, st.now, seq, hash, root)
		if err == nil {
			st.wake()
		}
		return err
	})
	return cp, err
}

// Head returns the sequence and hash of the last ledger entry.
func (s *Store) Head() (seq uint64, hash string, err error) {
	err = s.view(func(tx Tx) error {
		seq, hash = readHead(tx)
		return nil
	})
	return seq, hash, err
}

// Entry returns the ledger entry with the given sequence number.
func (s *Store) Entry(seq uint64) (*ica.LedgerEntry, error) {
	var e *ica.LedgerEntry
	err := s.view(func(tx Tx) error {
		var err error
		if e, err = getEntry(tx, seq); err != nil {
			return ica.Errorf(ica.ENOTFOUND, "ledger entry %d not found", seq)
		}
		return nil
	})
	return e, err
}

// errStopScan ends a scan early without an error.
var errStopScan = errors.New("stop scan")

// ScanLedger calls fn for every entry with from <= seq, in order, in short
// read transactions of pageSize entries so a long scan never holds one
// transaction (and the file's old pages) for its whole length. fn returning
// an error stops the scan.
func (s *Store) ScanLedger(from uint64, fn func(e *ica.LedgerEntry) error) error {
	const pageSize = 2048
	next := max(from, 1)
	for {
		var page []*ica.LedgerEntry
		err := s.view(func(tx Tx) error {
			c := tx.Bucket(bucketLedger).Cursor()
			for k, v := c.Seek(u64(next)); k != nil && len(page) < pageSize; k, v = c.Next() {
				var e ica.LedgerEntry
				if err := json.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("ledger entry %d is unreadable: %w", binary.BigEndian.Uint64(k), err)
				}
				page = append(page, &e)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if s.releasePages {
			s.releaseMapped()
		}
		for _, e := range page {
			if err := fn(e); errors.Is(err, errStopScan) {
				return nil
			} else if err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
		next = page[len(page)-1].Seq + 1
	}
}

// FirstSeqAt returns the first ledger sequence whose time is >= t (0 when none).
func (s *Store) FirstSeqAt(t time.Time) (uint64, error) {
	var seq uint64
	err := s.view(func(tx Tx) error {
		k, _ := tx.Bucket(bucketLedgerByTime).Cursor().Seek(timeKey(t))
		if k != nil {
			seq = binary.BigEndian.Uint64(k[8:])
		}
		return nil
	})
	return seq, err
}

// Checkpoints returns the signed checkpoints at or below seq, newest first, up to limit.
func (s *Store) Checkpoints(seq uint64, limit int) ([]ica.Checkpoint, error) {
	var out []ica.Checkpoint
	err := s.view(func(tx Tx) error {
		c := tx.Bucket(bucketCheckpoints).Cursor()
		k, v := c.Seek(u64(seq + 1))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
			var cp ica.Checkpoint
			if err := json.Unmarshal(v, &cp); err != nil {
				return err
			}
			out = append(out, cp)
		}
		return nil
	})
	return out, err
}
