// Package mmcontract is the behaviour of Mattermost 6.7.2 that ICA relies
// on, written once as a test suite and run against every peer: the fake in
// bot/mmtest (fast, can fail on demand) and a real server (internal/mmreal).
// When the fake drifts from the real server, the suite fails on one of
// them; the fake is then fixed. Each case builds its own world, so cases
// run in parallel.
//
// Everything a case does goes over HTTP, as people and the bot do: the bot
// through model.Client4 with its token, people through mmreal.Person (click,
// dialog submit, slash command, websocket), and the integration side is an
// httptest server on 127.0.0.1 that records what the peer sends it.
package mmcontract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ica-governance/ica/internal/mmreal"
	"github.com/mattermost/mattermost/server/public/model"
)

// Peer is a Mattermost server under contract.
type Peer interface {
	// NewWorld makes a fresh world: a team, its "deployments" channel with
	// tech1, biz1, requester and the bot as members, and outsider in the
	// team only.
	NewWorld(t *testing.T) *mmreal.World
	// AddCommand registers the custom slash command /trigger in the world's
	// team, POSTing to url, and returns its token.
	AddCommand(t *testing.T, w *mmreal.World, trigger, url string) string
	// Wait lets d pass on the world's clock: a real server is waited for,
	// a fake may move its clock instead.
	Wait(t *testing.T, w *mmreal.World, d time.Duration)
}

// wait bounds every wait for an event that should come at once.
const wait = 10 * time.Second

// Run runs the whole contract against peer.
func Run(t *testing.T, peer Peer) {
	cases := []struct {
		name string
		fn   func(t *testing.T, peer Peer)
	}{
		{"PostCreateAndGet", testPostCreateAndGet},
		{"PendingPostID", testPendingPostID},
		{"PendingPostIDExpires", testPendingPostIDExpires},
		{"PostsForChannel", testPostsForChannel},
		{"Lookups", testLookups},
		{"OutsiderReads", testOutsiderReads},
		{"ActionRequest", testActionRequest},
		{"UpdateMessageKeepsButtons", testUpdateKeepsOrRemovesButtons},
		{"ClickRefusals", testClickRefusals},
		{"BotCanClick", testBotCanClick},
		{"MemberCard", testMemberCard},
		{"EveryClickDelivered", testEveryClickDelivered},
		{"IntegrationFailures", testIntegrationFailures},
		{"EphemeralOnlyToClicker", testEphemeralOnlyToClicker},
		{"DialogOpen", testDialogOpen},
		{"DialogSubmit", testDialogSubmit},
		{"SlashCommand", testSlashCommand},
		{"ResponseURL", testResponseURL},
		{"PatchPost", testPatchPost},
		{"DirectMessages", testDirectMessages},
		{"Files", testFiles},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, peer)
		})
	}
}

// ---- the integration side --------------------------------------------------

// call is one request the peer sent to the integration.
type call struct {
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
}

func (c call) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(c.Body, v); err != nil {
		t.Fatalf("%s: body %q: %v", c.Path, c.Body, err)
	}
}

// reply is what the integration answers.
type reply struct {
	Status int
	Body   string // JSON unless ContentType says otherwise
	Type   string
}

// integration is an HTTP server on loopback that records each request and
// answers with the reply registered for its path (200 {} by default).
type integration struct {
	URL string
	srv *httptest.Server

	mu      sync.Mutex
	calls   []call
	handler map[string]func(call) reply
}

func newIntegration(t *testing.T) *integration {
	in := &integration{handler: map[string]func(call) reply{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c := call{Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body}
		in.mu.Lock()
		in.calls = append(in.calls, c)
		h := in.handler[r.URL.Path]
		in.mu.Unlock()
		rep := reply{Status: http.StatusOK, Body: "{}"}
		if h != nil {
			rep = h(c)
		}
		ct := rep.Type
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(rep.Status)
		_, _ = io.WriteString(w, rep.Body)
	}))
	t.Cleanup(srv.Close)
	in.URL, in.srv = srv.URL, srv
	return in
}

// on sets the reply for a path.
func (in *integration) on(path string, h func(call) reply) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.handler[path] = h
}

// answer sets a fixed reply for a path.
func (in *integration) answer(path string, status int, body string) {
	in.on(path, func(call) reply { return reply{Status: status, Body: body} })
}

// got returns the requests to a path so far.
func (in *integration) got(path string) []call {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []call
	for _, c := range in.calls {
		if c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

// ---- helpers ---------------------------------------------------------------

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// card is a bot post shaped like ICA's approval card: one attachment with
// approve and reject buttons whose integration points at in.
func card(channelID, integrationURL, approvalID string) *model.Post {
	button := func(id, style string) *model.PostAction {
		return &model.PostAction{
			Id: id, Name: strings.ToUpper(id[:1]) + id[1:], Type: model.PostActionTypeButton, Style: style,
			Integration: &model.PostActionIntegration{
				URL:     integrationURL + "/actions/" + id,
				Context: map[string]any{"approval_id": approvalID, "action": id, "token": "secret-" + approvalID},
			},
		}
	}
	p := &model.Post{ChannelId: channelID, Message: "Approval request " + approvalID}
	// ICA finds its cards again by a prop of its own.
	p.AddProp("ica_approval_id", approvalID)
	p.AddProp(model.PostPropsAttachments, []*model.MessageAttachment{{
		Fallback: "Approval " + approvalID, Color: "#3AA3E3", Title: "Approval " + approvalID,
		Text:    "Requested by someone",
		Actions: []*model.PostAction{button("approve", "success"), button("reject", "danger")},
	}})
	return p
}

func mustPost(t *testing.T, c *model.Client4, p *model.Post) *model.Post {
	t.Helper()
	created, resp, err := c.CreatePost(context.Background(), p)
	if err != nil {
		t.Fatalf("create post: %v", err)
	}
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create post: status %d, want 201", resp.StatusCode)
	}
	return created
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

// wantAppError checks that err is a *model.AppError with this status (and id,
// when given).
func wantAppError(t *testing.T, what string, err error, status int, id string) {
	t.Helper()
	var ae *model.AppError
	if !errors.As(err, &ae) {
		t.Fatalf("%s: want error %d %s, got %v", what, status, id, err)
	}
	if ae.StatusCode != status || (id != "" && ae.Id != id) {
		t.Fatalf("%s: want error %d %s, got %d %s (%s %s)", what, status, id, ae.StatusCode, ae.Id, ae.Message, ae.DetailedError)
	}
}

func statusOf(err error) int {
	var ae *model.AppError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}

// quiet waits until person has seen a marker post from the bot in the
// world's channel, so that anything sent to them before it has arrived;
// then events holds everything up to the marker.
func quiet(t *testing.T, w *mmreal.World, events *mmreal.Events) {
	t.Helper()
	marker := mustPost(t, w.Bot.Client, &model.Post{ChannelId: w.Channel.Id, Message: "marker " + model.NewId()})
	events.Next(t, wait, "the marker post", mmreal.PostEvent(model.WebsocketEventPosted, marker.Id))
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func postJSON(t *testing.T, u, contentType string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(u, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}
