// Package webhooks is ICA's HTTP API for Azure Pipelines and Azure Monitor:
// router assembly, authentication, body limits and the JSON handlers.
package webhooks

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/ica-governance/ica"
)

// Ledger is what the pipeline API needs from the store.
type Ledger interface {
	StartRun(ctx context.Context, in *ica.RunStart, actor string) (*ica.Run, bool, error)
	AddEvent(ctx context.Context, runID string, in *ica.EventInput, actor string) (*ica.Event, bool, error)
	FinishRun(ctx context.Context, runID string, in *ica.RunFinish, actor string) (*ica.Run, bool, error)
	Run(ctx context.Context, runID string) (*ica.Run, error)
	Runs(ctx context.Context, f ica.RunFilter) (*ica.RunPage, error)
	Events(ctx context.Context, runID string) ([]*ica.Event, error)
	RequestApproval(ctx context.Context, in *ica.ApprovalRequest, actor string) (*ica.Approval, bool, error)
	Approval(ctx context.Context, id string) (*ica.Approval, error)
	LatestApproval(ctx context.Context, runID string) (*ica.Approval, error)
	Approvals(ctx context.Context, f ica.ApprovalFilter) (*ica.ApprovalPage, error)
	Transition(ctx context.Context, id string, t ica.Transition, actor string, check func(a *ica.Approval) error) (*ica.Approval, error)
	Ping() error
}

// ReadinessCheck reports a dependency's health for /readyz; nil is ready.
type ReadinessCheck func(ctx context.Context) error

// Deps are the Handler's collaborators.
type Deps struct {
	Ledger Ledger
	Costs  CostLedger  // optional: cost actuals and the budget
	Checks CheckLedger // optional: Azure Pipelines checks in callback mode
	// Gates judges and opens the deployment gate (deploy.go); defaults to
	// the Ledger when it can.
	Gates GateLedger
	// CheckHosts, when set, refuses check callbacks to hosts that are not
	// Azure DevOps (the job token must not be sent anywhere else).
	CheckHosts func(planURL string) error
	Pipelines  Authenticator // pipeline bearer tokens (and JWTs)
	BreakGlass Authenticator // break-glass tokens for bypass
	// Users authenticates people by their own delegated Entra ID token
	// (NewUserAuth); nil: GET /api/v1/me answers 503 not_configured.
	Users Authenticator
	// Approvers gives the approver lists of the policy in force, for
	// decisions through the API (decisions.go).
	Approvers Approvers
	Limiter   *RateLimiter
	// Sources limits the routes that carry no credential per source
	// address (ratelimit.go); nil: no such limit.
	Sources *SourceLimiter
	Metrics *Metrics
	Logger  *slog.Logger
	Clock   ica.Clock
	// Ready lists named checks besides the ledger; a failing one makes /readyz 503.
	Ready map[string]ReadinessCheck
	// Degraded lists named checks that are reported by /readyz but do not fail it
	// (Mattermost delivery disabled or down: the ledger still works).
	Degraded map[string]ReadinessCheck
	// MaxBody caps request bodies (default 1 MiB).
	MaxBody int64
}

// Handler serves the HTTP API.
type Handler struct {
	Deps
	log     *slog.Logger
	limiter *RateLimiter
	// failures limits the failed requests of each principal (ratelimit.go).
	failures *RateLimiter
	metrics  *Metrics
	router   *mux.Router
	root     http.Handler // router wrapped in observe
}

// NewHandler assembles the router.
func NewHandler(d Deps) *Handler {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Clock == nil {
		d.Clock = ica.SystemClock{}
	}
	if d.MaxBody == 0 {
		d.MaxBody = MaxBodyBytes
	}
	if gl, ok := d.Ledger.(GateLedger); ok && d.Gates == nil {
		d.Gates = gl
	}
	h := &Handler{Deps: d, log: d.Logger, limiter: d.Limiter, metrics: d.Metrics, router: mux.NewRouter()}
	if d.Sources != nil {
		h.failures = NewRateLimiter(FailuresPerSecond)
	}
	h.router.NotFoundHandler = h.limitSource(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, h.log, ica.Errorf(ica.ENOTFOUND, "no such endpoint: %s %s", r.Method, r.URL.Path))
	}))
	h.router.MethodNotAllowedHandler = h.limitSource(http.HandlerFunc(h.methodNotAllowed))
	h.router.Use(h.matched)
	h.Register(h.router)
	// The access log, request id and recovery wrap the router itself, so
	// unknown paths and wrong methods get them too (a router's middleware
	// runs only for matched routes).
	h.root = h.observe(h.router)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.root.ServeHTTP(w, r) }

// methodNotAllowed answers a known path with a method it does not serve:
// 405 with the JSON error and the Allow header listing what it does serve.
func (h *Handler) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	var allow []string
	seen := map[string]bool{}
	_ = h.router.Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		methods, err := rt.GetMethods()
		if err != nil {
			return nil
		}
		for _, m := range methods {
			if seen[m] {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			if rt.Match(probe, &mux.RouteMatch{}) {
				seen[m] = true
				allow = append(allow, m)
			}
		}
		return nil
	})
	sort.Strings(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: errorDetail{Code: "method_not_allowed",
		Message: r.Method + " is not allowed on " + r.URL.Path + "; allowed: " + strings.Join(allow, ", "), RequestID: RequestID(r.Context())}})
}

// Router returns the router so other packages can register their routes
// (Mattermost callbacks, alerts, dashboard) behind the same middleware.
func (h *Handler) Router() *mux.Router { return h.router }

// Route wraps fn as an endpoint: body limit, then (when auth is not nil)
// authentication and the rate limit per token, all before the body is read.
// A route without auth is limited per source address instead (Sources).
func (h *Handler) Route(auth Authenticator, fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	if auth == nil {
		return h.limitSource(h.RouteUnlimited(fn))
	}
	return h.limitBody(h.MaxBody, h.authenticate(auth, h.endpoint(fn)))
}

// RouteUnlimited wraps fn as an endpoint without credential and without the
// per-address limit: for the probes, and for Mattermost's callbacks, which
// all come from the Mattermost server and are limited per verified user
// (SourceLimiter.AllowUser). Only the body limit applies.
func (h *Handler) RouteUnlimited(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return h.limitBody(h.MaxBody, h.endpoint(fn))
}

func (h *Handler) endpoint(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			h.holdFailure(r, err)
			WriteError(w, r, h.log, err)
		}
	})
}

// Register adds the pipeline API and the operational endpoints to r.
func (h *Handler) Register(r *mux.Router) {
	p := h.Pipelines
	r.Handle("/api/v1/runs", h.Route(p, h.handleStartRun)).Methods(http.MethodPost)
	r.Handle("/api/v1/runs", h.Route(p, h.handleListRuns)).Methods(http.MethodGet)
	r.Handle("/api/v1/runs/{run_id}", h.Route(p, h.handleGetRun)).Methods(http.MethodGet)
	r.Handle("/api/v1/runs/{run_id}/events", h.Route(p, h.handleAddEvent)).Methods(http.MethodPost)
	r.Handle("/api/v1/runs/{run_id}/events", h.Route(p, h.handleListEvents)).Methods(http.MethodGet)
	r.Handle("/api/v1/runs/{run_id}/finish", h.Route(p, h.handleFinishRun)).Methods(http.MethodPost)
	r.Handle("/api/v1/runs/{run_id}/approvals/latest", h.Route(p, h.handleLatestApproval)).Methods(http.MethodGet)
	r.Handle("/api/v1/approvals", h.Route(p, h.handleRequestApproval)).Methods(http.MethodPost)
	r.Handle("/api/v1/approvals/{approval_id}", h.Route(p, h.detailed(h.handleGetApproval))).Methods(http.MethodGet)
	r.Handle("/api/v1/approvals/{approval_id}/use", h.Route(p, h.detailed(h.handleUseApproval))).Methods(http.MethodPost)
	r.Handle("/api/v1/approvals/{approval_id}/void", h.Route(p, h.handleVoidApproval)).Methods(http.MethodPost)
	r.Handle("/api/v1/runs/{run_id}/policy", h.Route(p, h.handleRunPolicy)).Methods(http.MethodGet)
	r.Handle("/api/v1/approvals", h.Route(p, h.handleListApprovals)).Methods(http.MethodGet)
	if h.Costs != nil {
		r.Handle("/api/v1/costs", h.Route(p, h.handleRecordCost)).Methods(http.MethodPost)
		r.Handle("/api/v1/budget", h.Route(p, h.handleBudget)).Methods(http.MethodGet)
	} else {
		r.Handle("/api/v1/costs", h.NotConfigured("the cost API", "a cost ledger")).Methods(http.MethodPost)
		r.Handle("/api/v1/budget", h.NotConfigured("the budget API", "a cost ledger")).Methods(http.MethodGet)
	}
	if h.Checks != nil {
		r.Handle("/api/v1/ado/checks", h.Route(p, h.handleCheck)).Methods(http.MethodPost)
	} else {
		r.Handle("/api/v1/ado/checks", h.NotConfigured("the Azure Pipelines check", "a check ledger")).Methods(http.MethodPost)
	}
	if h.BreakGlass != nil {
		r.Handle("/api/v1/approvals/{approval_id}/bypass", h.Route(h.BreakGlass, h.handleBypass)).Methods(http.MethodPost)
	} else {
		r.Handle("/api/v1/approvals/{approval_id}/bypass", h.NotConfigured("the break-glass bypass", "ICA_BREAKGLASS_TOKENS")).Methods(http.MethodPost)
	}
	r.Handle("/api/v1/me", h.Route(h.users(), h.handleMe)).Methods(http.MethodGet)
	r.Handle("/api/v1/approvals/{approval_id}/decisions", h.Route(h.users(), h.handleDecision)).Methods(http.MethodPost)
	r.Handle("/healthz", h.RouteUnlimited(h.handleHealth)).Methods(http.MethodGet)
	r.Handle("/readyz", h.RouteUnlimited(h.handleReady)).Methods(http.MethodGet)
	r.Handle("/api/v1/openapi.json", h.Route(nil, h.handleOpenAPI)).Methods(http.MethodGet)
}

func actor(r *http.Request) string {
	if p := PrincipalOf(r.Context()); p != nil {
		return p.Name
	}
	return "anonymous"
}

// handleStartRun handles "POST /api/v1/runs".
func (h *Handler) handleStartRun(w http.ResponseWriter, r *http.Request) error {
	var in ica.RunStart
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := mayStart(r.Context(), in.PipelineName); err != nil {
		return err
	}
	run, created, err := h.Ledger.StartRun(withCredential(r.Context()), &in, actor(r))
	if err != nil {
		return err
	}
	if p := PrincipalOf(r.Context()); !created && p != nil && !owns(p, run) {
		return ica.Errorf(ica.EFORBIDDEN, "run %s was started by another credential (%s)", run.RunID, run.Actor)
	}
	writeJSON(w, createdStatus(created), run)
	return nil
}

func createdStatus(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// handleAddEvent handles "POST /api/v1/runs/{run_id}/events".
func (h *Handler) handleAddEvent(w http.ResponseWriter, r *http.Request) error {
	runID := mux.Vars(r)["run_id"]
	if err := ica.ValidID("run_id", runID); err != nil {
		return err
	}
	var in ica.EventInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	in.Authorize = func(run *ica.Run) error { return mayWriteRun(r.Context(), run, "add events to") }
	ev, created, err := h.Ledger.AddEvent(r.Context(), runID, &in, actor(r))
	if err != nil {
		return err
	}
	writeJSON(w, createdStatus(created), ev)
	return nil
}

// finishBody is the wire form of a finish; end_time is parsed here so a bad
// time is reported with its field name.
type finishBody struct {
	Status  string `json:"status"`
	EndTime string `json:"end_time,omitempty"`
}

// handleFinishRun handles "POST /api/v1/runs/{run_id}/finish".
func (h *Handler) handleFinishRun(w http.ResponseWriter, r *http.Request) error {
	runID := mux.Vars(r)["run_id"]
	if err := ica.ValidID("run_id", runID); err != nil {
		return err
	}
	var b finishBody
	if err := decodeJSON(r, &b); err != nil {
		return err
	}
	in := ica.RunFinish{Status: b.Status,
		Authorize: func(run *ica.Run) error { return mayWriteRun(r.Context(), run, "finish") }}
	if b.EndTime != "" {
		t, err := time.Parse(time.RFC3339Nano, b.EndTime)
		if err != nil {
			return ica.FieldErrorf(ica.EINVALID, "end_time", "end_time must be an RFC 3339 time such as 2026-11-27T10:00:00Z")
		}
		in.EndTime = &t
	}
	run, _, err := h.Ledger.FinishRun(r.Context(), runID, &in, actor(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, run)
	return nil
}

// handleGetRun handles "GET /api/v1/runs/{run_id}".
func (h *Handler) handleGetRun(w http.ResponseWriter, r *http.Request) error {
	run, err := h.Ledger.Run(r.Context(), mux.Vars(r)["run_id"])
	if err != nil {
		return err
	}
	if err := mayRead(r.Context(), run.PipelineName); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, run)
	return nil
}

// handleListEvents handles "GET /api/v1/runs/{run_id}/events".
func (h *Handler) handleListEvents(w http.ResponseWriter, r *http.Request) error {
	runID := mux.Vars(r)["run_id"]
	if err := ica.ValidID("run_id", runID); err != nil {
		return err
	}
	if run, err := h.Ledger.Run(r.Context(), runID); err != nil {
		return err
	} else if err := mayRead(r.Context(), run.PipelineName); err != nil {
		return err
	}
	evs, err := h.Ledger.Events(r.Context(), runID)
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []*ica.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
	return nil
}

// parseTimeParam accepts RFC 3339 or a date (YYYY-MM-DD, midnight UTC).
func parseTimeParam(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, ica.FieldErrorf(ica.EINVALID, name, "%s must be a date (YYYY-MM-DD) or an RFC 3339 time", name)
}

// handleListRuns handles "GET /api/v1/runs".
func (h *Handler) handleListRuns(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := ica.RunFilter{Pipeline: q.Get("pipeline"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	switch f.Status {
	case "", ica.RunRunning, ica.RunSuccess, ica.RunFailed, ica.RunCancelled:
	default:
		return ica.FieldErrorf(ica.EINVALID, "status", "status must be one of running, success, failed, cancelled")
	}
	if err := ica.ValidText("pipeline", f.Pipeline, ica.MaxNameLen, false); err != nil {
		return err
	}
	var err error
	if f.From, err = parseTimeParam("from", q.Get("from")); err != nil {
		return err
	}
	if f.To, err = parseTimeParam("to", q.Get("to")); err != nil {
		return err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		return ica.FieldErrorf(ica.EINVALID, "to", "to must be after from")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return ica.FieldErrorf(ica.EINVALID, "limit", "limit must be a whole number from 1 to 500")
		}
		f.Limit = n
	}
	if f.Pipeline, err = ScopedPipeline(r.Context(), f.Pipeline); err != nil {
		return err
	}
	page, err := h.Ledger.Runs(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// handleRequestApproval handles "POST /api/v1/approvals".
func (h *Handler) handleRequestApproval(w http.ResponseWriter, r *http.Request) error {
	var in ica.ApprovalRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return err
	}
	if err := h.runGate(r.Context(), in.RunID, "request"); err != nil {
		return err
	}
	a, created, err := h.Ledger.RequestApproval(r.Context(), &in, actor(r))
	if err != nil {
		return err
	}
	writeJSON(w, createdStatus(created), a)
	return nil
}

// handleListApprovals handles "GET /api/v1/approvals": newest first,
// filtered by status and target, paged with next_cursor.
func (h *Handler) handleListApprovals(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for name := range q {
		switch name {
		case "status", "target", "pipeline", "limit", "cursor":
		default:
			return ica.FieldErrorf(ica.EINVALID, name, "unknown query parameter %q (status, target, pipeline, limit, cursor)", name)
		}
	}
	f := ica.ApprovalFilter{Status: q.Get("status"), Target: q.Get("target"), Pipeline: q.Get("pipeline"), Cursor: q.Get("cursor")}
	if err := ica.ValidText("pipeline", f.Pipeline, ica.MaxNameLen, false); err != nil {
		return err
	}
	var err error
	if f.Pipeline, err = ScopedPipeline(r.Context(), f.Pipeline); err != nil {
		return err
	}
	switch f.Status {
	case "", ica.ApprovalPending, ica.ApprovalTechnical, ica.ApprovalApproved, ica.ApprovalRejected, ica.ApprovalExpired, ica.ApprovalBypassed:
	default:
		return ica.FieldErrorf(ica.EINVALID, "status", "status must be one of pending, technical_approved, approved, rejected, expired, bypassed")
	}
	switch f.Target {
	case "", ica.TargetStaging, ica.TargetProduction:
	default:
		return ica.FieldErrorf(ica.EINVALID, "target", "target must be staging or production")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return ica.FieldErrorf(ica.EINVALID, "limit", "limit must be a whole number from 1 to 500")
		}
		f.Limit = n
	}
	page, err := h.Ledger.Approvals(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// handleLatestApproval handles "GET /api/v1/runs/{run_id}/approvals/latest".
func (h *Handler) handleLatestApproval(w http.ResponseWriter, r *http.Request) error {
	runID := mux.Vars(r)["run_id"]
	if err := ica.ValidID("run_id", runID); err != nil {
		return err
	}
	if run, err := h.Ledger.Run(r.Context(), runID); err != nil {
		return err
	} else if err := mayRead(r.Context(), run.PipelineName); err != nil {
		return err
	}
	a, err := h.Ledger.LatestApproval(r.Context(), runID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

type bypassBody struct {
	Reason string `json:"reason"`
}

// runGate checks that the caller may request or use a run's approvals.
func (h *Handler) runGate(ctx context.Context, runID, what string) error {
	run, err := h.Ledger.Run(ctx, runID)
	if err != nil {
		return err
	}
	return mayGate(ctx, run, what)
}

// handleBypass handles "POST /api/v1/approvals/{approval_id}/bypass": the
// break-glass path. It is audited in the ledger and logged loudly.
func (h *Handler) handleBypass(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["approval_id"]
	if err := ica.ValidID("approval_id", id); err != nil {
		return err
	}
	var b bypassBody
	if err := decodeJSON(r, &b); err != nil {
		return err
	}
	b.Reason = strings.TrimSpace(b.Reason)
	if b.Reason == "" {
		return ica.FieldErrorf(ica.EINVALID, "reason", "reason is required for a break-glass bypass")
	}
	if len(b.Reason) > 2000 {
		return ica.FieldErrorf(ica.EINVALID, "reason", "reason is longer than 2000 bytes")
	}
	a, err := h.Ledger.Transition(r.Context(), id, ica.Transition{Action: ica.ActBypass,
		By: ica.Decider{Username: actor(r)}, Comment: b.Reason, Via: "breakglass"}, actor(r), nil)
	if err != nil {
		return err
	}
	h.log.Warn("BREAK-GLASS BYPASS", "approval_id", a.ID, "run_id", a.RunID, "target", a.Target,
		"by", actor(r), "reason", b.Reason, "request_id", RequestID(r.Context()))
	writeJSON(w, http.StatusOK, a)
	return nil
}

// notConfigured refuses every request of a feature that is not set up:
// 503 not_configured naming the setting, which clients do not retry.
type notConfigured struct{ setting string }

func (n notConfigured) Authenticate(*http.Request) (*Principal, error) {
	return nil, ica.Errorf(ica.ENOTCONFIGURED, "not configured: set %s", n.setting)
}

func (h *Handler) users() Authenticator {
	if h.Users != nil {
		return h.Users
	}
	return notConfigured{setting: "ICA_ENTRA_TENANT_ID and ICA_ENTRA_AUDIENCES (or ICA_ENTRA_USER_AUDIENCES)"}
}

// handleMe handles "GET /api/v1/me": who a person's Entra ID token says
// they are, as ICA will record them. It lets a person (and ica approve)
// check their token before deciding anything.
func (h *Handler) handleMe(w http.ResponseWriter, r *http.Request) error {
	p := PersonOf(r.Context())
	if p == nil {
		return ica.Errorf(ica.EFORBIDDEN, "this endpoint is for people's own Entra ID tokens")
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": p.ID(), "tid": p.TenantID, "oid": p.ObjectID, "upn": p.UPN, "name": p.Name})
	return nil
}

// handleHealth handles "GET /healthz": the process is alive.
func (h *Handler) handleHealth(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleReady handles "GET /readyz": the ledger is open and writable and the
// required dependencies answer; degraded dependencies are reported.
func (h *Handler) handleReady(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ready := true
	if err := h.Ledger.Ping(); err != nil {
		checks["ledger"], ready = err.Error(), false
	} else {
		checks["ledger"] = "ok"
	}
	for name, c := range h.Ready {
		if err := c(ctx); err != nil {
			checks[name], ready = err.Error(), false
		} else {
			checks[name] = "ok"
		}
	}
	for name, c := range h.Degraded {
		if err := c(ctx); err != nil {
			checks[name] = "degraded: " + err.Error()
		} else {
			checks[name] = "ok"
		}
	}
	status, code := "ready", http.StatusOK
	if !ready {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": checks})
	return nil
}
