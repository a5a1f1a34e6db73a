package ica

import (
	"math"
	"strings"
	"time"
)

// Approval statuses (docs/design.md "Approval state machine").
const (
	ApprovalPending   = "pending"
	ApprovalTechnical = "technical_approved"
	ApprovalApproved  = "approved"
	ApprovalRejected  = "rejected"
	ApprovalExpired   = "expired"
	ApprovalBypassed  = "bypassed"
	// ApprovalSuperseded: a newer run of the same pipeline took its place
	// in the queue of an exclusive "latest" target.
	ApprovalSuperseded = "superseded"
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
	// UserID is the Mattermost user id of a person who decided on a card.
	UserID   string `json:"user_id,omitempty"`
	Username string `json:"username"`
	// Entra is "<tenant id>/<object id>" of a person who decided through
	// the API with their own Entra ID token.
	Entra string `json:"entra,omitempty"`
	// Email is the decider's address (Mattermost's, or the Entra UPN),
	// normalised. It only excludes: one person is one decider across
	// Mattermost and the API; it never grants.
	Email string `json:"email,omitempty"`
}

// same reports whether two deciders are the same person: the same
// Mattermost user id, the same Entra identity, or the same e-mail address;
// with neither stable id in common, the username, case-insensitively. It
// errs towards "the same": it is used to exclude (separation of duties, a
// person counted once), never to grant.
func (d Decider) same(o Decider) bool {
	switch {
	case d.UserID != "" && d.UserID == o.UserID:
		return true
	case d.Entra != "" && d.Entra == o.Entra:
		return true
	case d.Email != "" && NormalizeEmail(d.Email) == NormalizeEmail(o.Email):
		return true
	case d.UserID != "" && o.UserID != "", d.Entra != "" && o.Entra != "":
		return false // two different stable ids of one kind
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
	// Finance marks a business approval by a finance approver.
	Finance bool `json:"finance,omitempty"`
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
	Card            CardRef    `json:"card,omitzero"` // omitted until a card is posted
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

	// --- deployment policy (policy/) ---
	// TechnicalRequired and BusinessRequired are how many distinct people
	// each step needs under the policy in force (0: one); the approvals so
	// far are listed in order, the last one completing the step.
	TechnicalRequired  int        `json:"technical_required,omitempty"`
	BusinessRequired   int        `json:"business_required,omitempty"`
	TechnicalApprovals []Decision `json:"technical_approvals,omitempty"`
	BusinessApprovals  []Decision `json:"business_approvals,omitempty"`
	// NotBefore defers the approval: the gate opens no earlier ("approve,
	// effective at 22:00").
	NotBefore *time.Time `json:"not_before,omitempty"`
	// PolicyHashes lists every policy the approval was evaluated under
	// (request, decisions, use), oldest first.
	PolicyHashes []string `json:"policy_hashes,omitempty"`
	// Promotion is the deployment to the required target the request relied on.
	Promotion *Deployment `json:"promotion,omitempty"`
	// Use records the one deployment the approval authorised.
	Use *ApprovalUse `json:"use,omitempty"`
	// SupersededBy names the newer run that took this one's place.
	SupersededBy string `json:"superseded_by,omitempty"`
	// --- end deployment policy ---
}

// ApprovalUse is the pipeline's "about to deploy": the run, commit and
// digest the approval was used for, when, and the lock it took.
type ApprovalUse struct {
	RunID          string    `json:"run_id"`
	Commit         string    `json:"commit"`
	ArtifactDigest string    `json:"artifact_digest,omitempty"`
	At             time.Time `json:"at"`
	Actor          string    `json:"actor"`
	Lock           string    `json:"lock,omitempty"`
	PolicyHash     string    `json:"policy_hash,omitempty"`
}

// Deployment is a run's report that it deployed a commit to a target (an
// event of type "deployment"), with the approval the run used for it.
type Deployment struct {
	Target         string    `json:"target"`
	RunID          string    `json:"run_id"`
	ApprovalID     string    `json:"approval_id,omitempty"`
	Commit         string    `json:"commit"`
	ArtifactDigest string    `json:"artifact_digest,omitempty"`
	Result         string    `json:"result"`
	DeployedAt     time.Time `json:"deployed_at"`
	// LedgerSeq is the ledger entry of the report.
	LedgerSeq uint64 `json:"ledger_seq"`
}

// LastDecision is when the approval was last decided in its favour (the
// decision that approved it, or the bypass); zero otherwise.
func (a *Approval) LastDecision() time.Time {
	switch a.Status {
	case ApprovalApproved:
		if a.Business != nil {
			return a.Business.At
		}
	case ApprovalBypassed:
		if a.Bypass != nil {
			return a.Bypass.At
		}
	}
	return time.Time{}
}

// AddPolicyHash records that the approval was evaluated under a policy.
func (a *Approval) AddPolicyHash(h string) {
	if h != "" && (len(a.PolicyHashes) == 0 || a.PolicyHashes[len(a.PolicyHashes)-1] != h) {
		a.PolicyHashes = append(a.PolicyHashes, h)
	}
}

// need returns how many distinct people a step needs.
func need(n int) int { return max(n, 1) }

func approvedBy(ds []Decision, who Decider) bool {
	for _, d := range ds {
		if d.same(who) {
			return true
		}
	}
	return false
}

// ApprovalFilter selects approvals for GET /api/v1/approvals. Results are
// newest first.
type ApprovalFilter struct {
	Status   string // one of the approval statuses, or "" for all
	Target   string // staging, production, or "" for both
	Pipeline string // only this pipeline's approvals, or "" for all
	Limit    int
	Cursor   string // opaque, from the previous page
}

// ApprovalPage is one page of approvals; NextCursor is empty on the last
// page. A page may hold fewer than Limit approvals while NextCursor is set:
// one request examines a bounded number of approvals.
type ApprovalPage struct {
	Approvals  []*Approval `json:"approvals"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

// Final reports whether no further transition is possible.
func (a *Approval) Final() bool {
	switch a.Status {
	case ApprovalApproved, ApprovalRejected, ApprovalExpired, ApprovalBypassed, ApprovalSuperseded:
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
	ActSupersede        = "supersede"
)

// Transition is one requested change of an approval.
type Transition struct {
	Action  string
	By      Decider
	Comment string
	Via     string
	At      time.Time
	// NotBefore defers a business approval (the gate opens no earlier).
	NotBefore time.Time
	// NotBeforeLocal is "HH:MM" in the target's zone, the next such time
	// (the card's "approve, effective at"); the store resolves it into
	// NotBefore under the policy in force.
	NotBeforeLocal string
	// Finance: the decider is a finance approver (the store sets it from
	// the policy).
	Finance bool
	// ByEmail is the decider's e-mail address as Mattermost or Entra ID
	// knows it; it is compared with the requester and not recorded.
	ByEmail string
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
	case ActSupersede:
		return ApprovalSuperseded
	}
	return ""
}

// Apply is the approval state machine. It returns the approval after t, or
// an error that says why t is not allowed; a is never modified. It is pure:
// who may approve which step (approver lists, channel membership) is policy
// decided by the caller before Apply; Apply enforces the rules that hold
// whatever the policy: order of steps, separation of duties, expiry.
func (a *Approval) Apply(t Transition) (*Approval, error) {
	// An approved approval that was not used yet can still be voided by its
	// run, or superseded by a newer run while it waits for the lock.
	voidable := (t.Action == ActVoid && (a.Status == ApprovalApproved || a.Status == ApprovalBypassed)) ||
		(t.Action == ActSupersede && a.Status == ApprovalApproved)
	if a.Final() && !voidable {
		return nil, Errorf(ECONFLICT, "approval %s is already %s%s", a.ID, a.Status, a.decidedBy())
	}
	if a.Use != nil && (t.Action == ActVoid || t.Action == ActSupersede) {
		return nil, Errorf(ECONFLICT, "approval %s was already used by run %s at %s", a.ID, a.Use.RunID, a.Use.At.UTC().Format(time.RFC3339))
	}
	n := *a
	d := &Decision{Decider: t.By, At: t.At, Comment: t.Comment, Via: t.Via, Finance: t.Finance}
	status := ResultStatus(t.Action)
	expired := !t.At.Before(a.ExpiresAt)
	switch t.Action {
	case ActApproveTechnical, ActApproveBusiness:
		if expired {
			return nil, Errorf(ECONFLICT, "approval %s expired at %s", a.ID, a.ExpiresAt.Format(time.RFC3339))
		}
		if t.By.Username == "" && t.By.UserID == "" {
			return nil, Errorf(EFORBIDDEN, "an approval needs a named approver")
		}
		if a.IsRequester(t.By.Username, t.ByEmail) {
			return nil, Errorf(EFORBIDDEN, "%s requested this deployment and cannot approve it", t.By.Username)
		}
		if t.Action == ActApproveTechnical {
			if a.Status != ApprovalPending {
				return nil, Errorf(ECONFLICT, "approval %s already has its technical approval%s", a.ID, a.decidedBy())
			}
			if approvedBy(a.TechnicalApprovals, t.By) {
				return nil, Errorf(ECONFLICT, "%s already approved the technical step of %s; %d of %d technical approvals so far",
					t.By.Username, a.ID, len(a.TechnicalApprovals), need(a.TechnicalRequired))
			}
			n.TechnicalApprovals = append(append([]Decision{}, a.TechnicalApprovals...), *d)
			if len(n.TechnicalApprovals) < need(a.TechnicalRequired) {
				status = a.Status
			} else {
				n.Technical = d
			}
		} else {
			if a.Status == ApprovalPending {
				return nil, Errorf(ECONFLICT, "approval %s needs its technical approval first", a.ID)
			}
			if (a.Technical != nil && a.Technical.same(t.By)) || approvedBy(a.TechnicalApprovals, t.By) {
				return nil, Errorf(EFORBIDDEN, "%s gave a technical approval; the business approval must come from someone else", t.By.Username)
			}
			if approvedBy(a.BusinessApprovals, t.By) {
				return nil, Errorf(ECONFLICT, "%s already approved the business step of %s; %d of %d business approvals so far",
					t.By.Username, a.ID, len(a.BusinessApprovals), need(a.BusinessRequired))
			}
			votes := append(append([]Decision{}, a.BusinessApprovals...), *d)
			if a.FinanceRequired && need(a.BusinessRequired) > 1 && len(votes) >= need(a.BusinessRequired) && !anyFinance(votes) {
				return nil, Errorf(EFORBIDDEN, "the estimated cost is above the finance threshold: one of the %d business approvals of %s must come from a finance approver",
					need(a.BusinessRequired), a.ID)
			}
			n.BusinessApprovals = votes
			if len(votes) < need(a.BusinessRequired) {
				status = a.Status
			} else {
				n.Business = d
				if !t.NotBefore.IsZero() {
					nb := t.NotBefore.UTC()
					n.NotBefore = &nb
				}
			}
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
	case ActSupersede:
		n.Rejection = d
	default:
		return nil, Errorf(EINVALID, "unknown approval action %q", t.Action)
	}
	n.Status = status
	n.UpdatedAt = t.At
	n.Version++
	return &n, nil
}

// IsRequester reports whether the person with this Mattermost username and
// e-mail address (either may be empty) requested the run, comparing them
// with the run's triggered_by after normalisation (identity.go).
func (a *Approval) IsRequester(username, email string) bool {
	return IsRequester(username, email, a.RequestedBy)
}

func anyFinance(ds []Decision) bool {
	for _, d := range ds {
		if d.Finance {
			return true
		}
	}
	return false
}

func (a *Approval) decidedBy() string {
	var d *Decision
	switch a.Status {
	case ApprovalTechnical:
		d = a.Technical
	case ApprovalApproved:
		d = a.Business
	case ApprovalRejected, ApprovalSuperseded:
		d = a.Rejection
	case ApprovalBypassed:
		d = a.Bypass
	}
	if d == nil || d.Username == "" {
		return ""
	}
	return " by " + d.Username
}
