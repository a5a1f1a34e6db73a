package bot

import (
	"encoding/json"
	"fmt"

	"github.com/ica-governance/ica"
)

// Destination is the outbox destination the bot delivers.
const Destination = "mattermost"

// Outbox message kinds.
const (
	KindCardCreate = "card.create" // post the approval card
	KindCardUpdate = "card.update" // re-render the card from the approval's current state
	KindNotify     = "dm.fanout"   // DM every eligible approver of a step (expands to dm.user)
	KindDM         = "dm.user"     // one DM
	KindAnnounce   = "announce"    // a post in the approval channel (break-glass)
	KindFinance    = "finance"     // a post in the finance channel (cost above the finance threshold)
)

type cardPayload struct {
	ApprovalID string `json:"approval_id"`
	Step       string `json:"step,omitempty"`
	Reminder   bool   `json:"reminder,omitempty"`
	UserID     string `json:"user_id,omitempty"`
	Username   string `json:"username,omitempty"`
	Text       string `json:"text,omitempty"`
}

func message(kind, key, orderKey string, p cardPayload) *ica.OutboxMessage {
	raw, _ := json.Marshal(p)
	return &ica.OutboxMessage{Destination: Destination, Kind: kind, Key: key, OrderKey: orderKey, Payload: raw}
}

// Notifier turns approval changes into Mattermost outbox messages. It does
// no I/O: it runs inside the store's transaction.
type Notifier struct{}

var _ ica.Notifier = Notifier{}

// ApprovalMessages implements ica.Notifier.
func (Notifier) ApprovalMessages(prev, next *ica.Approval) []*ica.OutboxMessage {
	id := next.ID
	order := "card:" + id
	p := cardPayload{ApprovalID: id}
	var out []*ica.OutboxMessage
	if prev == nil {
		out = append(out, message(KindCardCreate, id+":card", order, p))
	} else if prev.Status != next.Status || prev.Version != next.Version {
		out = append(out, message(KindCardUpdate, fmt.Sprintf("%s:card:v%d", id, next.Version), order, p))
	}
	if prev == nil && next.FinanceRequired {
		f := p
		f.Text = fmt.Sprintf("#### :moneybag: Finance approval needed: %s\n**%s** run %s → **%s** is estimated at **$%.2f**, above the finance threshold: its business approval must come from finance.",
			id, show(next.PipelineName), show(next.RunID), next.Target, next.EstimatedCost)
		out = append(out, message(KindFinance, id+":finance", order, f))
	}
	if step := next.Step(); step != "" && (prev == nil || prev.Step() != step) {
		p.Step = step
		out = append(out, message(KindNotify, id+":notify:"+step, order, p))
	}
	if next.Status == ica.ApprovalBypassed && (prev == nil || prev.Status != ica.ApprovalBypassed) {
		reason := ""
		if next.Bypass != nil {
			reason = fmt.Sprintf(" by @%s: %s", show(next.Bypass.Username), show(next.Bypass.Comment))
		}
		p.Text = fmt.Sprintf("#### :rotating_light: Break-glass bypass of approval %s\n%s run %s was released to **%s** without approval%s. This is recorded in the ledger.",
			id, show(next.PipelineName), show(next.RunID), next.Target, reason)
		out = append(out, message(KindAnnounce, id+":bypass", order, p))
	}
	return out
}

// ReminderMessages returns the reminder to the approvers of the current step.
func (Notifier) ReminderMessages(a *ica.Approval) []*ica.OutboxMessage {
	step := a.Step()
	if step == "" {
		return nil
	}
	return []*ica.OutboxMessage{
		message(KindNotify, a.ID+":reminder:"+step, "card:"+a.ID, cardPayload{ApprovalID: a.ID, Step: step, Reminder: true}),
		message(KindCardUpdate, a.ID+":card:reminder", "card:"+a.ID, cardPayload{ApprovalID: a.ID}),
	}
}
