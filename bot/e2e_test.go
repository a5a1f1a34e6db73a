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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ica-governance/ica/store/storetest"

	"github.com/ica-governance/ica/internal/testclock"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/bot"
	"github.com/ica-governance/ica/bot/mmtest"
	"github.com/ica-governance/ica/outbox"
	"github.com/ica-governance/ica/scheduler"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

const pipelineToken = "pipeline-token-for-tests-01"

// harness runs ICA's real HTTP handler, store, dispatcher, scheduler and bot
// against the fake Mattermost, all on one fake clock.
type harness struct {
	t       *testing.T
	clock   *ica.FakeClock
	mm      *mmtest.Server
	srv     *httptest.Server
	ledger  *storetest.Target
	key     ed25519.PrivateKey
	secret  []byte
	cfg     bot.Config
	mu      sync.Mutex
	handler http.Handler
	logs    *syncBuffer

	store *store.Store
	disp  *outbox.Dispatcher
	sched *scheduler.Scheduler
	bot   *bot.Bot
}

func newHarness(t *testing.T, tweak func(c *bot.Config)) *harness {
	t.Helper()
	clock, mm := newMattermost(t)
	return newHarnessOn(t, clock, mm, tweak)
}

// newMattermost starts the fake Mattermost of the tests: team ica, channel
// deployments with tech1, tech2, biz1, alice, random and the bot, and
// outsider in the team only.
func newMattermost(t *testing.T, opts ...mmtest.Option) (*ica.FakeClock, *mmtest.Server) {
	t.Helper()
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	mm := mmtest.New(t, append([]mmtest.Option{mmtest.WithClock(clock)}, opts...)...)
	mm.AddTeam("ica")
	mm.AddChannel("ica", "deployments")
	for _, u := range []string{"tech1", "tech2", "biz1", "alice", "random"} {
		mm.AddUser(u)
	}
	mm.AddUser("outsider")
	mm.JoinTeam("ica", "outsider")
	mm.AddBot("ica-bot")
	mm.Join("deployments", "tech1", "tech2", "biz1", "alice", "random", "ica-bot")
	return clock, mm
}

// newHarnessOn starts an ICA (its own ledger) against the given fake
// Mattermost; several may share one.
func newHarnessOn(t *testing.T, clock *ica.FakeClock, mm *mmtest.Server, tweak func(c *bot.Config)) *harness {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	h := &harness{t: t, clock: clock, mm: mm, ledger: storetest.New(t), key: key, secret: []byte("0123456789abcdef0123456789abcdef"), logs: &syncBuffer{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		hd := h.handler
		h.mu.Unlock()
		hd.ServeHTTP(w, r)
	}))
	t.Cleanup(h.srv.Close)
	pol := bot.TargetPolicy{Channel: "deployments",
		Technical: bot.StepPolicy{Usernames: []string{"tech1", "tech2"}},
		Business:  bot.StepPolicy{Usernames: []string{"biz1"}}}
	h.cfg = bot.Config{PublicURL: h.srv.URL, Team: "ica", DefaultChannel: "deployments", Secret: h.secret,
		FinanceApprovers: []string{"biz1"},
		Targets:          map[string]bot.TargetPolicy{"production": pol, "staging": pol}}
	if tweak != nil {
		tweak(&h.cfg)
	}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	t := h.t
	log := slog.New(slog.NewTextHandler(h.logs, nil))
	var err error
	h.store, err = h.ledger.Open(store.Options{Clock: h.clock, Key: h.key, Logger: log,
		Notifier: bot.Notifier{}, FinanceThreshold: 5000,
		OnEnqueue: func() { h.disp.Notify(); h.sched.Notify() }})
	require.NoError(t, err)
	h.disp = outbox.New(h.store, h.clock, log, outbox.Policy{BaseDelay: time.Second, MaxDelay: 10 * time.Second}, nil)
	h.bot = bot.New(h.cfg, bot.NewClient(h.mm.URL, h.mm.Token("ica-bot"), nil), h.store, h.clock, log)
	h.disp.Register(bot.Destination, h.bot)
	h.sched = scheduler.New(h.store, h.clock, log, scheduler.Options{
		ReminderBefore: func(string) time.Duration { return time.Hour },
		Reminder:       bot.Notifier{}.ReminderMessages})
	pt, _ := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken(pipelineToken)}, nil)
	hd := webhooks.NewHandler(webhooks.Deps{Ledger: h.store, Pipelines: pt, Clock: h.clock, Logger: log})
	hd.Router().Handle("/mattermost/actions", hd.Route(nil, h.bot.HandleAction)).Methods("POST")
	hd.Router().Handle("/mattermost/dialogs", hd.Route(nil, h.bot.HandleDialog)).Methods("POST")
	h.mu.Lock()
	h.handler = hd
	h.mu.Unlock()
	ctx := context.Background()
	h.bot.Start(ctx)
	require.Eventually(t, func() bool { return h.bot.Ready(ctx) == nil }, 5*time.Second, 5*time.Millisecond, "bot connects")
	h.disp.Start(ctx)
	h.sched.Start(ctx)
}

func (h *harness) stop() {
	if h.store == nil {
		return
	}
	h.sched.Stop()
	h.bot.Stop()
	require.NoError(h.t, h.disp.Stop(context.Background()))
	rep, err := h.store.Check()
	require.NoError(h.t, err)
	require.Empty(h.t, rep.Problems)
	require.NoError(h.t, h.store.Close())
	h.store = nil
}

// syncBuffer collects logs written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (h *harness) api(method, path string, body any) (int, map[string]any) {
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

// request starts a run triggered by alice and asks for a production approval.
func (h *harness) request(runID string, cost float64) string {
	h.t.Helper()
	st, body := h.api("POST", "/api/v1/runs", map[string]any{"pipeline_name": "payments", "run_id": runID,
		"branch": "refs/heads/main", "commit": "0123456789abcdef0123456789abcdef01234567", "triggered_by": "alice@example.com",
		"url": "https://dev.azure.com/org/proj/_build/results?buildId=" + runID})
	require.Equal(h.t, 201, st, body)
	st, body = h.api("POST", "/api/v1/approvals", map[string]any{"run_id": runID, "deployment_target": "production", "estimated_cost": cost})
	require.Equal(h.t, 201, st, body)
	return body["approval_id"].(string)
}

func (h *harness) status(id string) map[string]any {
	h.t.Helper()
	st, body := h.api("GET", "/api/v1/approvals/"+id, nil)
	require.Equal(h.t, 200, st)
	return body
}

// settle advances the clock a little at a time until the outbox is empty.
func (h *harness) settle() {
	h.t.Helper()
	require.Eventually(h.t, func() bool {
		// The committed outbox, not the in-memory depth: a reader can see
		// a commit before the depth counter has caught up with it.
		if dests, err := h.store.OutboxDestinations(context.Background()); err == nil && len(dests) == 0 {
			return true
		}
		h.clock.Advance(time.Second)
		return false
	}, 10*time.Second, 10*time.Millisecond, "outbox drains")
}

// card returns the card post of an approval in the fake Mattermost.
func (h *harness) card(id string) *model.Post {
	h.t.Helper()
	ledger := h.store.LedgerID()
	var found []*model.Post
	for _, p := range h.mm.Posts("deployments") {
		if fmt.Sprint(p.GetProp("ica_approval_id")) == id && fmt.Sprint(p.GetProp("ica_ledger_id")) == ledger {
			found = append(found, p)
		}
	}
	require.Len(h.t, found, 1, "exactly one card for %s", id)
	return found[0]
}

func actions(p *model.Post) []string {
	var ids []string
	for _, a := range p.Attachments() {
		for _, act := range a.Actions {
			ids = append(ids, act.Id)
		}
	}
	return ids
}

func cardText(p *model.Post) string {
	var b strings.Builder
	b.WriteString(p.Message)
	for _, a := range p.Attachments() {
		b.WriteString(" " + a.Text + " " + a.Color)
		for _, f := range a.Fields {
			fmt.Fprintf(&b, " %s: %v", f.Title, f.Value)
		}
	}
	return b.String()
}

func (h *harness) lastEphemeral(user string) string {
	e := h.mm.Ephemerals(user)
	if len(e) == 0 {
		return ""
	}
	return e[len(e)-1].Message
}

func (h *harness) click(id, action, user string) *mmtest.ClickResult {
	h.t.Helper()
	res, _ := h.mm.Click(h.card(id).Id, action, user)
	require.NotNil(h.t, res)
	return res
}

func TestBot_TwoClickApproval(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("1001", 1234.5)
	h.settle()
	card := h.card(id)
	require.Equal(t, []string{"approvetechnical", "reject"}, actions(card))
	text := cardText(card)
	for _, want := range []string{"payments", "1001", "main", "01234567", "alice@example.com", "production", "$1,234.50", "no budget data", "#F2A900"} {
		require.Contains(t, text, want)
	}
	require.Regexp(t, `expires in (4h|3h 59m)`, text)
	require.Len(t, h.mm.DMs("tech1"), 1, "the technical approvers get a DM")
	require.Len(t, h.mm.DMs("tech2"), 1)
	require.Empty(t, h.mm.DMs("alice"), "the requester is not asked")
	require.Contains(t, h.mm.DMs("tech1")[0].Message, "/ica/pl/"+card.Id)

	h.clock.Advance(time.Minute)
	res := h.click(id, "approvetechnical", "tech1")
	require.Equal(t, 200, res.Status)
	require.Contains(t, h.lastEphemeral("tech1"), "technical approval")
	require.Equal(t, "technical_approved", h.status(id)["status"], "the pipeline sees technical_approved at once")
	requireNoSignedContext(t, res)
	h.settle() // the card is redrawn through the API, not in the click's reply
	card = h.card(id)
	require.Equal(t, []string{"approvebusiness", "approvebusinessdeferred", "reject"}, actions(card), "the card offers the business step")
	require.Contains(t, cardText(card), "@tech1")
	require.Regexp(t, `expires in 3h 5[89]m`, cardText(card), "the expiry is refreshed when the card changes")
	h.settle()
	require.Len(t, h.mm.DMs("biz1"), 1, "the business approver is asked next")

	res = h.click(id, "approvebusiness", "biz1")
	require.Equal(t, 200, res.Status)
	st := h.status(id)
	require.Equal(t, "approved", st["status"])
	require.Equal(t, "tech1", st["technical"].(map[string]any)["username"])
	require.Equal(t, "biz1", st["business"].(map[string]any)["username"])
	require.Equal(t, h.mm.UserID("biz1"), st["business"].(map[string]any)["user_id"])
	card = h.card(id)
	require.Empty(t, actions(card), "a final card has no buttons")
	require.Contains(t, cardText(card), "#2E8B57")
	h.settle()

	e, err := h.store.Entry(h.store.LedgerEntries())
	require.NoError(t, err)
	require.Equal(t, "approval.approved", e.Kind)
	require.Equal(t, "mattermost:biz1", e.Actor)
	require.Contains(t, string(e.Data), h.mm.UserID("biz1"))

	// Further clicks change nothing.
	res = h.click(id, "approvebusiness", "biz1")
	require.Equal(t, 404, res.Status, "the buttons are gone from the final card")
	require.Equal(t, "approved", h.status(id)["status"])
}

func TestBot_RejectWithReason(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("1002", 10)
	h.settle()
	res := h.click(id, "reject", "tech2")
	require.Equal(t, 200, res.Status)
	dlg := h.mm.OpenDialogs("tech2")
	require.Len(t, dlg, 1, "reject opens a dialog at once")
	resp, err := h.mm.SubmitOpenDialog("tech2", map[string]any{"reason": ""})
	require.NoError(t, err)
	require.Contains(t, resp.Errors, "reason", "the reason is required")
	require.Equal(t, "pending", h.status(id)["status"])

	h.click(id, "reject", "tech2")
	resp, err = h.mm.SubmitOpenDialog("tech2", map[string]any{"reason": "tests are red on main"})
	require.NoError(t, err)
	require.Empty(t, resp.Errors)
	require.Empty(t, resp.Error)
	st := h.status(id)
	require.Equal(t, "rejected", st["status"])
	require.Equal(t, "tests are red on main", st["rejection"].(map[string]any)["comment"])
	h.settle()
	card := h.card(id)
	require.Empty(t, actions(card))
	require.Contains(t, cardText(card), "tests are red on main")
	require.Contains(t, cardText(card), "#C8102E")
}

func TestBot_ExpiryAndReminder(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("1003", 10)
	h.settle()
	require.Len(t, h.mm.DMs("tech1"), 1)
	h.clock.Advance(3*time.Hour + time.Minute)
	h.sched.Notify()
	require.Eventually(t, func() bool { return len(h.mm.DMs("tech1")) == 2 }, 5*time.Second, 10*time.Millisecond, "one reminder")
	require.Contains(t, h.mm.DMs("tech1")[1].Message, "Reminder")
	h.settle()
	h.clock.Advance(time.Hour)
	h.sched.Notify()
	require.Eventually(t, func() bool { return h.status(id)["status"] == "expired" }, 5*time.Second, 10*time.Millisecond)
	h.settle()
	card := h.card(id)
	require.Empty(t, actions(card))
	require.Contains(t, cardText(card), "Expired")
	require.Len(t, h.mm.DMs("tech1"), 2, "exactly one reminder")
	// A click on the stale card after expiry is refused.
	h.click(id, "approvetechnical", "tech1")
	require.Equal(t, "expired", h.status(id)["status"])
}

func TestBot_ExpiredAtStartup(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("1004", 10)
	h.settle()
	h.stop()
	h.clock.Advance(5 * time.Hour)
	h.start()
	require.Eventually(t, func() bool { return h.status(id)["status"] == "expired" }, 5*time.Second, 10*time.Millisecond, "overdue approvals expire at start-up")
}

func TestBot_RefusedClicks(t *testing.T) {
	h := newHarness(t, func(c *bot.Config) {
		p := c.Targets["production"]
		p.Technical.Usernames = append(p.Technical.Usernames, "alice")
		p.Business.Usernames = append(p.Business.Usernames, "tech1")
		c.Targets["production"] = p
	})
	id := h.request("1005", 10)
	h.settle()
	before := h.store.LedgerEntries()

	res := h.click(id, "approvetechnical", "random")
	require.Equal(t, 200, res.Status)
	require.Contains(t, h.lastEphemeral("random"), "not one of the technical approvers")

	h.click(id, "approvetechnical", "alice")
	require.Contains(t, h.lastEphemeral("alice"), "requested this deployment")

	res = h.click(id, "approvetechnical", "outsider")
	require.Equal(t, 403, res.Status, "Mattermost stops non-members")

	h.click(id, "approvetechnical", "ica-bot")
	require.Contains(t, h.lastEphemeral("ica-bot"), "bot cannot")

	res = h.click(id, "approvebusiness", "biz1")
	require.Equal(t, 404, res.Status, "a pending card has no business button")
	require.Equal(t, "pending", h.status(id)["status"])
	require.Equal(t, before, h.store.LedgerEntries(), "refused clicks change nothing")

	h.click(id, "approvetechnical", "tech1")
	require.Equal(t, "technical_approved", h.status(id)["status"])
	h.settle() // the card is redrawn with the business step
	h.click(id, "approvebusiness", "tech1")
	require.Contains(t, h.lastEphemeral("tech1"), "someone else")
	require.Equal(t, "technical_approved", h.status(id)["status"])
}

func TestBot_ForgedContextAndOtherPost(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("1006", 10)
	h.settle()
	card := h.card(id)
	before := h.store.LedgerEntries()

	// A request that did not come from ICA's button, even with a valid
	// trigger: refused with HTTP 200 and an ephemeral message.
	forged := model.PostActionIntegrationRequest{UserId: h.mm.UserID("tech1"), UserName: "tech1", PostId: card.Id,
		TriggerId: h.mm.TriggerID("tech1"),
		Context:   map[string]any{"approval_id": id, "action": "approve_technical", "sig": strings.Repeat("0", 64)}}
	status, reply := h.postAction(forged)
	require.Equal(t, 200, status)
	require.Contains(t, reply.EphemeralText, "not made by this ICA")
	require.Nil(t, reply.Update)

	// The same (real) context on another post.
	stored := h.mm.Post(card.Id)
	copyPost := &model.Post{ChannelId: stored.ChannelId, Message: "copy"}
	copyPost.SetProps(stored.GetProps())
	api := model.NewAPIv4Client(h.mm.URL)
	api.SetToken(h.mm.Token("ica-bot"))
	other, _, err := api.CreatePost(context.Background(), copyPost)
	require.NoError(t, err)
	cr, _ := h.mm.Click(other.Id, "approvetechnical", "tech1")
	require.Equal(t, 200, cr.Status)
	require.Contains(t, h.lastEphemeral("tech1"), "not on the card")
	require.Equal(t, "pending", h.status(id)["status"])
	require.Equal(t, before, h.store.LedgerEntries())
}

func TestBot_ForgedDialogState(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("1007", 10)
	h.settle()
	url := h.srv.URL + "/mattermost/dialogs"
	resp, err := h.mm.SubmitDialog("biz1", url, id, "forged-state", map[string]any{"reason": "x"}, false)
	require.NoError(t, err)
	require.Contains(t, resp.Error, "not opened by ICA")

	// A real state opened for tech1, replayed by biz1.
	h.click(id, "reject", "tech1")
	dlg := h.mm.OpenDialogs("tech1")
	require.Len(t, dlg, 1)
	resp, err = h.mm.SubmitDialog("biz1", url, id, dlg[0].Dialog.State, map[string]any{"reason": "mine now"}, false)
	require.NoError(t, err)
	require.Contains(t, resp.Error, "someone else")
	require.Equal(t, "pending", h.status(id)["status"])

	// Used once only.
	resp, err = h.mm.SubmitOpenDialog("tech1", map[string]any{"reason": "bad migration"})
	require.NoError(t, err)
	require.Empty(t, resp.Error)
	resp, err = h.mm.SubmitDialog("tech1", url, id, dlg[0].Dialog.State, map[string]any{"reason": "again"}, false)
	require.NoError(t, err)
	require.NotEmpty(t, resp.Error)
	require.Equal(t, "rejected", h.status(id)["status"])
}

func TestBot_MattermostDownThenBack(t *testing.T) {
	h := newHarness(t, nil)
	h.mm.SetDown(true)
	id := h.request("1008", 10)
	for range 20 {
		h.clock.Advance(2 * time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	require.NotZero(t, h.store.OutboxDepth(), "the card waits in the outbox")
	h.mm.SetDown(false)
	h.settle()
	h.card(id) // exactly one
	require.Len(t, h.mm.DMs("tech1"), 1)
}

func TestBot_RateLimitedAndServerErrors(t *testing.T) {
	h := newHarness(t, nil)
	h.mm.FailNext(1, 429, 30*time.Second, "/api/v4/posts")
	id := h.request("1009", 10)
	time.Sleep(50 * time.Millisecond)
	h.clock.Advance(10 * time.Second)
	time.Sleep(50 * time.Millisecond)
	require.Empty(t, h.mm.Posts("deployments"), "Retry-After is honoured")
	h.mm.FailNext(2, 502, 0, "/api/v4/posts")
	h.settle()
	h.card(id)
}

// TestBot_DMRefusedForAWhile: a real Mattermost 6.x refuses (403) the
// bot's post in a direct channel it has just opened when another request of
// the bot read its channel memberships meanwhile (a stale cache that lives
// up to 15 minutes; two ICAs sharing a bot hit it): the DM is retried, not
// dead-lettered, and arrives once.
func TestBot_DMRefusedForAWhile(t *testing.T) {
	h := newHarness(t, nil)
	// The card (the first post) goes through; the DM (the second) is refused twice.
	h.mm.FailNextWith(2, mmtest.Failure{Status: http.StatusForbidden, Method: http.MethodPost, PathPrefix: "/api/v4/posts", Skip: 1})
	id := h.request("1011", 10)
	h.settle()
	h.card(id)
	dms := h.mm.DMs("tech1")
	require.Len(t, dms, 1, "the DM arrives after the refusals, once")
	require.Contains(t, dms[0].Message, "Your technical approval is requested")
	require.NotContains(t, h.logs.String(), "undeliverable")
}

func TestBot_RestartBetweenClicks(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("1010", 10)
	h.settle()
	h.click(id, "approvetechnical", "tech1")
	h.stop()
	h.start()
	h.settle()
	h.click(id, "approvebusiness", "biz1")
	require.Equal(t, "approved", h.status(id)["status"])
	h.settle()
	require.Empty(t, actions(h.card(id)))
}

func TestBot_RacingClicksApplyOnce(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("1011", 10)
	h.settle()
	var wg sync.WaitGroup
	for _, u := range []string{"tech1", "tech2", "tech1", "tech2"} {
		wg.Add(1)
		go func() { defer wg.Done(); h.click(id, "approvetechnical", u) }()
	}
	wg.Wait()
	st := h.status(id)
	require.Equal(t, "technical_approved", st["status"])
	n := 0
	require.NoError(t, h.store.ScanLedger(1, func(e *ica.LedgerEntry) error {
		if e.Kind == "approval.technical_approved" {
			n++
		}
		return nil
	}))
	require.Equal(t, 1, n, "the transition is applied exactly once")
}

func TestBot_FinanceStep(t *testing.T) {
	h := newHarness(t, func(c *bot.Config) { c.FinanceApprovers = []string{"tech2"} })
	id := h.request("1012", 6000)
	h.settle()
	require.Contains(t, cardText(h.card(id)), "finance")
	h.click(id, "approvetechnical", "tech1")
	h.settle()
	h.click(id, "approvebusiness", "biz1")
	require.Contains(t, h.lastEphemeral("biz1"), "finance approvers")
	h.click(id, "approvebusiness", "tech2")
	require.Equal(t, "approved", h.status(id)["status"])
}

func TestBot_CommentOnApprove(t *testing.T) {
	h := newHarness(t, func(c *bot.Config) {
		p := c.Targets["production"]
		p.CommentOnApprove = true
		c.Targets["production"] = p
	})
	id := h.request("1013", 10)
	h.settle()
	h.click(id, "approvetechnical", "tech1")
	require.Equal(t, "pending", h.status(id)["status"])
	resp, err := h.mm.SubmitOpenDialog("tech1", map[string]any{"comment": "looks good"})
	require.NoError(t, err)
	require.Empty(t, resp.Error)
	st := h.status(id)
	require.Equal(t, "technical_approved", st["status"])
	require.Equal(t, "looks good", st["technical"].(map[string]any)["comment"])
}

// postAction sends an action request straight to ICA (as someone who
// bypasses Mattermost would) and returns the HTTP status and the reply.
func (h *harness) postAction(req model.PostActionIntegrationRequest) (int, *model.PostActionIntegrationResponse) {
	h.t.Helper()
	b, _ := json.Marshal(req)
	res, err := http.Post(h.srv.URL+"/mattermost/actions", "application/json", bytes.NewReader(b))
	require.NoError(h.t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	require.NotContains(h.t, string(raw), `"sig"`, "no reply carries a signed context")
	var out model.PostActionIntegrationResponse
	require.NoError(h.t, json.Unmarshal(raw, &out), string(raw))
	return res.StatusCode, &out
}

// requireNoSignedContext checks that ICA's reply to a click carries no
// button context (signed or not).
func requireNoSignedContext(t *testing.T, res *mmtest.ClickResult) {
	t.Helper()
	require.NotNil(t, res.Response)
	raw, _ := json.Marshal(res.Response)
	require.NotContains(t, string(raw), `"sig"`)
	require.NotContains(t, string(raw), `"integration"`)
}

// storedContext returns the context of a button as Mattermost stores it (in
// clear, in its database): what a reader of that database could replay.
func (h *harness) storedContext(postID, actionID string) map[string]any {
	h.t.Helper()
	p := h.mm.Post(postID)
	a := p.GetAction(actionID)
	require.NotNil(h.t, a, "button %s on post %s", actionID, postID)
	return a.Integration.Context
}

// userLimiter refuses every user named in deny and records who was asked.
type userLimiter struct {
	mu    sync.Mutex
	deny  map[string]bool
	asked []string
}

func (l *userLimiter) AllowUser(id string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = append(l.asked, id)
	return !l.deny[id], 1500 * time.Millisecond
}

// A click over the per-user limit is refused with the wait, and changes
// nothing; the limit is asked with the id Mattermost proved, and a forged
// click never reaches it (it cannot spend a real approver's allowance).
func TestBot_PerUserLimit(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("1030", 10)
	h.settle()
	tech1 := h.mm.UserID("tech1")
	lim := &userLimiter{deny: map[string]bool{tech1: true}}
	h.bot.LimitUsers(lim)
	before := h.store.LedgerEntries()

	res := h.click(id, "approvetechnical", "tech1")
	require.Equal(t, 200, res.Status)
	require.Contains(t, h.lastEphemeral("tech1"), "faster than ICA accepts")
	require.Contains(t, h.lastEphemeral("tech1"), "try again in 2s")
	require.Equal(t, before, h.store.LedgerEntries(), "nothing recorded")
	require.Equal(t, []string{tech1}, lim.asked)

	// A request that claims tech1 without Mattermost's trigger_id.
	body := fmt.Sprintf(`{"user_id":%q,"post_id":%q,"trigger_id":"forged","context":{"approval_id":%q,"action":"approvetechnical"}}`, tech1, h.card(id).Id, id)
	resp, err := http.Post(h.srv.URL+"/mattermost/actions", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, []string{tech1}, lim.asked, "a forged click is refused before the limit")

	lim.deny = nil
	h.click(id, "approvetechnical", "tech2")
	require.Equal(t, "technical_approved", h.status(id)["status"])
	require.Equal(t, []string{tech1, h.mm.UserID("tech2")}, lim.asked)
}
