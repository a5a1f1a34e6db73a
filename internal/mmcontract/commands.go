package mmcontract

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ica-governance/ica/internal/mmreal"
	"github.com/mattermost/mattermost/server/public/model"
)

// testSlashCommand: what a custom command sends (form fields, the token
// twice, a signed trigger_id, mention fields) and what the invoking client
// and the channel see of the reply.
func testSlashCommand(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech, biz := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1)
	events := tech.Listen(t)
	token := peer.AddCommand(t, w, "icatest", in.URL+"/slash")

	in.answer("/slash", http.StatusOK, `{"response_type":"ephemeral","text":"ok"}`)
	resp, status, err := tech.Command(c, w.Channel.Id, "", "/icatest approve A-1 @"+biz.Username()+" ~"+mmreal.ChannelName)
	if err != nil || status != http.StatusOK || resp.Text != "ok" || resp.TriggerId == "" {
		t.Fatalf("command: %d %+v %v", status, resp, err)
	}
	calls := in.got("/slash")
	if len(calls) != 1 {
		t.Fatalf("integration got %d requests", len(calls))
	}
	got := calls[0]
	for h, want := range map[string]string{
		"Authorization": "Token " + token, "Content-Type": "application/x-www-form-urlencoded",
		"User-Agent": "Mattermost-Bot/1.1", "Accept": "application/json",
	} {
		if v := got.Header.Get(h); v != want {
			t.Errorf("header %s = %q, want %q", h, v, want)
		}
	}
	form, err := url.ParseQuery(string(got.Body))
	if err != nil {
		t.Fatalf("form body %q: %v", got.Body, err)
	}
	want := map[string]string{
		"channel_id": w.Channel.Id, "channel_name": mmreal.ChannelName, "command": "/icatest",
		"team_domain": w.Team.Name, "team_id": w.Team.Id, "text": "approve A-1 @" + biz.Username() + " ~" + mmreal.ChannelName,
		"token": token, "user_id": tech.ID(), "user_name": tech.Username(),
		"user_mentions": biz.Username(), "user_mentions_ids": biz.ID(),
		"channel_mentions": mmreal.ChannelName, "channel_mentions_ids": w.Channel.Id,
	}
	for k, v := range want {
		if form.Get(k) != v {
			t.Errorf("form %s = %q, want %q", k, form.Get(k), v)
		}
	}
	if ru := form.Get("response_url"); !strings.HasPrefix(ru, w.URL+"/hooks/commands/") {
		t.Errorf("response_url = %q, want under %s/hooks/commands/", ru, w.URL)
	}
	tr, err := mmreal.VerifyTrigger(mmreal.SigningKey(t, w.URL), form.Get("trigger_id"))
	if err != nil || tr.UserID != tech.ID() || tr.ClientID != resp.TriggerId {
		t.Errorf("slash trigger_id: %+v %v (answer's trigger %s)", tr, err, resp.TriggerId)
	}
	if eph := events.NextEphemeral(t, wait); eph.Message != "ok" || eph.ChannelId != w.Channel.Id {
		t.Errorf("ephemeral reply = %+v", eph)
	}
	// The command's trigger_id opens a dialog for the invoking user.
	dialog := model.OpenDialogRequest{TriggerId: form.Get("trigger_id"), URL: in.URL + "/dialog",
		Dialog: model.Dialog{CallbackId: "cb", Title: "Reject", Elements: []model.DialogElement{{DisplayName: "Reason", Name: "reason", Type: "text"}}}}
	if status, err := openDialog(t, w, dialog); err != nil || status != http.StatusOK {
		t.Fatalf("dialogs/open with a command's trigger: %d %v", status, err)
	}
	if d := events.NextDialog(t, wait); d.TriggerId != resp.TriggerId || d.Dialog.CallbackId != "cb" {
		t.Errorf("open_dialog after a command: %+v", d)
	}

	// in_channel is posted as the invoking user, marked from_webhook.
	in.answer("/slash", http.StatusOK, `{"response_type":"in_channel","text":"for everyone","username":"ICA","icon_url":"https://example.com/i.png"}`)
	if _, _, err := tech.Command(c, w.Channel.Id, "", "/icatest status"); err != nil {
		t.Fatal(err)
	}
	ev := events.Next(t, wait, "in_channel post", func(ev *model.WebSocketEvent) bool {
		if ev.EventType() != model.WebsocketEventPosted {
			return false
		}
		p := mmreal.EventPost(t, ev)
		return p.Message == "for everyone"
	})
	p := mmreal.EventPost(t, ev)
	// With user name and icon overrides off (the default), from_webhook is
	// the only prop.
	if p.UserId != tech.ID() || p.GetProp("from_webhook") != "true" || len(p.GetProps()) != 1 {
		t.Errorf("in_channel post: user %s props %v", p.UserId, p.GetProps())
	}

	// A plain-text reply is the text of an ephemeral answer.
	in.on("/slash", func(call) reply { return reply{Status: 200, Body: "plain words", Type: "text/plain"} })
	resp, _, err = tech.Command(c, w.Channel.Id, "", "/icatest help")
	if err != nil || resp.Text != "plain words" || resp.ResponseType != "" {
		t.Errorf("plain reply: %+v %v", resp, err)
	}

	// Refusals and failures.
	n := len(in.got("/slash"))
	_, _, err = w.Person(mmreal.Outsider).Command(c, w.Channel.Id, "", "/icatest status")
	wantAppError(t, "outsider", err, http.StatusForbidden, "api.context.permissions.app_error")
	if len(in.got("/slash")) != n {
		t.Error("the outsider's command reached the integration")
	}
	_, _, err = tech.Command(c, w.Channel.Id, "", "/nosuchcommand")
	wantAppError(t, "unknown command", err, http.StatusNotFound, "api.command.execute_command.not_found.app_error")
	_, _, err = tech.Command(c, w.Channel.Id, "", "icatest status")
	wantAppError(t, "no slash", err, http.StatusBadRequest, "api.command.execute_command.start.app_error")
	in.answer("/slash", http.StatusOK, "")
	_, _, err = tech.Command(c, w.Channel.Id, "", "/icatest status")
	wantAppError(t, "empty JSON reply", err, http.StatusInternalServerError, "api.command.execute_command.failed.app_error")
	in.answer("/slash", http.StatusInternalServerError, `{"text":"no"}`)
	_, status, err = tech.Command(c, w.Channel.Id, "", "/icatest status")
	if status != http.StatusInternalServerError {
		t.Errorf("integration 500: client got %d %v, want 500", status, err)
	}
}

// testResponseURL: a command's response_url takes five JSON follow-ups; the
// sixth is refused.
func testResponseURL(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	tech := w.Person(mmreal.Tech1)
	events := tech.Listen(t)
	peer.AddCommand(t, w, "icatest", in.URL+"/slash")
	in.answer("/slash", http.StatusOK, `{"text":"exporting"}`)

	if _, _, err := tech.Command(c, w.Channel.Id, "", "/icatest export"); err != nil {
		t.Fatal(err)
	}
	events.NextEphemeral(t, wait)
	form, _ := url.ParseQuery(string(in.got("/slash")[0].Body))
	hook := form.Get("response_url")

	for i := 1; i <= 5; i++ {
		body := jsonString(model.CommandResponse{ResponseType: model.CommandResponseTypeEphemeral, Text: "follow-up " + string(rune('0'+i))})
		if status, b := postJSON(t, hook, "application/json", []byte(body)); status != http.StatusOK {
			t.Fatalf("follow-up %d: %d %s", i, status, b)
		}
		if eph := events.NextEphemeral(t, wait); eph.Message != "follow-up "+string(rune('0'+i)) {
			t.Errorf("follow-up %d shown as %q", i, eph.Message)
		}
	}
	status, b := postJSON(t, hook, "application/json", []byte(`{"text":"sixth"}`))
	if status != http.StatusBadRequest || !strings.Contains(string(b), "app.command_webhook.try_use.invalid") {
		t.Errorf("sixth follow-up: %d %s, want 400 app.command_webhook.try_use.invalid", status, b)
	}

	// in_channel through the response_url is posted as the invoking user.
	if _, _, err := tech.Command(c, w.Channel.Id, "", "/icatest export"); err != nil {
		t.Fatal(err)
	}
	calls := in.got("/slash")
	form, _ = url.ParseQuery(string(calls[len(calls)-1].Body))
	if status, b := postJSON(t, form.Get("response_url"), "application/json", []byte(`{"response_type":"in_channel","text":"export ready"}`)); status != http.StatusOK {
		t.Fatalf("in_channel follow-up: %d %s", status, b)
	}
	ev := events.Next(t, wait, "in_channel follow-up", func(ev *model.WebSocketEvent) bool {
		return ev.EventType() == model.WebsocketEventPosted && mmreal.EventPost(t, ev).Message == "export ready"
	})
	if p := mmreal.EventPost(t, ev); p.UserId != tech.ID() || p.GetProp("from_webhook") != "true" || len(p.GetProps()) != 1 {
		t.Errorf("in_channel follow-up: user %s props %v", p.UserId, p.GetProps())
	}
	// An unknown hook.
	if status, _ := postJSON(t, w.URL+"/hooks/commands/"+model.NewId(), "application/json", []byte(`{"text":"x"}`)); status < 400 {
		t.Errorf("unknown response_url answered %d", status)
	}
}
