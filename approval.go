package ica

import (
	"math"
	"strings"
	"time"
)

// Approval statuses (DESIGN.md "Approval state machine").
const (
	ApprovalPending   = "pending"
	ApprovalTechnical = "technical_approved"
	ApprovalApproved  = "approved"
	ApprovalRejected  = "rejected"
	ApprovalExpired   = "expired"
	ApprovalBypassed  = "bypassed"
)

// Deployment targets.
const (
	TargetStaging    = "staging"
	TargetProduction = "production"
)

// DefaultApprovalTimeout is how long an approval waits for its decisions.
const DefaultApprovalTimeout = 4 * time.Hour

// MaxEstimatedCost bounds estimated_cost so a typo cannot poison budget sums.
const MaxEstimatedCost = 1e9

// Decider is the person (or credential) behind a decision.
type Decider struct {
	UserID   string `json:"user_id,omitempty"`
	Username string `json:"username"`
}

// same reports whether two deciders are the same person: the Mattermost user
// id when both have one, otherwise the username, case-insensitively.
func (d Decider) same(o Decider) bool {
	if d.UserID != "" && o.UserID != "" {
		return d.UserID == o.UserID
	}
	return d.Username != "" && strings.EqualFold(d.Username, o.Username)
}

// Decision records who decided a step, when, and with what comment.
type Decision struct {
	Decider
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
	// Via says where the decision was made: mattermost, api, breakglass, scheduler.
	Via string `json:"via"`
}

// CardRef locates the Mattermost card that shows an approval.
type CardRef struct {
	ChannelID string `json:"channel_id,omitempty"`
	PostID    string `json:"post_id,omitempty"`
}

// Approval is a request to deploy one run to one target, decided by a
// technical and then a business approver.
type Approval struct {
	ID             string    `json:"approval_id"`
	RunID          string    `json:"run_id"`
	PipelineName   string    `json:"pipeline_name"`
	Branch         string    `json:"branch"`
	Commit         string    `json:"commit"`
	ArtifactDigest string    `json:"artifact_digest,omitempty"`
	RunURL         string    `json:"run_url,omitempty"`
	Target         string    `json:"deployment_target"`
	EstimatedCost  float64   `json:"estimated_cost"`
	Status         string    `json:"status"`
	RequestedBy    string    `json:"requested_by"` // the run's triggered_by
	Actor          string    `json:"actor"`        // credential that asked
	CreatedAt      time.Time `json:"created_at"`
	ExpiresAt      time.Time `json:"expires_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	// FinanceRequired means the business step needs a finance approver.
	FinanceRequired bool       `json:"finance_required,omitempty"`
	Technical       *Decision  `json:"technical,omitempty"`
	Business        *Decision  `json:"business,omitempty"`
	Rejection       *Decision  `json:"rejection,omitempty"`
	Bypass          *Decision  `json:"bypass,omitempty"`
	ExpiredAt       *time.Time `json:"expired_at,omitempty"`
	Card            CardRef    `json:"card,omitempty"`
	ReminderSent    bool       `json:"reminder_sent,omitempty"`
	// Version counts applied transitions; it lets callers detect stale views.
	Version int `json:"version"`
	// DecisionSeq and DecisionHash are the ledger entry of the latest
	// decision (the request, or the last transition): what an auditor asks
	// an inclusion proof of (GET /api/v1/ledger/proof?seq=).
	DecisionSeq  uint64 `json:"decision_seq,omitempty"`
	DecisionHash string `json:"decision_hash,omitempty"`
	// LastSeq is the ledger entry that last changed this record (a decision,
	// the card, the reminder).
	LastSeq uint64 `json:"last_seq,omitempty"`
}

// Final reports whether no further transition is possible.
func (a *Approval) Final() bool {
	switch a.Status {
	case ApprovalApproved, ApprovalRejected, ApprovalExpired, ApprovalBypassed:
		return true
	}
	return false
}

// Step names the decision the approval waits for: "technical", "business" or "".
func (a *Approval) Step() string {
	switch a.Status {
	case ApprovalPending:
		return StepTechnical
	case ApprovalTechnical:
		return StepBusiness
	}
	return ""
}

// Approval steps.
const (
	StepTechnical = "technical"
	StepBusiness  = "business"
)

// ApprovalRequest is the body of POST /api/v1/approvals.
type ApprovalRequest struct {
	RunID            string   `json:"run_id"`
	DeploymentTarget string   `json:"deployment_target"`
	EstimatedCost    *float64 `json:"estimated_cost"`
}

// Validate checks an approval request and names the first bad field.
func (r *ApprovalRequest) Validate() error {
	if err := ValidID("run_id", r.RunID); err != nil {
		return err
	}
	switch r.DeploymentTarget {
	case TargetStaging, TargetProduction:
	case "":
		return FieldErrorf(EINVALID, "deployment_target", "deployment_target is required (staging or production)")
	default:
		return FieldErrorf(EINVALID, "deployment_target", "deployment_target %q is not one of staging, production", r.DeploymentTarget)
	}
	if r.EstimatedCost == nil {
		return FieldErrorf(EINVALID, "estimated_cost", "estimated_cost is required (US dollars)")
	}
	c := *r.EstimatedCost
	if math.IsNaN(c) || math.IsInf(c, 0) || c < 0 {
		return FieldErrorf(EINVALID, "estimated_cost", "estimated_cost must be a non-negative number")
	}
	if c > MaxEstimatedCost {
		return FieldErrorf(EINVALID, "estimated_cost", "estimated_cost is larger than %.0f", MaxEstimatedCost)
	}
	return nil
}

// Transition actions.
const (
	ActApproveTechnical = "approve_technical"
	ActApproveBusiness  = "approve_business"
	ActReject           = "reject"
	ActExpire           = "expire"
	ActBypass           = "bypass"
	ActVoid             = "void"
)

// Transition is one requested change of an approval.
type Transition struct {
	Action  string
	By      Decider
	Comment string
	Via     string
	At      time.Time
}

// ResultStatus returns the status an action leads to.
func ResultStatus(action string) string {
	switch action {
	case ActApproveTechnical:
		return ApprovalTechnical
	case ActApproveBusiness:
		return ApprovalApproved
	case ActReject, ActVoid:
		return ApprovalRejected
	case ActExpire:
		return ApprovalExpired
	case ActBypass:
		return ApprovalBypassed
	}
	return ""
}

// Apply is the approval state machine. It returns the approval after t, or
// an error that says why t is not allowed; a is never modified. It is pure:
// who may approve which step (approver lists, channel membership) is policy
// decided by the caller before Apply; Apply enforces the rules that hold
// whatever the policy: order of steps, separation of duties, expiry.
func (a *Approval) Apply(t Transition) (*Approval, error) {
	if a.Final() {
		return nil, Errorf(ECONFLICT, "approval %s is already %s%s", a.ID, a.Status, a.decidedBy())
	}
	n := *a
	d := &Decision{Decider: t.By, At: t.At, Comment: t.Comment, Via: t.Via}
	expired := !t.At.Before(a.ExpiresAt)
	switch t.Action {
	case ActApproveTechnical, ActApproveBusiness:
		if expired {
			return nil, Errorf(ECONFLICT, "approval %s expired at %s", a.ID, a.ExpiresAt.Format(time.RFC3339))
		}
		if t.By.Username == "" && t.By.UserID == "" {
			return nil, Errorf(EFORBIDDEN, "an approval needs a named approver")
		}
		if a.IsRequester(t.By.Username) {
			return nil, Errorf(EFORBIDDEN, "%s requested this deployment and cannot approve it", t.By.Username)
		}
		if t.Action == ActApproveTechnical {
			if a.Status != ApprovalPending {
				return nil, Errorf(ECONFLICT, "approval %s already has its technical approval%s", a.ID, a.decidedBy())
			}
			n.Technical = d
		} else {
			if a.Status == ApprovalPending {
				return nil, Errorf(ECONFLICT, "approval %s needs its technical approval first", a.ID)
			}
			if a.Technical != nil && a.Technical.same(t.By) {
				return nil, Errorf(EFORBIDDEN, "%s gave the technical approval; the business approval must come from someone else", t.By.Username)
			}
			n.Business = d
		}
	case ActReject, ActVoid:
		if strings.TrimSpace(t.Comment) == "" {
			return nil, FieldErrorf(EINVALID, "reason", "a rejection needs a reason")
		}
		n.Rejection = d
	case ActExpire:
		if !expired {
			return nil, Errorf(ECONFLICT, "approval %s does not expire before %s", a.ID, a.ExpiresAt.Format(time.RFC3339))
		}
		at := t.At
		n.ExpiredAt = &at
	case ActBypass:
		if strings.TrimSpace(t.Comment) == "" {
			return nil, FieldErrorf(EINVALID, "reason", "a bypass needs a reason")
		}
		n.Bypass = d
	default:
		return nil, Errorf(EINVALID, "unknown approval action %q", t.Action)
	}
	n.Status = ResultStatus(t.Action)
	n.UpdatedAt = t.At
	n.Version++
	return &n, nil
}

// IsRequester reports whether username is the person who triggered the run.
// triggered_by may be a username or an e-mail address (Azure Pipelines'
// Build.RequestedForEmail); the address's local part counts as the username.
func (a *Approval) IsRequester(username string) bool {
	if a.RequestedBy == "" || username == "" {
		return false
	}
	if strings.EqualFold(username, a.RequestedBy) {
		return true
	}
	local, _, ok := strings.Cut(a.RequestedBy, "@")
	return ok && strings.EqualFold(username, local)
}

func (a *Approval) decidedBy() string {
	var d *Decision
	switch a.Status {
	case ApprovalTechnical:
		d = a.Technical
	case ApprovalApproved:
		d = a.Business
	case ApprovalRejected:
		d = a.Rejection
	case ApprovalBypassed:
		d = a.Bypass
	}
	if d == nil || d.Username == "" {
		return ""
	}
	return " by " + d.Username
}

// ApprovalFilter selects approvals for listings.
type ApprovalFilter struct {
	RunID  string
	Status string
	Limit  int
}
