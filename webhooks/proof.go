package webhooks

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/ica-governance/ica"
)

// ProofLedger is what the proof endpoint reads from the ledger.
type ProofLedger interface {
	// Proof returns the inclusion proof bundle of ledger entry seq against
	// a signed (preferably witnessed) checkpoint.
	Proof(ctx context.Context, seq uint64) (*ica.ProofBundle, error)
}

// RegisterProofs adds "GET /api/v1/ledger/proof?seq=N" for auditors: the
// bundle ica verify-proof checks offline. auth admits pipeline and admin
// tokens; retryAfter is the checkpoint interval, the longest an entry waits
// for a checkpoint that covers it.
func (h *Handler) RegisterProofs(l ProofLedger, auth Authenticator, retryAfter time.Duration) {
	h.router.Handle("/api/v1/ledger/proof", h.Route(auth, func(w http.ResponseWriter, r *http.Request) error {
		return h.handleProof(w, r, l, retryAfter)
	})).Methods(http.MethodGet)
}

// handleProof handles "GET /api/v1/ledger/proof".
func (h *Handler) handleProof(w http.ResponseWriter, r *http.Request, l ProofLedger, retryAfter time.Duration) error {
	if err := RequireUnscoped(r.Context(), "a proof"); err != nil {
		return err
	}
	seq, err := strconv.ParseUint(r.URL.Query().Get("seq"), 10, 64)
	if err != nil || seq == 0 {
		return ica.FieldErrorf(ica.EINVALID, "seq", "seq must be a ledger entry number (1 or more)")
	}
	b, err := l.Proof(r.Context(), seq)
	if ica.ErrorCode(err) == ica.EUNAVAILABLE {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(retryAfter.Seconds()))))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}
