package mmtest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ica-governance/ica/bot/mmtest"
	"github.com/mattermost/mattermost/server/public/model"
)

// fakeClock is a settable clock for the trigger-id and response_url limits.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// world is the setup of the captures: team ica, channel deployments with
// tech1, biz1 and the bot; outsider in the team only.
type world struct {
	mm       *mmtest.Server
	botID    string
	botToken string
	bot      *model.Client4
}

func newWorld(t *testing.T, opts ...mmtest.Option) *world {
	t.Helper()
	mm := mmtest.New(t, opts...)
	mm.AddTeam("ica")
	mm.AddChannel("ica", "deployments")
	botID, tok := mm.AddBot("ica-bot")
	mm.AddUser("tech1")
	mm.AddUser("biz1")
	mm.AddUser("outsider")
	mm.Join("deployments", "ica-bot", "tech1", "biz1")
	mm.JoinTeam("ica", "outsider")
	c := model.NewAPIv4Client(mm.URL)
	c.SetToken(tok)
	return &world{mm: mm, botID: botID, botToken: tok, bot: c}
}

func ctx() context.Context { return context.Background() }

// must unwraps a Client4 result; an error panics, which fails the test
// with a stack trace (Go cannot pass t alongside a multi-value call).
func must[T any](v T, _ *model.Response, err error) T {
	if err != nil {
		panic("unexpected error: " + err.Error())
	}
	return v
}

func wantAppError(t *testing.T, err error, status int, id string) {
	t.Helper()
	var ae *model.AppError
	if !errors.As(err, &ae) {
		t.Fatalf("want *model.AppError %d %s, got %T %v", status, id, err, err)
	}
	if ae.StatusCode != status || (id != "" && ae.Id != id) {
		t.Fatalf("want AppError %d %s, got %d %s (%s)", status, id, ae.StatusCode, ae.Id, ae.Message)
	}
}

// cardPost is the bot's card, shaped like post-create-request.json.
func cardPost(channelID, baseURL, approvalID string) *model.Post {
	action := func(id, style string) *model.PostAction {
		return &model.PostAction{
			Id: id, Name: strings.ToUpper(id[:1]) + id[1:], Type: model.PostActionTypeButton, Style: style,
			Integration: &model.PostActionIntegration{
				URL:     baseURL + "/actions/" + id,
				Context: map[string]any{"approval_id": approvalID, "token": "xyz", "action": id},
			},
		}
	}
	p := &model.Post{ChannelId: channelID, Message: "Approval request " + approvalID}
	p.AddProp(model.PostPropsAttachments, []*model.MessageAttachment{{
		Fallback: "Approval " + approvalID, Color: "#3AA3E3", Title: "Approval " + approvalID,
		Text:    "Requested by biz1",
		Actions: []*model.PostAction{action("approve", "success"), action("reject", "danger")},
	}})
	return p
}

func actionIDs(p *model.Post) []string {
	var ids []string
	for _, a := range p.Attachments() {
		for _, act := range a.Actions {
			ids = append(ids, act.Id)
		}
	}
	return ids
}

func TestServer_Client4_Basics(t *testing.T) {
	w := newWorld(t)
	mm, bot := w.mm, w.bot

	me := must(bot.GetMe(ctx(), ""))
	if me.Id != w.botID || me.Username != "ica-bot" || !me.IsBot {
		t.Fatalf("GetMe = %+v", me)
	}
	tech := must(bot.GetUserByUsername(ctx(), "tech1", ""))
	if got := must(bot.GetUser(ctx(), tech.Id, "")); got.Username != "tech1" {
		t.Fatalf("GetUser = %+v", got)
	}
	users := must(bot.GetUsersByUsernames(ctx(), []string{"tech1", "nobody", "biz1"}))
	if len(users) != 2 {
		t.Fatalf("GetUsersByUsernames: %d users, want 2", len(users))
	}
	_, _, err := bot.GetUserByUsername(ctx(), "nobody", "")
	wantAppError(t, err, 404, "app.user.get_by_username.app_error")

	team := must(bot.GetTeamByName(ctx(), "ica", ""))
	ch := must(bot.GetChannelByName(ctx(), "deployments", team.Id, ""))
	if ch.Id != mm.ChannelID("deployments") || ch.TeamId != team.Id {
		t.Fatalf("GetChannelByName = %+v", ch)
	}
	if got := must(bot.GetChannelByNameForTeamName(ctx(), "deployments", "ica", "")); got.Id != ch.Id {
		t.Fatalf("GetChannelByNameForTeamName = %s", got.Id)
	}
	_, _, err = bot.GetChannelByName(ctx(), "nope", team.Id, "")
	wantAppError(t, err, 404, "app.channel.get_by_name.missing.app_error")
	if got := must(bot.GetChannel(ctx(), ch.Id)); got.Name != "deployments" {
		t.Fatalf("GetChannel = %+v", got)
	}
	members := must(bot.GetChannelMembers(ctx(), ch.Id, 0, 2, ""))
	more := must(bot.GetChannelMembers(ctx(), ch.Id, 1, 2, ""))
	if len(members) != 2 || len(more) != 1 {
		t.Fatalf("GetChannelMembers pages: %d + %d, want 2 + 1", len(members), len(more))
	}
	if m := must(bot.GetChannelMember(ctx(), ch.Id, tech.Id, "")); m.UserId != tech.Id {
		t.Fatalf("GetChannelMember = %+v", m)
	}
	_, _, err = bot.GetChannelMember(ctx(), ch.Id, mm.UserID("outsider"), "")
	wantAppError(t, err, 404, "app.channel.get_member.missing.app_error")

	// CreatePost: integrations are kept on the server and stripped from the answer.
	in := cardPost(ch.Id, "http://127.0.0.1:1", "A-1")
	in.PendingPostId = w.botID + ":1700000000000"
	created, resp, err := bot.CreatePost(ctx(), in)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("CreatePost: %v (status %v)", err, resp)
	}
	if created.Id == "" || created.CreateAt == 0 || created.UserId != w.botID || created.GetProp("from_bot") != "true" {
		t.Fatalf("created post = %+v", created)
	}
	for _, a := range created.Attachments() {
		for _, act := range a.Actions {
			if act.Integration != nil {
				t.Fatalf("client saw integration of action %s", act.Id)
			}
		}
	}
	if act := mm.Post(created.Id).GetAction("approve"); act == nil || act.Integration == nil || act.Integration.Context["approval_id"] != "A-1" {
		t.Fatalf("stored action lost its integration: %+v", act)
	}
	again := must(bot.CreatePost(ctx(), in))
	if again.Id != created.Id || len(mm.Posts("deployments")) != 1 {
		t.Fatalf("pending_post_id repeat created a second post (%s vs %s)", again.Id, created.Id)
	}

	// PatchPost: message only keeps props; props replace them.
	msg := "Approval A-1: approved"
	patched := must(bot.PatchPost(ctx(), created.Id, &model.PostPatch{Message: &msg}))
	if patched.Message != msg || patched.EditAt == 0 || len(actionIDs(patched)) != 2 {
		t.Fatalf("patched (message) = %+v", patched)
	}
	props := model.StringInterface{"attachments": []any{map[string]any{"text": "done"}}}
	patched = must(bot.PatchPost(ctx(), created.Id, &model.PostPatch{Props: &props}))
	if len(actionIDs(patched)) != 0 || patched.GetProp("from_bot") != nil {
		t.Fatalf("patched (props) still has buttons or from_bot: %+v", patched.GetProps())
	}
	got := must(bot.GetPost(ctx(), created.Id, ""))
	if got.Message != msg || len(got.Attachments()) != 1 {
		t.Fatalf("GetPost = %+v", got)
	}
	// Someone else's post cannot be patched.
	techClient := model.NewAPIv4Client(mm.URL)
	techClient.SetToken(mm.Token("tech1"))
	_, _, err = techClient.PatchPost(ctx(), created.Id, &model.PostPatch{Message: &msg})
	wantAppError(t, err, 403, "api.context.permissions.app_error")

	list := must(bot.GetPostsForChannel(ctx(), ch.Id, 0, 60, "", false, false))
	if len(list.Order) != 1 || list.Posts[list.Order[0]].Id != created.Id {
		t.Fatalf("GetPostsForChannel = %+v", list.Order)
	}

	// Direct channel: the same one on every call.
	dm := must(bot.CreateDirectChannel(ctx(), w.botID, tech.Id))
	dm2 := must(bot.CreateDirectChannel(ctx(), tech.Id, w.botID))
	if dm.Id != dm2.Id || dm.Type != model.ChannelTypeDirect {
		t.Fatalf("CreateDirectChannel: %s / %s type %s", dm.Id, dm2.Id, dm.Type)
	}
	must(bot.CreatePost(ctx(), &model.Post{ChannelId: dm.Id, Message: "you have a pending approval"}))
	if dms := mm.DMs("tech1"); len(dms) != 1 || dms[0].Message != "you have a pending approval" {
		t.Fatalf("DMs(tech1) = %+v", dms)
	}

	// Files: upload, attach, download.
	data := []byte("seq,hash\n1,abc\n")
	up := must(bot.UploadFile(ctx(), data, ch.Id, "export-2026.csv"))
	if len(up.FileInfos) != 1 || up.FileInfos[0].Name != "export-2026.csv" || up.FileInfos[0].Size != int64(len(data)) {
		t.Fatalf("UploadFile = %+v", up)
	}
	fid := up.FileInfos[0].Id
	withFile := must(bot.CreatePost(ctx(), &model.Post{ChannelId: ch.Id, Message: "export", FileIds: model.StringArray{fid}}))
	if len(withFile.FileIds) != 1 || withFile.Metadata == nil || len(withFile.Metadata.Files) != 1 {
		t.Fatalf("post with file = %+v", withFile)
	}
	dl := must(techClient.GetFile(ctx(), fid))
	if string(dl) != string(data) {
		t.Fatalf("GetFile = %q", dl)
	}

	// Ephemeral posts through the API are recorded for the recipient.
	must(bot.CreatePostEphemeral(ctx(), &model.PostEphemeral{UserID: tech.Id, Post: &model.Post{ChannelId: ch.Id, Message: "only you"}}))
	if eph := mm.Ephemerals("tech1"); len(eph) != 1 || eph[0].Message != "only you" || eph[0].Source != "api" {
		t.Fatalf("Ephemerals(tech1) = %+v", eph)
	}

	// Bad token: 401 AppError.
	anon := model.NewAPIv4Client(mm.URL)
	anon.SetToken("wrong")
	_, resp, err = anon.GetMe(ctx(), "")
	wantAppError(t, err, 401, "api.context.session_expired.app_error")
	if resp.ServerVersion != mmtest.VersionID {
		t.Fatalf("X-Version-Id = %q", resp.ServerVersion)
	}

	// Non-members cannot post.
	outsider := model.NewAPIv4Client(mm.URL)
	outsider.SetToken(mm.Token("outsider"))
	_, _, err = outsider.CreatePost(ctx(), &model.Post{ChannelId: ch.Id, Message: "hi"})
	wantAppError(t, err, 403, "api.context.permissions.app_error")
}

func TestServer_ClientConfig(t *testing.T) {
	w := newWorld(t)
	res, err := http.Get(w.mm.URL + "/api/v4/config/client?format=old")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var cfg map[string]string
	if err := json.NewDecoder(res.Body).Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["AsymmetricSigningPublicKey"] != w.mm.SigningPublicKey() {
		t.Fatalf("config = %v", cfg)
	}
	if _, err := parseKey(cfg["AsymmetricSigningPublicKey"]); err != nil {
		t.Fatal(err)
	}
	// Without format=old, 6.7.2 answers 501.
	_, _, err = model.NewAPIv4Client(w.mm.URL).GetClientConfig(ctx(), "")
	wantAppError(t, err, 501, "api.config.client.old_format.app_error")
}

func parseKey(b64 string) (*ecdsa.PublicKey, error) {
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	pk, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return pk, nil
}

// verifyTrigger checks a trigger_id the way an integration can, with the
// public key only.
func verifyTrigger(t *testing.T, pub *ecdsa.PublicKey, trigger, wantUser string) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(trigger)
	if err != nil {
		t.Fatalf("trigger_id not base64: %v", err)
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 4 || parts[1] != wantUser || len(parts[0]) != 26 {
		t.Fatalf("trigger_id parts = %q", parts)
	}
	sig, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(parts[0] + ":" + parts[1] + ":" + parts[2] + ":"))
	if !ecdsa.VerifyASN1(pub, sum[:], sig) {
		t.Fatal("trigger_id signature does not verify")
	}
}

// integration is a small stand-in for ICA's callback endpoint.
type integration struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
	bodies   [][]byte
	reply    func(path string, body []byte) (int, string)
}

func newIntegration(t *testing.T, reply func(path string, body []byte) (int, string)) *integration {
	in := &integration{reply: reply}
	in.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		in.mu.Lock()
		in.requests = append(in.requests, r)
		in.bodies = append(in.bodies, b)
		in.mu.Unlock()
		status, body := in.reply(r.URL.Path, b)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(in.Close)
	return in
}

func (in *integration) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.bodies)
}

func (in *integration) last() (*http.Request, []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.requests[len(in.requests)-1], in.bodies[len(in.bodies)-1]
}

func jsonKeys(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, b)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestServer_Click(t *testing.T) {
	w := newWorld(t, mmtest.WithIntegrationTimeout(300*time.Millisecond))
	mm := w.mm
	in := newIntegration(t, func(path string, body []byte) (int, string) {
		switch path {
		case "/actions/approve":
			return 200, `{"update":{"message":"updated"}}`
		case "/actions/reject":
			return 200, `{"update":{"message":"Rejected","props":{"attachments":[{"text":"A-1 rejected","color":"#aa0000"}]}},"ephemeral_text":"You rejected A-1"}`
		}
		return 500, `{"error":"boom"}`
	})
	card := must(w.bot.CreatePost(ctx(), cardPost(mm.ChannelID("deployments"), in.URL, "A-1")))
	pub, err := parseKey(mm.SigningPublicKey())
	if err != nil {
		t.Fatal(err)
	}

	// A member clicks Approve: the request looks like action-request.json.
	res, err := mm.Click(card.Id, "approve", "tech1")
	if err != nil || res.Status != 200 {
		t.Fatalf("Click approve: %v %+v", err, res)
	}
	req, body := in.last()
	wantKeys := []string{"channel_id", "channel_name", "context", "data_source", "post_id", "team_domain", "team_id", "trigger_id", "type", "user_id", "user_name"}
	if got := jsonKeys(t, body); strings.Join(got, ",") != strings.Join(wantKeys, ",") {
		t.Fatalf("request keys = %v, want %v", got, wantKeys)
	}
	if strings.Contains(string(body), `"approve"`) && !strings.Contains(string(body), `"action":"approve"`) {
		t.Fatalf("the action id leaked outside the context: %s", body)
	}
	for h, want := range map[string]string{"User-Agent": "Mattermost-Bot/1.1", "Accept": "application/json", "Content-Type": "application/json", "Authorization": ""} {
		if got := req.Header.Get(h); got != want {
			t.Fatalf("header %s = %q, want %q", h, got, want)
		}
	}
	var sent model.PostActionIntegrationRequest
	if err := json.Unmarshal(body, &sent); err != nil {
		t.Fatal(err)
	}
	if sent.UserName != "tech1" || sent.ChannelName != "deployments" || sent.TeamName != "ica" || sent.PostId != card.Id ||
		sent.Type != "button" || sent.Context["approval_id"] != "A-1" || sent.Context["action"] != "approve" {
		t.Fatalf("request = %+v", sent)
	}
	verifyTrigger(t, pub, sent.TriggerId, mm.UserID("tech1"))
	if !strings.HasPrefix(mustDecode(t, sent.TriggerId), res.ClientTriggerID+":") {
		t.Fatal("client trigger id is not the first field of the signed trigger_id")
	}

	// Message-only update: message changes, buttons stay.
	p := mm.Post(card.Id)
	if p.Message != "updated" || p.EditAt == 0 || len(actionIDs(p)) != 2 || p.GetProp("from_bot") != "true" {
		t.Fatalf("after message-only update: %q edit_at=%d actions=%v props=%v", p.Message, p.EditAt, actionIDs(p), p.GetProps())
	}

	// Repeated clicks, by anyone in the channel and by the bot, are all delivered.
	for _, u := range []string{"tech1", "biz1", "ica-bot"} {
		if _, err := mm.Click(card.Id, "approve", u); err != nil {
			t.Fatalf("Click by %s: %v", u, err)
		}
	}
	if in.count() != 4 {
		t.Fatalf("integration got %d requests, want 4", in.count())
	}

	// A non-member gets 403 and nothing is sent.
	res, err = mm.Click(card.Id, "approve", "outsider")
	wantAppError(t, err, 403, "api.context.permissions.app_error")
	if res.Status != 403 || in.count() != 4 {
		t.Fatalf("outsider click: status %d, integration calls %d", res.Status, in.count())
	}

	// An update with props replaces them: buttons are gone; next click is 404.
	res, err = mm.Click(card.Id, "reject", "biz1")
	if err != nil {
		t.Fatalf("Click reject: %v", err)
	}
	p = mm.Post(card.Id)
	if p.Message != "Rejected" || len(actionIDs(p)) != 0 || p.GetProp("from_bot") != nil {
		t.Fatalf("after props update: %q actions=%v props=%v", p.Message, actionIDs(p), p.GetProps())
	}
	if eph := mm.Ephemerals("biz1"); len(eph) != 1 || eph[0].Message != "You rejected A-1" || eph[0].RootID != card.Id {
		t.Fatalf("Ephemerals(biz1) = %+v", eph)
	}
	if len(mm.Ephemerals("tech1")) != 0 {
		t.Fatal("ephemeral_text reached another user")
	}
	calls := in.count()
	res, err = mm.Click(card.Id, "approve", "tech1")
	wantAppError(t, err, 404, "api.post.do_action.action_id.app_error")
	if res.Status != 404 || in.count() != calls {
		t.Fatalf("click on removed button: status %d, calls %d", res.Status, in.count())
	}

	// The client-facing endpoint works too (model.Client4.DoPostAction).
	card2 := must(w.bot.CreatePost(ctx(), cardPost(mm.ChannelID("deployments"), in.URL, "A-2")))
	techClient := model.NewAPIv4Client(mm.URL)
	techClient.SetToken(mm.Token("tech1"))
	if _, err := techClient.DoPostAction(ctx(), card2.Id, "approve"); err != nil {
		t.Fatalf("DoPostAction: %v", err)
	}
}

func mustDecode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServer_Click_IntegrationFailures(t *testing.T) {
	w := newWorld(t, mmtest.WithIntegrationTimeout(200*time.Millisecond))
	mm := w.mm
	release := make(chan struct{})
	in := newIntegration(t, func(path string, body []byte) (int, string) {
		switch path {
		case "/actions/approve": // not JSON
			return 200, `<html>ok</html>`
		default: // slower than the timeout
			<-release
			return 200, `{"update":{"message":"late"}}`
		}
	})
	defer close(release)
	card := must(w.bot.CreatePost(ctx(), cardPost(mm.ChannelID("deployments"), in.URL, "A-1")))
	for _, action := range []string{"approve", "reject"} {
		res, err := mm.Click(card.Id, action, "tech1")
		wantAppError(t, err, 400, "api.post.do_action.action_integration.app_error")
		if res.AppError.Message != "Action integration error." {
			t.Fatalf("message = %q", res.AppError.Message)
		}
	}
	if p := mm.Post(card.Id); p.Message != "Approval request A-1" || len(actionIDs(p)) != 2 {
		t.Fatalf("post changed after failed clicks: %+v", p)
	}

	errIn := newIntegration(t, func(string, []byte) (int, string) { return 500, `{"error":"boom"}` })
	card2 := must(w.bot.CreatePost(ctx(), cardPost(mm.ChannelID("deployments"), errIn.URL, "A-2")))
	res, err := mm.Click(card2.Id, "approve", "tech1")
	wantAppError(t, err, 400, "api.post.do_action.action_integration.app_error")
	if res.IntegrationStatus != 500 {
		t.Fatalf("IntegrationStatus = %d", res.IntegrationStatus)
	}
}

func TestServer_FailNext(t *testing.T) {
	w := newWorld(t)
	w.mm.FailNext(1, http.StatusTooManyRequests, 1500*time.Millisecond)
	_, resp, err := w.bot.GetMe(ctx(), "")
	if err == nil || resp == nil || resp.StatusCode != 429 {
		t.Fatalf("want 429, got %v %+v", err, resp)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "2" {
		t.Fatalf("Retry-After = %q", ra)
	}
	// A real Mattermost rate limiter answers text/plain "limit exceeded", so
	// Client4 cannot decode an AppError: callers must look at resp.StatusCode.
	var ae *model.AppError
	if errors.As(err, &ae) {
		t.Fatalf("429 decoded as AppError %+v; the real server sends plain text", ae)
	}
	must(w.bot.GetMe(ctx(), ""))

	// A 429 as an AppError, for code that must cope with both.
	w.mm.FailNextWith(1, mmtest.Failure{Status: 429, RetryAfter: time.Second, ContentType: "application/json",
		Body: []byte(`{"id":"api.context.rate_limit","message":"Too many requests.","status_code":429}`)})
	_, resp, err = w.bot.GetMe(ctx(), "")
	wantAppError(t, err, 429, "api.context.rate_limit")
	if resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After = %q", resp.Header.Get("Retry-After"))
	}

	// Scoped by path: only posts fail, with an AppError body.
	w.mm.FailNext(2, http.StatusServiceUnavailable, 0, "/api/v4/posts")
	must(w.bot.GetMe(ctx(), ""))
	p := &model.Post{ChannelId: w.mm.ChannelID("deployments"), Message: "x"}
	for range 2 {
		_, _, err = w.bot.CreatePost(ctx(), p)
		wantAppError(t, err, 503, "")
	}
	must(w.bot.CreatePost(ctx(), p))
	if n := len(w.mm.Posts("deployments")); n != 1 {
		t.Fatalf("%d posts stored, want 1", n)
	}
	var statuses []int
	for _, r := range w.mm.Requests() {
		if r.Path == "/api/v4/posts" {
			statuses = append(statuses, r.Status)
		}
	}
	if len(statuses) != 3 || statuses[0] != 503 || statuses[2] != 201 {
		t.Fatalf("logged statuses = %v", statuses)
	}
}

func TestServer_SetDown(t *testing.T) {
	w := newWorld(t)
	must(w.bot.GetMe(ctx(), "")) // leaves a keep-alive connection behind
	w.mm.SetDown(true)
	_, resp, err := w.bot.GetMe(ctx(), "")
	if err == nil {
		t.Fatal("GetMe succeeded on a down server")
	}
	var ae *model.AppError
	if errors.As(err, &ae) || (resp != nil && resp.StatusCode != 0) {
		t.Fatalf("want a network error, got %v %+v", err, resp)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("want *url.Error, got %T %v", err, err)
	}
	if _, err := w.mm.Click("x", "y", "tech1"); !errors.Is(err, mmtest.ErrServerDown) {
		t.Fatalf("Click on a down server: %v", err)
	}
	w.mm.SetDown(false)
	must(w.bot.GetMe(ctx(), ""))
}

func TestServer_SetLatency(t *testing.T) {
	w := newWorld(t)
	w.mm.SetLatency(300 * time.Millisecond)
	c, cancel := context.WithTimeout(ctx(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := w.bot.GetMe(c, ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
	w.mm.SetLatency(0)
	must(w.bot.GetMe(ctx(), ""))
}

func TestServer_Dialogs(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	w := newWorld(t, mmtest.WithClock(clock))
	mm := w.mm
	var (
		mu       sync.Mutex
		triggers []string
	)
	dialog := model.Dialog{
		CallbackId: "approval-reason-A-1", Title: "Approve A-1", SubmitLabel: "Approve", NotifyOnCancel: true,
		State:    `{"approval_id":"A-1"}`,
		Elements: []model.DialogElement{{DisplayName: "Reason", Name: "reason", Type: "textarea", MaxLength: 500}},
	}
	var in *integration
	in = newIntegration(t, func(path string, body []byte) (int, string) {
		switch path {
		case "/actions/approve": // open the dialog at once, like ICA should
			var req model.PostActionIntegrationRequest
			_ = json.Unmarshal(body, &req)
			_, err := model.NewAPIv4Client(mm.URL).OpenInteractiveDialog(ctx(), model.OpenDialogRequest{
				TriggerId: req.TriggerId, URL: in.URL + "/dialog/submit", Dialog: dialog,
			})
			if err != nil {
				return 500, `{}`
			}
			return 200, `{}`
		case "/actions/reject": // keep the trigger for later
			var req model.PostActionIntegrationRequest
			_ = json.Unmarshal(body, &req)
			mu.Lock()
			triggers = append(triggers, req.TriggerId)
			mu.Unlock()
			return 200, `{}`
		case "/dialog/submit":
			var sub model.SubmitDialogRequest
			_ = json.Unmarshal(body, &sub)
			if r, _ := sub.Submission["reason"].(string); !sub.Cancelled && len(r) < 5 {
				return 200, `{"errors":{"reason":"reason is too short"}}`
			}
			return 200, `{}`
		}
		return 404, ``
	})
	card := must(w.bot.CreatePost(ctx(), cardPost(mm.ChannelID("deployments"), in.URL, "A-1")))

	// Opened within 3 s: recorded for tech1 only.
	if _, err := mm.Click(card.Id, "approve", "tech1"); err != nil {
		t.Fatalf("Click: %v", err)
	}
	open := mm.OpenDialogs("tech1")
	if len(open) != 1 || open[0].Dialog.CallbackId != "approval-reason-A-1" || open[0].ChannelID != mm.ChannelID("deployments") {
		t.Fatalf("OpenDialogs(tech1) = %+v", open)
	}
	if len(mm.OpenDialogs("biz1")) != 0 {
		t.Fatal("dialog opened for the wrong user")
	}

	// Submitted: the body looks like dialog-submit.json; field errors come back.
	resp, err := mm.SubmitOpenDialog("tech1", map[string]any{"reason": "no"})
	if err != nil || resp.Errors["reason"] != "reason is too short" {
		t.Fatalf("SubmitOpenDialog: %v %+v", err, resp)
	}
	req, body := in.last()
	if got := strings.Join(jsonKeys(t, body), ","); got != "callback_id,cancelled,channel_id,state,submission,team_id,type,user_id" {
		t.Fatalf("submit keys = %s", got)
	}
	if req.Header.Get("Authorization") != "" || req.Header.Get("User-Agent") != "Mattermost-Bot/1.1" {
		t.Fatalf("submit headers = %v", req.Header)
	}
	var sub model.SubmitDialogRequest
	_ = json.Unmarshal(body, &sub)
	if sub.Type != "dialog_submission" || sub.UserId != mm.UserID("tech1") || sub.State != dialog.State {
		t.Fatalf("submit = %+v", sub)
	}

	// Forged: biz1 sends tech1's state to the dialog URL; user_id is biz1's.
	if _, err := mm.SubmitDialog("biz1", in.URL+"/dialog/submit", "approval-reason-A-1", `{"approval_id":"A-1"}`, map[string]any{"reason": "forged!"}, false); err != nil {
		t.Fatalf("forged submit: %v", err)
	}
	_, body = in.last()
	_ = json.Unmarshal(body, &sub)
	if sub.UserId != mm.UserID("biz1") {
		t.Fatalf("forged submit user_id = %s", sub.UserId)
	}
	// Cancelled: the webapp sends no submission, and the server forwards
	// what the client sent (a client that sends one with cancelled=true
	// has it forwarded too).
	if _, err := mm.SubmitDialog("tech1", in.URL+"/dialog/submit", "cb", "s", nil, true); err != nil {
		t.Fatal(err)
	}
	_, body = in.last()
	if !strings.Contains(string(body), `"submission":null,"cancelled":true`) {
		t.Fatalf("cancel body = %s", body)
	}
	// An outsider cannot submit in a channel they are not in.
	mm.SetCurrentChannel("outsider", "deployments")
	_, err = mm.SubmitDialog("outsider", in.URL+"/dialog/submit", "cb", "s", nil, false)
	wantAppError(t, err, 403, "api.context.permissions.app_error")

	// After 3 s the trigger is expired.
	if _, err := mm.Click(card.Id, "reject", "tech1"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	trigger := triggers[0]
	mu.Unlock()
	clock.Advance(3*time.Second + time.Millisecond)
	anon := model.NewAPIv4Client(mm.URL)
	_, err = anon.OpenInteractiveDialog(ctx(), model.OpenDialogRequest{TriggerId: trigger, URL: in.URL + "/dialog/submit", Dialog: dialog})
	wantAppError(t, err, 400, "interactive_message.decode_trigger_id.expired")

	// A trigger that this server did not sign is refused.
	raw := mustDecode(t, trigger)
	parts := strings.Split(raw, ":")
	parts[2] = "9" + parts[2][1:]
	forged := base64.StdEncoding.EncodeToString([]byte(strings.Join(parts, ":")))
	_, err = anon.OpenInteractiveDialog(ctx(), model.OpenDialogRequest{TriggerId: forged, URL: "x", Dialog: dialog})
	wantAppError(t, err, 400, "")
	if len(mm.OpenDialogs("tech1")) != 0 {
		t.Fatal("an expired or forged trigger opened a dialog")
	}
}

func TestServer_SlashCommand(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	w := newWorld(t, mmtest.WithClock(clock))
	mm := w.mm
	in := newIntegration(t, func(path string, body []byte) (int, string) {
		return 200, `{"response_type":"ephemeral","text":"ok"}`
	})
	token := mm.AddCommand("ica", "ica", in.URL+"/slash")

	status, resp, err := mm.SlashCommand("tech1", "deployments", "/ica approve A-1 @biz1 ~deployments")
	if err != nil || status != 200 || resp.Text != "ok" {
		t.Fatalf("SlashCommand: %d %v %+v", status, err, resp)
	}
	req, body := in.last()
	if req.Header.Get("Authorization") != "Token "+token || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Fatalf("slash headers = %v", req.Header)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"channel_name": "deployments", "command": "/ica", "team_domain": "ica", "text": "approve A-1 @biz1 ~deployments",
		"token": token, "user_name": "tech1", "user_id": mm.UserID("tech1"), "user_mentions": "biz1",
		"user_mentions_ids": mm.UserID("biz1"), "channel_mentions": "deployments",
	} {
		if form.Get(k) != want {
			t.Fatalf("form %s = %q, want %q", k, form.Get(k), want)
		}
	}
	if eph := mm.Ephemerals("tech1"); len(eph) != 1 || eph[0].Message != "ok" {
		t.Fatalf("Ephemerals = %+v", eph)
	}

	// response_url: 5 uses, then 400; in_channel posts are the invoking user's.
	hook := form.Get("response_url")
	if !strings.HasPrefix(hook, mm.URL+"/hooks/commands/") {
		t.Fatalf("response_url = %q", hook)
	}
	for i := 1; i <= 6; i++ {
		res, err := http.Post(hook, "application/json", strings.NewReader(`{"response_type":"in_channel","text":"use"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		want := 200
		if i == 6 {
			want = 400
			if !strings.Contains(string(b), "app.command_webhook.try_use.invalid") {
				t.Fatalf("6th use body = %s", b)
			}
		}
		if res.StatusCode != want {
			t.Fatalf("use %d: status %d, want %d (%s)", i, res.StatusCode, want, b)
		}
	}
	posts := mm.Posts("deployments")
	if len(posts) != 5 || posts[0].UserId != mm.UserID("tech1") || posts[0].GetProp("from_webhook") != "true" {
		t.Fatalf("in_channel posts = %d, first %+v", len(posts), posts[0])
	}
	if calls := mm.HookCalls(); len(calls) != 6 || calls[5].Status != 400 {
		t.Fatalf("HookCalls = %+v", calls)
	}

	// A fresh response_url expires after 30 minutes.
	_, _, _ = mm.SlashCommand("tech1", "deployments", "/ica status")
	calls := mm.SlashCalls()
	clock.Advance(31 * time.Minute)
	res, err := http.Post(calls[len(calls)-1].ResponseURL, "application/json", strings.NewReader(`{"text":"late"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Fatalf("expired response_url: %d", res.StatusCode)
	}

	// Non-members get 403 and nothing is sent.
	n := in.count()
	status, _, err = mm.SlashCommand("outsider", "deployments", "/ica status")
	wantAppError(t, err, 403, "api.context.permissions.app_error")
	if status != 403 || in.count() != n {
		t.Fatalf("outsider: status %d, calls %d", status, in.count())
	}
}

// TestServer_ConcurrentClicks checks that racing clicks are all delivered
// and the fake stays consistent under -race.
func TestServer_ConcurrentClicks(t *testing.T) {
	w := newWorld(t)
	var n sync.WaitGroup
	in := newIntegration(t, func(string, []byte) (int, string) {
		return 200, `{"update":{"message":"clicked"},"ephemeral_text":"seen"}`
	})
	card := must(w.bot.CreatePost(ctx(), cardPost(w.mm.ChannelID("deployments"), in.URL, "A-1")))
	for i := range 20 {
		n.Add(1)
		go func() {
			defer n.Done()
			user := []string{"tech1", "biz1"}[i%2]
			if _, err := w.mm.Click(card.Id, "approve", user); err != nil {
				t.Errorf("click %d: %v", i, err)
			}
			_ = w.mm.Posts("deployments")
		}()
	}
	n.Wait()
	if in.count() != 20 || len(w.mm.Ephemerals("tech1"))+len(w.mm.Ephemerals("biz1")) != 20 {
		t.Fatalf("calls %d", in.count())
	}
	if p := w.mm.Post(card.Id); len(actionIDs(p)) != 2 {
		t.Fatalf("buttons lost: %v", actionIDs(p))
	}
}
