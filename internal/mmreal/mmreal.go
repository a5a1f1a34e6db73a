// Package mmreal lets tests use a real Mattermost server (6.7.2, started by
// scripts/mattermost.sh or `make mattermost`) the way people do: through its
// REST API and websocket, each person with their own token.
//
// The server is named by ICA_TEST_MATTERMOST_URL, with a system admin's
// personal access token in ICA_TEST_MATTERMOST_TOKEN. New provisions a fresh
// world for one test: a team with a unique name, its "deployments" channel,
// people (tech1, biz1 and requester in the channel; outsider in the team
// only), and a bot account with an access token. Names get a random suffix
// after a readable prefix ("tech1-k3x9qa"), so tests run in parallel and
// repeated runs on one server never collide.
//
//	w := mmreal.New(t)
//	... start ICA with w.URL and w.Bot.Token, then:
//	cmd := w.AddCommand(t, "ica", icaURL+"/mattermost/slash")
//	events := w.Person("tech1").Listen(t)
//	res, err := w.Person("tech1").Click(ctx, cardID, "approve")
//
// Without ICA_TEST_MATTERMOST_URL the test is skipped with a loud message;
// under CI (CI set and not "false") it fails instead.
//
// Person works against any server that speaks API v4 (the fake in
// bot/mmtest too): NewPerson wraps a token, so the same test code can drive
// both.
package mmreal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
)

// Environment variables naming the server.
const (
	EnvURL   = "ICA_TEST_MATTERMOST_URL"
	EnvToken = "ICA_TEST_MATTERMOST_TOKEN"
)

// The people every world has, by role. Their usernames are the role plus a
// random suffix.
const (
	Tech1     = "tech1"     // technical approver, in the channel
	Biz1      = "biz1"      // business approver, in the channel
	Requester = "requester" // the person who triggers runs, in the channel
	Outsider  = "outsider"  // in the team, not in the channel
)

// ChannelName is the name of the world's main channel (unique within its
// team, which is unique on the server).
const ChannelName = "deployments"

// requestTimeout bounds every provisioning request.
const requestTimeout = 30 * time.Second

// InCI reports whether the tests run under CI (CI set and not "false"),
// where a missing server is a failure rather than a skip.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Server is a real Mattermost server, seen by its system admin.
type Server struct {
	URL   string
	Admin *model.Client4
	Token string // the admin's personal access token

	adminOnce sync.Once
	admin     *model.User
	adminErr  error
}

// adminID is the user id of the admin.
func (s *Server) adminID(tb testing.TB) string {
	tb.Helper()
	s.adminOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		s.admin, _, s.adminErr = s.Admin.GetMe(ctx, "")
	})
	if s.adminErr != nil {
		tb.Fatalf("mmreal: who is the admin: %v", s.adminErr)
	}
	return s.admin.Id
}

var (
	checkOnce sync.Once
	checkErr  error
)

// Connect returns the server named by the environment. It skips the test,
// loudly, when ICA_TEST_MATTERMOST_URL is unset, and fails it under CI or
// when the server does not answer as an admin.
func Connect(tb testing.TB) *Server {
	tb.Helper()
	url := strings.TrimRight(os.Getenv(EnvURL), "/")
	token := os.Getenv(EnvToken)
	if url == "" {
		msg := EnvURL + " is not set: the tests against a real Mattermost server did not run " +
			"(make mattermost, then export what it prints; see the README's section on tests)"
		if InCI() {
			tb.Fatalf("%s; under CI it must be set (.ci/run starts Mattermost)", msg)
		}
		tb.Skipf("SKIPPING: %s", msg)
	}
	if token == "" {
		tb.Fatalf("%s is set but %s (a system admin's access token) is not", EnvURL, EnvToken)
	}
	admin := model.NewAPIv4Client(url)
	admin.SetToken(token)
	checkOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		me, _, err := admin.GetMe(ctx, "")
		switch {
		case err != nil:
			checkErr = fmt.Errorf("GET /api/v4/users/me with %s: %w", EnvToken, err)
		case !me.IsSystemAdmin():
			checkErr = fmt.Errorf("%s belongs to %s, who is not a system admin", EnvToken, me.Username)
		}
	})
	if checkErr != nil {
		tb.Fatalf("mmreal: Mattermost at %s: %v", url, checkErr)
	}
	return &Server{URL: url, Admin: admin, Token: token}
}

// World is one test's fresh corner of the server.
type World struct {
	URL     string
	Server  *Server
	Team    *model.Team
	Channel *model.Channel // "deployments"
	Bot     *Person        // a bot account, in the team and the channel

	suffix string
	mu     sync.Mutex
	people map[string]*Person // by role
}

// New provisions a fresh world on the server named by the environment (see
// Connect): team, channel, tech1, biz1, requester, outsider and the bot.
func New(tb testing.TB) *World {
	tb.Helper()
	return Connect(tb).NewWorld(tb)
}

// NewWorld provisions a fresh world on s.
func (s *Server) NewWorld(tb testing.TB) *World {
	tb.Helper()
	suffix := randomName(6)
	w := &World{URL: s.URL, Server: s, suffix: suffix, people: map[string]*Person{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*requestTimeout)
	defer cancel()

	team, _, err := s.Admin.CreateTeam(ctx, &model.Team{
		Name: "ica-" + suffix, DisplayName: "ICA " + suffix, Type: model.TeamOpen,
	})
	if err != nil {
		tb.Fatalf("mmreal: create team: %v", err)
	}
	w.Team = team
	w.Channel = w.AddChannel(tb, ChannelName)
	// The admin who made the channel became its member: take it out, so the
	// members are the world's people only.
	if _, err := s.Admin.RemoveUserFromChannel(ctx, w.Channel.Id, s.adminID(tb)); err != nil {
		tb.Fatalf("mmreal: admin leaves %s: %v", ChannelName, err)
	}

	w.Bot = w.AddBot(tb, "ica-bot")
	w.Join(tb, w.Channel, w.Bot)
	for _, role := range []string{Tech1, Biz1, Requester} {
		w.Join(tb, w.Channel, w.AddPerson(tb, role))
	}
	w.AddPerson(tb, Outsider)
	return w
}

// Person returns the person with this role (tech1, biz1, requester,
// outsider, or one made with AddPerson); a missing one fails the test.
func (w *World) Person(role string) *Person {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.people[role]
	if p == nil {
		panic("mmreal: no person " + role + " in this world")
	}
	return p
}

// People returns the people by role (the bot is w.Bot).
func (w *World) People() map[string]*Person {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]*Person, len(w.people))
	for k, v := range w.people {
		out[k] = v
	}
	return out
}

// AddPerson creates a user named role-<suffix>, makes it a member of the
// world's team (no channel), gives it a personal access token and returns
// it. Later, w.Person(role) finds it.
func (w *World) AddPerson(tb testing.TB, role string) *Person {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	admin := w.Server.Admin
	name := username(role, w.suffix)
	u, _, err := admin.CreateUser(ctx, &model.User{
		Username: name, Email: name + "@example.com", Password: "Aa1-" + randomName(16),
		FirstName: role, Locale: "en",
	})
	if err != nil {
		tb.Fatalf("mmreal: create user %s: %v", name, err)
	}
	if _, _, err := admin.AddTeamMember(ctx, w.Team.Id, u.Id); err != nil {
		tb.Fatalf("mmreal: add %s to team %s: %v", name, w.Team.Name, err)
	}
	tok, _, err := admin.CreateUserAccessToken(ctx, u.Id, "ica tests", 0)
	if err != nil {
		tb.Fatalf("mmreal: access token for %s: %v", name, err)
	}
	p := NewPerson(w.URL, u, tok.Token)
	w.mu.Lock()
	w.people[role] = p
	w.mu.Unlock()
	return p
}

// AddBot creates a bot account named name-<suffix> with an access token,
// in the world's team (no channel).
func (w *World) AddBot(tb testing.TB, name string) *Person {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	admin := w.Server.Admin
	bot, _, err := admin.CreateBot(ctx, &model.Bot{
		Username: username(name, w.suffix), DisplayName: "ICA", Description: "ICA tests",
	})
	if err != nil {
		tb.Fatalf("mmreal: create bot: %v", err)
	}
	if _, _, err := admin.AddTeamMember(ctx, w.Team.Id, bot.UserId); err != nil {
		tb.Fatalf("mmreal: add bot to team: %v", err)
	}
	tok, _, err := admin.CreateUserAccessToken(ctx, bot.UserId, "ica tests", 0)
	if err != nil {
		tb.Fatalf("mmreal: bot access token: %v", err)
	}
	u, _, err := admin.GetUser(ctx, bot.UserId, "")
	if err != nil {
		tb.Fatalf("mmreal: get bot user: %v", err)
	}
	return NewPerson(w.URL, u, tok.Token)
}

// AddChannel creates a public channel in the world's team, with no members.
func (w *World) AddChannel(tb testing.TB, name string) *model.Channel {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	c, _, err := w.Server.Admin.CreateChannel(ctx, &model.Channel{
		TeamId: w.Team.Id, Name: name, DisplayName: name, Type: model.ChannelTypeOpen,
	})
	if err != nil {
		tb.Fatalf("mmreal: create channel %s: %v", name, err)
	}
	return c
}

// Join adds people to a channel of the world's team.
func (w *World) Join(tb testing.TB, c *model.Channel, people ...*Person) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	for _, p := range people {
		if _, _, err := w.Server.Admin.AddChannelMember(ctx, c.Id, p.ID()); err != nil {
			tb.Fatalf("mmreal: add %s to channel %s: %v", p.Username(), c.Name, err)
		}
	}
}

// Leave removes people from a channel.
func (w *World) Leave(tb testing.TB, c *model.Channel, people ...*Person) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	for _, p := range people {
		if _, err := w.Server.Admin.RemoveUserFromChannel(ctx, c.Id, p.ID()); err != nil {
			tb.Fatalf("mmreal: remove %s from channel %s: %v", p.Username(), c.Name, err)
		}
	}
}

// AddCommand registers a custom slash command /trigger in the world's team
// that POSTs to url (ICA's /mattermost/slash), and returns it; its Token is
// what ICA must accept (ICA_SLASH_TOKENS). Triggers are unique per team, and
// the team is the world's own.
func (w *World) AddCommand(tb testing.TB, trigger, url string) *model.Command {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	cmd, _, err := w.Server.Admin.CreateCommand(ctx, &model.Command{
		TeamId: w.Team.Id, Trigger: strings.TrimPrefix(trigger, "/"), URL: url,
		Method: model.CommandMethodPost, DisplayName: "ICA", Description: "ICA tests",
		AutoComplete: true, AutoCompleteDesc: "ICA", Username: "", IconURL: "",
	})
	if err != nil {
		tb.Fatalf("mmreal: create command /%s: %v", trigger, err)
	}
	return cmd
}

// ICAEnv returns the settings that point an ICA at this world: the server,
// the bot's token, the team and channel, tech1 and biz1 as the technical and
// business approvers. Add ICA_ADDR, ICA_PUBLIC_URL, ICA_SLASH_TOKENS (from
// AddCommand) and the rest as the test needs.
func (w *World) ICAEnv() map[string]string {
	env := map[string]string{
		"ICA_MATTERMOST_URL":   w.URL,
		"ICA_MATTERMOST_TOKEN": w.Bot.Token,
		"ICA_MATTERMOST_TEAM":  w.Team.Name,
		"ICA_APPROVAL_CHANNEL": w.Channel.Name,
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.people[Tech1]; p != nil {
		env["ICA_TECH_APPROVERS"] = p.Username()
	}
	if p := w.people[Biz1]; p != nil {
		env["ICA_BUSINESS_APPROVERS"] = p.Username()
	}
	return env
}

// SigningKey returns the server's public key for trigger ids, as published
// under AsymmetricSigningPublicKey in /api/v4/config/client?format=old.
func (w *World) SigningKey(tb testing.TB) string {
	tb.Helper()
	return SigningKey(tb, w.URL)
}

// username makes a valid, unique Mattermost username: a readable role, a
// dash and the world's suffix (at most 22 characters, lower case).
func username(role, suffix string) string {
	role = strings.ToLower(role)
	if max := 22 - 1 - len(suffix); len(role) > max {
		role = role[:max]
	}
	return role + "-" + suffix
}

const nameAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// randomName is n random lower-case letters and digits, starting with a letter.
func randomName(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("mmreal: random: " + err.Error())
	}
	for i := range b {
		alpha := nameAlphabet
		if i == 0 {
			alpha = nameAlphabet[:26]
		}
		b[i] = alpha[int(b[i])%len(alpha)]
	}
	return string(b)
}

// appError turns a failed API answer into a *model.AppError (a plain one,
// with the status, when the body is not an AppError).
func appError(status int, body []byte) *model.AppError {
	ae := model.AppErrorFromJSON(strings.NewReader(string(body)))
	var e *model.AppError
	if errors.As(ae, &e) && e.Id != "" {
		if e.StatusCode == 0 {
			e.StatusCode = status
		}
		return e
	}
	return &model.AppError{Id: "mmreal.http_error", StatusCode: status,
		Message: http.StatusText(status), DetailedError: string(body)}
}

// Assemble makes a World out of people on another server that speaks API v4
// (the fake in bot/mmtest), so the same test code can drive both. Such a
// world has no Server: provisioning methods (AddPerson, AddChannel, Join,
// AddCommand ...) are for real servers only.
func Assemble(url string, team *model.Team, channel *model.Channel, bot *Person, people map[string]*Person) *World {
	w := &World{URL: strings.TrimRight(url, "/"), Team: team, Channel: channel, Bot: bot, people: map[string]*Person{}}
	for role, p := range people {
		w.people[role] = p
	}
	return w
}
