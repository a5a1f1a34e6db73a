package main

import (
	"bufio"
	"bytes"
	"context"
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
)

const testToken = "e2e-pipeline-token-0001"

// syncBuffer is a goroutine-safe log sink that reports the listening address.
type syncBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	addrC chan string
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range strings.Split(string(p), "\n") {
		var l struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
			select {
			case b.addrC <- l.Addr:
			default:
			}
		}
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func envFunc(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// startServe runs the real run() on port 0 and returns its base URL.
func startServe(t *testing.T, env map[string]string) (string, func() int, *syncBuffer) {
	t.Helper()
	if _, ok := env["ICA_METRICS_ADDR"]; !ok {
		env["ICA_METRICS_ADDR"] = "127.0.0.1:0" // tests never take the default port
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{addrC: make(chan string, 1)}
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"ica", "serve"}, envFunc(env), out, out) }()
	select {
	case addr := <-out.addrC:
		stop := func() int {
			cancel()
			select {
			case c := <-code:
				return c
			case <-time.After(15 * time.Second):
				t.Fatal("serve did not stop within 15s")
				return -1
			}
		}
		return "http://" + addr, stop, out
	case c := <-code:
		cancel()
		t.Fatalf("serve exited with %d:\n%s", c, out.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("serve did not start:\n%s", out.String())
	}
	return "", nil, nil
}

// metricsURL is the metrics listener's /metrics, from the serve log.
func metricsURL(t *testing.T, logs *syncBuffer) string {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		var l struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "metrics listening" {
			return "http://" + l.Addr + "/metrics"
		}
	}
	t.Fatalf("no metrics listener in the log:\n%s", logs.String())
	return ""
}

func call(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &m)
	return res.StatusCode, m
}

// TestMain_ServeEndToEnd runs the README walkthrough against the real main on :0.
func TestMain_ServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": dir, "ICA_PIPELINE_TOKENS": "ado=" + testToken}
	base, stop, logs := startServe(t, env)

	st, _ := call(t, "GET", base+"/healthz", "", "")
	require.Equal(t, 200, st)
	st, body := call(t, "POST", base+"/api/v1/runs", testToken,
		`{"pipeline_name":"payments","run_id":"20261127.1","branch":"refs/heads/main","commit":"0123456789abcdef0123456789abcdef01234567","triggered_by":"alice"}`)
	require.Equal(t, 201, st, body)
	for i := range 3 {
		st, body = call(t, "POST", base+"/api/v1/runs/20261127.1/events", testToken,
			fmt.Sprintf(`{"event_type":"build.step","event_data":{"step":%d},"event_id":"s%d"}`, i, i))
		require.Equal(t, 201, st, body)
	}
	st, body = call(t, "POST", base+"/api/v1/approvals", testToken, `{"run_id":"20261127.1","deployment_target":"production","estimated_cost":420}`)
	require.Equal(t, 201, st, body)
	id := body["approval_id"].(string)
	st, body = call(t, "GET", base+"/api/v1/approvals/"+id, testToken, "")
	require.Equal(t, 200, st)
	require.Equal(t, "pending", body["status"])
	st, body = call(t, "POST", base+"/api/v1/runs/20261127.1/finish", testToken, `{"status":"success"}`)
	require.Equal(t, 200, st, body)
	require.Len(t, body["audit_hash"], 64)
	// /metrics is not on the public listener, only on ICA_METRICS_ADDR.
	st, _ = call(t, "GET", base+"/metrics", "", "")
	require.Equal(t, 404, st)
	st, _ = call(t, "GET", metricsURL(t, logs), "", "")
	require.Equal(t, 200, st)

	// A second server on the same data directory fails fast.
	start := time.Now()
	var out bytes.Buffer
	env2 := map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": dir}
	code := run(context.Background(), []string{"ica", "serve"}, envFunc(env2), &out, &out)
	require.Equal(t, 1, code)
	require.Contains(t, out.String(), "ledger is locked by another process")
	require.Less(t, time.Since(start), 2*time.Second)

	// ica check and ica backup work while serving, through the admin socket.
	out.Reset()
	require.Equal(t, 0, run(context.Background(), []string{"ica", "check", "--data-dir", dir}, envFunc(nil), &out, &out), out.String())
	require.Contains(t, out.String(), "entries: 7", "the policy recorded at start, the run, its approval")
	bk := filepath.Join(t.TempDir(), "backup.db")
	out.Reset()
	require.Equal(t, 0, run(context.Background(), []string{"ica", "backup", bk, "--data-dir", dir}, envFunc(nil), &out, &out), out.String())

	require.Equal(t, 0, stop())
	require.NotContains(t, logs.String(), testToken, "secrets never reach the logs")
	require.Contains(t, logs.String(), `"msg":"stopped"`)

	// The backup is a working ledger.
	out.Reset()
	bdir := t.TempDir()
	require.NoError(t, os.Rename(bk, filepath.Join(bdir, "ica.db")))
	key, _ := os.ReadFile(filepath.Join(dir, "signing.key"))
	require.NoError(t, os.WriteFile(filepath.Join(bdir, "signing.key"), key, 0o600))
	require.Equal(t, 0, run(context.Background(), []string{"ica", "check", "--data-dir", bdir}, envFunc(nil), &out, &out), out.String())
}

func TestMain_Subcommands(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"ica", "config", "example"}, envFunc(nil), &out, &out))
	require.Contains(t, out.String(), "pipeline_tokens:")
	// The example is a valid configuration.
	p := filepath.Join(t.TempDir(), "ica.yaml")
	require.NoError(t, os.WriteFile(p, out.Bytes(), 0o600))
	_, err := loadConfig(p, envFunc(map[string]string{"ICA_MATTERMOST_TOKEN": "x"}))
	require.NoError(t, err)

	out.Reset()
	require.Equal(t, 0, run(context.Background(), []string{"ica", "token", "hash", "s3cret"}, envFunc(nil), &out, &out))
	require.Equal(t, "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0", strings.TrimSpace(out.String()))

	out.Reset()
	require.Equal(t, 2, run(context.Background(), []string{"ica", "bogus"}, envFunc(nil), &out, &out))
	require.Contains(t, out.String(), "unknown command")

	out.Reset()
	require.Equal(t, 2, run(context.Background(), []string{"ica", "check", "--data-dir", t.TempDir()}, envFunc(nil), &out, &out))
	require.Contains(t, out.String(), "no ledger")
}

func TestConfig_EnvOverridesAndErrors(t *testing.T) {
	c, err := loadConfig("", envFunc(map[string]string{"ICA_ADDR": ":9", "ICA_APPROVAL_TIMEOUT": "90m",
		"ICA_TECH_APPROVERS": "tech1, @tech2", "ICA_MONTHLY_BUDGET": "10000", "ICA_PIPELINE_TOKENS": "a=0123456789abcdef,b=fedcba9876543210"}))
	require.NoError(t, err)
	require.Equal(t, ":9", c.Addr)
	require.Equal(t, 90*time.Minute, c.target("production").Timeout)
	require.Equal(t, []string{"tech1", "tech2"}, c.target("staging").TechnicalApprovers)
	require.Len(t, c.PipelineTokens, 2)

	for name, env := range map[string]map[string]string{
		"bad duration": {"ICA_APPROVAL_TIMEOUT": "four hours"},
		"bad number":   {"ICA_MONTHLY_BUDGET": "lots"},
		"bad tokens":   {"ICA_PIPELINE_TOKENS": "justasecret"},
		"threshold":    {"ICA_BUDGET_THRESHOLD": "1.5"},
		"mm no token":  {"ICA_MATTERMOST_URL": "https://mm.example.com"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig("", envFunc(env))
			require.Error(t, err)
			require.NotContains(t, err.Error(), "justasecret", "errors never repeat a secret")
		})
	}
	_, err = hashedTokens("pipeline token", []Token{{Name: "short", Token: "abc"}})
	require.ErrorContains(t, err, "shorter than 16")
}

// TestMain_CrashSafety runs the real binary, SIGKILLs it under concurrent
// load, restarts it, and checks that every acknowledged write survived and
// the chain verifies. Several rounds on the same ledger.
func TestMain_CrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a subprocess")
	}
	bin := buildICA(t)
	dir := t.TempDir()

	type ack struct{ run, event string }
	var acked []ack
	for round := range 4 {
		cmd := exec.Command(bin, "serve")
		cmd.Env = append(os.Environ(), "ICA_ADDR=127.0.0.1:0", "ICA_DATA_DIR="+dir, "ICA_PIPELINE_TOKENS=ado="+testToken, "ICA_RATE_LIMIT=0")
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		base := ""
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "listening" {
				base = "http://" + l.Addr
				break
			}
		}
		require.NotEmpty(t, base, "round %d: server did not start", round)
		go io.Copy(io.Discard, stdout)

		var mu sync.Mutex
		var wg sync.WaitGroup
		stopLoad := make(chan struct{})
		client := &http.Client{Timeout: 5 * time.Second}
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10000; i++ {
					select {
					case <-stopLoad:
						return
					default:
					}
					runID := fmt.Sprintf("c%d-w%d-%d", round, w, i)
					body := fmt.Sprintf(`{"pipeline_name":"crash","run_id":"%s","branch":"main","commit":"0123456789abcdef","triggered_by":"load"}`, runID)
					if !post(client, base+"/api/v1/runs", body) {
						return
					}
					mu.Lock()
					acked = append(acked, ack{run: runID})
					mu.Unlock()
					for j := range 3 {
						ev := fmt.Sprintf("e%d", j)
						if !post(client, base+"/api/v1/runs/"+runID+"/events", fmt.Sprintf(`{"event_type":"x","event_data":{"j":%d},"event_id":"%s"}`, j, ev)) {
							return
						}
						mu.Lock()
						acked = append(acked, ack{run: runID, event: ev})
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(300+round*150) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		close(stopLoad)
		wg.Wait()
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		require.Greater(t, n, 0, "round %d: no request was acknowledged before the kill", round)
	}

	// Restart read-only checks: every acknowledged write is there, chain verifies.
	out, err := exec.Command(bin, "check", "--data-dir", dir).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "ok: the hash chain")

	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "ICA_ADDR=127.0.0.1:0", "ICA_DATA_DIR="+dir, "ICA_PIPELINE_TOKENS=ado="+testToken, "ICA_RATE_LIMIT=0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	base := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var l struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "listening" {
			base = "http://" + l.Addr
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	events := map[string]int{}
	for _, a := range acked {
		if a.event != "" {
			events[a.run]++
		}
	}
	for _, a := range acked {
		if a.event != "" {
			continue
		}
		st, body := call(t, "GET", base+"/api/v1/runs/"+a.run, testToken, "")
		require.Equal(t, 200, st, "acknowledged run %s is lost", a.run)
		require.GreaterOrEqual(t, int(body["event_count"].(float64)), events[a.run], "acknowledged events of %s are lost", a.run)
	}
	t.Logf("%d acknowledged writes over 4 kills all survived", len(acked))
}

func post(c *http.Client, url, body string) bool {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := c.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode/100 == 2
}
