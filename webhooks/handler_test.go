package webhooks_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ica-governance/ica/store/storetest"

	"github.com/ica-governance/ica/internal/testclock"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

const (
	pipelineToken = "pipeline-secret-token-0001"
	breakGlassTok = "break-glass-secret-token-01"
	commitA       = "0123456789abcdef0123456789abcdef01234567"
)

type env struct {
	t     testing.TB
	srv   *httptest.Server
	store *store.Store
	clock *ica.FakeClock
}

func newEnv(t testing.TB, rate float64) *env {
	t.Helper()
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key})
	require.NoError(t, err)
	pt, err := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken(pipelineToken)}, nil)
	require.NoError(t, err)
	bg, err := webhooks.NewStaticTokens(map[string]string{"oncall-lead": webhooks.HashToken(breakGlassTok)}, nil)
	require.NoError(t, err)
	h := webhooks.NewHandler(webhooks.Deps{Ledger: st, Pipelines: pt, BreakGlass: bg, Clock: clock,
		Limiter: webhooks.NewRateLimiter(rate), Metrics: webhooks.NewMetrics(prometheus.NewRegistry()),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(h)
	e := &env{t: t, srv: srv, store: st, clock: clock}
	t.Cleanup(func() {
		srv.Close()
		rep, err := st.Check()
		require.NoError(t, err)
		require.Empty(t, rep.Problems)
		st.Close()
	})
	return e
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) do(method, path, token string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		require.NoError(e.t, err)
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	require.NoError(e.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

func (r resp) errField() string {
	if e, ok := r.body["error"].(map[string]any); ok {
		f, _ := e["field"].(string)
		return f
	}
	return ""
}

func (r resp) errMessage() string {
	if e, ok := r.body["error"].(map[string]any); ok {
		m, _ := e["message"].(string)
		return m
	}
	return ""
}

func runBody(id string) map[string]any {
	return map[string]any{"pipeline_name": "payments", "run_id": id, "branch": "refs/heads/main",
		"commit": commitA, "triggered_by": "alice"}
}

func (e *env) startRun(id string) {
	e.t.Helper()
	r := e.do("POST", "/api/v1/runs", pipelineToken, runBody(id))
	require.Equal(e.t, 201, r.status, r.raw)
}

func TestAPI_RunLifecycle(t *testing.T) {
	e := newEnv(t, 0)
	r := e.do("POST", "/api/v1/runs", pipelineToken, runBody("1001"))
	require.Equal(t, 201, r.status, r.raw)
	require.Equal(t, "ado", r.body["actor"], "the token's name is the actor")
	require.NotEmpty(t, r.header.Get("X-Request-Id"))

	r = e.do("POST", "/api/v1/runs", pipelineToken, runBody("1001"))
	require.Equal(t, 200, r.status, "an identical repeat is 200")

	changed := runBody("1001")
	changed["branch"] = "refs/heads/feature"
	r = e.do("POST", "/api/v1/runs", pipelineToken, changed)
	require.Equal(t, 409, r.status)
	require.Contains(t, r.errMessage(), "branch", "the conflict says what differs")

	for i := range 5 {
		r = e.do("POST", "/api/v1/runs/1001/events", pipelineToken, map[string]any{"event_type": "step",
			"event_data": map[string]any{"i": i}, "event_id": fmt.Sprintf("ev-%d", i)})
		require.Equal(t, 201, r.status, r.raw)
	}
	r = e.do("POST", "/api/v1/runs/1001/events", pipelineToken, map[string]any{"event_type": "step",
		"event_data": map[string]any{"i": 0}, "event_id": "ev-0"})
	require.Equal(t, 200, r.status, "a repeated event_id is not stored twice")

	e.clock.Advance(5 * time.Minute)
	r = e.do("POST", "/api/v1/runs/1001/finish", pipelineToken, map[string]any{"status": "success"})
	require.Equal(t, 200, r.status, r.raw)
	hash := r.body["audit_hash"].(string)
	require.Len(t, hash, 64)
	r = e.do("POST", "/api/v1/runs/1001/finish", pipelineToken, map[string]any{"status": "success"})
	require.Equal(t, 200, r.status)
	require.Equal(t, hash, r.body["audit_hash"])

	r = e.do("GET", "/api/v1/runs/1001", pipelineToken, nil)
	require.Equal(t, 200, r.status)
	require.Equal(t, float64(5), r.body["event_count"])
	r = e.do("GET", "/api/v1/runs/1001/events", pipelineToken, nil)
	require.Equal(t, 200, r.status)
	require.Len(t, r.body["events"], 5)
	require.Equal(t, uint64(7), e.store.LedgerEntries())
}

func TestAPI_ListRuns_Cursor(t *testing.T) {
	e := newEnv(t, 0)
	t0 := e.clock.Now()
	for i := range 7 {
		e.startRun(fmt.Sprintf("r%d", i))
		e.clock.Advance(time.Minute)
	}
	seen := map[string]bool{}
	path := "/api/v1/runs?limit=3&pipeline=payments"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		r := e.do("GET", path, pipelineToken, nil)
		require.Equal(t, 200, r.status, r.raw)
		for _, run := range r.body["runs"].([]any) {
			seen[run.(map[string]any)["run_id"].(string)] = true
		}
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			break
		}
		path = "/api/v1/runs?limit=3&pipeline=payments&cursor=" + next
	}
	require.Len(t, seen, 7)
	r := e.do("GET", "/api/v1/runs?from="+t0.Add(2*time.Minute).Format(time.RFC3339)+"&to="+t0.Add(4*time.Minute).Format(time.RFC3339), pipelineToken, nil)
	require.Equal(t, 200, r.status)
	require.Len(t, r.body["runs"], 2)
}

func TestAPI_BadInput(t *testing.T) {
	e := newEnv(t, 0)
	e.startRun("1001")
	e.startRun("done")
	r := e.do("POST", "/api/v1/runs/done/finish", pipelineToken, map[string]any{"status": "failed"})
	require.Equal(t, 200, r.status)
	long := strings.Repeat("p", 257)
	big := map[string]any{"blob": strings.Repeat("x", 65<<10)}
	early := "2026-11-02T08:00:00Z"

	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		field, msg                string
	}{
		{"malformed JSON", "POST", "/api/v1/runs", pipelineToken, `{"run_id": "x",`, 400, "", "malformed JSON"},
		{"not an object", "POST", "/api/v1/runs", pipelineToken, `[1,2]`, 400, "", "JSON object"},
		{"empty body", "POST", "/api/v1/runs", pipelineToken, ``, 400, "", "empty"},
		{"trailing data", "POST", "/api/v1/runs", pipelineToken, `{"run_id":"a"} {}`, 400, "", "after the JSON"},
		{"unknown field", "POST", "/api/v1/runs", pipelineToken, map[string]any{"pipeline_name": "p", "run_id": "x", "colour": "red"}, 400, "colour", "unknown field"},
		{"wrong type", "POST", "/api/v1/runs", pipelineToken, map[string]any{"pipeline_name": 42}, 400, "pipeline_name", "must be a string"},
		{"missing pipeline_name", "POST", "/api/v1/runs", pipelineToken, map[string]any{"run_id": "x", "branch": "b", "commit": commitA, "triggered_by": "a"}, 400, "pipeline_name", "required"},
		{"missing commit", "POST", "/api/v1/runs", pipelineToken, map[string]any{"pipeline_name": "p", "run_id": "x", "branch": "b", "triggered_by": "a"}, 400, "commit", "required"},
		{"bad run_id", "POST", "/api/v1/runs", pipelineToken, map[string]any{"pipeline_name": "p", "run_id": "../x", "branch": "b", "commit": commitA, "triggered_by": "a"}, 400, "run_id", ""},
		{"pipeline_name too long", "POST", "/api/v1/runs", pipelineToken, map[string]any{"pipeline_name": long, "run_id": "x", "branch": "b", "commit": commitA, "triggered_by": "a"}, 400, "pipeline_name", "256"},
		{"event_data too large", "POST", "/api/v1/runs/1001/events", pipelineToken, map[string]any{"event_type": "x", "event_data": big}, 400, "event_data", "64 KiB"},
		{"event_data not object", "POST", "/api/v1/runs/1001/events", pipelineToken, map[string]any{"event_type": "x", "event_data": "str"}, 400, "event_data", "object"},
		{"missing event_type", "POST", "/api/v1/runs/1001/events", pipelineToken, map[string]any{"event_data": map[string]any{}}, 400, "event_type", "required"},
		{"body over 1 MiB", "POST", "/api/v1/runs/1001/events", pipelineToken, map[string]any{"event_type": "x", "event_data": map[string]any{"b": strings.Repeat("y", 1<<20)}}, 413, "", "larger than"},
		{"unknown run event", "POST", "/api/v1/runs/nope/events", pipelineToken, map[string]any{"event_type": "x", "event_data": map[string]any{}}, 404, "", "not found"},
		{"unknown run get", "GET", "/api/v1/runs/nope", pipelineToken, nil, 404, "", "not found"},
		{"event after finish", "POST", "/api/v1/runs/done/events", pipelineToken, map[string]any{"event_type": "x", "event_data": map[string]any{}}, 409, "", "after finish"},
		{"finish again other status", "POST", "/api/v1/runs/done/finish", pipelineToken, map[string]any{"status": "success"}, 409, "", "already finished as failed"},
		{"finish unknown status", "POST", "/api/v1/runs/1001/finish", pipelineToken, map[string]any{"status": "done"}, 400, "status", "not one of"},
		{"finish bad end_time", "POST", "/api/v1/runs/1001/finish", pipelineToken, map[string]any{"status": "success", "end_time": "yesterday"}, 400, "end_time", "RFC 3339"},
		{"end_time before start", "POST", "/api/v1/runs/1001/finish", pipelineToken, map[string]any{"status": "success", "end_time": early}, 400, "end_time", "before"},
		{"no token", "POST", "/api/v1/runs", "", runBody("x"), 401, "", "Authorization"},
		{"bad token", "POST", "/api/v1/runs", "wrong-token-wrong-token", runBody("x"), 401, "", "invalid bearer token"},
		{"break-glass token cannot start runs", "POST", "/api/v1/runs", breakGlassTok, runBody("x"), 401, "", ""},
		{"approval unknown run", "POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "nope", "deployment_target": "production", "estimated_cost": 1}, 404, "", ""},
		{"approval bad target", "POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "1001", "deployment_target": "prod", "estimated_cost": 1}, 400, "deployment_target", ""},
		{"approval negative cost", "POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "1001", "deployment_target": "production", "estimated_cost": -1}, 400, "estimated_cost", ""},
		{"approval missing cost", "POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "1001", "deployment_target": "production"}, 400, "estimated_cost", ""},
		{"approval of failed run", "POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "done", "deployment_target": "production", "estimated_cost": 1}, 409, "", "failed"},
		{"list bad status", "GET", "/api/v1/runs?status=weird", pipelineToken, nil, 400, "status", ""},
		{"list bad limit", "GET", "/api/v1/runs?limit=0", pipelineToken, nil, 400, "limit", ""},
		{"list bad from", "GET", "/api/v1/runs?from=2026-13-01", pipelineToken, nil, 400, "from", ""},
		{"list bad cursor", "GET", "/api/v1/runs?cursor=zzz", pipelineToken, nil, 400, "cursor", ""},
		{"unknown endpoint", "GET", "/api/v1/nothing", pipelineToken, nil, 404, "", "no such endpoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.store.LedgerEntries()
			r := e.do(c.method, c.path, c.token, c.body)
			require.Equal(t, c.status, r.status, r.raw)
			require.NotNil(t, r.body["error"], "a JSON error document: %s", r.raw)
			require.Equal(t, c.field, r.errField(), r.raw)
			require.Contains(t, r.errMessage(), c.msg)
			require.Equal(t, before, e.store.LedgerEntries(), "nothing written")
		})
	}
}

func TestAPI_RateLimit(t *testing.T) {
	e := newEnv(t, 1) // 1/s, burst 2
	codes := []int{}
	for range 4 {
		codes = append(codes, e.do("GET", "/api/v1/runs", pipelineToken, nil).status)
	}
	require.Equal(t, []int{200, 200, 429, 429}, codes)
	r := e.do("GET", "/api/v1/runs", pipelineToken, nil)
	require.Equal(t, 429, r.status)
	require.NotEmpty(t, r.header.Get("Retry-After"))
}

func TestAPI_UnavailableLedgerIs503(t *testing.T) {
	e := newEnv(t, 0)
	e.startRun("1001")
	before := e.store.LedgerEntries()
	// A closed ledger stands for one that cannot be written.
	h := webhooks.NewHandler(webhooks.Deps{Ledger: closedLedger{e.store}, Pipelines: mustTokens(t),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/runs/1001/events", strings.NewReader(`{"event_type":"x","event_data":{}}`))
	req.Header.Set("Authorization", "Bearer "+pipelineToken)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 503, res.StatusCode)
	require.NotEmpty(t, res.Header.Get("Retry-After"))
	require.Equal(t, before, e.store.LedgerEntries())
}

type closedLedger struct{ *store.Store }

func (c closedLedger) AddEvent(ctx context.Context, runID string, in *ica.EventInput, actor string) (*ica.Event, bool, error) {
	return nil, false, ica.Unavailable("the ledger could not be written; nothing was recorded, retry later", fmt.Errorf("disk full"))
}

func mustTokens(t *testing.T) *webhooks.StaticTokens {
	pt, err := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken(pipelineToken)}, nil)
	require.NoError(t, err)
	return pt
}

func TestAPI_ApprovalFlow_BypassAndVoid(t *testing.T) {
	e := newEnv(t, 0)
	e.startRun("1001")
	r := e.do("POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "1001", "deployment_target": "production", "estimated_cost": 250.5})
	require.Equal(t, 201, r.status, r.raw)
	id := r.body["approval_id"].(string)
	require.Equal(t, "pending", r.body["status"])
	r = e.do("POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "1001", "deployment_target": "production", "estimated_cost": 250.5})
	require.Equal(t, 200, r.status, "a retried request returns the same approval")
	require.Equal(t, id, r.body["approval_id"])

	r = e.do("GET", "/api/v1/runs/1001/approvals/latest", pipelineToken, nil)
	require.Equal(t, 200, r.status)
	require.Equal(t, id, r.body["approval_id"])

	r = e.do("POST", "/api/v1/approvals/"+id+"/bypass", pipelineToken, map[string]any{"reason": "x"})
	require.Equal(t, 401, r.status, "a pipeline token cannot bypass")
	r = e.do("POST", "/api/v1/approvals/"+id+"/bypass", breakGlassTok, map[string]any{"reason": " "})
	require.Equal(t, 400, r.status)
	require.Equal(t, "reason", r.errField())

	// A poll for another commit is refused and changes nothing; voiding
	// is an explicit call by the run's credential.
	n := e.store.LedgerEntries()
	r = e.do("GET", "/api/v1/approvals/"+id+"?commit=fedcba9876543210fedcba9876543210fedcba98", pipelineToken, nil)
	require.Equal(t, 409, r.status, r.raw)
	require.Equal(t, false, r.body["covers"])
	require.Equal(t, n, e.store.LedgerEntries())
	r = e.do("GET", "/api/v1/approvals/"+id, pipelineToken, nil)
	require.Equal(t, "pending", r.body["status"])
	r = e.do("POST", "/api/v1/approvals/"+id+"/void", pipelineToken, map[string]any{"reason": "built the wrong commit"})
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "rejected", r.body["status"])
	require.Contains(t, r.body["rejection"].(map[string]any)["comment"], "voided")

	e.startRun("1002")
	r = e.do("POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "1002", "deployment_target": "staging", "estimated_cost": 1})
	require.Equal(t, 201, r.status)
	id2 := r.body["approval_id"].(string)
	r = e.do("POST", "/api/v1/approvals/"+id2+"/bypass", breakGlassTok, map[string]any{"reason": "prod down, hotfix"})
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "bypassed", r.body["status"])
	require.Equal(t, "oncall-lead", r.body["bypass"].(map[string]any)["username"])
	r = e.do("POST", "/api/v1/approvals/"+id2+"/bypass", breakGlassTok, map[string]any{"reason": "again"})
	require.Equal(t, 409, r.status)
	last, err := e.store.Entry(e.store.LedgerEntries())
	require.NoError(t, err)
	require.Equal(t, "approval.bypassed", last.Kind)
	require.Equal(t, "oncall-lead", last.Actor)
}

func TestAPI_HealthAndReady(t *testing.T) {
	e := newEnv(t, 0)
	require.Equal(t, 200, e.do("GET", "/healthz", "", nil).status)
	r := e.do("GET", "/readyz", "", nil)
	require.Equal(t, 200, r.status)
	require.Equal(t, "ready", r.body["status"])
}

func FuzzAPI_Bodies(f *testing.F) {
	f.Add([]byte(`{"pipeline_name":"p","run_id":"1","branch":"b","commit":"0123456","triggered_by":"a"}`), uint8(0))
	f.Add([]byte(`{"event_type":"x","event_data":{"a":[1,2,{"b":null}]}}`), uint8(1))
	f.Add([]byte(`{"status":"success","end_time":"2026-11-02T09:00:00Z"}`), uint8(2))
	f.Add([]byte(`{"run_id":"1","deployment_target":"production","estimated_cost":1e308}`), uint8(3))
	ee := newEnv(f, 0)
	ee.startRun("fz")
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		paths := []string{"/api/v1/runs", "/api/v1/runs/fz/events", "/api/v1/runs/fz/finish", "/api/v1/approvals"}
		req, _ := http.NewRequest("POST", ee.srv.URL+paths[int(which)%len(paths)], bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+pipelineToken)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		require.Less(t, res.StatusCode, 500, "outside input never causes a 5xx")
	})
}
