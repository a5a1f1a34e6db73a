package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ica-governance/ica/bench"
)

// ingestConfig are the flags of the ingest scenario.
type ingestConfig struct {
	duration  time.Duration
	warmup    time.Duration
	clients   int
	events    int
	reps      int
	valueSize int
	eventIDs  bool
	runIDs    string
	dir       string
	keep      bool
	repo      string
	bin       string
	// On PostgreSQL (ingest_pg.go): the server, the replicas, pgbench.
	databaseURL string
	replicas    int
	pgbench     string
}

// ingestRep is what one ICA repetition measured.
type ingestRep struct {
	total, events int64 // requests counted in the window (all, /events only)
	runs          int64 // runs finished in the window
	errors        int64
	window        time.Duration
	lat           []time.Duration // sorted, all counted requests
	latEvents     []time.Duration
	peakRSS       int64
	checkOK       bool
	checkOut      string
	commits       float64 // ledger commits (group commits) during the whole rep
	commitSeconds float64
	ledgerEntries float64
	firstErr      string
	// From the server's own histograms (whole repetition, warm-up included).
	serverUnder25  float64 // share of POSTs the server answered within 25 ms
	commitsUnder8  float64 // share of commits (fsync included) within 8 ms
	commitsUnder16 float64
	// Where the memory is, read at the end of the window: anonymous
	// (Go heap, stacks) versus file-backed (bbolt's mmap of the ledger).
	rssAnon, rssFile, goSys, ledgerSize int64
	diskBytes                           int64 // written to storage by the server, whole repetition
	peakAnon, peakFile                  int64 // highest values sampled every 100 ms
}

func (r ingestRep) perSec() float64       { return float64(r.total) / r.window.Seconds() }
func (r ingestRep) eventsPerSec() float64 { return float64(r.events) / r.window.Seconds() }

func runIngest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c ingestConfig
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&c.duration, "duration", 15*time.Second, "measured time of each repetition (after warm-up)")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "load before measuring, in each repetition")
	fs.IntVar(&c.clients, "clients", 64, "concurrent HTTP clients (and baseline goroutines)")
	fs.IntVar(&c.events, "events", 5, "events per run (between start and finish)")
	fs.IntVar(&c.reps, "reps", 3, "repetitions of each measurement; figures are medians")
	fs.IntVar(&c.valueSize, "value-size", 600, "bytes per raw bbolt baseline write")
	fs.BoolVar(&c.eventIDs, "event-ids", true, "send an event_id with every event (as retrying pipelines do)")
	fs.StringVar(&c.runIDs, "run-ids", "buildid", `run ids: "buildid" (one increasing integer for all clients, as Azure's Build.BuildId) or "spread" (bench-<client>-<n>: concurrent runs far apart in key order, a worst case for page writes)`)
	fs.StringVar(&c.dir, "dir", "", "parent of the temporary ledger and baseline file (default: the system temp dir)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory")
	fs.StringVar(&c.repo, "repo", "", "ICA repository to build (default: found from the working directory)")
	fs.StringVar(&c.bin, "bin", "", "use this ica binary instead of building one")
	fs.StringVar(&c.databaseURL, "database-url", "", "measure ICA on PostgreSQL instead of bbolt: a superuser DSN of the server (databases are created and dropped); beside pgbench")
	fs.IntVar(&c.replicas, "replicas", 2, "with -database-url: ica serve processes sharing the database (clients are spread over them)")
	fs.StringVar(&c.pgbench, "pgbench", "", "with -database-url: the pgbench binary (default: on PATH, else /usr/lib/postgresql/*/bin)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.runIDs != "buildid" && c.runIDs != "spread" {
		fmt.Fprintln(stderr, `icabench ingest: -run-ids must be "buildid" or "spread"`)
		return 2
	}
	if c.clients < 1 || c.reps < 1 || c.events < 0 || c.duration <= 0 || c.warmup < 0 {
		fmt.Fprintln(stderr, "icabench ingest: -clients, -reps must be >= 1, -duration > 0")
		return 2
	}
	run := ingest
	if c.databaseURL != "" || flagSet(fs, "replicas") {
		run = ingestPG // -replicas alone: the server of ICA_BENCH_POSTGRES
	}
	code, err := run(ctx, c, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "icabench ingest:", err)
		return 2
	}
	return code
}

func ingest(ctx context.Context, c ingestConfig, stdout, stderr io.Writer) (int, error) {
	root, bin, cleanup, err := scnPrepare(ctx, "ingest", c.dir, c.keep, c.repo, c.bin, stdout)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "ingest: %d clients, runs of start + %d events + finish, %s measured after %s warm-up, %d repetitions, run ids %s\n",
		c.clients, c.events, c.duration, c.warmup, c.reps, c.runIDs)
	fmt.Fprintf(stdout, "machine: %d CPUs (GOMAXPROCS %d), %s; temp dir %s (%s)\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), root, fsInfo(root))

	var icaReps []ingestRep
	var boltReps []bench.BoltResult
	for i := range c.reps {
		// Alternate the order (ICA, bolt, bolt, ICA, ...) so drift in the
		// machine's state hits both measurements alike.
		order := []string{"ica", "bolt"}
		if i%2 == 1 {
			order = []string{"bolt", "ica"}
		}
		for _, what := range order {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			switch what {
			case "ica":
				r, err := ingestICA(ctx, c, bin, filepath.Join(root, fmt.Sprintf("ica-%d", i+1)), i+1)
				if err != nil {
					return 0, fmt.Errorf("repetition %d: %w", i+1, err)
				}
				icaReps = append(icaReps, r)
				fmt.Fprintf(stdout, "rep %d ica : %7.0f durable events/s (%d requests in %s; /events only %.0f/s; %d runs finished), p50 %.2f ms, p99 %.2f ms, peak RSS %.1f MB, errors %d, %.0f ledger entries in %.0f commits (%.1f entries/commit, mean commit %.2f ms), check %s\n",
					i+1, r.perSec(), r.total, r.window, r.eventsPerSec(), r.runs,
					bench.Ms(bench.Percentile(r.lat, 50)), bench.Ms(bench.Percentile(r.lat, 99)),
					bench.MB(r.peakRSS), r.errors, r.ledgerEntries, r.commits, safeDiv(r.ledgerEntries, r.commits),
					1000*safeDiv(r.commitSeconds, r.commits), passWord(r.checkOK))
				fmt.Fprintf(stdout, "           server side: %.2f%% of POSTs answered within 25 ms; commits within 8 ms %.1f%%, within 16 ms %.1f%%\n",
					100*r.serverUnder25, 100*r.commitsUnder8, 100*r.commitsUnder16)
				fmt.Fprintf(stdout, "           memory: RssAnon at end %.1f MB (peak sampled %.1f MB), RssFile at end %.1f MB (peak sampled %.1f MB; ledger file %.1f MB, mmapped), Go runtime sys %.1f MB\n",
					bench.MB(r.rssAnon), bench.MB(r.peakAnon), bench.MB(r.rssFile), bench.MB(r.peakFile), bench.MB(r.ledgerSize), bench.MB(r.goSys))
				fmt.Fprintf(stdout, "           disk: %.0f MB written, %.0f KB per commit, %.0f B per ledger entry\n",
					bench.MB(r.diskBytes), safeDiv(float64(r.diskBytes), r.commits)/1024, safeDiv(float64(r.diskBytes), r.ledgerEntries))
				if r.firstErr != "" {
					fmt.Fprintf(stdout, "           first error: %s\n", r.firstErr)
				}
			case "bolt":
				path := filepath.Join(root, fmt.Sprintf("bolt-%d.db", i+1))
				r, err := bench.BoltBatch(path, c.clients, c.valueSize, c.warmup, c.duration)
				if err != nil {
					return 0, fmt.Errorf("repetition %d: baseline: %w", i+1, err)
				}
				os.Remove(path)
				boltReps = append(boltReps, r)
				fmt.Fprintf(stdout, "rep %d bolt: %7.0f writes/s (%d Batch writes of %d B in %s), p50 %.2f ms, p99 %.2f ms, errors %d; disk %.0f MB written, %.0f B per write\n",
					i+1, r.PerSec(), r.Writes, c.valueSize, r.Duration,
					bench.Ms(bench.Percentile(r.Latency, 50)), bench.Ms(bench.Percentile(r.Latency, 99)), r.Errors,
					bench.MB(r.DiskBytes), safeDiv(float64(r.DiskBytes), float64(r.AllWrites)))
			}
		}
	}

	med := func(f func(ingestRep) float64) float64 { return bench.MedianOf(icaReps, f) }
	boltMed := func(f func(bench.BoltResult) float64) float64 { return bench.MedianOf(boltReps, f) }
	icaRate := med(ingestRep.perSec)
	boltRate := boltMed(bench.BoltResult.PerSec)
	ratio := safeDiv(icaRate, boltRate)
	boltP50 := boltMed(func(r bench.BoltResult) float64 { return bench.Ms(bench.Percentile(r.Latency, 50)) })
	boltP99 := boltMed(func(r bench.BoltResult) float64 { return bench.Ms(bench.Percentile(r.Latency, 99)) })
	var errs int64
	checks := 0
	for _, r := range icaReps {
		errs += r.errors
		if r.checkOK {
			checks++
		}
	}
	figs := []bench.Figure{
		{Name: "durable events/s (start+events+finish)", Value: icaRate, Unit: "/s", Target: ">= 3,000",
			Baseline: fmt.Sprintf("raw Batch %.0f writes/s", boltRate), Pass: bench.AtLeast(3000),
			Note: "every acknowledged HTTP request of a run (start, each event, finish) is one durable ledger entry"},
		{Name: "durable events/s (/events only)", Value: med(ingestRep.eventsPerSec), Unit: "/s"},
		{Name: "ratio to raw bbolt Batch", Value: ratio, Target: ">= 0.5",
			Baseline: fmt.Sprintf("%.0f / %.0f", icaRate, boltRate), Pass: bench.AtLeast(0.5)},
		{Name: "same, with the Merkle log (issue 13 bar)", Value: ratio, Target: ">= 1.4",
			Baseline: fmt.Sprintf("%.0f / %.0f", icaRate, boltRate), Pass: bench.AtLeast(1.4),
			Note: "every append also maintains the RFC 6962 tree (compact range in meta, a stored node per 16 entries) and signs a checkpoint every 1,000 entries: these figures include it"},
		{Name: "latency p50", Value: med(func(r ingestRep) float64 { return bench.Ms(bench.Percentile(r.lat, 50)) }), Unit: "ms",
			Baseline: fmt.Sprintf("Batch call p50 %.2f ms", boltP50)},
		{Name: "latency p99", Value: med(func(r ingestRep) float64 { return bench.Ms(bench.Percentile(r.lat, 99)) }), Unit: "ms",
			Target: "< 25 ms", Baseline: fmt.Sprintf("Batch call p99 %.2f ms", boltP99), Pass: bench.Below(25)},
		{Name: "latency p99 (/events only)", Value: med(func(r ingestRep) float64 { return bench.Ms(bench.Percentile(r.latEvents, 99)) }), Unit: "ms"},
		{Name: "server peak RSS (VmHWM)", Value: med(func(r ingestRep) float64 { return bench.MB(r.peakRSS) }), Unit: "MB",
			Target: "< 100 MB", Pass: bench.Below(100)},
		{Name: "server anonymous RSS at end (RssAnon)", Value: med(func(r ingestRep) float64 { return bench.MB(r.rssAnon) }), Unit: "MB",
			Baseline: fmt.Sprintf("RssFile %.0f MB, ledger file %.0f MB", med(func(r ingestRep) float64 { return bench.MB(r.rssFile) }),
				med(func(r ingestRep) float64 { return bench.MB(r.ledgerSize) })),
			Note: "VmHWM counts the pages of the ledger file that bbolt's read-only mmap has touched (page cache, reclaimable); RssAnon is the process's own memory"},
		{Name: "failed requests (all reps)", Value: float64(errs), Target: "0", Pass: func(v float64) bool { return v == 0 }},
		{Name: "ica check after the run", Value: float64(checks), Target: fmt.Sprintf("%d of %d", c.reps, c.reps),
			Pass: func(v float64) bool { return int(v) == c.reps }},
	}
	title := fmt.Sprintf("ingest — medians of %d repetitions, %d clients, %s each (ratio = median ICA rate / median raw bbolt Batch rate, same disk, same run)",
		c.reps, c.clients, c.duration)
	ok := bench.PrintFigures(stdout, title, figs)
	for i, r := range icaReps {
		if !r.checkOK {
			fmt.Fprintf(stdout, "ica check (rep %d) FAILED:\n%s\n", i+1, r.checkOut)
		}
	}
	if len(icaReps) > 0 {
		fmt.Fprintf(stdout, "ica check (rep %d):\n%s\n", len(icaReps), indent(icaReps[len(icaReps)-1].checkOut))
	}
	if !ok {
		fmt.Fprintln(stdout, "RESULT: MISS")
		return 1, nil
	}
	fmt.Fprintln(stdout, "RESULT: PASS")
	return 0, nil
}

// ingestICA runs one repetition against a fresh server and ledger.
func ingestICA(ctx context.Context, c ingestConfig, bin, dataDir string, rep int) (ingestRep, error) {
	srv, err := bench.StartServer(ctx, bench.ServerOptions{Bin: bin, DataDir: dataDir})
	if err != nil {
		return ingestRep{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.Kill()
		}
	}()
	client := bench.Client(c.clients)
	defer client.CloseIdleConnections()
	base := srv.URL()
	auth := "Bearer " + srv.Token
	if err := waitReady(ctx, client, base); err != nil {
		return ingestRep{}, err
	}

	w := bench.NewWindow(c.warmup, c.duration)
	var peakAnon, peakFile atomic.Int64
	sampleDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		for t := time.NewTicker(100 * time.Millisecond); w.Open(time.Now()) && ctx.Err() == nil; <-t.C {
			if v, err := bench.ProcStatusBytes(srv.PID(), "RssAnon"); err == nil && v > peakAnon.Load() {
				peakAnon.Store(v)
			}
			if v, err := bench.ProcStatusBytes(srv.PID(), "RssFile"); err == nil && v > peakFile.Load() {
				peakFile.Store(v)
			}
		}
	}()
	spread := ""
	if c.runIDs == "spread" {
		spread = fmt.Sprintf("bench-%d-", rep)
	}
	load := pipelineLoad(ctx, client, w, pipelineLoadConfig{clients: c.clients, events: c.events, eventIDs: c.eventIDs,
		spreadPrefix: spread, target: func(int) (string, string) { return base, auth }})
	<-sampleDone

	r := ingestRep{peakAnon: peakAnon.Load(), peakFile: peakFile.Load(), total: load.total, events: load.events, runs: load.runs,
		errors: load.errors, firstErr: load.firstErr, window: w.Duration(), lat: load.lat, latEvents: load.latEvents}
	if m, lines, err := scrapeMetrics(ctx, client, srv.MetricsURL()); err == nil {
		r.commits = m["ica_ledger_commit_seconds_count"]
		r.commitSeconds = m["ica_ledger_commit_seconds_sum"]
		r.ledgerEntries = m["ica_ledger_entries"]
		r.goSys = int64(m["go_memstats_sys_bytes"])
		r.serverUnder25, _ = histogramShare(lines, "ica_http_request_duration_seconds", "0.025", `method="POST"`)
		r.commitsUnder8, _ = histogramShare(lines, "ica_ledger_commit_seconds", "0.008")
		r.commitsUnder16, _ = histogramShare(lines, "ica_ledger_commit_seconds", "0.016")
	}
	if r.peakRSS, err = srv.PeakRSS(); err != nil {
		return r, err
	}
	r.diskBytes, _ = bench.ProcIOWriteBytes(srv.PID())
	r.rssAnon, _ = bench.ProcStatusBytes(srv.PID(), "RssAnon")
	r.rssFile, _ = bench.ProcStatusBytes(srv.PID(), "RssFile")
	if fi, err := os.Stat(filepath.Join(dataDir, "ica.db")); err == nil {
		r.ledgerSize = fi.Size()
	}
	stopped = true
	if err := srv.Stop(20 * time.Second); err != nil {
		return r, err
	}
	r.checkOut, r.checkOK = bench.Check(ctx, bin, dataDir)
	return r, nil
}

func waitReady(ctx context.Context, client *http.Client, base string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server at %s not healthy: %v", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startBody is a run start as the pipeline template sends it.
func startBody(runID string, client, n int) []byte {
	return fmt.Appendf(nil, `{"pipeline_name":"bench-pipeline-%02d","run_id":%q,"branch":"refs/heads/main",`+
		`"commit":"%040x","triggered_by":"bench-user@example.com",`+
		`"artifact_digest":"sha256:%064x","url":"https://dev.azure.com/bench/project/_build/results?buildId=%d"}`,
		client%8, runID, client*1_000_000+n, n, n)
}

// eventBody is a typical build-step event: about 250 bytes of event_data,
// which makes a ledger entry of about 600 bytes, the baseline's value size.
func eventBody(e int, withID bool) []byte {
	id := ""
	if withID {
		id = fmt.Sprintf(`,"event_id":"step-%d"`, e)
	}
	return fmt.Appendf(nil, `{"event_type":"build.step"%s,"event_data":{"step":%d,"name":"Run unit tests","status":"succeeded",`+
		`"duration_ms":%d,"agent":"Azure Pipelines 3","job":"Build","task":"DotNetCoreCLI@2","tests":{"passed":412,"failed":0,"skipped":3},`+
		`"log_url":"https://dev.azure.com/bench/project/_build/results?buildId=1&view=logs&j=12f1170f&t=%d"}}`,
		id, e, 1000+e*37, e)
}

// scrapeMetrics reads the plain (unlabelled) samples of /metrics.
func scrapeMetrics(ctx context.Context, client *http.Client, base string) (map[string]float64, []string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(line, "{") {
			lines = append(lines, line)
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out, lines, sc.Err()
}

// histogramShare returns the share of observations of the histogram metric
// (summed over the series whose labels contain every filter) that were at
// most le, and the count.
func histogramShare(lines []string, metric, le string, filters ...string) (share, count float64) {
	var below float64
	for _, line := range lines {
		if !strings.HasPrefix(line, metric+"_bucket{") {
			continue
		}
		skip := false
		for _, f := range filters {
			if !strings.Contains(line, f) {
				skip = true
			}
		}
		if skip {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, `le="+Inf"`):
			count += v
		case strings.Contains(line, `le="`+le+`"`):
			below += v
		}
	}
	return safeDiv(below, count), count
}

// fsInfo names the filesystem of dir, warning when fsync costs nothing.
func fsInfo(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "filesystem unknown"
	}
	name := map[int64]string{0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs (fsync is free: figures are not disk figures)",
		0x794c7630: "overlayfs"}[int64(st.Type)]
	if name == "" {
		name = fmt.Sprintf("fs type 0x%x", st.Type)
	}
	return name + "; ledger and baseline share it"
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func passWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAILED"
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
