package slashcmds

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/export"
)

// Queries is what the views read. Lists are newest first unless noted.
// Implementations return an *ica.Error with ica.ENOTFOUND for a missing run.
type Queries interface {
	// PendingApprovals returns approvals that wait for a decision
	// (pending or technical_approved), oldest first.
	PendingApprovals(ctx context.Context, limit int) ([]*ica.Approval, error)
	// RunningRuns returns runs that have not finished.
	RunningRuns(ctx context.Context, limit int) ([]*ica.Run, error)
	// RecentRuns returns finished runs, most recently finished first.
	RecentRuns(ctx context.Context, limit int) ([]*ica.Run, error)
	// Run returns one run by id.
	Run(ctx context.Context, runID string) (*ica.Run, error)
	// PipelineRuns returns the latest runs of one pipeline (exact name).
	PipelineRuns(ctx context.Context, pipeline string, limit int) ([]*ica.Run, error)
	// LatestApproval returns the most recent approval of a run, or nil and
	// no error when the run has none.
	LatestApproval(ctx context.Context, runID string) (*ica.Approval, error)
	// OpenIncidents returns incidents that are open or acknowledged, most
	// severe first.
	OpenIncidents(ctx context.Context, limit int) ([]*ica.Incident, error)
	// Budget returns the spend of the current month.
	Budget(ctx context.Context) (*BudgetSummary, error)
}

// BudgetSummary is the month-to-date spend against the monthly budget, in
// US dollars.
type BudgetSummary struct {
	// Month is the first day of the month summarised (UTC).
	Month time.Time
	// MonthToDate is the recorded spend so far this month.
	MonthToDate float64
	// Budget is the monthly budget; zero means none is set.
	Budget float64
	// Threshold is the fraction of Budget at which the budget gate refuses
	// new approvals (e.g. 0.95).
	Threshold float64
	// Forecast is the projected spend at the end of the month; zero means unknown.
	Forecast float64
	// AsOf is when the figures were last updated (the newest cost entry).
	AsOf time.Time
	// GateMonthToDate is what the approval gate counts: MonthToDate, or
	// Azure's fresh, higher actual for ICA's scope.
	GateMonthToDate float64
	// Azure is each Azure budget's latest report.
	Azure []*ica.AzureBudgetView
}

// ExportQuery selects the ledger records of an export.
type ExportQuery struct {
	// From and To are the period, To exclusive (the day after the last day
	// the user named), both at midnight UTC.
	From, To time.Time
	// Format is export.FormatCSV, FormatJSON or FormatPDF.
	Format string
	// Pipeline, when set, limits the export to one pipeline's records.
	Pipeline string
	// RequestedBy is the Mattermost username that asked, for the ledger.
	RequestedBy string
}

// Exporter produces signed exports (implemented over the store).
type Exporter interface {
	// Count returns how many records Export would write for q.
	Count(ctx context.Context, q ExportQuery) (int, error)
	// Export writes the export for q to w and returns its manifest.
	Export(ctx context.Context, q ExportQuery, w io.Writer) (*export.Manifest, error)
}

// Poster posts a file in a channel as the ICA bot.
type Poster interface {
	PostFile(ctx context.Context, channelID, filename string, r io.Reader, message string) (postID string, err error)
}

// Archiver keeps a copy of each export (the archive package). It must
// refuse to overwrite an existing name.
type Archiver interface {
	Upload(ctx context.Context, name string, r io.Reader, contentType string, metadata map[string]string) (url string, err error)
}

// Caller is the person who ran a command, as Mattermost describes them
// (GET /api/v4/users/{id}), never as the request body names them.
type Caller struct {
	UserID, Username, Email string
}

// CallerVerifier proves who ran a command: the command's trigger_id must
// be signed by the Mattermost server for the user_id, fresh and unused (the
// bot package's trigger verifier). Its errors are *ica.Error with a message
// for the user; it logs the reason itself.
type CallerVerifier interface {
	VerifyCaller(ctx context.Context, triggerID, userID string) (Caller, error)
}

// Defaults for Deps.
const (
	DefaultMaxExports      = 2
	DefaultArchiveAttempts = 3
	DefaultPostAttempts    = 3
	DefaultRetryBackoff    = 5 * time.Second
	DefaultExportTimeout   = 30 * time.Minute
	// MaxReplyBytes keeps replies well under Mattermost's limits and readable.
	MaxReplyBytes = 16000
	// MaxResponseURLUses and ResponseURLLifetime are Mattermost's limits on a
	// command's response_url.
	MaxResponseURLUses  = 5
	ResponseURLLifetime = 30 * time.Minute
)

// Deps are the Handler's dependencies and settings.
type Deps struct {
	// Tokens are the accepted command tokens (ICA_SLASH_TOKENS). With none,
	// every request is refused.
	Tokens []string
	// Callers proves who ran each command from its trigger_id; without it
	// every command is refused (the command token proves only that the
	// request came through a Mattermost command, not who typed it).
	Callers CallerVerifier
	// InstanceName (ICA_INSTANCE_NAME: staging, production) is shown in
	// /ica status when set.
	InstanceName string
	// Queries, Exporter and Poster are required; Archiver is optional (nil
	// means no archive is configured, and the export says so).
	Queries  Queries
	Exporter Exporter
	Poster   Poster
	Archiver Archiver
	// ExportUsers (usernames or user ids) and ExportChannels (channel names
	// or ids) say who may export: a user listed in ExportUsers, or anyone
	// running the command in a channel listed in ExportChannels. Both empty
	// means nobody: an export carries the whole ledger, raw alert payloads
	// included, so who may take it is a decision, not a default.
	ExportUsers    []string
	ExportChannels []string
	// MaxExports is how many exports may run at once (default 2).
	MaxExports int
	// ArchiveAttempts and PostAttempts bound the tries of each step
	// (defaults 3); RetryBackoff is the first wait between tries, doubled
	// each time (default 5 s).
	ArchiveAttempts int
	PostAttempts    int
	RetryBackoff    time.Duration
	// ExportTimeout bounds one export job (default 30 min).
	ExportTimeout time.Duration
	// MattermostURL, when set, is the only origin to which response_url
	// follow-ups are sent (so a caller with a token cannot point ICA at
	// another host).
	MattermostURL string
	// TempDir holds export files while they are posted (default os.TempDir).
	TempDir string
	// --- dashboard (slashcmds/dashboard.go) ---
	// Dashboard, when set, adds "/ica dashboard" (a single-use link).
	Dashboard DashboardLinks
	// --- end dashboard ---
	// Clock defaults to ica.SystemClock; Log to slog.Default; HTTPClient (for
	// response_url) to a client with a 10 s timeout.
	Clock      ica.Clock
	Log        *slog.Logger
	HTTPClient *http.Client
}

// command is one /ica subcommand.
type command struct {
	run   func(ctx context.Context, c *call) (string, error)
	usage string // "export [from=YYYY-MM-DD] …"
	help  string // one line
	hint  string // autocomplete hint for the arguments
}

// call is one invocation, with the form fields Mattermost sent.
type call struct {
	UserID, UserName       string // as Mattermost describes the verified caller
	ChannelID, ChannelName string
	TeamID, ResponseURL    string
	Text                   string // everything after "/ica"
	Sub                    string
	Args                   []Arg // after the subcommand
	At                     time.Time
}

// Handler serves the /ica slash command. It owns the goroutines of running
// exports; Close stops them.
type Handler struct {
	d        Deps
	tokens   [][]byte
	commands map[string]command
	order    []string // subcommands in help order
	clock    ica.Clock
	log      *slog.Logger
	hc       *http.Client
	sem      chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	hooks  map[string]*hookUse // response_url -> uses
}

// New returns a Handler. It panics if Queries, Exporter or Poster is nil,
// which is a wiring bug.
func New(d Deps) *Handler {
	if d.Queries == nil || d.Exporter == nil || d.Poster == nil {
		panic("slashcmds.New: Queries, Exporter and Poster are required")
	}
	if d.MaxExports <= 0 {
		d.MaxExports = DefaultMaxExports
	}
	if d.ArchiveAttempts <= 0 {
		d.ArchiveAttempts = DefaultArchiveAttempts
	}
	if d.PostAttempts <= 0 {
		d.PostAttempts = DefaultPostAttempts
	}
	if d.RetryBackoff <= 0 {
		d.RetryBackoff = DefaultRetryBackoff
	}
	if d.ExportTimeout <= 0 {
		d.ExportTimeout = DefaultExportTimeout
	}
	h := &Handler{
		d:     d,
		clock: d.Clock,
		log:   d.Log,
		hc:    d.HTTPClient,
		sem:   make(chan struct{}, d.MaxExports),
		hooks: map[string]*hookUse{},
	}
	if h.clock == nil {
		h.clock = ica.SystemClock{}
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.hc == nil {
		h.hc = &http.Client{Timeout: 10 * time.Second}
	}
	for _, t := range d.Tokens {
		if t = strings.TrimSpace(t); t != "" {
			h.tokens = append(h.tokens, []byte(t))
		}
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.commands = map[string]command{
		"status": {run: h.status, usage: "status [RUN_ID|PIPELINE|APPROVAL_ID]",
			help: "pending approvals, runs in progress, recent runs, open incidents and budget; or one run, one pipeline's runs, or one approval and the witnessed checkpoint that covers it",
			hint: "[RUN_ID|PIPELINE|APPROVAL_ID]"},
		"approvals": {run: h.approvals, usage: "approvals", help: "approvals waiting for a decision"},
		"incidents": {run: h.incidents, usage: "incidents", help: "open and acknowledged incidents"},
		"budget":    {run: h.budget, usage: "budget", help: "this month's spend against the budget"},
		"export": {run: h.export, usage: "export [from=YYYY-MM-DD] [to=YYYY-MM-DD] [format=csv|json|pdf] [pipeline=NAME]",
			help: "signed audit export of the ledger, posted here as a file (default: this month, CSV)",
			hint: "[from=YYYY-MM-DD] [to=YYYY-MM-DD] [format=csv|json|pdf] [pipeline=NAME]"},
		"help": {run: h.help, usage: "help", help: "this help"},
	}
	h.order = []string{"status", "approvals", "incidents", "budget", "export", "help"}
	h.registerPolicy() // /ica policy (policy.go)
	// --- dashboard (slashcmds/dashboard.go) ---
	if d.Dashboard != nil {
		h.commands["dashboard"] = command{run: h.dashboard, usage: "dashboard",
			help: "a link to the web dashboard (budget, approval times, runs, incidents, ledger); it works once, for 5 minutes"}
		h.order = append(h.order[:len(h.order)-1], "dashboard", "help")
	}
	// --- end dashboard ---
	return h
}

// HandleSlash handles "POST /mattermost/slash". The router limits the body
// to 1 MiB. Everything the user should see is an HTTP 200 ephemeral reply;
// an error is returned only for requests that are not slash commands at all
// (an unreadable body).
func (h *Handler) HandleSlash(w http.ResponseWriter, r *http.Request) error {
	// Verify before decoding: Mattermost sends the token in the header too,
	// so a request with a wrong header token is refused unparsed.
	var ok bool
	if hdr, found := headerToken(r); found {
		ok = h.validToken(hdr)
	} else {
		if err := parseForm(r); err != nil {
			return err
		}
		tok := r.PostForm.Get("token")
		if r.Method == http.MethodGet {
			tok = r.Form.Get("token")
		}
		ok = h.validToken(tok)
	}
	if !ok {
		// Nothing runs; the form is read only to tell the operator who
		// (claims to have) tried, which is usually a misconfigured command.
		_ = r.ParseForm()
		h.log.Warn("slash command with an invalid token refused",
			"remote", r.RemoteAddr, "claimed_user_name", clip(r.Form.Get("user_name"), 64),
			"claimed_channel_name", clip(r.Form.Get("channel_name"), 64), "claimed_team", clip(r.Form.Get("team_domain"), 64),
			"configured_tokens", len(h.tokens))
		writeReply(w, "This /ica command is not configured with a valid token for this ICA. "+
			"Ask an administrator to copy the command's token into ICA_SLASH_TOKENS.")
		return nil
	}
	if err := parseForm(r); err != nil {
		return err
	}
	if h.d.Callers == nil {
		h.log.Warn("slash command refused: no verifier of trigger ids is configured")
		writeReply(w, "This ICA cannot check who runs /ica commands, so it answers none.")
		return nil
	}
	who, err := h.d.Callers.VerifyCaller(r.Context(), r.Form.Get("trigger_id"), r.Form.Get("user_id"))
	if err != nil {
		writeReply(w, ica.ErrorMessage(err)+".")
		return nil
	}
	c := &call{
		UserID: who.UserID, UserName: who.Username,
		ChannelID: r.Form.Get("channel_id"), ChannelName: r.Form.Get("channel_name"),
		TeamID: r.Form.Get("team_id"), ResponseURL: r.Form.Get("response_url"),
		Text: r.Form.Get("text"), At: h.clock.Now(),
	}
	writeReply(w, h.dispatch(r.Context(), c))
	return nil
}

// dispatch runs the subcommand named by c.Text and returns the reply text.
func (h *Handler) dispatch(ctx context.Context, c *call) string {
	args, err := ParseArgs(c.Text)
	if err != nil {
		msg := "Sorry, I could not read that: " + ica.ErrorMessage(err)
		if f := strings.Fields(c.Text); len(f) > 0 {
			if cmd, ok := h.commands[strings.ToLower(f[0])]; ok {
				return msg + "\n\nUsage: `/ica " + cmd.usage + "`"
			}
		}
		return msg + "\n\n" + h.helpText()
	}
	if len(args) == 0 {
		return h.helpText()
	}
	first := args[0]
	c.Sub = strings.ToLower(first.Value)
	cmd, found := h.commands[c.Sub]
	if first.Key != "" || !found {
		return "I did not understand " + mdCode(clip(first.String(), 60)) + ": it is not an /ica command.\n\n" + h.helpText()
	}
	c.Args = args[1:]
	text, err := cmd.run(ctx, c)
	if err != nil {
		code := ica.ErrorCode(err)
		if code == ica.EINTERNAL || code == ica.EUNAVAILABLE {
			h.log.Error("slash command failed", "sub", c.Sub, "user_name", c.UserName, "err", err)
		}
		msg := ica.ErrorMessage(err)
		if code == ica.EINVALID {
			return msg + "\n\nUsage: `/ica " + cmd.usage + "`"
		}
		if code == ica.EINTERNAL {
			msg = "Sorry, something went wrong inside ICA (internal error); it has been logged."
		}
		return msg
	}
	return text
}

// help answers "/ica help".
func (h *Handler) help(context.Context, *call) (string, error) { return h.helpText(), nil }

func (h *Handler) helpText() string {
	var b strings.Builder
	b.WriteString("**/ica** — deployment governance\n\n")
	for _, name := range h.order {
		c := h.commands[name]
		b.WriteString("* `/ica " + c.usage + "` — " + c.help + "\n")
	}
	b.WriteString("\nExamples: `/ica status`, `/ica status payments-api`, `/ica export`, " +
		"`/ica export from=2026-01-01 to=2026-03-31 format=pdf`, `/ica export pipeline=\"payments api\" format=json`\n")
	return b.String()
}

// parseForm parses the form (once) and maps errors to *ica.Error.
func parseForm(r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return ica.Errorf(ica.ETOOLARGE, "slash command request is larger than %d bytes", mbe.Limit)
		}
		return &ica.Error{Code: ica.EINVALID, Message: "slash command request is not a form", Cause: err}
	}
	return nil
}

// headerToken returns the token of "Authorization: Token …".
func headerToken(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if len(v) > 6 && strings.EqualFold(v[:6], "token ") {
		return strings.TrimSpace(v[6:]), true
	}
	return "", false
}

// validToken compares t with every configured token in constant time.
func (h *Handler) validToken(t string) bool {
	if t == "" {
		return false
	}
	ok := 0
	for _, want := range h.tokens {
		ok |= subtle.ConstantTimeCompare([]byte(t), want)
	}
	return ok == 1
}

// mayExport reports whether the caller may run an export.
func (h *Handler) mayExport(c *call) bool {
	if !h.exportConfigured() {
		return false
	}
	match := func(list []string, vals ...string) bool {
		return slices.ContainsFunc(list, func(s string) bool {
			s = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "@"), "~")
			for _, v := range vals {
				if v != "" && strings.EqualFold(s, v) {
					return true
				}
			}
			return false
		})
	}
	return match(h.d.ExportUsers, c.UserName, c.UserID) || match(h.d.ExportChannels, c.ChannelName, c.ChannelID)
}

// exportConfigured reports whether anyone at all may export.
func (h *Handler) exportConfigured() bool {
	return len(h.d.ExportUsers) > 0 || len(h.d.ExportChannels) > 0
}

func writeReply(w http.ResponseWriter, text string) {
	if len(text) > MaxReplyBytes {
		text = truncateText(text, MaxReplyBytes)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(&model.CommandResponse{ResponseType: model.CommandResponseTypeEphemeral, Text: text})
}

// Close stops accepting exports and waits for running ones until ctx ends;
// then it cancels them and waits briefly for them to report and exit.
func (h *Handler) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		h.cancel()
		return nil
	case <-ctx.Done():
	}
	h.cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		h.log.Error("slash command exports did not stop after cancellation")
	}
	return ctx.Err()
}

// AutocompleteData describes /ica for Mattermost's autocomplete.
func (h *Handler) AutocompleteData() *model.AutocompleteData {
	ad := model.NewAutocompleteData("ica", "["+strings.Join(h.order, "|")+"]", // dashboard: hint built from h.order
		"Deployment approvals, runs, incidents, budget and audit exports")
	for _, name := range h.order {
		c := h.commands[name]
		sub := model.NewAutocompleteData(name, c.hint, c.help)
		if c.hint != "" {
			sub.AddTextArgument(c.help, c.hint, "")
		}
		ad.AddCommand(sub)
	}
	return ad
}
