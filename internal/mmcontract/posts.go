package mmcontract

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ica-governance/ica/internal/mmreal"
	"github.com/mattermost/mattermost/server/public/model"
)

// testPostCreateAndGet: the bot posts a card; the answer and every later read
// carry the buttons without their integration (url and context stay on the
// server), and a bot's post is marked from_bot.
func testPostCreateAndGet(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)

	created := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-1"))
	if !model.IsValidId(created.Id) || created.UserId != w.Bot.ID() || created.ChannelId != w.Channel.Id ||
		created.Message != "Approval request A-1" || created.CreateAt == 0 || created.EditAt != 0 {
		t.Fatalf("created post = %+v", created)
	}
	if got := created.GetProp("from_bot"); got != "true" {
		t.Errorf("created post from_bot = %v, want \"true\"", got)
	}
	check := func(who string, p *model.Post) {
		t.Helper()
		if got := p.GetProp("ica_approval_id"); got != "A-1" {
			t.Errorf("%s: ica_approval_id = %v, want A-1", who, got)
		}
		if ids := actionIDs(p); !slices.Equal(ids, []string{"approve", "reject"}) {
			t.Errorf("%s: actions %v, want [approve reject]", who, ids)
		}
		for _, a := range p.Attachments() {
			for _, act := range a.Actions {
				if act.Integration != nil {
					t.Errorf("%s: action %s shows its integration %+v", who, act.Id, act.Integration)
				}
			}
		}
	}
	check("create answer", created)

	got, err := w.Person(mmreal.Tech1).Post(c, created.Id)
	if err != nil {
		t.Fatalf("tech1 reads the card: %v", err)
	}
	if got.Message != created.Message || got.UserId != w.Bot.ID() || got.GetProp("from_bot") != "true" {
		t.Errorf("tech1 reads %+v", got)
	}
	check("tech1's read", got)
	if len(got.Attachments()) != 1 || got.Attachments()[0].Title != "Approval A-1" {
		t.Errorf("attachments read back: %+v", got.Attachments())
	}

	// An unknown post id.
	_, _, err = w.Bot.Client.GetPost(c, model.NewId(), "")
	if st := statusOf(err); st != http.StatusNotFound && st != http.StatusForbidden {
		t.Errorf("unknown post: %v, want 403 or 404", err)
	}

	// A message longer than 16383 characters is refused.
	_, _, err = w.Bot.Client.CreatePost(c, &model.Post{ChannelId: w.Channel.Id, Message: strings.Repeat("x", model.PostMessageMaxRunesV2+1)})
	wantAppError(t, "message too long", err, http.StatusBadRequest, "")
	if _, _, err := w.Bot.Client.CreatePost(c, &model.Post{ChannelId: w.Channel.Id, Message: strings.Repeat("é", model.PostMessageMaxRunesV2)}); err != nil {
		t.Errorf("a message of 16383 characters: %v", err)
	}

	// A system post type cannot be made through the API.
	_, _, err = w.Bot.Client.CreatePost(c, &model.Post{ChannelId: w.Channel.Id, Message: "x", Type: model.PostTypeJoinChannel})
	wantAppError(t, "system post type", err, http.StatusBadRequest, "")

	// Someone outside the channel cannot post in it, even a public one of
	// their team.
	_, _, err = w.Person(mmreal.Outsider).Client.CreatePost(c, &model.Post{ChannelId: w.Channel.Id, Message: "from outside"})
	wantAppError(t, "outsider posts in the channel", err, http.StatusForbidden, "api.context.permissions.app_error")
}

// testPendingPostID: a second create with the same pending_post_id within
// 30 s returns the EARLIER post, whatever it says and wherever it goes; the
// id is global to the server, not per channel or per user.
func testPendingPostID(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	c := ctx(t)
	bot := w.Bot.Client
	pending := w.Bot.ID() + ":" + model.NewId()

	first := mustPost(t, bot, &model.Post{ChannelId: w.Channel.Id, Message: "first", PendingPostId: pending})
	if first.PendingPostId != pending {
		t.Errorf("create answer pending_post_id = %q, want %q", first.PendingPostId, pending)
	}
	again := mustPost(t, bot, &model.Post{ChannelId: w.Channel.Id, Message: "second", PendingPostId: pending})
	if again.Id != first.Id || again.Message != "first" {
		t.Fatalf("repeat create returned %s %q, want the earlier post %s \"first\"", again.Id, again.Message, first.Id)
	}
	// The earlier post comes back as stored: without a pending_post_id.
	if again.PendingPostId != "" {
		t.Errorf("de-duplicated answer pending_post_id = %q, want empty", again.PendingPostId)
	}

	// The same pending_post_id in another channel (a DM) still answers the
	// earlier post, in the first channel.
	dm, _, err := bot.CreateDirectChannel(c, w.Bot.ID(), w.Person(mmreal.Tech1).ID())
	if err != nil {
		t.Fatal(err)
	}
	other := mustPost(t, bot, &model.Post{ChannelId: dm.Id, Message: "elsewhere", PendingPostId: pending})
	if other.Id != first.Id || other.ChannelId != w.Channel.Id {
		t.Fatalf("same pending_post_id in another channel: got %s in %s, want %s in %s", other.Id, other.ChannelId, first.Id, w.Channel.Id)
	}
	// Even another user's create gets the bot's earlier post back.
	tech := w.Person(mmreal.Tech1)
	byTech := mustPost(t, tech.Client, &model.Post{ChannelId: w.Channel.Id, Message: "tech1", PendingPostId: pending})
	if byTech.Id != first.Id {
		t.Fatalf("another user's create with the same pending_post_id: got %s, want %s", byTech.Id, first.Id)
	}

	// Another pending_post_id is another post.
	second := mustPost(t, bot, &model.Post{ChannelId: w.Channel.Id, Message: "second", PendingPostId: pending + "x"})
	if second.Id == first.Id {
		t.Fatal("a different pending_post_id returned the earlier post")
	}
	// Only "first" and "second" exist.
	posts, err := tech.Posts(c, w.Channel.Id)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, p := range posts {
		if p.UserId == w.Bot.ID() || p.UserId == tech.ID() {
			msgs = append(msgs, p.Message)
		}
	}
	if !slices.Equal(msgs, []string{"first", "second"}) {
		t.Fatalf("channel holds %q, want [first second]", msgs)
	}
}

// testPendingPostIDExpires: the de-duplication lasts 30 s, counted from the
// first create; after that the same pending_post_id makes a new post.
func testPendingPostIDExpires(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	pending := w.Bot.ID() + ":" + model.NewId()
	first := mustPost(t, w.Bot.Client, &model.Post{ChannelId: w.Channel.Id, Message: "first", PendingPostId: pending})
	peer.Wait(t, w, 20*time.Second)
	if again := mustPost(t, w.Bot.Client, &model.Post{ChannelId: w.Channel.Id, Message: "again", PendingPostId: pending}); again.Id != first.Id {
		t.Fatalf("after 20 s the repeat made a new post")
	}
	// The repeat did not renew the window: 31 s after the first create it is over.
	peer.Wait(t, w, 11*time.Second)
	later := mustPost(t, w.Bot.Client, &model.Post{ChannelId: w.Channel.Id, Message: "later", PendingPostId: pending})
	if later.Id == first.Id || later.Message != "later" {
		t.Fatalf("31 s after the first create, the repeat still returned the earlier post")
	}
}

// testPostsForChannel: newest first, paged by per_page.
func testPostsForChannel(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	c := ctx(t)
	var want []string
	for _, m := range []string{"one", "two", "three"} {
		want = append([]string{mustPost(t, w.Bot.Client, &model.Post{ChannelId: w.Channel.Id, Message: m}).Id}, want...)
		time.Sleep(2 * time.Millisecond) // posts of one millisecond have no defined order
	}
	var got []string
	for page := 0; page < 20; page++ {
		list, _, err := w.Bot.Client.GetPostsForChannel(c, w.Channel.Id, page, 2, "", false, false)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(list.Order) > 2 {
			t.Fatalf("page %d has %d posts, per_page was 2", page, len(list.Order))
		}
		for _, id := range list.Order {
			if p := list.Posts[id]; p == nil {
				t.Fatalf("page %d: order names %s, not in posts", page, id)
			} else if p.UserId == w.Bot.ID() {
				got = append(got, id)
			}
		}
		if len(list.Order) < 2 {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("bot's posts newest first = %v, want %v", got, want)
	}
	// A card is found again by its own prop in the list.
	in := newIntegration(t)
	cardPost := mustPost(t, w.Bot.Client, card(w.Channel.Id, in.URL, "A-7"))
	list, _, err := w.Bot.Client.GetPostsForChannel(c, w.Channel.Id, 0, 200, "", false, false)
	if err != nil {
		t.Fatal(err)
	}
	if p := list.Posts[cardPost.Id]; p == nil || p.GetProp("ica_approval_id") != "A-7" || len(actionIDs(p)) != 2 {
		t.Fatalf("the card in the channel's list: %+v", p)
	}
	// Someone outside a private corner cannot read it: a DM between the bot
	// and tech1 is closed to biz1.
	dm, _, err := w.Bot.Client.CreateDirectChannel(c, w.Bot.ID(), w.Person(mmreal.Tech1).ID())
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = w.Person(mmreal.Biz1).Client.GetPostsForChannel(c, dm.Id, 0, 10, "", false, false)
	wantAppError(t, "biz1 reads a DM of others", err, http.StatusForbidden, "api.context.permissions.app_error")
}

// testLookups: the reads ICA makes to resolve approvers and channels.
func testLookups(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	c := ctx(t)
	bot := w.Bot.Client
	tech, biz, out := w.Person(mmreal.Tech1), w.Person(mmreal.Biz1), w.Person(mmreal.Outsider)

	me, _, err := bot.GetMe(c, "")
	if err != nil || me.Id != w.Bot.ID() || !me.IsBot || me.Username != w.Bot.Username() {
		t.Fatalf("GetMe = %+v, %v", me, err)
	}
	u, _, err := bot.GetUserByUsername(c, tech.Username(), "")
	if err != nil || u.Id != tech.ID() {
		t.Fatalf("GetUserByUsername: %+v %v", u, err)
	}
	if u.Email != tech.Username()+"@example.com" {
		t.Errorf("the bot sees tech1's e-mail as %q", u.Email)
	}
	if u.IsBot || u.Password != "" {
		t.Errorf("user read back: bot %v, password %q", u.IsBot, u.Password)
	}
	// A username in upper case is not a username at all.
	_, _, err = bot.GetUserByUsername(c, strings.ToUpper(tech.Username()), "")
	wantAppError(t, "username in upper case", err, http.StatusBadRequest, "api.context.invalid_body_param.app_error")
	if u2, _, err := bot.GetUser(c, tech.ID(), ""); err != nil || u2.Username != tech.Username() {
		t.Errorf("GetUser: %v", err)
	}
	users, _, err := bot.GetUsersByUsernames(c, []string{tech.Username(), "nobody" + model.NewId()[:8], biz.Username()})
	if err != nil || len(users) != 2 {
		t.Errorf("GetUsersByUsernames: %d users, %v; want 2", len(users), err)
	}
	_, _, err = bot.GetUserByUsername(c, "nobody"+model.NewId()[:8], "")
	wantAppError(t, "unknown username", err, http.StatusNotFound, "app.user.get_by_username.app_error")
	_, _, err = bot.GetUser(c, model.NewId(), "")
	wantAppError(t, "unknown user id", err, http.StatusNotFound, "app.user.missing_account.const")

	team, _, err := bot.GetTeamByName(c, w.Team.Name, "")
	if err != nil || team.Id != w.Team.Id {
		t.Fatalf("GetTeamByName: %v", err)
	}
	ch, _, err := bot.GetChannelByName(c, mmreal.ChannelName, team.Id, "")
	if err != nil || ch.Id != w.Channel.Id || ch.TeamId != team.Id || ch.Type != model.ChannelTypeOpen {
		t.Fatalf("GetChannelByName: %+v %v", ch, err)
	}
	if ch2, _, err := bot.GetChannelByNameForTeamName(c, mmreal.ChannelName, w.Team.Name, ""); err != nil || ch2.Id != ch.Id {
		t.Errorf("GetChannelByNameForTeamName: %v", err)
	}
	_, _, err = bot.GetChannelByName(c, "nosuchchannel", team.Id, "")
	wantAppError(t, "unknown channel", err, http.StatusNotFound, "")
	if ch3, _, err := bot.GetChannel(c, ch.Id); err != nil || ch3.Name != mmreal.ChannelName {
		t.Errorf("GetChannel: %v", err)
	}

	// One page: 6.7.2 pages channel members without an ORDER BY, so on
	// PostgreSQL small pages can repeat some members and skip others.
	ms, _, err := bot.GetChannelMembers(c, ch.Id, 0, 200, "")
	if err != nil {
		t.Fatalf("GetChannelMembers: %v", err)
	}
	var members []string
	for _, m := range ms {
		members = append(members, m.UserId)
	}
	for _, p := range []*mmreal.Person{w.Bot, tech, biz, w.Person(mmreal.Requester)} {
		if !slices.Contains(members, p.ID()) {
			t.Errorf("channel members %v lack %s", members, p.Username())
		}
	}
	if slices.Contains(members, out.ID()) {
		t.Errorf("channel members include the outsider")
	}
	if m, _, err := bot.GetChannelMember(c, ch.Id, tech.ID(), ""); err != nil || m.UserId != tech.ID() {
		t.Errorf("GetChannelMember: %v", err)
	}
	_, _, err = bot.GetChannelMember(c, ch.Id, out.ID(), "")
	wantAppError(t, "outsider's channel membership", err, http.StatusNotFound, "app.channel.get_member.missing.app_error")
}

// testPatchPost: PUT /api/v4/posts/{id}/patch (what Client4.PatchPost
// sends): a message-only patch keeps props and buttons; a props patch
// replaces them. Only the author may patch.
func testPatchPost(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	in := newIntegration(t)
	c := ctx(t)
	bot, tech := w.Bot.Client, w.Person(mmreal.Tech1)
	post := mustPost(t, bot, card(w.Channel.Id, in.URL, "A-1"))

	msg := "Approval A-1: expired"
	patched, _, err := bot.PatchPost(c, post.Id, &model.PostPatch{Message: &msg})
	if err != nil {
		t.Fatalf("message patch: %v", err)
	}
	if patched.Message != msg || patched.EditAt == 0 || !slices.Equal(actionIDs(patched), []string{"approve", "reject"}) ||
		patched.GetProp("from_bot") != "true" {
		t.Fatalf("after a message patch: %q edit_at %d actions %v from_bot %v", patched.Message, patched.EditAt, actionIDs(patched), patched.GetProp("from_bot"))
	}
	// The buttons still reach the integration.
	if _, err := tech.Click(c, post.Id, "approve"); err != nil || len(in.got("/actions/approve")) != 1 {
		t.Fatalf("click after a message patch: %v, %d calls", err, len(in.got("/actions/approve")))
	}

	// A props patch with new attachments and no actions removes the buttons.
	props := model.StringInterface{model.PostPropsAttachments: []any{map[string]any{"title": "Approval A-1", "text": "Expired"}}}
	patched, _, err = bot.PatchPost(c, post.Id, &model.PostPatch{Props: &props})
	if err != nil {
		t.Fatalf("props patch: %v", err)
	}
	if len(actionIDs(patched)) != 0 || patched.Message != msg || len(patched.Attachments()) != 1 {
		t.Fatalf("after a props patch: message %q, actions %v, %d attachments", patched.Message, actionIDs(patched), len(patched.Attachments()))
	}
	if got := patched.GetProp("from_bot"); got != nil {
		t.Errorf("a props patch kept from_bot = %v", got)
	}
	_, err = tech.Click(c, post.Id, "approve")
	wantAppError(t, "click on a button removed by a patch", err, http.StatusNotFound, "api.post.do_action.action_id.app_error")

	// A props patch that brings buttons back makes them work again.
	fresh := card(w.Channel.Id, in.URL, "A-1")
	props = fresh.GetProps()
	if _, _, err := bot.PatchPost(c, post.Id, &model.PostPatch{Props: &props}); err != nil {
		t.Fatal(err)
	}
	if _, err := tech.Click(c, post.Id, "reject"); err != nil || len(in.got("/actions/reject")) != 1 {
		t.Fatalf("click on a button a patch brought back: %v", err)
	}

	// Only its author patches a post.
	_, _, err = tech.Client.PatchPost(c, post.Id, &model.PostPatch{Message: &msg})
	wantAppError(t, "tech1 patches the bot's post", err, http.StatusForbidden, "api.context.permissions.app_error")
	_, _, err = bot.PatchPost(c, model.NewId(), &model.PostPatch{Message: &msg})
	wantAppError(t, "patch of an unknown post", err, http.StatusForbidden, "api.context.permissions.app_error")

	// The route takes PUT only: PATCH is an unknown page.
	_, _, err = w.Bot.Do(c, http.MethodPatch, "/api/v4/posts/"+post.Id+"/patch", map[string]string{"message": "x"})
	wantAppError(t, "PATCH /api/v4/posts/{id}/patch", err, http.StatusNotFound, "api.context.404.app_error")
}

// testDirectMessages: the bot opens a DM with a person (the same channel on
// every call) and posts in it; the person reads it and hears of it.
func testDirectMessages(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	c := ctx(t)
	bot, tech := w.Bot.Client, w.Person(mmreal.Tech1)
	events := tech.Listen(t)

	dm, resp, err := bot.CreateDirectChannel(c, w.Bot.ID(), tech.ID())
	if err != nil {
		t.Fatalf("CreateDirectChannel: %v", err)
	}
	if dm.Type != model.ChannelTypeDirect || dm.TeamId != "" || dm.Name != model.GetDMNameFromIds(w.Bot.ID(), tech.ID()) {
		t.Fatalf("DM channel = %+v", dm)
	}
	firstStatus := resp.StatusCode
	again, resp, err := bot.CreateDirectChannel(c, tech.ID(), w.Bot.ID())
	if err != nil || again.Id != dm.Id {
		t.Fatalf("second CreateDirectChannel: %v, id %s vs %s", err, again.Id, dm.Id)
	}
	if firstStatus != http.StatusCreated || resp.StatusCode != http.StatusCreated {
		t.Errorf("CreateDirectChannel statuses %d, %d; want 201 both times", firstStatus, resp.StatusCode)
	}
	p := mustPost(t, bot, &model.Post{ChannelId: dm.Id, Message: "You are asked to approve A-1"})
	ev := events.Next(t, wait, "posted DM", mmreal.PostEvent(model.WebsocketEventPosted, p.Id))
	if ev.GetData()["channel_type"] != string(model.ChannelTypeDirect) {
		t.Errorf("posted event channel_type = %v", ev.GetData()["channel_type"])
	}
	posts, err := tech.Posts(c, dm.Id)
	if err != nil || len(posts) == 0 || posts[len(posts)-1].Id != p.Id {
		t.Fatalf("tech1 reads the DM: %v", err)
	}
	_, _, err = bot.CreateDirectChannel(c, w.Bot.ID(), model.NewId())
	if st := statusOf(err); st != http.StatusBadRequest && st != http.StatusNotFound {
		t.Errorf("DM with an unknown user: %v, want 400 or 404", err)
	}
	// Someone else cannot post in it.
	_, _, err = w.Person(mmreal.Biz1).Client.CreatePost(c, &model.Post{ChannelId: dm.Id, Message: "hi"})
	wantAppError(t, "biz1 posts in a DM of others", err, http.StatusForbidden, "api.context.permissions.app_error")
}

// testFiles: the bot uploads a file to a channel, attaches it to a post,
// and a channel member downloads the same bytes.
func testFiles(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	c := ctx(t)
	bot, tech := w.Bot.Client, w.Person(mmreal.Tech1)
	data := []byte("seq,kind\n1,run.started\n")

	up, resp, err := bot.UploadFile(c, data, w.Channel.Id, "ica-export.csv")
	if err != nil || resp.StatusCode != http.StatusCreated || len(up.FileInfos) != 1 {
		t.Fatalf("UploadFile: %v (%v)", err, resp)
	}
	info := up.FileInfos[0]
	if info.Name != "ica-export.csv" || info.Size != int64(len(data)) || info.Extension != "csv" || info.PostId != "" {
		t.Errorf("file info = %+v", info)
	}
	p := mustPost(t, bot, &model.Post{ChannelId: w.Channel.Id, Message: "export", FileIds: model.StringArray{info.Id}})
	if !slices.Equal([]string(p.FileIds), []string{info.Id}) {
		t.Fatalf("post file ids = %v", p.FileIds)
	}
	got, err := tech.Post(c, p.Id)
	if err != nil || got.Metadata == nil || len(got.Metadata.Files) != 1 || got.Metadata.Files[0].Id != info.Id {
		t.Fatalf("tech1 reads the post's files: %v %+v", err, got.Metadata)
	}
	b, _, err := tech.Client.GetFile(c, info.Id)
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("tech1 downloads %q, %v", b, err)
	}
	// Someone outside the channel can neither upload to it nor download
	// from it, even a public one.
	_, _, err = w.Person(mmreal.Outsider).Client.UploadFile(c, data, w.Channel.Id, "x.csv")
	wantAppError(t, "outsider uploads", err, http.StatusForbidden, "api.context.permissions.app_error")
	_, _, err = w.Person(mmreal.Outsider).Client.GetFile(c, info.Id)
	wantAppError(t, "outsider downloads", err, http.StatusForbidden, "api.context.permissions.app_error")
	// A file already attached is not attached again to another post.
	p2 := mustPost(t, bot, &model.Post{ChannelId: w.Channel.Id, Message: "again", FileIds: model.StringArray{info.Id}})
	if len(p2.FileIds) != 0 {
		t.Errorf("a second post took the attached file: %v", p2.FileIds)
	}
}

// testOutsiderReads: a team member outside a public channel (the bot, when
// approvers come from a channel it is not in) can find the channel and read
// one post by id, but not list its members or posts.
func testOutsiderReads(t *testing.T, peer Peer) {
	w := peer.NewWorld(t)
	c := ctx(t)
	out := w.Person(mmreal.Outsider).Client
	post := mustPost(t, w.Bot.Client, &model.Post{ChannelId: w.Channel.Id, Message: "inside"})

	if ch, _, err := out.GetChannelByName(c, mmreal.ChannelName, w.Team.Id, ""); err != nil || ch.Id != w.Channel.Id {
		t.Errorf("outsider GetChannelByName: %v", err)
	}
	if ch, _, err := out.GetChannelByNameForTeamName(c, mmreal.ChannelName, w.Team.Name, ""); err != nil || ch.Id != w.Channel.Id {
		t.Errorf("outsider GetChannelByNameForTeamName: %v", err)
	}
	if ch, _, err := out.GetChannel(c, w.Channel.Id); err != nil || ch.Id != w.Channel.Id {
		t.Errorf("outsider GetChannel: %v", err)
	}
	_, _, err := out.GetChannelMembers(c, w.Channel.Id, 0, 10, "")
	wantAppError(t, "outsider GetChannelMembers", err, http.StatusForbidden, "api.context.permissions.app_error")
	_, _, err = out.GetChannelMember(c, w.Channel.Id, w.Bot.ID(), "")
	wantAppError(t, "outsider GetChannelMember", err, http.StatusForbidden, "api.context.permissions.app_error")
	_, _, err = out.GetPostsForChannel(c, w.Channel.Id, 0, 10, "", false, false)
	wantAppError(t, "outsider GetPostsForChannel", err, http.StatusForbidden, "api.context.permissions.app_error")
	if p, _, err := out.GetPost(c, post.Id, ""); err != nil || p.Message != "inside" {
		t.Errorf("outsider GetPost: %v", err)
	}
}
