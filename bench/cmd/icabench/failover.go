package main

// failover: two replicas on one PostgreSQL database under load; the one
// that leads the scheduled work is killed with SIGKILL. Clients of the dead
// replica retry on the survivor (as a load balancer and a retrying pipeline
// do). Afterwards every acknowledged write is looked up.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ica-governance/ica/bench"
)

func init() {
	scenarios["failover"] = scenario{"2 replicas on PostgreSQL under load, SIGKILL the scheduler leader: acknowledged writes lost, survivor answers, new leader", runFailover}
}

type failoverConfig struct {
	databaseURL string
	clients     int
	events      int
	before      time.Duration
	after       time.Duration
	kill        string
	dir         string
	keep        bool
	repo, bin   string
}

func runFailover(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c failoverConfig
	fs := flag.NewFlagSet("failover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.databaseURL, "database-url", os.Getenv(bench.PostgresEnv), "superuser DSN of the PostgreSQL server (default $"+bench.PostgresEnv+"); a database is created and dropped")
	fs.IntVar(&c.clients, "clients", 32, "concurrent clients, half on each replica")
	fs.IntVar(&c.events, "events", 3, "events per run (between start and finish)")
	fs.DurationVar(&c.before, "before", 5*time.Second, "load before the kill")
	fs.DurationVar(&c.after, "after", 10*time.Second, "load after the kill")
	fs.StringVar(&c.kill, "kill", "leader", `which replica to kill: "leader" (the one running the scheduled work) or "follower"`)
	fs.StringVar(&c.dir, "dir", "", "parent of the temporary directory (default: the system temp dir)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory")
	fs.StringVar(&c.repo, "repo", "", "ICA repository to build (default: found from the working directory)")
	fs.StringVar(&c.bin, "bin", "", "use this ica binary instead of building one")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.clients < 2 || c.before <= 0 || c.after <= 0 || (c.kill != "leader" && c.kill != "follower") {
		fmt.Fprintln(stderr, `icabench failover: -clients >= 2, -before and -after > 0, -kill leader|follower`)
		return 2
	}
	code, err := failover(ctx, c, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "icabench failover:", err)
		return 2
	}
	return code
}

// foRun is what one client was told about one run.
type foRun struct {
	id       string
	started  bool
	events   int // acknowledged events (e1..eN in order)
	finished bool
}

// foStats collects what the clients saw around the kill.
type foStats struct {
	mu          sync.Mutex
	killAt      time.Time
	survivor    int
	slowest     time.Duration // survivor answers to requests in flight at or sent after the kill
	failed      int           // survivor requests after the kill that did not succeed
	firstFail   string
	cut         int           // requests to the killed replica that got no answer
	served      time.Duration // kill → the last client's first answer from the survivor
	before      int64         // acknowledged requests before the kill
	after       int64         // acknowledged requests after the kill
	unexpected  int           // answers that are neither success nor "retry" (4xx)
	unexpected1 string
}

func failover(ctx context.Context, c failoverConfig, stdout io.Writer) (int, error) {
	pg, err := bench.OpenPostgres(ctx, c.databaseURL)
	if err != nil {
		return 0, err
	}
	root, bin, cleanup, err := scnPrepare(ctx, "failover", c.dir, c.keep, c.repo, c.bin, stdout)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "failover: 2 replicas on %s, %d clients (half on each), runs of start + %d events + finish; SIGKILL the %s after %s, load for %s more\n",
		pg.Describe(), c.clients, c.events, c.kill, c.before, c.after)
	p, err := startPGReplicas(ctx, bin, pg, root, 2)
	if err != nil {
		return 0, err
	}
	defer p.kill()
	client := bench.Client(c.clients + 4)
	defer client.CloseIdleConnections()

	// Exactly one replica leads the scheduled work.
	leader := -1
	deadline := time.Now().Add(20 * time.Second)
	for leader < 0 {
		var leading []int
		for i, s := range p.servers {
			if v, ok := leaderGauge(ctx, client, s); ok && v == 1 {
				leading = append(leading, i)
			}
		}
		if len(leading) > 1 {
			return 0, fmt.Errorf("replicas %v both lead the scheduled work", leading)
		}
		if len(leading) == 1 {
			leader = leading[0]
			break
		}
		if time.Now().After(deadline) {
			return 0, errors.New("no replica leads the scheduled work within 20 s (ica_scheduler_leader)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	victim := leader
	if c.kill == "follower" {
		victim = 1 - leader
	}
	survivor := 1 - victim
	fmt.Fprintf(stdout, "replica %d leads the scheduled work; replica %d will be killed\n", leader+1, victim+1)

	st := &foStats{survivor: survivor}
	var killed atomic.Bool
	loadEnd := time.Now().Add(c.before + c.after) // moved to kill + after at the kill
	var endMu sync.Mutex
	open := func() bool {
		endMu.Lock()
		defer endMu.Unlock()
		return time.Now().Before(loadEnd) && ctx.Err() == nil
	}
	var buildID atomic.Int64
	runsCh := make(chan []foRun, c.clients)
	var wg sync.WaitGroup
	for id := range c.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			home := id % 2
			servedAfterKill := false
			var runs []foRun
			defer func() { runsCh <- runs }()
			// send retries one request until it is acknowledged or the load
			// ends: on the other replica once its own is gone.
			send := func(path string, body []byte) bool {
				for open() {
					s := p.servers[home]
					begin := time.Now()
					status, b, _, err := bench.DoJSON(ctx, client, http.MethodPost, s.URL()+path, "Bearer "+s.Token, body)
					end := time.Now()
					ok := err == nil && status/100 == 2
					st.mu.Lock()
					afterKill := killed.Load() && !end.Before(st.killAt)
					if home == st.survivor && afterKill {
						if ok {
							from := begin
							if from.Before(st.killAt) {
								from = st.killAt // in flight at the kill
							}
							st.slowest = max(st.slowest, end.Sub(from))
							if !servedAfterKill {
								servedAfterKill = true
								st.served = max(st.served, end.Sub(st.killAt))
							}
						} else {
							st.failed++
							if st.firstFail == "" {
								st.firstFail = fmt.Sprintf("%s: %d %s %v", path, status, strings.TrimSpace(string(b)), err)
							}
						}
					}
					if ok {
						if afterKill {
							st.after++
						} else {
							st.before++
						}
					}
					st.mu.Unlock()
					switch {
					case ok:
						return true
					case err != nil && killed.Load() && home != st.survivor:
						// The replica is gone: what it did not answer is
						// retried on the survivor.
						st.mu.Lock()
						st.cut++
						st.mu.Unlock()
						home = st.survivor
					case err != nil || status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests:
						time.Sleep(100 * time.Millisecond)
					default:
						st.mu.Lock()
						st.unexpected++
						if st.unexpected1 == "" {
							st.unexpected1 = fmt.Sprintf("%s: %d %s", path, status, strings.TrimSpace(string(b)))
						}
						st.mu.Unlock()
						return false
					}
				}
				return false
			}
			for n := 0; open(); n++ {
				r := foRun{id: "fo-" + strconv.FormatInt(2_000_000+buildID.Add(1), 10)}
				if !send("/api/v1/runs", startBody(r.id, id, n)) {
					break
				}
				r.started = true
				for e := 1; e <= c.events; e++ {
					if !send("/api/v1/runs/"+r.id+"/events", eventBody(e, true)) {
						break
					}
					r.events = e
				}
				if r.events == c.events && send("/api/v1/runs/"+r.id+"/finish", []byte(`{"status":"success"}`)) {
					r.finished = true
				}
				runs = append(runs, r)
			}
		}()
	}

	// The kill, and the survivor's lead.
	select {
	case <-ctx.Done():
		wg.Wait()
		return 0, ctx.Err()
	case <-time.After(c.before):
	}
	st.mu.Lock()
	st.killAt = time.Now()
	killed.Store(true)
	st.mu.Unlock()
	if err := p.servers[victim].Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill replica %d: %w", victim+1, err)
	}
	endMu.Lock()
	loadEnd = st.killAt.Add(c.after)
	endMu.Unlock()
	var leadAfter time.Duration = -1
	leadDeadline := st.killAt.Add(max(c.after, 30*time.Second))
	for time.Now().Before(leadDeadline) && ctx.Err() == nil {
		if v, ok := leaderGauge(ctx, client, p.servers[survivor]); ok && v == 1 {
			leadAfter = time.Since(st.killAt)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	close(runsCh)
	var runs []foRun
	for rs := range runsCh {
		runs = append(runs, rs...)
	}
	p.servers[victim].Kill() // reaped

	// Every acknowledged write, looked up on the survivor.
	s := p.servers[survivor]
	var acked, lost, extra int
	var lostFirst string
	for _, r := range runs {
		if !r.started {
			continue
		}
		want := 1 + r.events
		if r.finished {
			want++
		}
		acked += want
		status, b, _, err := bench.DoJSON(ctx, client, http.MethodGet, s.URL()+"/api/v1/runs/"+r.id, "Bearer "+s.Token, nil)
		if err != nil {
			return 0, fmt.Errorf("look up run %s: %w", r.id, err)
		}
		if status != http.StatusOK {
			lost += want
			if lostFirst == "" {
				lostFirst = fmt.Sprintf("run %s: %d %s", r.id, status, b)
			}
			continue
		}
		got := parseRun(b)
		if got.events < r.events {
			lost += r.events - got.events
			if lostFirst == "" {
				lostFirst = fmt.Sprintf("run %s: %d events acknowledged, %d recorded", r.id, r.events, got.events)
			}
		} else if got.events > r.events {
			extra += got.events - r.events // cut by the end of the load, recorded, not acknowledged
		}
		if r.finished && got.status != "success" {
			lost++
			if lostFirst == "" {
				lostFirst = fmt.Sprintf("run %s: finish acknowledged, status %q", r.id, got.status)
			}
		}
	}
	if err := s.Stop(20 * time.Second); err != nil {
		return 0, fmt.Errorf("survivor: %w", err)
	}
	checkOut, checkOK := p.check(ctx, bin)

	fmt.Fprintf(stdout, "acknowledged: %d before the kill (%.0f/s), %d after (%.0f/s); %d requests cut by the kill and retried on the survivor; %d runs\n",
		st.before, float64(st.before)/c.before.Seconds(), st.after, float64(st.after)/c.after.Seconds(), st.cut, len(runs))
	if st.firstFail != "" {
		fmt.Fprintf(stdout, "first failed survivor answer after the kill: %s\n", st.firstFail)
	}
	if st.unexpected1 != "" {
		fmt.Fprintf(stdout, "first unexpected answer: %s\n", st.unexpected1)
	}
	if lostFirst != "" {
		fmt.Fprintf(stdout, "first lost write: %s\n", lostFirst)
	}
	leadValue := leadAfter.Seconds()
	leadNote := ""
	if leadAfter < 0 {
		leadValue = -1
		leadNote = fmt.Sprintf("the survivor did not lead within %s", leadDeadline.Sub(st.killAt).Round(time.Second))
	}
	figs := []bench.Figure{
		{Name: "acknowledged writes lost", Value: float64(lost), Target: "0", Baseline: fmt.Sprintf("of %d acknowledged", acked),
			Pass: func(v float64) bool { return v == 0 && acked > 0 },
			Note: "each acknowledged start, event and finish is looked up on the survivor afterwards"},
		{Name: "survivor: failed answers after the kill", Value: float64(st.failed), Target: "0", Pass: func(v float64) bool { return v == 0 }},
		{Name: "survivor: slowest answer after the kill", Value: bench.Ms(st.slowest), Unit: "ms", Target: "< 1,000 ms", Pass: bench.Below(1000),
			Note: "requests in flight at the kill count from the kill"},
		{Name: "kill → every client answered by the survivor", Value: bench.Ms(st.served), Unit: "ms", Target: "< 1,000 ms", Pass: bench.Below(1000),
			Note: "the killed replica's clients retry on the survivor at once (a load balancer takes seconds more to drop the endpoint)"},
		{Name: "kill → survivor leads the scheduled work", Value: leadValue, Unit: "s", Target: "< 15 s",
			Pass: func(v float64) bool { return v >= 0 && v < 15 }, Baseline: "a follower tries every 2 s", Note: leadNote},
		{Name: "unexpected answers (4xx)", Value: float64(st.unexpected), Target: "0", Pass: func(v float64) bool { return v == 0 }},
		{Name: "recorded but unacknowledged events", Value: float64(extra),
			Note: "requests cut by the end of the load: recorded, never answered; a retry with the same event_id would not add them twice"},
		{Name: "ica check after the run", Value: boolFloat(checkOK), Target: "1", Pass: func(v float64) bool { return v == 1 }},
	}
	ok := bench.PrintFigures(stdout, fmt.Sprintf("failover — SIGKILL of the %s of 2 replicas under %d clients", c.kill, c.clients), figs)
	fmt.Fprintf(stdout, "ica check:\n%s\n", indent(checkOut))
	if !ok {
		fmt.Fprintln(stdout, "RESULT: MISS")
		return 1, nil
	}
	fmt.Fprintln(stdout, "RESULT: PASS")
	return 0, nil
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// leaderGauge reads ica_scheduler_leader from a replica's metrics.
func leaderGauge(ctx context.Context, client *http.Client, s *bench.Server) (float64, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.MetricsURL()+"/metrics", nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ica_scheduler_leader "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// runState is the part of GET /api/v1/runs/{id} the check needs.
type runState struct {
	events int
	status string
}

func parseRun(b []byte) runState {
	var r struct {
		EventCount int    `json:"event_count"`
		Status     string `json:"status"`
	}
	_ = json.Unmarshal(b, &r)
	return runState{events: r.EventCount, status: r.Status}
}
