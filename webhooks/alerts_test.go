package webhooks_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ica-governance/ica/store/storetest"

	"github.com/ica-governance/ica/internal/testclock"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/alerts"
	"github.com/ica-governance/ica/freeze"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

const (
	alertToken     = "alert-secret-token-0000000001"
	commanderToken = "incident-commander-token-0001"
)

type alertEnv struct {
	*env
	ledger *flakyLedger
}

// flakyLedger wraps the store so a test can make the intake fail.
type flakyLedger struct {
	*store.Store
	fail  error
	panic bool
}

func (f *flakyLedger) RecordAlert(ctx context.Context, a *ica.Alert, raw []byte, actor string) (*ica.Incident, string, error) {
	if f.panic {
		panic("boom")
	}
	if f.fail != nil {
		return nil, "", f.fail
	}
	return f.Store.RecordAlert(ctx, a, raw, actor)
}

// storeBudgets records budget reports without a finance notice.
type storeBudgets struct{ *store.Store }

func (s storeBudgets) RecordAzureBudget(ctx context.Context, r *ica.AzureBudgetReport, raw []byte, actor string) (bool, error) {
	return s.Store.RecordAzureBudget(ctx, r, raw, actor)
}

// jwtStub accepts one "JWT".
type jwtStub struct{}

func (jwtStub) ValidateToken(ctx context.Context, raw string) (string, error) {
	if raw == "good.jwt.token" {
		return "461e8683-5575-4561-ac7f-899cc907d62a", nil
	}
	return "", ica.Errorf(ica.EUNAUTHORIZED, "invalid token: bad signature")
}

func newAlertEnv(t *testing.T) *alertEnv {
	t.Helper()
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	routing := &alerts.RoutingConfig{}
	pol := freeze.New(freeze.Config{Targets: map[string]freeze.Scope{ica.TargetProduction: {ResourceGroups: []string{"rg-prod"}}}})
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key,
		RouteAlert: func(a *ica.Alert) store.AlertRoute {
			r := routing.Route(a)
			return store.AlertRoute{Page: r.PagerDuty, Drop: r.Drop, Channel: r.Channel, Quiet: r.Quiet}
		},
		Gates: []store.ApprovalGate{func(tx store.ReadTx, a *ica.Approval) error { return pol.Check(tx.(store.IncidentReadTx), a) }}})
	require.NoError(t, err)
	pt, _ := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken(pipelineToken)}, nil)
	ic, _ := webhooks.NewStaticTokens(map[string]string{"ic-alice": webhooks.HashToken(commanderToken)}, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := webhooks.NewHandler(webhooks.Deps{Ledger: st, Pipelines: pt, Clock: clock, Logger: log, Limiter: webhooks.NewRateLimiter(0)})
	fl := &flakyLedger{Store: st}
	h.RegisterAlerts(webhooks.AlertDeps{Ledger: fl, Parse: alerts.Parse, Auth: webhooks.NewAlertAuth(alertToken, jwtStub{}),
		ParseBudget: alerts.ParseBudget, Budgets: storeBudgets{st},
		Commanders: webhooks.AnyOf{ic},
		CardLink: func(inc *ica.Incident) string {
			if inc.Card.PostID == "" {
				return ""
			}
			return "https://mm.example.com/ica/pl/" + inc.Card.PostID
		},
		FreezeTargets: func(inc *ica.Incident) []string {
			if pol.Severe(inc) {
				return pol.Targets(inc)
			}
			return nil
		}})
	srv := httptest.NewServer(h)
	e := &env{t: t, srv: srv, store: st, clock: clock}
	t.Cleanup(func() {
		srv.Close()
		rep, err := st.Check()
		require.NoError(t, err)
		require.Empty(t, rep.Problems)
		st.Close()
	})
	return &alertEnv{env: e, ledger: fl}
}

// post sends an alert body with the token in the URL, as Azure does.
func (e *alertEnv) post(path string, body []byte) resp {
	e.t.Helper()
	return e.postWith(path+"?token="+alertToken, body, nil)
}

func (e *alertEnv) postWith(path string, body []byte, header http.Header) resp {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+path, bytes.NewReader(body))
	require.NoError(e.t, err)
	for k, v := range header {
		req.Header[k] = v
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

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "alerts", "testdata", name))
	require.NoError(t, err)
	return b
}

func fixturePairs(t *testing.T) map[string][2]string {
	t.Helper()
	pairs := map[string][2]string{}
	files, err := filepath.Glob(filepath.Join("..", "alerts", "testdata", "*", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join("..", "alerts", "testdata"), f)
		rel = filepath.ToSlash(rel)
		base := strings.TrimSuffix(rel, ".json")
		for _, suffix := range []string{"-fired", "-activated"} {
			if strings.HasSuffix(base, suffix) {
				p := pairs[strings.TrimSuffix(base, suffix)]
				p[0] = rel
				pairs[strings.TrimSuffix(base, suffix)] = p
			}
		}
		if strings.HasSuffix(base, "-resolved") {
			p := pairs[strings.TrimSuffix(base, "-resolved")]
			p[1] = rel
			pairs[strings.TrimSuffix(base, "-resolved")] = p
		}
	}
	return pairs
}

func TestAlerts_EveryFixture_FiredThenResolved(t *testing.T) {
	pairs := fixturePairs(t)
	require.GreaterOrEqual(t, len(pairs), 18)
	for name, p := range pairs {
		t.Run(name, func(t *testing.T) {
			// Azure's sample payloads share alert ids across kinds: one ledger each.
			e := newAlertEnv(t)
			require.NotEmpty(t, p[0], "every fixture has a Fired twin")
			fired := fixture(t, p[0])
			a, err := alerts.Parse(fired)
			require.NoError(t, err)
			r := e.post("/api/v1/alerts/azure-monitor", fired)
			require.Equal(t, 202, r.status, r.raw)
			require.Equal(t, "opened", r.body["outcome"])
			id := r.body["incident_id"].(string)
			require.Equal(t, ica.IncidentIDFor(a.AlertID), id)

			// The ledger keeps the body as Azure sent it, and the route.
			entry, err := e.store.Entry(e.store.LedgerEntries())
			require.NoError(t, err)
			require.Equal(t, store.KindIncidentOpened, entry.Kind)
			var data struct {
				Payload json.RawMessage  `json:"payload"`
				Route   store.AlertRoute `json:"route"`
			}
			require.NoError(t, json.Unmarshal(entry.Data, &data))
			canon, err := ica.CanonicalJSON(fired)
			require.NoError(t, err)
			require.JSONEq(t, string(canon), string(data.Payload))
			require.Equal(t, (&alerts.RoutingConfig{}).Route(a).PagerDuty, data.Route.Page, "routed by severity")

			r = e.post("/api/v1/alerts/azure-monitor", fired)
			require.Equal(t, 200, r.status, r.raw)
			require.Equal(t, "duplicate", r.body["outcome"])

			if p[1] == "" {
				return // Azure sends no Resolved for this kind
			}
			resolved := fixture(t, p[1])
			r = e.post("/api/v1/azdev/alert", resolved)
			require.Equal(t, 202, r.status, r.raw)
			require.Equal(t, "resolved", r.body["outcome"])
			require.Equal(t, id, r.body["incident_id"])
			r = e.post("/api/v1/alerts/azure-monitor", resolved)
			require.Equal(t, 200, r.status)
			require.Equal(t, "duplicate", r.body["outcome"])
			r = e.do("GET", "/api/v1/incidents/"+id, pipelineToken, nil)
			require.Equal(t, 200, r.status)
			require.Equal(t, "resolved", r.body["status"])
		})
	}
}

func TestAlerts_Refusals(t *testing.T) {
	e := newAlertEnv(t)
	good := fixture(t, "common/metric-static-threshold-fired.json")
	var root map[string]any
	require.NoError(t, json.Unmarshal(good, &root))
	mutated := func(f func(m map[string]any)) []byte {
		var m map[string]any
		require.NoError(t, json.Unmarshal(good, &m))
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	big := append([]byte(`{"schemaId":"azureMonitorCommonAlertSchema","pad":"`), bytes.Repeat([]byte("x"), 300<<10)...)
	big = append(big, `"}`...)
	for name, c := range map[string]struct {
		body   []byte
		status int
		field  string
	}{
		"malformed JSON":        {[]byte(`{"schemaId": "azureMonitorCommonAlertSchema", "data": {`), 400, ""},
		"not an object":         {[]byte(`[1,2]`), 400, ""},
		"empty":                 {nil, 400, ""},
		"schemaId not a string": {mutated(func(m map[string]any) { m["schemaId"] = map[string]any{} }), 400, "schemaId"},
		"missing alertId": {mutated(func(m map[string]any) {
			delete(m["data"].(map[string]any)["essentials"].(map[string]any), "alertId")
		}), 400, "data.essentials.alertId"},
		"300 KB": {big, 413, ""},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.post("/api/v1/alerts/azure-monitor", c.body)
			require.Equal(t, c.status, r.status, r.raw)
			if c.field != "" {
				require.Equal(t, c.field, r.errField(), r.raw)
			}
		})
	}
	// Chunked (no Content-Length) is capped as well.
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/v1/alerts/azure-monitor?token="+alertToken, io.MultiReader(bytes.NewReader(big)))
	req.ContentLength = -1
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 413, res.StatusCode)
	list, err := e.store.Incidents(context.Background(), ica.IncidentFilter{})
	require.NoError(t, err)
	require.Empty(t, list, "nothing refused was recorded")
}

func TestAlerts_Auth(t *testing.T) {
	e := newAlertEnv(t)
	body := fixture(t, "common/log-v2-fired.json")
	for name, c := range map[string]struct {
		path   string
		header http.Header
		status int
	}{
		"missing token":      {"/api/v1/alerts/azure-monitor", nil, 401},
		"bad token in query": {"/api/v1/alerts/azure-monitor?token=nope", nil, 401},
		"bad header token":   {"/api/v1/alerts/azure-monitor", http.Header{"X-Ica-Token": {"nope"}}, 401},
		"bad bearer JWT":     {"/api/v1/alerts/azure-monitor", http.Header{"Authorization": {"Bearer bad.jwt.token"}}, 401},
		"pipeline token":     {"/api/v1/alerts/azure-monitor", http.Header{"Authorization": {"Bearer " + pipelineToken}}, 401},
		"header token":       {"/api/v1/alerts/azure-monitor", http.Header{"X-Ica-Token": {alertToken}}, 202},
		"alert header token": {"/api/v1/alerts/azure-monitor", http.Header{"X-Ica-Alert-Token": {alertToken}}, 202},
		"bad alert header":   {"/api/v1/alerts/azure-monitor", http.Header{"X-Ica-Alert-Token": {"nope"}}, 401},
		"bearer token":       {"/api/v1/azdev/alert", http.Header{"Authorization": {"Bearer " + alertToken}}, 202},
		"secure webhook JWT": {"/api/v1/alerts/azure-monitor", http.Header{"Authorization": {"Bearer good.jwt.token"}}, 202},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.postWith(c.path, body, c.header)
			if c.status == 202 && r.status == 200 {
				c.status = 200 // whichever success ran first opened the incident
			}
			require.Equal(t, c.status, r.status, r.raw)
			require.NotContains(t, r.raw, alertToken)
		})
	}
	list, err := e.store.Incidents(context.Background(), ica.IncidentFilter{})
	require.NoError(t, err)
	require.Len(t, list, 1)
}

func TestAlerts_TransientFailuresAre503(t *testing.T) {
	e := newAlertEnv(t)
	body := fixture(t, "common/log-v2-fired.json")
	e.ledger.fail = errors.New("disk on fire")
	r := e.post("/api/v1/alerts/azure-monitor", body)
	require.Equal(t, 503, r.status, "Azure retries 503, never 500")
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.NotContains(t, r.raw, "disk on fire")
	e.ledger.fail = nil
	e.ledger.panic = true
	r = e.post("/api/v1/alerts/azure-monitor", body)
	require.Equal(t, 503, r.status)
	e.ledger.panic = false
	r = e.post("/api/v1/alerts/azure-monitor", body)
	require.Equal(t, 202, r.status, "the retry is recorded")
}

func TestAlerts_IncidentAPIAndFreezeOverride(t *testing.T) {
	e := newAlertEnv(t)
	// A Sev0/Sev1 alert on rg-prod freezes production.
	body := fixture(t, "common/metric-static-threshold-fired.json")
	a, err := alerts.Parse(body)
	require.NoError(t, err)
	body = bytes.ReplaceAll(body, []byte(a.ResourceGroups[0]), []byte("rg-prod"))
	body = bytes.Replace(body, []byte(`"severity": "`+a.Severity+`"`), []byte(`"severity": "Sev1"`), 1)
	r := e.post("/api/v1/alerts/azure-monitor", body)
	require.Equal(t, 202, r.status, r.raw)
	id := r.body["incident_id"].(string)

	r = e.do("GET", "/api/v1/incidents?status=open", pipelineToken, nil)
	require.Equal(t, 200, r.status)
	require.Len(t, r.body["incidents"], 1)
	r = e.do("GET", "/api/v1/incidents?status=bogus", pipelineToken, nil)
	require.Equal(t, 400, r.status)
	r = e.do("GET", "/api/v1/incidents/"+id, pipelineToken, nil)
	require.Equal(t, 200, r.status)
	require.Equal(t, "Sev1", r.body["severity"])
	require.Equal(t, []any{"production"}, r.body["freeze_targets"])
	r = e.do("GET", "/api/v1/incidents/"+id, alertToken, nil)
	require.Equal(t, 401, r.status, "the alert token reads nothing")
	r = e.do("GET", "/incidents/"+id+"/card", "", nil)
	require.Equal(t, 404, r.status, "no card posted yet")

	e.startRun("2001")
	r = e.do("POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "2001", "deployment_target": "production", "estimated_cost": 1})
	require.Equal(t, 422, r.status, r.raw)
	require.Contains(t, r.errMessage(), id, "the refusal names the incident")

	r = e.do("POST", "/api/v1/incidents/"+id+"/freeze-override", pipelineToken, map[string]any{"reason": "x"})
	require.Equal(t, 401, r.status, "pipelines cannot override")
	r = e.do("POST", "/api/v1/incidents/"+id+"/freeze-override", commanderToken, map[string]any{"reason": " "})
	require.Equal(t, 400, r.status)
	r = e.do("POST", "/api/v1/incidents/"+id+"/freeze-override", commanderToken, map[string]any{"reason": "the fix for this incident"})
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "ic-alice", r.body["freeze_override"].(map[string]any)["username"])
	require.Nil(t, r.body["freeze_targets"])
	entry, _ := e.store.Entry(e.store.LedgerEntries())
	require.Equal(t, store.KindIncidentFreezeOverride, entry.Kind)
	require.Equal(t, "ic-alice", entry.Actor)

	r = e.do("POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "2001", "deployment_target": "production", "estimated_cost": 1})
	require.Equal(t, 201, r.status, r.raw)
}
