package webhooks

import (
	"context"
	"net/http"
	"strings"

	"github.com/ica-governance/ica"
)

// CostLedger is what the cost endpoints need.
type CostLedger interface {
	RecordCost(ctx context.Context, in *ica.CostInput, actor string) (*ica.CostEntry, bool, error)
	Budget(ctx context.Context) (*ica.Budget, error)
}

// handleRecordCost handles "POST /api/v1/costs".
func (h *Handler) handleRecordCost(w http.ResponseWriter, r *http.Request) error {
	var in ica.CostInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := h.mayRecordCost(r.Context(), &in); err != nil {
		return err
	}
	e, created, err := h.Costs.RecordCost(r.Context(), &in, actor(r))
	if err != nil {
		return err
	}
	writeJSON(w, createdStatus(created), e)
	return nil
}

// mayRecordCost: a REST-check token records no costs; a token limited to
// pipelines records only the costs of their runs (a cost without run_id is
// the organisation's).
func (h *Handler) mayRecordCost(ctx context.Context, in *ica.CostInput) error {
	p := caller(ctx)
	if p == nil || (len(p.Scope.Pipelines) == 0 && p.Scope.Role != RoleCheck) {
		return nil
	}
	if p.Scope.Role == RoleCheck {
		return ica.Errorf(ica.EFORBIDDEN, "%s is a REST-check token: it cannot record costs", p.Name)
	}
	if in.RunID == "" {
		return ica.FieldErrorf(ica.EFORBIDDEN, "run_id", "%s is limited to pipelines %s: a cost without run_id is the organisation's and needs a token without limits", p.Name, strings.Join(p.Scope.Pipelines, ", "))
	}
	if err := ica.ValidID("run_id", in.RunID); err != nil {
		return err
	}
	run, err := h.Ledger.Run(ctx, in.RunID)
	if err != nil {
		return err
	}
	return mayRead(ctx, run.PipelineName)
}

// handleBudget handles "GET /api/v1/budget".
func (h *Handler) handleBudget(w http.ResponseWriter, r *http.Request) error {
	b, err := h.Costs.Budget(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}
