package webhooks_test

import (
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
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/internal/testclock"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
	"github.com/ica-governance/ica/webhooks"
)

const homeTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// people are the tokens the stub accepts: each a person of the home tenant.
var people = map[string]*webhooks.Person{
	"jwt.tech1.sig":  {TenantID: homeTenant, ObjectID: "11111111-1111-1111-1111-111111111111", UPN: "tech1@contoso.com", Name: "Tech One"},
	"jwt.tech2.sig":  {TenantID: homeTenant, ObjectID: "22222222-2222-2222-2222-222222222222", UPN: "tech2@contoso.com"},
	"jwt.tech3.sig":  {TenantID: homeTenant, ObjectID: "66666666-6666-6666-6666-666666666666", UPN: "tech3@contoso.com"},
	"jwt.biz1.sig":   {TenantID: homeTenant, ObjectID: "33333333-3333-3333-3333-333333333333", UPN: "biz1@contoso.com"},
	"jwt.alice.sig":  {TenantID: homeTenant, ObjectID: "44444444-4444-4444-4444-444444444444", UPN: "Alice+deploy@Contoso.com"},
	"jwt.cfo.sig":    {TenantID: homeTenant, ObjectID: "55555555-5555-5555-5555-555555555555", UPN: "cfo@contoso.com"},
	"jwt.other.sig":  {TenantID: "0b1c2d3e-0000-0000-0000-000000000000", ObjectID: "11111111-1111-1111-1111-111111111111", UPN: "tech1@fabrikam.com"},
	"jwt.nobody.sig": {TenantID: homeTenant, ObjectID: "99999999-9999-9999-9999-999999999999", UPN: "nobody@contoso.com"},
}

type peopleStub struct{}

func (peopleStub) ValidatePerson(ctx context.Context, raw string) (*webhooks.Person, error) {
	if p := people[raw]; p != nil {
		c := *p
		return &c, nil
	}
	return nil, ica.Errorf(ica.EUNAUTHORIZED, "the token is not valid")
}

// decisionEnv is the pipeline API plus the decisions API on one store.
type decisionEnv struct {
	*env
	api *httptest.Server
}

func newDecisionEnv(t *testing.T) *decisionEnv {
	t.Helper()
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key, FinanceThreshold: 5000})
	require.NoError(t, err)
	pt, err := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken(pipelineToken)}, nil)
	require.NoError(t, err)
	h := webhooks.NewHandler(webhooks.Deps{Ledger: st, Pipelines: pt, Users: webhooks.NewUserAuth(peopleStub{}), Clock: clock,
		Metrics: webhooks.NewMetrics(prometheus.NewRegistry()), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Approvers: func(ctx context.Context, target string) (webhooks.StepApprovers, error) {
			return webhooks.StepApprovers{
				Technical:  []string{"tech-on-mattermost", "entra:" + people["jwt.tech1.sig"].ObjectID, "entra:" + people["jwt.tech2.sig"].ObjectID, "entra:" + people["jwt.tech3.sig"].ObjectID, "entra:" + people["jwt.alice.sig"].ObjectID},
				Business:   []string{"entra:" + homeTenant + "/" + people["jwt.biz1.sig"].ObjectID, "entra:" + people["jwt.tech1.sig"].ObjectID},
				Finance:    []string{"entra:" + people["jwt.cfo.sig"].ObjectID},
				HomeTenant: homeTenant,
			}, nil
		}})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		rep, err := st.Check()
		require.NoError(t, err)
		require.Empty(t, rep.Problems)
		st.Close()
	})
	return &decisionEnv{env: &env{t: t, srv: srv, store: st, clock: clock}, api: srv}
}

func (d *decisionEnv) decide(token, id, body string) resp {
	d.t.Helper()
	req, _ := http.NewRequest("POST", d.api.URL+"/api/v1/approvals/"+id+"/decisions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(d.t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (d *decisionEnv) approval(run string, cost float64) string {
	d.t.Helper()
	r := d.do("POST", "/api/v1/runs", pipelineToken, fmt.Sprintf(`{"pipeline_name":"payments","run_id":%q,"branch":"refs/heads/main","commit":"0123456789abcdef0123456789abcdef01234567","triggered_by":"alice@contoso.com"}`, run))
	require.Equal(d.t, 201, r.status, r.raw)
	r = d.do("POST", "/api/v1/approvals", pipelineToken, fmt.Sprintf(`{"run_id":%q,"deployment_target":"production","estimated_cost":%v}`, run, cost))
	require.Equal(d.t, 201, r.status, r.raw)
	return r.body["approval_id"].(string)
}

// TestAPI_Decisions_TwoSteps: two people decide through the API, each with
// their own token, in order; the ledger records them via api with their
// Entra identity.
func TestAPI_Decisions_TwoSteps(t *testing.T) {
	d := newDecisionEnv(t)
	id := d.approval("d1", 10)
	r := d.decide("jwt.tech1.sig", id, `{"action":"approve","comment":"tests green"}`)
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "technical_approved", r.body["status"])
	tech := r.body["technical"].(map[string]any)
	require.Equal(t, "api", tech["via"])
	require.Equal(t, homeTenant+"/"+people["jwt.tech1.sig"].ObjectID, tech["entra"])
	require.Equal(t, "tech1@contoso.com", tech["email"])

	// The same person cannot give the business approval, though listed for it.
	r = d.decide("jwt.tech1.sig", id, `{"action":"approve"}`)
	require.Equal(t, 403, r.status, r.raw)
	require.Contains(t, r.errMessage(), "business approval must come from someone else")

	r = d.decide("jwt.biz1.sig", id, `{"action":"approve"}`)
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "approved", r.body["status"])

	r = d.decide("jwt.biz1.sig", id, `{"action":"reject","reason":"too late"}`)
	require.Equal(t, 409, r.status, "a final approval takes no decision: %s", r.raw)

	var vias []string
	require.NoError(t, d.store.ScanLedger(1, func(e *ica.LedgerEntry) error {
		if strings.HasPrefix(e.Kind, "approval.") && strings.Contains(string(e.Data), `"via":"api"`) {
			vias = append(vias, e.Kind+" "+e.Actor)
		}
		return nil
	}))
	require.Equal(t, []string{"approval.technical_approved entra:" + homeTenant + "/" + people["jwt.tech1.sig"].ObjectID,
		"approval.approved entra:" + homeTenant + "/" + people["jwt.biz1.sig"].ObjectID}, vias)
}

// TestAPI_Decisions_Refused: every refusal answers with the status and a
// message (the field where there is one), and writes nothing.
func TestAPI_Decisions_Refused(t *testing.T) {
	d := newDecisionEnv(t)
	id := d.approval("d2", 10)
	before := d.store.LedgerEntries()
	cases := []struct {
		name, token, id, body string
		status                int
		field, msg            string
	}{
		{"no action", "jwt.tech1.sig", id, `{}`, 400, "action", "action is required"},
		{"unknown action", "jwt.tech1.sig", id, `{"action":"maybe"}`, 400, "action", "not approve or reject"},
		{"reject without reason", "jwt.tech1.sig", id, `{"action":"reject"}`, 400, "reason", "needs a reason"},
		{"reason with approve", "jwt.tech1.sig", id, `{"action":"approve","reason":"x"}`, 400, "reason", "goes with reject"},
		{"unknown field", "jwt.tech1.sig", id, `{"action":"approve","as":"biz1"}`, 400, "as", ""},
		{"bad not_before", "jwt.tech1.sig", id, `{"action":"approve","not_before":"10pm"}`, 400, "not_before", "HH:MM"},
		{"deferred technical step", "jwt.tech1.sig", id, `{"action":"approve","not_before":"22:00"}`, 400, "not_before", "only the business approval"},
		{"bidi in comment", "jwt.tech1.sig", id, `{"action":"approve","comment":"ok \u202e"}`, 400, "comment", ""},
		{"not listed", "jwt.nobody.sig", id, `{"action":"approve"}`, 403, "", "is not one of the technical approvers"},
		{"same object id, other tenant", "jwt.other.sig", id, `{"action":"approve"}`, 403, "", "is not one of"},
		{"the requester, spelled otherwise", "jwt.alice.sig", id, `{"action":"approve"}`, 403, "", "requested this deployment"},
		{"a pipeline token", pipelineToken, id, `{"action":"approve"}`, 401, "", "not a static token"},
		{"a bad token", "a.b.c", id, `{"action":"approve"}`, 401, "", ""},
		{"unknown approval", "jwt.tech1.sig", "A-999", `{"action":"approve"}`, 404, "", "not found"},
		{"bad approval id", "jwt.tech1.sig", "A%20x", `{"action":"approve"}`, 400, "approval_id", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := d.decide(c.token, c.id, c.body)
			require.Equal(t, c.status, r.status, r.raw)
			if c.field != "" {
				require.Equal(t, c.field, r.errField(), r.raw)
			}
			if c.msg != "" {
				require.Contains(t, r.errMessage(), c.msg)
			}
		})
	}
	require.Equal(t, before, d.store.LedgerEntries(), "nothing was recorded")
	a, err := d.store.Approval(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalPending, a.Status)
}

// TestAPI_Decisions_Race: of many people deciding one step at once,
// exactly one decision applies (the others are told the step is taken, or,
// arriving later, that they may not decide the next one).
func TestAPI_Decisions_Race(t *testing.T) {
	d := newDecisionEnv(t)
	id := d.approval("d3", 10)
	var wg sync.WaitGroup
	statuses := make(chan int, 6)
	for _, tok := range []string{"jwt.tech2.sig", "jwt.tech3.sig", "jwt.tech2.sig", "jwt.tech3.sig", "jwt.tech2.sig", "jwt.tech3.sig"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- d.decide(tok, id, `{"action":"approve"}`).status
		}()
	}
	wg.Wait()
	close(statuses)
	ok := 0
	for s := range statuses {
		if s == 200 {
			ok++
		} else {
			require.Contains(t, []int{403, 409}, s)
		}
	}
	require.Equal(t, 1, ok, "exactly one technical approval")
	n := 0
	require.NoError(t, d.store.ScanLedger(1, func(e *ica.LedgerEntry) error {
		if e.Kind == "approval.technical_approved" {
			n++
		}
		return nil
	}))
	require.Equal(t, 1, n)
	a, err := d.store.Approval(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalTechnical, a.Status, "no technical approver could take the business step")
}

// TestAPI_Decisions_Finance: above the finance threshold only a finance
// approver gives the business approval; a reject by the technical step's
// approver rejects.
func TestAPI_Decisions_Finance(t *testing.T) {
	d := newDecisionEnv(t)
	id := d.approval("d4", 9000) // above the default finance threshold
	a, err := d.store.Approval(context.Background(), id)
	require.NoError(t, err)
	require.True(t, a.FinanceRequired)
	require.Equal(t, 200, d.decide("jwt.tech2.sig", id, `{"action":"approve"}`).status)
	r := d.decide("jwt.biz1.sig", id, `{"action":"approve"}`)
	require.Equal(t, 403, r.status, r.raw)
	require.Contains(t, r.errMessage(), "finance approvers")
	r = d.decide("jwt.cfo.sig", id, `{"action":"approve"}`)
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, true, r.body["business"].(map[string]any)["finance"])
}

// TestAPI_Decisions_Reject: a listed person rejects with a reason.
func TestAPI_Decisions_Reject(t *testing.T) {
	d := newDecisionEnv(t)
	id := d.approval("d5", 10)
	r := d.decide("jwt.tech2.sig", id, `{"action":"reject","reason":"tests are red"}`)
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "rejected", r.body["status"])
	require.Equal(t, "tests are red", r.body["rejection"].(map[string]any)["comment"])
}
