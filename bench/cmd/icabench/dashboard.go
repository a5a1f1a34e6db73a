package main

// The dashboard scenario: a ledger of 1,000,000 runs (spread over a year,
// with an approval for one run in ten), then the time to render GET
// /dashboard beside the raw time to scan the same index (the runs started in
// the page's 30-day window, keys only) on the same file.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/bench"
	"github.com/ica-governance/ica/dashboard"
	"github.com/ica-governance/ica/store"
)

func init() {
	scenarios["dashboard"] = scenario{"GET /dashboard on a ledger of 1,000,000 runs vs the raw scan of its index window", runDashboard}
}

type dashConfig struct {
	runs, days, approvalEvery, requests, pipelines int
	dir, ledger, repo, bin                         string
	keep                                           bool
}

func runDashboard(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c dashConfig
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.runs, "runs", 1_000_000, "runs in the generated ledger")
	fs.IntVar(&c.days, "days", 365, "days the runs are spread over (ending now)")
	fs.IntVar(&c.approvalEvery, "approval-every", 10, "one approval per this many successful runs")
	fs.IntVar(&c.pipelines, "pipelines", 40, "distinct pipelines")
	fs.IntVar(&c.requests, "requests", 200, "page requests measured")
	fs.StringVar(&c.dir, "dir", "", "parent of the temporary directory (default: the system temp dir)")
	fs.StringVar(&c.ledger, "ledger", "", "reuse (or create and keep) the generated data directory here")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory")
	fs.StringVar(&c.repo, "repo", "", "ICA repository to build (default: found from the working directory)")
	fs.StringVar(&c.bin, "bin", "", "use this ica binary instead of building one")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	code, err := dashboardBench(ctx, c, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "icabench dashboard:", err)
		return 2
	}
	return code
}

// benchSource is the store as cmd/ica hands it to the dashboard.
type benchSource struct {
	*store.Store
	monthly, threshold float64
}

func (s benchSource) Budget(ctx context.Context) (*ica.Budget, error) {
	return s.Store.Budget(ctx, s.monthly, s.threshold)
}

const (
	benchBudget    = 250000
	benchThreshold = 0.95
)

func dashboardBench(ctx context.Context, c dashConfig, stdout io.Writer) (int, error) {
	root, err := os.MkdirTemp(c.dir, "icabench-dashboard-")
	if err != nil {
		return 0, err
	}
	if c.keep {
		fmt.Fprintln(stdout, "keeping", root)
	} else {
		defer os.RemoveAll(root)
	}
	dataDir := c.ledger
	if dataDir == "" {
		dataDir = filepath.Join(root, "data")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return 0, err
	}
	bin := c.bin
	if bin == "" {
		repo := c.repo
		if repo == "" {
			wd, _ := os.Getwd()
			if repo, err = bench.RepoRoot(wd); err != nil {
				return 0, err
			}
		}
		fmt.Fprintf(stdout, "building ica from %s ...\n", repo)
		if bin, err = bench.BuildICA(ctx, repo, root); err != nil {
			return 0, err
		}
	}
	seed, secret, err := benchKeys(dataDir)
	if err != nil {
		return 0, err
	}
	path := filepath.Join(dataDir, "ica.db")
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintf(stdout, "generating %d runs over %d days (one approval per %d successful runs) in %s ...\n", c.runs, c.days, c.approvalEvery, path)
		began := time.Now()
		if err := generateLedger(ctx, path, ed25519.NewKeyFromSeed(seed), c); err != nil {
			return 0, err
		}
		fi, _ := os.Stat(path)
		fmt.Fprintf(stdout, "generated in %s; ledger file %.0f MB\n", time.Since(began).Round(time.Second), bench.MB(fi.Size()))
	} else {
		fmt.Fprintf(stdout, "reusing %s\n", path)
	}

	// Baseline: the raw scan of the run-start index, keys only, for the
	// page's 30-day window, and for the whole index.
	now := time.Now().UTC()
	window, all, windowKeys, allKeys, err := rawScans(path, dashboard.RunsFrom(now), dashboard.RunsTo(now))
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "raw scan of idx_run_start: window %d keys in %.2f ms (median of 5); whole index %d keys in %.2f ms\n",
		windowKeys, bench.Ms(window), allKeys, bench.Ms(all))

	// In process, no cache: index walks + figures + HTML, every time.
	st, err := store.Open(path, store.Options{Key: ed25519.NewKeyFromSeed(seed)})
	if err != nil {
		return 0, err
	}
	src := benchSource{Store: st, monthly: benchBudget, threshold: benchThreshold}
	h := dashboard.New(dashboard.Deps{Source: src, Sessions: st, Secret: secret, CacheTTL: -1})
	var cold, loads []time.Duration
	var runsInWindow, apprInWindow int
	for range 15 {
		t0 := time.Now()
		in, err := dashboard.Load(ctx, src, time.Now())
		if err != nil {
			st.Close()
			return 0, err
		}
		t1 := time.Now()
		s := dashboard.Compute(in, "")
		var buf bytes.Buffer
		if err := h.RenderPage(&buf, s); err != nil {
			st.Close()
			return 0, err
		}
		cold = append(cold, time.Since(t0))
		loads = append(loads, t1.Sub(t0))
		runsInWindow, apprInWindow = len(in.Runs), len(in.Approvals)
	}
	st.Close()
	slices.Sort(cold)
	slices.Sort(loads)
	fmt.Fprintf(stdout, "in process, no cache: %d runs and %d approvals in the windows; load %.1f ms, load + figures + HTML %.1f ms (medians of %d)\n",
		runsInWindow, apprInWindow, bench.Ms(bench.Percentile(loads, 50)), bench.Ms(bench.Percentile(cold, 50)), len(cold))

	// The real server, over HTTP, with a session cookie.
	srv, err := bench.StartServer(ctx, bench.ServerOptions{Bin: bin, DataDir: dataDir, Env: []string{
		"ICA_SIGNING_KEY=" + hex.EncodeToString(seed), "ICA_ACTION_SECRET=" + hex.EncodeToString(secret),
		"ICA_MONTHLY_BUDGET=" + strconv.Itoa(benchBudget), "ICA_BUDGET_THRESHOLD=" + strconv.FormatFloat(benchThreshold, 'f', -1, 64),
		"ICA_PUBLIC_URL=http://127.0.0.1"}})
	if err != nil {
		return 0, err
	}
	defer srv.Stop(10 * time.Second)
	cookie := &http.Cookie{Name: dashboard.CookieName, Value: dashboard.SignSession(secret,
		dashboard.Session{UserID: "bench", Username: "bench", Expires: time.Now().Add(time.Hour).Unix()})}
	client := bench.Client(4)
	get := func(url string, auth bool) (time.Duration, int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.AddCookie(cookie)
		if auth {
			req.Header.Set("Authorization", "Bearer "+srv.Token)
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return time.Since(t0), int(n), nil
	}
	first, size, err := get(srv.URL()+"/dashboard", false)
	if err != nil {
		return 0, err
	}
	var page []time.Duration
	for range c.requests {
		d, _, err := get(srv.URL()+"/dashboard", false)
		if err != nil {
			return 0, err
		}
		page = append(page, d)
	}
	slices.Sort(page)
	filtered, _, err := get(srv.URL()+"/dashboard?pipeline=service-07", false)
	if err != nil {
		return 0, err
	}
	var api []time.Duration
	for range 50 {
		d, _, err := get(srv.URL()+"/api/v1/stats", true)
		if err != nil {
			return 0, err
		}
		api = append(api, d)
	}
	slices.Sort(api)
	fmt.Fprintf(stdout, "GET /dashboard: first %.1f ms, %d KB; then %d requests p50 %.2f ms, p99 %.2f ms; with a pipeline filter %.2f ms; GET /api/v1/stats p50 %.2f ms\n",
		bench.Ms(first), size/1024, len(page), bench.Ms(bench.Percentile(page, 50)), bench.Ms(bench.Percentile(page, 99)),
		bench.Ms(filtered), bench.Ms(bench.Percentile(api, 50)))

	base := fmt.Sprintf("raw window scan %.2f ms", bench.Ms(window))
	ok := bench.PrintFigures(stdout, fmt.Sprintf("dashboard: ledger of %d runs", allKeys), []bench.Figure{
		{Name: "GET /dashboard p50", Value: bench.Ms(bench.Percentile(page, 50)), Unit: "ms", Target: "< 200", Baseline: base, Pass: bench.Below(200)},
		{Name: "GET /dashboard p99", Value: bench.Ms(bench.Percentile(page, 99)), Unit: "ms", Target: "< 200", Baseline: base, Pass: bench.Below(200)},
		{Name: "GET /dashboard, first request", Value: bench.Ms(first), Unit: "ms", Baseline: base,
			Note: "sent the moment the server listens, so it waits for the start-up load on a cold OS page cache; the server loads its figures in the background at start, and refreshes them in the background (stale-while-revalidate) after 30 s"},
		{Name: "in process, no cache p50", Value: bench.Ms(bench.Percentile(cold, 50)), Unit: "ms", Baseline: base,
			Note: fmt.Sprintf("one full load (index walks) + figures + HTML, what a background refresh costs: %d runs in the 30-day window, %d approvals in the 8-week window", runsInWindow, apprInWindow)},
		{Name: "in process, no cache max", Value: bench.Ms(cold[len(cold)-1]), Unit: "ms", Baseline: base},
		{Name: "raw scan, whole index", Value: bench.Ms(all), Unit: "ms", Note: fmt.Sprintf("%d keys: what a page that scanned everything would pay at least", allKeys)},
	})
	if !ok {
		return 1, nil
	}
	return 0, nil
}

// benchKeys keeps the signing seed and the action secret beside a reused
// ledger, so a second run opens it with the same keys.
func benchKeys(dir string) (seed, secret []byte, err error) {
	read := func(name string, n int) ([]byte, error) {
		p := filepath.Join(dir, name)
		if raw, err := os.ReadFile(p); err == nil {
			return hex.DecodeString(string(bytes.TrimSpace(raw)))
		}
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b, os.WriteFile(p, []byte(hex.EncodeToString(b)), 0o600)
	}
	if seed, err = read("signing.key", ed25519.SeedSize); err != nil {
		return nil, nil, err
	}
	secret, err = read("action.secret", 32)
	return seed, secret, err
}

// rawScans times key-only cursor walks of idx_run_start.
func rawScans(path string, from, to time.Time) (window, all time.Duration, windowKeys, allKeys int, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer db.Close()
	key := func(t time.Time) []byte {
		b := make([]byte, 8)
		binary.BigEndian.PutUint64(b, uint64(t.UnixNano()))
		return b
	}
	lo, hi := key(from), key(to)
	var ws []time.Duration
	for range 5 {
		t0 := time.Now()
		n := 0
		err = db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket([]byte("idx_run_start")).Cursor()
			for k, _ := c.Seek(lo); k != nil && bytes.Compare(k[:8], hi) < 0; k, _ = c.Next() {
				n++
			}
			return nil
		})
		ws = append(ws, time.Since(t0))
		windowKeys = n
	}
	slices.Sort(ws)
	t0 := time.Now()
	err = db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("idx_run_start")).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			allKeys++
		}
		return nil
	})
	return ws[len(ws)/2], time.Since(t0), windowKeys, allKeys, err
}

// generateLedger writes the runs through the store's own API (so every run
// is a real start and finish with its ledger entries and indexes) from
// many goroutines, which the store's group commit turns into big commits.
// A fake clock walks from days ago to now.
func generateLedger(ctx context.Context, path string, key ed25519.PrivateKey, c dashConfig) error {
	end := time.Now().UTC().Add(-time.Minute)
	begin := end.Add(-time.Duration(c.days) * 24 * time.Hour)
	clock := ica.NewFakeClock(begin)
	st, err := store.Open(path, store.Options{Clock: clock, Key: key, MaxBatch: 1024})
	if err != nil {
		return err
	}
	defer st.Close()
	const wave = 512
	step := end.Sub(begin) / time.Duration(c.runs)
	rng := mrand.New(mrand.NewPCG(1, 2))
	parallel := func(n int, fn func(i int) error) error {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = fn(i) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	techs := []string{"alice", "carol", "frank", "heidi"}
	bizs := []string{"bob", "grace", "ivan"}
	lastReport := time.Now()
	for done := 0; done < c.runs; done += wave {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(wave, c.runs-done)
		clock.Set(begin.Add(step * time.Duration(done)))
		ids := make([]string, n)
		pipes := make([]string, n)
		status := make([]string, n)
		for i := range n {
			ids[i] = strconv.Itoa(10_000_000 + done + i)
			pipes[i] = fmt.Sprintf("service-%02d", rng.IntN(c.pipelines))
			switch x := rng.IntN(100); {
			case x < 84:
				status[i] = ica.RunSuccess
			case x < 94:
				status[i] = ica.RunFailed
			default:
				status[i] = ica.RunCancelled
			}
		}
		if err := parallel(n, func(i int) error {
			_, _, err := st.StartRun(ctx, &ica.RunStart{PipelineName: pipes[i], RunID: ids[i], Branch: "refs/heads/main",
				Commit: "9fceb02d0ae598e95dc970b74767f19372d61af8", TriggeredBy: "dev@example.com",
				URL: "https://dev.azure.com/contoso/" + pipes[i] + "/_build/results?buildId=" + ids[i]}, "bench")
			return err
		}); err != nil {
			return err
		}
		last := done+n >= c.runs
		clock.Set(begin.Add(step*time.Duration(done+n) - step/2))
		var approve []int
		approved := map[int]bool{}
		for i := range n {
			if status[i] == ica.RunSuccess && (done+i)%c.approvalEvery == 0 {
				approve = append(approve, i)
				approved[i] = true
			}
		}
		if err := parallel(n, func(i int) error {
			if (last && i >= n-10) || approved[i] {
				return nil // still running, or finishes after its approval request
			}
			_, _, err := st.FinishRun(ctx, ids[i], &ica.RunFinish{Status: status[i]}, "bench")
			return err
		}); err != nil {
			return err
		}
		type plan struct {
			tech, biz       time.Duration
			techBy, bizBy   string
			decide, finish2 bool
		}
		plans := make([]plan, len(approve))
		for j := range plans {
			p := plan{tech: time.Duration(5+rng.IntN(170)) * time.Minute, techBy: techs[rng.IntN(len(techs))],
				bizBy: bizs[rng.IntN(len(bizs))], decide: rng.IntN(9) != 0}
			p.biz = p.tech + time.Duration(5+rng.IntN(100))*time.Minute
			p.finish2 = p.biz < 4*time.Hour
			plans[j] = p
		}
		if err := parallel(len(approve), func(j int) error {
			i := approve[j]
			target := ica.TargetProduction
			if i%2 == 0 {
				target = ica.TargetStaging
			}
			cost := float64(20 + (done+i)%300)
			a, _, err := st.RequestApproval(ctx, &ica.ApprovalRequest{RunID: ids[i], DeploymentTarget: target, EstimatedCost: &cost}, "bench")
			if err != nil {
				return err
			}
			if !(last && i >= n-10) {
				// A run asks for approval before it finishes.
				if _, _, err := st.FinishRun(ctx, ids[i], &ica.RunFinish{Status: status[i]}, "bench"); err != nil {
					return err
				}
			}
			p := plans[j]
			if !p.decide || last {
				return nil // left to expire (or pending at the end)
			}
			if _, err := st.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveTechnical, Via: "mattermost",
				By: ica.Decider{UserID: "u-" + p.techBy, Username: p.techBy}, At: a.CreatedAt.Add(p.tech)}, "bench", nil); err != nil {
				return err
			}
			if !p.finish2 {
				return nil
			}
			_, err = st.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveBusiness, Via: "mattermost",
				By: ica.Decider{UserID: "u-" + p.bizBy, Username: p.bizBy}, At: a.CreatedAt.Add(p.biz)}, "bench", nil)
			return err
		}); err != nil {
			return err
		}
		if _, err := st.ExpireDue(ctx); err != nil {
			return err
		}
		if time.Since(lastReport) > 15*time.Second {
			lastReport = time.Now()
			fmt.Printf("  ... %d runs, %d ledger entries\n", done+n, st.LedgerEntries())
		}
	}
	// This month's costs, a day at a time, and a few incidents.
	clock.Set(end)
	for d := ica.MonthStart(end); !d.After(end); d = d.AddDate(0, 0, 1) {
		for _, rt := range []string{ica.ResourceAKS, ica.ResourceACR, ica.ResourceBlob} {
			usd := float64(1500 + rng.IntN(4000))
			if _, _, err := st.RecordCost(ctx, &ica.CostInput{ResourceType: rt, CostUSD: &usd, BillingPeriod: d.Format(time.DateOnly)}, "bench"); err != nil {
				return err
			}
		}
	}
	for i, sev := range []string{ica.Sev1, ica.Sev2, ica.Sev2, ica.Sev3} {
		if _, _, err := st.RecordAlert(ctx, &ica.Alert{AlertID: fmt.Sprintf("bench-alert-%d", i), Rule: "bench rule", Severity: sev,
			MonitorCondition: ica.AlertFired, FiredAt: end, Schema: ica.SchemaCommon}, []byte(`{}`), "azure-monitor"); err != nil {
			return err
		}
	}
	return nil
}
