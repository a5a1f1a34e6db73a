package bot

import (
	"fmt"
	"strings"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

// The deployment policy on the card: N-of-M progress, a deferred business
// approval ("approve, effective at HH:MM"), the use, and superseded cards.

// actionApproveDeferred is the business approval that takes effect later; it
// opens a dialog asking when.
const actionApproveDeferred = "approve_business_deferred"

func init() {
	stateColor[ica.ApprovalSuperseded] = "#8A8A8A"
	stateWords[ica.ApprovalSuperseded] = "superseded by a newer run"
}

// stepLine says how far a step that needs several people has come:
// "1 of 2 technical: @tech1".
func stepLine(step string, votes []ica.Decision, required int) string {
	names := make([]string, 0, len(votes))
	for _, d := range votes {
		names = append(names, "@"+d.Username)
	}
	s := fmt.Sprintf("%d of %d %s", len(votes), max(required, 1), step)
	if len(names) > 0 {
		s += ": " + strings.Join(names, ", ")
	}
	return s
}

// policyFields are the card's lines about the deployment policy.
func policyFields(a *ica.Approval) []*model.MessageAttachmentField {
	var out []*model.MessageAttachmentField
	if a.TechnicalRequired > 1 || len(a.TechnicalApprovals) > 1 {
		out = append(out, &model.MessageAttachmentField{Title: "Technical approvals", Value: stepLine("technical", a.TechnicalApprovals, a.TechnicalRequired), Short: true})
	}
	if a.BusinessRequired > 1 || len(a.BusinessApprovals) > 1 {
		out = append(out, &model.MessageAttachmentField{Title: "Business approvals", Value: stepLine("business", a.BusinessApprovals, a.BusinessRequired), Short: true})
	}
	if a.NotBefore != nil {
		out = append(out, &model.MessageAttachmentField{Title: "Effective", Value: "the gate opens no earlier than " + stamp(*a.NotBefore)})
	}
	if a.Promotion != nil {
		out = append(out, &model.MessageAttachmentField{Title: "Promotion", Value: fmt.Sprintf("deployed to %s by run %s at %s (approval %s)",
			a.Promotion.Target, a.Promotion.RunID, stamp(a.Promotion.DeployedAt), a.Promotion.ApprovalID)})
	}
	if a.Use != nil {
		out = append(out, &model.MessageAttachmentField{Title: "Used", Value: fmt.Sprintf("run %s deploys commit `%s` since %s", a.Use.RunID, shortCommit(a.Use.Commit), stamp(a.Use.At))})
	}
	if a.Status == ica.ApprovalSuperseded {
		out = append(out, &model.MessageAttachmentField{Title: "Superseded", Value: "run " + a.SupersededBy + " of " + a.PipelineName + " started later and deploys instead (exclusive: latest)"})
	}
	return out
}

// decidedText is the reply to a recorded approval: a step that needs
// several people says how many it has.
func decidedText(step string, n *ica.Approval) string {
	if step == ica.StepTechnical && n.Status == ica.ApprovalPending {
		return fmt.Sprintf("Your technical approval of %s is recorded in the ledger: %s.", n.ID, stepLine("technical", n.TechnicalApprovals, n.TechnicalRequired))
	}
	if step == ica.StepBusiness && n.Status == ica.ApprovalTechnical {
		return fmt.Sprintf("Your business approval of %s is recorded in the ledger: %s.", n.ID, stepLine("business", n.BusinessApprovals, n.BusinessRequired))
	}
	return fmt.Sprintf("You gave the %s approval for %s. It is recorded in the ledger.", step, n.ID)
}

// deferredDialog fills the dialog of "approve, effective at".
func deferredDialog(d *model.Dialog, a *ica.Approval) {
	d.Title = "Approve " + a.ID + " later"
	d.IntroductionText = fmt.Sprintf("Give the business approval for **%s** run %s to **%s**, effective at a later time: the next such time in %s's time zone. The gate opens no earlier.", a.PipelineName, a.RunID, a.Target, a.Target)
	d.SubmitLabel = "Approve"
	d.Elements = []model.DialogElement{
		{DisplayName: "Effective at (HH:MM)", Name: "not_before", Type: "text", MinLength: 5, MaxLength: 5, Placeholder: "22:00"},
		{DisplayName: "Comment", Name: "comment", Type: "textarea", Optional: true, MaxLength: 2000},
	}
}
