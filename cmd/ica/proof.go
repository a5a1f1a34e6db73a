package main

// ica proof and ica verify-proof: an inclusion proof of one ledger entry
// (an approval's latest decision, or any seq) against a signed checkpoint,
// checked offline with the ledger's public key.

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/slashcmds"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

// proofFor returns the bundle of an approval's latest decision (id) or of
// entry seq, signing a checkpoint of the head first when none covers it yet
// (an operator's tool: the API does not sign).
func proofFor(ctx context.Context, st *store.Store, approvalID string, seq uint64) (*ica.ProofBundle, error) {
	if approvalID != "" {
		a, err := st.Approval(ctx, approvalID)
		if err != nil {
			return nil, err
		}
		if a.DecisionSeq == 0 {
			return nil, ica.Errorf(ica.ENOTFOUND, "approval %s was last decided before records named their decision entry; name the entry with --seq", a.ID)
		}
		seq = a.DecisionSeq
	}
	b, err := st.Proof(ctx, seq)
	if ica.ErrorCode(err) == ica.EUNAVAILABLE && seq > 0 && seq <= st.LedgerEntries() {
		if _, cerr := st.Checkpoint(); cerr != nil {
			return nil, cerr
		}
		b, err = st.Proof(ctx, seq)
	}
	return b, err
}

// proof handles "GET /proof?approval=A-17" and "GET /proof?seq=N" on the
// admin socket.
func (a *adminHandler) proof(w http.ResponseWriter, r *http.Request) error {
	seq, _ := strconv.ParseUint(r.URL.Query().Get("seq"), 10, 64)
	b, err := proofFor(r.Context(), a.store, r.URL.Query().Get("approval"), seq)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(b)
}

// registerProofRoute serves proofs to auditors holding a pipeline or an
// admin token.
func registerProofRoute(h *webhooks.Handler, st *store.Store, pipelines webhooks.Authenticator, cfg *Config) error {
	auth := webhooks.AnyOf{pipelines}
	at, err := hashedTokens("admin token", cfg.AdminTokens)
	if err != nil {
		return err
	}
	if len(at) > 0 {
		admins, err := webhooks.NewStaticTokens(at, nil)
		if err != nil {
			return err
		}
		auth = append(auth, admins)
	}
	h.RegisterProofs(st, auth, cfg.Ledger.CheckpointInterval)
	return nil
}

// cmdProof writes the proof bundle of an approval's latest decision or of
// one entry.
func cmdProof(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("proof", flag.ContinueOnError)
	fs.SetOutput(stderr)
	locate := locationFlags(fs, getenv)
	seq := fs.Uint64("seq", 0, "the ledger entry to prove (instead of an approval id)")
	out := fs.String("out", "", "where to write the bundle (default proof-<approval or seq>.json)")
	if err := fs.Parse(reorder(args)); err != nil {
		return 2
	}
	approval := fs.Arg(0)
	if (approval == "") == (*seq == 0) || fs.NArg() > 1 {
		fmt.Fprintln(stderr, "usage: ica proof APPROVAL_ID | --seq N [--out FILE] [--data-dir DIR | --config FILE]")
		return 2
	}
	loc, err := locate()
	if err != nil {
		fmt.Fprintln(stderr, "ica proof:", err)
		return 2
	}
	var b *ica.ProofBundle
	if c := socketClient(socketPath(loc.Dir)); c != nil && !loc.shared() {
		q := url.Values{}
		if approval != "" {
			q.Set("approval", approval)
		} else {
			q.Set("seq", strconv.FormatUint(*seq, 10))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://ica/proof?"+q.Encode(), nil)
		resp, err := c.Do(req)
		if err != nil {
			fmt.Fprintln(stderr, "ica proof: running server:", err)
			return 2
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			fmt.Fprintf(stderr, "ica proof: %s: %s\n", resp.Status, strings.TrimSpace(string(msg)))
			return 1
		}
		b = &ica.ProofBundle{}
		if err := json.NewDecoder(io.LimitReader(resp.Body, ica.MaxProofBundle)).Decode(b); err != nil {
			fmt.Fprintln(stderr, "ica proof: running server:", err)
			return 2
		}
	} else {
		cfg, err := loadConfig(loc.ConfigPath, getenv)
		if err != nil {
			fmt.Fprintln(stderr, "ica proof:", err)
			return 2
		}
		st, _, err := loc.openStoreWith(ctx, store.Options{PublicHost: cfg.PublicURL})
		if err != nil {
			fmt.Fprintln(stderr, "ica proof:", err)
			return 2
		}
		b, err = proofFor(ctx, st, approval, *seq)
		st.Close()
		if err != nil {
			fmt.Fprintln(stderr, "ica proof:", ica.ErrorMessage(err))
			return 1
		}
	}
	name := *out
	if name == "" {
		name = fmt.Sprintf("proof-%d.json", b.Entry.Seq)
		if approval != "" {
			name = "proof-" + approval + ".json"
		}
	}
	raw, _ := json.MarshalIndent(b, "", "  ")
	if err := os.WriteFile(name, append(raw, '\n'), 0o644); err != nil {
		fmt.Fprintln(stderr, "ica proof:", err)
		return 2
	}
	fmt.Fprintf(stdout, "proof of entry %d (%s %s) in the tree of %d entries written to %s\n", b.Entry.Seq, b.Entry.Kind, b.Entry.Subject, b.TreeSize, name)
	if b.Witness != nil {
		fmt.Fprintf(stdout, "the checkpoint was witnessed at %s (%s)\n", b.Witness.Where, b.Witness.At.Format(time.RFC3339))
	} else {
		fmt.Fprintln(stdout, "the checkpoint is signed but not witnessed yet")
	}
	fmt.Fprintf(stdout, "check it offline: ica verify-proof %s --public-key %s\n", name, b.PublicKey)
	return 0
}

// cmdVerifyProof checks a proof bundle offline against a public key the
// auditor trusts.
func cmdVerifyProof(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify-proof", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pubHex := fs.String("public-key", "", "the ledger's Ed25519 public key (hex), from a source you trust")
	if err := fs.Parse(reorder(args)); err != nil {
		return 2
	}
	if fs.NArg() != 1 || *pubHex == "" {
		fmt.Fprintln(stderr, "usage: ica verify-proof FILE --public-key HEX   (the key from a source you trust: the bundle's own proves nothing)")
		return 2
	}
	pub, err := hex.DecodeString(strings.TrimSpace(*pubHex))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		fmt.Fprintln(stderr, "ica verify-proof: --public-key must be 32 bytes in hex")
		return 2
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "ica verify-proof:", err)
		return 2
	}
	raw, err := io.ReadAll(io.LimitReader(f, ica.MaxProofBundle+1))
	f.Close()
	if err != nil {
		fmt.Fprintln(stderr, "ica verify-proof:", err)
		return 2
	}
	b, res, err := verifyProof(raw, pub)
	if err != nil {
		fmt.Fprintln(stdout, "FAILED:", err)
		return 1
	}
	fmt.Fprintf(stdout, "OK: entry %d (%s %s, hash %s) is in the ledger %s as signed at %s over its first %d entries, by key %s\n",
		res.Seq, res.Kind, res.Subject, res.Hash, res.Origin, res.SignedAt.Format(time.RFC3339), res.TreeSize, res.Fingerprint)
	if b.Witness != nil {
		// A claim of the bundle: the auditor can fetch that blob and compare.
		fmt.Fprintf(stdout, "the bundle says this checkpoint was published at %s; that copy must equal the bundle's checkpoint\n", b.Witness.Where)
	}
	return 0
}

func verifyProof(raw []byte, pub ed25519.PublicKey) (*ica.ProofBundle, *ica.ProofResult, error) {
	b, err := ica.ParseProofBundle(raw)
	if err != nil {
		return nil, nil, err
	}
	res, err := b.Verify(pub)
	return b, res, err
}

var _ slashcmds.ApprovalProofs = slashQueries{}

// Approval answers "/ica status A-17".
func (q slashQueries) Approval(ctx context.Context, id string) (*ica.Approval, error) {
	return q.st.Approval(ctx, id)
}

// Coverage says which signed checkpoint covers ledger entry seq, and
// whether a witness took it (nil: none covers it yet).
func (q slashQueries) Coverage(ctx context.Context, seq uint64) (*slashcmds.Coverage, error) {
	c, err := q.st.CoveringCheckpoint(ctx, seq)
	if ica.ErrorCode(err) == ica.EUNAVAILABLE {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := &slashcmds.Coverage{Size: c.Checkpoint.Seq, SignedAt: c.Checkpoint.Time}
	if c.Witness != nil {
		out.Witnessed, out.Where, out.WitnessedAt = true, c.Witness.Where, c.Witness.At
	}
	return out, nil
}
