package main

// Helpers of the end-to-end tests against a real Mattermost server
// (e2e_mattermost_test.go): a real `ica serve`, run in-process, wired to a
// world of internal/mmreal through the world's bot token; people act with
// their own tokens through the server's API, the pipeline through ICA's.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/internal/mmreal"
)

// e2eWait bounds every wait for something that should happen at once (a
// card posted, an update, a DM): generous, for -race on two cores.
const e2eWait = 20 * time.Second

// e2eCommit is the commit every run of these tests builds.
const e2eCommit = "0123456789abcdef0123456789abcdef01234567"

// breakglassToken is the break-glass credential of the tests that bypass.
const breakglassToken = "e2e-breakglass-token-0001"

// serveStartMu serialises the start of the end-to-end ICAs: serveClockHook
// is read once by cmdServe at start, so a test that sets it holds this lock
// until its ICA listens, and no other ICA starts meanwhile.
var serveStartMu sync.Mutex

// e2eOptions change how startE2E wires an ICA.
type e2eOptions struct {
	// env adds or replaces settings (ICA_…).
	env map[string]string
	// slash registers /ica in the world's team for this ICA.
	slash bool
	// clock, when set, is the ICA's clock.
	clock *tickingClock
	// mattermostURL, when set, is where ICA reaches Mattermost (a proxy in
	// front of the world's server).
	mattermostURL string
}

// e2eICA is one `ica serve` wired to a world.
type e2eICA struct {
	t     *testing.T
	w     *mmreal.World
	Base  string // ICA's URL (also ICA_PUBLIC_URL: Mattermost calls it back there)
	Dir   string // data directory
	Logs  *syncBuffer
	Slash *model.Command // the /ica command, when asked for
}

// startE2E starts a real `ica serve` for the world: its bot token, team and
// approval channel, tech1 and biz1 as approvers (w.ICAEnv), a pipeline token,
// and waits until /readyz says Mattermost is ok. It stops at the end of the
// test, which fails if the exit status is not 0.
func startE2E(t *testing.T, w *mmreal.World, opt e2eOptions) *e2eICA {
	t.Helper()
	addr := freeAddr(t)
	env := w.ICAEnv()
	env["ICA_ADDR"] = addr
	env["ICA_DATA_DIR"] = t.TempDir()
	env["ICA_PUBLIC_URL"] = "http://" + addr
	env["ICA_PIPELINE_TOKENS"] = "ado=" + testToken
	if opt.mattermostURL != "" {
		env["ICA_MATTERMOST_URL"] = opt.mattermostURL
	}
	var slash *model.Command
	if opt.slash {
		slash = w.AddCommand(t, "ica", "http://"+addr+"/mattermost/slash")
		env["ICA_SLASH_TOKENS"] = slash.Token
	}
	for k, v := range opt.env {
		env[k] = v
	}

	serveStartMu.Lock()
	if opt.clock != nil {
		serveClockHook.Store(opt.clock.FakeClock)
	}
	base, stop, logs := func() (string, func() int, *syncBuffer) {
		defer serveStartMu.Unlock()
		defer serveClockHook.Store(nil)
		return startServe(t, env)
	}()
	t.Cleanup(func() {
		if code := stop(); code != 0 {
			t.Errorf("ica serve exited with %d:\n%s", code, logs.String())
		}
		if t.Failed() {
			// The whole log next to the screenshots, the end of it here.
			name := strings.NewReplacer("/", "_", ":", "_").Replace(t.Name() + "-" + strings.TrimPrefix(base, "http://"))
			path := filepath.Join(e2eArtifacts(t), name+".log")
			if err := os.WriteFile(path, []byte(logs.String()), 0o644); err == nil {
				t.Logf("ICA at %s logged (all of it in %s):\n%s", base, path, tail(logs.String(), 60))
			} else {
				t.Logf("ICA at %s logged:\n%s", base, tail(logs.String(), 60))
			}
		}
	})
	e := &e2eICA{t: t, w: w, Base: base, Dir: env["ICA_DATA_DIR"], Logs: logs, Slash: slash}
	require.Eventually(t, func() bool {
		_, body := call(t, "GET", base+"/readyz", "", "")
		checks, _ := body["checks"].(map[string]any)
		return checks["mattermost"] == "ok"
	}, e2eWait, 50*time.Millisecond, "ICA connects to the real Mattermost:\n%s", logs.String())
	return e
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startRun starts a pipeline run triggered by who (an e-mail address or a
// username, as Azure DevOps gives it).
func (e *e2eICA) startRun(runID, who string) {
	e.t.Helper()
	st, body := call(e.t, "POST", e.Base+"/api/v1/runs", testToken, fmt.Sprintf(
		`{"pipeline_name":"payments","run_id":%q,"branch":"refs/heads/main","commit":%q,"triggered_by":%q}`, runID, e2eCommit, who))
	require.Equal(e.t, 201, st, "start run %s: %v", runID, body)
}

// requestApproval asks for an approval of a run to production, as the
// pipeline does, and returns its id.
func (e *e2eICA) requestApproval(runID string, cost float64) string {
	e.t.Helper()
	st, body := call(e.t, "POST", e.Base+"/api/v1/approvals", testToken,
		fmt.Sprintf(`{"run_id":%q,"deployment_target":"production","estimated_cost":%v}`, runID, cost))
	require.Equal(e.t, 201, st, "request approval of %s: %v", runID, body)
	require.Equal(e.t, "pending", body["status"])
	return body["approval_id"].(string)
}

// approval is the pipeline's poll: GET /api/v1/approvals/{id}.
func (e *e2eICA) approval(id string) *ica.Approval {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.Base+"/api/v1/approvals/"+id, nil)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	require.Equal(e.t, 200, res.StatusCode, "GET approval %s: %s", id, raw)
	var a ica.Approval
	require.NoError(e.t, json.Unmarshal(raw, &a))
	return &a
}

// waitStatus polls the approval until it has the status.
func (e *e2eICA) waitStatus(id, status string) *ica.Approval {
	e.t.Helper()
	var a *ica.Approval
	require.Eventually(e.t, func() bool {
		a = e.approval(id)
		return a.Status == status
	}, e2eWait, 20*time.Millisecond, "approval %s becomes %s", id, status)
	return a
}

// card waits until ICA has recorded the post of the approval's card, and
// returns that post as who reads it.
func (e *e2eICA) card(who *mmreal.Person, id string) *model.Post {
	e.t.Helper()
	var postID string
	require.Eventually(e.t, func() bool {
		postID = e.approval(id).Card.PostID
		return postID != ""
	}, e2eWait, 20*time.Millisecond, "ICA posts and records the card of %s:\n%s", id, e.Logs.String())
	p, err := who.Post(context.Background(), postID)
	require.NoError(e.t, err, "%s reads the card %s", who.Username(), postID)
	return p
}

// cardWhen waits until the card of the approval, as who reads it,
// satisfies ok.
func (e *e2eICA) cardWhen(who *mmreal.Person, id, what string, ok func(p *model.Post) bool) *model.Post {
	e.t.Helper()
	p := e.card(who, id)
	require.Eventually(e.t, func() bool {
		var err error
		p, err = who.Post(context.Background(), p.Id)
		return err == nil && ok(p)
	}, e2eWait, 50*time.Millisecond, "the card of %s: %s", id, what)
	return p
}

// ledgerLine is one entry of a JSON Lines export.
type ledgerLine struct {
	Type    string          `json:"type"`
	Seq     uint64          `json:"seq"`
	Kind    string          `json:"kind"`
	Subject string          `json:"subject"`
	Actor   string          `json:"actor"`
	Data    json.RawMessage `json:"data"`
}

// decision is the data of an approval transition entry.
type decisionData struct {
	ApprovalID string      `json:"approval_id"`
	Action     string      `json:"action"`
	From       string      `json:"from"`
	To         string      `json:"to"`
	By         ica.Decider `json:"by"`
	Comment    string      `json:"comment"`
	Via        string      `json:"via"`
}

// ledger exports the whole ledger as JSON Lines through the running
// server's admin socket (`ica export`, which verifies what it writes), and
// returns its entries; `ica check` must find the ledger consistent.
func (e *e2eICA) ledger() []ledgerLine {
	e.t.Helper()
	out := filepath.Join(e.t.TempDir(), "ledger.jsonl")
	var msg bytes.Buffer
	code := run(context.Background(), []string{"ica", "export", "--data-dir", e.Dir, "--format", "json",
		"--from", "2000-01-01", "--to", "2999-12-31", "--out", out}, envFunc(nil), &msg, &msg)
	require.Equal(e.t, 0, code, "ica export: %s", msg.String())
	f, err := os.Open(out)
	require.NoError(e.t, err)
	defer f.Close()
	var lines []ledgerLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l ledgerLine
		require.NoError(e.t, json.Unmarshal(sc.Bytes(), &l), "export line %s", sc.Bytes())
		if l.Type == "entry" {
			lines = append(lines, l)
		}
	}
	require.NoError(e.t, sc.Err())
	msg.Reset()
	code = run(context.Background(), []string{"ica", "check", "--data-dir", e.Dir}, envFunc(nil), &msg, &msg)
	require.Equal(e.t, 0, code, "ica check: %s", msg.String())
	return lines
}

// decisions returns the approval transitions the ledger records for id
// (kinds approval.<status>, other than the request itself), in order.
func (e *e2eICA) decisions(id string) []decisionData {
	e.t.Helper()
	var out []decisionData
	for _, l := range e.ledger() {
		if l.Subject != id || !strings.HasPrefix(l.Kind, ica.KindApprovalTransition) ||
			l.Kind == ica.KindApprovalRequested || l.Kind == ica.KindApprovalCard || l.Kind == ica.KindApprovalReminder {
			continue
		}
		var d decisionData
		require.NoError(e.t, json.Unmarshal(l.Data, &d), "entry %d %s", l.Seq, l.Data)
		require.Equal(e.t, ica.KindApprovalTransition+d.To, l.Kind, "entry %d", l.Seq)
		out = append(out, d)
	}
	return out
}

// attachment returns the card's one attachment.
func attachment(t *testing.T, p *model.Post) *model.MessageAttachment {
	t.Helper()
	atts := p.Attachments()
	require.Len(t, atts, 1, "post %s has one attachment: %v", p.Id, p.GetProps())
	return atts[0]
}

// buttons returns the ids of a post's buttons.
func buttons(p *model.Post) []string {
	var ids []string
	for _, a := range p.Attachments() {
		for _, act := range a.Actions {
			ids = append(ids, act.Id)
		}
	}
	return ids
}

// field returns the value of the card's field with this title, or "".
func field(p *model.Post, title string) string {
	for _, a := range p.Attachments() {
		for _, f := range a.Fields {
			if f.Title == title {
				return fmt.Sprint(f.Value)
			}
		}
	}
	return ""
}

// click clicks a button as the person, through the real server.
func click(t *testing.T, p *mmreal.Person, postID, actionID string) *mmreal.ClickResult {
	t.Helper()
	res, err := p.Click(context.Background(), postID, actionID)
	require.NoError(t, err, "%s clicks %s on %s", p.Username(), actionID, postID)
	require.Equal(t, 200, res.Status)
	return res
}

// ephemeralOn waits for the next ephemeral message under a post (the
// answer to a click) on the person's websocket and returns its text.
func ephemeralOn(t *testing.T, ev *mmreal.Events, postID string) string {
	t.Helper()
	e := ev.Next(t, e2eWait, "ephemeral reply under "+postID, mmreal.PostEvent(model.WebsocketEventEphemeralMessage, postID))
	return mmreal.EventPost(t, e).Message
}

// botDMs returns the direct messages from the bot that the person's
// websocket has delivered so far, oldest first. People's own reads of a
// direct channel are no way to wait for one: Mattermost 6.7.2 answers 403,
// for many seconds, to a person who reads their channels while the bot
// creates the channel (a stale cache of the person's channel memberships),
// whereas the websocket reloads memberships when a channel is added.
func botDMs(t *testing.T, w *mmreal.World, ev *mmreal.Events) []*model.Post {
	t.Helper()
	var out []*model.Post
	for _, e := range ev.All() {
		if e.EventType() != model.WebsocketEventPosted || e.GetData()["channel_type"] != string(model.ChannelTypeDirect) {
			continue
		}
		if p := mmreal.EventPost(t, e); p.UserId == w.Bot.ID() {
			out = append(out, p)
		}
	}
	return out
}

// waitBotDMs waits until the person's websocket has delivered n direct
// messages from the bot, and returns them all.
func waitBotDMs(t *testing.T, w *mmreal.World, ev *mmreal.Events, who string, n int) []*model.Post {
	t.Helper()
	var posts []*model.Post
	start := time.Now()
	require.Eventually(t, func() bool {
		posts = botDMs(t, w, ev)
		if len(posts) >= n {
			return true
		}
		// Mattermost's websocket hub can miss the first post of a direct
		// channel created a moment before (it reloads the person's
		// memberships asynchronously): after a while, read the channel
		// through the bot, whose own post proves its membership.
		if time.Since(start) > 5*time.Second {
			if api := botDMsByAPI(t, w, who); len(api) >= n {
				posts = api
				return true
			}
		}
		return false
	}, e2eWait, 50*time.Millisecond, "%s gets %d direct messages from the bot", who, n)
	return posts
}

// botDMsByAPI reads the bot's direct channel with a person through the
// bot's own token, oldest first (nil while the channel does not exist).
func botDMsByAPI(t *testing.T, w *mmreal.World, who string) []*model.Post {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	name := model.GetDMNameFromIds(w.Bot.ID(), w.Person(who).ID())
	chs, _, err := w.Bot.Client.GetChannelsForTeamForUser(ctx, w.Team.Id, w.Bot.ID(), false, "")
	if err != nil {
		return nil
	}
	for _, ch := range chs {
		if ch.Name != name {
			continue
		}
		list, _, err := w.Bot.Client.GetPostsForChannel(ctx, ch.Id, 0, 200, "", false, false)
		if err != nil {
			return nil
		}
		var out []*model.Post
		for _, id := range list.Order {
			if p := list.Posts[id]; p.UserId == w.Bot.ID() && p.Type == "" {
				out = append(out, p)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].CreateAt < out[j].CreateAt })
		return out
	}
	return nil
}

// tickingClock is an ICA's clock that follows the real one, plus an offset
// the test moves forward: the ICA runs in real time (outbox retries, the
// freshness of Mattermost's trigger_ids), and a jump makes hours pass at
// once. After a jump Mattermost's trigger_ids are as old as the jump to
// ICA, so clicks and commands belong before it.
type tickingClock struct {
	*ica.FakeClock
	mu     sync.Mutex
	offset time.Duration
}

// newTickingClock returns a clock that follows the real one until the test ends.
func newTickingClock(t *testing.T) *tickingClock {
	c := &tickingClock{FakeClock: ica.NewFakeClock(time.Now())}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				c.mu.Lock()
				c.Set(time.Now().Add(c.offset))
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped })
	return c
}

// Jump moves the clock forward by d at once.
func (c *tickingClock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
	c.Set(time.Now().Add(c.offset))
}

// e2eArtifacts is where these tests keep what a person would look at
// (screenshots): ICA_ARTIFACTS/e2e, or the repository's artifacts/e2e
// (git-ignored).
func e2eArtifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ICA_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts")
	}
	dir = filepath.Join(dir, "e2e")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// tcpProxy forwards TCP connections to a server until it is cut: then it
// drops the connections it carries and resets every new one, which is what
// ICA sees of a Mattermost that is down, while Mattermost can still call
// ICA (a network partition on ICA's side).
type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// newTCPProxy starts a proxy on a free loopback port in front of target
// (host:port); it stops at the end of the test.
func newTCPProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.SetDown(true)
		p.wg.Wait()
	})
	return p
}

// URL is the proxy's http:// URL.
func (p *tcpProxy) URL() string { return "http://" + p.ln.Addr().String() }

// SetDown cuts the proxy (true) or restores it (false).
func (p *tcpProxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, as from a host that is down
			}
			_ = c.Close()
			continue
		}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.pipe(c)
	}
}

func (p *tcpProxy) pipe(c net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}
