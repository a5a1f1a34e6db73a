package store

import (
	"encoding/binary"
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
	buf, err := json.Marshal(e)
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
	if e.Seq%s.opt.CheckpointEvery == 0 {
		if err := s.putCheckpoint(tx, e.Seq, e.Hash, now); err != nil {
			return nil, err
		}
	}
	tx.OnCommit(func() { s.entries.Store(e.Seq) })
	return e, nil
}

func (s *Store) putCheckpoint(tx Tx, seq uint64, hash string, now time.Time) error {
	cp := ica.SignCheckpoint(s.opt.Key, seq, hash, now)
	buf, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketCheckpoints).Put(u64(seq), buf)
}

// Checkpoint signs the current head (if it has no checkpoint yet) and returns
// it. Exports end at such a checkpoint.
func (s *Store) Checkpoint() (ica.Checkpoint, error) {
	var cp ica.Checkpoint
	err := s.update(func(tx Tx, st *txState) error {
		seq, hash := readHead(tx)
		if v := tx.Bucket(bucketCheckpoints).Get(u64(seq)); v != nil {
			return json.Unmarshal(v, &cp)
		}
		cp = ica.SignCheckpoint(s.opt.Key, seq, hash, st.now)
		buf, err := json.Marshal(cp)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketCheckpoints).Put(u64(seq), buf)
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
