package webhooks_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/policy"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
	"github.com/ica-governance/ica/webhooks"
)

const (
	tokenA   = "team-a-secret-token-000001"
	tokenB   = "team-b-secret-token-000001"
	checkTok = "check-a-secret-token-00001"
)

// wed is a Wednesday, 11:00 in Berlin.
var wed = time.Date(2026, 1, 14, 10, 0, 0, 0, time.UTC)

// newPolicyEnv serves the API with scoped tokens and a recorded policy:
// production only from main, office hours in Berlin.
func newPolicyEnv(t *testing.T, prod policy.Rules) *env {
	t.Helper()
	clock := ica.NewFakeClock(wed)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key})
	require.NoError(t, err)
	pt, err := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken(pipelineToken),
		"team-a": webhooks.HashToken(tokenA), "team-b": webhooks.HashToken(tokenB), "check-a": webhooks.HashToken(checkTok)}, nil)
	require.NoError(t, err)
	pt.WithScopes(map[string]webhooks.Scope{
		"team-a":  {Pipelines: []string{"payments"}},
		"team-b":  {Pipelines: []string{"billing"}},
		"check-a": {Role: webhooks.RoleCheck, Pipelines: []string{"payments"}},
	})
	h := webhooks.NewHandler(webhooks.Deps{Ledger: st, Checks: st, Pipelines: pt, Clock: clock, Costs: storeCosts{st},
		Limiter: webhooks.NewRateLimiter(0), Metrics: webhooks.NewMetrics(prometheus.NewRegistry()),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h.RegisterProofs(st, pt, time.Minute)
	srv := httptest.NewServer(h)
	e := &env{t: t, srv: srv, store: st, clock: clock}
	t.Cleanup(func() {
		srv.Close()
		rep, err := st.Check()
		require.NoError(t, err)
		require.Empty(t, rep.Problems)
		st.Close()
	})
	if prod.TZ == "" {
		prod.TZ = "Europe/Berlin"
	}
	_, _, err = st.RecordPolicy(context.Background(), policy.Policy{Targets: map[string]policy.Target{"production": {Rules: prod}}}, "test", "tester")
	require.NoError(t, err)
	return e
}

// storeCosts is the store as the cost API's ledger, with a budget of 1,000.
type storeCosts struct{ *store.Store }

func (c storeCosts) Budget(ctx context.Context) (*ica.Budget, error) {
	return c.Store.Budget(ctx, 1000, 0.95)
}

func (e *env) start(token, id, pipeline, branch string) resp {
	e.t.Helper()
	return e.do("POST", "/api/v1/runs", token, map[string]any{"pipeline_name": pipeline, "run_id": id, "branch": branch,
		"commit": commitA, "triggered_by": "alice"})
}

func (e *env) requestApproval(token, run, target string) resp {
	return e.do("POST", "/api/v1/approvals", token, map[string]any{"run_id": run, "deployment_target": target, "estimated_cost": 10})
}

func (e *env) approveAll(id string) {
	e.t.Helper()
	ctx := context.Background()
	_, err := e.store.Transition(ctx, id, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: "u1", Username: "tech1"}, Via: "mattermost"}, "bot", nil)
	require.NoError(e.t, err)
	_, err = e.store.Transition(ctx, id, ica.Transition{Action: ica.ActApproveBusiness, By: ica.Decider{UserID: "u2", Username: "biz1"}, Via: "mattermost"}, "bot", nil)
	require.NoError(e.t, err)
}

// unchanged runs fn and checks that it wrote nothing to the ledger.
func (e *env) unchanged(fn func()) {
	e.t.Helper()
	n := e.store.LedgerEntries()
	fn()
	require.Equal(e.t, n, e.store.LedgerEntries(), "nothing may be written to the ledger")
}

func TestAPI_LeastPrivilege(t *testing.T) {
	e := newPolicyEnv(t, policy.Rules{})
	r := e.start(tokenA, "a1", "payments", "refs/heads/main")
	require.Equal(t, 201, r.status, r.raw)
	require.Equal(t, "token:team-a", r.body["credential"])
	e.unchanged(func() {
		r = e.start(tokenA, "a2", "billing", "refs/heads/main")
		require.Equal(t, 403, r.status)
		require.Equal(t, "pipeline_name", r.errField())
		r = e.start(checkTok, "c1", "payments", "refs/heads/main")
		require.Equal(t, 403, r.status, "a REST-check token cannot start runs")
		r = e.start(tokenB, "a1", "payments", "refs/heads/main")
		require.Equal(t, 403, r.status)
	})
	require.Equal(t, 201, e.start(tokenB, "b1", "billing", "refs/heads/main").status)
	require.Equal(t, 201, e.start(pipelineToken, "u1", "payments", "refs/heads/main").status)

	step := map[string]any{"event_type": "step", "event_data": map[string]any{}, "event_id": "s1"}
	require.Equal(t, 201, e.do("POST", "/api/v1/runs/a1/events", tokenA, step).status)

	// Another credential touches nothing of a1, nor reads its events by
	// repeating an event id.
	for _, tok := range []string{tokenB, pipelineToken} {
		e.unchanged(func() {
			r = e.do("POST", "/api/v1/runs/a1/events", tok, map[string]any{"event_type": "step", "event_data": map[string]any{}})
			require.Equal(t, 403, r.status, r.raw)
			r = e.do("POST", "/api/v1/runs/a1/events", tok, step)
			require.Equal(t, 403, r.status, r.raw)
			require.NotContains(t, r.raw, `"ledger_seq"`)
			r = e.do("POST", "/api/v1/runs/a1/finish", tok, map[string]any{"status": "cancelled"})
			require.Equal(t, 403, r.status, r.raw)
			r = e.requestApproval(tok, "a1", "production")
			require.Equal(t, 403, r.status, r.raw)
		})
	}
	e.unchanged(func() {
		r = e.do("POST", "/api/v1/runs/a1/finish", checkTok, map[string]any{"status": "cancelled"})
		require.Equal(t, 403, r.status, "a REST-check token cannot finish runs")
		r = e.do("POST", "/api/v1/runs/a1/events", checkTok, map[string]any{"event_type": "step", "event_data": map[string]any{}})
		require.Equal(t, 403, r.status)
		r = e.requestApproval(checkTok, "b1", "production")
		require.Equal(t, 403, r.status, "a REST-check token asks only for its own pipelines")
	})
	// A scoped token reads and lists only its pipelines.
	require.Equal(t, 403, e.do("GET", "/api/v1/runs/a1", tokenB, nil).status)
	require.Equal(t, 200, e.do("GET", "/api/v1/runs/a1", tokenA, nil).status)
	require.Equal(t, 200, e.do("GET", "/api/v1/runs/a1", pipelineToken, nil).status, "an unscoped token reads everything")
	r = e.do("GET", "/api/v1/runs", tokenA, nil)
	require.Equal(t, 200, r.status)
	for _, run := range r.body["runs"].([]any) {
		require.Equal(t, "payments", run.(map[string]any)["pipeline_name"])
	}
	require.Len(t, r.body["runs"], 2)
	require.Equal(t, 403, e.do("GET", "/api/v1/runs?pipeline=billing", tokenA, nil).status)

	// The check token asks for, reads and uses approvals of payments.
	r = e.requestApproval(checkTok, "a1", "production")
	require.Equal(t, 201, r.status, r.raw)
	id := r.body["approval_id"].(string)
	require.Equal(t, 200, e.do("GET", "/api/v1/approvals/"+id, checkTok, nil).status)
	require.Equal(t, 403, e.do("GET", "/api/v1/approvals/"+id, tokenB, nil).status)
	e.approveAll(id)
	e.unchanged(func() {
		r = e.do("POST", "/api/v1/approvals/"+id+"/use", tokenB, map[string]any{"run_id": "a1", "commit": commitA})
		require.Equal(t, 403, r.status)
		r = e.do("POST", "/api/v1/approvals/"+id+"/void", pipelineToken, map[string]any{"reason": "mine now"})
		require.Equal(t, 403, r.status)
		r = e.do("POST", "/api/v1/approvals/"+id+"/void", checkTok, map[string]any{"reason": "no"})
		require.Equal(t, 403, r.status, "only the run's own credential voids")
	})
	r = e.do("POST", "/api/v1/approvals/"+id+"/use", checkTok, map[string]any{"run_id": "a1", "commit": commitA})
	require.Equal(t, 200, r.status, r.raw)

	// Approval listings, like runs: a scoped token sees only its pipelines.
	require.Equal(t, 201, e.requestApproval(tokenB, "b1", "production").status)
	r = e.do("GET", "/api/v1/approvals", tokenA, nil)
	require.Equal(t, 200, r.status, r.raw)
	require.Len(t, r.body["approvals"], 1)
	require.Equal(t, "payments", r.body["approvals"].([]any)[0].(map[string]any)["pipeline_name"])
	r = e.do("GET", "/api/v1/approvals?pipeline=billing", tokenA, nil)
	require.Equal(t, 403, r.status, r.raw)
	r = e.do("GET", "/api/v1/approvals", pipelineToken, nil)
	require.Len(t, r.body["approvals"], 2, "an unscoped token lists every pipeline")
	r = e.do("GET", "/api/v1/approvals?pipeline=billing", pipelineToken, nil)
	require.Len(t, r.body["approvals"], 1)
	r = e.do("GET", "/api/v1/approvals?pipeline=bad%00name", pipelineToken, nil)
	require.Equal(t, 400, r.status)
	require.Equal(t, "pipeline", r.errField())

	// A proof shows a whole entry of any pipeline: only unscoped tokens.
	for _, tok := range []string{tokenA, checkTok} {
		r = e.do("GET", "/api/v1/ledger/proof?seq=2", tok, nil)
		require.Equal(t, 403, r.status, r.raw)
		require.Contains(t, r.errMessage(), "covers every pipeline")
	}
	r = e.do("GET", "/api/v1/ledger/proof?seq=2", pipelineToken, nil)
	require.Contains(t, []int{200, 503}, r.status, "an unscoped token may ask (503 until a checkpoint covers it): %s", r.raw)

	// Costs: a scoped token records only its own runs' costs.
	e.unchanged(func() {
		cost := func(tok, run string) resp {
			body := map[string]any{"resource_type": "aks", "cost_usd": 12.5, "billing_period": "2026-01-01"}
			if run != "" {
				body["run_id"] = run
			}
			return e.do("POST", "/api/v1/costs", tok, body)
		}
		r = cost(tokenA, "b1")
		require.Equal(t, 403, r.status, r.raw)
		r = cost(tokenA, "")
		require.Equal(t, 403, r.status, r.raw)
		require.Equal(t, "run_id", r.errField())
		r = cost(checkTok, "a1")
		require.Equal(t, 403, r.status, r.raw)
	})
	r = e.do("POST", "/api/v1/costs", tokenA, map[string]any{"run_id": "a1", "resource_type": "aks", "cost_usd": 12.5, "billing_period": "2026-01-01"})
	require.Equal(t, 201, r.status, r.raw)
}

func TestAPI_GetApproval_PureReadAndCoverage(t *testing.T) {
	e := newPolicyEnv(t, policy.Rules{})
	require.Equal(t, 201, e.start(tokenA, "a1", "payments", "refs/heads/main").status)
	r := e.requestApproval(tokenA, "a1", "production")
	id := r.body["approval_id"].(string)
	base := "/api/v1/approvals/" + id
	e.unchanged(func() {
		for q, field := range map[string]string{
			"?commit=xyz1234":                         "commit",
			"?commit=012345":                          "commit",
			"?commit=" + strings.Repeat("a", 65):      "commit",
			"?commit=":                                "commit",
			"?artifact_digest=sha1:abc":               "artifact_digest",
			"?run_id=" + strings.Repeat("x", 200):     "run_id",
			"?commit=" + commitA + "&run_id=bad%20id": "run_id",
		} {
			r := e.do("GET", base+q, tokenA, nil)
			require.Equal(t, 400, r.status, q)
			require.Equal(t, field, r.errField(), q)
			require.Contains(t, r.errMessage(), field)
		}
		for q, want := range map[string]string{
			"?commit=fedcba9876543210fedcba9876543210fedcba98": "is not the approved commit",
			"?commit=abcdef1": "is not the approved commit",
			"?run_id=a2":      "not run a2",
			"?artifact_digest=sha256:" + strings.Repeat("ab", 32):            "recorded no artifact digest",
			"?commit=" + commitA + "&artifact_digest=sha256:" + commitA[:32]: "recorded no artifact digest",
		} {
			r := e.do("GET", base+q, tokenA, nil)
			require.Equal(t, 409, r.status, q)
			require.Equal(t, false, r.body["covers"], q)
			require.Equal(t, false, r.body["can_deploy"], q)
			require.Contains(t, r.errMessage(), want, q)
		}
		r := e.do("GET", base+"?run_id=a1&commit="+commitA[:7], tokenA, nil)
		require.Equal(t, 200, r.status, r.raw)
		require.Equal(t, true, r.body["covers"])
		require.Equal(t, "pending", r.body["status"])
		require.Equal(t, []any{"approval"}, r.body["waiting_for"])
		require.Equal(t, false, r.body["can_deploy"])
		require.NotEmpty(t, r.body["opens_at"])
		require.NotEmpty(t, r.body["policy_hash"])
	})
}

func TestAPI_Use(t *testing.T) {
	e := newPolicyEnv(t, policy.Rules{Branches: []string{"refs/heads/main"},
		Windows: []policy.Window{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "09:00", To: "17:00"}}})
	require.Equal(t, 201, e.start(tokenA, "a1", "payments", "refs/heads/main").status)
	id := e.requestApproval(tokenA, "a1", "production").body["approval_id"].(string)
	use := "/api/v1/approvals/" + id + "/use"
	e.unchanged(func() {
		for body, field := range map[string]string{
			`{"commit":"` + commitA + `"}`:   "run_id",
			`{"run_id":"a1"}`:                "commit",
			`{"run_id":"a1","commit":"xyz"}`: "commit",
			`{"run_id":"a1","commit":"` + commitA + `","artifact_digest":"md5:1"}`: "artifact_digest",
			`{"run_id":"a1","commit":"` + commitA + `","force":true}`:              "force",
			`{"run_id":"a1","commit":12}`:                                          "commit",
		} {
			r := e.do("POST", use, tokenA, body)
			require.Equal(t, 400, r.status, body)
			require.Equal(t, field, r.errField(), body)
		}
		r := e.do("POST", use, tokenA, map[string]any{"run_id": "a1", "commit": commitA})
		require.Equal(t, 409, r.status)
		require.Equal(t, false, r.body["can_deploy"])
		require.Equal(t, []any{"approval"}, r.body["waiting_for"])
		r = e.do("POST", use, tokenA, map[string]any{"run_id": "a1", "commit": "fedcba9876543210fedcba9876543210fedcba98"})
		require.Equal(t, 409, r.status)
		require.Equal(t, false, r.body["covers"])
	})
	e.clock.Set(time.Date(2026, 1, 14, 13, 50, 0, 0, time.UTC))
	e.approveAll(id)
	e.clock.Set(time.Date(2026, 1, 14, 16, 30, 0, 0, time.UTC)) // 17:30 in Berlin
	e.unchanged(func() {
		r := e.do("POST", use, tokenA, map[string]any{"run_id": "a1", "commit": commitA})
		require.Equal(t, 409, r.status, r.raw)
		require.Equal(t, []any{"window"}, r.body["waiting_for"])
		require.Equal(t, "2026-01-15T08:00:00Z", r.body["opens_at"])
		require.Contains(t, r.errMessage(), "outside the change windows")
	})
	e.clock.Set(time.Date(2026, 1, 15, 8, 0, 0, 0, time.UTC))
	n := e.store.LedgerEntries()
	r := e.do("POST", use, tokenA, map[string]any{"run_id": "a1", "commit": commitA})
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, true, r.body["can_deploy"])
	require.NotNil(t, r.body["use"])
	require.Equal(t, n+1, e.store.LedgerEntries(), "the use is one ledger entry")
	r = e.do("POST", use, tokenA, map[string]any{"run_id": "a1", "commit": commitA[:10]})
	require.Equal(t, 200, r.status, "a repeat by the same run is harmless")
	require.Equal(t, n+1, e.store.LedgerEntries())
}

func TestAPI_VoidAndRequestRefusals(t *testing.T) {
	e := newPolicyEnv(t, policy.Rules{Branches: []string{"refs/heads/main"}, Requires: &policy.Requirement{Target: "staging"}})
	require.Equal(t, 201, e.start(tokenA, "a1", "payments", "refs/heads/feature/x").status)
	n := e.store.LedgerEntries()
	r := e.requestApproval(tokenA, "a1", "production")
	require.Equal(t, 422, r.status)
	require.Equal(t, "policy_refused", r.body["error"].(map[string]any)["code"])
	require.Equal(t, "branch", r.errField())
	require.Contains(t, r.errMessage(), "refs/heads/feature/x")
	require.Equal(t, n+1, e.store.LedgerEntries(), "the refusal is recorded")

	require.Equal(t, 201, e.start(tokenA, "a2", "payments", "refs/heads/main").status)
	r = e.requestApproval(tokenA, "a2", "production")
	require.Equal(t, 422, r.status)
	require.Equal(t, "commit", r.errField())
	require.Contains(t, r.errMessage(), "requires a deployment to staging first")

	r = e.requestApproval(tokenA, "a2", "staging")
	require.Equal(t, 201, r.status)
	sid := r.body["approval_id"].(string)
	e.unchanged(func() {
		r = e.do("POST", "/api/v1/approvals/"+sid+"/void", tokenA, map[string]any{"reason": "  "})
		require.Equal(t, 400, r.status)
		require.Equal(t, "reason", r.errField())
		r = e.do("POST", "/api/v1/runs/a2/events", tokenA, map[string]any{"event_type": "deployment", "event_data": map[string]any{"target": "qa", "result": "succeeded"}})
		require.Equal(t, 400, r.status)
		require.Equal(t, "event_data.target", r.errField())
	})
	r = e.do("POST", "/api/v1/approvals/"+sid+"/void", tokenA, map[string]any{"reason": "wrong build"})
	require.Equal(t, 200, r.status, r.raw)
	r = e.do("GET", "/api/v1/approvals/"+sid, tokenA, nil)
	require.Equal(t, false, r.body["usable"])

	r = e.do("GET", "/api/v1/runs/a2/policy?target=production", tokenA, nil)
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "not requested", r.body["status"])
	var rules []string
	for _, c := range r.body["checks"].([]any) {
		rules = append(rules, c.(map[string]any)["rule"].(string))
	}
	require.Equal(t, []string{"run", "approval", "branch", "promotion"}, rules)

	require.Equal(t, 200, e.do("POST", "/api/v1/runs/a2/finish", tokenA, map[string]any{"status": "success"}).status)
	e.unchanged(func() {
		r = e.requestApproval(tokenA, "a2", "staging")
		require.Equal(t, 409, r.status)
		require.Contains(t, r.errMessage(), "finished")
	})
}
