package mmtest_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ica-governance/ica/bot/mmtest"
	"github.com/ica-governance/ica/internal/mmcontract"
	"github.com/ica-governance/ica/internal/mmreal"
	"github.com/mattermost/mattermost/server/public/model"
)

// fakePeer is the fake under the Mattermost contract; one fake server per world.
type fakePeer struct{}

func (fakePeer) NewWorld(t *testing.T) *mmreal.World {
	clock := &offsetClock{}
	mm := mmtest.New(t, mmtest.WithClock(clock))
	teamID := mm.AddTeam("ica")
	chID := mm.AddChannel("ica", mmreal.ChannelName)
	botID, botToken := mm.AddBot("ica-bot")
	people := map[string]*mmreal.Person{}
	for _, role := range []string{mmreal.Tech1, mmreal.Biz1, mmreal.Requester, mmreal.Outsider} {
		mm.AddUser(role)
	}
	mm.Join(mmreal.ChannelName, "ica-bot", mmreal.Tech1, mmreal.Biz1, mmreal.Requester)
	mm.JoinTeam("ica", mmreal.Outsider)

	get := func(username, token string) *mmreal.Person {
		c := model.NewAPIv4Client(mm.URL)
		c.SetToken(token)
		u, _, err := c.GetMe(t.Context(), "")
		if err != nil {
			t.Fatalf("fake: GetMe for %s: %v", username, err)
		}
		return mmreal.NewPerson(mm.URL, u, token)
	}
	for _, role := range []string{mmreal.Tech1, mmreal.Biz1, mmreal.Requester, mmreal.Outsider} {
		people[role] = get(role, mm.Token(role))
	}
	bot := get("ica-bot", botToken)
	if bot.ID() != botID {
		t.Fatalf("fake: bot id %s vs %s", bot.ID(), botID)
	}
	team, _, err := bot.Client.GetTeamByName(t.Context(), "ica", "")
	if err != nil || team.Id != teamID {
		t.Fatalf("fake: GetTeamByName: %v", err)
	}
	ch, _, err := bot.Client.GetChannel(t.Context(), chID)
	if err != nil {
		t.Fatalf("fake: GetChannel: %v", err)
	}
	w := mmreal.Assemble(mm.URL, team, ch, bot, people)
	fakes.Store(w, fakeWorld{mm: mm, clock: clock})
	return w
}

type fakeWorld struct {
	mm    *mmtest.Server
	clock *offsetClock
}

func fakeOf(w *mmreal.World) fakeWorld {
	f, _ := fakes.Load(w)
	return f.(fakeWorld)
}

func (fakePeer) AddCommand(t *testing.T, w *mmreal.World, trigger, url string) string {
	return fakeOf(w).mm.AddCommand("ica", trigger, url)
}

// Wait moves the world's clock instead of sleeping.
func (fakePeer) Wait(_ *testing.T, w *mmreal.World, d time.Duration) { fakeOf(w).clock.advance(d) }

// offsetClock is the system clock plus what Wait has added.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// TestContract_Fake runs the Mattermost contract against the fake, so the
// fake keeps the real server's behaviour (internal/mmreal runs the same
// contract against a real server).
func TestContract_Fake(t *testing.T) {
	mmcontract.Run(t, fakePeer{})
}

// fakes maps each world to its fake server.
var fakes sync.Map
