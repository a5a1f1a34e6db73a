package bot

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

// Card colours by state; chosen to be told apart by people with the common
// colour-vision deficiencies (amber, blue, green, magenta-red, grey).
var stateColor = map[string]string{
	ica.ApprovalPending:   "#F2A900",
	ica.ApprovalTechnical: "#1F78D1",
	ica.ApprovalApproved:  "#2E8B57",
	ica.ApprovalRejected:  "#C8102E",
	ica.ApprovalExpired:   "#8A8A8A",
	ica.ApprovalBypassed:  "#FF0000",
}

// Button actions carried in the signed context.
const (
	actionApproveTechnical = ica.ActApproveTechnical
	actionApproveBusiness  = ica.ActApproveBusiness
	actionReject           = ica.ActReject
)

// propApprovalID marks ICA's cards so a card can be found again after a crash.
const propApprovalID = "ica_approval_id"

// sign returns the HMAC of parts, hex-encoded.
func sign(secret []byte, parts ...string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strings.Join(parts, "\x1f")))
	return hex.EncodeToString(m.Sum(nil))
}

func verify(secret []byte, sig string, parts ...string) bool {
	want := sign(secret, parts...)
	return hmac.Equal([]byte(want), []byte(sig))
}

// BudgetSource gives the month's spend against the budget for the card's
// budget line.
type BudgetSource interface {
	Budget(ctx context.Context) (*ica.Budget, error)
}

// budgetLine says where the month stands, e.g. "month-to-date $4,210.00 of
// $10,000.00 (42%), forecast $9,800.00; cost data 3h old".
func (b *Bot) budgetLine(now time.Time) string {
	if b.budget == nil {
		return "no budget data"
	}
	// Every card render and click reply shows the line: compute it at most
	// once a second rather than once per card.
	b.budgetMu.Lock()
	defer b.budgetMu.Unlock()
	if b.budgetCache != nil && now.Sub(b.budgetAt) < time.Second && !now.Before(b.budgetAt) {
		return formatBudget(b.budgetCache, now)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	bud, err := b.budget.Budget(ctx)
	if err != nil {
		return "budget unavailable"
	}
	b.budgetCache, b.budgetAt = bud, now
	return formatBudget(bud, now)
}

func formatBudget(bud *ica.Budget, now time.Time) string {
	azure := azureBudgetLines(bud, now) // budget.go
	if bud.MonthlyBudget <= 0 {
		return "no budget configured" + azure
	}
	if bud.AsOf == nil {
		return fmt.Sprintf("no cost data yet for %s; budget %s", bud.Month, money(bud.MonthlyBudget)) + azure
	}
	return fmt.Sprintf("month-to-date %s of %s (%.0f%%), pending %s, forecast %s; cost data %s old",
		money(bud.MonthToDate), money(bud.MonthlyBudget), 100*bud.MonthToDate/bud.MonthlyBudget,
		money(bud.PendingEstimates), money(bud.Forecast), FormatDuration(now.Sub(*bud.AsOf))) + azure
}

// FormatDuration says how long is left in words: "3h 59m", "12m", "under a minute".
func FormatDuration(d time.Duration) string {
	if d < time.Minute {
		return "under a minute"
	}
	d = d.Truncate(time.Minute)
	h, m := int(d.Hours()), int(d.Minutes())%60
	switch {
	case h == 0:
		return fmt.Sprintf("%dm", m)
	case m == 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dh %dm", h, m)
}

func money(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return "$" + b.String() + "." + frac
}

func shortCommit(c string) string {
	if len(c) > 8 {
		return c[:8]
	}
	return c
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

func decisionText(d *ica.Decision) string {
	if d == nil {
		return ""
	}
	s := "@" + show(d.Username) + " at " + stamp(d.At)
	if d.Comment != "" {
		s += ": “" + show(d.Comment) + "”"
	}
	return s
}

// show is how text from outside (names, branches, comments, alert fields)
// appears on a card: hidden characters escaped visibly (ica.ShowText), so
// a bidi override cannot make one pipeline look like another.
func show(s string) string { return ica.ShowText(s) }

var stateWords = map[string]string{
	ica.ApprovalPending:   "waiting for technical approval",
	ica.ApprovalTechnical: "waiting for business approval",
	ica.ApprovalApproved:  "approved",
	ica.ApprovalRejected:  "rejected",
	ica.ApprovalExpired:   "expired",
	ica.ApprovalBypassed:  "BYPASSED (break-glass)",
}

// renderCard builds the whole card for the approval's current state. It
// always returns complete props: Mattermost keeps old buttons when an update
// carries only a message.
func (b *Bot) renderCard(a *ica.Approval, now time.Time) (string, model.StringInterface) {
	run := show(a.RunID)
	if a.RunURL != "" {
		run = fmt.Sprintf("[%s](%s)", run, show(a.RunURL))
	}
	pipeline := show(a.PipelineName)
	budget := b.budgetLine(now)
	fields := []*model.MessageAttachmentField{
		{Title: "Pipeline", Value: pipeline, Short: true},
		{Title: "Run", Value: run, Short: true},
		{Title: "Branch", Value: show(strings.TrimPrefix(a.Branch, "refs/heads/")), Short: true},
		{Title: "Commit", Value: "`" + show(shortCommit(a.Commit)) + "`", Short: true},
		{Title: "Requested by", Value: show(a.RequestedBy), Short: true},
		{Title: "Target", Value: show(a.Target), Short: true},
		{Title: "Estimated cost", Value: money(a.EstimatedCost), Short: true},
		{Title: "Budget", Value: budget, Short: true},
	}
	if a.FinanceRequired {
		fields = append(fields, &model.MessageAttachmentField{Title: "Finance", Value: "above the finance threshold: the business approval must come from finance", Short: false})
	}
	if !a.Final() {
		fields = append(fields, &model.MessageAttachmentField{Title: "Expires", Value: "expires in " + FormatDuration(a.ExpiresAt.Sub(now)) + " (" + stamp(a.ExpiresAt) + ")", Short: false})
	}
	fields = append(fields, b.freezeWarning(a)...) // deployment freeze (incident.go)
	if a.Technical != nil {
		fields = append(fields, &model.MessageAttachmentField{Title: "Technical approval", Value: decisionText(a.Technical)})
	}
	if a.Business != nil {
		fields = append(fields, &model.MessageAttachmentField{Title: "Business approval", Value: decisionText(a.Business)})
	}
	fields = append(fields, policyFields(a)...) // N of M, deferral, use (policy.go)
	switch a.Status {
	case ica.ApprovalRejected:
		fields = append(fields, &model.MessageAttachmentField{Title: "Rejected", Value: decisionText(a.Rejection)})
	case ica.ApprovalExpired:
		at := a.ExpiresAt
		if a.ExpiredAt != nil {
			at = *a.ExpiredAt
		}
		fields = append(fields, &model.MessageAttachmentField{Title: "Expired", Value: "no decision before " + stamp(at)})
	case ica.ApprovalBypassed:
		fields = append(fields, &model.MessageAttachmentField{Title: "Break-glass bypass", Value: decisionText(a.Bypass)})
	}

	att := &model.MessageAttachment{
		Fallback:  fmt.Sprintf("Approval %s: %s → %s, %s", a.ID, pipeline, a.Target, stateWords[a.Status]),
		Color:     stateColor[a.Status],
		Title:     fmt.Sprintf("Deployment approval %s · %s → %s", a.ID, pipeline, a.Target),
		TitleLink: a.RunURL,
		Text:      "**Status:** " + stateWords[a.Status],
		Fields:    fields,
		Footer:    "ICA · ledger-recorded decision",
	}
	switch a.Status {
	case ica.ApprovalPending:
		att.Actions = []*model.PostAction{b.button(a, actionApproveTechnical, "Approve (technical)", "success"), b.button(a, actionReject, "Reject", "danger")}
	case ica.ApprovalTechnical:
		att.Actions = []*model.PostAction{b.button(a, actionApproveBusiness, "Approve (business)", "success"),
			b.button(a, actionApproveDeferred, "Approve, effective at…", "default"), b.button(a, actionReject, "Reject", "danger")}
	}
	msg := fmt.Sprintf("**Approval %s**: deploy %s run %s to **%s**: %s", a.ID, pipeline, show(a.RunID), a.Target, stateWords[a.Status])
	return msg, model.StringInterface{"attachments": []*model.MessageAttachment{att}, propApprovalID: a.ID}
}

func (b *Bot) button(a *ica.Approval, action, name, style string) *model.PostAction {
	return &model.PostAction{
		Id: strings.ReplaceAll(action, "_", ""), Name: name, Type: model.PostActionTypeButton, Style: style,
		Integration: &model.PostActionIntegration{
			URL: b.cfg.PublicURL + "/mattermost/actions",
			Context: map[string]any{"approval_id": a.ID, "action": action,
				"sig": sign(b.secret, "action", a.ID, action)},
		},
	}
}
