package store

// The Merkle log. Every appended entry is a leaf of an RFC 6962 tree (leaf
// = the entry's 32-byte hash, see ica.LeafHash), maintained per append with
// a compact range: the head's range (the roots of the perfect subtrees that
// cover [0, size)) is kept in meta, so an append reads one key and hashes
// O(1) nodes on average, whatever the size of the ledger.
//
// Interior nodes from level minStoredLevel up are stored in the merkle
// bucket under end ‖ level, where end is the index of the last leaf the node
// covers: a node is complete exactly when that leaf is appended, so keys are
// written in ascending order (the bucket only grows at its end) and a walk
// of the bucket meets nodes in the order a replay of the ledger makes them.
// The lower levels are not stored: leaf i is the hash of ledger entry i+1,
// and a node below minStoredLevel is recomputed from the at most
// 2^(minStoredLevel-1) entries under it. An append writes one node per
// 2^minStoredLevel entries instead of one per entry, and a proof still
// reads O(log n) nodes plus at most 2^minStoredLevel - 1 entries.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"

	"github.com/ica-governance/ica"
)

// keyMerkle is the meta key of the head's compact range: size(8) ‖ hashes.
var keyMerkle = []byte("merkle")

var rangeFactory = &compact.RangeFactory{Hash: ica.HashChildren}

// minStoredLevel is the lowest level of the tree whose nodes are stored.
const minStoredLevel = 4

func merkleKey(id compact.NodeID) []byte {
	_, end := id.Coverage()
	k := make([]byte, 9)
	binary.BigEndian.PutUint64(k, end-1)
	k[8] = byte(id.Level)
	return k
}

// merkleKeyID is the node a merkle key names.
func merkleKeyID(k []byte) (compact.NodeID, bool) {
	if len(k) != 9 || k[8] < minStoredLevel || k[8] > 63 {
		return compact.NodeID{}, false
	}
	end := binary.BigEndian.Uint64(k[:8]) + 1
	lvl := uint(k[8])
	if end%(1<<lvl) != 0 {
		return compact.NodeID{}, false
	}
	return compact.NewNodeID(lvl, end>>lvl-1), true
}

// readRange returns the compact range of the tree kept in meta ([0, 0) when
// the ledger has none yet).
func readRange(tx Tx) (*compact.Range, error) {
	v := tx.Bucket(bucketMeta).Get(keyMerkle)
	if len(v) == 0 {
		return rangeFactory.NewEmptyRange(0), nil
	}
	if len(v) < 8 || (len(v)-8)%32 != 0 {
		return nil, fmt.Errorf("the ledger's Merkle range is damaged (%d bytes)", len(v))
	}
	v = append([]byte(nil), v...) // the range outlives writes to meta
	size := binary.BigEndian.Uint64(v[:8])
	hashes := make([][]byte, 0, (len(v)-8)/32)
	for i := 8; i < len(v); i += 32 {
		hashes = append(hashes, v[i:i+32:i+32])
	}
	r, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("the ledger's Merkle range is damaged: %w", err)
	}
	return r, nil
}

func writeRange(tx Tx, r *compact.Range) error {
	hs := r.Hashes()
	v := make([]byte, 8, 8+32*len(hs))
	binary.BigEndian.PutUint64(v, r.End())
	for _, h := range hs {
		v = append(v, h...)
	}
	return tx.Bucket(bucketMeta).Put(keyMerkle, v)
}

// merkleAppend adds leaves (entry hashes, hex) to the range and stores the
// nodes they complete.
func merkleAppend(tx Tx, r *compact.Range, hashes ...string) error {
	mb := tx.Bucket(bucketMerkle)
	var perr error
	visit := func(id compact.NodeID, h []byte) {
		if id.Level < minStoredLevel || perr != nil {
			return
		}
		perr = mb.Put(merkleKey(id), h)
	}
	for _, h := range hashes {
		leaf, err := ica.LeafHash(h)
		if err != nil {
			return err
		}
		if err := r.Append(leaf, visit); err != nil {
			return err
		}
		if perr != nil {
			return perr
		}
	}
	return nil
}

// merkleCatchUp brings the tree to the ledger's seq upTo, reading the
// entries it lacks: a ledger written before the Merkle log, or entries a
// replica of an older version appended during a rolling update.
func merkleCatchUp(tx Tx, r *compact.Range, upTo uint64, limit int) error {
	var hashes []string
	for seq := r.End() + 1; seq <= upTo && len(hashes) < limit; seq++ {
		e, err := getEntry(tx, seq)
		if err != nil {
			return fmt.Errorf("Merkle log: %w", err)
		}
		hashes = append(hashes, e.Hash)
	}
	return merkleAppend(tx, r, hashes...)
}

// rootOf returns the root of a compact range that starts at 0.
func rootOf(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return ica.EmptyTreeRoot(), nil
	}
	return r.GetRootHash(nil)
}

// nodeHash reads one node of the tree: a stored interior node, or one
// below minStoredLevel computed from the ledger entries under it.
func nodeHash(tx Tx, id compact.NodeID) ([]byte, error) {
	if id.Level == 0 {
		e, err := getEntry(tx, id.Index+1)
		if err != nil {
			return nil, err
		}
		return ica.LeafHash(e.Hash)
	}
	if id.Level < minStoredLevel {
		l, err := nodeHash(tx, compact.NewNodeID(id.Level-1, 2*id.Index))
		if err != nil {
			return nil, err
		}
		r, err := nodeHash(tx, compact.NewNodeID(id.Level-1, 2*id.Index+1))
		if err != nil {
			return nil, err
		}
		return ica.HashChildren(l, r), nil
	}
	v := tx.Bucket(bucketMerkle).Get(merkleKey(id))
	if len(v) != 32 {
		return nil, fmt.Errorf("Merkle node (level %d, index %d) is missing", id.Level, id.Index)
	}
	return append([]byte(nil), v...), nil
}

func nodeHashes(tx Tx, ids []compact.NodeID) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := nodeHash(tx, id)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// treeSize returns the size of the tree kept in meta.
func treeSize(tx Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyMerkle)
	if len(v) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v[:8])
}

// rootAt returns the root of the tree of the first size entries, from
// O(log size) stored nodes.
func rootAt(tx Tx, size uint64) ([]byte, error) {
	if size == 0 {
		return ica.EmptyTreeRoot(), nil
	}
	if ts := treeSize(tx); size > ts {
		return nil, fmt.Errorf("the Merkle log has %d entries, not %d", ts, size)
	}
	ids := compact.RangeNodes(0, size, nil)
	hs, err := nodeHashes(tx, ids)
	if err != nil {
		return nil, err
	}
	r, err := rangeFactory.NewRange(0, size, hs)
	if err != nil {
		return nil, err
	}
	return r.GetRootHash(nil)
}

// inclusionProof returns the audit path of leaf index in the tree of size.
func inclusionProof(tx Tx, index, size uint64) ([][]byte, error) {
	return proofHashes(tx, size, func() (proof.Nodes, error) { return proof.Inclusion(index, size) })
}

// consistencyProof returns the proof that the tree of size2 extends the
// tree of size1.
func consistencyProof(tx Tx, size1, size2 uint64) ([][]byte, error) {
	return proofHashes(tx, size2, func() (proof.Nodes, error) { return proof.Consistency(size1, size2) })
}

// proofHashes reads the stored nodes a proof in the tree of size names and
// hashes them into the proof.
func proofHashes(tx Tx, size uint64, nodes func() (proof.Nodes, error)) ([][]byte, error) {
	if ts := treeSize(tx); size > ts {
		return nil, fmt.Errorf("the Merkle log has %d entries, not %d", ts, size)
	}
	n, err := nodes()
	if err != nil {
		return nil, err
	}
	hs, err := nodeHashes(tx, n.IDs)
	if err != nil {
		return nil, err
	}
	return n.Rehash(hs, ica.HashChildren)
}

// backfillMerkle builds the tree of a ledger written before the Merkle log
// (or extends one an older replica left behind), in transactions of a few
// thousand entries, before the store serves.
func (s *Store) backfillMerkle() error {
	const chunk = 20000
	behind := false
	if err := s.eng.View(func(tx Tx) error {
		head, _ := readHead(tx)
		behind = treeSize(tx) < head
		return nil
	}); err != nil || !behind {
		return err
	}
	for {
		wtx, err := s.eng.Begin(context.Background())
		if err != nil {
			return fmt.Errorf("ledger %s: %w", s.eng.Describe(), err)
		}
		head, _ := readHead(wtx)
		r, err := readRange(wtx)
		if err != nil {
			wtx.Rollback()
			return err
		}
		if r.End() >= head {
			wtx.Rollback()
			return nil
		}
		if r.End() == 0 {
			s.log.Info("building the ledger's Merkle log", "entries", head)
		}
		if err := merkleCatchUp(wtx, r, head, chunk); err != nil {
			wtx.Rollback()
			return err
		}
		if err := writeRange(wtx, r); err != nil {
			wtx.Rollback()
			return err
		}
		if err := wtx.Commit(); err != nil {
			return err
		}
	}
}

// Root returns the Merkle root of the first size entries (hex).
func (s *Store) Root(size uint64) (string, error) {
	var out string
	err := s.view(func(tx Tx) error {
		r, err := rootAt(tx, size)
		out = hex.EncodeToString(r)
		return err
	})
	return out, err
}

// ConsistencyProof returns the RFC 6962 proof that the tree of size2
// entries extends the tree of size1 (hex hashes).
func (s *Store) ConsistencyProof(size1, size2 uint64) ([]string, error) {
	var out []string
	err := s.view(func(tx Tx) error {
		p, err := consistencyProof(tx, size1, size2)
		out = ica.EncodeHashes(p)
		return err
	})
	return out, err
}
