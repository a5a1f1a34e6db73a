package webhooks_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/webhooks"
)

func TestParseCIDRs(t *testing.T) {
	p, err := webhooks.ParseCIDRs([]string{"10.0.0.0/8", " 192.168.1.7 ", "", "fd00::/8", "10.1.2.3/8"})
	require.NoError(t, err)
	require.Equal(t, "[10.0.0.0/8 192.168.1.7/32 fd00::/8 10.0.0.0/8]", fmt.Sprint(p))
	_, err = webhooks.ParseCIDRs([]string{"mattermost.example.com"})
	require.ErrorContains(t, err, "mattermost.example.com")
}

func TestCallbackSources(t *testing.T) {
	allowed, err := webhooks.ParseCIDRs([]string{"10.0.0.0/8", "::1"})
	require.NoError(t, err)
	reached := 0
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++; w.WriteHeader(204) })
	h := webhooks.CallbackSources(allowed, slog.New(slog.NewTextHandler(io.Discard, nil)), next)
	do := func(path, remote string) (int, map[string]any) {
		req := httptest.NewRequest("POST", path, strings.NewReader("{}"))
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var m map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
		return rec.Code, m
	}
	st, _ := do("/mattermost/actions", "10.2.3.4:5555")
	require.Equal(t, 204, st)
	st, _ = do("/mattermost/actions", "[::1]:5555")
	require.Equal(t, 204, st)
	st, _ = do("/mattermost/actions", "[::ffff:10.0.0.9]:5555")
	require.Equal(t, 204, st, "IPv4-mapped addresses count as IPv4")
	require.Equal(t, 3, reached)

	st, body := do("/mattermost/actions", "203.0.113.9:5555")
	require.Equal(t, 200, st, "Mattermost needs 200")
	require.Contains(t, body["ephemeral_text"], "ICA_CALLBACK_ALLOWED_CIDRS")
	_, body = do("/mattermost/dialogs", "203.0.113.9:5555")
	require.Contains(t, body["error"], "ICA_CALLBACK_ALLOWED_CIDRS")
	_, body = do("/mattermost/slash", "203.0.113.9:5555")
	require.Contains(t, body["text"], "ICA_CALLBACK_ALLOWED_CIDRS")
	require.Equal(t, "ephemeral", body["response_type"])
	require.Equal(t, 3, reached, "refused requests reach nothing")

	st, _ = do("/api/v1/runs", "203.0.113.9:5555")
	require.Equal(t, 204, st, "other paths are not limited")

	// No list: everything passes.
	h = webhooks.CallbackSources(nil, nil, next)
	req := httptest.NewRequest("POST", "/mattermost/actions", nil)
	req.RemoteAddr = "203.0.113.9:1"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, 204, rec.Code)
}

func TestSplitCallbacks(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	main, cb := webhooks.SplitCallbacks(h)
	code := func(h http.Handler, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", path, nil))
		return rec.Code
	}
	require.Equal(t, 404, code(main, "/mattermost/actions"))
	require.Equal(t, 204, code(main, "/api/v1/runs"))
	require.Equal(t, 204, code(cb, "/mattermost/slash"))
	require.Equal(t, 404, code(cb, "/api/v1/runs"))
	require.Equal(t, 404, code(cb, "/readyz"))
}
