package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Sessions keeps the single-use links (implemented by *store.Store, which
// records session.created and session.link_used in the ledger).
type Sessions interface {
	// CreateDashboardLink stores a link under its token's hash for ttl.
	CreateDashboardLink(ctx context.Context, tokenHash, userID, username string, ttl time.Duration) (time.Time, error)
	// UseDashboardLink consumes a link once, before it expires, and says
	// whom it was for; refusals are ica.EUNAUTHORIZED errors.
	UseDashboardLink(ctx context.Context, tokenHash string, sessionExpires time.Time) (userID, username string, err error)
}

// Deps are the Handler's collaborators.
type Deps struct {
	Source   Source
	Sessions Sessions
	// Secret signs the session cookie (the action secret, ICA_ACTION_SECRET).
	Secret []byte
	// PublicURL is where people's browsers reach ICA (ICA_PUBLIC_URL);
	// links are built on it, and the cookie is Secure when it is https.
	PublicURL string
	// CacheTTL is how long loaded figures are reused (0: DefaultCacheTTL;
	// negative: never).
	CacheTTL time.Duration
	Clock    ica.Clock
	Log      *slog.Logger
}

// Handler serves the dashboard, its links and /api/v1/stats.
type Handler struct {
	d      Deps
	base   string
	secure bool
	cache  *cache
	page   *template.Template
	msg    *template.Template
	static fs.FS
}

// New returns a Handler. It panics when Source, Sessions or Secret is
// missing, which is a wiring bug.
func New(d Deps) *Handler {
	if d.Source == nil || d.Sessions == nil || len(d.Secret) == 0 {
		panic("dashboard.New: Source, Sessions and Secret are required")
	}
	if d.Clock == nil {
		d.Clock = ica.SystemClock{}
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	ttl := d.CacheTTL
	if ttl == 0 {
		ttl = DefaultCacheTTL
	}
	base := strings.TrimRight(d.PublicURL, "/")
	static, _ := fs.Sub(assets, "static")
	funcs := template.FuncMap{"money": money, "pct": pct, "dur": dur, "dist": distCell, "stamp": stamp,
		"short": shortHash, "budgetState": budgetState, "when": when, "week": weekOf,
		"show": ica.ShowText, "amount": amountIn, "deref": func(p *float64) float64 { return *p }}
	h := &Handler{d: d, base: base, secure: strings.HasPrefix(strings.ToLower(base), "https://"),
		cache:  &cache{src: d.Source, clock: d.Clock, ttl: max(ttl, 0), log: d.Log.Warn},
		page:   template.Must(template.New("dashboard.html").Funcs(funcs).ParseFS(assets, "templates/dashboard.html")),
		msg:    template.Must(template.New("message.html").Funcs(funcs).ParseFS(assets, "templates/message.html")),
		static: static}
	return h
}

// Issue creates a single-use link for a Mattermost user (the /ica dashboard
// command's answer).
func (h *Handler) Issue(ctx context.Context, userID, username string) (string, error) {
	if userID == "" && username == "" {
		return "", ica.Errorf(ica.EINVALID, "a dashboard link needs a Mattermost user")
	}
	if h.base == "" {
		return "", ica.Errorf(ica.ENOTCONFIGURED, "the dashboard needs ICA_PUBLIC_URL: ask an administrator to set it")
	}
	token, hash, err := newLinkToken()
	if err != nil {
		return "", err
	}
	if _, err := h.d.Sessions.CreateDashboardLink(ctx, hash, userID, username, LinkTTL); err != nil {
		return "", err
	}
	return h.base + "/dashboard/link/" + token, nil
}

// Warm loads the figures in the background, so the first page view does not
// wait for the index walks.
func (h *Handler) Warm() { h.cache.warm() }

// Close waits for a background load in progress (bounded by its timeout).
func (h *Handler) Close() { h.cache.wg.Wait() }

// Stats returns the figures at the clock's now: from the cache when fresh,
// from the previous load while a background load refreshes it (up to
// MaxStale), else from a load the request waits for.
func (h *Handler) Stats(ctx context.Context, pipeline string) (*Stats, error) {
	in, err := h.cache.get(ctx)
	if err != nil {
		return nil, err
	}
	s := Compute(in, pipeline)
	enrichFailed(ctx, h.d.Source, s)
	return s, nil
}

func pipelineParam(r *http.Request) (string, error) {
	p := strings.TrimSpace(r.URL.Query().Get("pipeline"))
	if len(p) > ica.MaxNameLen {
		return "", ica.FieldErrorf(ica.EINVALID, "pipeline", "pipeline is longer than %d bytes", ica.MaxNameLen)
	}
	return p, nil
}

// HandleStats handles "GET /api/v1/stats" (pipeline bearer token; the
// router authenticates): the dashboard's figures as JSON.
func (h *Handler) HandleStats(w http.ResponseWriter, r *http.Request) error {
	p, err := pipelineParam(r)
	if err != nil {
		return err
	}
	s, err := h.Stats(r.Context(), p)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(s)
}

// securityHeaders are sent with every page: no inline script or style, no
// framing, no referrer (a link's token must not leak), no caching.
func securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
}

// message is the data of templates/message.html.
type message struct {
	Title, Text string
	// Token, when set, makes the page the link's "continue" form.
	Token string
	Next  string
}

func (h *Handler) render(w http.ResponseWriter, status int, t *template.Template, data any) error {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return err
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

func statusOf(err error) int {
	switch ica.ErrorCode(err) {
	case ica.EINVALID:
		return http.StatusBadRequest
	case ica.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case ica.EFORBIDDEN:
		return http.StatusForbidden
	case ica.EUNAVAILABLE, ica.ENOTCONFIGURED:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail answers a page request with an HTML explanation.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) error {
	status := statusOf(err)
	if status >= 500 {
		h.d.Log.Error("dashboard request failed", "path", r.URL.Path, "err", err)
	}
	m := message{Title: "Dashboard unavailable", Text: ica.ErrorMessage(err)}
	if status == http.StatusUnauthorized {
		m.Title = "Open the dashboard from Mattermost"
		m.Text = ica.ErrorMessage(err) + ". Type /ica dashboard in Mattermost for a new link (it works once, for 5 minutes)."
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	return h.render(w, status, h.msg, m)
}

// session returns the request's valid session, or an EUNAUTHORIZED error.
func (h *Handler) session(r *http.Request) (*Session, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "you are not signed in to the ICA dashboard")
	}
	return VerifySession(h.d.Secret, c.Value, h.d.Clock.Now())
}

// pageData is the data of templates/dashboard.html.
type pageData struct {
	S         *Stats
	User      string
	Until     time.Time
	Budget    template.HTML
	SLA       template.HTML
	Runs      template.HTML
	Incidents template.HTML
}

// HandlePage handles "GET /dashboard": the page, for a signed-in session.
func (h *Handler) HandlePage(w http.ResponseWriter, r *http.Request) error {
	sess, err := h.session(r)
	if err != nil {
		return h.fail(w, r, err)
	}
	p, err := pipelineParam(r)
	if err != nil {
		return h.fail(w, r, err)
	}
	s, err := h.Stats(r.Context(), p)
	if err != nil {
		return h.fail(w, r, err)
	}
	return h.render(w, http.StatusOK, h.page, h.pageData(s, sess))
}

func (h *Handler) pageData(s *Stats, sess *Session) *pageData {
	user := sess.Username
	if user == "" {
		user = sess.UserID
	}
	return &pageData{S: s, User: user, Until: time.Unix(sess.Expires, 0).UTC(),
		Budget: budgetChart(&s.Budget), SLA: slaChart(&s.Approvals), Runs: runsChart(&s.Runs), Incidents: incidentChart(&s.Incidents)}
}

// RenderPage writes the dashboard page for s (for benchmarks and tests).
func (h *Handler) RenderPage(w *bytes.Buffer, s *Stats) error {
	return h.page.Execute(w, h.pageData(s, &Session{Username: "bench", Expires: s.GeneratedAt.Add(time.Hour).Unix()}))
}

func linkToken(r *http.Request) string {
	return strings.TrimPrefix(r.URL.Path, "/dashboard/link/")
}

// HandleLinkPage handles "GET /dashboard/link/{token}": a page whose form
// (submitted by its script at once, or by a click) uses the link. A GET never
// uses the link, so link previews and scanners that fetch URLs in chat
// messages cannot burn it; and the POST comes from ICA's own page, so the
// browser sends the SameSite=Strict cookie on the redirect that follows
// (a 303 straight from the Mattermost click would be a cross-site chain).
func (h *Handler) HandleLinkPage(w http.ResponseWriter, r *http.Request) error {
	t := linkToken(r)
	if !validToken(t) {
		return h.fail(w, r, ica.Errorf(ica.EUNAUTHORIZED, "this dashboard link is not valid"))
	}
	return h.render(w, http.StatusOK, h.msg, message{Title: "Opening the ICA dashboard…",
		Text: "Continue to sign in to the dashboard with your Mattermost account.", Token: t, Next: "/dashboard/link/" + t})
}

// HandleLinkUse handles "POST /dashboard/link/{token}": it uses the link
// once, sets the session cookie and redirects to the dashboard.
func (h *Handler) HandleLinkUse(w http.ResponseWriter, r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || !strings.EqualFold(u.Host, r.Host) {
			return h.fail(w, r, ica.Errorf(ica.EFORBIDDEN, "a dashboard link must be opened from ICA's own page"))
		}
	}
	t := linkToken(r)
	if !validToken(t) {
		return h.fail(w, r, ica.Errorf(ica.EUNAUTHORIZED, "this dashboard link is not valid"))
	}
	now := h.d.Clock.Now()
	until := now.Add(SessionTTL)
	userID, username, err := h.d.Sessions.UseDashboardLink(r.Context(), tokenHash(t), until)
	if err != nil {
		if ica.ErrorCode(err) == ica.EUNAUTHORIZED {
			h.d.Log.Warn("dashboard link refused", "reason", ica.ErrorMessage(err), "remote", r.RemoteAddr)
		}
		return h.fail(w, r, err)
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: SignSession(h.d.Secret, Session{UserID: userID, Username: username, Expires: until.Unix()}),
		Path: "/dashboard", MaxAge: int(SessionTTL.Seconds()), Expires: until, HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode})
	securityHeaders(w)
	http.Redirect(w, r, "/dashboard", http.StatusSeeOther)
	return nil
}

// HandleStatic handles "GET /dashboard/static/{file}": the embedded CSS and
// script (no data; served without a session so error pages are styled).
func (h *Handler) HandleStatic(w http.ResponseWriter, r *http.Request) error {
	name := path.Base(r.URL.Path)
	b, err := fs.ReadFile(h.static, name)
	if err != nil {
		return ica.Errorf(ica.ENOTFOUND, "no dashboard asset %q", name)
	}
	switch path.Ext(name) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, err = w.Write(b)
	return err
}
