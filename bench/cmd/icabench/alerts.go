package main

// The alerts scenario: Azure Monitor alerts (Common Alert Schema, Sev1) into
// the real `ica serve`, PagerDuty events out to the fake of alerts/pdtest;
// the latency is from just before the alert is sent to the fake's receive
// time of the event with that alert's dedup_key.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ica-governance/ica/alerts/pdtest"
	"github.com/ica-governance/ica/bench"
)

type alertsConfig struct {
	rate                   float64
	duration, limitedDur   time.Duration
	burst                  int
	burstWait, limitedWait time.Duration
	reps                   int
	shipped, raised        bool
	dir, repo, bin         string
	keep                   bool
}

func runAlerts(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c alertsConfig
	fs := flag.NewFlagSet("alerts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Float64Var(&c.rate, "rate", 50, "alerts per second in the steady phase")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "length of the steady phase (raised-limit build)")
	fs.IntVar(&c.burst, "burst", 5000, "alerts sent at once in the burst phase")
	fs.DurationVar(&c.burstWait, "burst-wait", 3*time.Minute, "bound on waiting for the burst to drain (raised-limit build)")
	fs.DurationVar(&c.limitedDur, "limited-duration", 15*time.Second, "length of the steady phase against the shipped binary (PagerDuty's limit in force)")
	fs.DurationVar(&c.limitedWait, "limited-wait", 30*time.Second, "how long the shipped binary's burst is watched before its drain time is projected")
	fs.IntVar(&c.reps, "reps", 1, "repetitions of the raised-limit measurement; figures are medians")
	fs.BoolVar(&c.shipped, "shipped", true, "also measure the binary as shipped (PagerDuty's 100/min limit per routing key in force)")
	fs.BoolVar(&c.raised, "raised", true, "also measure with the per-routing-key limit raised (ICA_PAGERDUTY_EVENTS_PER_MINUTE)")
	fs.StringVar(&c.dir, "dir", "", "parent of the temporary ledgers (default: the system temp dir)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory")
	fs.StringVar(&c.repo, "repo", "", "ICA repository to build (default: found from the working directory)")
	fs.StringVar(&c.bin, "bin", "", "use this ica binary as the shipped one instead of building it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.rate <= 0 || c.duration <= 0 || c.burst < 1 || c.reps < 1 || (!c.shipped && !c.raised) {
		fmt.Fprintln(stderr, "icabench alerts: -rate, -duration must be > 0, -burst, -reps >= 1, and one of -shipped, -raised")
		return 2
	}
	code, err := alertsBench(ctx, c, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "icabench alerts:", err)
		return 2
	}
	return code
}

// alrPhase is one load phase: what was sent and what the fake received.
type alrPhase struct {
	sent, received int
	failed         int
	firstErr       string
	lat            []time.Duration // alert sent -> event received, received ones, sorted
	intake         []time.Duration // HTTP answer to the alert, sorted
	sendTime       time.Duration   // first send to last answer
	drain          time.Duration   // first send to last receipt (0: not all received)
	window         time.Duration   // how long the phase was watched
}

type alrRep struct {
	steady, burst alrPhase
	peakRSS       int64
	outboxLeft    float64
	checkOK       bool
	checkOut      string
}

func alertsBench(ctx context.Context, c alertsConfig, stdout io.Writer) (int, error) {
	root, bin, cleanup, err := scnPrepare(ctx, "alerts", c.dir, c.keep, c.repo, c.bin, stdout)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "alerts: Sev1 Common Alert Schema alerts -> ica serve -> PagerDuty fake; steady %.0f/s, burst %d\n", c.rate, c.burst)
	fmt.Fprintf(stdout, "machine: %d CPUs (GOMAXPROCS %d), %s; temp dir %s (%s)\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), root, fsInfo(root))

	// Baseline: a bare HTTP round trip to the fake, same client settings.
	base, err := alrBaseline(ctx, 1000)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "baseline: %d bare POST /v2/enqueue round trips to the fake: p50 %.2f ms, p99 %.2f ms\n",
		len(base), bench.Ms(bench.Percentile(base, 50)), bench.Ms(bench.Percentile(base, 99)))
	bp50, bp99 := bench.Ms(bench.Percentile(base, 50)), bench.Ms(bench.Percentile(base, 99))

	var figs []bench.Figure
	var shippedRep *alrRep
	if c.shipped {
		fmt.Fprintf(stdout, "default settings (PagerDuty limit of %d events/min + burst %d per routing key): steady %s at %.0f/s, then a burst of %d on a fresh ledger watched for %s\n",
			100, 20, c.limitedDur, c.rate, c.burst, c.limitedWait)
		r, err := alrRun(ctx, c, bin, filepath.Join(root, "shipped"), c.limitedDur, 5*time.Second, c.limitedWait, true)
		if err != nil {
			return 0, fmt.Errorf("shipped binary: %w", err)
		}
		shippedRep = r
		alrPrint(stdout, "shipped", r)
	}
	var raised []*alrRep
	if c.raised {
		rbin, note, err := bin, raisedNote, error(nil)
		if err != nil {
			fmt.Fprintf(stdout, "raised-limit run skipped: %v\n", err)
		} else {
			fmt.Fprintf(stdout, "bench build with the limit raised (%s): steady %s at %.0f/s, then a burst of %d (drain bounded by %s), %d repetition(s)\n",
				note, c.duration, c.rate, c.burst, c.burstWait, c.reps)
			for i := range c.reps {
				r, err := alrRun(ctx, c, rbin, filepath.Join(root, fmt.Sprintf("raised-%d", i+1)), c.duration, 30*time.Second, c.burstWait, false)
				if err != nil {
					return 0, fmt.Errorf("raised-limit build, repetition %d: %w", i+1, err)
				}
				raised = append(raised, r)
				alrPrint(stdout, fmt.Sprintf("raised rep %d", i+1), r)
			}
		}
	}

	med := func(f func(*alrRep) float64) float64 { return bench.MedianOf(raised, f) }
	baseStr := fmt.Sprintf("bare POST to the fake p50 %.2f / p99 %.2f ms", bp50, bp99)
	if len(raised) > 0 {
		lost := med(func(r *alrRep) float64 {
			return float64(r.steady.sent - r.steady.received + r.burst.sent - r.burst.received) // refused ones are not received either
		})
		drained := med(func(r *alrRep) float64 {
			if r.burst.drain == 0 {
				return 0
			}
			return 1
		})
		figs = append(figs,
			bench.Figure{Name: fmt.Sprintf("alert -> PagerDuty p50 at %.0f/s (limit raised)", c.rate), Value: med(func(r *alrRep) float64 { return bench.Ms(bench.Percentile(r.steady.lat, 50)) }), Unit: "ms",
				Baseline: baseStr},
			bench.Figure{Name: fmt.Sprintf("alert -> PagerDuty p99 at %.0f/s (limit raised)", c.rate), Value: med(func(r *alrRep) float64 { return bench.Ms(bench.Percentile(r.steady.lat, 99)) }), Unit: "ms",
				Target: "< 100 ms", Baseline: baseStr, Pass: bench.Below(100),
				Note: "the same binary with ICA_PAGERDUTY_EVENTS_PER_MINUTE/ICA_PAGERDUTY_BURST raised: by default ICA keeps under PagerDuty's own limit (about 120 events/min per integration key, beyond which PagerDuty answers 429), so one routing key cannot carry 50 alerts/s in production either"},
			bench.Figure{Name: "Azure Monitor intake p99 (HTTP answer)", Value: med(func(r *alrRep) float64 { return bench.Ms(bench.Percentile(r.steady.intake, 99)) }), Unit: "ms",
				Baseline: baseStr},
			bench.Figure{Name: fmt.Sprintf("burst of %d: drain time (limit raised)", c.burst), Value: med(func(r *alrRep) float64 {
				if r.burst.drain == 0 {
					return r.burst.window.Seconds()
				}
				return r.burst.drain.Seconds()
			}), Unit: "s", Baseline: fmt.Sprintf("%d bare POSTs back to back: %.1f s", c.burst, float64(c.burst)*bp50/1000),
				Note: "first alert sent -> last event received; the outbox delivers one destination's messages one at a time, each followed by its own ledger commit"},
			bench.Figure{Name: "burst drained within the bound", Value: drained, Target: "1 (yes)", Pass: bench.AtLeast(1)},
			bench.Figure{Name: "alerts lost or refused (limit raised)", Value: lost, Target: "0", Pass: func(v float64) bool { return v == 0 }},
		)
	}
	if shippedRep != nil {
		r := shippedRep
		obs := float64(r.burst.received) / r.burst.window.Seconds()
		// PagerDuty's limit as shipped: 20 at once, then 100 a minute.
		projected := time.Duration(float64(time.Minute) * float64(max(r.burst.sent-20, 0)) / 100)
		figs = append(figs,
			bench.Figure{Name: fmt.Sprintf("default limit: steady %.0f/s delivered within the phase + 5 s", c.rate), Value: float64(r.steady.received), Unit: fmt.Sprintf("of %d", r.steady.sent),
				Note: "with the default limit ICA delivers 20 at once, then 100 a minute per routing key (alerts.DefaultEventsPerMinute); the rest wait in the outbox"},
			bench.Figure{Name: "default limit: p99 of the delivered ones", Value: bench.Ms(bench.Percentile(r.steady.lat, 99)), Unit: "ms", Baseline: baseStr},
			bench.Figure{Name: fmt.Sprintf("default limit: burst of %d, delivery rate observed", c.burst), Value: obs * 60, Unit: "/min",
				Baseline: fmt.Sprintf("%d in the first %s", r.burst.received, r.burst.window.Round(time.Second))},
			bench.Figure{Name: fmt.Sprintf("default limit: burst of %d, projected drain time", c.burst), Value: projected.Minutes(), Unit: "min",
				Note: "bounded by the limiter (20 + 100/min), not by ICA; measuring it would take that long, so it is projected from the limiter and checked against the observed rate"},
		)
	}
	title := fmt.Sprintf("alerts — medians of %d repetition(s); steady %.0f alerts/s for %s; burst %d", max(len(raised), 1), c.rate, c.duration, c.burst)
	ok := bench.PrintFigures(stdout, title, figs)
	for i, r := range raised {
		if !r.checkOK {
			fmt.Fprintf(stdout, "ica check (raised rep %d) FAILED:\n%s\n", i+1, r.checkOut)
			ok = false
		}
	}
	if shippedRep != nil && !shippedRep.checkOK {
		fmt.Fprintf(stdout, "ica check (shipped) FAILED:\n%s\n", shippedRep.checkOut)
		ok = false
	}
	if !ok {
		fmt.Fprintln(stdout, "RESULT: MISS")
		return 1, nil
	}
	fmt.Fprintln(stdout, "RESULT: PASS")
	return 0, nil
}

func alrPrint(w io.Writer, label string, r *alrRep) {
	for _, p := range []struct {
		name string
		ph   alrPhase
	}{{"steady", r.steady}, {"burst", r.burst}} {
		drain := "not drained within " + p.ph.window.Round(time.Second).String()
		if p.ph.drain > 0 {
			drain = "drained in " + p.ph.drain.Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s %s: %d sent in %s (%d failed), %d events received, %s; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms; intake p50 %.2f ms, p99 %.2f ms\n",
			label, p.name, p.ph.sent, p.ph.sendTime.Round(time.Millisecond), p.ph.failed, p.ph.received, drain,
			bench.Ms(bench.Percentile(p.ph.lat, 50)), bench.Ms(bench.Percentile(p.ph.lat, 99)), bench.Ms(bench.Percentile(p.ph.lat, 100)),
			bench.Ms(bench.Percentile(p.ph.intake, 50)), bench.Ms(bench.Percentile(p.ph.intake, 99)))
		if p.ph.firstErr != "" {
			fmt.Fprintf(w, "           first error: %s\n", p.ph.firstErr)
		}
	}
	fmt.Fprintf(w, "           server peak RSS %.1f MB, outbox depth at the end %.0f, ica check %s\n", bench.MB(r.peakRSS), r.outboxLeft, passWord(r.checkOK))
}

// alrRun starts a fresh server against a fresh fake, runs the steady phase
// (rate for dur, then waits up to grace for the events) and the burst
// (waits up to burstWait), and checks the ledger.
// raisedEnv lifts the per-routing-key limit for the bench's raised runs
// (production keeps PagerDuty's own limit: about 120 events/min per key).
var raisedEnv = []string{"ICA_PAGERDUTY_EVENTS_PER_MINUTE=6000000", "ICA_PAGERDUTY_BURST=1000000"}

const raisedNote = "ICA_PAGERDUTY_EVENTS_PER_MINUTE=6000000 ICA_PAGERDUTY_BURST=1000000; same binary"

func alrRun(ctx context.Context, c alertsConfig, bin, dataDir string, dur, grace, burstWait time.Duration, freshBurst bool) (*alrRep, error) {
	r := &alrRep{}
	pd := pdtest.Start()
	defer pd.Close()
	token := bench.RandomToken()
	key := bench.RandomToken()[:32]
	start := func(dir string) (*bench.Server, error) {
		env := []string{"ICA_ALERT_TOKEN=" + token, "ICA_PAGERDUTY_ROUTING_KEY=" + key, "ICA_PAGERDUTY_URL=" + pd.URL}
		if !freshBurst { // the raised runs
			env = append(env, raisedEnv...)
		}
		return bench.StartServer(ctx, bench.ServerOptions{Bin: bin, DataDir: dir, Env: env})
	}
	srv, err := start(dataDir)
	if err != nil {
		return nil, err
	}
	client := bench.Client(64)
	defer client.CloseIdleConnections()
	if err := waitReady(ctx, client, srv.URL()); err != nil {
		srv.Kill()
		return nil, err
	}
	seq := 0
	r.steady = alrPhaseRun(ctx, client, srv.URL(), token, pd, "steady", &seq, int(c.rate*dur.Seconds()), c.rate, grace)
	if freshBurst {
		// The steady phase's backlog would hold the burst back: a fresh
		// ledger and server, same fake (its count is per dedup key).
		if err := alrFinish(ctx, r, srv, client, bin, dataDir); err != nil {
			return nil, err
		}
		dataDir += "-burst"
		if srv, err = start(dataDir); err != nil {
			return nil, err
		}
		if err := waitReady(ctx, client, srv.URL()); err != nil {
			srv.Kill()
			return nil, err
		}
	}
	r.burst = alrPhaseRun(ctx, client, srv.URL(), token, pd, "burst", &seq, c.burst, 0, burstWait)
	if err := alrFinish(ctx, r, srv, client, bin, dataDir); err != nil {
		return nil, err
	}
	return r, nil
}

func alrFinish(ctx context.Context, r *alrRep, srv *bench.Server, client *http.Client, bin, dataDir string) error {
	if m, _, err := scrapeMetrics(ctx, client, srv.MetricsURL()); err == nil {
		r.outboxLeft = m["ica_outbox_depth"]
	}
	if v, err := srv.PeakRSS(); err == nil && v > r.peakRSS {
		r.peakRSS = v
	}
	if err := srv.Stop(30 * time.Second); err != nil {
		return err
	}
	out, ok := bench.Check(ctx, bin, dataDir)
	if r.checkOut == "" || !ok {
		r.checkOut, r.checkOK = out, ok
	}
	return nil
}

// alrPhaseRun sends n alerts (at rate per second; 0: as fast as 32
// senders go), then waits up to wait for their events.
func alrPhaseRun(ctx context.Context, client *http.Client, base, token string, pd *pdtest.Server, name string, seq *int, n int, rate float64, wait time.Duration) alrPhase {
	var ph alrPhase
	ids := make([]string, n)
	sentAt := make([]time.Time, n)
	for i := range ids {
		*seq++
		ids[i] = fmt.Sprintf("/subscriptions/3f2a9c1e-8d4b-4e6a-9b7c-2d1e0f5a6b7c/providers/Microsoft.AlertsManagement/alerts/%08x-bench-%s-%06d", *seq, name, i)
	}
	var intake bench.Latencies
	var failed atomic.Int64
	var firstErr atomic.Value
	send := func(sh *bench.Shard, i int) {
		body := alrBody(ids[i], i)
		url := base + "/api/v1/alerts/azure-monitor?token=" + token
		sentAt[i] = time.Now()
		st, b, d, err := bench.DoJSON(ctx, client, http.MethodPost, url, "", body)
		sh.Add(d)
		if err == nil && st != http.StatusAccepted && st != http.StatusOK {
			err = fmt.Errorf("alert %d: HTTP %d %s", i, st, clkClip(b))
		}
		if err != nil && ctx.Err() == nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
	}
	begin := time.Now()
	var wg sync.WaitGroup
	if rate > 0 {
		sem := make(chan struct{}, 64)
		for i := range n {
			at := begin.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
			if ctx.Err() != nil {
				break
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sh := intake.Shard()
				send(sh, i)
				sh.Done()
				<-sem
			}()
		}
	} else {
		var next atomic.Int64
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sh := intake.Shard()
				defer sh.Done()
				for ctx.Err() == nil {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					send(sh, i)
				}
			}()
		}
	}
	wg.Wait()
	ph.sendTime = time.Since(begin)
	ph.sent, ph.failed = n, int(failed.Load())
	if v, ok := firstErr.Load().(string); ok {
		ph.firstErr = v
	}
	ph.intake = intake.Sorted()

	want := map[string]int{}
	for i, id := range ids {
		want[id] = i
	}
	deadline := time.Now().Add(wait)
	got := map[string]time.Time{}
	for {
		for _, rq := range pd.Requests() {
			if rq.Status/100 != 2 || rq.Event.Action != "trigger" {
				continue
			}
			if _, mine := want[rq.Event.DedupKey]; mine {
				if t, seen := got[rq.Event.DedupKey]; !seen || rq.At.Before(t) {
					got[rq.Event.DedupKey] = rq.At
				}
			}
		}
		if len(got) >= n-ph.failed || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ph.window = time.Since(begin)
	ph.received = len(got)
	var last time.Time
	var lat []time.Duration
	for id, at := range got {
		lat = append(lat, at.Sub(sentAt[want[id]]))
		if at.After(last) {
			last = at
		}
	}
	slices.Sort(lat)
	ph.lat = lat
	if ph.received == n {
		ph.drain = last.Sub(begin)
	}
	return ph
}

// alrBaseline measures bare POST round trips to a fresh fake.
func alrBaseline(ctx context.Context, n int) ([]time.Duration, error) {
	pd := pdtest.Start()
	defer pd.Close()
	client := bench.Client(4)
	defer client.CloseIdleConnections()
	url := pd.URL
	key := bench.RandomToken()[:32]
	var l bench.Latencies
	sh := l.Shard()
	for i := range n {
		body := fmt.Appendf(nil, `{"routing_key":%q,"event_action":"trigger","dedup_key":"baseline-%d","payload":{"summary":"Sev1 alert baseline %d","source":"bench","severity":"critical"},"client":"ICA"}`, key, i, i)
		st, b, d, err := bench.DoJSON(ctx, client, http.MethodPost, url, "", body)
		if err != nil || st != http.StatusAccepted {
			return nil, fmt.Errorf("baseline POST to the fake: HTTP %d %s %v", st, clkClip(b), err)
		}
		sh.Add(d)
	}
	sh.Done()
	return l.Sorted(), nil
}

// alrBody is a Common Alert Schema metric alert, Sev1, fired now.
func alrBody(alertID string, i int) []byte {
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	return fmt.Appendf(nil, `{"schemaId":"azureMonitorCommonAlertSchema","data":{"essentials":{"alertId":%q,`+
		`"alertRule":"payments-api-5xx-%d","severity":"Sev1","signalType":"Metric","monitorCondition":"Fired","monitoringService":"Platform",`+
		`"alertTargetIDs":["/subscriptions/3f2a9c1e-8d4b-4e6a-9b7c-2d1e0f5a6b7c/resourcegroups/rg-payments-prod/providers/microsoft.web/sites/payments-api"],`+
		`"configurationItems":["payments-api"],"originAlertId":"bench_%d","firedDateTime":%q,"description":"HTTP 5xx above 5%% for 5 minutes",`+
		`"essentialsVersion":"1.0","alertContextVersion":"1.0"},"alertContext":{"properties":null,"conditionType":"SingleResourceMultipleMetricCriteria",`+
		`"condition":{"windowSize":"PT5M","allOf":[{"metricName":"Http5xx","metricNamespace":"Microsoft.Web/sites","operator":"GreaterThan","threshold":"5",`+
		`"timeAggregation":"Total","dimensions":[],"metricValue":%d,"webTestName":null}],"windowStartTime":%q,"windowEndTime":%q}}}}`,
		alertID, i%20, i, now, 6+i%50, now, now)
}
