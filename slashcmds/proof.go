package slashcmds

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// ApprovalProofs is what "/ica status A-17" needs; the Queries given to the
// handler may implement it (without it, A-17 is looked up as a run id).
type ApprovalProofs interface {
	Approval(ctx context.Context, id string) (*ica.Approval, error)
	// Coverage says which signed checkpoint covers ledger entry seq and
	// whether a witness took it; nil and no error: none covers it yet.
	Coverage(ctx context.Context, seq uint64) (*Coverage, error)
}

// Coverage is the checkpoint that covers a ledger entry.
type Coverage struct {
	Size        uint64
	SignedAt    time.Time
	Witnessed   bool
	Where       string
	WitnessedAt time.Time
}

var approvalIDPattern = regexp.MustCompile(`^A-[0-9]+$`)

// approvalStatus answers "/ica status A-17": the approval, its decision
// entry, and the witnessed checkpoint that covers it. ok is false when name
// is not an approval this handler can show.
func (h *Handler) approvalStatus(ctx context.Context, c *call, name string) (string, bool, error) {
	p, isProofs := h.d.Queries.(ApprovalProofs)
	if !isProofs || !approvalIDPattern.MatchString(name) {
		return "", false, nil
	}
	a, err := p.Approval(ctx, name)
	if ica.ErrorCode(err) == ica.ENOTFOUND {
		return "", false, nil
	}
	if err != nil {
		return "", true, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#### Approval %s: %s\n\n", mdCode(a.ID), approvalState(a, c.At))
	fmt.Fprintf(&b, "Run %s of pipeline %s to %s, commit %s.\n", mdCode(clip(a.RunID, 80)), mdCode(clip(a.PipelineName, 80)), a.Target, mdCode(clip(a.Commit, 12)))
	if a.DecisionSeq == 0 {
		b.WriteString("Ledger: decided before approvals named their decision entry; `ica proof --seq N` proves any entry.\n")
		return b.String(), true, nil
	}
	fmt.Fprintf(&b, "Ledger: its latest decision is entry %d (hash %s).\n", a.DecisionSeq, mdCode(a.DecisionHash))
	cov, err := p.Coverage(ctx, a.DecisionSeq)
	switch {
	case err != nil:
		return "", true, err
	case cov == nil:
		b.WriteString("Witness: no signed checkpoint covers it yet; the next one is signed within the checkpoint interval.\n")
	case cov.Witnessed:
		fmt.Fprintf(&b, "Witness: covered by the checkpoint of %d entries, published at %s on %s.\n", cov.Size, cov.Where, cov.WitnessedAt.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(&b, "Witness: covered by the checkpoint of %d entries signed %s, **not witnessed yet** (is the witness reachable?).\n", cov.Size, cov.SignedAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "Proof for auditors: `ica proof %s`, or `GET /api/v1/ledger/proof?seq=%d`.\n", a.ID, a.DecisionSeq)
	return b.String(), true, nil
}
