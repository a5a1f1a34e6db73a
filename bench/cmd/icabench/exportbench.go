package main

// The export scenario: a ledger of many runs generated in-process through
// the store's own API, then the real binary's `ica export` (CSV, JSON, PDF)
// and `ica verify` as child processes, timed and with their peak RSS;
// baseline: reading the same entries from bbolt (store.ScanLedger).

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/bench"
	"github.com/ica-governance/ica/store"
)

type exportConfig struct {
	runs, pdfRuns, finishEvery int
	clients, reps              int
	dir, repo, bin             string
	keep                       bool
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c exportConfig
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.runs, "runs", 1_000_000, "runs in the CSV/JSON ledger (one run.started entry each)")
	fs.IntVar(&c.finishEvery, "finish-every", 10, "also finish every Nth run of that ledger (0: none)")
	fs.IntVar(&c.pdfRuns, "pdf-runs", 10_000, "runs in the PDF ledger (start, one event, finish; an approval for every 10th)")
	fs.IntVar(&c.clients, "gen-clients", 512, "concurrent writers while generating the ledgers")
	fs.IntVar(&c.reps, "reps", 1, "repetitions of each export and scan; figures are medians")
	fs.StringVar(&c.dir, "dir", "", "parent of the temporary ledgers and exports (default: the system temp dir)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory")
	fs.StringVar(&c.repo, "repo", "", "ICA repository to build (default: found from the working directory)")
	fs.StringVar(&c.bin, "bin", "", "use this ica binary instead of building one")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.runs < 1 || c.pdfRuns < 1 || c.clients < 1 || c.reps < 1 || c.finishEvery < 0 {
		fmt.Fprintln(stderr, "icabench export: -runs, -pdf-runs, -gen-clients, -reps must be >= 1")
		return 2
	}
	code, err := exportBench(ctx, c, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "icabench export:", err)
		return 2
	}
	return code
}

// expLedger is a generated ledger directory.
type expLedger struct {
	dir     string
	entries uint64
	gen     time.Duration
	size    int64
}

func exportBench(ctx context.Context, c exportConfig, stdout io.Writer) (int, error) {
	root, bin, cleanup, err := scnPrepare(ctx, "export", c.dir, c.keep, c.repo, c.bin, stdout)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "export: %d-run ledger (run.started each, run.finished for every %dth) as CSV and JSON, %d-run ledger as PDF; %d repetition(s)\n",
		c.runs, c.finishEvery, c.pdfRuns, c.reps)
	fmt.Fprintf(stdout, "machine: %d CPUs (GOMAXPROCS %d), %s; temp dir %s (%s)\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), root, fsInfo(root))
	day0 := time.Now()

	big, err := expGenerate(ctx, filepath.Join(root, "big"), c.runs, c.finishEvery, false, c.clients)
	if err != nil {
		return 0, fmt.Errorf("generate: %w", err)
	}
	fmt.Fprintf(stdout, "generated %d runs (%d ledger entries, %.0f MB file) in %s through store.StartRun/FinishRun, %d writers\n",
		c.runs, big.entries, bench.MB(big.size), big.gen.Round(time.Millisecond), c.clients)
	small, err := expGenerate(ctx, filepath.Join(root, "pdf"), c.pdfRuns, 1, true, c.clients)
	if err != nil {
		return 0, fmt.Errorf("generate: %w", err)
	}
	fmt.Fprintf(stdout, "generated %d runs for the PDF (%d ledger entries: start, event, finish each, an approval for every 10th) in %s\n",
		c.pdfRuns, small.entries, small.gen.Round(time.Millisecond))

	from, to := bench.UTCDay(day0.AddDate(0, 0, -1)), bench.UTCDay(time.Now().AddDate(0, 0, 1))
	type meas struct{ wall, rss, anon []float64 }
	m := map[string]*meas{}
	add := func(k string, r bench.ChildResult) {
		if m[k] == nil {
			m[k] = &meas{}
		}
		m[k].wall = append(m[k].wall, r.Wall.Seconds())
		m[k].rss = append(m[k].rss, bench.MB(r.PeakRSS))
		m[k].anon = append(m[k].anon, bench.MB(r.PeakAnon))
	}
	var scan, scanSmall []float64
	var outSize = map[string]int64{}
	for i := range c.reps {
		// Baseline first: the same entries read from bbolt in-process.
		d, n, err := expScan(big)
		if err != nil {
			return 0, err
		}
		scan = append(scan, d.Seconds())
		fmt.Fprintf(stdout, "rep %d scan : store.ScanLedger of %d entries in %s\n", i+1, n, d.Round(time.Millisecond))
		for _, f := range []string{"csv", "json"} {
			out := filepath.Join(root, "export."+f)
			r, err := bench.RunMeasured(ctx, nil, bin, "export", "--data-dir", big.dir, "--format", f, "--from", from, "--to", to, "--out", out)
			if err != nil {
				return 0, err
			}
			add(f, r)
			if fi, err := os.Stat(out); err == nil {
				outSize[f] = fi.Size()
			}
			fmt.Fprintf(stdout, "rep %d %-4s : %s, peak RSS %.1f MB (VmHWM; peak RssAnon %.1f MB, peak RssFile %.1f MB), CPU %s, file %.0f MB; %s",
				i+1, f, r.Wall.Round(time.Millisecond), bench.MB(r.PeakRSS), bench.MB(r.PeakAnon), bench.MB(r.PeakFile), r.CPU.Round(time.Millisecond), bench.MB(outSize[f]), r.Output)
			if f == "csv" {
				v, err := bench.RunMeasured(ctx, nil, bin, "verify", out, "--data-dir", big.dir)
				if err != nil {
					return 0, fmt.Errorf("ica verify: %w", err)
				}
				add("verify", v)
				fmt.Fprintf(stdout, "rep %d verify: %s, peak RSS %.1f MB (peak RssAnon %.1f MB), CPU %s\n", i+1, v.Wall.Round(time.Millisecond), bench.MB(v.PeakRSS), bench.MB(v.PeakAnon), v.CPU.Round(time.Millisecond))
			}
			os.Remove(out)
		}
		d, n, err = expScan(small)
		if err != nil {
			return 0, err
		}
		scanSmall = append(scanSmall, d.Seconds())
		out := filepath.Join(root, "export.pdf")
		r, err := bench.RunMeasured(ctx, nil, bin, "export", "--data-dir", small.dir, "--format", "pdf", "--from", from, "--to", to, "--out", out)
		if err != nil {
			return 0, err
		}
		add("pdf", r)
		if fi, err := os.Stat(out); err == nil {
			outSize["pdf"] = fi.Size()
		}
		fmt.Fprintf(stdout, "rep %d pdf  : %s, peak RSS %.1f MB, CPU %s, file %.1f MB (%d entries; their scan %s); %s",
			i+1, r.Wall.Round(time.Millisecond), bench.MB(r.PeakRSS), r.CPU.Round(time.Millisecond), bench.MB(outSize["pdf"]), n, d.Round(time.Millisecond), r.Output)
		os.Remove(out)
	}
	wall := func(k string) float64 { return bench.Median(m[k].wall) }
	rss := func(k string) float64 { return bench.Median(m[k].rss) }
	anon := func(k string) string { return fmt.Sprintf("of which anonymous %.0f MB", bench.Median(m[k].anon)) }
	sc, scs := bench.Median(scan), bench.Median(scanSmall)
	base := fmt.Sprintf("ScanLedger %.2f s", sc)
	figs := []bench.Figure{
		{Name: fmt.Sprintf("CSV export, %d runs", c.runs), Value: wall("csv"), Unit: "s", Target: "< 15 s", Baseline: base, Pass: bench.Below(15)},
		{Name: "CSV export peak RSS", Value: rss("csv"), Unit: "MB", Target: "< 150 MB", Baseline: anon("csv"), Pass: bench.Below(150),
			Note: "VmHWM of the ica export child, polled every 10 ms; it counts the pages of the ledger file that bbolt's read-only mmap touched (page cache, reclaimable); the anonymous part (heap, stacks) is beside it"},
		{Name: fmt.Sprintf("JSON export, %d runs", c.runs), Value: wall("json"), Unit: "s", Baseline: base},
		{Name: "JSON export peak RSS", Value: rss("json"), Unit: "MB", Baseline: anon("json")},
		{Name: fmt.Sprintf("ica verify of the %d-run CSV", c.runs), Value: wall("verify"), Unit: "s", Baseline: base},
		{Name: "ica verify peak RSS", Value: rss("verify"), Unit: "MB", Baseline: anon("verify")},
		{Name: fmt.Sprintf("PDF export, %d runs", c.pdfRuns), Value: wall("pdf"), Unit: "s", Target: "< 5 s", Baseline: fmt.Sprintf("ScanLedger %.3f s", scs), Pass: bench.Below(5)},
		{Name: "PDF export peak RSS", Value: rss("pdf"), Unit: "MB", Baseline: anon("pdf")},
		{Name: "ledger generation (not a target)", Value: big.gen.Seconds(), Unit: "s", Baseline: fmt.Sprintf("%d entries", big.entries)},
	}
	title := fmt.Sprintf("export — medians of %d repetition(s); wall time of the real `ica export`/`ica verify` child processes (start-up, ledger open, checkpoint, export; `ica verify` measured on its own)", c.reps)
	ok := bench.PrintFigures(stdout, title, figs)
	if !ok {
		fmt.Fprintln(stdout, "RESULT: MISS")
		return 1, nil
	}
	fmt.Fprintln(stdout, "RESULT: PASS")
	return 0, nil
}

// expGenerate writes a ledger of n runs in dir (with the signing.key the
// binary will read), through the store's API from many goroutines.
func expGenerate(ctx context.Context, dir string, n, finishEvery int, rich bool, clients int) (*expLedger, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	if err := os.WriteFile(filepath.Join(dir, "signing.key"), []byte(hex.EncodeToString(seed)+"\n"), 0o600); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "ica.db")
	st, err := store.Open(path, store.Options{Key: ed25519.NewKeyFromSeed(seed), MaxBatch: 2048})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	statuses := []string{ica.RunSuccess, ica.RunSuccess, ica.RunSuccess, ica.RunFailed, ica.RunCancelled}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				err := expOneRun(ctx, st, i, finishEvery, rich, statuses)
				if err != nil {
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
	l := &expLedger{dir: dir, entries: st.LedgerEntries(), gen: time.Since(start)}
	if err := st.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if fi, err := os.Stat(path); err == nil {
		l.size = fi.Size()
	}
	return l, nil
}

func expOneRun(ctx context.Context, st *store.Store, i, finishEvery int, rich bool, statuses []string) error {
	id := fmt.Sprintf("%d", 20_000_000+i)
	in := &ica.RunStart{PipelineName: fmt.Sprintf("service-%02d", i%24), RunID: id, Branch: "refs/heads/main",
		Commit: fmt.Sprintf("%040x", i*7919+1), TriggeredBy: fmt.Sprintf("dev%d@example.com", i%50),
		ArtifactDigest: fmt.Sprintf("sha256:%064x", i), URL: fmt.Sprintf("https://dev.azure.com/contoso/platform/_build/results?buildId=%d", 20_000_000+i)}
	if _, _, err := st.StartRun(ctx, in, "azure-pipelines"); err != nil {
		return fmt.Errorf("start run %s: %w", id, err)
	}
	if rich {
		ev := &ica.EventInput{EventType: "build.completed", EventID: "build",
			EventData: fmt.Appendf(nil, `{"image":"service-%02d:1.%d.0","tests":{"passed":412,"failed":0}}`, i%24, i)}
		if _, _, err := st.AddEvent(ctx, id, ev, "azure-pipelines"); err != nil {
			return fmt.Errorf("event %s: %w", id, err)
		}
		if i%10 == 0 {
			cost := float64(100 + i%900)
			if _, _, err := st.RequestApproval(ctx, &ica.ApprovalRequest{RunID: id, DeploymentTarget: ica.TargetProduction, EstimatedCost: &cost}, "azure-pipelines"); err != nil {
				return fmt.Errorf("approval %s: %w", id, err)
			}
		}
	}
	if finishEvery > 0 && i%finishEvery == 0 {
		if _, _, err := st.FinishRun(ctx, id, &ica.RunFinish{Status: statuses[i%len(statuses)]}, "azure-pipelines"); err != nil {
			return fmt.Errorf("finish %s: %w", id, err)
		}
	}
	return nil
}

// expScan is the baseline: every entry read from bbolt and decoded, in-process.
func expScan(l *expLedger) (time.Duration, int, error) {
	raw, err := os.ReadFile(filepath.Join(l.dir, "signing.key"))
	if err != nil {
		return 0, 0, err
	}
	seed, err := hex.DecodeString(string(raw[:len(raw)-1]))
	if err != nil {
		return 0, 0, err
	}
	st, err := store.Open(filepath.Join(l.dir, "ica.db"), store.Options{Key: ed25519.NewKeyFromSeed(seed)})
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	n := 0
	start := time.Now()
	err = st.ScanLedger(1, func(e *ica.LedgerEntry) error {
		n++
		return nil
	})
	return time.Since(start), n, err
}
