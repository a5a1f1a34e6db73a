package export

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// ManifestVersion is the version of the export format described in the
// package documentation.
const ManifestVersion = 1

// Manifest describes and signs one export. Signature is the Ed25519
// signature over the canonical JSON of every other field (see the package
// documentation).
type Manifest struct {
	Version int    `json:"version"`
	Format  string `json:"format"`
	// From and To are the requested period (To exclusive); zero means unbounded.
	From   time.Time `json:"from,omitzero"`
	To     time.Time `json:"to,omitzero"`
	Filter string    `json:"filter,omitempty"`
	// Count is the number of records; CountsByKind splits it by entry kind.
	Count        uint64            `json:"count"`
	CountsByKind map[string]uint64 `json:"counts_by_kind"`
	// FirstSeq and LastSeq are the seqs of the first and last record (0 when empty).
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Seqs lists the seqs of the records as ascending ranges: "1-500,702-900,905".
	Seqs string `json:"seqs"`
	// Digest is hex SHA-256 over "<seq>:<hash>\n" for every record in order.
	Digest string `json:"digest"`
	// Head is the signed checkpoint of the ledger head at export time.
	Head        ica.Checkpoint `json:"head"`
	GeneratedAt time.Time      `json:"generated_at"`
	PublicKey   string         `json:"public_key"`  // hex Ed25519 public key
	Fingerprint string         `json:"fingerprint"` // ica.KeyFingerprint(PublicKey)
	Signature   string         `json:"signature,omitempty"`
}

// SigningBytes returns the bytes the signature covers: the canonical JSON
// of the manifest without its signature.
func (m *Manifest) SigningBytes() ([]byte, error) {
	c := *m
	c.Signature = ""
	raw, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	return signingBytesRaw(raw)
}

// signingBytesRaw canonicalises a manifest object as found in a file, so
// that verification covers exactly the fields written, known or not.
func signingBytesRaw(raw []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("manifest is not a JSON object")
	}
	delete(obj, "signature")
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return ica.CanonicalJSON(b)
}

// sign fills PublicKey, Fingerprint and Signature using signer.
func (m *Manifest) sign(signer crypto.Signer) error {
	pub, ok := signer.Public().(ed25519.PublicKey)
	if !ok {
		return fmt.Errorf("export: manifest signer must hold an Ed25519 key, not %T", signer.Public())
	}
	m.PublicKey = hex.EncodeToString(pub)
	m.Fingerprint = ica.KeyFingerprint(m.PublicKey)
	msg, err := m.SigningBytes()
	if err != nil {
		return fmt.Errorf("export: encode manifest: %w", err)
	}
	sig, err := signer.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil {
		return fmt.Errorf("export: sign manifest: %w", err)
	}
	m.Signature = hex.EncodeToString(sig)
	return nil
}

// VerifySignature checks the manifest's signature against its own public
// key. It re-encodes the struct, so it only covers the fields this version
// knows; Verify checks the raw manifest from the file instead.
func (m *Manifest) VerifySignature() error {
	msg, err := m.SigningBytes()
	if err != nil {
		return err
	}
	return verifySig(m.PublicKey, m.Signature, msg)
}

func verifySig(pubHex, sigHex string, msg []byte) error {
	pub, err := hex.DecodeString(pubHex)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return errors.New("manifest public key is malformed")
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errors.New("manifest signature is malformed")
	}
	if !ed25519.Verify(pub, msg, sig) {
		return errors.New("manifest signature does not verify")
	}
	return nil
}

// tally accumulates what a manifest says about a sequence of records; the
// encoders and the verifier share it so both compute the same thing.
type tally struct {
	count  uint64
	kinds  map[string]uint64
	digest hash.Hash
	line   []byte
	// ranges are the seqs in file order, consecutive seqs merged.
	ranges []seqRange
}

func newTally() *tally {
	return &tally{kinds: make(map[string]uint64), digest: sha256.New()}
}

// add records one record. Callers check ordering themselves; add only
// merges a seq that follows the previous one into its range.
func (t *tally) add(seq uint64, kind, hash string) {
	if n := len(t.ranges); n > 0 && t.ranges[n-1].hi != ^uint64(0) && seq == t.ranges[n-1].hi+1 {
		t.ranges[n-1].hi = seq
	} else {
		t.ranges = append(t.ranges, seqRange{seq, seq})
	}
	t.count++
	t.kinds[kind]++
	t.line = strconv.AppendUint(t.line[:0], seq, 10)
	t.line = append(t.line, ':')
	t.line = append(t.line, hash...)
	t.line = append(t.line, '\n')
	t.digest.Write(t.line)
}

func (t *tally) first() uint64 {
	if len(t.ranges) == 0 {
		return 0
	}
	return t.ranges[0].lo
}

func (t *tally) last() uint64 {
	if len(t.ranges) == 0 {
		return 0
	}
	return t.ranges[len(t.ranges)-1].hi
}

// seqs formats the ranges as a manifest range list.
func (t *tally) seqs() string {
	var b []byte
	for i, r := range t.ranges {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, r.lo, 10)
		if r.hi != r.lo {
			b = append(b, '-')
			b = strconv.AppendUint(b, r.hi, 10)
		}
	}
	return string(b)
}

func (t *tally) sum() string { return hex.EncodeToString(t.digest.Sum(nil)) }

// seqRange is an inclusive range of seqs.
type seqRange struct{ lo, hi uint64 }

// parseSeqs parses a manifest range list, requiring ascending,
// non-overlapping ranges.
func parseSeqs(s string) ([]seqRange, error) {
	if s == "" {
		return nil, nil
	}
	var out []seqRange
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad range %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a {
				return nil, fmt.Errorf("bad range %q", part)
			}
		}
		if n := len(out); n > 0 && a <= out[n-1].hi {
			return nil, fmt.Errorf("range %q is not after the previous one", part)
		}
		out = append(out, seqRange{a, b})
	}
	return out, nil
}

// seqDiff walks the expected (manifest) and observed (file order) ranges
// together and describes the first seq where they differ. It works range by
// range, so a range list claiming billions of seqs costs nothing.
func seqDiff(want, got []seqRange) (seq uint64, msg string, differ bool) {
	var i, j int
	var w, g seqRange
	if len(want) > 0 {
		w = want[0]
	}
	if len(got) > 0 {
		g = got[0]
	}
	for {
		if i == len(want) && j == len(got) {
			return 0, "", false
		}
		if i == len(want) || (j < len(got) && g.lo < w.lo) {
			return g.lo, fmt.Sprintf("record seq %d is not listed in the manifest (inserted)", g.lo), true
		}
		if j == len(got) || w.lo < g.lo {
			return w.lo, fmt.Sprintf("record seq %d is missing", w.lo), true
		}
		end := min(w.hi, g.hi)
		if end == w.hi {
			if i++; i < len(want) {
				w = want[i]
			}
		} else {
			w.lo = end + 1
		}
		if end == g.hi {
			if j++; j < len(got) {
				g = got[j]
			}
		} else {
			g.lo = end + 1
		}
	}
}
