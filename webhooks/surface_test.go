package webhooks_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ica-governance/ica/store/storetest"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/internal/testclock"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

// lockedBuffer collects log output from the handler and the server.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// bareEnv is a handler with only the ledger and pipeline tokens: every
// optional feature is left unconfigured. Logs (the handler's and the HTTP
// server's own) go to logs.
func bareEnv(t *testing.T) (*env, *lockedBuffer) {
	t.Helper()
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key})
	require.NoError(t, err)
	logs := &lockedBuffer{}
	h := webhooks.NewHandler(webhooks.Deps{Ledger: st, Pipelines: mustTokens(t), Clock: clock,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	h.RegisterAlerts(webhooks.AlertDeps{Ledger: st})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(logs, "", 0)
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		st.Close()
	})
	return &env{t: t, srv: srv, store: st, clock: clock}, logs
}

// accessLog returns the access-log lines logged for a request id.
func accessLog(logs string, rid string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == "http" && l["request_id"] == rid {
			out = append(out, l)
		}
	}
	return out
}

func TestHandler_ErrorsAreJSONWithRequestID(t *testing.T) {
	e, logs := bareEnv(t)
	cases := []struct {
		name, method, path string
		status             int
		code, msg, allow   string
		route              string
	}{
		{"wrong method on a collection", "DELETE", "/api/v1/runs", 405, "method_not_allowed", "DELETE is not allowed", "GET, POST", "unmatched"},
		{"wrong method on an item", "PUT", "/api/v1/approvals/A-1", 405, "method_not_allowed", "allowed: GET", "GET", "unmatched"},
		{"wrong method on healthz", "POST", "/healthz", 405, "method_not_allowed", "", "GET", "unmatched"},
		{"unknown route", "GET", "/api/v1/nothing", 404, "not_found", "no such endpoint: GET /api/v1/nothing", "", "unmatched"},
		{"unknown route outside the API", "GET", "/favicon.ico", 404, "not_found", "no such endpoint", "", "unmatched"},
		{"bypass without break-glass tokens", "POST", "/api/v1/approvals/A-1/bypass", 503, "not_configured", "ICA_BREAKGLASS_TOKENS", "", "/api/v1/approvals/{approval_id}/bypass"},
		{"alerts without a token or Entra ID", "POST", "/api/v1/alerts/azure-monitor", 503, "not_configured", "ICA_ALERT_TOKEN", "", "/api/v1/alerts/azure-monitor"},
		{"alert alias without a token", "POST", "/api/v1/azdev/alert", 503, "not_configured", "ICA_ENTRA_TENANT_ID", "", "/api/v1/azdev/alert"},
		{"freeze override without commander tokens", "POST", "/api/v1/incidents/I-1/freeze-override", 503, "not_configured", "ICA_INCIDENT_COMMANDER_TOKENS", "", "/api/v1/incidents/{incident_id}/freeze-override"},
		{"incident card without Mattermost", "GET", "/incidents/I-1/card", 503, "not_configured", "ICA_MATTERMOST_URL", "", "/incidents/{incident_id}/card"},
		{"costs without a cost ledger", "POST", "/api/v1/costs", 503, "not_configured", "not configured", "", "/api/v1/costs"},
		{"checks without a check ledger", "POST", "/api/v1/ado/checks", 503, "not_configured", "not configured", "", "/api/v1/ado/checks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.store.LedgerEntries()
			r := e.do(c.method, c.path, pipelineToken, `{"reason":"x"}`)
			require.Equal(t, c.status, r.status, r.raw)
			require.Equal(t, "application/json; charset=utf-8", r.header.Get("Content-Type"))
			rid := r.header.Get("X-Request-Id")
			require.NotEmpty(t, rid)
			detail, ok := r.body["error"].(map[string]any)
			require.True(t, ok, "a JSON error document: %s", r.raw)
			require.Equal(t, c.code, detail["code"])
			require.Equal(t, rid, detail["request_id"])
			require.Contains(t, detail["message"], c.msg)
			require.Equal(t, c.allow, r.header.Get("Allow"))
			require.Empty(t, r.header.Get("Retry-After"), "nothing to retry")
			require.Equal(t, before, e.store.LedgerEntries(), "nothing written")
			lines := accessLog(logs.String(), rid)
			require.Len(t, lines, 1, "one access-log line")
			require.Equal(t, float64(c.status), lines[0]["status"])
			require.Equal(t, c.route, lines[0]["route"])
		})
	}
	require.NotContains(t, logs.String(), "superfluous")
}

func TestHandler_SentRequestIDIsKept(t *testing.T) {
	e, _ := bareEnv(t)
	req, _ := http.NewRequest("GET", e.srv.URL+"/nowhere", nil)
	req.Header.Set("X-Request-Id", "trace-42")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, "trace-42", res.Header.Get("X-Request-Id"))
}

func TestAPI_ListApprovals(t *testing.T) {
	e := newEnv(t, 0)
	// A-1..A-5: runs r1..r5; odd ones staging, even ones production; A-2 bypassed.
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("r%d", i)
		e.startRun(id)
		target := "staging"
		if i%2 == 0 {
			target = "production"
		}
		r := e.do("POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": id, "deployment_target": target, "estimated_cost": 1})
		require.Equal(t, 201, r.status, r.raw)
		e.clock.Advance(time.Second)
	}
	r := e.do("POST", "/api/v1/approvals/A-2/bypass", breakGlassTok, map[string]any{"reason": "hotfix"})
	require.Equal(t, 200, r.status, r.raw)

	ids := func(r resp) []string {
		var out []string
		for _, a := range r.body["approvals"].([]any) {
			out = append(out, a.(map[string]any)["approval_id"].(string))
		}
		return out
	}
	r = e.do("GET", "/api/v1/approvals", pipelineToken, nil)
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, []string{"A-5", "A-4", "A-3", "A-2", "A-1"}, ids(r), "newest first")
	require.Nil(t, r.body["next_cursor"])
	require.NotContains(t, r.raw, `"card"`, "no empty card object before a card is posted")

	r = e.do("GET", "/api/v1/approvals?status=pending&target=staging", pipelineToken, nil)
	require.Equal(t, []string{"A-5", "A-3", "A-1"}, ids(r))
	r = e.do("GET", "/api/v1/approvals?status=bypassed", pipelineToken, nil)
	require.Equal(t, []string{"A-2"}, ids(r))
	r = e.do("GET", "/api/v1/approvals?target=production&status=rejected", pipelineToken, nil)
	require.Equal(t, 200, r.status)
	require.Empty(t, ids(r))
	require.Equal(t, "[]", string(mustJSON(t, r.body["approvals"])), "an empty list, not null")

	// Pages of two: the cursor goes on where the last page ended.
	var all []string
	cursor := ""
	for range 5 {
		r = e.do("GET", "/api/v1/approvals?limit=2&cursor="+url.QueryEscape(cursor), pipelineToken, nil)
		require.Equal(t, 200, r.status, r.raw)
		all = append(all, ids(r)...)
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	require.Equal(t, []string{"A-5", "A-4", "A-3", "A-2", "A-1"}, all)

	before := e.store.LedgerEntries()
	bad := []struct{ query, field, msg string }{
		{"status=waiting", "status", "status must be one of"},
		{"target=prod", "target", "staging or production"},
		{"limit=0", "limit", "1 to 500"},
		{"limit=501", "limit", "1 to 500"},
		{"limit=ten", "limit", "whole number"},
		{"cursor=zzz", "cursor", "cursor"},
		{"cursor=AAAAAAAAAAA", "cursor", "cursor"},
		{"state=pending", "state", "unknown query parameter"},
	}
	for _, c := range bad {
		t.Run(c.query, func(t *testing.T) {
			r := e.do("GET", "/api/v1/approvals?"+c.query, pipelineToken, nil)
			require.Equal(t, 400, r.status, r.raw)
			require.Equal(t, c.field, r.errField(), r.raw)
			require.Contains(t, r.errMessage(), c.msg)
		})
	}
	r = e.do("GET", "/api/v1/approvals", "", nil)
	require.Equal(t, 401, r.status)
	r = e.do("GET", "/api/v1/approvals", breakGlassTok, nil)
	require.Equal(t, 401, r.status, "listing takes a pipeline token")
	require.Equal(t, before, e.store.LedgerEntries(), "nothing written")
}
