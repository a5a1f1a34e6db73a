package webhooks

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/policy"
)

// GateLedger is what the deployment-policy endpoints need from the store.
type GateLedger interface {
	ApprovalGate(ctx context.Context, id string) (*ica.Approval, *policy.Verdict, error)
	UseApproval(ctx context.Context, id string, in *ica.UseRequest, actor string) (*ica.Approval, *policy.Verdict, error)
	VoidApproval(ctx context.Context, id, reason, actor string) (*ica.Approval, error)
	Explain(ctx context.Context, runID, target string) (*policy.Explanation, error)
}

// approvalView is an approval with what its gate says now: can_deploy,
// waiting_for, opens_at, usable_until, queued_behind, usable, reasons,
// policy_hash; covers when the caller named a run, commit or digest.
type approvalView struct {
	*ica.Approval
	*policy.Verdict
	Covers *bool `json:"covers,omitempty"`
}

// detailed writes refusals that carry more than the error document (the
// gate's verdict, covers: false) in full; other errors go to WriteError.
func (h *Handler) detailed(fn func(w http.ResponseWriter, r *http.Request) error) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := fn(w, r)
		var ref *ica.Refusal
		if err == nil || !errors.As(err, &ref) {
			return err
		}
		body := map[string]any{}
		for k, v := range ref.Details {
			body[k] = v
		}
		body["error"] = errorDetail{Code: ref.Err.Code, Message: ref.Err.Message, Field: ref.Err.Field, RequestID: RequestID(r.Context())}
		writeJSON(w, StatusOf(ref.Err.Code), body)
		return nil
	}
}

// approvalRun reads an approval and its run for an authorisation check.
func (h *Handler) approvalRun(ctx context.Context, id string) (*ica.Approval, *ica.Run, error) {
	if err := ica.ValidID("approval_id", id); err != nil {
		return nil, nil, err
	}
	a, err := h.Ledger.Approval(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	run, err := h.Ledger.Run(ctx, a.RunID)
	if err != nil {
		return nil, nil, err
	}
	return a, run, nil
}

// handleGetApproval handles "GET /api/v1/approvals/{approval_id}". It never
// changes anything. The answer says what the gate says now (can_deploy,
// waiting_for, opens_at, …). With ?run_id=, ?commit= and/or
// ?artifact_digest= it also checks that the approval covers what is about
// to be deployed: a mismatch is 409 with covers: false.
func (h *Handler) handleGetApproval(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["approval_id"]
	if err := ica.ValidID("approval_id", id); err != nil {
		return err
	}
	q := r.URL.Query()
	runID, commit, digest := q.Get("run_id"), q.Get("commit"), q.Get("artifact_digest")
	if q.Has("run_id") {
		if err := ica.ValidID("run_id", runID); err != nil {
			return err
		}
	}
	if q.Has("commit") {
		if err := ica.ValidCommitParam("commit", commit); err != nil {
			return err
		}
	}
	if q.Has("artifact_digest") {
		if err := ica.ValidDigestParam("artifact_digest", digest); err != nil {
			return err
		}
	}
	a, g, err := h.Gates.ApprovalGate(r.Context(), id)
	if err != nil {
		return err
	}
	if err := mayRead(r.Context(), a.PipelineName); err != nil {
		return err
	}
	v := approvalView{Approval: a, Verdict: g}
	if runID != "" || commit != "" || digest != "" {
		if why := a.Coverage(runID, commit, digest); why != "" {
			return ica.NotCovered(a, why)
		}
		covers := true
		v.Covers = &covers
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// handleUseApproval handles "POST /api/v1/approvals/{approval_id}/use": the
// pipeline's last call before it deploys, and the only thing that opens
// the gate. 200 with can_deploy: true, or 409 with can_deploy: false and
// waiting_for (or covers: false), changing nothing.
func (h *Handler) handleUseApproval(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["approval_id"]
	var in ica.UseRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return err
	}
	_, run, err := h.approvalRun(r.Context(), id)
	if err != nil {
		return err
	}
	if err := mayGate(r.Context(), run, "use"); err != nil {
		return err
	}
	a, g, err := h.Gates.UseApproval(r.Context(), id, &in, actor(r))
	if err != nil {
		return err
	}
	covers := true
	writeJSON(w, http.StatusOK, approvalView{Approval: a, Verdict: g, Covers: &covers})
	return nil
}

type voidBody struct {
	Reason string `json:"reason"`
}

// handleVoidApproval handles "POST /api/v1/approvals/{approval_id}/void":
// the run's own credential says the approval must never open the gate.
func (h *Handler) handleVoidApproval(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["approval_id"]
	var b voidBody
	if err := decodeJSON(r, &b); err != nil {
		return err
	}
	if strings.TrimSpace(b.Reason) == "" {
		return ica.FieldErrorf(ica.EINVALID, "reason", "reason is required to void an approval")
	}
	_, run, err := h.approvalRun(r.Context(), id)
	if err != nil {
		return err
	}
	if err := mayWriteRun(r.Context(), run, "void approvals of"); err != nil {
		return err
	}
	a, err := h.Gates.VoidApproval(r.Context(), id, b.Reason, actor(r))
	if err != nil {
		return err
	}
	h.log.Warn("approval voided", "approval_id", a.ID, "run_id", a.RunID, "by", actor(r), "request_id", RequestID(r.Context()))
	writeJSON(w, http.StatusOK, a)
	return nil
}

// handleRunPolicy handles "GET /api/v1/runs/{run_id}/policy?target=": every
// rule's verdict for the run's deployment to the target (ica policy explain).
func (h *Handler) handleRunPolicy(w http.ResponseWriter, r *http.Request) error {
	runID := mux.Vars(r)["run_id"]
	if err := ica.ValidID("run_id", runID); err != nil {
		return err
	}
	target := r.URL.Query().Get("target")
	if target == "" {
		target = ica.TargetProduction
	}
	run, err := h.Ledger.Run(r.Context(), runID)
	if err != nil {
		return err
	}
	if err := mayRead(r.Context(), run.PipelineName); err != nil {
		return err
	}
	ex, err := h.Gates.Explain(r.Context(), runID, target)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ex)
	return nil
}
