package webhooks

import (
	"context"
	"net/http"

	"github.com/ica-governance/ica"
)

// CheckLedger is what the Azure Pipelines check endpoint needs.
type CheckLedger interface {
	RequestApprovalWithCheck(ctx context.Context, in *ica.ApprovalRequest, cb *ica.CheckCallback, actor string) (*ica.Approval, bool, error)
}

// handleCheck handles "POST /api/v1/ado/checks": an Azure Pipelines "Invoke
// REST API" check in callback mode. The body is the approval request (the
// check's body, e.g. {"run_id": "$(Build.BuildId)", "deployment_target":
// "production", "estimated_cost": 120}); the headers carry the plan and the
// job token. ICA answers at once (Azure allows 3 s) and posts TaskCompleted
// to the plan when the approval is decided.
func (h *Handler) handleCheck(w http.ResponseWriter, r *http.Request) error {
	cb := ica.CheckCallback{
		PlanURL: r.Header.Get("PlanUrl"), ProjectID: r.Header.Get("ProjectId"), HubName: r.Header.Get("HubName"),
		PlanID: r.Header.Get("PlanId"), JobID: r.Header.Get("JobId"), TaskInstanceID: r.Header.Get("TaskInstanceId"),
		TimelineID: r.Header.Get("TimelineId"), AuthToken: r.Header.Get("AuthToken"),
	}
	if err := cb.Validate(); err != nil {
		return err
	}
	if h.CheckHosts != nil {
		if err := h.CheckHosts(cb.PlanURL); err != nil {
			return err
		}
	}
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
	a, created, err := h.Checks.RequestApprovalWithCheck(r.Context(), &in, &cb, actor(r))
	if err != nil {
		return err
	}
	writeJSON(w, createdStatus(created), a)
	return nil
}
