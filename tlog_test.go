package ica_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	tlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/ica-governance/ica"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return k
}

func TestCheckpointOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://ica.example.com/":          "ica.example.com/ledger/abc",
		"https://ica.example.com:8443/ica/": "ica.example.com:8443/ica/ledger/abc",
		"":                                  "ica.invalid/ledger/abc",
		"http://user:pw@host/?q=1":          "host/ledger/abc",
	} {
		require.Equal(t, want, ica.CheckpointOrigin(in, "abc"), in)
	}
}

// A checkpoint note is a C2SP tlog-checkpoint: standard tooling reads it
// with the verifier key ICA prints.
func TestCheckpointNote_StandardTooling(t *testing.T) {
	key := newKey(t)
	root := make([]byte, 32)
	root[0] = 7
	c := &ica.CheckpointNote{Origin: "ica.example.com/ledger/abc", Size: 42, Root: root,
		ChainHead: strings.Repeat("0f", 32), Time: time.Date(2026, 11, 2, 9, 0, 0, 5, time.UTC)}
	signed, err := ica.SignCheckpointNote(key, c)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(signed, "ica.example.com/ledger/abc\n42\n"))

	vkey, err := ica.NoteVerifierKey(c.Origin, key.Public().(ed25519.PublicKey))
	require.NoError(t, err)
	v, err := note.NewVerifier(vkey)
	require.NoError(t, err)
	cp, ext, _, err := tlog.ParseCheckpoint([]byte(signed), c.Origin, v)
	require.NoError(t, err)
	require.Equal(t, uint64(42), cp.Size)
	require.Equal(t, root, cp.Hash)
	require.Equal(t, "ica-chain-head "+c.ChainHead+"\nica-time 2026-11-02T09:00:00.000000005Z\n", string(ext))

	got, err := ica.OpenCheckpointNote([]byte(signed), key.Public().(ed25519.PublicKey), "")
	require.NoError(t, err)
	require.Equal(t, c.Size, got.Size)
	require.Equal(t, c.ChainHead, got.ChainHead)
	require.True(t, c.Time.Equal(got.Time))

	_, err = ica.OpenCheckpointNote([]byte(signed), newKey(t).Public().(ed25519.PublicKey), "")
	require.ErrorIs(t, err, ica.ErrNoteSignature)
	_, err = ica.OpenCheckpointNote([]byte(strings.Replace(signed, "\n42\n", "\n43\n", 1)), key.Public().(ed25519.PublicKey), "")
	require.Error(t, err)
	_, err = ica.OpenCheckpointNote([]byte(signed), key.Public().(ed25519.PublicKey), "other.example/ledger/abc")
	require.Error(t, err)
}

func TestCheckpoint_VerifyOldAndNew(t *testing.T) {
	key := newKey(t)
	old := ica.SignCheckpoint(key, 5, strings.Repeat("a", 64), time.Unix(10, 0))
	require.NoError(t, old.Verify(), "an ica-checkpoint:v1 checkpoint without a note")
	n := old
	root := make([]byte, 32)
	n.Origin, n.Root = "h/ledger/x", hex.EncodeToString(root)
	var err error
	n.Note, err = ica.SignCheckpointNote(key, &ica.CheckpointNote{Origin: n.Origin, Size: 5, Root: root, ChainHead: n.Hash, Time: n.Time})
	require.NoError(t, err)
	require.NoError(t, n.Verify())
	bad := n
	bad.Root = strings.Repeat("1", 64)
	require.Error(t, bad.Verify(), "the note and the checkpoint must agree")
}

func TestProofBundle_Verify(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	e := &ica.LedgerEntry{Seq: 3, Time: time.Unix(100, 0).UTC(), Kind: "approval.bypassed", Subject: "A-1", Actor: "sre",
		Data: json.RawMessage(`{"to":"bypassed"}`), PrevHash: ica.GenesisHash}
	h, err := e.ComputeHash()
	require.NoError(t, err)
	e.Hash = h
	// A tree of 4 entries where entry 3 is e.
	leaves := []string{fmt.Sprintf("%064x", 1), fmt.Sprintf("%064x", 2), e.Hash, fmt.Sprintf("%064x", 4)}
	lh := make([][]byte, 4)
	for i, x := range leaves {
		lh[i], _ = ica.LeafHash(x)
	}
	n01, n23 := ica.HashChildren(lh[0], lh[1]), ica.HashChildren(lh[2], lh[3])
	root := ica.HashChildren(n01, n23)
	signed, err := ica.SignCheckpointNote(key, &ica.CheckpointNote{Origin: "h/ledger/x", Size: 4, Root: root, ChainHead: leaves[3], Time: time.Unix(200, 0)})
	require.NoError(t, err)
	b := &ica.ProofBundle{Format: ica.ProofFormat, Entry: *e, LeafIndex: 2, TreeSize: 4,
		Inclusion: ica.EncodeHashes([][]byte{lh[3], n01}), Checkpoint: signed, PublicKey: hex.EncodeToString(pub)}
	raw, err := json.Marshal(b)
	require.NoError(t, err)
	parsed, err := ica.ParseProofBundle(raw)
	require.NoError(t, err)
	res, err := parsed.Verify(pub)
	require.NoError(t, err)
	require.Equal(t, uint64(3), res.Seq)
	require.Equal(t, "h/ledger/x", res.Origin)

	for name, mutate := range map[string]func(b *ica.ProofBundle){
		"entry altered":  func(b *ica.ProofBundle) { b.Entry.Subject = "A-2" },
		"wrong leaf":     func(b *ica.ProofBundle) { b.LeafIndex = 1 },
		"bad path":       func(b *ica.ProofBundle) { b.Inclusion[0] = b.Inclusion[1] },
		"other size":     func(b *ica.ProofBundle) { b.TreeSize = 5 },
		"unsigned":       func(b *ica.ProofBundle) { b.Checkpoint = strings.Replace(b.Checkpoint, "\n4\n", "\n5\n", 1) },
		"other key":      func(b *ica.ProofBundle) { b.PublicKey = strings.Repeat("00", 32) },
		"short path":     func(b *ica.ProofBundle) { b.Inclusion = b.Inclusion[:1] },
		"not hex hashes": func(b *ica.ProofBundle) { b.Inclusion[0] = "zz" },
	} {
		c := *parsed
		c.Inclusion = append([]string(nil), parsed.Inclusion...)
		mutate(&c)
		_, err := c.Verify(pub)
		require.Error(t, err, name)
	}
	_, err = parsed.Verify(newKey(t).Public().(ed25519.PublicKey))
	require.Error(t, err, "a key the auditor does not trust")
	_, err = ica.ParseProofBundle([]byte(`{"format":"ica-proof/v1","extra":1}`))
	require.Error(t, err)
}

// FuzzOpenCheckpointNote: the parser of witnessed blobs and proof bundles'
// checkpoints never panics, and what it accepts is canonical and signed.
func FuzzOpenCheckpointNote(f *testing.F) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	pub := key.Public().(ed25519.PublicKey)
	good, _ := ica.SignCheckpointNote(key, &ica.CheckpointNote{Origin: "h/ledger/x", Size: 9, Root: make([]byte, 32),
		ChainHead: strings.Repeat("ab", 32), Time: time.Unix(1, 0)})
	f.Add([]byte(good))
	f.Add([]byte("h/ledger/x\n9\nAAAA\n\n— h/ledger/x AAAA\n"))
	f.Add([]byte(strings.Replace(good, "ica-time", "ica-tim", 1)))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := ica.OpenCheckpointNote(raw, pub, "")
		if err != nil {
			return
		}
		again, err := ica.SignCheckpointNote(key, n)
		if err != nil {
			t.Fatal(err)
		}
		if again != string(raw) {
			t.Fatalf("accepted a note that is not what ICA signs:\n%q\n%q", raw, again)
		}
	})
}

// FuzzParseCheckpointText covers the text parser alone (no signature).
func FuzzParseCheckpointText(f *testing.F) {
	f.Add("h/ledger/x\n9\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nica-chain-head " + strings.Repeat("ab", 32) + "\nica-time 1970-01-01T00:00:01Z\n")
	f.Add("a\n1\n\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ica.ParseCheckpointText(text)
		if err != nil {
			return
		}
		if c.Text() != text {
			t.Fatalf("not canonical: %q", text)
		}
	})
}

// FuzzProofBundle: ica verify-proof's parser and verifier never panic and
// accept nothing the key did not sign.
func FuzzProofBundle(f *testing.F) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	pub := key.Public().(ed25519.PublicKey)
	e := ica.LedgerEntry{Seq: 1, Time: time.Unix(1, 0).UTC(), Kind: "k", Subject: "s", Data: json.RawMessage(`{}`), PrevHash: ica.GenesisHash}
	e.Hash, _ = e.ComputeHash()
	leaf, _ := ica.LeafHash(e.Hash)
	signed, _ := ica.SignCheckpointNote(key, &ica.CheckpointNote{Origin: "h/ledger/x", Size: 1, Root: leaf, ChainHead: e.Hash, Time: time.Unix(2, 0)})
	good, _ := json.Marshal(&ica.ProofBundle{Format: ica.ProofFormat, Entry: e, LeafIndex: 0, TreeSize: 1, Inclusion: []string{},
		Checkpoint: signed, PublicKey: hex.EncodeToString(pub)})
	f.Add(good)
	f.Add([]byte(`{"format":"ica-proof/v1","entry":{"seq":0},"leaf_index":18446744073709551615,"tree_size":0}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := ica.ParseProofBundle(raw)
		if err != nil {
			return
		}
		res, err := b.Verify(pub)
		if err != nil {
			return
		}
		// Whatever verified is signed: the note opens with the key.
		if _, err := ica.OpenCheckpointNote([]byte(b.Checkpoint), pub, res.Origin); err != nil {
			t.Fatalf("verified a bundle whose checkpoint does not open: %v", err)
		}
	})
}
