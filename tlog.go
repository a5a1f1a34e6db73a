package ica

// The verifiable log. Besides the hash chain, the ledger is an RFC 6962
// Merkle tree whose leaves are the entries' hashes (32 bytes, hex-decoded):
// leaf i is entry seq i+1, and a tree of size n covers entries 1..n. Signed
// checkpoints follow the C2SP tlog-checkpoint format (a signed note):
//
//	<origin>
//	<tree size>
//	<base64 RFC 6962 root>
//	ica-chain-head <hex hash of entry <tree size>>
//	ica-time <RFC 3339 time of signing>
//
//	— <origin> <base64 Ed25519 note signature>
//
// The origin is "<public host>/ledger/<ledger id>" and is also the note
// key's name, so standard tooling (golang.org/x/mod/sumdb/note,
// transparency-dev/formats/log) reads and verifies it. The extension lines
// bind the chain's head at that size, so a checkpoint speaks for both
// structures.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	tlog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Extension lines of ICA's checkpoints.
const (
	noteChainHead = "ica-chain-head "
	noteTime      = "ica-time "
)

// MaxCheckpointNote bounds the size of a checkpoint note ICA parses.
const MaxCheckpointNote = 4096

// PlaceholderHost names the log in checkpoint origins when ICA_PUBLIC_URL
// is not set (RFC 2606 reserves .invalid: it never resolves).
const PlaceholderHost = "ica.invalid"

// CheckpointOrigin returns the origin of a ledger's checkpoints:
// "<public host>/ledger/<ledger id>". host may be a URL (its scheme is
// dropped) or empty (the placeholder).
func CheckpointOrigin(host, ledgerID string) string {
	h := strings.TrimSpace(host)
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	if i := strings.IndexAny(h, "?#"); i >= 0 {
		h = h[:i]
	}
	if i := strings.LastIndex(h, "@"); i >= 0 {
		h = h[i+1:]
	}
	h = strings.Trim(h, "/")
	if h == "" || strings.ContainsAny(h, " +\t\n") {
		h = PlaceholderHost
	}
	return h + "/ledger/" + ledgerID
}

// CheckpointNote is the content of a signed checkpoint.
type CheckpointNote struct {
	Origin string
	Size   uint64
	// Root is the RFC 6962 root of the tree of Size entries.
	Root []byte
	// ChainHead is the hash of entry Size (GenesisHash when Size is 0).
	ChainHead string
	// Time is when ICA signed it.
	Time time.Time
}

// Text returns the note text (what the signature covers).
func (c *CheckpointNote) Text() string {
	var b strings.Builder
	b.Write(tlog.Checkpoint{Origin: c.Origin, Size: c.Size, Hash: c.Root}.Marshal())
	b.WriteString(noteChainHead + c.ChainHead + "\n")
	b.WriteString(noteTime + c.Time.UTC().Format(time.RFC3339Nano) + "\n")
	return b.String()
}

// NoteVerifier returns the note verifier of a ledger's key: the key's name
// is the origin.
func NoteVerifier(origin string, pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key for %q: %w", origin, err)
	}
	return note.NewVerifier(vkey)
}

// NoteVerifierKey returns the verifier key in the note format
// ("<origin>+<hash>+<base64 key>"), which standard tooling takes.
func NoteVerifierKey(origin string, pub ed25519.PublicKey) (string, error) {
	return note.NewEd25519VerifierKey(origin, pub)
}

// noteSigner signs notes with an Ed25519 key under a name.
type noteSigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s noteSigner) Name() string                    { return s.name }
func (s noteSigner) KeyHash() uint32                 { return s.hash }
func (s noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// NoteSigner returns a note signer for the ledger's key under origin.
func NoteSigner(origin string, key ed25519.PrivateKey) (note.Signer, error) {
	v, err := NoteVerifier(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return noteSigner{name: origin, hash: v.KeyHash(), key: key}, nil
}

// SignCheckpointNote returns the signed note of c.
func SignCheckpointNote(key ed25519.PrivateKey, c *CheckpointNote) (string, error) {
	s, err := NoteSigner(c.Origin, key)
	if err != nil {
		return "", err
	}
	raw, err := note.Sign(&note.Note{Text: c.Text()}, s)
	if err != nil {
		return "", fmt.Errorf("sign checkpoint %d: %w", c.Size, err)
	}
	return string(raw), nil
}

// ErrNoteSignature means a checkpoint note is well formed but not signed by
// the key it was checked against.
var ErrNoteSignature = errors.New("the checkpoint is not signed by this ledger's key")

// OpenCheckpointNote verifies a signed checkpoint note against the ledger's
// public key and parses it. origin, when set, is the origin the note must
// name; when empty, the note's own first line is used (the key decides).
func OpenCheckpointNote(raw []byte, pub ed25519.PublicKey, origin string) (*CheckpointNote, error) {
	if len(raw) > MaxCheckpointNote {
		return nil, fmt.Errorf("checkpoint note is larger than %d bytes", MaxCheckpointNote)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("checkpoint note: the public key is not an Ed25519 key")
	}
	if origin == "" {
		first, _, ok := bytes.Cut(raw, []byte("\n"))
		if !ok || len(first) == 0 {
			return nil, errors.New("checkpoint note: no origin line")
		}
		origin = string(first)
	}
	v, err := NoteVerifier(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("checkpoint note: origin %q cannot name a key", clip(origin, 80))
	}
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return nil, ErrNoteSignature
		}
		return nil, fmt.Errorf("checkpoint note: %w", err)
	}
	c, err := ParseCheckpointText(n.Text)
	if err != nil {
		return nil, err
	}
	if c.Origin != origin {
		return nil, fmt.Errorf("checkpoint note: origin %q, expected %q", clip(c.Origin, 80), clip(origin, 80))
	}
	return c, nil
}

// ParseCheckpointText parses the text of a checkpoint note (without its
// signatures): the C2SP lines, then ICA's extension lines, which must be
// present exactly once each.
func ParseCheckpointText(text string) (*CheckpointNote, error) {
	if len(text) > MaxCheckpointNote {
		return nil, fmt.Errorf("checkpoint note is larger than %d bytes", MaxCheckpointNote)
	}
	var cp tlog.Checkpoint
	rest, err := cp.Unmarshal([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("checkpoint note: %w", err)
	}
	if len(cp.Hash) != 32 {
		return nil, fmt.Errorf("checkpoint note: root hash is %d bytes, not 32", len(cp.Hash))
	}
	c := &CheckpointNote{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash}
	var haveHead, haveTime bool
	for _, line := range strings.Split(strings.TrimSuffix(string(rest), "\n"), "\n") {
		switch {
		case line == "" && len(rest) == 0:
		case strings.HasPrefix(line, noteChainHead) && !haveHead:
			h := strings.TrimPrefix(line, noteChainHead)
			if b, err := hex.DecodeString(h); err != nil || len(b) != 32 || h != strings.ToLower(h) {
				return nil, errors.New("checkpoint note: ica-chain-head is not a hex SHA-256")
			}
			c.ChainHead, haveHead = h, true
		case strings.HasPrefix(line, noteTime) && !haveTime:
			t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(line, noteTime))
			if err != nil {
				return nil, errors.New("checkpoint note: ica-time is not an RFC 3339 time")
			}
			c.Time, haveTime = t.UTC(), true
		default:
			return nil, fmt.Errorf("checkpoint note: unexpected line %q", clip(line, 60))
		}
	}
	if !haveHead || !haveTime {
		return nil, errors.New("checkpoint note: ica-chain-head or ica-time is missing")
	}
	if c.Text() != text {
		return nil, errors.New("checkpoint note: not in canonical form")
	}
	return c, nil
}

// LeafHash is the RFC 6962 leaf hash of an entry: SHA-256(0x00 ‖ the entry's
// 32-byte hash).
func LeafHash(entryHash string) ([]byte, error) {
	b, err := hex.DecodeString(entryHash)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("entry hash %q is not a hex SHA-256", clip(entryHash, 80))
	}
	return rfc6962.DefaultHasher.HashLeaf(b), nil
}

// EmptyTreeRoot is the RFC 6962 root of a tree with no entries.
func EmptyTreeRoot() []byte { return rfc6962.DefaultHasher.EmptyRoot() }

// HashChildren is the RFC 6962 hash of an interior node.
func HashChildren(l, r []byte) []byte { return rfc6962.DefaultHasher.HashChildren(l, r) }

// VerifyInclusion checks that leaf (a LeafHash) is leaf index of the tree
// of size entries whose root is root.
func VerifyInclusion(index, size uint64, leaf []byte, path [][]byte, root []byte) error {
	return proof.VerifyInclusion(rfc6962.DefaultHasher, index, size, leaf, path, root)
}

// VerifyConsistency checks that the tree of size2 with root2 extends the
// tree of size1 with root1.
func VerifyConsistency(size1, size2 uint64, path [][]byte, root1, root2 []byte) error {
	return proof.VerifyConsistency(rfc6962.DefaultHasher, size1, size2, path, root1, root2)
}

// DecodeHashes decodes hex hashes (a proof in JSON).
func DecodeHashes(hs []string) ([][]byte, error) {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("proof hash %d is not a hex SHA-256", i)
		}
		out[i] = b
	}
	return out, nil
}

// EncodeHashes encodes hashes as hex.
func EncodeHashes(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}
