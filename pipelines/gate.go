package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Binding names the deployment a pipeline is about to make: the approval
// must cover exactly this run, commit and (when known) artifact digest.
type Binding struct {
	RunID          string
	Commit         string
	ArtifactDigest string
}

func (b Binding) query() string {
	q := url.Values{}
	if b.RunID != "" {
		q.Set("run_id", b.RunID)
	}
	if b.Commit != "" {
		q.Set("commit", b.Commit)
	}
	if b.ArtifactDigest != "" {
		q.Set("artifact_digest", b.ArtifactDigest)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// ApprovalGate is an approval as ICA's GET and use answer it: the approval,
// and what the deployment gate says now. A server that predates the
// deployment policy sends no can_deploy (CanDeploy is nil).
type ApprovalGate struct {
	ica.Approval
	CanDeploy    *bool      `json:"can_deploy,omitempty"`
	WaitingFor   []string   `json:"waiting_for,omitempty"`
	OpensAt      *time.Time `json:"opens_at,omitempty"`
	UsableUntil  *time.Time `json:"usable_until,omitempty"`
	QueuedBehind string     `json:"queued_behind,omitempty"`
	Usable       *bool      `json:"usable,omitempty"`
	Reasons      []string   `json:"reasons,omitempty"`
	Covers       *bool      `json:"covers,omitempty"`
	PolicyHash   string     `json:"policy_hash,omitempty"`
}

// Open reports whether the gate is open now.
func (g *ApprovalGate) Open() bool { return g.CanDeploy != nil && *g.CanDeploy }

// Unusable reports whether the approval can never open the gate again.
func (g *ApprovalGate) Unusable() bool { return g.Usable != nil && !*g.Usable }

// Waiting says what the gate waits for, in one line.
func (g *ApprovalGate) Waiting() string {
	s := "waiting for " + strings.Join(g.WaitingFor, ", ")
	if len(g.Reasons) > 0 {
		s += ": " + strings.Join(g.Reasons, "; ")
	}
	if g.OpensAt != nil && g.OpensAt.After(time.Time{}) {
		s += " (the time rules allow it from " + g.OpensAt.UTC().Format(time.RFC3339) + ")"
	}
	return s
}

// GateOf returns the gate a refusal of ICA carries (409 from use or GET),
// or nil.
func GateOf(err error) *ApprovalGate {
	var ae *APIError
	if !errors.As(err, &ae) || len(ae.Body) == 0 {
		return nil
	}
	var g struct {
		ApprovalGate
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(ae.Body, &g) != nil || (g.CanDeploy == nil && g.Covers == nil) {
		return nil
	}
	return &g.ApprovalGate
}

// ApprovalGate reads an approval and its gate, checking that it covers b
// (a mismatch is an *APIError with status 409 and covers: false). It
// changes nothing.
func (c *Client) ApprovalGate(ctx context.Context, id string, b Binding) (*ApprovalGate, error) {
	if err := ica.ValidID("approval_id", id); err != nil {
		return nil, err
	}
	var g ApprovalGate
	if err := c.do(ctx, http.MethodGet, "/api/v1/approvals/"+url.PathEscape(id)+b.query(), nil, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// UseApproval is the pipeline's last call before it deploys: it opens the
// gate (200) or says what it waits for (an *APIError with status 409 whose
// GateOf says can_deploy: false and waiting_for). A repeat is harmless.
func (c *Client) UseApproval(ctx context.Context, id string, b Binding) (*ApprovalGate, error) {
	if err := ica.ValidID("approval_id", id); err != nil {
		return nil, err
	}
	in := ica.UseRequest{RunID: b.RunID, Commit: b.Commit, ArtifactDigest: b.ArtifactDigest}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	var g ApprovalGate
	if err := c.do(ctx, http.MethodPost, "/api/v1/approvals/"+url.PathEscape(id)+"/use", &in, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// VoidApproval voids an approval of the caller's own run.
func (c *Client) VoidApproval(ctx context.Context, id, reason string) (*ica.Approval, error) {
	if err := ica.ValidID("approval_id", id); err != nil {
		return nil, err
	}
	if strings.TrimSpace(reason) == "" {
		return nil, ica.FieldErrorf(ica.EINVALID, "reason", "a reason is required")
	}
	var a ica.Approval
	if err := c.do(ctx, http.MethodPost, "/api/v1/approvals/"+url.PathEscape(id)+"/void", map[string]string{"reason": reason}, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// UnusableError is the error for an approved approval that can no longer
// open the gate (its use window passed, its run finished, the policy
// changed): a new request makes a new approval.
type UnusableError struct{ Gate *ApprovalGate }

// Error implements error.
func (e *UnusableError) Error() string {
	s := "Approval " + e.Gate.ID + " can no longer be used"
	if len(e.Gate.Reasons) > 0 {
		s += ": " + strings.Join(e.Gate.Reasons, "; ")
	}
	return s + "; request a new approval"
}
