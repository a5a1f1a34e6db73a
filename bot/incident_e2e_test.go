package bot_test

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
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ica-governance/ica/store/storetest"

	"github.com/ica-governance/ica/internal/testclock"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/alerts"
	"github.com/ica-governance/ica/alerts/pdtest"
	"github.com/ica-governance/ica/bot"
	"github.com/ica-governance/ica/bot/mmtest"
	"github.com/ica-governance/ica/freeze"
	"github.com/ica-governance/ica/incidents"
	"github.com/ica-governance/ica/outbox"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

const (
	alertToken   = "alert-token-for-tests-000001"
	pdRoutingKey = "R0123456789ABCDEF0123456789ABCDE"
)

// incidentHarness runs the real HTTP handler (pipeline API and Azure Monitor
// intake), store, dispatcher, bot and PagerDuty deliverer against the fake
// Mattermost and the fake PagerDuty, wired as cmd/ica wires them.
type incidentHarness struct {
	t      *testing.T
	clock  *ica.FakeClock
	mm     *mmtest.Server
	pd     *pdtest.Server
	srv    *httptest.Server
	ledger *storetest.Target
	key    ed25519.PrivateKey
	cfg    bot.Config
	freeze *freeze.Policy
	mu     sync.Mutex
	hd     http.Handler

	store *store.Store
	disp  *outbox.Dispatcher
	bot   *bot.Bot
}

func newIncidentHarness(t *testing.T) *incidentHarness {
	t.Helper()
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	mm := mmtest.New(t, mmtest.WithClock(clock))
	mm.AddTeam("ica")
	mm.AddChannel("ica", "deployments")
	mm.AddChannel("ica", "incidents")
	for _, u := range []string{"tech1", "biz1", "alice", "oncall1", "oncall2", "ic1", "random"} {
		mm.AddUser(u)
	}
	mm.AddBot("ica-bot")
	mm.Join("deployments", "tech1", "biz1", "alice", "ic1", "ica-bot")
	mm.Join("incidents", "oncall1", "oncall2", "ic1", "random", "ica-bot")
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	h := &incidentHarness{t: t, clock: clock, mm: mm, pd: pdtest.NewServer(t), ledger: storetest.New(t), key: key,
		freeze: freeze.New(freeze.Config{Targets: map[string]freeze.Scope{ica.TargetProduction: {ResourceGroups: []string{"test-rg"}}}})}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		hd := h.hd
		h.mu.Unlock()
		hd.ServeHTTP(w, r)
	}))
	t.Cleanup(h.srv.Close)
	pol := bot.TargetPolicy{Channel: "deployments", Technical: bot.StepPolicy{Usernames: []string{"tech1"}},
		Business: bot.StepPolicy{Usernames: []string{"biz1"}}}
	h.cfg = bot.Config{PublicURL: h.srv.URL, Team: "ica", DefaultChannel: "deployments",
		Secret: []byte("0123456789abcdef0123456789abcdef"), Targets: map[string]bot.TargetPolicy{"production": pol, "staging": pol}}
	h.start()
	t.Cleanup(h.stop)
	return h
}

type testFreezeInfo struct {
	p  *freeze.Policy
	st *store.Store
}

func (f testFreezeInfo) ApprovalWarning(a *ica.Approval) string { return f.p.Warning(f.st, a) }
func (f testFreezeInfo) IncidentFreezes(inc *ica.Incident) []string {
	if !f.p.Severe(inc) {
		return nil
	}
	return f.p.Targets(inc)
}

func (h *incidentHarness) start() {
	t := h.t
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	routing := &alerts.RoutingConfig{IncidentChannel: "incidents"}
	var err error
	h.store, err = h.ledger.Open(store.Options{Clock: h.clock, Key: h.key, Logger: log,
		Notifier: bot.Notifier{}, OnEnqueue: func() { h.disp.Notify() },
		RouteAlert: func(a *ica.Alert) store.AlertRoute {
			r := routing.Route(a)
			return store.AlertRoute{Page: r.PagerDuty, Drop: r.Drop, Channel: r.Channel, Quiet: r.Quiet}
		},
		Incidents: incidents.Notifier{Mattermost: true, PagerDuty: true, Freeze: h.freeze, PublicURL: h.srv.URL},
		Gates:     []store.ApprovalGate{func(tx store.ReadTx, a *ica.Approval) error { return h.freeze.Check(tx.(store.IncidentReadTx), a) }},
	})
	require.NoError(t, err)
	h.disp = outbox.New(h.store, h.clock, log, outbox.Policy{BaseDelay: time.Second, MaxDelay: 10 * time.Second, MaxAttempts: 8}, nil)
	h.bot = bot.New(h.cfg, bot.NewClient(h.mm.URL, h.mm.Token("ica-bot"), nil), h.store, h.clock, log)
	h.bot.EnableIncidents(bot.IncidentConfig{Channel: "incidents", Commanders: []string{"ic1"},
		OnCall: bot.StepPolicy{Usernames: []string{"oncall1", "oncall2"}}}, h.store, testFreezeInfo{h.freeze, h.store})
	h.disp.Register(bot.Destination, h.bot)
	pd, err := alerts.NewPagerDutyDeliverer(alerts.PagerDutyConfig{URL: h.pd.URL, RoutingKey: pdRoutingKey, Clock: h.clock,
		EventsPerMinute: 1 << 20, Burst: 1 << 20, Timeout: 2 * time.Second})
	require.NoError(t, err)
	h.disp.Register(alerts.DestinationPagerDuty, pd)
	pt, _ := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken(pipelineToken)}, nil)
	hd := webhooks.NewHandler(webhooks.Deps{Ledger: h.store, Pipelines: pt, Clock: h.clock, Logger: log})
	hd.RegisterAlerts(webhooks.AlertDeps{Ledger: h.store, Parse: alerts.Parse, Auth: webhooks.NewAlertAuth(alertToken, nil),
		CardLink: h.bot.IncidentCardLink})
	hd.Router().Handle("/mattermost/actions", hd.Route(nil, h.bot.HandleAction)).Methods("POST")
	hd.Router().Handle("/mattermost/dialogs", hd.Route(nil, h.bot.HandleDialog)).Methods("POST")
	h.mu.Lock()
	h.hd = hd
	h.mu.Unlock()
	ctx := context.Background()
	h.bot.Start(ctx)
	require.Eventually(t, func() bool { return h.bot.Ready(ctx) == nil }, 5*time.Second, 5*time.Millisecond, "bot connects")
	h.disp.Start(ctx)
}

func (h *incidentHarness) stop() {
	if h.store == nil {
		return
	}
	h.bot.Stop()
	require.NoError(h.t, h.disp.Stop(context.Background()))
	rep, err := h.store.Check()
	require.NoError(h.t, err)
	require.Empty(h.t, rep.Problems)
	require.NoError(h.t, h.store.Close())
	h.store = nil
}

func (h *incidentHarness) settle() {
	h.t.Helper()
	require.Eventually(h.t, func() bool {
		// The committed outbox, not the in-memory depth: a reader can see
		// a commit before the depth counter has caught up with it.
		if dests, err := h.store.OutboxDestinations(context.Background()); err == nil && len(dests) == 0 {
			return true
		}
		h.clock.Advance(time.Second)
		return false
	}, 15*time.Second, 10*time.Millisecond, "outbox drains")
}

// alert returns a fixture with its alert id (and optionally severity and
// resource group) replaced.
func alertBody(t testing.TB, name, alertID string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "alerts", "testdata", "common", name))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	m["data"].(map[string]any)["essentials"].(map[string]any)["alertId"] = alertID
	out, _ := json.Marshal(m)
	return out
}

func (h *incidentHarness) sendAlert(body []byte) (int, map[string]any) {
	h.t.Helper()
	res, err := http.Post(h.srv.URL+"/api/v1/alerts/azure-monitor?token="+alertToken, "application/json", bytes.NewReader(body))
	require.NoError(h.t, err)
	defer res.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m
}

func (h *incidentHarness) api(method, path string, body any) (int, map[string]any) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+pipelineToken)
	res, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer res.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m
}

func (h *incidentHarness) incidentCard(id string) *model.Post {
	h.t.Helper()
	var found []*model.Post
	for _, p := range h.mm.Posts("incidents") {
		if fmt.Sprint(p.GetProp("ica_incident_id")) == id {
			found = append(found, p)
		}
	}
	require.Len(h.t, found, 1, "exactly one card for %s", id)
	return found[0]
}

func (h *incidentHarness) approvalCard(id string) *model.Post {
	h.t.Helper()
	for _, p := range h.mm.Posts("deployments") {
		if fmt.Sprint(p.GetProp("ica_approval_id")) == id {
			return p
		}
	}
	h.t.Fatalf("no card for approval %s", id)
	return nil
}

func pdActions(reqs []pdtest.Request, dedup string) []string {
	var out []string
	for _, r := range reqs {
		if r.Event.DedupKey == dedup {
			out = append(out, r.Event.Action)
		}
	}
	return out
}

func TestIncident_FiredPagesPostsCardAndResolves(t *testing.T) {
	h := newIncidentHarness(t)
	alertID := "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/inc-e2e-1"
	st, body := h.sendAlert(alertBody(t, "prometheus-fired.json", alertID))
	require.Equal(t, 202, st, body)
	id := body["incident_id"].(string)
	h.settle()

	ev := h.pd.WaitForEvents(1, 5*time.Second)
	require.Len(t, ev, 1)
	require.Equal(t, "trigger", ev[0].Event.Action)
	require.Equal(t, alertID, ev[0].Event.DedupKey, "dedup_key is the Azure alertId")
	require.Equal(t, "error", ev[0].Event.Payload.Severity)
	links := string(ev[0].Event.Links)
	require.Contains(t, links, "portal.azure.com")
	require.Contains(t, links, h.srv.URL+"/incidents/"+id+"/card", "PagerDuty links to the Mattermost card")

	card := h.incidentCard(id)
	require.Equal(t, []string{"incacknowledge", "incresolve", "incoverridefreeze"}, actions(card))
	text := cardText(card)
	for _, want := range []string{"Sev1", "#F26B1D", "open", "test-RG", "Fired", "PagerDuty"} {
		require.Contains(t, text, want)
	}
	require.Contains(t, card.Message, "@here")
	// The card link PagerDuty carries leads to the post.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noRedirect.Get(h.srv.URL + "/incidents/" + id + "/card")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 302, res.StatusCode)
	require.Contains(t, res.Header.Get("Location"), "/ica/pl/"+card.Id)

	// Azure resolves it: PagerDuty resolves, the card turns green without buttons.
	h.clock.Advance(time.Minute)
	st, body = h.sendAlert(alertBody(t, "prometheus-resolved.json", alertID))
	require.Equal(t, 202, st, body)
	require.Equal(t, "resolved", body["status"])
	h.settle()
	ev = h.pd.WaitForEvents(2, 5*time.Second)
	require.Equal(t, []string{"trigger", "resolve"}, pdActions(ev, alertID))
	card = h.incidentCard(id)
	require.Empty(t, actions(card))
	require.Contains(t, cardText(card), "#2E8B57")
	require.Contains(t, cardText(card), "Azure Monitor: the alert condition cleared")

	st, body = h.api("GET", "/api/v1/incidents/"+id, nil)
	require.Equal(t, 200, st)
	require.Equal(t, "resolved", body["status"])
	require.Equal(t, card.Id, body["card"].(map[string]any)["post_id"])
}

func TestIncident_AcknowledgeAndResolveFromCard(t *testing.T) {
	h := newIncidentHarness(t)
	alertID := "alert-ack-1"
	_, body := h.sendAlert(alertBody(t, "prometheus-fired.json", alertID))
	id := body["incident_id"].(string)
	h.settle()
	card := h.incidentCard(id)

	res, _ := h.mm.Click(card.Id, "incacknowledge", "random")
	require.Equal(t, 200, res.Status)
	require.Contains(t, lastEphemeralOf(h.mm, "random"), "on-call")
	res, _ = h.mm.Click(card.Id, "incacknowledge", "oncall1")
	require.Equal(t, 200, res.Status)
	require.Contains(t, lastEphemeralOf(h.mm, "oncall1"), "PagerDuty is told too")
	raw, _ := json.Marshal(res.Response)
	require.NotContains(t, string(raw), `"sig"`, "the card with buttons is redrawn through the API, not in the reply")
	h.settle()
	card = h.incidentCard(id)
	require.Equal(t, []string{"incresolve", "incoverridefreeze"}, actions(card))
	require.Contains(t, cardText(card), "@oncall1")

	res, _ = h.mm.Click(card.Id, "incresolve", "oncall2")
	require.Equal(t, 200, res.Status)
	h.settle()
	ev := h.pd.WaitForEvents(3, 5*time.Second)
	require.Equal(t, []string{"trigger", "acknowledge", "resolve"}, pdActions(ev, alertID), "in order per dedup_key")
	card = h.incidentCard(id)
	require.Empty(t, actions(card))

	e, err := h.store.Entry(h.store.LedgerEntries())
	require.NoError(t, err)
	require.Contains(t, []string{"incident.resolved", "incident.card_posted"}, e.Kind)
	// Azure's Resolved afterwards changes nothing and sends nothing.
	st, body := h.sendAlert(alertBody(t, "prometheus-resolved.json", alertID))
	require.Equal(t, 200, st)
	require.Equal(t, "duplicate", body["outcome"])
	h.settle()
	require.Len(t, h.pd.Events(), 3)
}

func lastEphemeralOf(mm *mmtest.Server, user string) string {
	e := mm.Ephemerals(user)
	if len(e) == 0 {
		return ""
	}
	return e[len(e)-1].Message
}

func TestIncident_PagerDutyAnswers(t *testing.T) {
	h := newIncidentHarness(t)
	// 5xx and 429 are retried (429 after Retry-After).
	h.pd.SetRetryAfter("3")
	h.pd.FailNext(1, 503)
	h.pd.FailNext(1, 429)
	h.pd.FailNext(1, 500)
	_, body := h.sendAlert(alertBody(t, "prometheus-fired.json", "alert-retry"))
	require.Equal(t, "opened", body["outcome"])
	h.settle()
	ev := h.pd.WaitForEvents(1, 5*time.Second)
	require.Len(t, ev, 1)
	require.Len(t, h.pd.Requests(), 4, "three failures, then the 202")
	dead, err := h.store.DeadLetters(context.Background(), 10)
	require.NoError(t, err)
	require.Empty(t, dead)

	// A 400 is not retried; it is recorded as undeliverable.
	h.pd.FailNext(1, 400)
	_, body = h.sendAlert(alertBody(t, "prometheus-fired.json", "alert-rejected"))
	require.Equal(t, "opened", body["outcome"])
	h.settle()
	dead, err = h.store.DeadLetters(context.Background(), 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Equal(t, "pagerduty.trigger", dead[0].Kind)
	found := false
	require.NoError(t, h.store.ScanLedger(1, func(e *ica.LedgerEntry) error {
		found = found || e.Kind == ica.KindOutboxUndeliverable
		return nil
	}))
	require.True(t, found, "the ledger says what could not be delivered")
}

func TestIncident_PagerDutyDownThenOrderedDelivery(t *testing.T) {
	h := newIncidentHarness(t)
	h.pd.SetDown(true)
	const n = 5
	for i := range n {
		id := fmt.Sprintf("alert-down-%d", i)
		st, _ := h.sendAlert(alertBody(t, "prometheus-fired.json", id))
		require.Equal(t, 202, st)
		st, _ = h.sendAlert(alertBody(t, "prometheus-resolved.json", id))
		require.Equal(t, 202, st)
	}
	// A few failed attempts while PagerDuty is down, then it is back.
	for range 5 {
		h.clock.Advance(2 * time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	require.Empty(t, h.pd.Events())
	h.pd.SetDown(false)
	h.settle()
	ev := h.pd.WaitForEvents(2*n, 5*time.Second)
	require.Len(t, ev, 2*n)
	for i := range n {
		require.Equal(t, []string{"trigger", "resolve"}, pdActions(ev, fmt.Sprintf("alert-down-%d", i)), "order per dedup_key")
	}
}

func TestIncident_RestartWithQueuedEvents(t *testing.T) {
	h := newIncidentHarness(t)
	h.pd.SetDown(true)
	_, body := h.sendAlert(alertBody(t, "prometheus-fired.json", "alert-restart"))
	id := body["incident_id"].(string)
	h.sendAlert(alertBody(t, "prometheus-resolved.json", "alert-restart"))
	h.clock.Advance(time.Second)
	time.Sleep(50 * time.Millisecond)
	h.stop()
	h.pd.SetDown(false)
	h.start()
	h.settle()
	ev := h.pd.WaitForEvents(2, 5*time.Second)
	require.Equal(t, []string{"trigger", "resolve"}, pdActions(ev, "alert-restart"))
	require.Empty(t, actions(h.incidentCard(id)))
}

func TestIncident_FreezeWarnsRefusesAndOverride(t *testing.T) {
	h := newIncidentHarness(t)
	for _, run := range []string{"3001", "3002"} {
		st, body := h.api("POST", "/api/v1/runs", map[string]any{"pipeline_name": "payments", "run_id": run,
			"branch": "refs/heads/main", "commit": "0123456789abcdef0123456789abcdef01234567", "triggered_by": "alice"})
		require.Equal(t, 201, st, body)
	}
	st, body := h.api("POST", "/api/v1/approvals", map[string]any{"run_id": "3001", "deployment_target": "production", "estimated_cost": 1})
	require.Equal(t, 201, st, body)
	pending := body["approval_id"].(string)
	h.settle()
	require.NotContains(t, cardText(h.approvalCard(pending)), "frozen")

	// Sev1 on test-RG (mapped to production): freeze.
	_, body = h.sendAlert(alertBody(t, "prometheus-fired.json", "alert-freeze"))
	inc := body["incident_id"].(string)
	h.settle()
	require.Contains(t, cardText(h.approvalCard(pending)), "production is frozen by Sev1 incident "+inc, "pending cards warn")
	st, body = h.api("POST", "/api/v1/approvals", map[string]any{"run_id": "3002", "deployment_target": "production", "estimated_cost": 1})
	require.Equal(t, 422, st)
	require.Contains(t, body["error"].(map[string]any)["message"], inc)

	card := h.incidentCard(inc)
	require.Equal(t, []string{"incacknowledge", "incresolve", "incoverridefreeze"}, actions(card))
	require.Contains(t, cardText(card), "Deployments to **production** are frozen")

	// Only incident commanders may override, with a reason.
	res, _ := h.mm.Click(card.Id, "incoverridefreeze", "oncall1")
	require.Equal(t, 200, res.Status)
	require.Contains(t, lastEphemeralOf(h.mm, "oncall1"), "incident commanders")
	require.Empty(t, h.mm.OpenDialogs("oncall1"))
	h.mm.Click(card.Id, "incoverridefreeze", "ic1")
	require.Len(t, h.mm.OpenDialogs("ic1"), 1)
	resp, err := h.mm.SubmitOpenDialog("ic1", map[string]any{"reason": ""})
	require.NoError(t, err)
	require.Contains(t, resp.Errors, "reason")
	h.mm.Click(card.Id, "incoverridefreeze", "ic1")
	resp, err = h.mm.SubmitOpenDialog("ic1", map[string]any{"reason": "shipping the fix for this very incident"})
	require.NoError(t, err)
	require.Empty(t, resp.Error)
	require.Empty(t, resp.Errors)
	e, err := h.store.Entry(h.store.LedgerEntries())
	require.NoError(t, err)
	require.Equal(t, store.KindIncidentFreezeOverride, e.Kind)
	require.Equal(t, "mattermost:ic1", e.Actor)
	h.settle()
	require.NotContains(t, cardText(h.approvalCard(pending)), "frozen", "the warning goes when the freeze is lifted")
	card = h.incidentCard(inc)
	require.NotContains(t, actions(card), "incoverridefreeze")
	require.Contains(t, cardText(card), "overridden by @ic1")
	st, body = h.api("POST", "/api/v1/approvals", map[string]any{"run_id": "3002", "deployment_target": "production", "estimated_cost": 1})
	require.Equal(t, 201, st, body)
}

func TestIncident_ForgedIncidentButton(t *testing.T) {
	h := newIncidentHarness(t)
	_, body := h.sendAlert(alertBody(t, "prometheus-fired.json", "alert-forged"))
	id := body["incident_id"].(string)
	h.settle()
	card := h.incidentCard(id)
	post := func(req model.PostActionIntegrationRequest) string {
		b, _ := json.Marshal(req)
		res, err := http.Post(h.srv.URL+"/mattermost/actions", "application/json", bytes.NewReader(b))
		require.NoError(t, err)
		defer res.Body.Close()
		require.Equal(t, 200, res.StatusCode, "Mattermost needs 200")
		var reply model.PostActionIntegrationResponse
		require.NoError(t, json.NewDecoder(res.Body).Decode(&reply))
		require.Nil(t, reply.Update)
		return reply.EphemeralText
	}
	// A forged context, with a valid trigger.
	text := post(model.PostActionIntegrationRequest{UserId: h.mm.UserID("oncall1"), UserName: "oncall1", PostId: card.Id,
		TriggerId: h.mm.TriggerID("oncall1"), Context: map[string]any{"incident_id": id, "action": "resolve", "sig": "00"}})
	require.Contains(t, text, "not made by this ICA")
	// The real context (read from Mattermost's database) without a trigger.
	stored := h.mm.Post(card.Id).GetAction("incresolve").Integration.Context
	text = post(model.PostActionIntegrationRequest{UserId: h.mm.UserID("oncall1"), UserName: "oncall1", PostId: card.Id, Context: stored})
	require.Contains(t, text, "could not confirm")
	// ... or with a trigger of another user than the one named.
	text = post(model.PostActionIntegrationRequest{UserId: h.mm.UserID("oncall1"), UserName: "oncall1", PostId: card.Id,
		TriggerId: h.mm.TriggerID("random"), Context: stored})
	require.Contains(t, text, "could not confirm")
	// ... or random's own trigger with the on-call user's name in the body.
	text = post(model.PostActionIntegrationRequest{UserId: h.mm.UserID("random"), UserName: "oncall1", PostId: card.Id,
		TriggerId: h.mm.TriggerID("random"), Context: stored})
	require.Contains(t, text, "@random is not in the on-call group")
	st, body := h.api("GET", "/api/v1/incidents/"+id, nil)
	require.Equal(t, 200, st)
	require.Equal(t, "open", body["status"])
}
