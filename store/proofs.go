package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/ica-governance/ica"
)

// MarkWitnessed records that a witness took the checkpoint of seq (where:
// a blob URL). It is operational state: no ledger entry (an entry would
// move the head, and call for another checkpoint).
func (s *Store) MarkWitnessed(ctx context.Context, seq uint64, where string) error {
	return s.update(func(tx Tx, st *txState) error {
		b := tx.Bucket(bucketWitness)
		if b.Get(u64(seq)) != nil {
			return nil
		}
		return putJSON(b, u64(seq), &ica.WitnessReceipt{Where: where, At: st.now.UTC()})
	})
}

// ErrNotCheckpointed is the answer for an entry no signed checkpoint covers
// yet: unavailable, because the next checkpoint (within the checkpoint
// interval) will.
func ErrNotCheckpointed(seq uint64) error {
	return ica.Unavailable(fmt.Sprintf("ledger entry %d is not covered by a signed checkpoint yet; the next one is signed within the checkpoint interval", seq), nil)
}

// CoveredBy is a checkpoint that covers an entry, and whether a witness
// took it.
type CoveredBy struct {
	Checkpoint ica.Checkpoint
	Witness    *ica.WitnessReceipt // nil: not witnessed (yet)
}

// CoveringCheckpoint returns the checkpoint an inclusion proof of entry seq
// is best made against: the first witnessed checkpoint at or after seq, or
// else the newest signed one at or after it. It answers ENOTFOUND for an
// entry that does not exist and ErrNotCheckpointed for one no checkpoint
// covers yet.
func (s *Store) CoveringCheckpoint(ctx context.Context, seq uint64) (*CoveredBy, error) {
	var out *CoveredBy
	err := s.view(func(tx Tx) error {
		var err error
		out, err = covering(tx, seq)
		return err
	})
	return out, err
}

func covering(tx Tx, seq uint64) (*CoveredBy, error) {
	head, _ := readHead(tx)
	if seq == 0 || seq > head {
		return nil, ica.Errorf(ica.ENOTFOUND, "ledger entry %d does not exist (the ledger has %d entries)", seq, head)
	}
	cps := tx.Bucket(bucketCheckpoints)
	load := func(k []byte) (*ica.Checkpoint, error) {
		var cp ica.Checkpoint
		if err := json.Unmarshal(cps.Get(k), &cp); err != nil {
			return nil, fmt.Errorf("checkpoint %d is unreadable: %w", seqOf(k), err)
		}
		return &cp, nil
	}
	wc := tx.Bucket(bucketWitness).Cursor()
	for k, v := wc.Seek(u64(seq)); k != nil; k, v = wc.Next() {
		cp, err := load(k)
		if err != nil {
			return nil, err
		}
		if cp.Note == "" {
			continue
		}
		var r ica.WitnessReceipt
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, err
		}
		return &CoveredBy{Checkpoint: *cp, Witness: &r}, nil
	}
	c := cps.Cursor()
	for k, _ := c.Last(); k != nil && seqOf(k) >= seq; k, _ = c.Prev() {
		cp, err := load(k)
		if err != nil {
			return nil, err
		}
		if cp.Note != "" {
			return &CoveredBy{Checkpoint: *cp}, nil
		}
	}
	return nil, ErrNotCheckpointed(seq)
}

// Proof returns the inclusion proof bundle of ledger entry seq against the
// checkpoint CoveringCheckpoint chooses; ica.ProofBundle.Verify checks it
// offline with the ledger's public key.
func (s *Store) Proof(ctx context.Context, seq uint64) (*ica.ProofBundle, error) {
	var b *ica.ProofBundle
	err := s.view(func(tx Tx) error {
		cov, err := covering(tx, seq)
		if err != nil {
			return err
		}
		e, err := getEntry(tx, seq)
		if err != nil {
			return err
		}
		path, err := inclusionProof(tx, seq-1, cov.Checkpoint.Seq)
		if err != nil {
			return err
		}
		b = &ica.ProofBundle{Format: ica.ProofFormat, Entry: *e, LeafIndex: seq - 1, TreeSize: cov.Checkpoint.Seq,
			Inclusion: ica.EncodeHashes(path), Checkpoint: cov.Checkpoint.Note, PublicKey: hex.EncodeToString(s.PublicKey()),
			Witness: cov.Witness}
		return nil
	})
	return b, err
}

// AcceptRollback records, as a ledger entry, that this ledger is served
// although a witness holds a newer checkpoint (an older copy was restored):
// who decided is the actor, why is the reason. ica check then names the
// checkpoints the rollback gave up instead of failing on them.
func (s *Store) AcceptRollback(ctx context.Context, reason, actor string, w WitnessedCheckpoint) (*ica.LedgerEntry, error) {
	if reason == "" {
		return nil, ica.FieldErrorf(ica.EINVALID, "reason", "accepting a rollback needs a reason")
	}
	var out *ica.LedgerEntry
	err := s.update(func(tx Tx, st *txState) error {
		head, hash := readHead(tx)
		root, err := rootAt(tx, head)
		if err != nil {
			return err
		}
		out, err = s.appendLedger(tx, st.now, KindRollbackAccepted, s.ledgerID, actor, map[string]any{
			"reason": reason, "restored_entries": head, "restored_head": hash, "restored_root": hex.EncodeToString(root),
			"witnessed_size": w.Note.Size, "witnessed_root": hex.EncodeToString(w.Note.Root),
			"witnessed_head": w.Note.ChainHead, "witnessed_at": w.Note.Time.UTC().Format(time.RFC3339Nano), "witnessed_where": w.Where,
		})
		if err != nil {
			return err
		}
		// Remembered in meta too, so the next start need not search the
		// ledger for it (ica check reads the entry itself).
		var rbs []acceptedRollback
		if v := tx.Bucket(bucketMeta).Get(keyRollbacks); v != nil {
			if err := json.Unmarshal(v, &rbs); err != nil {
				return err
			}
		}
		rbs = append(rbs, acceptedRollback{Seq: out.Seq, From: head, Abandons: w.Note.Size, At: st.now.UTC(), Reason: reason})
		return putJSON(tx.Bucket(bucketMeta), keyRollbacks, rbs)
	})
	return out, err
}

var keyRollbacks = []byte("rollbacks_accepted")

type acceptedRollback struct {
	Seq      uint64    `json:"seq"`
	From     uint64    `json:"from"`
	Abandons uint64    `json:"abandons"`
	At       time.Time `json:"at"`
	Reason   string    `json:"reason"`
}

// WitnessVerdict is what the start-up comparison with the witness found.
type WitnessVerdict struct {
	// Behind is the newest witnessed checkpoint the ledger is shorter than
	// (an older copy restored, or truncation), nil when none.
	Behind *WitnessedCheckpoint
	// Head is the ledger's size.
	Head uint64
	// Problems name witnessed checkpoints the ledger contradicts.
	Problems []string
	// Excused name witnessed checkpoints an accepted rollback gave up.
	Excused []string
	// Checked counts the witnessed checkpoints compared.
	Checked int
}

// ProveAgainst compares the ledger with witnessed checkpoints from its
// stored Merkle nodes (O(log n) reads each, no walk): the quick check of
// ica serve at start. ica check walks the entries themselves.
func (s *Store) ProveAgainst(ws []WitnessedCheckpoint) (*WitnessVerdict, error) {
	v := &WitnessVerdict{}
	err := s.view(func(tx Tx) error {
		head, _ := readHead(tx)
		v.Head = head
		var rbs []acceptedRollback
		if raw := tx.Bucket(bucketMeta).Get(keyRollbacks); raw != nil {
			if err := json.Unmarshal(raw, &rbs); err != nil {
				return err
			}
		}
		excused := func(n *ica.CheckpointNote) *acceptedRollback {
			for i := range rbs {
				if n.Size > rbs[i].From && n.Size <= rbs[i].Abandons && !n.Time.After(rbs[i].At) {
					return &rbs[i]
				}
			}
			return nil
		}
		sorted := append([]WitnessedCheckpoint(nil), ws...)
		sortWitnessed(sorted)
		good := uint64(0)
		for i := range sorted {
			w := &sorted[i]
			n := w.Note
			name := fmt.Sprintf("witnessed checkpoint of size %d (signed %s, published at %s)", n.Size, n.Time.Format(time.RFC3339), w.Where)
			if rb := excused(n); rb != nil {
				v.Excused = append(v.Excused, fmt.Sprintf("%s was given up by the rollback accepted at entry %d (%s)", name, rb.Seq, rb.Reason))
				continue
			}
			v.Checked++
			if n.Size > head {
				v.Behind = w
				continue
			}
			root, err := rootAt(tx, n.Size)
			if err != nil {
				return err
			}
			chainHead := ica.GenesisHash
			if n.Size > 0 {
				e, err := getEntry(tx, n.Size)
				if err != nil {
					return err
				}
				chainHead = e.Hash
			}
			if hex.EncodeToString(root) == hex.EncodeToString(n.Root) && chainHead == n.ChainHead {
				good = n.Size
				continue
			}
			v.Problems = append(v.Problems, fmt.Sprintf("%s does not match the ledger: an entry in %d..%d was changed, dropped or inserted", name, good+1, n.Size))
		}
		return nil
	})
	return v, err
}

func sortWitnessed(ws []WitnessedCheckpoint) {
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Note.Size < ws[j].Note.Size })
}

// LatestWitnessed returns the witness receipt with the largest seq (nil:
// none yet).
func (s *Store) LatestWitnessed(ctx context.Context) (uint64, *ica.WitnessReceipt, error) {
	var seq uint64
	var r *ica.WitnessReceipt
	err := s.view(func(tx Tx) error {
		k, v := tx.Bucket(bucketWitness).Cursor().Last()
		if k == nil {
			return nil
		}
		seq = seqOf(k)
		r = &ica.WitnessReceipt{}
		return json.Unmarshal(v, r)
	})
	return seq, r, err
}
