package main

// The verifiable ledger's wiring: where checkpoints are published, the
// checkpoint schedule, the start-up comparison with the witness, and what
// ica check reads from it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/archive"
	"github.com/ica-governance/ica/bot"
	"github.com/ica-governance/ica/outbox"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/witness"
)

// witnessBlobs returns the blob container that witnesses checkpoints (the
// export archive's, ICA_BLOB_*), or nil when none is configured.
func witnessBlobs(cfg *Config) (*archive.Archive, error) {
	if cfg.Blob.ConnectionString == "" && cfg.Blob.AccountURL == "" {
		return nil, nil
	}
	a, err := archive.New(archive.Config{ConnectionString: cfg.Blob.ConnectionString, AccountURL: cfg.Blob.AccountURL,
		Container: cfg.Blob.Container, Retries: 1}, nil)
	if err != nil {
		return nil, fmt.Errorf("checkpoint witness: %s", ica.ErrorMessage(err))
	}
	return a, nil
}

// checkpointMessages publishes each new checkpoint to the blob witness and,
// with ICA_CHECKPOINT_CHANNEL, to a Mattermost channel.
func checkpointMessages(cfg *Config, blob, mattermost bool) func(string, *ica.Checkpoint) []*ica.OutboxMessage {
	channel := cfg.Ledger.CheckpointChannel
	if !mattermost {
		channel = ""
	}
	if !blob && channel == "" {
		return nil
	}
	return func(ledgerID string, cp *ica.Checkpoint) []*ica.OutboxMessage {
		var out []*ica.OutboxMessage
		if blob {
			if m := witness.Message(ledgerID, cp); m != nil {
				out = append(out, m)
			}
		}
		if m := bot.CheckpointMessage(channel, ledgerID, cp); m != nil {
			out = append(out, m)
		}
		return out
	}
}

// registerWitness lets the dispatcher deliver checkpoints to the blob witness.
func registerWitness(disp *outbox.Dispatcher, blobs *archive.Archive, st *store.Store, log *slog.Logger) {
	if blobs != nil {
		disp.Register(witness.Destination, witness.NewPublisher(blobs, st, log))
	}
}

// witnessCheckOptions reads the witnessed checkpoints of the ledger for a
// check. budget bounds the downloads (0: read them all).
func witnessCheckOptions(ctx context.Context, blobs *archive.Archive, st *store.Store, budget time.Duration) (store.CheckOptions, *witness.ReadResult) {
	if blobs == nil {
		return store.CheckOptions{}, nil
	}
	opt := store.CheckOptions{Witness: "Azure Blob container " + blobs.URL()}
	origin, err := st.Origin()
	if err != nil {
		opt.WitnessErr = err
		return opt, nil
	}
	res, err := witness.Read(ctx, blobs, st.LedgerID(), origin, st.PublicKey(), witness.ReadOptions{Budget: budget})
	if res != nil {
		for _, w := range res.Checkpoints {
			opt.Witnessed = append(opt.Witnessed, store.WitnessedCheckpoint{Note: w.Note, Where: w.Where})
		}
	}
	opt.WitnessErr = err
	return opt, res
}

// witnessAtStart compares the ledger with the witness before serving. A
// ledger behind the newest witnessed checkpoint (an older copy restored, or
// one cut short) is refused unless the operator accepts the rollback with a
// reason, which becomes a ledger entry; a ledger that contradicts a
// witnessed checkpoint is refused. A witness that cannot be read is logged
// and serving goes on (checkpoints queue in the outbox).
func witnessAtStart(ctx context.Context, blobs *archive.Archive, st *store.Store, acceptRollback string, log *slog.Logger) error {
	if blobs == nil {
		log.Warn("no checkpoint witness: checkpoints are signed but not published outside the ledger's storage, so truncation and rewrites by someone with access to it cannot be detected (set ICA_BLOB_CONNECTION_STRING or ICA_BLOB_ACCOUNT_URL)")
		if acceptRollback != "" {
			return errors.New("--accept-rollback: no witness is configured, so there is no rollback to accept")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	opt, res := witnessCheckOptions(ctx, blobs, st, 10*time.Second)
	if opt.WitnessErr != nil {
		log.Error("the checkpoint witness could not be read at start; serving without comparing the ledger with it (run ica check when it is back)",
			"witness", blobs.URL(), "err", opt.WitnessErr)
		return nil
	}
	for _, ig := range res.Ignored {
		log.Warn("witness blob ignored", "reason", ig)
	}
	v, err := st.ProveAgainst(opt.Witnessed)
	if err != nil {
		return fmt.Errorf("compare the ledger with the witness: %w", err)
	}
	for _, e := range v.Excused {
		log.Info("witnessed checkpoint given up by an accepted rollback", "checkpoint", e)
	}
	if len(v.Problems) > 0 {
		return fmt.Errorf("the ledger contradicts its witness, so it is not served: %s. Restore a copy that matches the witness (and, if it is older than the newest witnessed checkpoint, start with --accept-rollback REASON)",
			strings.Join(v.Problems, "; "))
	}
	if b := v.Behind; b != nil {
		desc := fmt.Sprintf("the ledger has %d entries, but the witness holds a checkpoint of %d entries (signed %s, published at %s)",
			v.Head, b.Note.Size, b.Note.Time.Format(time.RFC3339), b.Where)
		if acceptRollback == "" {
			return fmt.Errorf("%s: an older copy of the ledger was restored, or it was cut short. It is not served; to serve it anyway, start with --accept-rollback REASON (recorded in the ledger)", desc)
		}
		e, err := st.AcceptRollback(ctx, acceptRollback, "operator", *b)
		if err != nil {
			return fmt.Errorf("record the accepted rollback: %w", err)
		}
		log.Warn("ROLLBACK ACCEPTED: serving a ledger behind its witness", "detail", desc, "reason", acceptRollback, "entry", e.Seq)
	} else if acceptRollback != "" {
		log.Info("--accept-rollback given, but the ledger is not behind its witness; nothing recorded")
	}
	log.Info("ledger consistent with its witness", "witnessed_checkpoints", res.Listed, "compared", v.Checked)
	return nil
}

// checkpointLoop signs a checkpoint every interval while the head moves
// (so an export or an audit never waits for the next 1,000 entries, and the
// witness hears of every change within the interval), and forgets old outbox
// idempotency keys once a day. It is part of the scheduled work, run by one
// process at a time (store.Lead), until ctx ends.
func checkpointLoop(ctx context.Context, st *store.Store, clock ica.Clock, interval time.Duration, log *slog.Logger) {
	lastPrune := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-clock.After(interval):
		}
		if _, err := st.Checkpoint(); err != nil {
			log.Warn("checkpoint failed", "err", err)
		}
		if clock.Now().Sub(lastPrune) > 24*time.Hour {
			if n, err := st.PruneOutboxKeys(ctx); err != nil {
				log.Warn("prune outbox keys", "err", err)
			} else if n > 0 {
				log.Info("pruned outbox keys", "count", n)
			}
			lastPrune = clock.Now()
		}
	}
}

// warnKeyBesideLedger warns, once at start, when the signing key is about to
// be generated into the data directory of a server others reach: whoever
// can write the ledger's storage can then also read the key and re-sign a
// rewritten ledger. (The witness still catches that; the key belongs in a
// secret.)
func warnKeyBesideLedger(cfg *Config, log *slog.Logger) {
	if cfg.SigningKey != "" {
		return
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "signing.key")); err == nil {
		return
	}
	if loopback(cfg.PublicURL) {
		return
	}
	log.Warn("generating the ledger's signing key into the data directory: anyone who can write the ledger's storage can read it and re-sign a rewritten ledger; give ICA_SIGNING_KEY from a secret instead",
		"data_dir", cfg.DataDir, "public_url", cfg.PublicURL)
}

// loopback reports whether a public URL names this machine only (or is unset).
func loopback(public string) bool {
	if public == "" {
		return true
	}
	u, err := url.Parse(public)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// printCheck writes a check report and returns ica check's exit code.
func printCheck(w io.Writer, rep *store.CheckReport) int {
	fmt.Fprintf(w, "entries: %d\nhead: %s\nmerkle root: %s\ncheckpoints: %d\nruns: %d\napprovals: %d\nincidents: %d\ncosts: %d\npipeline checks: %d\nwitness: %s\n",
		rep.Entries, rep.Head, rep.Root, rep.Checkpoints, rep.Runs, rep.Approvals, rep.Incidents, rep.Costs, rep.Checks, rep.Witness)
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	if !rep.OK() {
		for _, p := range rep.Problems {
			fmt.Fprintln(w, "PROBLEM:", p)
		}
		return 1
	}
	if rep.WitnessUnreadable {
		fmt.Fprintln(w, "WITNESS UNREADABLE: the ledger agrees with itself and its state, but it could not be proven against its witness")
		return 3
	}
	if rep.WitnessChecked > 0 {
		fmt.Fprintf(w, "ok: the hash chain, the Merkle log, the checkpoints and the state are consistent, and the ledger matches its %d witnessed checkpoints\n", rep.WitnessChecked)
	} else {
		fmt.Fprintln(w, "ok: the hash chain, the Merkle log, the checkpoints and the state are consistent (nothing witnessed to compare with)")
	}
	return 0
}
