package webhooks

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/mux"

	"github.com/ica-governance/ica"
)

// StepApprovers names who may decide a step of a target: the entries of
// the policy in force (Mattermost usernames, and "entra:" entries for
// people who decide through the API) and ICA's own Entra tenant, which an
// "entra:<object id>" entry refers to.
type StepApprovers struct {
	Technical, Business, Finance []string
	HomeTenant                   string
}

// Approvers returns a target's approver lists under the policy in force.
type Approvers func(ctx context.Context, target string) (StepApprovers, error)

// decisionBody is POST /api/v1/approvals/{id}/decisions.
type decisionBody struct {
	Action    string `json:"action"`               // approve | reject
	Reason    string `json:"reason,omitempty"`     // required to reject
	Comment   string `json:"comment,omitempty"`    // optional with approve
	NotBefore string `json:"not_before,omitempty"` // "HH:MM": a deferred business approval
}

// eligibleAPI decides whether the person may decide this step of the
// approval, as the card's buttons would (bot.stepPolicy): the step's list,
// and for the business step above the finance threshold the finance list
// (one finance approver among several business approvers). Only "entra:"
// entries grant: a person is named by tenant and object id, never by name.
func eligibleAPI(sa StepApprovers, a *ica.Approval, step string, p *Person) (finance bool, err error) {
	in := func(list []string) bool {
		return slices.ContainsFunc(list, func(e string) bool {
			return ica.EntraApproverIs(e, sa.HomeTenant, p.TenantID, p.ObjectID)
		})
	}
	finance = in(sa.Finance)
	var list []string
	who := "the " + step + " approvers"
	switch {
	case step == ica.StepTechnical:
		list = sa.Technical
	case a.FinanceRequired && a.BusinessRequired > 1:
		list = append(append([]string{}, sa.Business...), sa.Finance...)
	case a.FinanceRequired:
		list, who = sa.Finance, "the finance approvers (the estimated cost is above the finance threshold)"
	default:
		list = sa.Business
	}
	if in(list) {
		return finance, nil
	}
	if !slices.ContainsFunc(list, ica.IsEntraApprover) {
		return false, ica.Errorf(ica.EFORBIDDEN, "no one may decide the %s step of %s through the API: its approver list names no Entra ID user (entra:<object id>)", step, a.Target)
	}
	return false, ica.Errorf(ica.EFORBIDDEN, "%s (entra:%s/%s) is not one of %s for %s", p.UPN, p.TenantID, p.ObjectID, who, a.Target)
}

// handleDecision handles "POST /api/v1/approvals/{approval_id}/decisions":
// a person approves or rejects the step the approval waits for, with their
// own delegated Entra ID token, under the rules of the card: step order,
// the requester excluded, one person never on both steps, finance above
// the threshold, exactly once under races. The ledger says via: api.
func (h *Handler) handleDecision(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := PersonOf(ctx)
	if p == nil {
		return ica.Errorf(ica.EFORBIDDEN, "decisions are made with a person's own Entra ID token")
	}
	id := mux.Vars(r)["approval_id"]
	if err := ica.ValidID("approval_id", id); err != nil {
		return err
	}
	var b decisionBody
	if err := decodeJSON(r, &b); err != nil {
		return err
	}
	b.Reason, b.Comment = strings.TrimSpace(b.Reason), strings.TrimSpace(b.Comment)
	t := ica.Transition{Via: "api"}
	switch b.Action {
	case "approve":
		if b.Reason != "" {
			return ica.FieldErrorf(ica.EINVALID, "reason", "reason goes with reject; an approval takes a comment")
		}
		t.Comment = b.Comment
	case "reject":
		if b.Reason == "" {
			return ica.FieldErrorf(ica.EINVALID, "reason", "a rejection needs a reason")
		}
		if b.NotBefore != "" {
			return ica.FieldErrorf(ica.EINVALID, "not_before", "only an approval can be deferred")
		}
		t.Action, t.Comment = ica.ActReject, b.Reason
	case "":
		return ica.FieldErrorf(ica.EINVALID, "action", "action is required: approve or reject")
	default:
		return ica.FieldErrorf(ica.EINVALID, "action", "action %q is not approve or reject", b.Action)
	}
	if len(t.Comment) > 2000 {
		field := "comment"
		if t.Action == ica.ActReject {
			field = "reason"
		}
		return ica.FieldErrorf(ica.EINVALID, field, "%s is longer than 2000 bytes", field)
	}
	if err := ica.ValidText("comment", t.Comment, 2000, false); err != nil {
		return err
	}
	if b.NotBefore != "" {
		if len(b.NotBefore) != 5 || b.NotBefore[2] != ':' {
			return ica.FieldErrorf(ica.EINVALID, "not_before", "not_before is a time HH:MM in the target's zone, such as 22:00")
		}
		t.NotBeforeLocal = b.NotBefore
	}
	if h.Approvers == nil {
		return ica.Errorf(ica.ENOTCONFIGURED, "decisions through the API are not configured on this server")
	}
	a, err := h.Ledger.Approval(ctx, id)
	if err != nil {
		return err
	}
	step := a.Step()
	if step == "" {
		return ica.Errorf(ica.ECONFLICT, "approval %s is already %s", a.ID, strings.ReplaceAll(a.Status, "_", " "))
	}
	if t.Action == "" {
		t.Action = ica.ActApproveTechnical
		if step == ica.StepBusiness {
			t.Action = ica.ActApproveBusiness
		}
	}
	if t.NotBeforeLocal != "" && t.Action != ica.ActApproveBusiness {
		return ica.FieldErrorf(ica.EINVALID, "not_before", "only the business approval can be deferred; %s waits for its %s approval", a.ID, step)
	}
	sa, err := h.Approvers(ctx, a.Target)
	if err != nil {
		return err
	}
	finance, err := eligibleAPI(sa, a, step, p)
	if err != nil {
		return err
	}
	email := ica.NormalizeEmail(p.UPN)
	t.By = ica.Decider{Username: p.UPN, Entra: p.TenantID + "/" + p.ObjectID, Email: email}
	if t.By.Username == "" {
		t.By.Username = p.ID()
	}
	t.ByEmail, t.Finance = p.UPN, finance
	if t.Action != ica.ActReject {
		run, err := h.Ledger.Run(ctx, a.RunID)
		if err != nil {
			return err
		}
		if a.IsRequester("", p.UPN) || (run.RequestedForEmail != "" && email != "" && ica.NormalizeEmail(run.RequestedForEmail) == email) {
			return ica.Errorf(ica.EFORBIDDEN, "%s requested this deployment and cannot approve it", p.UPN)
		}
	}
	n, err := h.Ledger.Transition(ctx, a.ID, t, p.ID(), func(cur *ica.Approval) error {
		// Of racing decisions exactly one applies: the step must still be
		// the one this person was found eligible for.
		if cur.Step() != step {
			return ica.Errorf(ica.ECONFLICT, "approval %s is now %s", cur.ID, strings.ReplaceAll(cur.Status, "_", " "))
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.log.Info("approval decided through the API", "approval_id", n.ID, "action", t.Action, "by", p.ID(), "status", n.Status,
		"request_id", RequestID(ctx))
	writeJSON(w, http.StatusOK, n)
	return nil
}
