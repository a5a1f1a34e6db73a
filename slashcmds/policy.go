package slashcmds

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/policy"
)

// PolicyQueries are the deployment-policy views; Queries that implement
// them get "/ica policy" and a gate line in "/ica status RUN_ID".
type PolicyQueries interface {
	// RecordedPolicy returns the policy in force (nil: none recorded).
	RecordedPolicy(ctx context.Context) (*RecordedPolicy, error)
	// ApprovalGate returns what the gate says about an approval now.
	ApprovalGate(ctx context.Context, id string) (*ica.Approval, *policy.Verdict, error)
}

// RecordedPolicy is the policy in force as the ledger recorded it.
type RecordedPolicy struct {
	Hash       string
	RecordedAt time.Time
	Source     string
	Policy     policy.Policy
}

// registerPolicy adds "/ica policy [target]" when the queries can answer it.
func (h *Handler) registerPolicy() {
	if _, ok := h.d.Queries.(PolicyQueries); !ok {
		return
	}
	h.commands["policy"] = command{run: h.policy, usage: "policy [staging|production]",
		help: "the deployment policy in force: branches, change windows, blackouts, the lock, approvers, promotion", hint: "[TARGET]"}
	h.order = append(h.order[:len(h.order)-1], "policy", "help")
}

// policy answers "/ica policy [target]".
func (h *Handler) policy(ctx context.Context, c *call) (string, error) {
	pq := h.d.Queries.(PolicyQueries)
	targets := policy.Targets
	if len(c.Args) > 1 || (len(c.Args) == 1 && c.Args[0].Key != "") {
		return "", ica.Errorf(ica.EINVALID, "policy takes at most a target: staging or production")
	}
	if len(c.Args) == 1 {
		t := strings.ToLower(c.Args[0].Value)
		if t != ica.TargetStaging && t != ica.TargetProduction {
			return "", ica.FieldErrorf(ica.EINVALID, "target", "%s is not staging or production", mdCode(clip(t, 40)))
		}
		targets = []string{t}
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rec, err := pq.RecordedPolicy(ctx)
	if err != nil {
		return "", err
	}
	if rec == nil {
		return "No deployment policy is recorded: approvals need one technical and one business approver, at any time, from any branch.", nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#### Deployment policy %s\nRecorded %s (%s). An approved approval opens the gate for %s of open change-window time.\n",
		mdCode(policy.ShortHash(rec.Hash)), stamp(rec.RecordedAt), cell(rec.Source, 80), rec.Policy.UseWindow.D())
	for _, name := range targets {
		t := rec.Policy.Targets[name]
		fmt.Fprintf(&b, "\n**%s**\n\n| Rule | |\n|:--|:--|\n", name)
		row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
		row("Branches", listOr(t.Branches, "any"))
		var ws []string
		for _, w := range t.Windows {
			z := w.TZ
			if z == "" {
				z = t.TZ
			}
			ws = append(ws, fmt.Sprintf("%s %s–%s %s", strings.Join(w.Days, ","), w.From, w.To, z))
		}
		row("Change windows", listOr(ws, "any time ("+orUTC(t.TZ)+")"))
		var bs []string
		for _, bo := range t.Blackouts {
			bs = append(bs, strings.TrimSpace(fmt.Sprintf("%s to %s %s", bo.From, bo.To, bo.Reason)))
		}
		row("Blackouts", listOr(bs, "none"))
		lock := "off"
		if t.Exclusive != "" {
			lock = fmt.Sprintf("%s, per %s, at most %s", t.Exclusive, t.LockScope, t.LockTimeout.D())
		}
		row("One deployment at a time", lock)
		row("Technical approvers", fmt.Sprintf("%d of %s", max(t.TechnicalRequired, 1), approversOf(t.TechnicalApprovers, t.TechnicalChannel)))
		row("Business approvers", fmt.Sprintf("%d of %s", max(t.BusinessRequired, 1), approversOf(t.BusinessApprovers, t.BusinessChannel)))
		if r := t.Requires; r != nil {
			row("Promotion", fmt.Sprintf("deployed to %s first, baked %s", r.Target, r.Bake.D()))
		}
	}
	return b.String(), nil
}

func orUTC(z string) string {
	if z == "" {
		return "UTC"
	}
	return z
}

func listOr(l []string, none string) string {
	if len(l) == 0 {
		return none
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = cell(s, 80)
	}
	return strings.Join(out, ", ")
}

func approversOf(users []string, channel string) string {
	var parts []string
	if len(users) > 0 {
		parts = append(parts, users...)
	}
	if channel != "" {
		parts = append(parts, "members of "+channel)
	}
	return listOr(parts, "nobody configured")
}

// gateRow says what the gate of an approval says now, for "/ica status RUN_ID".
func (h *Handler) gateRow(ctx context.Context, a *ica.Approval) string {
	pq, ok := h.d.Queries.(PolicyQueries)
	if !ok || a == nil {
		return ""
	}
	_, v, err := pq.ApprovalGate(ctx, a.ID)
	if err != nil || v == nil {
		return ""
	}
	switch {
	case v.CanDeploy:
		return "open: the pipeline may deploy"
	case !v.Usable:
		return "closed for good: " + cell(strings.Join(v.Reasons, "; "), 200)
	}
	s := "waiting for " + strings.Join(v.WaitingFor, ", ")
	if v.OpensAt != nil {
		s += " (the time rules allow it from " + stamp(*v.OpensAt) + ")"
	}
	if v.QueuedBehind != "" {
		s += ", queued behind run " + mdCode(clip(v.QueuedBehind, 40))
	}
	return s
}
