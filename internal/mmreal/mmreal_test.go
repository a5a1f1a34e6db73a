package mmreal_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ica-governance/ica/internal/mmreal"
	"github.com/mattermost/mattermost/server/public/model"
)

func TestNew_ProvisionsAFreshWorld(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	ctx := context.Background()

	for role, p := range w.People() {
		if !strings.HasPrefix(p.Username(), role+"-") {
			t.Errorf("%s is named %q", role, p.Username())
		}
		me, _, err := p.Client.GetMe(ctx, "")
		if err != nil || me.Id != p.ID() {
			t.Fatalf("%s's own token: %v", role, err)
		}
	}
	if !w.Bot.User.IsBot {
		t.Fatalf("bot %s is not a bot account", w.Bot.Username())
	}
	// In the channel: tech1, biz1, requester and the bot; outsider is in
	// the team only.
	for _, p := range []*mmreal.Person{w.Person(mmreal.Tech1), w.Person(mmreal.Biz1), w.Person(mmreal.Requester), w.Bot} {
		if _, _, err := w.Server.Admin.GetChannelMember(ctx, w.Channel.Id, p.ID(), ""); err != nil {
			t.Errorf("%s is not in %s: %v", p.Username(), w.Channel.Name, err)
		}
	}
	out := w.Person(mmreal.Outsider)
	if _, _, err := w.Server.Admin.GetChannelMember(ctx, w.Channel.Id, out.ID(), ""); err == nil {
		t.Errorf("outsider is in the channel")
	}
	if _, _, err := w.Server.Admin.GetTeamMember(ctx, w.Team.Id, out.ID(), ""); err != nil {
		t.Errorf("outsider is not in the team: %v", err)
	}

	// Another world shares nothing with this one.
	w2 := mmreal.New(t)
	if w2.Team.Name == w.Team.Name || w2.Person(mmreal.Tech1).Username() == w.Person(mmreal.Tech1).Username() {
		t.Fatalf("two worlds share names")
	}
}

func TestPerson_ListenSeesPostsAndCommandReplies(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	ctx := context.Background()
	tech := w.Person(mmreal.Tech1)
	events := tech.Listen(t)

	p, _, err := w.Bot.Client.CreatePost(ctx, &model.Post{ChannelId: w.Channel.Id, Message: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	ev := events.Next(t, 10*time.Second, "posted", mmreal.PostEvent(model.WebsocketEventPosted, p.Id))
	if got := mmreal.EventPost(t, ev); got.Message != "hello" || got.UserId != w.Bot.ID() {
		t.Fatalf("posted event carries %+v", got)
	}
	posts, err := tech.Posts(ctx, w.Channel.Id)
	if err != nil || len(posts) == 0 || posts[len(posts)-1].Id != p.Id {
		t.Fatalf("tech1 reads the channel: %v, %d posts", err, len(posts))
	}

	// A command that does not exist: the server answers 404 itself.
	_, status, err := tech.Command(ctx, w.Channel.Id, "", "/nosuchcommand")
	var ae *model.AppError
	if !errors.As(err, &ae) || status != http.StatusNotFound {
		t.Fatalf("unknown command: status %d, %v", status, err)
	}
}

func TestSigningKey_VerifiesTriggersOfThisServer(t *testing.T) {
	t.Parallel()
	w := mmreal.New(t)
	key := w.SigningKey(t)
	if _, err := mmreal.VerifyTrigger(key, "bm90OmE6dHJpZ2dlcg=="); err == nil {
		t.Fatal("a made-up trigger id verified")
	}
}
