package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/store/storetest"
)

// dbProxy stands between ICA and the test's PostgreSQL: down() cuts every
// connection and refuses new ones, as a database that stopped or failed
// over looks from ICA's side; up() accepts again on the same address.
type dbProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newDBProxy(t *testing.T, target string) *dbProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &dbProxy{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	require.NoError(t, ln.Close())
	t.Cleanup(p.down)
	return p
}

func (p *dbProxy) up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(p.t, err)
	p.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[s] = true, true
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
}

func (p *dbProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// dbURL returns the test database as a postgres:// URL through addr, with
// password (and database name, when not empty) replaced.
func dbURL(t *testing.T, dsn, addr, password, dbname string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	require.NoError(t, err)
	if password == "" {
		password = cfg.Password
	}
	if dbname == "" {
		dbname = cfg.Database
	}
	u := url.URL{Scheme: "postgres", Host: addr, Path: "/" + dbname, RawQuery: "sslmode=disable&connect_timeout=2"}
	if password != "" {
		u.User = url.UserPassword(cfg.User, password)
	} else {
		u.User = url.User(cfg.User)
	}
	return u.String()
}

// rawCall is call with the response's headers.
func rawCall(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(raw)
}

// TestServe_DatabaseFaults: ICA on PostgreSQL through a proxy the test
// cuts. Unreachable at start: alive, not ready, every request told to
// retry, and serving once the database answers, without a restart. Lost
// while serving: 503 with Retry-After, nothing half-written, and back by
// itself; what was acknowledged is all there, once.
func TestServe_DatabaseFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dsn := storetest.CreateDatabase(t)
	cfg, err := pgconn.ParseConfig(dsn)
	require.NoError(t, err)
	bin := buildICA(t)
	proxy := newDBProxy(t, net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	base := "http://" + addr
	key := "ICA_SIGNING_KEY=" + strings.Repeat("ab", 32)
	r, listening := launchReplica(t, bin, []string{"ICA_ADDR=" + addr, "ICA_DATABASE_URL=" + dbURL(t, dsn, proxy.addr, "", ""),
		"ICA_PIPELINE_TOKENS=ado=" + testToken, "ICA_RATE_LIMIT=0", key, "ICA_ACTION_SECRET=" + strings.Repeat("cd", 32)})

	// Unreachable at start.
	require.Eventually(t, func() bool {
		res, err := http.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == 200
	}, 30*time.Second, 50*time.Millisecond, "alive while the database cannot be reached:\n%s", r.logs())
	st, _, body := rawCall(t, "GET", base+"/readyz", "", "")
	require.Equal(t, 503, st)
	require.Contains(t, body, "database")
	st, h, body := rawCall(t, "POST", base+"/api/v1/runs", testToken, `{"pipeline_name":"db","run_id":"r1","branch":"main","commit":"0123456789abcdef","triggered_by":"ci"}`)
	require.Equal(t, 503, st, body)
	require.NotEmpty(t, h.Get("Retry-After"))
	require.Contains(t, body, "nothing was recorded")
	require.Eventually(t, func() bool { return strings.Contains(r.logs(), "cannot be reached; retrying") }, 10*time.Second, 50*time.Millisecond)
	if cfg.Password != "" {
		require.NotContains(t, r.logs(), cfg.Password, "the database password never reaches the log")
	}

	proxy.up()
	select {
	case <-listening:
	case <-time.After(60 * time.Second):
		t.Fatalf("ICA did not serve once the database answered:\n%s", r.logs())
	}
	st, _, body = rawCall(t, "GET", base+"/readyz", "", "")
	require.Equal(t, 200, st, body)
	st, _, body = rawCall(t, "POST", base+"/api/v1/runs", testToken, `{"pipeline_name":"db","run_id":"r1","branch":"main","commit":"0123456789abcdef","triggered_by":"ci"}`)
	require.Equal(t, 201, st, body)
	st, _, body = rawCall(t, "POST", base+"/api/v1/runs/r1/events", testToken, `{"event_type":"step","event_data":{"n":1},"event_id":"e1"}`)
	require.Equal(t, 201, st, body)

	// Lost while serving.
	proxy.down()
	st, h, body = rawCall(t, "POST", base+"/api/v1/runs/r1/events", testToken, `{"event_type":"step","event_data":{"n":2},"event_id":"e2"}`)
	require.Equal(t, 503, st, body)
	require.NotEmpty(t, h.Get("Retry-After"))
	require.Contains(t, body, `"code":"unavailable"`)
	st, _, _ = rawCall(t, "GET", base+"/healthz", "", "")
	require.Equal(t, 200, st, "the process is alive")
	st, _, body = rawCall(t, "GET", base+"/readyz", "", "")
	require.Equal(t, 503, st, body)

	// Back without a restart: the pipeline's retry is recorded once.
	proxy.up()
	require.Eventually(t, func() bool {
		st, _, _ := rawCall(t, "POST", base+"/api/v1/runs/r1/events", testToken, `{"event_type":"step","event_data":{"n":2},"event_id":"e2"}`)
		return st == 201 || st == 200
	}, 30*time.Second, 200*time.Millisecond, "ICA recovers by itself:\n%s", r.logs())
	st, _, body = rawCall(t, "POST", base+"/api/v1/runs/r1/finish", testToken, `{"status":"success"}`)
	require.Equal(t, 200, st, body)
	st, run := call(t, "GET", base+"/api/v1/runs/r1", testToken, "")
	require.Equal(t, 200, st)
	require.EqualValues(t, 2, run["event_count"], "e1 once, e2 once, nothing of the cut request half-written")
	if cfg.Password != "" {
		require.NotContains(t, r.logs(), cfg.Password)
	}

	cmd := exec.Command(bin, "check")
	cmd.Env = append(os.Environ(), "ICA_DATABASE_URL="+dsn, key)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "ok: the hash chain")
}

// TestServe_DatabaseSettingsRefused: a setting that retrying cannot fix
// ends the start at once with one line naming it, and never the password;
// a replica with another signing key than the ledger's is refused.
func TestServe_DatabaseSettingsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dsn := storetest.CreateDatabase(t)
	cfg, err := pgconn.ParseConfig(dsn)
	require.NoError(t, err)
	bin := buildICA(t)
	server := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	keyA, keyB := "ICA_SIGNING_KEY="+strings.Repeat("ab", 32), "ICA_SIGNING_KEY="+strings.Repeat("ef", 32)
	secret := "ICA_ACTION_SECRET=" + strings.Repeat("cd", 32)

	refused := func(t *testing.T, env ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "serve")
		cmd.Env = append(os.Environ(), append([]string{"ICA_ADDR=127.0.0.1:0", "ICA_METRICS_ADDR=off", "ICA_DATA_DIR=" + t.TempDir(),
			"ICA_PIPELINE_TOKENS=ado=" + testToken}, env...)...)
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "ica serve must refuse to start:\n%s", out)
		require.NoError(t, ctx.Err(), "refused at once, not retried:\n%s", out)
		return string(out)
	}

	t.Run("wrong password", func(t *testing.T) {
		const wrong = "not-the-password-7f3a"
		c, err := pgx.Connect(context.Background(), dbURL(t, dsn, server, wrong, ""))
		if err == nil {
			c.Close(context.Background())
			t.Skip("this test server does not check passwords")
		}
		out := refused(t, "ICA_DATABASE_URL="+dbURL(t, dsn, server, wrong, ""), keyA, secret)
		require.Contains(t, out, "authentication failed")
		require.NotContains(t, out, wrong)
	})
	t.Run("missing database", func(t *testing.T) {
		out := refused(t, "ICA_DATABASE_URL="+dbURL(t, dsn, server, "", "ica_no_such_database"), keyA, secret)
		require.Contains(t, out, "does not exist")
		require.Contains(t, out, "ica_no_such_database")
		if cfg.Password != "" {
			require.NotContains(t, out, cfg.Password)
		}
	})
	t.Run("another signing key", func(t *testing.T) {
		a := startReplica(t, bin, []string{"ICA_DATABASE_URL=" + dsn, keyA, secret})
		st, _ := call(t, "GET", a.base+"/readyz", "", "")
		require.Equal(t, 200, st)
		out := refused(t, "ICA_DATABASE_URL="+dsn, keyB, secret)
		require.Contains(t, out, "not one this ledger accepts")
		require.Contains(t, out, "ica key rotate")
		st, _ = call(t, "GET", a.base+"/readyz", "", "")
		require.Equal(t, 200, st, "the replica with the ledger's key serves on")
	})
}
