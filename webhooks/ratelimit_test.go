package webhooks_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
	"github.com/ica-governance/ica/webhooks"
)

// sourceHandler is an API whose routes without credential allow 1 request
// per second per source address (burst 2), believing X-Forwarded-For only
// from the proxies given; refusals are not held.
func sourceHandler(t *testing.T, proxies ...string) *webhooks.Handler {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := storetest.New(t).Open(store.Options{Clock: ica.NewFakeClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)), Key: key})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	trusted, err := webhooks.ParseTrustedProxies(proxies)
	require.NoError(t, err)
	sources := webhooks.NewSourceLimiter(1, trusted)
	sources.SetMaxHold(0) // answer 429 at once: the sequences below stay exact
	return webhooks.NewHandler(webhooks.Deps{Ledger: st, Pipelines: mustTokens(t), Sources: sources,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// call sends one request from peer (host:port) with the given
// X-Forwarded-For (none when empty) and returns the response.
func call(h http.Handler, method, path, peer, xff, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = peer
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func statuses(h http.Handler, n int, method, path, peer, xff, token string) []int {
	var out []int
	for range n {
		out = append(out, call(h, method, path, peer, xff, token).Code)
	}
	return out
}

func TestSourceLimit_PerAddress(t *testing.T) {
	h := sourceHandler(t)
	for _, path := range []string{"/api/v1/openapi.json", "/no/such/path"} {
		t.Run(path, func(t *testing.T) {
			h := sourceHandler(t)
			got := statuses(h, 2, "GET", path, "192.0.2.1:4000", "", "")
			require.NotContains(t, got, 429, "the burst passes")
			w := call(h, "GET", path, "192.0.2.1:4001", "", "")
			require.Equal(t, 429, w.Code, "the same address, another port")
			require.Equal(t, "rate_limited", errorCode(t, w))
			ra, err := strconv.Atoi(w.Header().Get("Retry-After"))
			require.NoError(t, err)
			require.GreaterOrEqual(t, ra, 1)
			require.NotEqual(t, 429, call(h, "GET", path, "192.0.2.2:4000", "", "").Code, "another address has its own limit")
		})
	}
	// IPv6 sources are limited per /64.
	require.NotContains(t, statuses(h, 2, "GET", "/api/v1/openapi.json", "[2001:db8:1:2::1]:5000", "", ""), 429)
	require.Equal(t, 429, call(h, "GET", "/api/v1/openapi.json", "[2001:db8:1:2::ffff]:5000", "", "").Code)
	require.Equal(t, 200, call(h, "GET", "/api/v1/openapi.json", "[2001:db8:1:3::1]:5000", "", "").Code)
}

func TestSourceLimit_Exempt(t *testing.T) {
	h := sourceHandler(t)
	require.Equal(t, []int{200, 200, 200, 200, 200}, statuses(h, 5, "GET", "/healthz", "10.1.0.1:1", "", ""), "kubelet probes are never limited")
	require.NotContains(t, statuses(h, 5, "GET", "/readyz", "10.1.0.1:1", "", ""), 429)
	// Authenticated routes are limited per token (here: not at all), not per address.
	require.Equal(t, []int{200, 200, 200, 200, 200}, statuses(h, 5, "GET", "/api/v1/runs", "10.1.0.1:1", "", pipelineToken))
}

func TestSourceLimit_ForwardedForUntrusted(t *testing.T) {
	h := sourceHandler(t) // no proxy trusted
	// A client cannot escape its limit by naming another address.
	got := []int{}
	for i := range 4 {
		got = append(got, call(h, "GET", "/api/v1/openapi.json", "198.51.100.7:1", "203.0.113."+strconv.Itoa(i), "").Code)
	}
	require.Equal(t, []int{200, 200, 429, 429}, got)
}

func TestSourceLimit_ForwardedForTrusted(t *testing.T) {
	h := sourceHandler(t, "10.0.0.0/8", "192.0.2.10")
	// Behind the ingress: each client has its own limit.
	require.Equal(t, []int{200, 200, 429}, statuses(h, 3, "GET", "/api/v1/openapi.json", "10.2.3.4:1", "203.0.113.1", ""))
	require.Equal(t, 200, call(h, "GET", "/api/v1/openapi.json", "10.2.3.4:1", "203.0.113.2", "").Code)
	// Read from the right: what the client wrote left of its own address is not believed.
	require.Equal(t, 429, call(h, "GET", "/api/v1/openapi.json", "10.2.3.4:1", "9.9.9.9, 203.0.113.1", "").Code)
	// Two trusted hops (a load balancer, then the ingress); header lines are joined in order.
	require.Equal(t, 429, call(h, "GET", "/api/v1/openapi.json", "192.0.2.10:1", "203.0.113.1, 10.9.9.9", "").Code)
	require.Equal(t, 200, call(h, "GET", "/api/v1/openapi.json", "192.0.2.10:1", "203.0.113.3, 10.9.9.9", "").Code)
	// A trusted proxy without the header is limited as itself.
	require.Equal(t, []int{200, 200, 429}, statuses(h, 3, "GET", "/api/v1/openapi.json", "10.7.7.7:1", "", ""))
}

func TestSourceLimiter_ClientAddr(t *testing.T) {
	trusted, err := webhooks.ParseTrustedProxies([]string{"10.0.0.0/8", "fd00::/8"})
	require.NoError(t, err)
	l := webhooks.NewSourceLimiter(1, trusted)
	for _, c := range []struct{ peer, xff, want string }{
		{"198.51.100.7:1", "203.0.113.9", "198.51.100.7"},
		{"10.0.0.1:1", "203.0.113.9", "203.0.113.9"},
		{"10.0.0.1:1", "203.0.113.9:443", "203.0.113.9"},
		{"10.0.0.1:1", "[2001:db8::5]:443", "2001:db8::5"},
		{"10.0.0.1:1", "2001:db8::5", "2001:db8::5"},
		{"[fd00::1]:1", "::ffff:203.0.113.9", "203.0.113.9"},
		{"10.0.0.1:1", "203.0.113.9, 10.0.0.2, 10.0.0.3", "203.0.113.9"},
		{"10.0.0.1:1", "10.0.0.4, 10.0.0.3", "10.0.0.4"},
		{"10.0.0.1:1", "203.0.113.9, garbage", "10.0.0.1"},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = c.peer
		req.Header.Set("X-Forwarded-For", c.xff)
		a, ok := l.ClientAddr(req)
		require.True(t, ok)
		require.Equal(t, netip.MustParseAddr(c.want), a, "%s via %s", c.xff, c.peer)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	p, err := webhooks.ParseTrustedProxies([]string{" 10.0.0.0/8 ", "192.0.2.10", "2001:db8::/32", ""})
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("2001:db8::/32")}, p)
	for _, bad := range []string{"0.0.0.0/0", "::/0", "10.0.0.0/33", "proxy.example.com"} {
		_, err := webhooks.ParseTrustedProxies([]string{bad})
		require.Error(t, err, bad)
		require.Contains(t, err.Error(), bad)
	}
}

func TestSourceLimiter_AllowUser(t *testing.T) {
	l := webhooks.NewSourceLimiter(1, nil)
	ok1, _ := l.AllowUser("u1")
	ok2, _ := l.AllowUser("u1")
	ok3, wait := l.AllowUser("u1")
	require.True(t, ok1 && ok2)
	require.False(t, ok3)
	require.Positive(t, wait)
	ok, _ := l.AllowUser("u2")
	require.True(t, ok, "each user has their own limit")
	var none *webhooks.SourceLimiter
	ok, _ = none.AllowUser("u1")
	require.True(t, ok, "no limiter: no limit")
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
	return body.Error.Code
}

// TestSourceLimit_HoldsRefusals: a refused request is answered after a
// second (the shortest Retry-After), so a client that asks again at once
// slows itself down.
func TestSourceLimit_HoldsRefusals(t *testing.T) {
	h := webhooks.NewHandler(webhooks.Deps{Sources: webhooks.NewSourceLimiter(1, nil), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.Equal(t, []int{200, 200}, statuses(h, 2, "GET", "/api/v1/openapi.json", "192.0.2.1:1", "", ""))
	start := time.Now()
	w := call(h, "GET", "/api/v1/openapi.json", "192.0.2.1:1", "", "")
	require.Equal(t, 429, w.Code)
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "held for the shortest Retry-After")
	require.Less(t, time.Since(start), 3*time.Second)

	// A client that goes away is let go at once.
	require.Equal(t, []int{200, 200}, statuses(h, 2, "GET", "/api/v1/openapi.json", "192.0.2.9:1", "", ""))
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", "/api/v1/openapi.json", nil).WithContext(ctx)
	req.RemoteAddr = "192.0.2.9:2"
	cancel()
	start = time.Now()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, 429, rec.Code)
	require.Less(t, time.Since(start), 200*time.Millisecond)
}

// TestFailures_HeldPerPrincipal: a principal whose requests keep failing has
// its further failures held; its successful requests are answered at once.
func TestFailures_HeldPerPrincipal(t *testing.T) {
	h := sourceHandler(t)
	h.Sources.SetMaxHold(webhooks.DefaultMaxHold)
	for range 2 * webhooks.FailuresPerSecond {
		require.Equal(t, 404, call(h, "GET", "/api/v1/runs/nope", "192.0.2.1:1", "", pipelineToken).Code)
	}
	start := time.Now()
	require.Equal(t, 200, call(h, "GET", "/api/v1/runs", "192.0.2.1:1", "", pipelineToken).Code)
	require.Less(t, time.Since(start), 50*time.Millisecond, "a success is not held")
	start = time.Now()
	require.Equal(t, 404, call(h, "GET", "/api/v1/runs/nope", "192.0.2.1:1", "", pipelineToken).Code)
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "the next failure is held")
}
