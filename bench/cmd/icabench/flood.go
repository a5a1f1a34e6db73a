package main

// The flood scenario (issue 18, item 2): the pipelines' durable event rate
// while unauthenticated clients post random dashboard links and
// authenticated clients send writes that fail (an event for an unknown run,
// an event after finish), beside the calm rate measured in the same run on
// the same kind of fresh server. The flooders are spread over several
// 127.x source addresses, as clients behind different addresses would be,
// so the per-address limit meets more than one source.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ica-governance/ica/bench"
)

func init() {
	scenarios["flood"] = scenario{"pipelines' durable event rate under a flood of bad requests vs calm (64 + 64 clients)", runFlood}
}

type floodConfig struct {
	duration, warmup        time.Duration
	clients, events, reps   int
	flooders, sources, bads int
	dir, repo, bin          string
	keep                    bool
}

// floodRep is one phase (calm or flood) of one repetition.
type floodRep struct {
	durable  int64 // pipeline requests acknowledged in the window
	window   time.Duration
	lat      []time.Duration
	errors   int64
	firstErr string
	// The flood, counted in the window.
	floodReqs, floodLimited, floodRefused, floodOther int64
	badReqs, badExpected, badOther                    int64
	checkOK                                           bool
	checkOut                                          string
}

func (r floodRep) perSec() float64 { return float64(r.durable) / r.window.Seconds() }

func runFlood(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c floodConfig
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&c.duration, "duration", 15*time.Second, "measured time of each phase (after warm-up)")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "load before measuring, in each phase")
	fs.IntVar(&c.clients, "clients", 64, "concurrent pipeline clients (start, events, finish)")
	fs.IntVar(&c.events, "events", 5, "events per run")
	fs.IntVar(&c.reps, "reps", 3, "repetitions of the calm/flood pair; figures are medians")
	fs.IntVar(&c.flooders, "flooders", 64, "unauthenticated clients posting random dashboard links")
	fs.IntVar(&c.sources, "sources", 8, "127.0.0.x source addresses the flooders are spread over")
	fs.IntVar(&c.bads, "bad-clients", 16, "authenticated clients sending failing writes (unknown run, event after finish)")
	fs.StringVar(&c.dir, "dir", "", "parent of the temporary ledgers (default: the system temp dir)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory")
	fs.StringVar(&c.repo, "repo", "", "ICA repository to build (default: found from the working directory)")
	fs.StringVar(&c.bin, "bin", "", "use this ica binary instead of building one")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.clients < 1 || c.reps < 1 || c.events < 0 || c.duration <= 0 || c.warmup < 0 || c.flooders < 0 || c.bads < 0 ||
		c.sources < 1 || c.sources > 250 {
		fmt.Fprintln(stderr, "icabench flood: -clients, -reps, -sources (at most 250) must be >= 1, -duration > 0")
		return 2
	}
	code, err := flood(ctx, c, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "icabench flood:", err)
		return 2
	}
	return code
}

func flood(ctx context.Context, c floodConfig, stdout io.Writer) (int, error) {
	root, bin, cleanup, err := scnPrepare(ctx, "flood", c.dir, c.keep, c.repo, c.bin, stdout)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "flood: %d pipeline clients (start + %d events + finish); flood: %d clients posting random dashboard links from %d addresses "+
		"(127.0.0.2-%d) and %d authenticated clients sending failing writes; %s measured after %s warm-up, %d repetitions\n",
		c.clients, c.events, c.flooders, c.sources, c.sources+1, c.bads, c.duration, c.warmup, c.reps)
	fmt.Fprintf(stdout, "machine: %d CPUs (GOMAXPROCS %d), %s; temp dir %s (%s); the load generator runs on the same CPUs\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), root, fsInfo(root))

	var calm, flooded []floodRep
	for i := range c.reps {
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false} // drift hits both phases alike
		}
		for _, withFlood := range order {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			name := "calm"
			if withFlood {
				name = "flood"
			}
			r, err := floodPhase(ctx, c, bin, filepath.Join(root, fmt.Sprintf("%s-%d", name, i+1)), withFlood)
			if err != nil {
				return 0, fmt.Errorf("repetition %d (%s): %w", i+1, name, err)
			}
			fmt.Fprintf(stdout, "rep %d %-5s: %7.0f durable events/s, p50 %.2f ms, p99 %.2f ms, errors %d, check %s\n",
				i+1, name, r.perSec(), bench.Ms(bench.Percentile(r.lat, 50)), bench.Ms(bench.Percentile(r.lat, 99)), r.errors, passWord(r.checkOK))
			if withFlood {
				flooded = append(flooded, r)
				fmt.Fprintf(stdout, "           flood answered: %.0f dashboard-link posts/s (%.1f%% 429 rate-limited, %.1f%% 401 refused, %d other); "+
					"%.0f failing writes/s (%d as expected 404/409, %d other)\n",
					float64(r.floodReqs)/r.window.Seconds(), 100*safeDiv(float64(r.floodLimited), float64(r.floodReqs)),
					100*safeDiv(float64(r.floodRefused), float64(r.floodReqs)), r.floodOther,
					float64(r.badReqs)/r.window.Seconds(), r.badExpected, r.badOther)
			} else {
				calm = append(calm, r)
			}
			if r.firstErr != "" {
				fmt.Fprintf(stdout, "           first error: %s\n", r.firstErr)
			}
		}
	}

	med := bench.MedianOf[floodRep]
	p99 := func(r floodRep) float64 { return bench.Ms(bench.Percentile(r.lat, 99)) }
	calmRate, floodRate := med(calm, floodRep.perSec), med(flooded, floodRep.perSec)
	// The ratio of each repetition's pair, then the median: both phases of a
	// pair ran back to back.
	var ratios []float64
	for i := range flooded {
		ratios = append(ratios, safeDiv(flooded[i].perSec(), calm[i].perSec()))
	}
	var errs, other int64
	checks := 0
	for _, r := range append(append([]floodRep{}, calm...), flooded...) {
		errs += r.errors
		other += r.floodOther + r.badOther
		if r.checkOK {
			checks++
		}
	}
	figs := []bench.Figure{
		{Name: "durable events/s, calm", Value: calmRate, Unit: "/s", Note: "start + events + finish, 64 pipeline clients, nothing else"},
		{Name: "durable events/s, under the flood", Value: floodRate, Unit: "/s", Baseline: fmt.Sprintf("calm %.0f/s", calmRate)},
		{Name: "flood / calm", Value: bench.Median(ratios), Target: ">= 0.7", Baseline: fmt.Sprintf("%.0f / %.0f", floodRate, calmRate),
			Pass: bench.AtLeast(0.7), Note: "median of each repetition's flood rate over its calm rate"},
		{Name: "latency p99, calm", Value: med(calm, p99), Unit: "ms"},
		{Name: "latency p99, under the flood", Value: med(flooded, p99), Unit: "ms"},
		{Name: "flood posts answered", Value: med(flooded, func(r floodRep) float64 { return float64(r.floodReqs) / r.window.Seconds() }), Unit: "/s",
			Note: "random 43-character dashboard links: 429 beyond ICA_SOURCE_RATE_LIMIT per address, 401 (refused by a read, never by the writer) within it"},
		{Name: "failing writes answered", Value: med(flooded, func(r floodRep) float64 { return float64(r.badReqs) / r.window.Seconds() }), Unit: "/s",
			Note: "events for unknown runs (404) and after finish (409), refused before the writer"},
		{Name: "failed pipeline requests (all reps)", Value: float64(errs), Target: "0", Pass: func(v float64) bool { return v == 0 }},
		{Name: "unexpected flood answers (all reps)", Value: float64(other), Target: "0", Pass: func(v float64) bool { return v == 0 }},
		{Name: "ica check after each phase", Value: float64(checks), Target: fmt.Sprintf("%d of %d", 2*c.reps, 2*c.reps),
			Pass: func(v float64) bool { return int(v) == 2*c.reps }},
	}
	ok := bench.PrintFigures(stdout, fmt.Sprintf("flood — medians of %d repetitions, %s each phase, fresh server and ledger per phase", c.reps, c.duration), figs)
	for i, r := range append(append([]floodRep{}, calm...), flooded...) {
		if !r.checkOK {
			fmt.Fprintf(stdout, "ica check (phase %d) FAILED:\n%s\n", i+1, r.checkOut)
		}
	}
	if !ok {
		fmt.Fprintln(stdout, "RESULT: MISS")
		return 1, nil
	}
	fmt.Fprintln(stdout, "RESULT: PASS")
	return 0, nil
}

// floodPhase runs the pipelines against a fresh server, with or without
// the flood.
func floodPhase(ctx context.Context, c floodConfig, bin, dataDir string, withFlood bool) (floodRep, error) {
	srv, err := bench.StartServer(ctx, bench.ServerOptions{Bin: bin, DataDir: dataDir})
	if err != nil {
		return floodRep{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.Kill()
		}
	}()
	client := bench.Client(c.clients + c.bads)
	defer client.CloseIdleConnections()
	base, auth := srv.URL(), "Bearer "+srv.Token
	if err := waitReady(ctx, client, base); err != nil {
		return floodRep{}, err
	}
	w := bench.NewWindow(c.warmup, c.duration)
	var r floodRep
	var wg sync.WaitGroup
	var flood floodCounters
	if withFlood {
		sources := sourceClients(c)
		defer func() {
			for _, s := range sources {
				s.CloseIdleConnections()
			}
		}()
		for i := range c.flooders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				floodLinks(ctx, sources[i%c.sources], base, w, &flood)
			}()
		}
		for i := range c.bads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				failingWrites(ctx, client, base, auth, i, w, &flood)
			}()
		}
	}
	load := pipelineLoad(ctx, client, w, pipelineLoadConfig{clients: c.clients, events: c.events, eventIDs: true,
		target: func(int) (string, string) { return base, auth }})
	r.durable, r.lat, r.errors, r.firstErr = load.total, load.lat, load.errors, load.firstErr
	wg.Wait()
	r.window = w.Duration()
	r.floodReqs, r.floodLimited, r.floodRefused, r.floodOther = flood.reqs.Load(), flood.limited.Load(), flood.refused.Load(), flood.other.Load()
	r.badReqs, r.badExpected, r.badOther = flood.badReqs.Load(), flood.badExpected.Load(), flood.badOther.Load()
	stopped = true
	if err := srv.Stop(20 * time.Second); err != nil {
		return r, err
	}
	r.checkOut, r.checkOK = bench.Check(ctx, bin, dataDir)
	return r, nil
}

// floodCounters count the flood's answers inside the window.
type floodCounters struct {
	reqs, limited, refused, other  atomic.Int64
	badReqs, badExpected, badOther atomic.Int64
}

// sourceClients returns one HTTP client per flood source address: the
// connections of the k-th come from 127.0.0.(2 + k).
func sourceClients(c floodConfig) []*http.Client {
	per := c.flooders/c.sources + 1
	out := make([]*http.Client, c.sources)
	for k := range out {
		ip := net.IPv4(127, 0, 0, byte(2+k))
		out[k] = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}).DialContext,
			MaxIdleConnsPerHost: per, MaxIdleConns: per, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
		}}
	}
	return out
}

// floodLinks posts random dashboard links as fast as they are answered.
func floodLinks(ctx context.Context, client *http.Client, base string, w bench.Window, n *floodCounters) {
	tok := make([]byte, 32)
	for w.Open(time.Now()) && ctx.Err() == nil {
		_, _ = rand.Read(tok)
		begin := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/dashboard/link/"+base64.RawURLEncoding.EncodeToString(tok), nil)
		res, err := client.Do(req)
		status := 0
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			status = res.StatusCode
		}
		if !w.Contains(begin, time.Now()) {
			continue
		}
		n.reqs.Add(1)
		switch status {
		case http.StatusTooManyRequests:
			n.limited.Add(1)
		case http.StatusUnauthorized:
			n.refused.Add(1)
		default:
			n.other.Add(1)
		}
	}
}

// failingWrites sends, as fast as they are answered, events that must fail:
// for a run that does not exist (404) and for a run that has finished (409).
func failingWrites(ctx context.Context, client *http.Client, base, auth string, id int, w bench.Window, n *floodCounters) {
	post := func(path string, body []byte) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	finished := fmt.Sprintf("finished-%d", id)
	if post("/api/v1/runs", startBody(finished, id, 0)) != http.StatusCreated ||
		post("/api/v1/runs/"+finished+"/finish", []byte(`{"status":"success"}`)) != http.StatusOK {
		n.badOther.Add(1)
		return
	}
	for k := 0; w.Open(time.Now()) && ctx.Err() == nil; k++ {
		path, want := "/api/v1/runs/"+finished+"/events", http.StatusConflict
		if k%2 == 0 {
			path, want = fmt.Sprintf("/api/v1/runs/unknown-%d-%d/events", id, k), http.StatusNotFound
		}
		begin := time.Now()
		status := post(path, eventBody(k, false))
		if !w.Contains(begin, time.Now()) {
			continue
		}
		n.badReqs.Add(1)
		if status == want {
			n.badExpected.Add(1)
		} else {
			n.badOther.Add(1)
		}
	}
}
