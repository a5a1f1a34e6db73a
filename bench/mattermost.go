package bench

import (
	"fmt"
	"sync"
	"testing"

	"github.com/ica-governance/ica/bot/mmtest"
)

// tbShim lets bot/mmtest (which takes a testing.TB) run outside a test:
// Fatalf panics (turned into an error by StartMattermost), Logf is dropped,
// Cleanup collects what Close runs. Any other testing.TB method would
// panic on the nil embedded interface; mmtest uses none.
type tbShim struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
}

type shimFatal struct{ msg string }

func (t *tbShim) Helper()                           {}
func (t *tbShim) Logf(string, ...any)               {}
func (t *tbShim) Fatalf(format string, args ...any) { panic(shimFatal{fmt.Sprintf(format, args...)}) }
func (t *tbShim) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// FakeMattermost is bot/mmtest's fake Mattermost server on loopback, with
// one team, one approval channel, the bot and the given users in it.
type FakeMattermost struct {
	*mmtest.Server
	BotToken string
	UserIDs  map[string]string // username -> user id
	TeamID   string
	Channel  string // approval channel name
	shim     *tbShim
}

// StartMattermost starts the fake with team, channel (the bot and users
// are members) and the bot "ica-bot".
func StartMattermost(team, channel string, users []string) (fm *FakeMattermost, err error) {
	shim := &tbShim{}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(shimFatal)
			if !ok {
				panic(r)
			}
			shim.run()
			fm, err = nil, fmt.Errorf("fake Mattermost: %s", f.msg)
		}
	}()
	s := mmtest.New(shim)
	fm = &FakeMattermost{Server: s, UserIDs: map[string]string{}, Channel: channel, shim: shim}
	fm.TeamID = s.AddTeam(team)
	s.AddChannel(team, channel)
	_, fm.BotToken = s.AddBot("ica-bot")
	s.Join(channel, "ica-bot")
	for _, u := range users {
		fm.UserIDs[u] = s.AddUser(u)
		s.Join(channel, u)
	}
	return fm, nil
}

// Close stops the fake.
func (m *FakeMattermost) Close() { m.shim.run() }

func (t *tbShim) run() {
	t.mu.Lock()
	c := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}
