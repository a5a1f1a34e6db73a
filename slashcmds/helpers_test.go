package slashcmds

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/bot"
	"github.com/ica-governance/ica/bot/mmtest"
	"github.com/ica-governance/ica/export"
)

// t0 is "now" in the tests.
var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// ---- fakes ---------------------------------------------------------------------

type fakeQueries struct {
	mu        sync.Mutex
	calls     int
	pending   []*ica.Approval
	running   []*ica.Run
	recent    []*ica.Run
	runs      map[string]*ica.Run
	approvals map[string]*ica.Approval
	incidents []*ica.Incident
	bud       *BudgetSummary
	err       error
}

func (f *fakeQueries) called() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.err
}

func (f *fakeQueries) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeQueries) PendingApprovals(_ context.Context, n int) ([]*ica.Approval, error) {
	return limit(f.pending, n), f.called()
}
func (f *fakeQueries) RunningRuns(_ context.Context, n int) ([]*ica.Run, error) {
	return limit(f.running, n), f.called()
}
func (f *fakeQueries) RecentRuns(_ context.Context, n int) ([]*ica.Run, error) {
	return limit(f.recent, n), f.called()
}
func (f *fakeQueries) Run(_ context.Context, id string) (*ica.Run, error) {
	if err := f.called(); err != nil {
		return nil, err
	}
	if r := f.runs[id]; r != nil {
		return r, nil
	}
	return nil, ica.Errorf(ica.ENOTFOUND, "run %s not found", id)
}
func (f *fakeQueries) PipelineRuns(_ context.Context, p string, n int) ([]*ica.Run, error) {
	var out []*ica.Run
	for _, r := range f.runs {
		if r.PipelineName == p {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartTime.After(out[j].StartTime) })
	return limit(out, n), f.called()
}
func (f *fakeQueries) LatestApproval(_ context.Context, runID string) (*ica.Approval, error) {
	return f.approvals[runID], f.called()
}
func (f *fakeQueries) OpenIncidents(_ context.Context, n int) ([]*ica.Incident, error) {
	return limit(f.incidents, n), f.called()
}
func (f *fakeQueries) Budget(context.Context) (*BudgetSummary, error) { return f.bud, f.called() }

// fakeExporter writes a small CSV-like body and a manifest. gate, when set,
// blocks Export until it is closed (or the context ends).
type fakeExporter struct {
	mu       sync.Mutex
	count    int
	counts   int
	exports  []ExportQuery
	gate     chan struct{}
	started  chan struct{}
	exportFn func(ctx context.Context, q ExportQuery, w io.Writer) (*export.Manifest, error)
}

func (f *fakeExporter) Count(_ context.Context, q ExportQuery) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts++
	return f.count, nil
}

func (f *fakeExporter) Export(ctx context.Context, q ExportQuery, w io.Writer) (*export.Manifest, error) {
	f.mu.Lock()
	f.exports = append(f.exports, q)
	gate, started, fn := f.gate, f.started, f.exportFn
	n := f.count
	f.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ica.Unavailable("export cancelled", ctx.Err())
		}
	}
	if fn != nil {
		return fn(ctx, q, w)
	}
	fmt.Fprintln(w, "seq,time,kind,subject,actor,prev_hash,hash,data,run_id,pipeline,status")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "%d,2026-01-0%dT00:00:00Z,run.started,r-%d,azp,x,y,{},r-%d,payments,running\n", i, i%9+1, i, i)
	}
	fmt.Fprintf(w, "# ica-export v1: %d records\n", n)
	m := &export.Manifest{Version: 1, Format: q.Format, From: q.From, To: q.To, Count: uint64(n),
		Head:        ica.Checkpoint{Seq: 5678, Hash: "9f2c" + strings.Repeat("ab", 30)},
		GeneratedAt: t0, Fingerprint: "3f1a:0b2c:d4e5:f607:1829:3a4b:5c6d:7e8f", Digest: "d1g3st"}
	if n > 0 {
		m.FirstSeq, m.LastSeq = 1, uint64(n)
	}
	return m, nil
}

func (f *fakeExporter) Counts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts
}

func (f *fakeExporter) Exports() []ExportQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ExportQuery(nil), f.exports...)
}

// mmPoster posts through the fake Mattermost server as the bot, as the bot
// package does (upload, then a post with the file id).
type mmPoster struct {
	c     *model.Client4
	mu    sync.Mutex
	calls int
	fail  error // when set, every call fails with it
}

func (p *mmPoster) PostFile(ctx context.Context, channelID, filename string, r io.Reader, message string) (string, error) {
	p.mu.Lock()
	p.calls++
	fail := p.fail
	p.mu.Unlock()
	if fail != nil {
		return "", fail
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	up, _, err := p.c.UploadFile(ctx, data, channelID, filename)
	if err != nil {
		return "", ica.Unavailable("upload file to Mattermost", err)
	}
	post, _, err := p.c.CreatePost(ctx, &model.Post{ChannelId: channelID, Message: message, FileIds: []string{up.FileInfos[0].Id}})
	if err != nil {
		return "", ica.Unavailable("create post", err)
	}
	return post.Id, nil
}

func (p *mmPoster) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

type fakeArchiver struct {
	mu    sync.Mutex
	calls int
	fails int // the first fails calls fail
	err   error
	blobs map[string][]byte
	meta  map[string]map[string]string
}

func (a *fakeArchiver) Upload(_ context.Context, name string, r io.Reader, contentType string, md map[string]string) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.calls <= a.fails {
		return "", a.err
	}
	if a.blobs == nil {
		a.blobs, a.meta = map[string][]byte{}, map[string]map[string]string{}
	}
	if _, ok := a.blobs[name]; ok {
		return "", ica.Errorf(ica.ECONFLICT, "archive %s already exists", name)
	}
	a.blobs[name], a.meta[name] = data, md
	return "https://acct.blob.core.windows.net/ica-exports/" + name, nil
}

func (a *fakeArchiver) Calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// testCallers verifies trigger_ids with the bot package's verifier against
// the fake's key (as cmd/ica wires it) and reads the user from the fake.
type testCallers struct {
	v   *bot.TriggerVerifier
	api *model.Client4
}

type memUsed struct {
	mu   sync.Mutex
	used map[string]bool
}

func (m *memUsed) UseTrigger(_ context.Context, key string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used[key] {
		return ica.Errorf(ica.ECONFLICT, "used")
	}
	m.used[key] = true
	return nil
}

func newTestCallers(t *testing.T, mm *mmtest.Server, clock ica.Clock, api *model.Client4) *testCallers {
	v, err := bot.NewTriggerVerifier(mm.SigningPublicKey(), nil, &memUsed{used: map[string]bool{}}, clock)
	require.NoError(t, err)
	return &testCallers{v: v, api: api}
}

func (c *testCallers) VerifyCaller(ctx context.Context, triggerID, userID string) (Caller, error) {
	if _, err := c.v.Verify(ctx, triggerID, userID); err != nil {
		return Caller{}, ica.Errorf(ica.EFORBIDDEN, "ICA could not confirm that this came from you through Mattermost, so nothing was changed")
	}
	u, _, err := c.api.GetUser(ctx, userID, "")
	if err != nil {
		return Caller{}, ica.Unavailable("could not look up the user", err)
	}
	return Caller{UserID: u.Id, Username: u.Username, Email: u.Email}, nil
}

// ---- the world -----------------------------------------------------------------

type world struct {
	t      *testing.T
	mm     *mmtest.Server
	h      *Handler
	clock  *ica.FakeClock
	q      *fakeQueries
	ex     *fakeExporter
	poster *mmPoster
	arch   *fakeArchiver
	logs   *syncBuffer
	token  string
	srv    *httptest.Server
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newWorld starts a fake Mattermost with team ica, channels deployments and
// finance, users tech1 and biz1 and the bot, and ICA's slash endpoint with
// the command registered. change adjusts the Deps before New.
func newWorld(t *testing.T, change ...func(*Deps)) *world {
	t.Helper()
	clock := ica.NewFakeClock(t0)
	w := &world{t: t, mm: mmtest.New(t, mmtest.WithClock(clock)), clock: clock, logs: &syncBuffer{},
		q: &fakeQueries{bud: &BudgetSummary{}}, ex: &fakeExporter{count: 3}, arch: &fakeArchiver{}}
	w.mm.AddTeam("ica")
	w.mm.AddChannel("ica", "deployments")
	w.mm.AddChannel("ica", "finance")
	_, botToken := w.mm.AddBot("ica-bot")
	w.mm.AddUser("tech1")
	w.mm.AddUser("biz1")
	w.mm.Join("deployments", "ica-bot", "tech1", "biz1")
	w.mm.Join("finance", "ica-bot", "tech1")
	c := model.NewAPIv4Client(w.mm.URL)
	c.SetToken(botToken)
	w.poster = &mmPoster{c: c}

	mux := http.NewServeMux()
	w.srv = httptest.NewServer(mux)
	t.Cleanup(w.srv.Close)
	w.token = w.mm.AddCommand("ica", "ica", w.srv.URL+"/mattermost/slash")

	d := Deps{
		Tokens: []string{"other-team-token", w.token}, Queries: w.q, Exporter: w.ex, Poster: w.poster, Archiver: w.arch,
		Callers: newTestCallers(t, w.mm, w.clock, c),
		Clock:   w.clock, Log: slog.New(slog.NewTextHandler(w.logs, nil)), MattermostURL: w.mm.URL,
		TempDir: t.TempDir(), ExportUsers: []string{"tech1", "biz1"},
	}
	for _, f := range change {
		f(&d)
	}
	w.h = New(d)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.h.Close(ctx)
	})
	mux.HandleFunc("POST /mattermost/slash", func(rw http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(rw, r.Body, 1<<20)
		if err := w.h.HandleSlash(rw, r); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
		}
	})
	return w
}

// slash runs a command as user in channel and returns the reply text.
func (w *world) slash(user, channel, text string) string {
	w.t.Helper()
	status, resp, err := w.mm.SlashCommand(user, channel, text)
	require.NoError(w.t, err)
	require.Equal(w.t, http.StatusOK, status)
	require.Equal(w.t, model.CommandResponseTypeEphemeral, resp.ResponseType)
	return resp.Text
}

// wait lets the background exports finish, advancing the fake clock
// whenever one of them waits to retry.
func (w *world) wait() {
	w.t.Helper()
	done := make(chan struct{})
	go func() { w.h.wg.Wait(); close(done) }()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-done:
			return
		case <-deadline:
			w.t.Fatal("exports did not finish")
		case <-time.After(time.Millisecond):
			if w.clock.Waiters() > 0 {
				// Small steps: response_url lifetimes run on this clock too.
				w.clock.Advance(time.Second)
			}
		}
	}
}

// hookTexts returns the texts sent through response_urls.
func (w *world) hookTexts() []string {
	var out []string
	for _, c := range w.mm.HookCalls() {
		require.Equal(w.t, http.StatusOK, c.Status, "every response_url use is accepted")
		require.Equal(w.t, "application/json", c.ContentType)
		require.Equal(w.t, model.CommandResponseTypeEphemeral, c.Response.ResponseType)
		out = append(out, c.Response.Text)
	}
	return out
}

// filePosts returns the posts with files in a channel.
func (w *world) filePosts(channel string) []*model.Post {
	var out []*model.Post
	for _, p := range w.mm.Posts(channel) {
		if len(p.FileIds) > 0 {
			out = append(out, p)
		}
	}
	return out
}
