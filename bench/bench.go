// Package bench holds what the load generators in bench/cmd share: building
// and starting the real ica binary on a temporary ledger, reading the
// server's peak memory, latency percentiles, a raw bbolt baseline measured
// on the same disk, and a printer that shows each figure beside its target.
//
// Scenarios live in bench/cmd/icabench as subcommands; they use these
// helpers so every scenario measures the same way.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RepoRoot finds the module root of ICA from dir upwards.
func RepoRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/ica-governance/ica\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no ICA go.mod above %s (run from the repository, or pass -repo)", dir)
		}
	}
}

// BuildICA builds ./cmd/ica of the repository at root into dir and returns
// the binary's path.
func BuildICA(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "ica")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/ica")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/ica: %w\n%s", err, out)
	}
	return bin, nil
}

// RandomToken returns a fresh 32-byte hex secret.
func RandomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Server is a running `ica serve` child process.
type Server struct {
	Cmd  *exec.Cmd
	Addr string // host:port it listens on (loopback)
	// MetricsAddr is the metrics listener's host:port (ICA_METRICS_ADDR).
	MetricsAddr string
	DataDir     string
	Token       string // pipeline bearer token, actor "bench"

	logMu sync.Mutex
	log   bytes.Buffer // the server's last output, for error reports
	// stderrHead is the start of the server's standard error: where a
	// crash says what it was (the tail of a crash is goroutine dumps).
	stderrHead bytes.Buffer
	done       chan struct{}
	err        error
}

// ServerOptions configure StartServer.
type ServerOptions struct {
	Bin     string
	DataDir string
	// Env adds ICA_… settings; ICA_ADDR, ICA_DATA_DIR, ICA_PIPELINE_TOKENS
	// and ICA_RATE_LIMIT are set by StartServer.
	Env []string
	// Wait bounds the start-up (default 20s).
	Wait time.Duration
}

// StartServer runs `ica serve` on 127.0.0.1:0 with a fresh pipeline token
// and no rate limit, and returns once the server has logged its address.
// The caller's ICA_… variables are not passed on, so a developer's
// environment cannot change what is measured.
func StartServer(ctx context.Context, o ServerOptions) (*Server, error) {
	if o.Wait == 0 {
		o.Wait = 20 * time.Second
	}
	s := &Server{DataDir: o.DataDir, Token: RandomToken(), done: make(chan struct{})}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ICA_") {
			env = append(env, kv)
		}
	}
	env = append(env, "ICA_ADDR=127.0.0.1:0", "ICA_METRICS_ADDR=127.0.0.1:0", "ICA_DATA_DIR="+o.DataDir,
		"ICA_PIPELINE_TOKENS=bench="+s.Token, "ICA_RATE_LIMIT=0", "ICA_LOG_LEVEL=info")
	env = append(env, o.Env...)
	s.Cmd = exec.Command(o.Bin, "serve")
	s.Cmd.Env = env
	s.Cmd.Stderr = &lockedWriter{s: s}
	stdout, err := s.Cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serve: %w", o.Bin, err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Bytes()
			s.appendLog(line)
			if sent {
				continue
			}
			var m struct{ Msg, Addr string }
			if json.Unmarshal(line, &m) == nil && m.Msg == "metrics listening" {
				s.MetricsAddr = m.Addr // logged before "listening": read after it is received
			}
			if json.Unmarshal(line, &m) == nil && m.Msg == "listening" && m.Addr != "" {
				addr <- m.Addr
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		s.err = s.Cmd.Wait()
		close(s.done)
	}()
	select {
	case a := <-addr:
		host, _, err := net.SplitHostPort(a)
		if err != nil || !net.ParseIP(host).IsLoopback() {
			s.Kill()
			return nil, fmt.Errorf("server listens on %q, not on loopback", a)
		}
		s.Addr = a
	case <-s.done:
		return nil, fmt.Errorf("ica serve exited before listening %s", s.exitReport())
	case <-time.After(o.Wait):
		s.Kill()
		return nil, fmt.Errorf("ica serve did not log its address within %s:\n%s", o.Wait, s.Log())
	case <-ctx.Done():
		s.Kill()
		return nil, ctx.Err()
	}
	return s, nil
}

type lockedWriter struct{ s *Server }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.logMu.Lock()
	if room := 64<<10 - w.s.stderrHead.Len(); room > 0 {
		w.s.stderrHead.Write(p[:min(room, len(p))])
	}
	w.s.logMu.Unlock()
	w.s.appendLog(p)
	return len(p), nil
}

// exitReport describes a server that exited: its status, the start of its
// standard error (a crash's first lines) and the tail of its output.
func (s *Server) exitReport() string {
	s.logMu.Lock()
	head := s.stderrHead.String()
	s.logMu.Unlock()
	if head == "" {
		return fmt.Sprintf("(%v):\n%s", s.err, s.Log())
	}
	const max = 8 << 10
	if len(head) > max {
		head = head[:max] + "\n…"
	}
	return fmt.Sprintf("(%v); its standard error begins:\n%s\n\nthe tail of its output:\n%s", s.err, head, s.Log())
}

func (s *Server) appendLog(p []byte) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if s.log.Len() > 64<<10 {
		s.log.Reset() // keep the tail only
	}
	s.log.Write(p)
	if len(p) > 0 && p[len(p)-1] != '\n' {
		s.log.WriteByte('\n')
	}
}

// Log returns the tail of the server's output.
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// URL returns the base URL of the server.
func (s *Server) URL() string { return "http://" + s.Addr }

// MetricsURL returns the base URL of the metrics listener (GET /metrics is
// not served on the API's listener).
func (s *Server) MetricsURL() string { return "http://" + s.MetricsAddr }

// PID returns the server's process id.
func (s *Server) PID() int { return s.Cmd.Process.Pid }

// PeakRSS returns the server's peak resident set size (VmHWM) in bytes. Read
// it before Stop: the figure goes with the process.
func (s *Server) PeakRSS() (int64, error) {
	v, err := ProcStatusBytes(s.PID(), "VmHWM")
	if err != nil {
		if e := s.Exited(); e != nil {
			return 0, e
		}
	}
	return v, err
}

// Exited reports, with its log, a server that is no longer running.
func (s *Server) Exited() error {
	select {
	case <-s.done:
		return fmt.Errorf("ica serve exited during the run %s", s.exitReport())
	default:
		return nil
	}
}

// Stop sends SIGTERM and waits up to timeout for a clean exit, then kills.
func (s *Server) Stop(timeout time.Duration) error {
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.err != nil {
			return fmt.Errorf("ica serve exited %s", s.exitReport())
		}
		return nil
	case <-time.After(timeout):
		s.Kill()
		return fmt.Errorf("ica serve did not stop within %s after SIGTERM", timeout)
	}
}

// Kill ends the server at once.
func (s *Server) Kill() {
	_ = s.Cmd.Process.Kill()
	<-s.done
}

// ProcStatusBytes reads a "kB" field (VmHWM, VmRSS) of /proc/<pid>/status.
func ProcStatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: unexpected %s line %q", pid, field, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// ProcIOWriteBytes returns write_bytes of /proc/<pid>/io: bytes this
// process caused to be sent to the storage layer (pid 0 means this process).
func ProcIOWriteBytes(pid int) (int64, error) {
	p := "/proc/self/io"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/io", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no write_bytes", p)
}

// Check runs `ica check --data-dir dir` and returns its output; ok is false
// when it reports a problem or fails.
func Check(ctx context.Context, bin, dir string) (out string, ok bool) {
	cmd := exec.CommandContext(ctx, bin, "check", "--data-dir", dir)
	b, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(b)), err == nil
}

// Client returns an HTTP client for loopback load: one kept-alive
// connection per concurrent client, no proxy, a bound on every request.
func Client(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			MaxConnsPerHost:     0,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
	}
}

// ErrStopped is returned by loops that ended because their window closed.
var ErrStopped = errors.New("stopped")
