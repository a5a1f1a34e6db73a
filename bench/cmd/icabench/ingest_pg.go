package main

// ingest on PostgreSQL: several real `ica serve` processes sharing one
// database, the clients spread over them, beside pgbench committing one
// small row per transaction on the same server in the same run.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ica-governance/ica/bench"
)

// pgBaselineRow is the size of the baseline's row: about what one pipeline
// event costs in a kv table (key, value, index entry) before ICA's indexes.
const pgBaselineRow = 300

// flagSet reports whether the named flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// pgIngestRep is what one repetition on PostgreSQL measured.
type pgIngestRep struct {
	total, events, runs, errors int64
	window                      time.Duration
	lat, latEvents              []time.Duration
	firstErr                    string
	commits, commitSeconds      float64 // summed over the replicas
	ledgerEntries               float64
	serverUnder50               float64 // share of POSTs the servers answered within 50 ms
	peakRSS                     []int64 // per replica
	dbCommits                   int64   // transactions committed in the database during the window
	walBytes                    int64   // WAL written during the window (the whole server)
	dbSize                      int64
	checkOK                     bool
	checkOut                    string
}

func (r pgIngestRep) perSec() float64       { return float64(r.total) / r.window.Seconds() }
func (r pgIngestRep) eventsPerSec() float64 { return float64(r.events) / r.window.Seconds() }

func ingestPG(ctx context.Context, c ingestConfig, stdout, stderr io.Writer) (int, error) {
	if c.databaseURL == "" {
		c.databaseURL = os.Getenv(bench.PostgresEnv)
	}
	if c.replicas < 1 {
		return 0, fmt.Errorf("-replicas must be at least 1")
	}
	pg, err := bench.OpenPostgres(ctx, c.databaseURL)
	if err != nil {
		return 0, err
	}
	pgbench, err := bench.FindPgbench(c.pgbench)
	if err != nil {
		return 0, err
	}
	root, bin, cleanup, err := scnPrepare(ctx, "ingest-pg", c.dir, c.keep, c.repo, c.bin, stdout)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "ingest on PostgreSQL: %d replicas, %d clients spread over them, runs of start + %d events + finish, %s measured after %s warm-up, %d repetitions\n",
		c.replicas, c.clients, c.events, c.duration, c.warmup, c.reps)
	fmt.Fprintf(stdout, "machine: %d CPUs (GOMAXPROCS %d), %s; server %s: %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), pg.Describe(), pg.Settings(ctx))
	if d := pg.DataDirectory(ctx); d != "" {
		if _, err := os.Stat(d); err == nil {
			fmt.Fprintf(stdout, "server data directory on this machine: %s\n", strings.TrimSuffix(fsInfo(d), "; ledger and baseline share it"))
		}
	}
	fmt.Fprintf(stdout, "baseline: %s -n -M prepared -c %d -j 2, one INSERT of a %d-byte row per transaction into a table of its own\n",
		pgbench, c.clients, pgBaselineRow)

	var icaReps []pgIngestRep
	var baseReps []bench.PgbenchResult
	for i := range c.reps {
		order := []string{"ica", "pgbench"}
		if i%2 == 1 {
			order = []string{"pgbench", "ica"}
		}
		for _, what := range order {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			switch what {
			case "ica":
				r, err := ingestPGRep(ctx, c, bin, pg, filepath.Join(root, fmt.Sprintf("ica-%d", i+1)))
				if err != nil {
					return 0, fmt.Errorf("repetition %d: %w", i+1, err)
				}
				icaReps = append(icaReps, r)
				var rss []string
				for _, v := range r.peakRSS {
					rss = append(rss, fmt.Sprintf("%.1f", bench.MB(v)))
				}
				fmt.Fprintf(stdout, "rep %d ica    : %7.0f durable events/s (%d requests in %s; /events only %.0f/s; %d runs finished), p50 %.2f ms, p99 %.2f ms, errors %d, check %s\n",
					i+1, r.perSec(), r.total, r.window, r.eventsPerSec(), r.runs,
					bench.Ms(bench.Percentile(r.lat, 50)), bench.Ms(bench.Percentile(r.lat, 99)), r.errors, passWord(r.checkOK))
				fmt.Fprintf(stdout, "               group commits: %.0f (%.1f ledger entries each, mean %.2f ms); database commits in the window %d (%.0f/s); WAL (whole server) %.0f B per request; %.2f%% of POSTs answered within 50 ms by the servers; peak RSS per replica %s MB; database %.1f MB\n",
					r.commits, safeDiv(r.ledgerEntries, r.commits), 1000*safeDiv(r.commitSeconds, r.commits),
					r.dbCommits, float64(r.dbCommits)/r.window.Seconds(), safeDiv(float64(r.walBytes), float64(r.total)),
					100*r.serverUnder50, strings.Join(rss, " / "), bench.MB(r.dbSize))
				if r.firstErr != "" {
					fmt.Fprintf(stdout, "               first error: %s\n", r.firstErr)
				}
			case "pgbench":
				r, err := pgbenchRep(ctx, c, pgbench, pg, filepath.Join(root, fmt.Sprintf("pgbench-%d", i+1)))
				if err != nil {
					return 0, fmt.Errorf("repetition %d: baseline: %w", i+1, err)
				}
				baseReps = append(baseReps, r)
				fmt.Fprintf(stdout, "rep %d pgbench: %7.0f inserts/s (%d in %s), p50 %.2f ms, p99 %.2f ms, failed %d\n",
					i+1, r.TPS, r.Count, r.Duration, bench.Ms(bench.Percentile(r.Latency, 50)), bench.Ms(bench.Percentile(r.Latency, 99)), r.Failed)
			}
		}
	}

	med := func(f func(pgIngestRep) float64) float64 { return bench.MedianOf(icaReps, f) }
	baseMed := func(f func(bench.PgbenchResult) float64) float64 { return bench.MedianOf(baseReps, f) }
	icaRate := med(pgIngestRep.perSec)
	baseRate := baseMed(bench.PgbenchResult.PerSec)
	baseP99 := baseMed(func(r bench.PgbenchResult) float64 { return bench.Ms(bench.Percentile(r.Latency, 99)) })
	var errs int64
	checks := 0
	for _, r := range icaReps {
		errs += r.errors
		if r.checkOK {
			checks++
		}
	}
	figs := []bench.Figure{
		{Name: fmt.Sprintf("durable events/s, %d replicas", c.replicas), Value: icaRate, Unit: "/s", Target: ">= 5,000",
			Baseline: fmt.Sprintf("pgbench %.0f inserts/s", baseRate), Pass: bench.AtLeast(5000),
			Note: "every acknowledged HTTP request of a run (start, each event, finish) is one ledger entry committed in PostgreSQL (synchronous commit) before its answer"},
		{Name: "durable events/s (/events only)", Value: med(pgIngestRep.eventsPerSec), Unit: "/s"},
		{Name: "ratio to raw pgbench inserts", Value: safeDiv(icaRate, baseRate), Target: ">= 0.2",
			Baseline: fmt.Sprintf("%.0f / %.0f", icaRate, baseRate), Pass: bench.AtLeast(0.2)},
		{Name: "latency p50", Value: med(func(r pgIngestRep) float64 { return bench.Ms(bench.Percentile(r.lat, 50)) }), Unit: "ms",
			Baseline: fmt.Sprintf("pgbench p50 %.2f ms", baseMed(func(r bench.PgbenchResult) float64 { return bench.Ms(bench.Percentile(r.Latency, 50)) }))},
		{Name: "latency p99", Value: med(func(r pgIngestRep) float64 { return bench.Ms(bench.Percentile(r.lat, 99)) }), Unit: "ms",
			Target: "< 50 ms", Baseline: fmt.Sprintf("pgbench p99 %.2f ms", baseP99), Pass: bench.Below(50)},
		{Name: "ledger entries per group commit", Value: med(func(r pgIngestRep) float64 { return safeDiv(r.ledgerEntries, r.commits) }),
			Baseline: fmt.Sprintf("mean commit %.2f ms", med(func(r pgIngestRep) float64 { return 1000 * safeDiv(r.commitSeconds, r.commits) }))},
		{Name: "failed requests (all reps)", Value: float64(errs), Target: "0", Pass: func(v float64) bool { return v == 0 }},
		{Name: "ica check after the run", Value: float64(checks), Target: fmt.Sprintf("%d of %d", c.reps, c.reps),
			Pass: func(v float64) bool { return int(v) == c.reps }},
	}
	title := fmt.Sprintf("ingest on PostgreSQL — medians of %d repetitions, %d replicas, %d clients, %s each (ratio = median ICA rate / median pgbench rate, same server, same run)",
		c.reps, c.replicas, c.clients, c.duration)
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

// pgReplicas starts n replicas of ica serve on a fresh database, with the
// keys every replica must share, and waits until each is ready.
type pgReplicas struct {
	dsn     string
	env     []string
	servers []*bench.Server
	drop    func()
}

func startPGReplicas(ctx context.Context, bin string, pg *bench.Postgres, dir string, n int, extraEnv ...string) (*pgReplicas, error) {
	dsn, drop, err := pg.CreateDatabase(ctx, "icabench")
	if err != nil {
		return nil, err
	}
	p := &pgReplicas{dsn: dsn, drop: drop,
		env: append([]string{"ICA_DATABASE_URL=" + dsn, "ICA_SIGNING_KEY=" + bench.RandomToken(), "ICA_ACTION_SECRET=" + bench.RandomToken()}, extraEnv...)}
	for i := range n {
		s, err := bench.StartServer(ctx, bench.ServerOptions{Bin: bin, DataDir: filepath.Join(dir, fmt.Sprintf("replica-%d", i+1)), Env: p.env, Wait: time.Minute})
		if err != nil {
			p.kill()
			return nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		p.servers = append(p.servers, s)
	}
	client := bench.Client(n)
	defer client.CloseIdleConnections()
	for i, s := range p.servers {
		if err := waitReadyz(ctx, client, s.URL(), 30*time.Second); err != nil {
			p.kill()
			return nil, fmt.Errorf("replica %d: %w\n%s", i+1, err, s.Log())
		}
	}
	return p, nil
}

// kill ends every replica still running (Kill of a stopped one only waits
// for it) and drops the database.
func (p *pgReplicas) kill() {
	for _, s := range p.servers {
		s.Kill()
	}
	p.drop()
}

// check runs `ica check` on the database, as an operator would.
func (p *pgReplicas) check(ctx context.Context, bin string) (string, bool) {
	cmd := exec.CommandContext(ctx, bin, "check")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ICA_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, p.env...)
	b, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(b)), err == nil
}

func waitReadyz(ctx context.Context, client *http.Client, base string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		st, body, _, err := bench.DoJSON(ctx, client, http.MethodGet, base+"/readyz", "", nil)
		if err == nil && st == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s/readyz not ready within %s: %d %s %v", base, within, st, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dbCounters reads what the database did: transactions committed in it and
// WAL written by the server.
func dbCounters(ctx context.Context, dsn string) (commits, wal, size int64) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, 0, 0
	}
	defer conn.Close(context.Background())
	_ = conn.QueryRow(ctx, "SELECT pg_stat_get_db_xact_commit(oid), pg_database_size(oid) FROM pg_database WHERE datname = current_database()").Scan(&commits, &size)
	_ = conn.QueryRow(ctx, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").Scan(&wal)
	return commits, wal, size
}

// ingestPGRep runs one repetition: fresh database, fresh replicas.
func ingestPGRep(ctx context.Context, c ingestConfig, bin string, pg *bench.Postgres, dir string) (pgIngestRep, error) {
	p, err := startPGReplicas(ctx, bin, pg, dir, c.replicas)
	if err != nil {
		return pgIngestRep{}, err
	}
	defer p.kill()
	client := bench.Client(c.clients)
	defer client.CloseIdleConnections()

	w := bench.NewWindow(c.warmup, c.duration)
	var startCommits, startWAL atomic.Int64
	go func() {
		// The database's own counters over the window (statistics are
		// flushed every second or so: the edges blur by about that).
		time.Sleep(time.Until(w.Start))
		cm, wal, _ := dbCounters(ctx, p.dsn)
		startCommits.Store(cm)
		startWAL.Store(wal)
	}()
	spread := ""
	if c.runIDs == "spread" {
		spread = "bench-"
	}
	load := pipelineLoad(ctx, client, w, pipelineLoadConfig{clients: c.clients, events: c.events, eventIDs: c.eventIDs,
		spreadPrefix: spread, target: func(id int) (string, string) {
			srv := p.servers[id%len(p.servers)]
			return srv.URL(), "Bearer " + srv.Token
		}})
	endCommits, endWAL, size := dbCounters(ctx, p.dsn)

	r := pgIngestRep{total: load.total, events: load.events, runs: load.runs, errors: load.errors, firstErr: load.firstErr,
		window: w.Duration(), lat: load.lat, latEvents: load.latEvents,
		dbCommits: endCommits - startCommits.Load(), walBytes: endWAL - startWAL.Load(), dbSize: size}
	var under, count float64
	for _, s := range p.servers {
		if m, lines, err := scrapeMetrics(ctx, client, s.MetricsURL()); err == nil {
			r.commits += m["ica_ledger_commit_seconds_count"]
			r.commitSeconds += m["ica_ledger_commit_seconds_sum"]
			r.ledgerEntries = max(r.ledgerEntries, m["ica_ledger_entries"])
			sh, n := histogramShare(lines, "ica_http_request_duration_seconds", "0.05", `method="POST"`)
			under += sh * n
			count += n
		}
		rss, _ := s.PeakRSS()
		r.peakRSS = append(r.peakRSS, rss)
	}
	r.serverUnder50 = safeDiv(under, count)
	for i, s := range p.servers {
		if err := s.Stop(20 * time.Second); err != nil {
			return r, fmt.Errorf("replica %d: %w", i+1, err)
		}
	}
	r.checkOut, r.checkOK = p.check(ctx, bin)
	return r, nil
}

// pgbenchRep measures the raw baseline on a database of its own.
func pgbenchRep(ctx context.Context, c ingestConfig, pgbench string, pg *bench.Postgres, dir string) (bench.PgbenchResult, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return bench.PgbenchResult{}, err
	}
	defer os.RemoveAll(dir)
	dsn, drop, err := pg.CreateDatabase(ctx, "icabench_pgbench")
	if err != nil {
		return bench.PgbenchResult{}, err
	}
	defer drop()
	return bench.PgbenchInserts(ctx, pgbench, dsn, dir, c.clients, 2, pgBaselineRow, c.warmup, c.duration)
}
