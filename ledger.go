package ica

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// GenesisHash is the prev_hash of the first ledger entry.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// LedgerEntry is one link of the tamper-evident hash chain. Hash is
// SHA-256(prev_hash ‖ canonical JSON of {seq, time, kind, subject, actor, data}),
// hex-encoded; canonical JSON sorts object keys, uses no insignificant space
// and does not escape HTML characters; time is RFC 3339 with nanoseconds in UTC.
type LedgerEntry struct {
	Seq      uint64          `json:"seq"`
	Time     time.Time       `json:"time"`
	Kind     string          `json:"kind"`
	Subject  string          `json:"subject"`
	Actor    string          `json:"actor"`
	Data     json.RawMessage `json:"data"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// MarshalRecord returns the entry as json.Marshal does, byte for byte, for
// an entry whose Data is canonical (the store's own writes): it does not
// validate and compact Data again, as json.Marshal would.
func (e *LedgerEntry) MarshalRecord() ([]byte, error) {
	if bytes.ContainsAny(e.Data, "<>&") || !plainJSONString(e.Kind) || !plainJSONString(e.Subject) ||
		!plainJSONString(e.Actor) || !plainJSONString(e.PrevHash) || !plainJSONString(e.Hash) {
		// json.Marshal escapes these as \u003c …: let it.
		return json.Marshal(e)
	}
	t, err := e.Time.MarshalJSON()
	if err != nil {
		return nil, err
	}
	data := []byte(e.Data)
	if len(data) == 0 {
		data = []byte("null")
	}
	b := make([]byte, 0, len(data)+len(e.Kind)+len(e.Subject)+len(e.Actor)+len(e.PrevHash)+len(e.Hash)+len(t)+100)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":`...)
	b = append(b, t...)
	str := func(name, s string) {
		b = append(b, `,"`...)
		b = append(b, name...)
		b = append(b, `":"`...)
		b = append(b, s...)
		b = append(b, '"')
	}
	str("kind", e.Kind)
	str("subject", e.Subject)
	str("actor", e.Actor)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	str("prev_hash", e.PrevHash)
	str("hash", e.Hash)
	return append(b, '}'), nil
}

// plainJSONString reports whether json.Marshal writes s as it is, between
// quotes: printable ASCII without quotes, backslashes or HTML characters.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// CanonicalJSON re-encodes a JSON value with sorted keys and no spaces
// (see Canonicalizer). It refuses what it could not keep exactly: data after
// the value, repeated object keys and invalid UTF-8 (each would let two
// different inputs hash alike).
func CanonicalJSON(raw []byte) ([]byte, error) {
	return NewCanonicalizer().Canonical(raw, nil)
}

// ComputeHash returns the hash the entry should carry given its PrevHash.
func (e *LedgerEntry) ComputeHash() (string, error) {
	c := NewCanonicalizer()
	data := []byte("null")
	if len(e.Data) > 0 {
		var err error
		if data, err = c.Canonical(e.Data, nil); err != nil {
			return "", err
		}
	}
	return c.HashEntry(e, data), nil
}

// HashCanonical is ComputeHash for an entry whose Data is already canonical
// JSON (the store's own writes), without canonicalising it again.
func (e *LedgerEntry) HashCanonical() (string, error) {
	data := []byte(e.Data)
	if len(data) == 0 {
		data = []byte("null")
	}
	return NewCanonicalizer().HashEntry(e, data), nil
}

// Verify checks that the entry follows prev (nil for the first entry) and that
// its hash is right. The error says which property failed.
func (e *LedgerEntry) Verify(prev *LedgerEntry) error {
	wantPrev, wantSeq := GenesisHash, uint64(1)
	if prev != nil {
		wantPrev, wantSeq = prev.Hash, prev.Seq+1
	}
	if e.Seq != wantSeq {
		return fmt.Errorf("entry seq %d: expected seq %d (an entry is missing or out of order)", e.Seq, wantSeq)
	}
	if e.PrevHash != wantPrev {
		return fmt.Errorf("entry seq %d: prev_hash does not match the hash of entry %d", e.Seq, wantSeq-1)
	}
	h, err := e.ComputeHash()
	if err != nil {
		return fmt.Errorf("entry seq %d: %w", e.Seq, err)
	}
	if h != e.Hash {
		return fmt.Errorf("entry seq %d: hash does not match its content (the entry was altered)", e.Seq)
	}
	return nil
}

// Checkpoint is an Ed25519 signature over a chain position, so that a copy of
// the ledger (an export) can be checked against the key without the database.
// Signature is the original ica-checkpoint:v1 signature over (seq, hash);
// checkpoints signed since the ledger became a Merkle log also carry Root
// and Note, the C2SP signed note over the tree of Seq entries (see tlog.go).
type Checkpoint struct {
	Seq       uint64    `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	PublicKey string    `json:"public_key"` // hex Ed25519 public key
	Signature string    `json:"signature"`  // hex
	// Origin names the log (the note's first line and key name).
	Origin string `json:"origin,omitempty"`
	// Root is the hex RFC 6962 root of the tree of Seq entries.
	Root string `json:"root,omitempty"`
	// Note is the signed checkpoint note.
	Note string `json:"note,omitempty"`
}

// CheckpointMessage is the byte string a checkpoint signs.
func CheckpointMessage(seq uint64, hash string) []byte {
	return fmt.Appendf(nil, "ica-checkpoint:v1:%d:%s", seq, hash)
}

// SignCheckpoint signs (seq, hash) with key.
func SignCheckpoint(key ed25519.PrivateKey, seq uint64, hash string, at time.Time) Checkpoint {
	pub := key.Public().(ed25519.PublicKey)
	return Checkpoint{
		Seq: seq, Hash: hash, Time: at.UTC(),
		PublicKey: hex.EncodeToString(pub),
		Signature: hex.EncodeToString(ed25519.Sign(key, CheckpointMessage(seq, hash))),
	}
}

// Verify checks the checkpoint's signature against its own public key; callers
// that trust a particular key compare PublicKey (or KeyFingerprint) too.
func (c *Checkpoint) Verify() error {
	pub, err := hex.DecodeString(c.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("checkpoint %d: malformed public key", c.Seq)
	}
	sig, err := hex.DecodeString(c.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("checkpoint %d: malformed signature", c.Seq)
	}
	if !ed25519.Verify(pub, CheckpointMessage(c.Seq, c.Hash), sig) {
		return fmt.Errorf("checkpoint %d: signature does not verify", c.Seq)
	}
	if c.Note == "" && c.Root == "" && c.Origin == "" {
		return nil // signed before the ledger was a Merkle log
	}
	n, err := c.OpenNote(pub)
	if err != nil {
		return err
	}
	if n.Origin != c.Origin || hex.EncodeToString(n.Root) != c.Root {
		return fmt.Errorf("checkpoint %d: its note names another origin or root than the checkpoint", c.Seq)
	}
	return nil
}

// OpenNote verifies the checkpoint's signed note with pub and checks that it
// is about the same chain position (size and chain head).
func (c *Checkpoint) OpenNote(pub ed25519.PublicKey) (*CheckpointNote, error) {
	if c.Note == "" {
		return nil, fmt.Errorf("checkpoint %d: it carries no signed note", c.Seq)
	}
	n, err := OpenCheckpointNote([]byte(c.Note), pub, c.Origin)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d: %w", c.Seq, err)
	}
	if n.Size != c.Seq || n.ChainHead != c.Hash {
		return nil, fmt.Errorf("checkpoint %d: its note is about size %d, chain head %s", c.Seq, n.Size, n.ChainHead)
	}
	return n, nil
}

// KeyFingerprint is a short, stable name for a public key (hex): the first 16
// bytes of its SHA-256, in hex, grouped for reading aloud.
func KeyFingerprint(publicKeyHex string) string {
	raw, err := hex.DecodeString(publicKeyHex)
	if err != nil {
		return "invalid"
	}
	sum := sha256.Sum256(raw)
	s := hex.EncodeToString(sum[:16])
	var b bytes.Buffer
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(s[i : i+4])
	}
	return b.String()
}

// Ledger entry kinds.
const (
	KindRunStarted          = "run.started"
	KindRunEvent            = "run.event"
	KindRunFinished         = "run.finished"
	KindApprovalRequested   = "approval.requested"
	KindApprovalTransition  = "approval." // + resulting status
	KindApprovalCard        = "approval.card_posted"
	KindApprovalReminder    = "approval.reminder_sent"
	KindOutboxUndeliverable = "outbox.undeliverable"
	KindCost                = "cost.recorded"
	KindIncident            = "incident."
	KindSession             = "session."
)
