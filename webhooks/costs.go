package webhooks

import (
	"context"
	"net/http"

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
	e, created, err := h.Costs.RecordCost(r.Context(), &in, actor(r))
	if err != nil {
		return err
	}
	writeJSON(w, createdStatus(created), e)
	return nil
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
