package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/alerts/pdtest"
	"github.com/ica-governance/ica/store/storetest"
)

// replica is one `ica serve` process on the shared database.
type replica struct {
	cmd  *exec.Cmd
	base string
	mu   sync.Mutex
	log  strings.Builder
}

func (r *replica) logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// startReplica starts the real binary on the database and waits until it
// serves (its "listening" line).
func startReplica(t *testing.T, bin string, env []string) *replica {
	t.Helper()
	r, addr := launchReplica(t, bin, append([]string{"ICA_ADDR=127.0.0.1:0"}, env...))
	select {
	case a := <-addr:
		r.base = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatalf("replica did not start:\n%s", r.logs())
	}
	return r
}

// launchReplica starts the real binary and returns at once; the channel
// gets the address of its "listening" line.
func launchReplica(t *testing.T, bin string, env []string) (*replica, <-chan string) {
	t.Helper()
	r := &replica{cmd: exec.Command(bin, "serve")}
	r.cmd.Env = append(os.Environ(), "ICA_METRICS_ADDR=off", "ICA_DATA_DIR="+t.TempDir())
	r.cmd.Env = append(r.cmd.Env, env...)
	stdout, err := r.cmd.StdoutPipe()
	require.NoError(t, err)
	r.cmd.Stderr = r.cmd.Stdout
	require.NoError(t, r.cmd.Start())
	t.Cleanup(func() { _ = r.cmd.Process.Kill(); _ = r.cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			r.mu.Lock()
			r.log.Write(sc.Bytes())
			r.log.WriteByte('\n')
			r.mu.Unlock()
			var l struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "listening" {
				addr <- l.Addr
			}
		}
	}()
	return r, addr
}

// TestReplicas_SIGKILLUnderLoad runs two replicas of the real binary on one
// PostgreSQL database under load from pipelines and Azure Monitor, kills
// one with SIGKILL, and then finds: every acknowledged run and event,
// one chain that verifies, every acknowledged alert paged to PagerDuty
// exactly once (per dedup key, as PagerDuty de-duplicates), the survivor
// answering, and the survivor running the scheduled work.
func TestReplicas_SIGKILLUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills subprocesses")
	}
	dsn := storetest.CreateDatabase(t)
	bin := buildICA(t)
	pd := pdtest.NewServer(t)
	template, err := os.ReadFile(filepath.Join("..", "..", "alerts", "testdata", "common", "metric-static-threshold-fired.json"))
	require.NoError(t, err)
	const alertTok = "alert-token-000000000000001"
	env := []string{"ICA_DATABASE_URL=" + dsn, "ICA_PIPELINE_TOKENS=ado=" + testToken, "ICA_RATE_LIMIT=0",
		"ICA_SIGNING_KEY=" + strings.Repeat("ab", 32), "ICA_ACTION_SECRET=" + strings.Repeat("cd", 32),
		"ICA_ALERT_TOKEN=" + alertTok, "ICA_PAGERDUTY_ROUTING_KEY=R0123456789012345678901234567890",
		"ICA_PAGERDUTY_URL=" + pd.URL, "ICA_PAGERDUTY_EVENTS_PER_MINUTE=100000", "ICA_PAGERDUTY_BURST=1000"}
	a := startReplica(t, bin, env)
	b := startReplica(t, bin, env)
	require.Eventually(t, func() bool { return strings.Contains(a.logs(), "running the scheduled work") }, 10*time.Second, 50*time.Millisecond,
		"the first replica leads the scheduled work")
	require.NotContains(t, b.logs(), "running the scheduled work", "one leader at a time")

	type ack struct{ run, event, alert string }
	var mu sync.Mutex
	var acked []ack
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := range 8 {
		r := a
		if w%2 == 1 {
			r = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				run := fmt.Sprintf("w%d-%d", w, i)
				if !post(client, r.base+"/api/v1/runs", fmt.Sprintf(`{"pipeline_name":"ha","run_id":"%s","branch":"main","commit":"0123456789abcdef","triggered_by":"load"}`, run)) {
					continue
				}
				mu.Lock()
				acked = append(acked, ack{run: run})
				mu.Unlock()
				for j := range 3 {
					ev := fmt.Sprintf("e%d", j)
					if post(client, r.base+"/api/v1/runs/"+run+"/events", fmt.Sprintf(`{"event_type":"x","event_data":{"j":%d},"event_id":"%s"}`, j, ev)) {
						mu.Lock()
						acked = append(acked, ack{run: run, event: ev})
						mu.Unlock()
					}
				}
				if i%5 == 0 {
					id := fmt.Sprintf("/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/providers/Microsoft.AlertsManagement/alerts/ha-%d-%d", w, i)
					body := strings.Replace(strings.Replace(string(template), "eeeeeeee-4444-5555-6666-ffffffffffff", fmt.Sprintf("ha-%d-%d", w, i), 1), `"Sev4"`, `"Sev1"`, 1)
					req, _ := http.NewRequest("POST", r.base+"/api/v1/alerts/azure-monitor", strings.NewReader(body))
					req.Header.Set("X-ICA-Alert-Token", alertTok)
					if res, err := client.Do(req); err == nil {
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if res.StatusCode/100 == 2 {
							mu.Lock()
							acked = append(acked, ack{alert: id})
							mu.Unlock()
						}
					}
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	killedAt := time.Now()
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGKILL))
	_ = a.cmd.Wait()
	// The survivor answers at once; and takes over the scheduled work.
	start := time.Now()
	for {
		res, err := client.Get(b.base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		require.Less(t, time.Since(start), time.Second, "the survivor answers within 1 s")
		time.Sleep(10 * time.Millisecond)
	}
	require.Eventually(t, func() bool { return strings.Contains(b.logs(), "running the scheduled work") }, 15*time.Second, 50*time.Millisecond,
		"the survivor leads the scheduled work within 15 s of the kill")
	t.Logf("survivor leads %.1f s after the kill", time.Since(killedAt).Seconds())
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	runs, nEvents, events, alerts := 0, 0, map[string]int{}, map[string]bool{}
	for _, x := range acked {
		switch {
		case x.alert != "":
			alerts[x.alert] = true
		case x.event != "":
			events[x.run]++
			nEvents++
		default:
			runs++
		}
	}
	require.Greater(t, runs, 20)
	require.NotEmpty(t, alerts)
	for _, x := range acked {
		if x.run == "" || x.event != "" {
			continue
		}
		st, body := call(t, "GET", b.base+"/api/v1/runs/"+x.run, testToken, "")
		require.Equal(t, 200, st, "acknowledged run %s is lost", x.run)
		require.GreaterOrEqual(t, int(body["event_count"].(float64)), events[x.run], "acknowledged events of %s are lost", x.run)
	}
	// Every acknowledged alert pages once: PagerDuty sees one trigger per
	// dedup key, whichever replica delivered it (a delivery cut by the
	// kill is repeated by the survivor with the same key).
	require.Eventually(t, func() bool {
		seen := map[string]bool{}
		for _, r := range pd.Events() {
			if r.Event.Action == "trigger" {
				seen[r.Event.DedupKey] = true
			}
		}
		for id := range alerts {
			if !seen[id] {
				return false
			}
		}
		return true
	}, 60*time.Second, 100*time.Millisecond, "every acknowledged alert reaches PagerDuty")
	triggers := map[string]int{}
	for _, r := range pd.Events() {
		if r.Event.Action == "trigger" && r.Status == 202 {
			triggers[r.Event.DedupKey]++
		}
	}
	dups := 0
	for _, n := range triggers {
		if n > 1 {
			dups++
		}
	}
	// Only a delivery the killed replica made but had not yet marked done
	// is made again: at most the messages it held claimed at once.
	require.LessOrEqual(t, dups, 20, "repeats only for deliveries cut by the kill")
	t.Logf("%d runs, %d events, %d alerts acknowledged; %d dedup keys delivered more than once (PagerDuty folds them)", runs, nEvents, len(alerts), dups)

	cmd := exec.Command(bin, "check")
	cmd.Env = append(os.Environ(), "ICA_DATABASE_URL="+dsn, "ICA_SIGNING_KEY="+strings.Repeat("ab", 32))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "ok: the hash chain")
}
