package webhooks

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/ica-governance/ica"
)

// MaxAlertBody is the largest Azure Monitor webhook ICA reads. Azure caps
// alert payloads at 256 KB (bigger log alerts are sent without their
// search results), so anything larger is not from Azure.
const MaxAlertBody = 256 << 10

// AlertLedger is what the Azure Monitor intake and the incident API need
// from the store.
type AlertLedger interface {
	RecordAlert(ctx context.Context, a *ica.Alert, raw []byte, actor string) (*ica.Incident, string, error)
	Incident(ctx context.Context, id string) (*ica.Incident, error)
	Incidents(ctx context.Context, f ica.IncidentFilter) ([]*ica.Incident, error)
	OverrideFreeze(ctx context.Context, id string, d ica.Decision, actor string) (*ica.Incident, error)
	IncidentOverride(ctx context.Context, id string) (*ica.Decision, error)
}

// BudgetLedger records what Azure budget notifications report (cmd/ica
// adds the finance channel's notice).
type BudgetLedger interface {
	RecordAzureBudget(ctx context.Context, r *ica.AzureBudgetReport, raw []byte, actor string) (created bool, err error)
}

// AlertDeps are the collaborators of the alert endpoints.
type AlertDeps struct {
	Ledger AlertLedger
	// Parse turns a webhook body into an alert (alerts.Parse). An error
	// with an UnrecognisedSchema() string method is a JSON object of a
	// schema ICA does not know: it is kept as a warning incident, not refused.
	Parse func(body []byte) (*ica.Alert, error)
	// ParseBudget reads an Azure budget notification of either schema
	// (alerts.ParseBudget); nil, nil for other payloads.
	ParseBudget func(body []byte) (*ica.AzureBudgetReport, error)
	// Budgets records budget reports; with ParseBudget nil or Budgets nil,
	// budget signals are alerts only.
	Budgets BudgetLedger
	// Auth authenticates Azure Monitor (NewAlertAuth). Nil refuses every alert.
	Auth Authenticator
	// Readers may list and read incidents (default: the pipeline tokens).
	Readers Authenticator
	// Commanders may override a deployment freeze (break-glass and
	// incident-commander tokens). Nil disables the endpoint.
	Commanders Authenticator
	// CardLink returns the Mattermost permalink of an incident's card ("" when
	// it is not posted); nil disables GET /incidents/{id}/card.
	CardLink func(inc *ica.Incident) string
	// FreezeTargets returns the deployment targets an incident freezes now
	// (shown by GET /api/v1/incidents/{id}); nil shows none.
	FreezeTargets func(inc *ica.Incident) []string
	// MaxBody caps alert bodies (default MaxAlertBody).
	MaxBody int64
}

// Alert outcomes that changed an incident, answered 202; repeats, dropped
// and unmatched alerts are answered 200.
var changedOutcomes = map[string]bool{"opened": true, "reopened": true, "resolved": true}

// RegisterAlerts adds the Azure Monitor intake and the incident API:
//
//	POST /api/v1/alerts/azure-monitor             (alias POST /api/v1/azdev/alert)
//	GET  /api/v1/incidents, GET /api/v1/incidents/{incident_id}
//	POST /api/v1/incidents/{incident_id}/freeze-override
//	GET  /incidents/{incident_id}/card            (redirect to the Mattermost card)
func (h *Handler) RegisterAlerts(d AlertDeps) {
	if d.MaxBody == 0 {
		d.MaxBody = MaxAlertBody
	}
	if d.Readers == nil {
		d.Readers = h.Pipelines
	}
	a := &alertAPI{h: h, d: d}
	r := h.router
	auth := d.Auth
	if auth == nil {
		auth = NewAlertAuth("", nil) // refuses: not configured
	}
	intake := h.limitBody(d.MaxBody, h.authenticateNoLimit(auth, a.errors(a.handleAlert)))
	r.Handle("/api/v1/alerts/azure-monitor", intake).Methods(http.MethodPost)
	r.Handle("/api/v1/azdev/alert", intake).Methods(http.MethodPost)
	r.Handle("/api/v1/incidents", h.Route(d.Readers, a.handleList)).Methods(http.MethodGet)
	r.Handle("/api/v1/incidents/{incident_id}", h.Route(d.Readers, a.handleGet)).Methods(http.MethodGet)
	if d.Commanders != nil {
		r.Handle("/api/v1/incidents/{incident_id}/freeze-override", h.Route(d.Commanders, a.handleOverride)).Methods(http.MethodPost)
	} else {
		r.Handle("/api/v1/incidents/{incident_id}/freeze-override", h.NotConfigured("the freeze override", "ICA_INCIDENT_COMMANDER_TOKENS or ICA_BREAKGLASS_TOKENS")).Methods(http.MethodPost)
	}
	if d.CardLink != nil {
		r.Handle("/incidents/{incident_id}/card", h.Route(nil, a.handleCard)).Methods(http.MethodGet)
	} else {
		r.Handle("/incidents/{incident_id}/card", h.NotConfigured("the incident card link", "ICA_MATTERMOST_URL")).Methods(http.MethodGet)
	}
}

type alertAPI struct {
	h *Handler
	d AlertDeps
}

// errors makes the intake's failures retryable where a retry can help:
// Azure Monitor retries 408, 429, 503 and 504 but never 500, so an internal
// error or a panic is answered 503.
func (a *alertAPI) errors(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = ica.Unavailable("the alert could not be recorded; retry", fmt.Errorf("panic: %v", p))
				}
			}()
			return fn(w, r)
		}()
		if err == nil {
			return
		}
		if ica.ErrorCode(err) == ica.EINTERNAL {
			err = ica.Unavailable("the alert could not be recorded; retry", err)
		}
		WriteError(w, r, a.h.log, err)
	})
}

// handleAlert handles "POST /api/v1/alerts/azure-monitor": parse, then one
// store transaction (incident, ledger entry with the raw body, outbox).
// Nothing slow happens here: PagerDuty and Mattermost are the outbox's job.
func (a *alertAPI) handleAlert(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return ica.Errorf(ica.ETOOLARGE, "alert payload is larger than %d bytes (Azure Monitor sends at most 256 KB)", mb.Limit)
		}
		return ica.Errorf(ica.EINVALID, "could not read the request body")
	}
	budget, budgetCreated, err := a.recordBudget(r, body)
	if err != nil {
		return err
	}
	if budget != nil && budget.Schema == ica.SchemaLegacyBudget {
		// Cost data, not an alert: nothing to open or page.
		outcome, status := "budget_recorded", http.StatusAccepted
		if !budgetCreated {
			outcome, status = AlertDuplicateOutcome, http.StatusOK
		}
		a.h.log.Info("azure budget", "request_id", RequestID(r.Context()), "budget", budget.Key, "outcome", outcome)
		writeJSON(w, status, map[string]any{"outcome": outcome, "budget": budgetView(budget, budgetCreated)})
		return nil
	}
	al, err := a.d.Parse(body)
	var unknown interface{ UnrecognisedSchema() string }
	switch {
	case errors.As(err, &unknown):
		// Valid JSON from an authenticated sender in a schema ICA does not
		// know: keep it and tell people, never refuse it (Azure would drop it).
		al = ica.UnrecognisedAlert(unknown.UnrecognisedSchema(), body, a.h.Clock.Now())
		a.h.log.Warn("unrecognised Azure Monitor payload", "request_id", RequestID(r.Context()), "schema", ica.ShowText(unknown.UnrecognisedSchema()), "bytes", len(body))
	case err != nil:
		a.h.log.Info("refused alert", "request_id", RequestID(r.Context()), "err", err, "bytes", len(body))
		return err
	}
	inc, outcome, err := a.d.Ledger.RecordAlert(r.Context(), al, body, actor(r))
	if err != nil {
		return err
	}
	out := map[string]any{"outcome": outcome, "alert_id": al.AlertID, "monitor_condition": al.MonitorCondition,
		"severity": al.Severity}
	if inc != nil {
		out["incident_id"], out["status"] = inc.ID, inc.Status
	}
	if al.Schema == ica.SchemaUnrecognised {
		out["unrecognised"] = true
	}
	status := http.StatusOK
	if changedOutcomes[outcome] {
		status = http.StatusAccepted
	}
	if budget != nil {
		out["budget"] = budgetView(budget, budgetCreated)
		if budgetCreated {
			status = http.StatusAccepted
		}
	}
	a.h.log.Info("alert", "request_id", RequestID(r.Context()), "alert_id", al.AlertID, "condition", al.MonitorCondition,
		"severity", al.Severity, "outcome", outcome)
	writeJSON(w, status, out)
	return nil
}

// AlertDuplicateOutcome is the outcome of a delivery that changed nothing.
const AlertDuplicateOutcome = "duplicate"

// recordBudget records the budget a delivery reports, if it is a budget
// notification; a malformed one is refused (400) before anything is written.
func (a *alertAPI) recordBudget(r *http.Request, body []byte) (*ica.AzureBudgetReport, bool, error) {
	if a.d.ParseBudget == nil || a.d.Budgets == nil {
		return nil, false, nil
	}
	rep, err := a.d.ParseBudget(body)
	if err != nil {
		a.h.log.Info("refused budget notification", "request_id", RequestID(r.Context()), "err", err, "bytes", len(body))
		return nil, false, err
	}
	if rep == nil {
		return nil, false, nil
	}
	created, err := a.d.Budgets.RecordAzureBudget(r.Context(), rep, body, actor(r))
	return rep, created, err
}

func budgetView(b *ica.AzureBudgetReport, created bool) map[string]any {
	outcome := "recorded"
	if !created {
		outcome = AlertDuplicateOutcome
	}
	return map[string]any{"name": b.Name, "scope": b.Scope, "spent": b.Spent, "amount": b.Amount, "currency": b.Currency,
		"threshold": b.Threshold, "threshold_type": b.ThresholdType, "outcome": outcome}
}

// handleList handles "GET /api/v1/incidents?status=&severity=&limit=".
func (a *alertAPI) handleList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := ica.IncidentFilter{Status: q.Get("status")}
	switch f.Status {
	case "", ica.IncidentOpen, ica.IncidentAcknowledged, ica.IncidentResolved:
	default:
		return ica.FieldErrorf(ica.EINVALID, "status", "status must be one of open, acknowledged, resolved")
	}
	if v := q.Get("severity"); v != "" {
		sev, err := ica.ParseSeverity("severity", v)
		if err != nil {
			return err
		}
		f.Severity = sev
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return ica.FieldErrorf(ica.EINVALID, "limit", "limit must be a whole number from 1 to 500")
		}
		f.Limit = n
	}
	list, err := a.d.Ledger.Incidents(r.Context(), f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []*ica.Incident{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": list})
	return nil
}

// incidentView is an incident with what the API adds to it.
type incidentView struct {
	*ica.Incident
	FreezeTargets  []string      `json:"freeze_targets,omitempty"`
	FreezeOverride *ica.Decision `json:"freeze_override,omitempty"`
}

func (a *alertAPI) view(ctx context.Context, inc *ica.Incident) (*incidentView, error) {
	v := &incidentView{Incident: inc}
	o, err := a.d.Ledger.IncidentOverride(ctx, inc.ID)
	if err != nil {
		return nil, err
	}
	v.FreezeOverride = o
	if a.d.FreezeTargets != nil && o == nil {
		v.FreezeTargets = a.d.FreezeTargets(inc)
	}
	return v, nil
}

// handleGet handles "GET /api/v1/incidents/{incident_id}".
func (a *alertAPI) handleGet(w http.ResponseWriter, r *http.Request) error {
	inc, err := a.d.Ledger.Incident(r.Context(), mux.Vars(r)["incident_id"])
	if err != nil {
		return err
	}
	v, err := a.view(r.Context(), inc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// handleOverride handles "POST /api/v1/incidents/{incident_id}/freeze-override":
// an incident commander (or a break-glass token) lifts the deployment freeze
// of one incident, with a reason. Audited in the ledger and logged loudly.
func (a *alertAPI) handleOverride(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["incident_id"]
	if err := ica.ValidID("incident_id", id); err != nil {
		return err
	}
	var b bypassBody
	if err := decodeJSON(r, &b); err != nil {
		return err
	}
	b.Reason = strings.TrimSpace(b.Reason)
	if b.Reason == "" {
		return ica.FieldErrorf(ica.EINVALID, "reason", "reason is required for a freeze override")
	}
	who := actor(r)
	inc, err := a.d.Ledger.OverrideFreeze(r.Context(), id, ica.Decision{Decider: ica.Decider{Username: who}, Comment: b.Reason, Via: "api"}, who)
	if err != nil {
		return err
	}
	a.h.log.Warn("DEPLOYMENT FREEZE OVERRIDDEN", "incident_id", id, "severity", inc.Severity, "by", who, "reason", b.Reason,
		"request_id", RequestID(r.Context()))
	v, err := a.view(r.Context(), inc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// handleCard handles "GET /incidents/{incident_id}/card": the stable link
// PagerDuty shows, redirecting to the Mattermost card once it is posted.
// Mattermost asks for a login itself, so the redirect reveals nothing.
func (a *alertAPI) handleCard(w http.ResponseWriter, r *http.Request) error {
	inc, err := a.d.Ledger.Incident(r.Context(), mux.Vars(r)["incident_id"])
	if err != nil {
		return err
	}
	link := a.d.CardLink(inc)
	if link == "" {
		return ica.Errorf(ica.ENOTFOUND, "the Mattermost card of incident %s is not posted yet; try again in a moment", inc.ID)
	}
	http.Redirect(w, r, link, http.StatusFound)
	return nil
}

// authenticateNoLimit authenticates like authenticate but applies no
// per-caller rate limit: Azure Monitor sends bursts (one delivery per alert
// and action group) and a 429 would only make it retry the same burst.
func (h *Handler) authenticateNoLimit(a Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			if ica.ErrorCode(err) == ica.EUNAUTHORIZED {
				w.Header().Set("WWW-Authenticate", `Bearer realm="ica"`)
			}
			WriteError(w, r, h.log, err)
			return
		}
		if info, ok := r.Context().Value(keyInfo).(*reqInfo); ok {
			info.actor = p.Name
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// AlertTokenHeader carries the alert token when it is not in the URL; the
// legacy spelling X-ICA-Token is accepted too. A header, unlike the URL,
// does not end up in proxy logs.
const (
	AlertTokenHeader       = "X-ICA-Alert-Token"
	legacyAlertTokenHeader = "X-ICA-Token"
)

// AlertActor is the ledger actor of alerts authenticated by the shared token.
const AlertActor = "azure-monitor"

// AlertAuth authenticates Azure Monitor: the shared secret ICA_ALERT_TOKEN
// (in the webhook URL as ?token=, in X-ICA-Alert-Token or X-ICA-Token, or as
// a bearer token), compared in constant time, and/or an Entra ID bearer
// token from an action group's Secure Webhook, checked by the alert
// surface's own policy (never the pipelines').
type AlertAuth struct {
	hash []byte
	jwt  TokenValidator
}

var _ Authenticator = (*AlertAuth)(nil)

// NewAlertAuth returns the alert authenticator; token "" disables the shared
// secret, jwt nil disables Entra ID. With neither, every request is refused.
func NewAlertAuth(token string, jwt TokenValidator) *AlertAuth {
	a := &AlertAuth{jwt: jwt}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		a.hash = sum[:]
	}
	return a
}

// Authenticate implements Authenticator.
func (a *AlertAuth) Authenticate(r *http.Request) (*Principal, error) {
	if a.hash == nil && a.jwt == nil {
		return nil, ica.NotConfigured("the Azure Monitor intake", "ICA_ALERT_TOKEN (or ICA_ENTRA_TENANT_ID and ICA_ENTRA_AUDIENCES)")
	}
	var bearer string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return nil, ica.Errorf(ica.EUNAUTHORIZED, "Authorization header must be \"Bearer <token>\"")
		}
		bearer = strings.TrimSpace(tok)
	}
	header := r.Header.Get(AlertTokenHeader)
	if header == "" {
		header = r.Header.Get(legacyAlertTokenHeader)
	}
	candidates := []string{r.URL.Query().Get("token"), header, bearer}
	if a.hash != nil {
		match := 0
		for _, c := range candidates {
			if c == "" {
				continue
			}
			sum := sha256.Sum256([]byte(c))
			match |= subtle.ConstantTimeCompare(sum[:], a.hash)
		}
		if match == 1 {
			return &Principal{Name: AlertActor, Kind: "token"}, nil
		}
	}
	if a.jwt != nil && bearer != "" && strings.Count(bearer, ".") == 2 {
		who, err := a.jwt.ValidateToken(r.Context(), bearer)
		if err != nil {
			return nil, err
		}
		return &Principal{Name: AlertActor + ":" + who, Kind: "jwt"}, nil
	}
	if candidates[0] == "" && candidates[1] == "" && bearer == "" {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "missing alert token (the X-ICA-Alert-Token header or ?token= in the webhook URL) or Entra ID bearer token (Secure Webhook)")
	}
	return nil, ica.Errorf(ica.EUNAUTHORIZED, "invalid alert token")
}

// AnyOf authenticates with the first authenticator that accepts the
// request (for endpoints open to several kinds of credential).
type AnyOf []Authenticator

// Authenticate implements Authenticator; it reports the first failure when
// none accepts.
func (as AnyOf) Authenticate(r *http.Request) (*Principal, error) {
	var first error
	for _, a := range as {
		if a == nil {
			continue
		}
		p, err := a.Authenticate(r)
		if err == nil {
			return p, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = ica.Errorf(ica.EUNAUTHORIZED, "no credential is configured for this endpoint")
	}
	return nil, first
}
