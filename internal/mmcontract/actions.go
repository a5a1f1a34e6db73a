package mmcontract

import (
	"encoding/base64"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ica-governance/ica/internal/mmreal"
	"github.com/mattermost/mattermost/server/public/model"
)

// testActionRequest: what a click sends to the integration. No action id, no
// credentials; the context as the bot stored it; a trigger_id signed by the
// server's published key, naming the clicker.
func testActionRequest(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech := w.Person(mmreal.Tech1)
	post := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-1"))

	before := time.Now()
	res, err := tech.Click(c, post.Id, "approve")
	if err != nil || res.Status != http.StatusOK || res.TriggerID == "" {
		t.Fatalf("click: %+v %v", res, err)
	}
	calls := in.got("/actions/approve")
	if len(calls) != 1 {
		t.Fatalf("integration got %d requests, want 1", len(calls))
	}
	got := calls[0]
	for h, want := range map[string]string{"User-Agent": "Mattermost-Bot/1.1", "Accept": "application/json", "Content-Type": "application/json"} {
		if v := got.Header.Get(h); v != want {
			t.Errorf("header %s = %q, want %q", h, v, want)
		}
	}
	if v := got.Header.Get("Authorization"); v != "" {
		t.Errorf("the click carries Authorization %q", v)
	}
	var raw map[string]any
	got.json(t, &raw)
	for k := range raw {
		if strings.Contains(k, "action") {
			t.Errorf("the request names the action: %s = %v", k, raw[k])
		}
	}
	var req model.PostActionIntegrationRequest
	got.json(t, &req)
	want := model.PostActionIntegrationRequest{
		UserId: tech.ID(), UserName: tech.Username(), ChannelId: w.Channel.Id, ChannelName: mmreal.ChannelName,
		TeamId: w.Team.Id, TeamName: w.Team.Name, PostId: post.Id, TriggerId: req.TriggerId,
		Type: model.PostActionTypeButton, Context: map[string]any{"approval_id": "A-1", "action": "approve", "token": "secret-A-1"},
	}
	if !reflect.DeepEqual(req, want) {
		t.Errorf("action request\n got %+v\nwant %+v", req, want)
	}

	key := mmreal.SigningKey(t, w.URL)
	tr, err := mmreal.VerifyTrigger(key, req.TriggerId)
	if err != nil {
		t.Fatalf("trigger_id does not verify against the published key: %v", err)
	}
	if tr.UserID != tech.ID() || tr.ClientID != res.TriggerID {
		t.Errorf("trigger names user %s client %s; want %s and the click answer's %s", tr.UserID, tr.ClientID, tech.ID(), res.TriggerID)
	}
	if d := tr.At.Sub(before); d < -time.Second || d > 30*time.Second {
		t.Errorf("trigger time %v is %v from the click", tr.At, d)
	}
	// A trigger naming someone else does not verify.
	rawTrigger, _ := base64.StdEncoding.DecodeString(req.TriggerId)
	forged := strings.Replace(string(rawTrigger), tech.ID(), w.Person(mmreal.Biz1).ID(), 1)
	if _, err := mmreal.VerifyTrigger(key, base64.StdEncoding.EncodeToString([]byte(forged))); err == nil {
		t.Error("a trigger_id with another user id verified")
	}

	// A second click has its own trigger.
	res2, err := tech.Click(c, post.Id, "approve")
	if err != nil || res2.TriggerID == res.TriggerID {
		t.Fatalf("second click: %+v %v (first trigger %s)", res2, err, res.TriggerID)
	}

	// A message menu: the choice arrives in context.selected_option.
	menu := &model.Post{ChannelId: w.Channel.Id, Message: "Pick a target"}
	menu.AddProp(model.PostPropsAttachments, []*model.MessageAttachment{{Actions: []*model.PostAction{{
		Id: "target", Name: "Target", Type: model.PostActionTypeSelect,
		Options:     []*model.PostActionOptions{{Text: "staging", Value: "staging"}, {Text: "production", Value: "production"}},
		Integration: &model.PostActionIntegration{URL: in.URL + "/actions/target", Context: map[string]any{"approval_id": "A-1"}},
	}}}})
	menu = mustPost(t, w.Bot.Client, menu)
	if _, err := tech.Select(c, menu.Id, "target", "staging"); err != nil {
		t.Fatalf("select: %v", err)
	}
	var sel model.PostActionIntegrationRequest
	in.got("/actions/target")[0].json(t, &sel)
	if sel.Type != model.PostActionTypeSelect || sel.Context["selected_option"] != "staging" || sel.Context["approval_id"] != "A-1" {
		t.Errorf("select request: type %q context %v", sel.Type, sel.Context)
	}
}

// testUpdateKeepsOrRemovesButtons: an update with only a message keeps the
// old props and buttons; an update with props replaces them (from_bot is
// dropped), and a click on a removed button is 404.
func testUpdateKeepsOrRemovesButtons(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)
	events := biz.Listen(t)
	post := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-1"))

	in.answer("/actions/approve", http.StatusOK, `{"update":{"message":"Approved by tech1"}}`)
	if _, err := tech.Click(c, post.Id, "approve"); err != nil {
		t.Fatalf("click approve: %v", err)
	}
	got, err := w.Bot.Post(c, post.Id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Message != "Approved by tech1" || got.EditAt == 0 {
		t.Errorf("after a message update: %q edit_at %d", got.Message, got.EditAt)
	}
	if ids := actionIDs(got); !slices.Equal(ids, []string{"approve", "reject"}) || got.GetProp("from_bot") != "true" {
		t.Errorf("a message-only update changed the props: actions %v from_bot %v", ids, got.GetProp("from_bot"))
	}
	ev := events.Next(t, wait, "post_edited", mmreal.PostEvent(model.WebsocketEventPostEdited, post.Id))
	if p := mmreal.EventPost(t, ev); p.Message != "Approved by tech1" || len(actionIDs(p)) != 2 {
		t.Errorf("post_edited carries %q with actions %v", p.Message, actionIDs(p))
	}

	in.answer("/actions/reject", http.StatusOK, `{"update":{"message":"Rejected","props":{"attachments":[{"title":"Approval A-1","text":"Rejected by tech1"}]}}}`)
	if _, err := tech.Click(c, post.Id, "reject"); err != nil {
		t.Fatalf("click reject: %v", err)
	}
	got, err = w.Bot.Post(c, post.Id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Message != "Rejected" || len(actionIDs(got)) != 0 || len(got.Attachments()) != 1 || got.Attachments()[0].Text != "Rejected by tech1" {
		t.Errorf("after a props update: %q actions %v attachments %+v", got.Message, actionIDs(got), got.Attachments())
	}
	if v := got.GetProp("from_bot"); v != nil {
		t.Errorf("a props update kept from_bot = %v", v)
	}
	events.Next(t, wait, "second post_edited", mmreal.PostEvent(model.WebsocketEventPostEdited, post.Id))

	_, err = tech.Click(c, post.Id, "approve")
	wantAppError(t, "click on a removed button", err, http.StatusNotFound, "api.post.do_action.action_id.app_error")
	if n := len(in.got("/actions/approve")); n != 1 {
		t.Errorf("the removed button reached the integration: %d calls", n)
	}

	// An update with an empty message and props empties the message too.
	post2 := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-2"))
	in.answer("/actions/approve", http.StatusOK, `{"update":{"props":{"attachments":[{"text":"done"}]}}}`)
	if _, err := tech.Click(c, post2.Id, "approve"); err != nil {
		t.Fatal(err)
	}
	if got, _ := w.Bot.Post(c, post2.Id); got == nil || got.Message != "" {
		t.Errorf("props-only update: message %q, want it emptied", got.Message)
	}
}

// testClickRefusals: what Mattermost refuses itself, before the integration.
func testClickRefusals(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech := w.Person(mmreal.Tech1)
	post := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-1"))

	_, err := w.Person(mmreal.Outsider).Click(c, post.Id, "approve")
	wantAppError(t, "outsider's click", err, http.StatusForbidden, "api.context.permissions.app_error")
	_, err = tech.Click(c, post.Id, "nosuchaction")
	wantAppError(t, "unknown action", err, http.StatusNotFound, "api.post.do_action.action_id.app_error")
	_, err = tech.Click(c, model.NewId(), "approve")
	wantAppError(t, "unknown post", err, http.StatusForbidden, "api.context.permissions.app_error")
	plain := mustPost(t, w.Bot.Client, &model.Post{ChannelId: w.Channel.Id, Message: "no buttons"})
	_, err = tech.Click(c, plain.Id, "approve")
	wantAppError(t, "post without buttons", err, http.StatusNotFound, "api.post.do_action.action_id.app_error")
	// Action ids are letters and digits: anything else is not even routed.
	_, err = tech.Click(c, post.Id, "approve_technical")
	wantAppError(t, "action id with an underscore", err, http.StatusNotFound, "api.context.404.app_error")
	if n := len(in.got("/actions/approve")); n != 0 {
		t.Errorf("refused clicks reached the integration %d times", n)
	}
	// Leaving the channel ends the right to click.
	biz := w.Person(mmreal.Biz1)
	if _, err := biz.Click(c, post.Id, "approve"); err != nil {
		t.Fatalf("biz1's click: %v", err)
	}
	if _, err := biz.Client.RemoveUserFromChannel(c, w.Channel.Id, biz.ID()); err != nil {
		t.Fatalf("biz1 leaves: %v", err)
	}
	_, err = biz.Click(c, post.Id, "approve")
	wantAppError(t, "click after leaving", err, http.StatusForbidden, "api.context.permissions.app_error")
}

// testBotCanClick: the bot may click its own buttons.
func testBotCanClick(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	post := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-1"))
	if _, err := w.Bot.Click(c, post.Id, "approve"); err != nil {
		t.Fatalf("the bot's click: %v", err)
	}
	var req model.PostActionIntegrationRequest
	calls := in.got("/actions/approve")
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	calls[0].json(t, &req)
	if req.UserId != w.Bot.ID() || req.UserName != w.Bot.Username() {
		t.Errorf("bot's click names %s %s", req.UserId, req.UserName)
	}
}

// testEveryClickDelivered: repeats included, each with its own trigger.
func testEveryClickDelivered(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)
	post := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-1"))
	for _, p := range []*mmreal.Person{tech, tech, biz, tech} {
		if _, err := p.Click(c, post.Id, "approve"); err != nil {
			t.Fatalf("%s clicks: %v", p.Username(), err)
		}
	}
	if _, err := tech.Click(c, post.Id, "reject"); err != nil {
		t.Fatal(err)
	}
	calls := in.got("/actions/approve")
	var users []string
	triggers := map[string]bool{}
	for _, cl := range calls {
		var req model.PostActionIntegrationRequest
		cl.json(t, &req)
		users = append(users, req.UserId)
		triggers[req.TriggerId] = true
	}
	if want := []string{tech.ID(), tech.ID(), biz.ID(), tech.ID()}; !slices.Equal(users, want) {
		t.Fatalf("approve clicks delivered for %v, want %v", users, want)
	}
	if len(triggers) != 4 {
		t.Errorf("%d distinct trigger ids for 4 clicks", len(triggers))
	}
	if n := len(in.got("/actions/reject")); n != 1 {
		t.Errorf("reject delivered %d times", n)
	}
}

// testIntegrationFailures: anything but HTTP 200 with JSON (or nothing) is
// a client 400 and changes nothing.
func testIntegrationFailures(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech := w.Person(mmreal.Tech1)
	post := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-1"))

	for _, tc := range []struct {
		name string
		rep  reply
		ok   bool
	}{
		{"500", reply{Status: 500, Body: `{"update":{"message":"no"}}`}, false},
		{"404", reply{Status: 404, Body: `{}`}, false},
		{"201", reply{Status: 201, Body: `{"update":{"message":"no"}}`}, false},
		{"not JSON", reply{Status: 200, Body: "approved", Type: "text/plain"}, false},
		{"empty body", reply{Status: 200, Body: ""}, true},
		{"empty object", reply{Status: 200, Body: "{}"}, true},
	} {
		in.on("/actions/approve", func(call) reply { return tc.rep })
		_, err := tech.Click(c, post.Id, "approve")
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v, want 200", tc.name, err)
			}
			continue
		}
		if st := statusOf(err); st != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", tc.name, err)
			continue
		}
		wantAppError(t, tc.name, err, http.StatusBadRequest, "api.post.do_action.action_integration.app_error")
	}
	if got, _ := w.Bot.Post(c, post.Id); got == nil || got.Message != "Approval request A-1" || got.EditAt != 0 {
		t.Errorf("failed replies changed the post: %+v", got)
	}

	// An integration that is not there.
	dead := newIntegration(t)
	deadPost := mustPost(t, w.Bot.Client, card(w.Channel.Id, dead.URL, "A-2"))
	dead.close()
	_, err := tech.Click(c, deadPost.Id, "approve")
	wantAppError(t, "unreachable integration", err, http.StatusBadRequest, "api.post.do_action.action_integration.app_error")
}

// testEphemeralOnlyToClicker: ephemeral_text goes to the clicker alone, over
// the websocket, as a system_ephemeral post under the clicked post; it is
// not stored.
func testEphemeralOnlyToClicker(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)
	techEvents, bizEvents := tech.Listen(t), biz.Listen(t)
	post := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-1"))

	in.answer("/actions/approve", http.StatusOK, `{"ephemeral_text":"Only you can see this: <https://example.com|the run>"}`)
	if _, err := tech.Click(c, post.Id, "approve"); err != nil {
		t.Fatal(err)
	}
	eph := techEvents.NextEphemeral(t, wait)
	if eph.Message != "Only you can see this: [the run](https://example.com)" || eph.RootId != post.Id ||
		eph.ChannelId != w.Channel.Id || eph.UserId != tech.ID() || eph.Type != model.PostTypeEphemeral {
		t.Errorf("ephemeral post = %+v", eph)
	}
	quiet(t, w, bizEvents)
	if n := bizEvents.Count(mmreal.IsType(model.WebsocketEventEphemeralMessage)); n != 0 {
		t.Errorf("biz1 received %d ephemeral messages", n)
	}
	posts, err := tech.Posts(c, w.Channel.Id)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range posts {
		if strings.Contains(p.Message, "Only you") {
			t.Errorf("the ephemeral text was stored as post %s", p.Id)
		}
	}

	// With skip_slack_parsing the text is kept as sent.
	in.answer("/actions/reject", http.StatusOK, `{"ephemeral_text":"<https://example.com|raw>","skip_slack_parsing":true}`)
	if _, err := tech.Click(c, post.Id, "reject"); err != nil {
		t.Fatal(err)
	}
	if eph := techEvents.NextEphemeral(t, wait); eph.Message != "<https://example.com|raw>" {
		t.Errorf("skip_slack_parsing ephemeral = %q", eph.Message)
	}
}

// openDialog calls POST /api/v4/actions/dialogs/open with no credentials:
// the trigger_id is the only one.
func openDialog(t *testing.T, w *mmreal.World, req model.OpenDialogRequest) (int, error) {
	t.Helper()
	p := mmreal.NewPerson(w.URL, &model.User{}, "")
	status, _, err := p.Do(ctx(t), http.MethodPost, "/api/v4/actions/dialogs/open", req)
	return status, err
}

// testDialogOpen: a click's trigger_id opens a dialog for the clicker (and
// only them) within 3 s, more than once; an older, forged or tampered
// trigger is refused.
func testDialogOpen(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)
	techEvents, bizEvents := tech.Listen(t), biz.Listen(t)
	post := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-1"))

	clicked := time.Now()
	res, err := tech.Click(c, post.Id, "reject")
	if err != nil {
		t.Fatal(err)
	}
	var req model.PostActionIntegrationRequest
	in.got("/actions/reject")[0].json(t, &req)
	if _, err := mmreal.VerifyTrigger(mmreal.SigningKey(t, w.URL), req.TriggerId); err != nil {
		t.Fatal(err)
	}
	dialog := model.OpenDialogRequest{
		TriggerId: req.TriggerId, URL: in.URL + "/dialog",
		Dialog: model.Dialog{
			CallbackId: "reject-A-1", Title: "Reject A-1", SubmitLabel: "Reject", State: "state-A-1", NotifyOnCancel: true,
			Elements: []model.DialogElement{{DisplayName: "Reason", Name: "reason", Type: "textarea", MaxLength: 500}},
		},
	}
	if status, err := openDialog(t, w, dialog); err != nil || status != http.StatusOK {
		t.Fatalf("dialogs/open with a fresh trigger: %d %v", status, err)
	}
	got := techEvents.NextDialog(t, wait)
	if got.TriggerId != res.TriggerID || got.URL != dialog.URL || got.Dialog.CallbackId != "reject-A-1" ||
		got.Dialog.State != "state-A-1" || got.Dialog.Title != "Reject A-1" || len(got.Dialog.Elements) != 1 || !got.Dialog.NotifyOnCancel {
		t.Errorf("open_dialog event = %+v", got)
	}
	// Within 3 s the same trigger opens another dialog.
	if status, err := openDialog(t, w, dialog); err != nil || status != http.StatusOK {
		t.Errorf("second dialogs/open with the same trigger: %d %v", status, err)
	}
	techEvents.NextDialog(t, wait)
	quiet(t, w, bizEvents)
	if n := bizEvents.Count(mmreal.IsType(model.WebsocketEventOpenDialog)); n != 0 {
		t.Errorf("biz1 got %d open_dialog events", n)
	}

	// Someone else's user id in the trigger breaks the signature.
	raw, _ := base64.StdEncoding.DecodeString(req.TriggerId)
	forged := dialog
	forged.TriggerId = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(raw), tech.ID(), biz.ID(), 1)))
	_, err = openDialog(t, w, forged)
	wantAppError(t, "forged trigger", err, http.StatusBadRequest, "interactive_message.decode_trigger_id.verify_signature_failed")
	notBase64 := dialog
	notBase64.TriggerId = "not base64!"
	_, err = openDialog(t, w, notBase64)
	wantAppError(t, "garbage trigger", err, http.StatusBadRequest, "interactive_message.decode_trigger_id.base64_decode_failed")
	noURL := dialog
	noURL.URL = ""
	_, err = openDialog(t, w, noURL)
	wantAppError(t, "dialog without url", err, http.StatusBadRequest, "")

	// After 3 s the trigger is refused.
	peer.Wait(t, w, 3*time.Second+300*time.Millisecond-time.Since(clicked))
	_, err = openDialog(t, w, dialog)
	wantAppError(t, "trigger older than 3 s", err, http.StatusBadRequest, "interactive_message.decode_trigger_id.expired")
}

// testDialogSubmit: a submission is whatever the client sends (url,
// callback_id, state, submission) with user_id set from the session; the
// integration's errors come back to the client.
func testDialogSubmit(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)

	forged := model.SubmitDialogRequest{
		URL: in.URL + "/dialog", CallbackId: "reject-A-1", State: `{"approval_id":"A-1"}`,
		UserId: tech.ID(), ChannelId: w.Channel.Id, TeamId: w.Team.Id,
		Submission: map[string]any{"reason": "forged", "notify": true},
	}
	resp, status, err := biz.SubmitDialog(c, forged)
	if err != nil || status != http.StatusOK || len(resp.Errors) != 0 || resp.Error != "" {
		t.Fatalf("submit: %d %+v %v", status, resp, err)
	}
	calls := in.got("/dialog")
	if len(calls) != 1 {
		t.Fatalf("integration got %d submissions", len(calls))
	}
	if v := calls[0].Header.Get("Authorization"); v != "" {
		t.Errorf("submission carries Authorization %q", v)
	}
	if v := calls[0].Header.Get("User-Agent"); v != "Mattermost-Bot/1.1" {
		t.Errorf("submission User-Agent %q", v)
	}
	var raw map[string]any
	calls[0].json(t, &raw)
	for _, k := range []string{"trigger_id", "post_id"} {
		if _, ok := raw[k]; ok {
			t.Errorf("submission has %s", k)
		}
	}
	if u, ok := raw["url"]; ok && u != "" {
		t.Errorf("submission forwards url %v", u)
	}
	var sub model.SubmitDialogRequest
	calls[0].json(t, &sub)
	want := model.SubmitDialogRequest{
		Type: "dialog_submission", CallbackId: "reject-A-1", State: `{"approval_id":"A-1"}`,
		UserId: biz.ID(), ChannelId: w.Channel.Id, TeamId: w.Team.Id,
		Submission: map[string]any{"reason": "forged", "notify": true},
	}
	if !reflect.DeepEqual(sub, want) {
		t.Errorf("submission\n got %+v\nwant %+v", sub, want)
	}

	// Field errors come back to the client.
	in.answer("/dialog", http.StatusOK, `{"errors":{"reason":"Give a reason of at least 10 characters."}}`)
	resp, _, err = tech.SubmitDialog(c, forged)
	if err != nil || resp.Errors["reason"] != "Give a reason of at least 10 characters." {
		t.Errorf("field errors: %+v %v", resp, err)
	}
	// A reply that is not JSON is taken as an empty answer.
	in.on("/dialog", func(call) reply { return reply{Status: 200, Body: "thanks", Type: "text/plain"} })
	if resp, _, err := tech.SubmitDialog(c, forged); err != nil || len(resp.Errors) != 0 {
		t.Errorf("non-JSON reply: %+v %v", resp, err)
	}
	// A failing integration is a client 400.
	in.answer("/dialog", http.StatusInternalServerError, `{}`)
	_, _, err = tech.SubmitDialog(c, forged)
	wantAppError(t, "integration 500", err, http.StatusBadRequest, "api.post.do_action.action_integration.app_error")
	in.answer("/dialog", http.StatusOK, `{}`)

	// Cancelled: forwarded as sent.
	cancel := forged
	cancel.Cancelled = true
	cancel.Submission = nil
	if _, _, err := tech.SubmitDialog(c, cancel); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	calls = in.got("/dialog")
	var cs model.SubmitDialogRequest
	calls[len(calls)-1].json(t, &cs)
	if !cs.Cancelled || cs.Submission != nil || cs.UserId != tech.ID() {
		t.Errorf("cancel forwarded as %+v", cs)
	}
	cancelWith := cancel
	cancelWith.Submission = map[string]any{"reason": "kept"}
	if _, _, err := tech.SubmitDialog(c, cancelWith); err != nil {
		t.Fatal(err)
	}
	calls = in.got("/dialog")
	calls[len(calls)-1].json(t, &cs)
	if !cs.Cancelled || cs.Submission["reason"] != "kept" {
		t.Errorf("cancel with a submission forwarded as %+v", cs)
	}

	// The server checks only that the user may read the channel and view the team.
	n := len(in.got("/dialog"))
	noChannel := forged
	noChannel.ChannelId, noChannel.TeamId = "", ""
	_, _, err = tech.SubmitDialog(c, noChannel)
	wantAppError(t, "no channel", err, http.StatusForbidden, "api.context.permissions.app_error")
	noTeam := forged
	noTeam.TeamId = ""
	_, _, err = tech.SubmitDialog(c, noTeam)
	wantAppError(t, "no team", err, http.StatusForbidden, "api.context.permissions.app_error")
	_, _, err = w.Person(mmreal.Outsider).SubmitDialog(c, forged)
	wantAppError(t, "outsider", err, http.StatusForbidden, "api.context.permissions.app_error")
	noURL := forged
	noURL.URL = ""
	_, _, err = tech.SubmitDialog(c, noURL)
	wantAppError(t, "no url", err, http.StatusBadRequest, "")
	if got := len(in.got("/dialog")); got != n {
		t.Errorf("refused submissions reached the integration (%d calls)", got-n)
	}
}

// close stops the integration's server (for "unreachable" cases).
func (in *integration) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.srv != nil {
		in.srv.Close()
	}
}

// testMemberCard: any channel member, not only a bot, can post buttons with
// an integration and a context of their choice (the props of a card, ICA's
// ones included); the answer hides the integration, the post is not marked
// from_bot, and another member's click reaches the integration with that
// context and a trigger_id genuinely signed for the clicker. So a
// trigger_id proves who clicked, never that the button is ICA's.
func testMemberCard(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)

	forged, _, err := biz.Client.CreatePost(c, card(w.Channel.Id, in.URL, "A-1"))
	if err != nil {
		t.Fatalf("biz1 posts a card: %v", err)
	}
	if forged.UserId != biz.ID() || forged.GetProp("from_bot") != nil || forged.GetProp("ica_approval_id") != "A-1" {
		t.Errorf("biz1's card: user %s from_bot %v props %v", forged.UserId, forged.GetProp("from_bot"), forged.GetProps())
	}
	for _, a := range forged.Attachments() {
		for _, act := range a.Actions {
			if act.Integration != nil {
				t.Errorf("the answer shows the integration of %s: %+v", act.Id, act.Integration)
			}
		}
	}
	if _, err := tech.Click(c, forged.Id, "approve"); err != nil {
		t.Fatalf("tech1 clicks biz1's button: %v", err)
	}
	calls := in.got("/actions/approve")
	if len(calls) != 1 {
		t.Fatalf("integration got %d requests, want 1", len(calls))
	}
	var req model.PostActionIntegrationRequest
	calls[0].json(t, &req)
	if req.UserId != tech.ID() || req.PostId != forged.Id || req.Context["token"] != "secret-A-1" || req.Context["approval_id"] != "A-1" {
		t.Errorf("click on a member's card: %+v", req)
	}
	tr, err := mmreal.VerifyTrigger(mmreal.SigningKey(t, w.URL), req.TriggerId)
	if err != nil || tr.UserID != tech.ID() {
		t.Errorf("the trigger of a click on a member's card: %+v %v", tr, err)
	}
}
