package main

// End-to-end tests against a real Mattermost 6.7.2 (internal/mmreal): a real
// `ica serve` posts its cards through the world's bot; people click, submit
// dialogs and run /ica with their own tokens through the server's API, and
// read what they see through it and their websocket. Skipped, loudly,
// without ICA_TEST_MATTERMOST_URL (failed under CI). Each test has its own
// world and ICA, so they run in parallel.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/dashboard"
	"github.com/ica-governance/ica/export"
	"github.com/ica-governance/ica/internal/chromium"
	"github.com/ica-governance/ica/internal/mmreal"
)

// TestE2E_TwoPeopleApprove: a pipeline asks for an approval; the card
// appears in the channel with the technical step's buttons; tech1 and then
// biz1 click, each told (only them, on their websocket) what was recorded;
// the approvers of each step get a direct message with a link to the card
// when their step starts; the card ends approved with no buttons; the
// pipeline's poll says approved; the ledger records both decisions with the
// Mattermost user ids, and `ica check` and `ica verify` agree.
func TestE2E_TwoPeopleApprove(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	tech, biz, requester := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1), w.Person(mmreal.Requester)
	techEvents, bizEvents := tech.Listen(t), biz.Listen(t)
	e := startE2E(t, w, e2eOptions{})

	e.startRun("4711", requester.User.Email)
	id := e.requestApproval("4711", 250)

	card := e.card(tech, id)
	require.Equal(t, w.Bot.ID(), card.UserId, "the bot posted the card")
	require.Equal(t, w.Channel.Id, card.ChannelId)
	require.Equal(t, id, card.GetProp("ica_approval_id"))
	ledgerID, _ := card.GetProp("ica_ledger_id").(string)
	require.NotEmpty(t, ledgerID, "the card names its ledger")
	require.Contains(t, card.Message, "**Approval "+id+"**: deploy payments run 4711 to **production**")
	att := attachment(t, card)
	require.Equal(t, "Deployment approval "+id+" · payments → production", att.Title)
	require.Equal(t, "#F2A900", att.Color, "amber: pending")
	require.Equal(t, "payments", field(card, "Pipeline"))
	require.Equal(t, "main", field(card, "Branch"))
	require.Equal(t, "`01234567`", field(card, "Commit"))
	require.Equal(t, requester.User.Email, field(card, "Requested by"))
	require.Equal(t, "$250.00", field(card, "Estimated cost"))
	require.Contains(t, field(card, "Expires"), "expires in 3h 59m")
	require.Equal(t, []string{"approvetechnical", "reject"}, buttons(card))
	for _, a := range att.Actions {
		// What clients read carries no button context (Mattermost keeps it
		// on the server): nobody can copy a signed button from a card.
		require.True(t, a.Integration == nil || len(a.Integration.Context) == 0, "tech1 reads the context of %s: %+v", a.Id, a.Integration)
	}
	posted := techEvents.Next(t, e2eWait, "the card posted", mmreal.PostEvent(model.WebsocketEventPosted, card.Id))
	require.Equal(t, id, mmreal.EventPost(t, posted).GetProp("ica_approval_id"))

	// tech1 is asked in a direct message, with a link to the card; biz1 not yet.
	dms := waitBotDMs(t, w, techEvents, "tech1", 1)
	require.Contains(t, dms[0].Message, "Your technical approval is requested for **payments** run 4711 → **production** (approval "+id+", $250.00)")
	require.Contains(t, dms[0].Message, w.URL+"/"+w.Team.Name+"/pl/"+card.Id)
	require.Equal(t, w.Bot.ID(), dms[0].UserId)
	require.Empty(t, botDMs(t, w, bizEvents), "biz1 is asked only when the business step starts")

	// tech1 approves.
	click(t, tech, card.Id, "approvetechnical")
	require.Equal(t, "You gave the technical approval for "+id+". It is recorded in the ledger.", ephemeralOn(t, techEvents, card.Id))
	a := e.approval(id)
	require.Equal(t, ica.ApprovalTechnical, a.Status)
	require.Equal(t, tech.ID(), a.Technical.UserID)
	card = e.cardWhen(tech, id, "offers the business step", func(p *model.Post) bool {
		return strings.Join(buttons(p), ",") == "approvebusiness,approvebusinessdeferred,reject"
	})
	require.Equal(t, "#1F78D1", attachment(t, card).Color, "blue: half approved")
	require.True(t, strings.HasPrefix(field(card, "Technical approval"), "@"+tech.Username()+" at "), field(card, "Technical approval"))
	techEvents.Next(t, e2eWait, "the card redrawn", mmreal.PostEvent(model.WebsocketEventPostEdited, card.Id))

	bizDMs := waitBotDMs(t, w, bizEvents, "biz1", 1)
	require.Contains(t, bizDMs[0].Message, "Your business approval is requested for **payments** run 4711")
	require.Contains(t, bizDMs[0].Message, "/pl/"+card.Id)

	// biz1 approves: the card is final.
	click(t, biz, card.Id, "approvebusiness")
	require.Equal(t, "You gave the business approval for "+id+". It is recorded in the ledger.", ephemeralOn(t, bizEvents, card.Id))
	require.Equal(t, 0, techEvents.Count(func(ev *model.WebSocketEvent) bool {
		return mmreal.PostEvent(model.WebsocketEventEphemeralMessage, card.Id)(ev) && strings.Contains(mmreal.EventPost(t, ev).Message, "business approval")
	}), "biz1's reply reaches biz1 only")
	card = e.cardWhen(tech, id, "final, without buttons", func(p *model.Post) bool {
		return len(buttons(p)) == 0 && strings.Contains(p.Message, ": approved")
	})
	require.Equal(t, "#2E8B57", attachment(t, card).Color, "green: approved")
	require.Equal(t, "**Status:** approved", attachment(t, card).Text)
	require.True(t, strings.HasPrefix(field(card, "Business approval"), "@"+biz.Username()+" at "), field(card, "Business approval"))
	require.Empty(t, field(card, "Expires"), "a final card has no expiry line")

	// The pipeline's poll.
	a = e.approval(id)
	require.Equal(t, ica.ApprovalApproved, a.Status)
	require.Equal(t, tech.ID(), a.Technical.UserID)
	require.Equal(t, biz.ID(), a.Business.UserID)
	require.Equal(t, "mattermost", a.Business.Via)

	// The ledger: both decisions, by user id, in order.
	got := e.decisions(id)
	require.Len(t, got, 2, "%+v", got)
	require.Equal(t, decisionData{ApprovalID: id, Action: ica.ActApproveTechnical, From: ica.ApprovalPending, To: ica.ApprovalTechnical,
		By: ica.Decider{UserID: tech.ID(), Username: tech.Username(), Email: tech.User.Email}, Via: "mattermost"}, got[0])
	require.Equal(t, decisionData{ApprovalID: id, Action: ica.ActApproveBusiness, From: ica.ApprovalTechnical, To: ica.ApprovalApproved,
		By: ica.Decider{UserID: biz.ID(), Username: biz.Username(), Email: biz.User.Email}, Via: "mattermost"}, got[1])
	var postedEntries int
	for _, l := range e.ledger() {
		if l.Kind == ica.KindApprovalCard && l.Subject == id {
			postedEntries++
			require.Contains(t, string(l.Data), fmt.Sprintf("%q", card.Id), "the ledger names the card's post")
		}
	}
	require.Equal(t, 1, postedEntries, "one card, recorded once")

	// One card for this approval in the channel, and nothing else from the bot there.
	posts, err := tech.Posts(context.Background(), w.Channel.Id)
	require.NoError(t, err)
	var fromBot []string
	for _, p := range posts {
		if p.UserId == w.Bot.ID() {
			fromBot = append(fromBot, p.Id)
		}
	}
	require.Equal(t, []string{card.Id}, fromBot)
}

// TestE2E_Refusals: people who may not decide click, each through the real
// server, and each is told why, only them, while nothing is recorded: the
// requester (an approver too, named by e-mail in another case and with a
// +tag), a business approver on the technical step, the bot itself, the
// technical approver on the business step, a channel outsider (Mattermost
// answers 403 and ICA hears nothing), a card forged by a channel member with
// a made-up context, and a click forged straight to ICA's callback with a
// made-up trigger_id.
func TestE2E_Refusals(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	tech, biz, requester, outsider := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1), w.Person(mmreal.Requester), w.Person(mmreal.Outsider)
	techEvents, bizEvents, reqEvents := tech.Listen(t), biz.Listen(t), requester.Listen(t)
	// The requester and tech1 may decide both steps, so what stops them
	// below is who they are, not a missing grant.
	e := startE2E(t, w, e2eOptions{env: map[string]string{
		"ICA_TECH_APPROVERS":     tech.Username() + "," + requester.Username(),
		"ICA_BUSINESS_APPROVERS": biz.Username() + "," + tech.Username(),
	}})
	local, domain, _ := strings.Cut(requester.User.Email, "@")
	e.startRun("5001", strings.ToUpper(local)+"+ci@"+domain)
	id := e.requestApproval("5001", 10)
	card := e.card(tech, id)
	entries := len(e.ledger())
	ctx := context.Background()
	unchanged := func(what string) {
		t.Helper()
		require.Equal(t, ica.ApprovalPending, e.approval(id).Status, what)
		require.Empty(t, e.decisions(id), what)
		require.Len(t, e.ledger(), entries, "%s: nothing new in the ledger", what)
	}

	// The requester, although a technical approver.
	click(t, requester, card.Id, "approvetechnical")
	require.Equal(t, "You requested this deployment, so you cannot approve it.", ephemeralOn(t, reqEvents, card.Id))
	unchanged("the requester's click")

	// A business approver on the technical step.
	click(t, biz, card.Id, "approvetechnical")
	require.Equal(t, "You cannot decide this step: @"+biz.Username()+" is not one of the technical approvers for production.",
		ephemeralOn(t, bizEvents, card.Id))
	unchanged("biz1 on the technical step")

	// The bot's own token clicks.
	click(t, w.Bot, card.Id, "approvetechnical")
	require.Contains(t, e.Logs.String(), `"reason":"the bot clicked"`)
	unchanged("the bot's click")

	// A channel outsider: Mattermost refuses before ICA hears of it.
	res, err := outsider.Click(ctx, card.Id, "approvetechnical")
	require.Error(t, err)
	require.Equal(t, 403, res.Status, "%v", err)
	var ae *model.AppError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "api.context.permissions.app_error", ae.Id)
	require.NotContains(t, e.Logs.String(), outsider.ID(), "ICA never heard of the outsider")
	unchanged("the outsider's click")

	// A card forged by a channel member: a post with ICA's callback and a
	// made-up context, which a real approver clicks (so the trigger_id is
	// genuine).
	forgedCard := &model.Post{ChannelId: w.Channel.Id, Message: "**Approval " + id + "**: deploy payments run 5001 to **production**"}
	forgedCard.AddProp(model.PostPropsAttachments, []*model.MessageAttachment{{
		Title: "Deployment approval " + id, Actions: []*model.PostAction{{
			Id: "approvetechnical", Name: "Approve (technical)", Type: model.PostActionTypeButton,
			Integration: &model.PostActionIntegration{URL: e.Base + "/mattermost/actions", Context: map[string]any{
				"approval_id": id, "action": ica.ActApproveTechnical, "sig": strings.Repeat("ab", 32)}},
		}},
	}})
	forgedCard.AddProp("ica_approval_id", id)
	forgedCard.AddProp("ica_ledger_id", card.GetProp("ica_ledger_id"))
	forgedCard, _, err = biz.Client.CreatePost(ctx, forgedCard)
	require.NoError(t, err, "a member may post a card of their own")
	click(t, tech, forgedCard.Id, "approvetechnical")
	require.Equal(t, "This button was not made by this ICA; nothing was changed.", ephemeralOn(t, techEvents, forgedCard.Id))
	unchanged("tech1's click on a forged card")

	// A click forged straight to ICA's callback: everything the body says
	// is chosen by whoever sends it; the trigger_id is made up.
	trigger := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%s:%s:%d:%s", model.NewId(), tech.ID(),
		time.Now().UnixMilli(), base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x30}, 70)))))
	body, _ := json.Marshal(model.PostActionIntegrationRequest{UserId: tech.ID(), UserName: tech.Username(),
		ChannelId: w.Channel.Id, TeamId: w.Team.Id, PostId: card.Id, TriggerId: trigger, Type: model.PostActionTypeButton,
		Context: map[string]any{"approval_id": id, "action": ica.ActApproveTechnical, "sig": strings.Repeat("ab", 32)}})
	resp, err := http.Post(e.Base+"/mattermost/actions", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	var reply model.PostActionIntegrationResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&reply))
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, "Mattermost's callbacks always answer 200")
	require.Equal(t, "ICA could not confirm that this came from you through Mattermost, so nothing was changed.", reply.EphemeralText)
	require.Nil(t, reply.Update)
	unchanged("a forged click")

	// tech1 approves; then tech1 on the business step, as a business
	// approver, is refused: one person cannot give both approvals.
	click(t, tech, card.Id, "approvetechnical")
	require.Equal(t, "You gave the technical approval for "+id+". It is recorded in the ledger.", ephemeralOn(t, techEvents, card.Id))
	card = e.cardWhen(tech, id, "offers the business step", func(p *model.Post) bool { return slices.Contains(buttons(p), "approvebusiness") })
	click(t, tech, card.Id, "approvebusiness")
	require.Equal(t, "You gave the technical approval; the business approval must come from someone else.", ephemeralOn(t, techEvents, card.Id))
	a := e.approval(id)
	require.Equal(t, ica.ApprovalTechnical, a.Status)
	require.Nil(t, a.Business)
	got := e.decisions(id)
	require.Len(t, got, 1, "only tech1's technical approval is recorded: %+v", got)
	require.Equal(t, tech.ID(), got[0].By.UserID)

	// The technical button is gone: Mattermost itself refuses a click on it.
	_, err = tech.Click(ctx, card.Id, "approvetechnical")
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 404, ae.StatusCode)
	require.Equal(t, 1, len(e.decisions(id)))
}

// TestE2E_RejectWithReason: tech1 clicks Reject; ICA opens the reason
// dialog through the click's trigger_id at once (Mattermost accepts it for
// 3 s); submissions with a client-chosen state, or with tech1's real state
// from another person, are refused; a too short reason gets a field error;
// tech1's reason rejects the approval, shown on the card and recorded; the
// same dialog cannot be submitted twice.
func TestE2E_RejectWithReason(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)
	techEvents := tech.Listen(t)
	e := startE2E(t, w, e2eOptions{})
	e.startRun("6001", w.Person(mmreal.Requester).Username())
	id := e.requestApproval("6001", 10)
	card := e.card(tech, id)
	ctx := context.Background()

	clicked := time.Now()
	res := click(t, tech, card.Id, "reject")
	d := techEvents.NextDialog(t, e2eWait)
	require.Less(t, time.Since(clicked), 3*time.Second, "the dialog opened within the trigger's 3 s")
	require.Equal(t, res.TriggerID, d.TriggerId, "opened through the click's own trigger_id")
	require.Equal(t, e.Base+"/mattermost/dialogs", d.URL)
	require.Equal(t, id, d.Dialog.CallbackId)
	require.Equal(t, "Reject "+id, d.Dialog.Title)
	require.Equal(t, "Reject", d.Dialog.SubmitLabel)
	require.Len(t, d.Dialog.Elements, 1)
	require.Equal(t, "reason", d.Dialog.Elements[0].Name)
	require.Equal(t, "textarea", d.Dialog.Elements[0].Type)
	require.NotEmpty(t, d.Dialog.State)
	require.Equal(t, ica.ApprovalPending, e.approval(id).Status, "opening the dialog decides nothing")

	submit := func(p *mmreal.Person, state, reason string) *model.SubmitDialogResponse {
		t.Helper()
		resp, status, err := p.SubmitDialog(ctx, model.SubmitDialogRequest{URL: d.URL, CallbackId: d.Dialog.CallbackId,
			State: state, ChannelId: w.Channel.Id, TeamId: w.Team.Id, Submission: map[string]any{"reason": reason}})
		require.NoError(t, err)
		require.Equal(t, 200, status)
		return resp
	}
	// A state the client made up, in ICA's own shape.
	madeUp := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"a":%q,"x":"reject","u":%q,"n":"00","e":%d}`,
		id, biz.ID(), time.Now().Add(time.Hour).Unix()))) + "." + strings.Repeat("ab", 32)
	require.Equal(t, "this dialog was not opened by ICA", submit(biz, madeUp, "forged by biz1").Error)
	// The same made-up state in tech1's name, straight to ICA's callback.
	raw, _ := json.Marshal(model.SubmitDialogRequest{Type: "dialog_submission", CallbackId: id, State: strings.Replace(madeUp, biz.ID(), tech.ID(), 1),
		UserId: tech.ID(), ChannelId: w.Channel.Id, TeamId: w.Team.Id, Submission: map[string]any{"reason": "forged for tech1"}})
	direct, err := http.Post(e.Base+"/mattermost/dialogs", "application/json", bytes.NewReader(raw))
	require.NoError(t, err)
	var directReply model.SubmitDialogResponse
	require.NoError(t, json.NewDecoder(direct.Body).Decode(&directReply))
	direct.Body.Close()
	require.Equal(t, 200, direct.StatusCode)
	require.Equal(t, "this dialog was not opened by ICA", directReply.Error)
	// tech1's real state, sent by biz1 (Mattermost sets user_id from the session).
	require.Equal(t, "this dialog was opened for someone else", submit(biz, d.Dialog.State, "forged by biz1").Error)
	require.Equal(t, ica.ApprovalPending, e.approval(id).Status)
	require.Empty(t, e.decisions(id))

	// Too short: a field error, and the dialog stays open.
	resp := submit(tech, d.Dialog.State, "no")
	require.Equal(t, "A reason is required.", resp.Errors["reason"])
	require.Equal(t, ica.ApprovalPending, e.approval(id).Status)

	reason := "The load test failed on the staging cluster"
	resp = submit(tech, d.Dialog.State, reason)
	require.Empty(t, resp.Error)
	require.Empty(t, resp.Errors)
	a := e.approval(id)
	require.Equal(t, ica.ApprovalRejected, a.Status)
	require.Equal(t, tech.ID(), a.Rejection.UserID)
	require.Equal(t, reason, a.Rejection.Comment)

	// Once only.
	require.Equal(t, "this dialog is no longer open; click the button on the card again", submit(tech, d.Dialog.State, "again").Error)

	card = e.cardWhen(tech, id, "final, rejected", func(p *model.Post) bool {
		return len(buttons(p)) == 0 && strings.Contains(p.Message, ": rejected")
	})
	require.Equal(t, "#C8102E", attachment(t, card).Color, "red: rejected")
	rejected := field(card, "Rejected")
	require.True(t, strings.HasPrefix(rejected, "@"+tech.Username()+" at "), rejected)
	require.True(t, strings.HasSuffix(rejected, ": “"+reason+"”"), rejected)

	got := e.decisions(id)
	require.Equal(t, []decisionData{{ApprovalID: id, Action: ica.ActReject, From: ica.ApprovalPending, To: ica.ApprovalRejected,
		By: ica.Decider{UserID: tech.ID(), Username: tech.Username(), Email: tech.User.Email}, Comment: reason, Via: "mattermost"}}, got)
}

// TestE2E_SlashCommands: /ica through the real server, proved by its
// trigger_id: status (the overview and one run) answers only the caller;
// export is refused to someone not named in ICA_EXPORT_USERS, and for
// biz1 the bot posts the signed file in the channel, which biz1 downloads
// with their own token and which verifies offline (and an edited copy does
// not); dashboard answers with a single-use link that headless Chromium
// opens from another site, as a click in Mattermost does. The dashboard's
// figures may be 30 s old: ICA's clock jumps past that before the page is
// opened, so the page shows the approval that waits.
func TestE2E_SlashCommands(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)
	techEvents := tech.Listen(t)
	clock := newTickingClock(t)
	e := startE2E(t, w, e2eOptions{slash: true, clock: clock, env: map[string]string{"ICA_EXPORT_USERS": biz.Username()}})
	e.startRun("7001", w.Person(mmreal.Requester).Username())
	id := e.requestApproval("7001", 120)
	card := e.card(tech, id)
	click(t, tech, card.Id, "approvetechnical")
	ephemeralOn(t, techEvents, card.Id)
	e.waitStatus(id, ica.ApprovalTechnical)
	ctx := context.Background()
	command := func(p *mmreal.Person, line string) string {
		t.Helper()
		resp, status, err := p.Command(ctx, w.Channel.Id, "", line)
		require.NoError(t, err, "%s runs %s", p.Username(), line)
		require.Equal(t, 200, status)
		require.Equal(t, model.CommandResponseTypeEphemeral, resp.ResponseType, "replies are only for the caller")
		return resp.Text
	}

	status := command(tech, "/ica status")
	eph := techEvents.NextEphemeral(t, e2eWait)
	require.Equal(t, status, eph.Message, "the reply reaches tech1 as an ephemeral post")
	require.Equal(t, w.Channel.Id, eph.ChannelId)
	require.Contains(t, status, "**Pending approvals (1)**")
	require.Contains(t, status, "| `"+id+"` | payments | `7001` | production |")
	require.Contains(t, status, "| business approval; technical by "+tech.Username()+" |")
	require.Contains(t, status, "**Runs in progress (1)**")

	runView := command(tech, "/ica status 7001")
	require.Contains(t, runView, "#### Run `7001` — payments")
	require.Contains(t, runView, "| Commit | `"+e2eCommit+"` |")
	require.Contains(t, runView, "| Approval | `"+id+"` production: technical\\_approved, waiting for business approval; technical by "+tech.Username())

	require.Equal(t, "You are not allowed to export the ledger here. Ask an administrator, or run the export in a channel that allows it.",
		command(tech, "/ica export format=json"))

	// biz1 exports: the bot posts the signed file here.
	before, err := biz.Posts(ctx, w.Channel.Id)
	require.NoError(t, err)
	reply := command(biz, "/ica export format=json")
	m := regexp.MustCompile(`^Exporting (\d+) ledger records from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d as JSON; the file will be posted here\.$`).FindStringSubmatch(reply)
	require.NotNil(t, m, reply)
	records, _ := strconv.Atoi(m[1])
	require.Equal(t, len(e.ledger()), records, "this month's records are the whole ledger")
	var filePost *model.Post
	require.Eventually(t, func() bool {
		posts, err := biz.Posts(ctx, w.Channel.Id)
		require.NoError(t, err)
		for _, p := range posts[len(before):] {
			if len(p.FileIds) > 0 {
				filePost = p
				return true
			}
		}
		return false
	}, e2eWait, 100*time.Millisecond, "the bot posts the export")
	require.Equal(t, w.Bot.ID(), filePost.UserId, "posted by the bot, not as biz1")
	require.Contains(t, filePost.Message, "**ICA audit export**")
	require.Contains(t, filePost.Message, "requested by @"+biz.Username())
	require.Contains(t, filePost.Message, fmt.Sprintf("| Records | %d (seq 1–%d) |", records, records))
	require.Len(t, filePost.FileIds, 1)
	// Mattermost saves a post before it attaches the post's files: for a
	// moment after the post appears, others are refused (403) its file.
	var info *model.FileInfo
	require.Eventually(t, func() bool {
		info, _, err = biz.Client.GetFileInfo(ctx, filePost.FileIds[0])
		return err == nil
	}, e2eWait, 50*time.Millisecond, "biz1 reads the file's info: %v", err)
	require.True(t, strings.HasPrefix(info.Name, "ica-export_") && strings.HasSuffix(info.Name, ".jsonl"), info.Name)
	data, _, err := biz.Client.GetFile(ctx, filePost.FileIds[0])
	require.NoError(t, err, "biz1 downloads the file with their own token")
	rep, err := export.Verify(bytes.NewReader(data))
	require.NoError(t, err)
	require.True(t, rep.OK, rep.String())
	require.Equal(t, uint64(records), rep.Records)
	require.Contains(t, filePost.Message, "| Signing key | `"+rep.Fingerprint+"` |", "the post names the key that signed the file")
	path := filepath.Join(t.TempDir(), info.Name)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	var out bytes.Buffer
	require.Equal(t, 0, run(ctx, []string{"ica", "verify", path, "--data-dir", e.Dir}, envFunc(nil), &out, &out), out.String())
	require.Contains(t, out.String(), "OK: json export verifies")
	edited := bytes.Replace(data, []byte(`"run_id":"7001"`), []byte(`"run_id":"7002"`), 1)
	require.NotEqual(t, data, edited)
	require.NoError(t, os.WriteFile(path, edited, 0o600))
	out.Reset()
	require.Equal(t, 1, run(ctx, []string{"ica", "verify", path, "--data-dir", e.Dir}, envFunc(nil), &out, &out), out.String())
	require.Contains(t, out.String(), "FAILED")
	require.Regexp(t, `record seq \d+`, out.String(), "the edited record is named")

	// The dashboard: a link only tech1 sees, opened in Chromium from another
	// site (as from Mattermost's web app).
	text := command(tech, "/ica dashboard")
	lm := regexp.MustCompile(`^\[Open the ICA dashboard\]\((http://[^)]+)\)`).FindStringSubmatch(text)
	require.NotNil(t, lm, text)
	link := lm[1]
	require.True(t, strings.HasPrefix(link, e.Base+"/"), "the link points at ICA_PUBLIC_URL: %s", link)
	clock.Jump(dashboard.DefaultCacheTTL)
	b := chromium.Start(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>Mattermost</title><link rel="icon" href="data:,"></head><body><a id="open" href="%s">Open the ICA dashboard</a></body></html>`, link)
	}))
	defer page.Close()
	open := func() {
		b.Navigate(strings.Replace(page.URL, "127.0.0.1", "localhost", 1) + "/")
		b.WaitFor(`document.title === "Mattermost" && document.getElementById("open")`, e2eWait)
		b.Eval(`document.getElementById("open").click(), true`, nil)
	}
	open()
	b.WaitFor(`location.pathname === "/dashboard" && document.readyState === "complete" && document.getElementById("ledger-table")`, e2eWait)
	// The first view after the figures' lifetime starts their refresh; a
	// later one shows them.
	for deadline := time.Now().Add(e2eWait); ; {
		var rows int
		b.Eval(`document.querySelectorAll("#pending-table tbody tr").length`, &rows)
		if rows > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the dashboard shows the pending approval")
		time.Sleep(200 * time.Millisecond)
		b.Navigate(e.Base + "/dashboard")
		b.WaitFor(`location.pathname === "/dashboard" && document.readyState === "complete" && document.getElementById("ledger-table")`, e2eWait)
	}
	var facts struct {
		Title   string   `json:"title"`
		Pending []string `json:"pending"`
		Ledger  int      `json:"ledger"`
	}
	b.Eval(`({title: document.title,
	  pending: [...document.querySelectorAll("#pending-table tbody tr")].map(r => r.innerText),
	  ledger: document.querySelectorAll("#ledger-table tbody tr").length})`, &facts)
	require.Equal(t, "ICA dashboard", facts.Title)
	var header string
	b.Eval(`document.querySelector("header").innerText`, &header)
	require.Contains(t, header, "signed in as @"+tech.Username(), "the session is tech1's, as Mattermost proved")
	require.Len(t, facts.Pending, 1, "the approval waiting for biz1: %v", facts.Pending)
	require.Contains(t, facts.Pending[0], id)
	require.Equal(t, min(len(e.ledger()), 20), facts.Ledger, "the last entries of the ledger")
	require.Empty(t, b.TakeProblems(), "no console errors")
	b.Screenshot(filepath.Join(e2eArtifacts(t), "dashboard.png"))
	// The link works once.
	b.Call("Network.clearBrowserCookies", nil)
	open()
	b.WaitFor(`document.readyState === "complete" && !document.getElementById("continue") && document.body.innerText.includes("already used")`, e2eWait)
	b.TakeProblems()
	var logged bool
	for _, l := range e.ledger() {
		logged = logged || l.Kind == ica.KindSession+"link_used"
	}
	require.True(t, logged, "using the link is a ledger entry")
}

// TestE2E_ReminderAndExpiry: ICA's clock (which follows the real one)
// jumps: an hour before expiry the approvers of the step that waits get a
// reminder in a direct message and the card says how little time is left;
// at the deadline the card turns grey, loses its buttons (a click on one is
// refused by Mattermost), the pipeline's poll says expired, and the ledger
// records the reminder and the expiry by the scheduler.
func TestE2E_ReminderAndExpiry(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)
	techEvents, bizEvents := tech.Listen(t), biz.Listen(t)
	clock := newTickingClock(t)
	e := startE2E(t, w, e2eOptions{clock: clock})
	e.startRun("8001", w.Person(mmreal.Requester).Username())
	id := e.requestApproval("8001", 75)
	card := e.card(tech, id)
	require.Equal(t, ica.DefaultApprovalTimeout, e.approval(id).ExpiresAt.Sub(e.approval(id).CreatedAt))
	waitBotDMs(t, w, techEvents, "tech1", 1)

	// tech1 approves: the business step waits, and biz1 is asked.
	click(t, tech, card.Id, "approvetechnical")
	ephemeralOn(t, techEvents, card.Id)
	e.waitStatus(id, ica.ApprovalTechnical)
	asked := waitBotDMs(t, w, bizEvents, "biz1", 1)
	require.Contains(t, asked[0].Message, "Your business approval is requested")
	require.Contains(t, asked[0].Message, "It expires in 3h 59m.")
	e.cardWhen(tech, id, "offers the business step", func(p *model.Post) bool { return slices.Contains(buttons(p), "approvebusiness") })

	// An hour before the deadline: the reminder.
	a := e.approval(id)
	clock.Jump(a.ExpiresAt.Sub(clock.Now()) - time.Hour + time.Second)
	dms := waitBotDMs(t, w, bizEvents, "biz1", 2)
	require.Len(t, dms, 2)
	require.True(t, strings.HasPrefix(dms[1].Message, ":hourglass: Reminder: your business approval is still needed for **payments** run 8001 → **production** (approval "+id+", $75.00). It expires in 59m."), dms[1].Message)
	require.Contains(t, dms[1].Message, "/pl/"+card.Id)
	require.Len(t, botDMs(t, w, techEvents), 1, "tech1's step is done: no reminder for tech1")
	card = e.cardWhen(tech, id, "says 59 minutes are left", func(p *model.Post) bool {
		return strings.HasPrefix(field(p, "Expires"), "expires in 59m ")
	})
	require.True(t, e.approval(id).ReminderSent)

	// The deadline.
	clock.Jump(time.Hour)
	a = e.waitStatus(id, ica.ApprovalExpired)
	require.False(t, a.ExpiredAt.Before(a.ExpiresAt), "expired at %s, deadline %s", a.ExpiredAt, a.ExpiresAt)
	require.Less(t, a.ExpiredAt.Sub(a.ExpiresAt), time.Minute, "expired at %s, deadline %s", a.ExpiredAt, a.ExpiresAt)
	card = e.cardWhen(tech, id, "final, expired", func(p *model.Post) bool {
		return len(buttons(p)) == 0 && strings.Contains(p.Message, ": expired")
	})
	require.Equal(t, "#8A8A8A", attachment(t, card).Color, "grey: expired")
	require.Equal(t, "no decision before "+a.ExpiredAt.UTC().Format("2006-01-02 15:04 UTC"), field(card, "Expired"))
	require.True(t, strings.HasPrefix(field(card, "Technical approval"), "@"+tech.Username()+" at "), "the card keeps who decided")
	_, err := biz.Click(context.Background(), card.Id, "approvebusiness")
	var ae *model.AppError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 404, ae.StatusCode, "the button is gone")

	var reminders, expiries int
	for _, l := range e.ledger() {
		switch {
		case l.Subject == id && l.Kind == ica.KindApprovalReminder:
			reminders++
			require.Equal(t, "scheduler", l.Actor)
		case l.Subject == id && l.Kind == ica.KindApprovalTransition+ica.ApprovalExpired:
			expiries++
		}
	}
	require.Equal(t, 1, reminders)
	require.Equal(t, 1, expiries)
	got := e.decisions(id)
	require.Len(t, got, 2)
	require.Equal(t, ica.ActExpire, got[1].Action)
	require.Equal(t, "scheduler", got[1].Via)
	require.Len(t, botDMs(t, w, bizEvents), 2, "no DM after the expiry")
}

// TestE2E_IncidentAcknowledge: Azure Monitor's webhook (a real
// common-schema payload) opens an incident; its card appears in the
// incident channel with Acknowledge and Resolve; someone not on call is
// refused; the on-call person acknowledges, the card keeps only Resolve and
// says who; Azure's Resolved makes the card final (green, no buttons).
func TestE2E_IncidentAcknowledge(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)
	incidents := w.AddChannel(t, "incidents")
	w.Join(t, incidents, w.Bot, tech, biz)
	techEvents, bizEvents := tech.Listen(t), biz.Listen(t)
	const alertToken = "e2e-alert-token-0001"
	e := startE2E(t, w, e2eOptions{env: map[string]string{
		"ICA_INCIDENT_CHANNEL": incidents.Name, "ICA_ONCALL_USERS": tech.Username(), "ICA_ALERT_TOKEN": alertToken,
	}})
	ctx := context.Background()
	send := func(fixture string) map[string]any {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join("..", "..", "alerts", "testdata", "common", fixture))
		require.NoError(t, err)
		req, err := http.NewRequest("POST", e.Base+"/api/v1/alerts/azure-monitor", bytes.NewReader(raw))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-ICA-Alert-Token", alertToken)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		var body map[string]any
		require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
		require.Less(t, res.StatusCode, 300, "%v", body)
		return body
	}
	incident := func(id string) *ica.Incident {
		t.Helper()
		st, body := call(t, "GET", e.Base+"/api/v1/incidents/"+id, testToken, "")
		require.Equal(t, 200, st, "%v", body)
		raw, _ := json.Marshal(body)
		var inc ica.Incident
		require.NoError(t, json.Unmarshal(raw, &inc))
		return &inc
	}

	body := send("metric-static-threshold-fired.json")
	incID, _ := body["incident_id"].(string)
	require.NotEmpty(t, incID, "%v", body)
	var postID string
	require.Eventually(t, func() bool { postID = incident(incID).Card.PostID; return postID != "" }, e2eWait, 20*time.Millisecond, "the incident card is posted")
	card, err := tech.Post(ctx, postID)
	require.NoError(t, err)
	require.Equal(t, incidents.Id, card.ChannelId)
	require.Equal(t, w.Bot.ID(), card.UserId)
	require.Equal(t, incID, card.GetProp("ica_incident_id"))
	require.Equal(t, "[Sev4] test-metricAlertRule on test-storageAccount", attachment(t, card).Title)
	require.Equal(t, "open", field(card, "Status"))
	require.Equal(t, "test-RG", field(card, "Resource group"))
	require.Equal(t, []string{"incacknowledge", "incresolve"}, buttons(card))
	require.False(t, strings.HasPrefix(card.Message, "@here"), "Sev4 posts quietly")

	click(t, biz, card.Id, "incacknowledge")
	require.Equal(t, "You cannot do this: @"+biz.Username()+" is not in the on-call group.", ephemeralOn(t, bizEvents, card.Id))
	require.Equal(t, ica.IncidentOpen, incident(incID).Status)

	click(t, tech, card.Id, "incacknowledge")
	require.Equal(t, "You acknowledged incident "+incID+". It is recorded in the ledger.", ephemeralOn(t, techEvents, card.Id))
	inc := incident(incID)
	require.Equal(t, ica.IncidentAcknowledged, inc.Status)
	require.Equal(t, tech.ID(), inc.Acknowledged.UserID)
	card = func() *model.Post {
		var p *model.Post
		require.Eventually(t, func() bool {
			p, err = tech.Post(ctx, postID)
			return err == nil && strings.Join(buttons(p), ",") == "incresolve"
		}, e2eWait, 50*time.Millisecond, "the card keeps only Resolve")
		return p
	}()
	require.Equal(t, "acknowledged", field(card, "Status"))
	require.True(t, strings.HasPrefix(field(card, "Acknowledged"), "@"+tech.Username()+" at "), field(card, "Acknowledged"))

	send("metric-static-threshold-resolved.json")
	require.Eventually(t, func() bool { return incident(incID).Status == ica.IncidentResolved }, e2eWait, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		card, err = tech.Post(ctx, postID)
		return err == nil && len(buttons(card)) == 0 && field(card, "Status") == "resolved"
	}, e2eWait, 50*time.Millisecond, "Azure's Resolved makes the card final")
	require.Equal(t, "#2E8B57", attachment(t, card).Color)
	require.True(t, strings.HasPrefix(field(card, "Resolved"), "Azure Monitor: the alert condition cleared at "), field(card, "Resolved"))

	var acks int
	for _, l := range e.ledger() {
		if l.Subject == incID && l.Kind == ica.KindIncident+ica.IncidentAcknowledged {
			acks++
			require.Equal(t, "mattermost:"+tech.Username(), l.Actor)
			require.Contains(t, string(l.Data), tech.ID())
		}
	}
	require.Equal(t, 1, acks, "the acknowledgement is in the ledger once")
}

// TestE2E_TwoLedgersOneBot: two ICAs (staging and production, each with its
// own ledger) share one bot account and one channel, and each asks for
// approval A-1 of a run 9001: two cards, one per ledger, each naming its
// ICA; clicks on each card reach the ICA that drew it and change only its
// ledger; each ICA's DM links to its own card.
func TestE2E_TwoLedgersOneBot(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	tech := w.Person(mmreal.Tech1)
	techEvents := tech.Listen(t)
	staging := startE2E(t, w, e2eOptions{env: map[string]string{"ICA_INSTANCE_NAME": "staging"}})
	production := startE2E(t, w, e2eOptions{env: map[string]string{"ICA_INSTANCE_NAME": "production"}})
	// One after the other: each ICA's DM to tech1 is then the only request
	// of the shared bot at that moment. Concurrent, one of them may be
	// refused by Mattermost for minutes (see bot.sendDM), which a unit test
	// of the bot covers.
	for i, e := range []*e2eICA{staging, production} {
		e.startRun("9001", w.Person(mmreal.Requester).Username())
		require.Equal(t, "A-1", e.requestApproval("9001", 10), "approval ids restart at A-1 in every ledger")
		e.card(tech, "A-1")
		waitBotDMs(t, w, techEvents, "tech1", i+1)
	}
	stagingCard, productionCard := staging.card(tech, "A-1"), production.card(tech, "A-1")
	require.NotEqual(t, stagingCard.Id, productionCard.Id, "two cards")
	require.Equal(t, "A-1", stagingCard.GetProp("ica_approval_id"))
	require.Equal(t, "A-1", productionCard.GetProp("ica_approval_id"))
	require.NotEqual(t, stagingCard.GetProp("ica_ledger_id"), productionCard.GetProp("ica_ledger_id"), "each card names its ledger")
	require.Equal(t, "ICA staging · ledger-recorded decision", attachment(t, stagingCard).Footer)
	require.Equal(t, "ICA production · ledger-recorded decision", attachment(t, productionCard).Footer)
	posts, err := tech.Posts(context.Background(), w.Channel.Id)
	require.NoError(t, err)
	var cards []string
	for _, p := range posts {
		if p.UserId == w.Bot.ID() && p.GetProp("ica_approval_id") == "A-1" {
			cards = append(cards, p.Id)
		}
	}
	require.ElementsMatch(t, []string{stagingCard.Id, productionCard.Id}, cards, "one card per ledger, no more")
	dms := botDMs(t, w, techEvents)
	require.Len(t, dms, 2)
	var links []string
	for _, d := range dms {
		links = append(links, d.Message[strings.LastIndex(d.Message, "/pl/")+4:])
	}
	require.ElementsMatch(t, []string{stagingCard.Id, productionCard.Id}, links, "each DM links to its own ICA's card")

	// tech1 approves on the staging card: only staging's A-1 moves.
	click(t, tech, stagingCard.Id, "approvetechnical")
	require.Equal(t, "You gave the technical approval for A-1. It is recorded in the ledger.", ephemeralOn(t, techEvents, stagingCard.Id))
	require.Equal(t, ica.ApprovalTechnical, staging.approval("A-1").Status)
	require.Equal(t, ica.ApprovalPending, production.approval("A-1").Status)
	staging.cardWhen(tech, "A-1", "offers the business step", func(p *model.Post) bool { return slices.Contains(buttons(p), "approvebusiness") })
	productionCard, err = tech.Post(context.Background(), productionCard.Id)
	require.NoError(t, err)
	require.Equal(t, []string{"approvetechnical", "reject"}, buttons(productionCard), "the other ledger's card is untouched")

	// tech1 rejects on the production card: the dialog is production's.
	click(t, tech, productionCard.Id, "reject")
	d := techEvents.NextDialog(t, e2eWait)
	require.Equal(t, production.Base+"/mattermost/dialogs", d.URL)
	resp, _, err := tech.SubmitDialog(context.Background(), model.SubmitDialogRequest{URL: d.URL, CallbackId: d.Dialog.CallbackId,
		State: d.Dialog.State, ChannelId: w.Channel.Id, TeamId: w.Team.Id, Submission: map[string]any{"reason": "not on a Friday"}})
	require.NoError(t, err)
	require.Empty(t, resp.Error)
	// The same state sent to the other ICA is not its dialog.
	resp, _, err = tech.SubmitDialog(context.Background(), model.SubmitDialogRequest{URL: staging.Base + "/mattermost/dialogs", CallbackId: d.Dialog.CallbackId,
		State: d.Dialog.State, ChannelId: w.Channel.Id, TeamId: w.Team.Id, Submission: map[string]any{"reason": "not on a Friday"}})
	require.NoError(t, err)
	require.Equal(t, "this dialog was not opened by ICA", resp.Error, "production's dialog means nothing to staging")
	require.Equal(t, ica.ApprovalRejected, production.approval("A-1").Status)
	require.Equal(t, ica.ApprovalTechnical, staging.approval("A-1").Status)
	production.cardWhen(tech, "A-1", "final, rejected", func(p *model.Post) bool { return len(buttons(p)) == 0 && strings.Contains(p.Message, ": rejected") })
	stagingCard, err = tech.Post(context.Background(), stagingCard.Id)
	require.NoError(t, err)
	require.Equal(t, []string{"approvebusiness", "approvebusinessdeferred", "reject"}, buttons(stagingCard))

	require.Len(t, staging.decisions("A-1"), 1)
	require.Equal(t, ica.ActApproveTechnical, staging.decisions("A-1")[0].Action)
	require.Len(t, production.decisions("A-1"), 1)
	require.Equal(t, ica.ActReject, production.decisions("A-1")[0].Action)
	for _, e := range []*e2eICA{staging, production} {
		require.NotContains(t, e.Logs.String(), "refused Mattermost action", "every click reached the ICA whose card it was")
	}
}

// outage is the scenario of a Mattermost that ICA cannot reach for a
// while during approvals: before it, A-1's card is posted and tech1
// approves; during it, A-2 and A-3 are requested and are
// bypassed (break-glass), so cards, card updates, announcements and DMs
// wait in the outbox; after it, every card and update arrives once, in
// order. How Mattermost goes away differs (a cut proxy, a real restart).
type outage struct {
	t          *testing.T
	w          *mmreal.World
	e          *e2eICA
	a1, a2, a3 string
	card1      *model.Post
	// techDMs, when set, is tech1's websocket: before() waits for the DM
	// that asks tech1 to approve before tech1 clicks (the bot skips a DM
	// whose step was decided meanwhile), and counts them in dmsBefore.
	techDMs   *mmreal.Events
	dmsBefore int
}

func (o *outage) before() {
	t, e := o.t, o.e
	tech := o.w.Person(mmreal.Tech1)
	e.startRun("r1", o.w.Person(mmreal.Requester).Username())
	o.a1 = e.requestApproval("r1", 10)
	o.card1 = e.card(tech, o.a1)
	if o.techDMs != nil {
		o.dmsBefore = len(waitBotDMs(t, o.w, o.techDMs, "tech1", 1))
	}
	click(t, tech, o.card1.Id, "approvetechnical")
	e.waitStatus(o.a1, ica.ApprovalTechnical)
	o.card1 = e.cardWhen(tech, o.a1, "offers the business step", func(p *model.Post) bool { return slices.Contains(buttons(p), "approvebusiness") })
	require.Eventually(t, func() bool { return outboxEmpty(t, e) }, e2eWait, 50*time.Millisecond, "everything is delivered before the outage")
}

// during acts while Mattermost is away: the pipeline API keeps working.
func (o *outage) during() {
	t, e := o.t, o.e
	e.startRun("r2", o.w.Person(mmreal.Requester).Username())
	o.a2 = e.requestApproval("r2", 20)
	e.startRun("r3", o.w.Person(mmreal.Requester).Username())
	o.a3 = e.requestApproval("r3", 30)
	for _, id := range []string{o.a1, o.a2} {
		st, body := call(t, "POST", e.Base+"/api/v1/approvals/"+id+"/bypass", breakglassToken, `{"reason":"hotfix while chat is down"}`)
		require.Equal(t, 200, st, "%v", body)
	}
	require.Equal(t, ica.ApprovalBypassed, e.approval(o.a1).Status)
	require.Equal(t, ica.ApprovalBypassed, e.approval(o.a2).Status)
	require.Empty(t, e.approval(o.a2).Card.PostID, "no card can be posted yet")
	require.Empty(t, e.approval(o.a3).Card.PostID)
	require.False(t, outboxEmpty(t, e), "the cards wait in the outbox")
}

// after waits for the outbox to drain and checks what people see, through
// the server's API: one card per approval, in its final state, and one
// announcement per bypass posted after its card's last update.
func (o *outage) after() {
	t, e, w := o.t, o.e, o.w
	tech := w.Person(mmreal.Tech1)
	ctx := context.Background()
	// Delivery resumes on the outbox's backoff (1 s doubling, with jitter).
	require.Eventually(t, func() bool { return outboxEmpty(t, e) }, 2*time.Minute, 100*time.Millisecond,
		"the outbox drains after Mattermost is back:\n%s", tail(e.Logs.String(), 30))
	cards := map[string]*model.Post{}
	for _, id := range []string{o.a1, o.a2, o.a3} {
		cards[id] = e.card(tech, id)
	}
	require.Equal(t, o.card1.Id, cards[o.a1].Id, "A-1 keeps its card")
	posts, err := tech.Posts(ctx, w.Channel.Id)
	require.NoError(t, err)
	perApproval := map[string]int{}
	announced := map[string][]*model.Post{}
	for _, p := range posts {
		if p.UserId != w.Bot.ID() {
			continue
		}
		if id, ok := p.GetProp("ica_approval_id").(string); ok {
			perApproval[id]++
			continue
		}
		for _, id := range []string{o.a1, o.a2, o.a3} {
			if strings.Contains(p.Message, "Break-glass bypass of approval "+id+"\n") {
				announced[id] = append(announced[id], p)
			}
		}
	}
	require.Equal(t, map[string]int{o.a1: 1, o.a2: 1, o.a3: 1}, perApproval, "every card arrives once")
	for _, id := range []string{o.a1, o.a2} {
		c := cards[id]
		require.Empty(t, buttons(c), "%s: final", id)
		require.Equal(t, "#FF0000", attachment(t, c).Color, "%s: bright red, bypassed", id)
		require.True(t, strings.HasSuffix(field(c, "Break-glass bypass"), ": “hotfix while chat is down”"), field(c, "Break-glass bypass"))
		require.Len(t, announced[id], 1, "%s: announced once", id)
		require.Contains(t, announced[id][0].Message, "/pl/"+c.Id, "the announcement links to the card")
		require.GreaterOrEqual(t, announced[id][0].CreateAt, c.EditAt, "%s: announced after its card's last update", id)
	}
	require.Equal(t, field(cards[o.a1], "Technical approval")[:len(tech.Username())+1], "@"+tech.Username(), "A-1 keeps tech1's decision")
	require.Equal(t, []string{"approvetechnical", "reject"}, buttons(cards[o.a3]), "A-3 waits for its technical approval")
	require.Empty(t, announced[o.a3])
	got := e.decisions(o.a1)
	require.Len(t, got, 2)
	require.Equal(t, ica.ApprovalBypassed, got[1].To)
	require.Equal(t, "breakglass", got[1].Via)
}

// outboxEmpty reports whether ICA has delivered everything (its metrics'
// outbox depth).
func outboxEmpty(t *testing.T, e *e2eICA) bool {
	t.Helper()
	res, err := http.Get(metricsURL(t, e.Logs))
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "ica_outbox_depth") && !strings.HasSuffix(line, " 0") {
			return false
		}
	}
	return true
}

// TestE2E_MattermostOutage: ICA loses Mattermost (a proxy between them is
// cut; Mattermost can still call ICA) during approvals. Meanwhile a click
// from someone ICA cannot look up is answered with a message that asks
// them to try again, and nothing changes; the pipeline API works. Once the
// proxy is back every card and update arrives once and in order, as tech1's
// websocket shows: a card is posted before it is edited, and an
// announcement comes after its card's last edit.
func TestE2E_MattermostOutage(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	tech, requester := w.Person(mmreal.Tech1), w.Person(mmreal.Requester)
	techEvents, reqEvents := tech.Listen(t), requester.Listen(t)
	proxy := newTCPProxy(t, strings.TrimPrefix(w.URL, "http://"))
	e := startE2E(t, w, e2eOptions{mattermostURL: proxy.URL(), env: map[string]string{"ICA_BREAKGLASS_TOKENS": "oncall=" + breakglassToken}})
	o := &outage{t: t, w: w, e: e, techDMs: techEvents}
	o.before()
	dmsBefore := o.dmsBefore
	cut := len(techEvents.All())

	proxy.SetDown(true)
	click(t, requester, o.card1.Id, "approvebusiness")
	require.Equal(t, "ICA could not reach Mattermost to check who you are; try again.", ephemeralOn(t, reqEvents, o.card1.Id))
	require.Equal(t, ica.ApprovalTechnical, e.approval(o.a1).Status, "nothing changed")
	o.during()
	time.Sleep(3 * time.Second) // a few failed deliveries
	require.Contains(t, e.Logs.String(), "outbox: delivery failed, will retry")
	proxy.SetDown(false)
	o.after()

	// What tech1's websocket saw after the cut, per post, in order.
	type seen struct {
		kind   model.WebsocketEventType
		status string
	}
	byPost := map[string][]seen{}
	var order []string // post ids as their events came
	for _, ev := range techEvents.All()[cut:] {
		if ev.EventType() != model.WebsocketEventPosted && ev.EventType() != model.WebsocketEventPostEdited {
			continue
		}
		p := mmreal.EventPost(t, ev)
		if p.UserId != w.Bot.ID() || ev.GetData()["channel_type"] == string(model.ChannelTypeDirect) {
			continue
		}
		st := p.Message
		if id, ok := p.GetProp("ica_approval_id").(string); ok {
			st = id + ": " + st[strings.LastIndex(st, ": ")+2:]
		}
		byPost[p.Id] = append(byPost[p.Id], seen{ev.EventType(), st})
		order = append(order, p.Id)
	}
	card := func(id string) string { return e.approval(id).Card.PostID }
	require.Equal(t, []seen{{model.WebsocketEventPostEdited, o.a1 + ": BYPASSED (break-glass)"}}, byPost[card(o.a1)], "A-1: one update, to its final state")
	require.Equal(t, seen{model.WebsocketEventPosted, o.a2 + ": BYPASSED (break-glass)"}, byPost[card(o.a2)][0], "A-2: posted first, in its state now")
	for _, s := range byPost[card(o.a2)][1:] {
		require.Equal(t, seen{model.WebsocketEventPostEdited, o.a2 + ": BYPASSED (break-glass)"}, s, "A-2: then only edits to the same state")
	}
	require.Equal(t, []seen{{model.WebsocketEventPosted, o.a3 + ": waiting for technical approval"}}, byPost[card(o.a3)], "A-3: posted once")
	lastIndex := func(postID string) int { return slices.Index(order, postID) + len(byPost[postID]) - 1 }
	for _, id := range []string{o.a1, o.a2} {
		var ann string
		for pid, s := range byPost {
			if strings.Contains(s[0].status, "Break-glass bypass of approval "+id+"\n") {
				require.Len(t, s, 1)
				ann = pid
			}
		}
		require.NotEmpty(t, ann, "%s announced", id)
		require.Greater(t, slices.Index(order, ann), lastIndex(card(id)), "%s: the announcement after the card's updates", id)
	}
	// tech1 is asked about A-3 (A-2 was decided before its card could be
	// posted: no DM for it).
	dms := waitBotDMs(t, w, techEvents, "tech1", dmsBefore+1)
	require.Len(t, dms, dmsBefore+1)
	require.Contains(t, dms[dmsBefore].Message, "(approval "+o.a3+", $30.00)")
}

// TestE2E_MattermostRestart is the outage with the real server stopped
// and started again (scripts/mattermost.sh down, then up: same URL, same
// data). It stops the server every other test uses, so it runs only when
// ICA_TEST_MM_RESTART is set, alone: .ci/run runs it as its own step after
// `make test`.
func TestE2E_MattermostRestart(t *testing.T) {
	if os.Getenv("ICA_TEST_MM_RESTART") == "" {
		t.Skip("SKIPPING: ICA_TEST_MM_RESTART is not set: this test stops and starts the real Mattermost, so it runs alone, " +
			"as its own step of .ci/run (ICA_TEST_MM_RESTART=1 go test -run TestE2E_MattermostRestart ./cmd/ica/)")
	}
	w := mmreal.New(t)
	script := filepath.Join("..", "..", "scripts", "mattermost.sh")
	mattermost := func(cmd string) {
		t.Helper()
		out, err := exec.Command(script, cmd).CombinedOutput()
		require.NoError(t, err, "scripts/mattermost.sh %s: %s", cmd, out)
	}
	t.Cleanup(func() { mattermost("up") }) // never leave the server down
	e := startE2E(t, w, e2eOptions{env: map[string]string{"ICA_BREAKGLASS_TOKENS": "oncall=" + breakglassToken}})
	o := &outage{t: t, w: w, e: e}
	o.before()

	mattermost("down")
	_, err := w.Person(mmreal.Tech1).Post(context.Background(), o.card1.Id)
	require.Error(t, err, "the server is down")
	o.during()
	time.Sleep(5 * time.Second) // a few failed deliveries
	require.Contains(t, e.Logs.String(), "outbox: delivery failed, will retry")
	mattermost("up")
	o.after()

	// tech1's direct messages: the request for A-1 before the restart, and
	// for A-3 after it (A-2 was decided before its card could be posted).
	tech := w.Person(mmreal.Tech1)
	dm, err := tech.DirectChannel(context.Background(), w.Bot.ID())
	require.NoError(t, err)
	var dms []*model.Post
	require.Eventually(t, func() bool {
		dms, err = tech.Posts(context.Background(), dm.Id)
		return err == nil && len(dms) >= 2
	}, e2eWait, 100*time.Millisecond, "tech1's DMs: %v", err)
	require.Len(t, dms, 2)
	require.Contains(t, dms[0].Message, "(approval "+o.a1+", $10.00)")
	require.Contains(t, dms[1].Message, "(approval "+o.a3+", $30.00)")
}
