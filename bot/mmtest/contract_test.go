package mmtest_test

import (
	"sync"
	"testing"

	"github.com/ica-governance/ica/bot/mmtest"
	"github.com/ica-governance/ica/internal/mmcontract"
	"github.com/ica-governance/ica/internal/mmreal"
	"github.com/mattermost/mattermost/server/public/model"
)

// fakePeer is the fake under the Mattermost contract; one fake server per world.
type fakePeer struct{}

func (fakePeer) NewWorld(t *testing.T) *mmreal.World {
	mm := mmtest.New(t)
	teamID := mm.AddTeam("ica")
	chID := mm.AddChannel("ica", mmreal.ChannelName)
	botID, botToken := mm.AddBot("ica-bot")
	people := map[string]*mmreal.Person{}
	for _, role := range []string{mmreal.Tech1, mmreal.Biz1, mmreal.Requester, mmreal.Outsider} {
		mm.AddUser(role)
	}
	mm.Join(mmreal.ChannelName, "ica-bot", mmreal.Tech1, mmreal.Biz1, mmreal.Requester)
	mm.JoinTeam("ica", mmreal.Outsider)

	admin := model.NewAPIv4Client(mm.URL)
	admin.SetToken(botToken)
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
	team, _, err := admin.GetTeam(t.Context(), teamID, "")
	if err != nil {
		team = &model.Team{Id: teamID, Name: "ica"}
	}
	ch, _, err := admin.GetChannel(t.Context(), chID)
	if err != nil {
		t.Fatalf("fake: GetChannel: %v", err)
	}
	w := mmreal.Assemble(mm.URL, team, ch, bot, people)
	fakes.Store(w, mm)
	return w
}

func (fakePeer) AddCommand(t *testing.T, w *mmreal.World, trigger, url string) string {
	mm, _ := fakes.Load(w)
	return mm.(*mmtest.Server).AddCommand("ica", trigger, url)
}

// TestContract_Fake runs the Mattermost contract against the fake, so the
// fake keeps the real server's behaviour (internal/mmreal runs the same
// contract against a real server).
func TestContract_Fake(t *testing.T) {
	mmcontract.Run(t, fakePeer{})
}

// fakes maps each world to its fake server.
var fakes sync.Map
