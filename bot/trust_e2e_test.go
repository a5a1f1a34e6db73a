package bot_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/bot"
	"github.com/ica-governance/ica/bot/mmtest"
	"github.com/ica-governance/ica/webhooks"
)

// Issue 16: a decision comes only from a person's own click. These tests
// play the attacker of the issue, who read a card's button context from
// Mattermost's database and posts straight to /mattermost/actions.

// requestFor starts a run for the given requester (and optional extra start
// fields) and asks for a production approval.
func (h *harness) requestFor(runID, triggeredBy string, extra map[string]any) string {
	h.t.Helper()
	start := map[string]any{"pipeline_name": "payments", "run_id": runID,
		"branch": "refs/heads/main", "commit": "0123456789abcdef0123456789abcdef01234567", "triggered_by": triggeredBy}
	for k, v := range extra {
		start[k] = v
	}
	st, body := h.api("POST", "/api/v1/runs", start)
	require.Equal(h.t, 201, st, body)
	st, body = h.api("POST", "/api/v1/approvals", map[string]any{"run_id": runID, "deployment_target": "production", "estimated_cost": 10})
	require.Equal(h.t, 201, st, body)
	return body["approval_id"].(string)
}

// otherKeyTrigger signs a trigger for userID with a key that is not the
// server's, in the real format.
func otherKeyTrigger(t *testing.T, userID string, at time.Time) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	data := model.NewId() + ":" + userID + ":" + strconv.FormatInt(at.UnixMilli(), 10) + ":"
	sum := sha256.Sum256([]byte(data))
	sig, err := ecdsa.SignASN1(rand.Reader, k, sum[:])
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString([]byte(data + base64.StdEncoding.EncodeToString(sig)))
}

// TestBot_StolenContextNeedsTheClickersTrigger: with a card's real button
// context, every request that is not tech1's own fresh click is refused,
// changes nothing and gets HTTP 200 with an ephemeral refusal.
func TestBot_StolenContextNeedsTheClickersTrigger(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("2001", 10)
	h.settle()
	card := h.card(id)
	stolen := h.storedContext(card.Id, "approvetechnical")
	tech1 := h.mm.UserID("tech1")
	before := h.store.LedgerEntries()

	stale := h.mm.TriggerID("tech1") // made now, used after 31 s
	for _, tc := range []struct {
		name    string
		req     model.PostActionIntegrationRequest
		advance time.Duration
		want    string
	}{
		{"no trigger", model.PostActionIntegrationRequest{UserId: tech1, UserName: "tech1"}, 0, "could not confirm"},
		{"garbage trigger", model.PostActionIntegrationRequest{UserId: tech1, UserName: "tech1", TriggerId: "dGVjaDE6eDp5Onk="}, 0, "could not confirm"},
		{"another user's trigger", model.PostActionIntegrationRequest{UserId: tech1, UserName: "tech1", TriggerId: h.mm.TriggerID("random")}, 0, "could not confirm"},
		{"a trigger signed with another key", model.PostActionIntegrationRequest{UserId: tech1, UserName: "tech1", TriggerId: otherKeyTrigger(t, tech1, h.clock.Now())}, 0, "could not confirm"},
		// random's own valid click, claiming tech1's name in the body.
		{"a forged user name", model.PostActionIntegrationRequest{UserId: h.mm.UserID("random"), UserName: "tech1", TriggerId: h.mm.TriggerID("random")}, 0, "@random is not one of the technical approvers"},
		{"a stale trigger", model.PostActionIntegrationRequest{UserId: tech1, UserName: "tech1", TriggerId: stale}, 31 * time.Second, "could not confirm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.clock.Advance(tc.advance)
			req := tc.req
			req.PostId, req.Context, req.ChannelId, req.Type = card.Id, stolen, card.ChannelId, "button"
			status, reply := h.postAction(req)
			require.Equal(t, 200, status, "Mattermost needs 200")
			require.Contains(t, reply.EphemeralText, tc.want)
			require.Nil(t, reply.Update, "a refusal carries no card")
			require.Equal(t, "pending", h.status(id)["status"])
			require.Equal(t, before, h.store.LedgerEntries(), "a refused click changes nothing")
		})
	}
	logs := h.logs.String()
	require.Contains(t, logs, "refused Mattermost action")
	require.Contains(t, logs, "signature does not verify")
	require.Contains(t, logs, "stale")
	require.Contains(t, logs, "signed for user")
	require.Contains(t, logs, `claimed_user_name=tech1`)
	require.NotContains(t, logs, stale, "the log never holds a trigger")

	// tech1's own click works.
	res := h.click(id, "approvetechnical", "tech1")
	require.Equal(t, 200, res.Status)
	require.Equal(t, "technical_approved", h.status(id)["status"])
}

// TestBot_ReplayedTrigger: a trigger is usable once, even with another
// card's context (the attacker replays tech1's real click on card A against
// card B).
func TestBot_ReplayedTrigger(t *testing.T) {
	h := newHarness(t, nil)
	a := h.request("2002", 10)
	b := h.request("2003", 10)
	h.settle()
	res := h.click(a, "approvetechnical", "tech1")
	require.Equal(t, "technical_approved", h.status(a)["status"])
	replay := *res.Request
	cardB := h.card(b)
	replay.PostId, replay.Context = cardB.Id, h.storedContext(cardB.Id, "approvetechnical")
	status, reply := h.postAction(replay)
	require.Equal(t, 200, status)
	require.Contains(t, reply.EphemeralText, "could not confirm")
	require.Equal(t, "pending", h.status(b)["status"])
	require.Contains(t, h.logs.String(), "already used")

	// The exact replay of the click on A is refused as well.
	status, reply = h.postAction(*res.Request)
	require.Equal(t, 200, status)
	require.Contains(t, reply.EphemeralText, "could not confirm")
}

// TestBot_NoSignedContextInReplies: neither a refused click, nor a stale
// one, nor a successful technical approval gets the signed buttons of a step
// the clicker could not decide; the card is redrawn through the API.
func TestBot_NoSignedContextInReplies(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("2004", 10)
	h.settle()
	card := h.card(id)
	techCtx := h.storedContext(card.Id, "approvetechnical")

	res, _ := h.mm.Click(card.Id, "approvetechnical", "random") // not an approver
	require.Equal(t, 200, res.Status)
	requireNoSignedContext(t, res)
	require.Contains(t, h.lastEphemeral("random"), "not one of")

	res, _ = h.mm.Click(card.Id, "approvetechnical", "tech1")
	require.Equal(t, 200, res.Status)
	requireNoSignedContext(t, res)
	require.Nil(t, res.Response.Update, "tech1 cannot decide the business step: no business buttons for them")

	// A click on the stale technical button (as before the redraw).
	status, reply := h.postAction(model.PostActionIntegrationRequest{UserId: h.mm.UserID("tech2"), UserName: "tech2",
		TriggerId: h.mm.TriggerID("tech2"), PostId: card.Id, Context: techCtx})
	require.Equal(t, 200, status)
	require.Nil(t, reply.Update, "tech2 may not decide the business step")
	require.Contains(t, reply.EphemeralText, "waits for its business approval")

	h.settle()
	require.Equal(t, []string{"approvebusiness", "approvebusinessdeferred", "reject"}, actions(h.card(id)))
	res, _ = h.mm.Click(card.Id, "approvebusiness", "biz1")
	require.Equal(t, 200, res.Status)
	requireNoSignedContext(t, res)
	require.NotNil(t, res.Response.Update, "a final card (no buttons) may come with the reply")
	require.Empty(t, actions(h.mm.Post(card.Id)))
}

// TestBot_RequesterSpellings: however the pipeline spells tech1 (issue 16),
// tech1 cannot approve, and is not asked to.
func TestBot_RequesterSpellings(t *testing.T) {
	h := newHarness(t, nil)
	for i, spelling := range []string{"tech1", "TECH1", "tech1+ci@example.com", " tech1@example.com", "Tech One <tech1@example.com>", "Tech1@Example.COM"} {
		t.Run(spelling, func(t *testing.T) {
			dmsBefore := len(h.mm.DMs("tech1"))
			id := h.requestFor(fmt.Sprint(3000+i), spelling, nil)
			h.settle()
			require.Equal(t, dmsBefore, len(h.mm.DMs("tech1")), "the requester gets no 'please approve' DM")
			before := h.store.LedgerEntries()
			res := h.click(id, "approvetechnical", "tech1")
			require.Equal(t, 200, res.Status)
			require.Contains(t, h.lastEphemeral("tech1"), "You requested this deployment")
			require.Equal(t, before, h.store.LedgerEntries())
			h.click(id, "approvetechnical", "tech2")
			require.Equal(t, "technical_approved", h.status(id)["status"], "others still can")
		})
	}

	// The Azure DevOps e-mail counts too, whatever triggered_by says.
	id := h.requestFor("3100", "release-bot", map[string]any{"requested_for_email": "Tech1+x@example.com", "requested_for_id": "6f1c9a1e-0b1d-4c53-9d2f-7d0c6a0c1b11"})
	h.settle()
	h.click(id, "approvetechnical", "tech1")
	require.Contains(t, h.lastEphemeral("tech1"), "You requested this deployment")
	require.Equal(t, "pending", h.status(id)["status"])

	// The requester may still reject (through the dialog).
	h.click(id, "reject", "tech1")
	resp, err := h.mm.SubmitOpenDialog("tech1", map[string]any{"reason": "my own change is broken"})
	require.NoError(t, err)
	require.Empty(t, resp.Error)
	require.Equal(t, "rejected", h.status(id)["status"])

	// An unparseable requester is refused at run start, naming the field.
	st, body := h.api("POST", "/api/v1/runs", map[string]any{"pipeline_name": "payments", "run_id": "3200",
		"branch": "refs/heads/main", "commit": "0123456789abcdef0123456789abcdef01234567", "triggered_by": "Tech One"})
	require.Equal(t, 400, st)
	require.Equal(t, "triggered_by", body["error"].(map[string]any)["field"])
}

// TestBot_RequesterThroughCommentDialog: the requester check holds in the
// dialog path as well (approve with a comment).
func TestBot_RequesterThroughCommentDialog(t *testing.T) {
	h := newHarness(t, func(c *bot.Config) {
		p := c.Targets["production"]
		p.CommentOnApprove = true
		c.Targets["production"] = p
	})
	id := h.requestFor("3300", "tech2", map[string]any{"requested_for_email": "tech1@example.com"})
	h.settle()
	h.click(id, "approvetechnical", "tech1")
	require.Empty(t, h.mm.OpenDialogs("tech1"), "no dialog for the requester")
	require.Contains(t, h.lastEphemeral("tech1"), "You requested")
}

// TestBot_DialogThroughSecondInstance: a dialog opened through one ICA
// process can be submitted through another sharing the store (its state is
// in the store, not in a process), once.
func TestBot_DialogThroughSecondInstance(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("2005", 10)
	h.settle()

	// A second bot on the same store and Mattermost, with its own listener.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b2 := bot.New(h.cfg, bot.NewClient(h.mm.URL, h.mm.Token("ica-bot"), nil), h.store, h.clock, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b2.Start(ctx)
	defer b2.Stop()
	require.Eventually(t, func() bool { return b2.Ready(ctx) == nil }, 5*time.Second, 5*time.Millisecond)
	pt, _ := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken(pipelineToken)}, nil)
	hd := webhooks.NewHandler(webhooks.Deps{Ledger: h.store, Pipelines: pt, Clock: h.clock, Logger: log})
	hd.Router().Handle("/mattermost/dialogs", hd.Route(nil, b2.HandleDialog)).Methods("POST")
	srv2 := httptest.NewServer(hd)
	defer srv2.Close()

	h.click(id, "reject", "tech1") // through instance 1
	dlg := h.mm.OpenDialogs("tech1")
	require.Len(t, dlg, 1)
	require.True(t, strings.HasPrefix(dlg[0].URL, h.srv.URL))
	state := dlg[0].Dialog.State

	// biz1 cannot use tech1's dialog through either instance.
	resp, err := h.mm.SubmitDialog("biz1", srv2.URL+"/mattermost/dialogs", id, state, map[string]any{"reason": "mine now"}, false)
	require.NoError(t, err)
	require.Contains(t, resp.Error, "someone else")

	resp, err = h.mm.SubmitDialog("tech1", srv2.URL+"/mattermost/dialogs", id, state, map[string]any{"reason": "broken migration"}, false)
	require.NoError(t, err)
	require.Empty(t, resp.Error)
	require.Equal(t, "rejected", h.status(id)["status"])

	resp, err = h.mm.SubmitOpenDialog("tech1", map[string]any{"reason": "again, through instance 1"})
	require.NoError(t, err)
	require.Contains(t, resp.Error, "no longer open", "used once, whichever instance took it")
}

// TestBot_ApproverIdentityByID (issue 18 item 4): approvers are resolved to
// user ids; a name that does not resolve approves nothing and shows in the
// readiness detail; a name taken over by another account grants that
// account only after re-resolution, and never the renamed one.
func TestBot_ApproverIdentityByID(t *testing.T) {
	h := newHarness(t, func(c *bot.Config) {
		p := c.Targets["production"]
		p.Technical.Usernames = []string{"tech1", "ghost"}
		c.Targets["production"] = p
	})
	ctx := context.Background()
	require.ErrorContains(t, h.bot.Approvers(ctx), "ghost")
	require.Contains(t, h.logs.String(), "configured approver is not an active Mattermost user")
	require.Contains(t, h.logs.String(), "username=ghost")

	id := h.request("2006", 10)
	h.settle()
	// ghost's account is created later: a click misses, ICA re-resolves, and
	// ghost may approve (by the id the name now resolves to).
	h.mm.AddUser("ghost")
	h.mm.Join("deployments", "ghost")
	h.clock.Advance(time.Minute)
	h.click(id, "approvetechnical", "ghost")
	require.Equal(t, "technical_approved", h.status(id)["status"])
	require.NoError(t, h.bot.Approvers(ctx))

	// tech1 is renamed and someone else takes the name "tech1": the new
	// "tech1" misses (the name resolved to another id), ICA re-resolves, and
	// from then on the grant follows the name to the new account; the
	// renamed account keeps nothing.
	id2 := h.request("2007", 10)
	id3 := h.request("2008", 10)
	h.settle()
	h.mm.RenameUser("tech1", "tech1-old")
	h.mm.AddUser("tech1")
	h.mm.Join("deployments", "tech1")
	h.clock.Advance(time.Minute)
	h.click(id2, "approvetechnical", "tech1")
	require.Equal(t, "technical_approved", h.status(id2)["status"])
	require.Equal(t, h.mm.UserID("tech1"), h.status(id2)["technical"].(map[string]any)["user_id"])
	require.Contains(t, h.logs.String(), "configured approver name now belongs to another Mattermost user")
	h.click(id3, "approvetechnical", "tech1-old")
	require.Contains(t, h.lastEphemeral("tech1-old"), "not one of the technical approvers")
	require.Equal(t, "pending", h.status(id3)["status"])
}

// TestBot_EmailVisibility: when Mattermost hides e-mail addresses from the
// bot, readiness says so (and the requester check still compares names).
func TestBot_EmailVisibility(t *testing.T) {
	h := newHarness(t, nil)
	require.NoError(t, h.bot.EmailVisibility(context.Background()))

	clock, mm := newMattermost(t, mmtest.WithHiddenEmails())
	h2 := newHarnessOn(t, clock, mm, nil)
	require.ErrorContains(t, h2.bot.EmailVisibility(context.Background()), "e-mail")
	require.Contains(t, h2.logs.String(), "Mattermost hides e-mail addresses from the bot")
	id := h2.requestFor("2008", "tech1@example.com", nil)
	h2.settle()
	h2.click(id, "approvetechnical", "tech1")
	require.Contains(t, h2.lastEphemeral("tech1"), "You requested")
}

// TestBot_TwoLedgersOneMattermost (issue 14 item 1): two ICAs (two ledgers)
// share one bot and one channel and each create approval A-1 within
// Mattermost's 30 s de-duplication window: each gets its own card, shows
// its instance, and a create whose answer was lost is found again by its
// own identity, never the other ledger's card.
func TestBot_TwoLedgersOneMattermost(t *testing.T) {
	clock, mm := newMattermost(t)
	staging := newHarnessOn(t, clock, mm, func(c *bot.Config) { c.InstanceName = "staging" })
	production := newHarnessOn(t, clock, mm, func(c *bot.Config) { c.InstanceName = "production" })

	a1 := staging.request("4001", 10)
	staging.settle()
	// The second ledger's create is processed by Mattermost but its answer
	// is lost; the retry must find its own card.
	mm.FailNextWith(1, mmtest.Failure{Status: http.StatusBadGateway, PathPrefix: "/api/v4/posts", Lost: true})
	clock.Advance(5 * time.Second)
	a2 := production.request("4001", 10)
	production.settle()
	require.Equal(t, "A-1", a1)
	require.Equal(t, "A-1", a2)

	sCard, pCard := staging.card(a1), production.card(a2)
	require.NotEqual(t, sCard.Id, pCard.Id, "each ledger has its own card")
	require.Len(t, mm.Posts("deployments"), 2, "and the lost answer did not make a third")
	st, err := staging.store.Approval(context.Background(), a1)
	require.NoError(t, err)
	pr, err := production.store.Approval(context.Background(), a2)
	require.NoError(t, err)
	require.Equal(t, sCard.Id, st.Card.PostID)
	require.Equal(t, pCard.Id, pr.Card.PostID)
	require.Equal(t, "ICA staging · ledger-recorded decision", sCard.Attachments()[0].Footer)
	require.Equal(t, "ICA production · ledger-recorded decision", pCard.Attachments()[0].Footer)

	// Each card's buttons act on their own ledger only.
	staging.click(a1, "approvetechnical", "tech1")
	require.Equal(t, "technical_approved", staging.status(a1)["status"])
	require.Equal(t, "pending", production.status(a2)["status"])
	res, _ := mm.Click(sCard.Id, "reject", "tech2") // staging's button, sent to staging: fine
	require.Equal(t, 200, res.Status)
	// staging's stored context posted to production's URL is not production's.
	req := *res.Request
	req.TriggerId = mm.TriggerID("tech2")
	status, reply := production.postAction(req)
	require.Equal(t, 200, status)
	require.Contains(t, reply.EphemeralText, "not made by this ICA")
}
