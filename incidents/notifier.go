// Package incidents composes what an incident change sends: the Mattermost
// incident card, the PagerDuty event and the refresh of approval cards whose
// target's freeze starts or ends. It is the one place that knows both the
// bot's and the PagerDuty message formats, so cmd/ica and the tests share it.
package incidents

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/alerts"
	"github.com/ica-governance/ica/bot"
	"github.com/ica-governance/ica/freeze"
	"github.com/ica-governance/ica/store"
)

// Notifier composes the outbox messages of an incident change: the
// Mattermost card, the PagerDuty event (trigger on fire, acknowledge and
// resolve from the card, resolve when Azure resolves), and a card.update of
// every pending approval whose target's freeze starts or ends.
type Notifier struct {
	Mattermost, PagerDuty bool
	Freeze                *freeze.Policy
	PublicURL             string // ICA's public URL, for the card link in PagerDuty
}

var _ store.IncidentNotifier = Notifier{}

// IncidentMessages implements store.IncidentNotifier.
func (n Notifier) IncidentMessages(tx store.ReadTx, c *store.IncidentChange) ([]*ica.OutboxMessage, error) {
	var out []*ica.OutboxMessage
	if n.Mattermost {
		out = append(out, bot.IncidentCardMessages(c.Cause, c.Next, c.Route.Channel, c.Route.Quiet)...)
	}
	if n.PagerDuty && c.Next.Paged {
		var ev *alerts.PagerDutyEvent
		switch c.Cause {
		case store.AlertOpened, store.AlertReopened:
			cardURL := ""
			if n.Mattermost && n.PublicURL != "" {
				cardURL = n.PublicURL + "/incidents/" + c.Next.ID + "/card"
			}
			e := alerts.TriggerEvent("", c.Alert, cardURL)
			ev = &e
		case store.CauseAcknowledged:
			e := alerts.AcknowledgeEvent("", c.Next.PagerDutyKey)
			ev = &e
		case store.AlertResolved, store.CauseResolvedByUser:
			e := alerts.ResolveEvent("", c.Next.PagerDutyKey)
			ev = &e
		}
		if ev != nil {
			m, err := alerts.NewEventMessage(*ev, strconv.Itoa(c.Next.Version))
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	if n.Mattermost && n.Freeze.Enabled() {
		was := c.Prev != nil && n.Freeze.Severe(c.Prev) && !c.PrevOverridden
		now := n.Freeze.Severe(c.Next) && !c.Overridden
		if was != now {
			targets := n.Freeze.Targets(c.Next)
			err := tx.PendingApprovals(func(a *ica.Approval) error {
				if slices.Contains(targets, a.Target) {
					out = append(out, bot.ApprovalCardUpdate(a.ID, fmt.Sprintf("%s:card:freeze:%s:v%d:f%d:%t", a.ID, c.Next.ID, c.Next.Version, c.Next.Fired, now)))
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
