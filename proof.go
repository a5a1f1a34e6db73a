package ica

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// ProofFormat is the format name of a proof bundle.
const ProofFormat = "ica-proof/v1"

// MaxProofBundle bounds the size of a proof bundle ICA parses.
const MaxProofBundle = 1 << 20

// ProofBundle proves one ledger entry offline: the entry, its RFC 6962
// inclusion proof in the tree of TreeSize entries, and the signed checkpoint
// of that tree. Checked against the ledger's public key, it shows that the
// entry is exactly what the ledger committed to; a witnessed checkpoint of
// the same size shows it was committed to publicly.
type ProofBundle struct {
	Format string      `json:"format"`
	Entry  LedgerEntry `json:"entry"`
	// LeafIndex is Entry.Seq - 1.
	LeafIndex uint64 `json:"leaf_index"`
	TreeSize  uint64 `json:"tree_size"`
	// Inclusion is the audit path, hex hashes from the leaf up.
	Inclusion []string `json:"inclusion"`
	// Checkpoint is the signed checkpoint note of the tree of TreeSize entries.
	Checkpoint string `json:"checkpoint"`
	// PublicKey is the hex Ed25519 key the checkpoint is signed with (a
	// claim: the verifier trusts the key it is given, not this one).
	PublicKey string `json:"public_key"`
	// Witness says where the checkpoint was published, when it was.
	Witness *WitnessReceipt `json:"witness,omitempty"`
}

// WitnessReceipt records that a checkpoint was published outside the
// ledger's storage.
type WitnessReceipt struct {
	Where string    `json:"where"`
	At    time.Time `json:"at"`
}

// ProofResult is what a verified bundle proves.
type ProofResult struct {
	Seq         uint64    `json:"seq"`
	Kind        string    `json:"kind"`
	Subject     string    `json:"subject"`
	Hash        string    `json:"hash"`
	TreeSize    uint64    `json:"tree_size"`
	Origin      string    `json:"origin"`
	SignedAt    time.Time `json:"signed_at"`
	Fingerprint string    `json:"fingerprint"`
}

// ParseProofBundle reads a bundle: one JSON object, no unknown fields, no
// more than MaxProofBundle bytes.
func ParseProofBundle(raw []byte) (*ProofBundle, error) {
	if len(raw) > MaxProofBundle {
		return nil, fmt.Errorf("proof bundle is larger than %d bytes", MaxProofBundle)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var b ProofBundle
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("proof bundle is not readable: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("proof bundle: data after the object")
	}
	if b.Format != ProofFormat {
		return nil, fmt.Errorf("proof bundle: format %q, expected %q", clip(b.Format, 40), ProofFormat)
	}
	if len(b.Inclusion) > 64 {
		return nil, errors.New("proof bundle: the inclusion proof is longer than any tree needs")
	}
	return &b, nil
}

// Verify checks the bundle against the ledger's public key (the one the
// auditor trusts; the bundle's own claim is compared with it). The error
// says what does not hold.
func (b *ProofBundle) Verify(pub ed25519.PublicKey) (*ProofResult, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("the public key is not an Ed25519 key")
	}
	want := hex.EncodeToString(pub)
	if b.PublicKey != "" && b.PublicKey != want {
		return nil, fmt.Errorf("the bundle names key %s, not the key you trust (%s)", KeyFingerprint(b.PublicKey), KeyFingerprint(want))
	}
	e := &b.Entry
	h, err := e.ComputeHash()
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", e.Seq, err)
	}
	if h != e.Hash {
		return nil, fmt.Errorf("entry %d: its hash does not match its content (the entry was altered)", e.Seq)
	}
	if e.Seq == 0 || b.LeafIndex != e.Seq-1 {
		return nil, fmt.Errorf("entry %d is not leaf %d", e.Seq, b.LeafIndex)
	}
	cp, err := OpenCheckpointNote([]byte(b.Checkpoint), pub, "")
	if err != nil {
		return nil, err
	}
	if cp.Size != b.TreeSize {
		return nil, fmt.Errorf("the checkpoint is of size %d, the proof of size %d", cp.Size, b.TreeSize)
	}
	if b.LeafIndex >= b.TreeSize {
		return nil, fmt.Errorf("entry %d is not in a tree of %d entries", e.Seq, b.TreeSize)
	}
	if b.TreeSize == e.Seq && cp.ChainHead != e.Hash {
		return nil, fmt.Errorf("entry %d is the checkpoint's last entry but its hash differs from the signed chain head", e.Seq)
	}
	path, err := DecodeHashes(b.Inclusion)
	if err != nil {
		return nil, err
	}
	leaf, err := LeafHash(e.Hash)
	if err != nil {
		return nil, err
	}
	if err := VerifyInclusion(b.LeafIndex, b.TreeSize, leaf, path, cp.Root); err != nil {
		return nil, fmt.Errorf("entry %d is not included in the signed tree of %d entries: the inclusion proof does not lead to its root", e.Seq, b.TreeSize)
	}
	return &ProofResult{Seq: e.Seq, Kind: e.Kind, Subject: e.Subject, Hash: e.Hash, TreeSize: cp.Size,
		Origin: cp.Origin, SignedAt: cp.Time, Fingerprint: KeyFingerprint(want)}, nil
}
