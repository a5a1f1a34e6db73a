package main

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
	"net/http"
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

// coldstartConfig are the flags of the coldstart scenario.
type coldstartConfig struct {
	size      int64
	eventSize int
	workers   int
	reps      int
	idle      time.Duration
	dir       string
	ledger    string
	keep      bool
	repo      string
	bin       string
}

// runColdstart measures the "idle service" target (docs/design.md "Performance targets"): `ica serve` on a
// 1 GB ledger is ready (GET /readyz answers 200) within 1 s of being
// started, and its RSS after some idle seconds is below 50 MB.
func runColdstart(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c coldstartConfig
	fs := flag.NewFlagSet("coldstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sizeMB := fs.Int64("size-mb", 1024, "ledger size to generate, MiB")
	fs.IntVar(&c.eventSize, "event-size", 4096, "bytes of event_data per generated event")
	fs.IntVar(&c.workers, "workers", 256, "concurrent writers while generating (they share commits)")
	fs.IntVar(&c.reps, "reps", 3, "starts measured; figures are medians")
	fs.DurationVar(&c.idle, "idle", 5*time.Second, "idle time before RSS is read")
	fs.StringVar(&c.dir, "dir", "", "parent of the temporary data directory (default: the system temp dir)")
	fs.StringVar(&c.ledger, "data-dir", "", "use this data directory (generated there if it has no ledger; kept)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory (reuse it with -data-dir)")
	fs.StringVar(&c.repo, "repo", "", "ICA repository to build (default: found from the working directory)")
	fs.StringVar(&c.bin, "bin", "", "use this ica binary instead of building one")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	c.size = *sizeMB << 20
	if c.reps < 1 || c.workers < 1 || c.eventSize < 16 || c.size <= 0 {
		fmt.Fprintln(stderr, "icabench coldstart: -reps, -workers >= 1, -event-size >= 16, -size-mb > 0")
		return 2
	}
	code, err := coldstart(ctx, c, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "icabench coldstart:", err)
		return 2
	}
	return code
}

func coldstart(ctx context.Context, c coldstartConfig, stdout io.Writer) (int, error) {
	root, bin, cleanup, err := scnPrepare(ctx, "coldstart", c.dir, c.keep, c.repo, c.bin, stdout)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	data := c.ledger
	if data == "" {
		data = filepath.Join(root, "data")
	}
	fmt.Fprintf(stdout, "machine: %d CPUs (GOMAXPROCS %d), %s; data dir %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), data)
	ledger := filepath.Join(data, "ica.db")
	if fi, err := os.Stat(ledger); err == nil && fi.Size() >= c.size*9/10 {
		fmt.Fprintf(stdout, "using the existing ledger %s (%.0f MB)\n", ledger, bench.MB(fi.Size()))
	} else {
		start := time.Now()
		entries, err := generateColdLedger(ctx, data, c, stdout)
		if err != nil {
			return 0, fmt.Errorf("generate: %w", err)
		}
		fi, _ := os.Stat(ledger)
		fmt.Fprintf(stdout, "generated %.0f MB, %d ledger entries in %s\n", bench.MB(fi.Size()), entries, time.Since(start).Round(time.Second))
	}
	fi, err := os.Stat(ledger)
	if err != nil {
		return 0, err
	}

	dropped := dropPageCache()
	var starts, rss, anon []float64
	for i := range c.reps {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if dropped {
			dropPageCache()
		}
		d, r, a, err := measureStart(ctx, bin, data, c.idle)
		if err != nil {
			return 0, fmt.Errorf("start %d: %w", i+1, err)
		}
		fmt.Fprintf(stdout, "start %d: ready in %.0f ms; after %s idle RSS %.1f MB (anonymous %.1f MB, the rest is the mmapped ledger)\n",
			i+1, bench.Ms(d), c.idle, bench.MB(r), bench.MB(a))
		starts, rss, anon = append(starts, bench.Ms(d)), append(rss, bench.MB(r)), append(anon, bench.MB(a))
	}
	out, ok := bench.Check(ctx, bin, data)
	if !ok {
		return 0, fmt.Errorf("ica check on the generated ledger failed:\n%s", out)
	}
	cache := "page cache dropped before each start"
	if !dropped {
		cache = "page cache NOT dropped (needs root): the file may be cached"
	}
	figs := []bench.Figure{
		{Name: "cold start to /readyz 200", Value: bench.Median(starts), Unit: "ms", Target: "< 1000", Pass: bench.Below(1000),
			Note: fmt.Sprintf("ledger %.0f MB, median of %d; %s", bench.MB(fi.Size()), c.reps, cache)},
		{Name: "idle RSS", Value: bench.Median(rss), Unit: "MB", Target: "< 50", Pass: bench.Below(50),
			Note: fmt.Sprintf("VmRSS after %s idle, median; anonymous part %.1f MB", c.idle, bench.Median(anon))},
	}
	if bench.PrintFigures(stdout, "idle service (docs/design.md targets)", figs) {
		return 0, nil
	}
	return 1, nil
}

// measureStart starts ica serve on data and returns the time until /readyz
// answered 200, then VmRSS and RssAnon after idle.
func measureStart(ctx context.Context, bin, data string, idle time.Duration) (time.Duration, int64, int64, error) {
	begin := time.Now()
	s, err := bench.StartServer(ctx, bench.ServerOptions{Bin: bin, DataDir: data})
	if err != nil {
		return 0, 0, 0, err
	}
	defer s.Stop(15 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	var ready time.Duration
	for {
		resp, err := client.Get(s.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ready = time.Since(begin)
				break
			}
		}
		if time.Since(begin) > 30*time.Second {
			return 0, 0, 0, fmt.Errorf("not ready after 30s:\n%s", s.Log())
		}
		time.Sleep(2 * time.Millisecond)
	}
	select {
	case <-time.After(idle):
	case <-ctx.Done():
		return 0, 0, 0, ctx.Err()
	}
	rss, err := bench.ProcStatusBytes(s.PID(), "VmRSS")
	if err != nil {
		return 0, 0, 0, err
	}
	anon, _ := bench.ProcStatusBytes(s.PID(), "RssAnon")
	return ready, rss, anon, nil
}

// dropPageCache asks the kernel to forget cached file pages (root only), so
// the start reads the ledger from disk as after a reboot or a pod move.
func dropPageCache() bool {
	exec := func() error {
		f, err := os.OpenFile("/proc/sys/vm/drop_caches", os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteString("3\n")
		return err
	}
	return exec() == nil
}

// generateColdLedger writes ledger-shaped history through the store's API (the
// same transactions the server makes: runs, events, finishes, with the hash
// chain and checkpoints) until the file reaches c.size. Many concurrent
// writers share group commits, which keeps generation to a few minutes.
func generateColdLedger(ctx context.Context, data string, c coldstartConfig, stdout io.Writer) (uint64, error) {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return 0, err
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return 0, err
	}
	// The server started later signs with the same key, so ica check passes.
	if err := os.WriteFile(filepath.Join(data, "signing.key"), []byte(hex.EncodeToString(seed)+"\n"), 0o600); err != nil {
		return 0, err
	}
	path := filepath.Join(data, "ica.db")
	st, err := store.Open(path, store.Options{Key: ed25519.NewKeyFromSeed(seed), MaxBatch: 1024})
	if err != nil {
		return 0, err
	}
	defer st.Close()

	filler := make([]byte, c.eventSize/2)
	_, _ = rand.Read(filler)
	blob := hex.EncodeToString(filler) // incompressible, like build logs' hashes
	eventData := json.RawMessage(fmt.Sprintf(`{"stage":"build","log":%q}`, blob))
	const eventsPerRun = 8

	var runs atomic.Int64
	var size atomic.Int64
	stop := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	errc := make(chan error, c.workers)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				once.Do(func() { close(stop) })
				return
			case <-t.C:
				fi, err := os.Stat(path)
				if err != nil {
					continue
				}
				size.Store(fi.Size())
				if fi.Size() >= c.size {
					once.Do(func() { close(stop) })
					return
				}
				if time.Since(last) > 10*time.Second {
					fmt.Fprintf(stdout, "  generating: %.0f / %.0f MB, %d runs\n", bench.MB(fi.Size()), bench.MB(c.size), runs.Load())
					last = time.Now()
				}
			}
		}
	}()
	for w := range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("%d%06d", w, n)
				if _, _, err := st.StartRun(ctx, &ica.RunStart{PipelineName: fmt.Sprintf("service-%02d", w%40), RunID: id,
					Branch: "refs/heads/main", Commit: "9fceb02d0ae598e95dc970b74767f19372d61af8", TriggeredBy: "dev@example.com",
					URL: "https://dev.azure.com/contoso/project/_build/results?buildId=" + id}, "bench"); err != nil {
					errc <- err
					once.Do(func() { close(stop) })
					return
				}
				for e := range eventsPerRun {
					if _, _, err := st.AddEvent(ctx, id, &ica.EventInput{EventType: "build.step", EventData: eventData,
						EventID: fmt.Sprintf("e%d", e)}, "bench"); err != nil {
						errc <- err
						once.Do(func() { close(stop) })
						return
					}
				}
				if _, _, err := st.FinishRun(ctx, id, &ica.RunFinish{Status: ica.RunSuccess}, "bench"); err != nil {
					errc <- err
					once.Do(func() { close(stop) })
					return
				}
				runs.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return 0, err
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if _, err := st.Checkpoint(); err != nil {
		return 0, err
	}
	return st.LedgerEntries(), nil
}

// The scenario registers itself, so the table in main.go needs no edit.
func init() {
	scenarios["coldstart"] = scenario{"ica serve start-up and idle RSS on a generated 1 GB ledger", runColdstart}
}
