package policy

import (
	"fmt"
	"time"

	"github.com/ica-governance/ica"
)

// Evidence is a deployment to the required target that a promotion relies
// on: the run that deployed the same commit there through a used approval,
// and its deployment report.
type Evidence = ica.Deployment

// Facts are what the store knows about one approval when its gate is judged.
type Facts struct {
	Now    time.Time
	RunID  string
	Branch string
	// Status is the approval's status; Decided its last decision (the
	// approval or the bypass), zero while undecided.
	Status      string
	Decided     time.Time
	NotBefore   time.Time
	RunFinished bool
	// Used: this run has already used the approval (a repeat is harmless).
	Used bool
	// Promotion is the evidence found for Requires; PromotionMissing says
	// why none counts.
	Promotion        *Evidence
	PromotionMissing string
	// Freeze names the incident that freezes the target ("" when none).
	Freeze string
	// LockHolder is the run that holds the target's lock (another run);
	// QueuedBehind the run ahead of this one in the queue.
	LockHolder   string
	LockUntil    time.Time
	QueuedBehind string
	UseWindow    time.Duration
}

// Check is one rule's verdict.
type Check struct {
	Rule   string `json:"rule"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Verdict is what the gate says about one approval now.
type Verdict struct {
	// CanDeploy is true only when every rule passes now.
	CanDeploy bool `json:"can_deploy"`
	// WaitingFor lists what the deployment waits for (approval, window,
	// blackout, not_before, promotion, freeze, lock).
	WaitingFor []string `json:"waiting_for"`
	// OpensAt is the earliest time the time rules (window, blackout,
	// not_before, bake) allow; nil when none comes within Horizon.
	OpensAt *time.Time `json:"opens_at,omitempty"`
	// UsableUntil is when the use window ends (approved approvals).
	UsableUntil  *time.Time `json:"usable_until,omitempty"`
	QueuedBehind string     `json:"queued_behind,omitempty"`
	// Usable is false when the approval can never open the gate again
	// (rejected, expired, superseded, stale, or its run finished); a new
	// request makes a new approval.
	Usable bool `json:"usable"`
	// Reasons say, one line each, why the gate is not open.
	Reasons []string `json:"reasons,omitempty"`
	// Overrode lists the rules a break-glass bypass overrides now.
	Overrode []string `json:"overrode,omitempty"`
	// PolicyHash is the recorded policy the verdict was reached under.
	PolicyHash string  `json:"policy_hash,omitempty"`
	Checks     []Check `json:"-"`
}

// Explanation is every rule's verdict for one run's deployment to a
// target (ica policy explain).
type Explanation struct {
	RunID      string  `json:"run_id"`
	Target     string  `json:"target"`
	ApprovalID string  `json:"approval_id,omitempty"`
	Status     string  `json:"status"`
	PolicyHash string  `json:"policy_hash,omitempty"`
	Verdict    Verdict `json:"verdict"`
	Checks     []Check `json:"checks"`
}

func tp(t time.Time) *time.Time { t = t.UTC(); return &t }

func fmtTime(t time.Time, loc *time.Location) string {
	if loc == nil || loc == time.UTC {
		return t.UTC().Format("2006-01-02 15:04 UTC")
	}
	return t.In(loc).Format("2006-01-02 15:04 MST")
}

// Evaluate judges the gate of one approval from the facts.
func (t *TargetRules) Evaluate(f Facts) Verdict {
	v := Verdict{Usable: true, WaitingFor: []string{}}
	check := func(rule string, ok bool, detail string) { v.Checks = append(v.Checks, Check{rule, ok, detail}) }
	closed := func(rule, detail string) {
		v.Usable = false
		v.Reasons = append(v.Reasons, detail)
		check(rule, false, detail)
	}
	wait := func(w, rule, detail string) {
		if len(v.WaitingFor) == 0 || v.WaitingFor[len(v.WaitingFor)-1] != w {
			v.WaitingFor = append(v.WaitingFor, w)
		}
		v.Reasons = append(v.Reasons, detail)
		check(rule, false, detail)
	}
	bypass := f.Status == ica.ApprovalBypassed
	override := func(w, rule, detail string) {
		v.Overrode = append(v.Overrode, w)
		check(rule, true, detail+" (overridden by break-glass)")
	}
	if f.RunFinished {
		closed("run", fmt.Sprintf("run %s has finished: a finished run cannot deploy", f.RunID))
	} else {
		check("run", true, fmt.Sprintf("run %s is running", f.RunID))
	}
	switch f.Status {
	case ica.ApprovalApproved:
		check("approval", true, "approved")
	case ica.ApprovalBypassed:
		check("approval", true, "bypassed by break-glass")
	case ica.ApprovalPending:
		wait(WaitApproval, "approval", "waiting for the technical approval")
	case ica.ApprovalTechnical:
		wait(WaitApproval, "approval", "waiting for the business approval")
	default:
		closed("approval", "the approval is "+f.Status)
	}
	if !t.BranchAllowed(f.Branch) {
		if bypass {
			override("branch", "branch", t.BranchRefusal(f.RunID, f.Branch))
		} else {
			closed("branch", t.BranchRefusal(f.RunID, f.Branch))
		}
	} else if len(t.Branches) > 0 {
		check("branch", true, f.Branch+" may deploy to "+t.Name)
	}

	// Time rules.
	floor := f.Now
	if f.NotBefore.After(floor) {
		floor = f.NotBefore
	}
	var bakeEnd time.Time
	if r := t.Requires; r != nil && f.Promotion != nil {
		bakeEnd = f.Promotion.DeployedAt.Add(r.Bake.D())
		if bakeEnd.After(floor) {
			floor = bakeEnd
		}
	}
	if open, ok := t.NextOpen(floor); ok {
		v.OpensAt = tp(open)
	}
	gate := func(w, rule string, ok bool, okDetail, waitDetail string) {
		switch {
		case ok:
			check(rule, true, okDetail)
		case bypass:
			override(w, rule, waitDetail)
		default:
			wait(w, rule, waitDetail)
		}
	}
	if len(t.windows) > 0 {
		in := t.InWindow(f.Now)
		next := "no window opens within 400 days"
		if !in {
			if at, ok := t.NextOpen(f.Now); ok {
				next = "the next window opens at " + fmtTime(at, t.loc)
			}
		}
		gate(WaitWindow, "window", in, "inside a change window", "outside the change windows of "+t.Name+"; "+next)
	}
	if reason, until, in := t.Blackout(f.Now); in {
		gate(WaitBlackout, "blackout", false, "", fmt.Sprintf("%s is in a blackout (%s) until %s", t.Name, reason, fmtTime(until, t.loc)))
	} else if len(t.blackouts) > 0 {
		check("blackout", true, "no blackout now")
	}
	if !f.NotBefore.IsZero() {
		gate(WaitNotBefore, "not_before", !f.Now.Before(f.NotBefore), "effective since "+fmtTime(f.NotBefore, t.loc),
			"the approval takes effect at "+fmtTime(f.NotBefore, t.loc))
	}
	if r := t.Requires; r != nil {
		switch {
		case f.Promotion == nil:
			why := f.PromotionMissing
			if why == "" {
				why = "no deployment of this commit to " + r.Target + " is recorded"
			}
			gate(WaitPromotion, "promotion", false, "", why)
		case f.Now.Before(bakeEnd):
			gate(WaitPromotion, "promotion", false, "", fmt.Sprintf("deployed to %s by run %s at %s; baking until %s",
				r.Target, f.Promotion.RunID, fmtTime(f.Promotion.DeployedAt, t.loc), fmtTime(bakeEnd, t.loc)))
		default:
			check("promotion", true, fmt.Sprintf("deployed to %s by run %s at %s (approval %s)",
				r.Target, f.Promotion.RunID, fmtTime(f.Promotion.DeployedAt, t.loc), f.Promotion.ApprovalID))
		}
	}
	if f.Freeze != "" {
		gate(WaitFreeze, "freeze", false, "", t.Name+" is frozen: "+f.Freeze)
	}

	// The use window: gate-open time after the later of the last decision
	// and the time the time rules first allowed it.
	uw := f.UseWindow
	if uw <= 0 {
		uw = DefaultUseWindow
	}
	if !f.Decided.IsZero() && (f.Status == ica.ApprovalApproved || bypass) {
		start := f.Decided
		rules := t
		if bypass {
			rules = plain
		} else {
			if f.NotBefore.After(start) {
				start = f.NotBefore
			}
			if bakeEnd.After(start) {
				start = bakeEnd
			}
		}
		if until, ok := rules.OpenUntil(start, uw); ok {
			v.UsableUntil = tp(until)
		}
		switch {
		case f.Used:
			check("use_window", true, "used by run "+f.RunID)
		case f.Now.After(start) && rules.OpenTime(start, f.Now) >= uw:
			closed("use_window", fmt.Sprintf("the approval could be used for %s of open change-window time after its last decision; that has passed: request a new approval", uw))
		default:
			check("use_window", true, "usable for "+uw.String()+" of open time after "+fmtTime(start, t.loc))
		}
	}

	switch {
	case f.LockHolder != "":
		until := ""
		if !f.LockUntil.IsZero() {
			until = " (at most until " + fmtTime(f.LockUntil, t.loc) + ")"
		}
		gate(WaitLock, "lock", false, "", fmt.Sprintf("run %s is deploying to %s%s", f.LockHolder, t.Name, until))
	case f.QueuedBehind != "":
		v.QueuedBehind = f.QueuedBehind
		gate(WaitLock, "lock", false, "", "queued behind run "+f.QueuedBehind)
	case t.Exclusive():
		check("lock", true, "the deployment lock is free")
	}
	if bypass {
		v.WaitingFor = []string{}
	}
	v.CanDeploy = v.Usable && len(v.WaitingFor) == 0
	return v
}

// plain has no time rules: break-glass use windows are plain durations.
var plain = Empty().Target("")
