// Package mmtest is a fake Mattermost server for tests. It implements the
// subset of API v4 that ICA uses, answers in the wire format of a real
// Mattermost 6.7.2 server (model.Client4 works against it unchanged), and
// drives ICA the way a real server does: it delivers button clicks, dialog
// submissions and slash commands with the same bodies, headers, signed
// trigger ids, timeouts and quirks as the captures in
// shared/fixtures/mattermost.
//
// A test builds the world (teams, channels, users, the bot), points ICA at
// Server.URL with the bot's token, and then acts as the users:
//
//	mm := mmtest.New(t)
//	mm.AddTeam("ica")
//	mm.AddChannel("ica", "deployments")
//	_, botToken := mm.AddBot("ica-bot")
//	mm.AddUser("tech1")
//	mm.Join("deployments", "ica-bot", "tech1")
//	... start ICA with mm.URL and botToken ...
//	res, err := mm.Click(cardID, "approve", "tech1")
//
// People's clients can also reach it over HTTP and its websocket, as on a
// real server (internal/mmreal.Person works against both), and the contract
// suite in internal/mmcontract runs the same checks against the fake and a
// real Mattermost 6.7.2, so the fake cannot drift from it unnoticed.
//
// Everything is safe for concurrent use.
package mmtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
)

// VersionID is the X-Version-Id header the fake sends, copied from the
// captured 6.7.2 server.
const VersionID = "6.7.2.6.7.2.8ac620a98b87a99d05cfe30556f31d49.false"

// Limits of a real 6.7.2 server that the fake enforces.
const (
	// TriggerIDLifetime is how long a trigger_id can open a dialog.
	TriggerIDLifetime = 3 * time.Second
	// IntegrationTimeout is the total timeout of every outbound call to an
	// integration (action, dialog, slash command URL).
	IntegrationTimeout = 30 * time.Second
	// CommandWebhookLifetime is how long a slash command's response_url works.
	CommandWebhookLifetime = 30 * time.Minute
	// CommandWebhookMaxUses is how many times a response_url can be used.
	CommandWebhookMaxUses = 5
	// PendingPostIDTTL is how long a pending_post_id de-duplicates CreatePost.
	PendingPostIDTTL = 30 * time.Second
)

// Clock is the time source of the fake (trigger id age, response_url
// lifetime, pending_post_id window, timestamps). *ica.FakeClock satisfies it.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Option configures a Server.
type Option func(*Server)

// WithClock sets the clock (default: the system clock).
func WithClock(c Clock) Option { return func(s *Server) { s.clock = c } }

// WithIntegrationTimeout shortens the 30 s limit on outbound calls (clicks,
// dialog submissions, slash commands) so timeout tests run fast.
func WithIntegrationTimeout(d time.Duration) Option {
	return func(s *Server) { s.integrationTimeout = d }
}

// WithHiddenEmails makes the server hide users' e-mail addresses from
// other accounts, as PrivacySettings.ShowEmailAddress=false does for an
// account without permission to read them (the default shows them).
func WithHiddenEmails() Option { return func(s *Server) { s.hideEmails = true } }

// Server is the fake Mattermost server.
type Server struct {
	// URL is the server's base URL (what ICA_MATTERMOST_URL points at).
	URL string

	tb                 testing.TB
	srv                *httptest.Server
	key                *ecdsa.PrivateKey
	clock              Clock
	integrationTimeout time.Duration
	hideEmails         bool

	mu          sync.Mutex
	teams       map[string]*model.Team    // by id
	channels    map[string]*model.Channel // by id
	users       map[string]*model.User    // by id
	tokens      map[string]string         // token -> user id
	teamMembers map[string]map[string]bool
	chanMembers map[string][]string // channel id -> user ids in join order
	current     map[string]string   // user id -> channel id the user last acted in
	posts       map[string]*model.Post
	postOrder   map[string][]string // channel id -> post ids, oldest first
	pending     map[string]pendingPost
	files       map[string]*storedFile
	ephemerals  []Ephemeral
	dialogs     map[string][]OpenDialog // user id -> dialogs, oldest first
	commands    map[string]*command     // "team id/trigger" -> command
	triggers    map[string]triggerInfo  // client trigger id -> who and where
	hooks       map[string]*commandHook
	hookCalls   []HookCall
	slashCalls  []SlashCall
	requests    []Request
	wsConns     map[*wsConn]bool
	down        bool
	latency     time.Duration
	failures    []*failureRule
	outbound    *http.Client
}

type pendingPost struct {
	postID string
	at     time.Time
}

type storedFile struct {
	info *model.FileInfo
	data []byte
}

// Ephemeral is a message only one user saw (ephemeral_text of an action
// reply, an ephemeral slash command reply, or POST /api/v4/posts/ephemeral).
// Mattermost does not store these; the fake records them for assertions.
type Ephemeral struct {
	UserID    string // recipient
	Username  string
	ChannelID string
	RootID    string // the clicked post, for action replies
	Message   string
	Source    string // "action", "command", "response_url" or "api"
	Post      *model.Post
}

// OpenDialog is a dialog an integration opened for a user through
// POST /api/v4/actions/dialogs/open.
type OpenDialog struct {
	UserID    string
	Username  string
	ChannelID string // where the click or command that issued the trigger happened
	TriggerID string // the full signed trigger_id the integration sent
	URL       string
	Dialog    model.Dialog
	OpenedAt  time.Time
}

// Request is one inbound request, as received (for assertions on what ICA sent).
type Request struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
	Status int
	At     time.Time
}

// HookCall is one use of a response_url.
type HookCall struct {
	HookID      string
	ContentType string
	Body        []byte
	Status      int
	Response    *model.CommandResponse // parsed as the server did, nil on error
}

// SlashCall is one slash command the fake sent to an integration.
type SlashCall struct {
	Form        map[string][]string
	ResponseURL string
	Status      int // what the integration answered
	Body        []byte
}

type command struct {
	teamID  string
	trigger string
	url     string
	token   string
}

type commandHook struct {
	id        string
	userID    string
	channelID string
	rootID    string
	createdAt time.Time
	uses      int
}

// New starts a fake server and closes it when the test ends.
func New(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("mmtest: generate signing key: %v", err)
	}
	s := &Server{
		tb:                 tb,
		key:                key,
		clock:              systemClock{},
		integrationTimeout: IntegrationTimeout,
		teams:              map[string]*model.Team{},
		channels:           map[string]*model.Channel{},
		users:              map[string]*model.User{},
		tokens:             map[string]string{},
		teamMembers:        map[string]map[string]bool{},
		chanMembers:        map[string][]string{},
		current:            map[string]string{},
		posts:              map[string]*model.Post{},
		postOrder:          map[string][]string{},
		pending:            map[string]pendingPost{},
		files:              map[string]*storedFile{},
		dialogs:            map[string][]OpenDialog{},
		commands:           map[string]*command{},
		hooks:              map[string]*commandHook{},
		wsConns:            map[*wsConn]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	s.outbound = &http.Client{
		Timeout: s.integrationTimeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
			TLSHandshakeTimeout: 3 * time.Second,
		},
	}
	s.srv = httptest.NewServer(s.routes())
	s.URL = s.srv.URL
	tb.Cleanup(func() {
		s.outbound.CloseIdleConnections()
		s.srv.Close()
	})
	return s
}

// Close stops the server (New already arranges this at the end of the test).
func (s *Server) Close() { s.srv.Close() }

func (s *Server) now() time.Time { return s.clock.Now() }

func (s *Server) millis() int64 { return s.now().UnixMilli() }

// SigningPublicKey returns the fake's ECDSA P-256 public key, base64 DER, as
// served under AsymmetricSigningPublicKey.
func (s *Server) SigningPublicKey() string {
	der, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	if err != nil {
		s.tb.Fatalf("mmtest: marshal public key: %v", err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TriggerID returns a fresh trigger_id for the user, signed with the
// server's key exactly as a click or command would carry it, for tests that
// send requests to an integration themselves.
func (s *Server) TriggerID(username string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.mustUserLocked(username)
	_, trigger := s.newTriggerLocked(u.Id, s.current[u.Id])
	return trigger
}

// ---- world setup -----------------------------------------------------------

// AddTeam creates an open team and returns its id.
func (s *Server) AddTeam(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.teamByNameLocked(name); t != nil {
		s.tb.Fatalf("mmtest: team %q already exists", name)
	}
	now := s.millis()
	t := &model.Team{
		Id:          model.NewId(),
		DisplayName: name,
		Name:        name,
		Type:        model.TeamOpen,
		CreateAt:    now,
		UpdateAt:    now,
	}
	s.teams[t.Id] = t
	s.teamMembers[t.Id] = map[string]bool{}
	return t.Id
}

// AddChannel creates a public channel in the team and returns its id.
func (s *Server) AddChannel(team, name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.teamByNameLocked(team)
	if t == nil {
		s.tb.Fatalf("mmtest: AddChannel: no team %q", team)
	}
	if s.channelByNameLocked(t.Id, name) != nil {
		s.tb.Fatalf("mmtest: channel %q already exists in %q", name, team)
	}
	now := s.millis()
	c := &model.Channel{
		Id:          model.NewId(),
		CreateAt:    now,
		UpdateAt:    now,
		TeamId:      t.Id,
		Type:        model.ChannelTypeOpen,
		DisplayName: name,
		Name:        name,
	}
	s.channels[c.Id] = c
	return c.Id
}

// AddUser creates a regular user and returns its id. Its session token is
// available from Token.
func (s *Server) AddUser(username string) string {
	id, _ := s.addUser(username, false)
	return id
}

// AddBot creates a bot account and returns its user id and access token.
func (s *Server) AddBot(username string) (id, token string) {
	return s.addUser(username, true)
}

func (s *Server) addUser(username string, bot bool) (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.userByNameLocked(username) != nil {
		s.tb.Fatalf("mmtest: user %q already exists", username)
	}
	now := s.millis()
	u := &model.User{
		Id:          model.NewId(),
		CreateAt:    now,
		UpdateAt:    now,
		Username:    username,
		Email:       username + "@example.com",
		Nickname:    "",
		Roles:       model.SystemUserRoleId,
		Locale:      "en",
		NotifyProps: model.StringMap{},
		Timezone:    model.StringMap{"automaticTimezone": "", "manualTimezone": "", "useAutomaticTimezone": "true"},
	}
	if bot {
		u.IsBot = true
		u.BotDescription = username
		u.Email = username + "@localhost"
	}
	token := model.NewId()
	s.users[u.Id] = u
	s.tokens[token] = u.Id
	return u.Id, token
}

// RenameUser changes a user's username (another account may then take the
// old name, as on a real server).
func (s *Server) RenameUser(username, newName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.userByNameLocked(newName) != nil {
		s.tb.Fatalf("mmtest: user %q already exists", newName)
	}
	u := s.mustUserLocked(username)
	u.Username = newName
	u.UpdateAt = s.millis()
}

// Token returns the session token of a user or bot (to act as that user
// through model.Client4).
func (s *Server) Token(username string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.mustUserLocked(username)
	for tok, id := range s.tokens {
		if id == u.Id {
			return tok
		}
	}
	s.tb.Fatalf("mmtest: no token for %q", username)
	return ""
}

// UserID returns the id of a user or bot.
func (s *Server) UserID(username string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mustUserLocked(username).Id
}

// ChannelID returns the id of a channel, by name (or id).
func (s *Server) ChannelID(channel string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mustChannelLocked(channel).Id
}

// JoinTeam makes the users members of the team without joining any channel
// (like the capture's "outsider").
func (s *Server) JoinTeam(team string, usernames ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.teamByNameLocked(team)
	if t == nil {
		s.tb.Fatalf("mmtest: JoinTeam: no team %q", team)
	}
	for _, name := range usernames {
		s.teamMembers[t.Id][s.mustUserLocked(name).Id] = true
	}
}

// Join makes the users members of the channel (and of its team).
func (s *Server) Join(channel string, usernames ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.mustChannelLocked(channel)
	for _, name := range usernames {
		u := s.mustUserLocked(name)
		s.joinLocked(c, u.Id)
	}
}

func (s *Server) joinLocked(c *model.Channel, userID string) {
	if c.TeamId != "" {
		s.teamMembers[c.TeamId][userID] = true
	}
	if !s.isMemberLocked(c.Id, userID) {
		s.chanMembers[c.Id] = append(s.chanMembers[c.Id], userID)
	}
}

// Leave removes the users from the channel (they stay in the team).
func (s *Server) Leave(channel string, usernames ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.mustChannelLocked(channel)
	for _, name := range usernames {
		id := s.mustUserLocked(name).Id
		ms := s.chanMembers[c.Id]
		for i, m := range ms {
			if m == id {
				s.chanMembers[c.Id] = append(ms[:i:i], ms[i+1:]...)
				break
			}
		}
	}
}

// SetCurrentChannel sets the channel a user is looking at, which
// SubmitDialog sends as channel_id/team_id. By default it is the channel of
// the user's last click or command, else the first channel the user joined.
func (s *Server) SetCurrentChannel(username, channel string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current[s.mustUserLocked(username).Id] = s.mustChannelLocked(channel).Id
}

// AddCommand registers a slash command (/trigger) in the team whose
// requests go to url, and returns its token.
func (s *Server) AddCommand(team, trigger, url string) (token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.teamByNameLocked(team)
	if t == nil {
		s.tb.Fatalf("mmtest: AddCommand: no team %q", team)
	}
	trigger = strings.TrimPrefix(trigger, "/")
	c := &command{teamID: t.Id, trigger: trigger, url: url, token: model.NewId()}
	s.commands[t.Id+"/"+trigger] = c
	return c.token
}

// ---- lookups for tests -----------------------------------------------------

// Posts returns the posts of a channel (by name or id), oldest first, as
// stored: with each action's integration (url and context), which clients
// never see.
func (s *Server) Posts(channel string) []*model.Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.mustChannelLocked(channel)
	var out []*model.Post
	for _, id := range s.postOrder[c.Id] {
		out = append(out, clonePost(s.posts[id]))
	}
	return out
}

// Post returns a post as stored (integrations included), or nil.
func (s *Server) Post(id string) *model.Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.posts[id]
	if p == nil {
		return nil
	}
	return clonePost(p)
}

// Ephemerals returns the ephemeral messages a user received, oldest first.
func (s *Server) Ephemerals(username string) []Ephemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.mustUserLocked(username).Id
	var out []Ephemeral
	for _, e := range s.ephemerals {
		if e.UserID == id {
			e.Post = clonePost(e.Post)
			out = append(out, e)
		}
	}
	return out
}

// DMs returns the posts in the user's direct-message channels that other
// users (usually the bot) sent to the user, oldest first.
func (s *Server) DMs(username string) []*model.Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	uid := s.mustUserLocked(username).Id
	var out []*model.Post
	for cid, c := range s.channels {
		if c.Type != model.ChannelTypeDirect || !s.isMemberLocked(cid, uid) {
			continue
		}
		for _, pid := range s.postOrder[cid] {
			if p := s.posts[pid]; p.UserId != uid {
				out = append(out, clonePost(p))
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreateAt < out[j].CreateAt })
	return out
}

// OpenDialogs returns the dialogs opened for a user and not yet submitted
// through SubmitOpenDialog, oldest first.
func (s *Server) OpenDialogs(username string) []OpenDialog {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.mustUserLocked(username).Id
	return append([]OpenDialog(nil), s.dialogs[id]...)
}

// File returns an uploaded file's info and bytes, or nil, nil.
func (s *Server) File(id string) (*model.FileInfo, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[id]
	if f == nil {
		return nil, nil
	}
	info := *f.info
	return &info, append([]byte(nil), f.data...)
}

// Requests returns every inbound request so far, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		r.Header = r.Header.Clone()
		r.Body = append([]byte(nil), r.Body...)
		out[i] = r
	}
	return out
}

// HookCalls returns every use of a response_url, in order.
func (s *Server) HookCalls() []HookCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]HookCall(nil), s.hookCalls...)
}

// SlashCalls returns every slash command request the fake sent, in order.
func (s *Server) SlashCalls() []SlashCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SlashCall(nil), s.slashCalls...)
}

// ---- failure injection -----------------------------------------------------

// Failure describes an injected failure.
type Failure struct {
	// Status is the HTTP status to answer.
	Status int
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// rounded up). A 429 always carries Retry-After.
	RetryAfter time.Duration
	// PathPrefix limits the failure to requests whose path starts with it
	// ("" matches everything, e.g. "/api/v4/posts").
	PathPrefix string
	// Method, when set, limits the failure to requests with that method.
	Method string
	// Skip lets that many matching requests through before the failures
	// start (the second post of a kind, not the first).
	Skip int
	// Body and ContentType override the default body. By default a 429 is
	// what Mattermost's rate limiter sends (text/plain "limit exceeded",
	// with X-RateLimit-* headers) and any other status is an AppError JSON.
	Body        []byte
	ContentType string
	// Lost makes the server do the work first and only then answer with the
	// failure: the request took effect but its answer was lost (a proxy's
	// 502 after the server created the post).
	Lost bool
}

type failureRule struct {
	f    Failure
	left int
}

// FailNext makes the next n requests (whose path starts with pathPrefix, if
// given) fail with status. See Failure for the bodies.
//
// Note: a real Mattermost 429 has a plain-text body, so model.Client4
// returns a decode error rather than a *model.AppError; the status is in
// the *model.Response (StatusCode, Header "Retry-After").
func (s *Server) FailNext(n, status int, retryAfter time.Duration, pathPrefix ...string) {
	s.FailNextWith(n, Failure{Status: status, RetryAfter: retryAfter, PathPrefix: strings.Join(pathPrefix, "")})
}

// FailNextWith queues a failure for the next n matching requests.
func (s *Server) FailNextWith(n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, &failureRule{f: f, left: n})
}

// SetDown makes the server drop every connection without answering (the
// client sees EOF / connection reset), or brings it back.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	if down {
		for c := range s.wsConns {
			c.close()
		}
	}
	s.mu.Unlock()
	if down {
		s.srv.CloseClientConnections()
	}
}

// SetLatency delays every inbound request by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

func (s *Server) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// ---- HTTP plumbing ---------------------------------------------------------

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	auth := func(h func(http.ResponseWriter, *http.Request, *model.User)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			u := s.authenticate(r)
			if u == nil {
				writeAppError(w, r, http.StatusUnauthorized, "api.context.session_expired.app_error",
					"Invalid or expired session, please login again.", "")
				return
			}
			h(w, r, u)
		}
	}
	mux.HandleFunc("GET /api/v4/users/me", auth(s.handleGetMe))
	mux.HandleFunc("GET /api/v4/users/username/{username}", auth(s.handleGetUserByUsername))
	mux.HandleFunc("POST /api/v4/users/usernames", auth(s.handleGetUsersByUsernames))
	mux.HandleFunc("GET /api/v4/users/{user_id}", auth(s.handleGetUser))
	mux.HandleFunc("GET /api/v4/teams/name/{team_name}", auth(s.handleGetTeamByName))
	mux.HandleFunc("GET /api/v4/teams/{team_id}/channels/name/{channel_name}", auth(s.handleGetChannelByName))
	mux.HandleFunc("GET /api/v4/teams/name/{team_name}/channels/name/{channel_name}", auth(s.handleGetChannelByNameForTeamName))
	mux.HandleFunc("GET /api/v4/channels/{channel_id}", auth(s.handleGetChannel))
	mux.HandleFunc("GET /api/v4/channels/{channel_id}/members", auth(s.handleGetChannelMembers))
	mux.HandleFunc("GET /api/v4/channels/{channel_id}/members/{user_id}", auth(s.handleGetChannelMember))
	mux.HandleFunc("DELETE /api/v4/channels/{channel_id}/members/{user_id}", auth(s.handleRemoveChannelMember))
	mux.HandleFunc("GET /api/v4/channels/{channel_id}/posts", auth(s.handleGetPostsForChannel))
	mux.HandleFunc("POST /api/v4/channels/direct", auth(s.handleCreateDirectChannel))
	mux.HandleFunc("POST /api/v4/posts", auth(s.handleCreatePost))
	mux.HandleFunc("POST /api/v4/posts/ephemeral", auth(s.handleCreateEphemeralPost))
	mux.HandleFunc("GET /api/v4/posts/{post_id}", auth(s.handleGetPost))
	mux.HandleFunc("PUT /api/v4/posts/{post_id}/patch", auth(s.handlePatchPost))
	mux.HandleFunc("POST /api/v4/posts/{post_id}/actions/{action_id}", auth(s.handleDoPostAction))
	mux.HandleFunc("POST /api/v4/files", auth(s.handleUploadFile))
	mux.HandleFunc("GET /api/v4/files/{file_id}", auth(s.handleGetFile))
	mux.HandleFunc("POST /api/v4/actions/dialogs/submit", auth(s.handleSubmitDialog))
	mux.HandleFunc("POST /api/v4/commands/execute", auth(s.handleExecuteCommand))
	mux.HandleFunc("GET /api/v4/websocket", s.handleWebSocket)              // authenticates itself
	mux.HandleFunc("POST /api/v4/actions/dialogs/open", s.handleOpenDialog) // trigger_id is the credential
	mux.HandleFunc("GET /api/v4/config/client", s.handleClientConfig)       // public, as on a real server
	mux.HandleFunc("POST /hooks/commands/{hook_id}", s.handleCommandHook)   // the id is the secret
	mux.HandleFunc("/", writeNotFoundPage)
	return s.middleware(mux)
}

// middleware records the request and applies the injected conditions, in the
// order a real deployment would meet them: connection, latency, rate limiter
// or proxy errors, then the API.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.isDown() {
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
		body, _ := io.ReadAll(r.Body)
		_ = r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))

		s.mu.Lock()
		latency := s.latency
		idx := len(s.requests)
		s.requests = append(s.requests, Request{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: body, At: s.now(),
		})
		fail := s.takeFailureLocked(r.Method, r.URL.Path)
		s.mu.Unlock()

		if latency > 0 {
			select {
			case <-time.After(latency):
			case <-r.Context().Done():
				return
			}
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		rec.Header().Set("X-Request-Id", model.NewId())
		rec.Header().Set("X-Version-Id", VersionID)
		if fail != nil {
			if fail.Lost {
				next.ServeHTTP(httptest.NewRecorder(), r)
			}
			writeFailure(rec, r, *fail)
		} else {
			next.ServeHTTP(rec, r)
		}
		s.mu.Lock()
		s.requests[idx].Status = rec.status
		s.mu.Unlock()
	})
}

func (s *Server) takeFailureLocked(method, path string) *Failure {
	for i, fr := range s.failures {
		if !strings.HasPrefix(path, fr.f.PathPrefix) || (fr.f.Method != "" && fr.f.Method != method) {
			continue
		}
		if fr.f.Skip > 0 {
			fr.f.Skip--
			return nil
		}
		fr.left--
		if fr.left <= 0 {
			s.failures = append(s.failures[:i:i], s.failures[i+1:]...)
		}
		f := fr.f
		return &f
	}
	return nil
}

func writeFailure(w http.ResponseWriter, r *http.Request, f Failure) {
	h := w.Header()
	secs := int(math.Ceil(f.RetryAfter.Seconds()))
	if f.RetryAfter > 0 || f.Status == http.StatusTooManyRequests {
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	if f.Body != nil {
		if f.ContentType != "" {
			h.Set("Content-Type", f.ContentType)
		}
		w.WriteHeader(f.Status)
		_, _ = w.Write(f.Body)
		return
	}
	if f.Status == http.StatusTooManyRequests {
		// What Mattermost's rate limiter (throttled) answers.
		h.Set("X-RateLimit-Limit", "10")
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Reset", strconv.Itoa(secs))
		http.Error(w, "limit exceeded", http.StatusTooManyRequests)
		return
	}
	writeAppError(w, r, f.Status, "mmtest.injected_failure",
		"Injected failure: "+strconv.Itoa(f.Status)+" "+http.StatusText(f.Status), "")
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) authenticate(r *http.Request) *model.User {
	h := r.Header.Get("Authorization")
	var token string
	switch {
	case len(h) > 7 && strings.EqualFold(h[:7], "bearer "):
		token = strings.TrimSpace(h[7:])
	case len(h) > 6 && strings.EqualFold(h[:6], "token "):
		token = strings.TrimSpace(h[6:])
	default:
		token = r.URL.Query().Get("access_token")
	}
	if token == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.tokens[token]; ok {
		return s.users[id]
	}
	return nil
}

// appError is the JSON a real server sends for an error (model.AppError's
// wire form, with the fields always present as in the captures).
type appError struct {
	ID            string `json:"id"`
	Message       string `json:"message"`
	DetailedError string `json:"detailed_error"`
	RequestID     string `json:"request_id"`
	StatusCode    int    `json:"status_code"`
}

// writeNotFoundPage is a real server's answer to a path (or method) it has
// no route for.
func writeNotFoundPage(w http.ResponseWriter, r *http.Request) {
	writeAppError(w, r, http.StatusNotFound, "api.context.404.app_error", "Sorry, we could not find the page.",
		"There doesn't appear to be an api call for the url='"+r.URL.Path+"'.  Typo? are you missing a team_id or user_id as part of the url?")
}

func writeAppError(w http.ResponseWriter, r *http.Request, status int, id, msg, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(appError{
		ID: id, Message: msg, DetailedError: detail,
		RequestID: w.Header().Get("X-Request-Id"), StatusCode: status,
	})
}

func newAppError(where string, status int, id, msg string) *model.AppError {
	return &model.AppError{Id: id, Message: msg, StatusCode: status, Where: where}
}

func writeErr(w http.ResponseWriter, r *http.Request, e *model.AppError) {
	writeAppError(w, r, e.StatusCode, e.Id, e.Message, e.DetailedError)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func forbidden(where string) *model.AppError {
	return newAppError(where, http.StatusForbidden, "api.context.permissions.app_error",
		"You do not have the appropriate permissions.")
}

func invalidURLParam(name string) *model.AppError {
	return newAppError("", http.StatusBadRequest, "api.context.invalid_url_param.app_error",
		"Invalid or missing "+name+" parameter in request URL.")
}

func invalidBodyParam(name string) *model.AppError {
	return newAppError("", http.StatusBadRequest, "api.context.invalid_body_param.app_error",
		"Invalid or missing "+name+" in request body.")
}

// ---- locked helpers --------------------------------------------------------

func (s *Server) teamByNameLocked(name string) *model.Team {
	for _, t := range s.teams {
		if t.Name == name {
			return t
		}
	}
	return nil
}

func (s *Server) channelByNameLocked(teamID, name string) *model.Channel {
	for _, c := range s.channels {
		if c.TeamId == teamID && c.Name == name {
			return c
		}
	}
	return nil
}

func (s *Server) userByNameLocked(name string) *model.User {
	for _, u := range s.users {
		if u.Username == name {
			return u
		}
	}
	return nil
}

func (s *Server) mustUserLocked(name string) *model.User {
	u := s.userByNameLocked(name)
	if u == nil {
		u = s.users[name]
	}
	if u == nil {
		s.tb.Fatalf("mmtest: no user %q", name)
	}
	return u
}

// mustChannelLocked finds a channel by id, by name, or by "team/name".
func (s *Server) mustChannelLocked(ref string) *model.Channel {
	if c := s.channels[ref]; c != nil {
		return c
	}
	if team, name, ok := strings.Cut(ref, "/"); ok {
		if t := s.teamByNameLocked(team); t != nil {
			if c := s.channelByNameLocked(t.Id, name); c != nil {
				return c
			}
		}
	}
	var found *model.Channel
	for _, c := range s.channels {
		if c.Name == ref {
			if found != nil {
				s.tb.Fatalf("mmtest: channel name %q is ambiguous; use \"team/name\"", ref)
			}
			found = c
		}
	}
	if found == nil {
		s.tb.Fatalf("mmtest: no channel %q", ref)
	}
	return found
}

func (s *Server) isMemberLocked(channelID, userID string) bool {
	for _, m := range s.chanMembers[channelID] {
		if m == userID {
			return true
		}
	}
	return false
}

// canReadChannelLocked is what a 6.7.2 server lets see a channel itself or
// one post by id: a member, or (read_public_channel) a team member for a
// public channel. Listing members or posts takes membership.
func (s *Server) canReadChannelLocked(c *model.Channel, userID string) bool {
	if s.isMemberLocked(c.Id, userID) {
		return true
	}
	return c.Type == model.ChannelTypeOpen && s.teamMembers[c.TeamId][userID]
}

// userCurrentChannelLocked is the channel a user "is in" for dialog submissions.
func (s *Server) userCurrentChannelLocked(userID string) *model.Channel {
	if id := s.current[userID]; id != "" {
		return s.channels[id]
	}
	var best *model.Channel
	for _, c := range s.channels {
		if s.isMemberLocked(c.Id, userID) && (best == nil || c.CreateAt < best.CreateAt || (c.CreateAt == best.CreateAt && c.Id < best.Id)) {
			best = c
		}
	}
	return best
}

// clonePost deep-copies a post through JSON, as stored (integrations kept).
func clonePost(p *model.Post) *model.Post {
	if p == nil {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic("mmtest: marshal post: " + err.Error())
	}
	var out model.Post
	if err := json.Unmarshal(b, &out); err != nil {
		panic("mmtest: unmarshal post: " + err.Error())
	}
	return &out
}

// clientPost is what a client receives: a deep copy without integrations,
// with attachments in the server's normalised form and metadata filled in.
func (s *Server) clientPostLocked(p *model.Post) *model.Post {
	out := clonePost(p)
	out.StripActionIntegrations()
	md := &model.PostMetadata{}
	if len(out.Attachments()) > 0 {
		md.Embeds = []*model.PostEmbed{{Type: model.PostEmbedMessageAttachment}}
	}
	for _, fid := range out.FileIds {
		if f := s.files[fid]; f != nil {
			info := *f.info
			md.Files = append(md.Files, &info)
		}
	}
	out.Metadata = md
	return out
}
