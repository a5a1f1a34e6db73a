package export

import (
	"crypto"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Export formats.
const (
	FormatCSV  = "csv"
	FormatJSON = "json"
	FormatPDF  = "pdf"
)

// Options describe one export.
type Options struct {
	// Format is "csv", "json" or "pdf" (used by NewEncoder only).
	Format string
	// From and To are the requested period, To exclusive; zero means
	// unbounded. They are recorded in the manifest, not enforced: the
	// caller selects the entries.
	From, To time.Time
	// Filter describes any further selection, e.g. "pipeline=payments".
	Filter string
	// Key signs the manifest (the ledger's Ed25519 key).
	Key ed25519.PrivateKey
	// Signer, when set, signs instead of Key (a key held elsewhere); its
	// public key must be Ed25519.
	Signer crypto.Signer
	// Head is the signed checkpoint of the ledger head at export time; every
	// exported entry must be at or before it.
	Head ica.Checkpoint
	// GeneratedAt is when the export was made (the caller's clock).
	GeneratedAt time.Time
}

// Encoder writes one export. Encode takes entries in strictly ascending seq;
// Close writes the signed manifest and returns it. Close does not close the
// underlying writer.
type Encoder interface {
	Encode(e *ica.LedgerEntry) error
	Close() (*Manifest, error)
}

// NewEncoder returns the encoder for opt.Format.
func NewEncoder(w io.Writer, opt Options) (Encoder, error) {
	switch strings.ToLower(opt.Format) {
	case FormatCSV:
		return NewCSVEncoder(w, opt)
	case FormatJSON, "jsonl", "ndjson":
		return NewJSONEncoder(w, opt)
	case FormatPDF:
		return NewPDFEncoder(w, opt)
	}
	return nil, ica.FieldErrorf(ica.EINVALID, "format", "export format %q is not one of csv, json, pdf", opt.Format)
}

// base is what every encoder shares: option checks, entry checks and the
// running tally behind the manifest.
type base struct {
	format string
	opt    Options
	signer crypto.Signer
	pubHex string
	t      *tally
	closed bool
	err    error // sticky write error
}

func newBase(format string, opt Options) (*base, error) {
	signer := opt.Signer
	if signer == nil {
		if len(opt.Key) != ed25519.PrivateKeySize {
			return nil, ica.FieldErrorf(ica.EINVALID, "key", "export needs the Ed25519 ledger key to sign the manifest")
		}
		signer = opt.Key
	}
	pub, ok := signer.Public().(ed25519.PublicKey)
	if !ok {
		return nil, ica.FieldErrorf(ica.EINVALID, "key", "export signer must hold an Ed25519 key, not %T", signer.Public())
	}
	pubHex := hex.EncodeToString(pub)
	if err := opt.Head.Verify(); err != nil {
		return nil, ica.FieldErrorf(ica.EINVALID, "head", "head checkpoint: %v", err)
	}
	if opt.Head.PublicKey != pubHex {
		return nil, ica.FieldErrorf(ica.EINVALID, "head", "head checkpoint is signed by key %s, not the export key %s",
			ica.KeyFingerprint(opt.Head.PublicKey), ica.KeyFingerprint(pubHex))
	}
	if !opt.From.IsZero() && !opt.To.IsZero() && !opt.From.Before(opt.To) {
		return nil, ica.FieldErrorf(ica.EINVALID, "to", "export period is empty: from %s is not before to %s",
			opt.From.UTC().Format(time.RFC3339), opt.To.UTC().Format(time.RFC3339))
	}
	if opt.GeneratedAt.IsZero() {
		opt.GeneratedAt = time.Now()
	}
	opt.From, opt.To, opt.GeneratedAt = utc(opt.From), utc(opt.To), opt.GeneratedAt.UTC()
	opt.Head.Time = opt.Head.Time.UTC()
	return &base{format: format, opt: opt, signer: signer, pubHex: pubHex, t: newTally()}, nil
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// check refuses entries that would make an export that cannot verify: out of
// order, past the head, or disagreeing with the head checkpoint.
func (b *base) check(e *ica.LedgerEntry) error {
	if b.closed {
		return fmt.Errorf("export: encode after close")
	}
	if b.err != nil {
		return b.err
	}
	if e == nil {
		return fmt.Errorf("export: nil entry")
	}
	if e.Seq == 0 {
		return fmt.Errorf("export: entry seq 0: ledger seqs start at 1")
	}
	if b.t.count > 0 && e.Seq <= b.t.last() {
		return fmt.Errorf("export: entry seq %d after seq %d: entries must be in ascending seq", e.Seq, b.t.last())
	}
	if e.Seq > b.opt.Head.Seq {
		return fmt.Errorf("export: entry seq %d is past the head checkpoint (seq %d)", e.Seq, b.opt.Head.Seq)
	}
	if e.Seq == b.opt.Head.Seq && e.Hash != b.opt.Head.Hash {
		return fmt.Errorf("export: entry seq %d has hash %s but the head checkpoint says %s", e.Seq, e.Hash, b.opt.Head.Hash)
	}
	return nil
}

// manifest builds and signs the manifest; it is called once, by Close.
func (b *base) manifest() (*Manifest, error) {
	kinds := b.t.kinds
	m := &Manifest{
		Version:      ManifestVersion,
		Format:       b.format,
		From:         b.opt.From,
		To:           b.opt.To,
		Filter:       b.opt.Filter,
		Count:        b.t.count,
		CountsByKind: kinds,
		FirstSeq:     b.t.first(),
		LastSeq:      b.t.last(),
		Seqs:         b.t.seqs(),
		Digest:       b.t.sum(),
		Head:         b.opt.Head,
		GeneratedAt:  b.opt.GeneratedAt,
	}
	if err := m.sign(b.signer); err != nil {
		return nil, err
	}
	return m, nil
}

// shortHash abbreviates a hash for people; the full value is in the file.
func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}
