package main

// The ledger scenario: a ledger of about 1,000,000 entries generated
// in-process through the store's API (runs with events, approvals decided,
// costs), its checkpoints published to an Azure Blob witness (Azurite),
// then the real binary's `ica check` (replay of every record, the Merkle
// log, the witness) as a child process, timed, with its peak memory; the
// baseline is the check-only walk of the chain (every entry read and its
// hash and link verified, what ica check did before it replayed state).
// Proof generation and offline verification are timed at that size.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/archive"
	"github.com/ica-governance/ica/bench"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/witness"
)

type ledgerConfig struct {
	entries, events   int
	clients, reps     int
	proofs            int
	azurite           string
	dir, repo, bin    string
	keep, skipWitness bool
}

func runLedger(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c ledgerConfig
	fs := flag.NewFlagSet("ledger", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.entries, "entries", 1_000_000, "ledger entries to generate (about)")
	fs.IntVar(&c.events, "events", 6, "events per run")
	fs.IntVar(&c.clients, "gen-clients", 512, "concurrent writers while generating the ledger")
	fs.IntVar(&c.reps, "reps", 1, "repetitions of each check; figures are medians")
	fs.IntVar(&c.proofs, "proofs", 2000, "proofs generated and verified")
	fs.StringVar(&c.azurite, "azurite", os.Getenv("ICA_TEST_AZURITE"), "Azure Blob connection string of the witness (default: ICA_TEST_AZURITE, else Azurite on 127.0.0.1:10000)")
	fs.BoolVar(&c.skipWitness, "no-witness", false, "check without a witness")
	fs.StringVar(&c.dir, "dir", "", "parent of the temporary ledger (default: the system temp dir)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory")
	fs.StringVar(&c.repo, "repo", "", "ICA repository to build (default: found from the working directory)")
	fs.StringVar(&c.bin, "bin", "", "use this ica binary instead of building one")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.entries < 100 || c.clients < 1 || c.reps < 1 || c.proofs < 1 {
		fmt.Fprintln(stderr, "icabench ledger: -entries >= 100, -gen-clients, -reps, -proofs >= 1")
		return 2
	}
	code, err := ledgerBench(ctx, c, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "icabench ledger:", err)
		return 2
	}
	return code
}

func ledgerBench(ctx context.Context, c ledgerConfig, stdout io.Writer) (int, error) {
	root, bin, cleanup, err := scnPrepare(ctx, "ledger", c.dir, c.keep, c.repo, c.bin, stdout)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "ledger: about %d entries (runs of start + %d events + finish; every 5th run an approval decided in two steps; a cost every 20th), %d repetition(s)\n",
		c.entries, c.events, c.reps)
	fmt.Fprintf(stdout, "machine: %d CPUs (GOMAXPROCS %d), %s; temp dir %s (%s)\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), root, fsInfo(root))

	dir := filepath.Join(root, "ledger")
	key, gen, entries, err := ledgerGenerate(ctx, dir, c)
	if err != nil {
		return 0, fmt.Errorf("generate: %w", err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "ica.db"))
	fmt.Fprintf(stdout, "generated %d entries (%.0f MB file) in %s through the store's API, %d writers (the Merkle log maintained in every append)\n",
		entries, bench.MB(fi.Size()), gen.Round(time.Millisecond), c.clients)

	// The witness: every checkpoint the ledger signed, published as ica
	// serve publishes them.
	var env []string
	witnessDesc := "none (-no-witness, or no Azurite)"
	published := 0
	if cs := azuriteFor(c); cs != "" {
		container := "icabench-" + bench.RandomToken()[:12]
		n, d, err := ledgerPublish(ctx, dir, key, cs, container)
		if err != nil {
			return 0, fmt.Errorf("publish checkpoints: %w", err)
		}
		published = n
		witnessDesc = fmt.Sprintf("%d checkpoints in Azurite container %s", n, container)
		fmt.Fprintf(stdout, "published %d checkpoints to the witness in %s\n", n, d.Round(time.Millisecond))
		env = append(os.Environ(), "ICA_BLOB_CONNECTION_STRING="+cs, "ICA_BLOB_CONTAINER="+container)
	} else {
		env = os.Environ()
	}
	env = append(env, "ICA_DATA_DIR="+dir)

	var full, anon, rss, baseline, scan []float64
	var lastOut string
	for i := range c.reps {
		d, n, err := ledgerChainOnly(dir, key)
		if err != nil {
			return 0, err
		}
		baseline = append(baseline, d.Seconds())
		fmt.Fprintf(stdout, "rep %d chain-only check: %d entries read, each hash and link verified, in %s\n", i+1, n, d.Round(time.Millisecond))
		d, _, err = ledgerScan(dir, key)
		if err != nil {
			return 0, err
		}
		scan = append(scan, d.Seconds())
		r, err := bench.RunMeasured(ctx, env, bin, "check", "--data-dir", dir)
		if err != nil {
			return 0, fmt.Errorf("ica check: %w", err)
		}
		full = append(full, r.Wall.Seconds())
		rss = append(rss, bench.MB(r.PeakRSS))
		anon = append(anon, bench.MB(r.PeakAnon))
		lastOut = r.Output
		fmt.Fprintf(stdout, "rep %d ica check (replay + Merkle + witness): %s, peak RSS %.1f MB (peak RssAnon %.1f MB), CPU %s\n",
			i+1, r.Wall.Round(time.Millisecond), bench.MB(r.PeakRSS), bench.MB(r.PeakAnon), r.CPU.Round(time.Millisecond))
	}
	gen1, ver1, size, err := ledgerProofs(dir, key, c.proofs)
	if err != nil {
		return 0, err
	}
	base := bench.Median(baseline)
	figs := []bench.Figure{
		{Name: fmt.Sprintf("ica check, %d entries, replay + witness", entries), Value: bench.Median(full), Unit: "s",
			Baseline: fmt.Sprintf("chain-only check %.2f s (%.1fx)", base, safeDiv(bench.Median(full), base)),
			Note:     "the real `ica check` child: chain, Merkle log rebuilt and compared node by node, every signed checkpoint, every witnessed checkpoint (" + witnessDesc + "), every record replayed and compared, every index key; the chain-only check reads and verifies each entry in-process (ScanLedger alone: " + fmt.Sprintf("%.2f s", bench.Median(scan)) + ")"},
		{Name: "ica check peak RSS", Value: bench.Median(rss), Unit: "MB", Target: "bounded", Baseline: fmt.Sprintf("of which anonymous %.0f MB", bench.Median(anon)),
			Note: "records are compared at their last change and dropped; VmHWM also counts the ledger file's mmapped pages"},
		{Name: fmt.Sprintf("witnessed checkpoints proven (%d published)", published), Value: float64(witnessedIn(lastOut)), Unit: ""},
		{Name: fmt.Sprintf("proof generation at %d entries (median)", size), Value: gen1, Unit: "ms", Note: "store.Proof: the entry, its inclusion proof from O(log n) stored nodes, the covering checkpoint"},
		{Name: "proof verification, offline (median)", Value: ver1, Unit: "ms", Note: "ica.ProofBundle.Verify: entry hash, checkpoint note signature, inclusion proof"},
		{Name: "ledger generation (not a target)", Value: gen.Seconds(), Unit: "s", Baseline: fmt.Sprintf("%d entries", entries)},
	}
	title := fmt.Sprintf("ledger — medians of %d repetition(s)", c.reps)
	ok := bench.PrintFigures(stdout, title, figs)
	fmt.Fprintf(stdout, "ica check (last rep):\n%s\n", indent(strings.TrimSpace(lastOut)))
	if !strings.Contains(lastOut, "ok: ") {
		fmt.Fprintln(stdout, "RESULT: MISS (ica check did not pass)")
		return 1, nil
	}
	if !ok {
		fmt.Fprintln(stdout, "RESULT: MISS")
		return 1, nil
	}
	fmt.Fprintln(stdout, "RESULT: PASS")
	return 0, nil
}

// azuriteFor returns the witness connection string, or "" without one.
func azuriteFor(c ledgerConfig) string {
	if c.skipWitness {
		return ""
	}
	if c.azurite != "" {
		return c.azurite
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:10000", 500*time.Millisecond)
	if err != nil {
		return ""
	}
	conn.Close()
	return "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
}

// ledgerGenerate writes the ledger through the store's API.
func ledgerGenerate(ctx context.Context, dir string, c ledgerConfig) (ed25519.PrivateKey, time.Duration, uint64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, 0, err
	}
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	if err := os.WriteFile(filepath.Join(dir, "signing.key"), []byte(hex.EncodeToString(seed)+"\n"), 0o600); err != nil {
		return nil, 0, 0, err
	}
	key := ed25519.NewKeyFromSeed(seed)
	st, err := store.Open(filepath.Join(dir, "ica.db"), store.Options{Key: key, MaxBatch: 2048, PublicHost: "ica.bench.example"})
	if err != nil {
		return nil, 0, 0, err
	}
	start := time.Now()
	perRun := c.events + 2
	runs := c.entries / (perRun + 1)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	data := json.RawMessage(`{"step":3,"name":"Run unit tests","status":"succeeded","duration_ms":1037,"agent":"Azure Pipelines 3","tests":{"passed":412,"failed":0}}`)
	for range c.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= runs || st.LedgerEntries() >= uint64(c.entries) {
					return
				}
				if err := ledgerOneRun(ctx, st, i, c.events, data); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr == nil {
		_, firstErr = st.Checkpoint()
	}
	n := st.LedgerEntries()
	if err := st.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	return key, time.Since(start), n, firstErr
}

func ledgerOneRun(ctx context.Context, st *store.Store, i, events int, data json.RawMessage) error {
	id := fmt.Sprintf("%d", 30_000_000+i)
	in := &ica.RunStart{PipelineName: fmt.Sprintf("service-%02d", i%24), RunID: id, Branch: "refs/heads/main",
		Commit: fmt.Sprintf("%040x", i*7919+1), TriggeredBy: fmt.Sprintf("dev%d@example.com", i%50)}
	if _, _, err := st.StartRun(ctx, in, "azure-pipelines"); err != nil {
		return err
	}
	for e := range events {
		if _, _, err := st.AddEvent(ctx, id, &ica.EventInput{EventType: "build.step", EventData: data, EventID: fmt.Sprint("s", e)}, "azure-pipelines"); err != nil {
			return err
		}
	}
	if i%5 == 0 {
		cost := float64(100 + i%900)
		a, _, err := st.RequestApproval(ctx, &ica.ApprovalRequest{RunID: id, DeploymentTarget: ica.TargetProduction, EstimatedCost: &cost}, "azure-pipelines")
		if err != nil {
			return err
		}
		if _, err := st.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{Username: "tech1"}, Via: "api"}, "api", nil); err != nil {
			return err
		}
		if _, err := st.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveBusiness, By: ica.Decider{Username: "biz1"}, Via: "api"}, "api", nil); err != nil {
			return err
		}
	}
	if i%20 == 0 {
		usd := float64(i % 300)
		if _, _, err := st.RecordCost(ctx, &ica.CostInput{RunID: id, ResourceType: ica.ResourceAKS, CostUSD: &usd, BillingPeriod: time.Now().UTC().Format(time.DateOnly)}, "azure-pipelines"); err != nil {
			return err
		}
	}
	_, _, err := st.FinishRun(ctx, id, &ica.RunFinish{Status: ica.RunSuccess}, "azure-pipelines")
	return err
}

// ledgerPublish writes every signed checkpoint to the witness container,
// as the outbox's witness deliverer does.
func ledgerPublish(ctx context.Context, dir string, key ed25519.PrivateKey, cs, container string) (int, time.Duration, error) {
	st, err := store.Open(filepath.Join(dir, "ica.db"), store.Options{Key: key})
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	blobs, err := archive.New(archive.Config{ConnectionString: cs, Container: container}, nil)
	if err != nil {
		return 0, 0, err
	}
	cps, err := st.Checkpoints(st.LedgerEntries(), 1<<30)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	sem := make(chan struct{}, 16)
	for i := range cps {
		cp := cps[i]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			m := witness.Message(st.LedgerID(), &cp)
			if m == nil {
				return
			}
			if _, err := witness.NewPublisher(blobs, nil, quietLog).Deliver(ctx, m); err != nil {
				once.Do(func() { firstErr = err })
			}
		}()
	}
	wg.Wait()
	return len(cps), time.Since(start), firstErr
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// ledgerChainOnly is the baseline: every entry read and its hash and link
// verified, nothing else.
func ledgerChainOnly(dir string, key ed25519.PrivateKey) (time.Duration, int, error) {
	st, err := store.Open(filepath.Join(dir, "ica.db"), store.Options{Key: key})
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	n := 0
	var prev *ica.LedgerEntry
	start := time.Now()
	err = st.ScanLedger(1, func(e *ica.LedgerEntry) error {
		if err := e.Verify(prev); err != nil {
			return err
		}
		prev = e
		n++
		return nil
	})
	return time.Since(start), n, err
}

func ledgerScan(dir string, key ed25519.PrivateKey) (time.Duration, int, error) {
	st, err := store.Open(filepath.Join(dir, "ica.db"), store.Options{Key: key})
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	n := 0
	start := time.Now()
	err = st.ScanLedger(1, func(*ica.LedgerEntry) error { n++; return nil })
	return time.Since(start), n, err
}

// ledgerProofs times store.Proof and ProofBundle.Verify for random entries.
func ledgerProofs(dir string, key ed25519.PrivateKey, n int) (genMs, verMs float64, size uint64, err error) {
	st, err := store.Open(filepath.Join(dir, "ica.db"), store.Options{Key: key})
	if err != nil {
		return 0, 0, 0, err
	}
	defer st.Close()
	size = st.LedgerEntries()
	pub := key.Public().(ed25519.PublicKey)
	var gen, ver []float64
	for range n {
		r, _ := rand.Int(rand.Reader, big.NewInt(int64(size)))
		seq := r.Uint64() + 1
		t0 := time.Now()
		b, err := st.Proof(context.Background(), seq)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("proof of entry %d: %w", seq, err)
		}
		raw, _ := json.Marshal(b)
		t1 := time.Now()
		pb, err := ica.ParseProofBundle(raw)
		if err == nil {
			_, err = pb.Verify(pub)
		}
		if err != nil {
			return 0, 0, 0, fmt.Errorf("verify the proof of entry %d: %w", seq, err)
		}
		t2 := time.Now()
		gen = append(gen, bench.Ms(t1.Sub(t0)))
		ver = append(ver, bench.Ms(t2.Sub(t1)))
	}
	sort.Float64s(gen)
	sort.Float64s(ver)
	return bench.Median(gen), bench.Median(ver), size, nil
}

// witnessedIn reads "matches its N witnessed checkpoints" from ica check.
func witnessedIn(out string) int {
	i := strings.Index(out, "matches its ")
	if i < 0 {
		return 0
	}
	var n int
	fmt.Sscanf(out[i+len("matches its "):], "%d", &n)
	return n
}
