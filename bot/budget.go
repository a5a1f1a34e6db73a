package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

// KindBudgetNotice is a post in the finance channel: an Azure budget
// crossed one of its thresholds.
const KindBudgetNotice = "budget.notice"

type budgetNoticePayload struct {
	Text string `json:"text"`
}

// AzureBudgetNotice returns the finance channel's notice of an Azure budget
// notification: Azure sends one when a budget crosses a threshold (actual
// or forecast). A Resolved report says nothing new and returns nil. It does
// no I/O: it runs in the store's transaction.
func AzureBudgetNotice(r *ica.AzureBudgetReport) []*ica.OutboxMessage {
	if r.Condition == ica.AlertResolved {
		return nil
	}
	amt := func(v float64) string { return amountIn(v, r.Currency) }
	where := show(r.Scope)
	if r.SubscriptionName != "" {
		where = show(r.SubscriptionName) + " (" + where + ")"
	}
	var text string
	switch {
	case r.ThresholdType == ica.ThresholdForecasted && r.Forecast != nil:
		text = fmt.Sprintf("#### :crystal_ball: Azure budget %s is forecast past its threshold\n"+
			"Forecast for the period **%s** of a %s budget, past its threshold %s; spent so far %s. Scope %s.",
			show(r.Name), amt(*r.Forecast), amt(r.Amount), amt(r.Threshold), amt(r.Spent), where)
	case r.ThresholdType == ica.ThresholdForecasted:
		text = fmt.Sprintf("#### :crystal_ball: Azure budget %s is forecast past its threshold %s\n"+
			"Spent so far %s of a %s budget. Scope %s.", show(r.Name), amt(r.Threshold), amt(r.Spent), amt(r.Amount), where)
	default:
		text = fmt.Sprintf("#### :moneybag: Azure budget %s crossed its threshold\n"+
			"Spent **%s** of a %s budget (%s), past its threshold %s. Scope %s.",
			show(r.Name), amt(r.Spent), amt(r.Amount), pctOf(r.Spent, r.Amount), amt(r.Threshold), where)
	}
	if r.Schema == ica.SchemaLegacyBudget {
		text += fmt.Sprintf("\nReceived at %s; recorded in the ledger.", stamp(r.AsOf))
	} else {
		text += fmt.Sprintf("\nAs Azure reported it at %s; recorded in the ledger.", stamp(r.AsOf))
	}
	if !r.SameCurrency() {
		text += fmt.Sprintf(" In %s: shown, not added to ICA's %s figures.", show(r.Currency), ica.Currency)
	}
	raw, _ := json.Marshal(budgetNoticePayload{Text: text})
	return []*ica.OutboxMessage{{Destination: Destination, Kind: KindBudgetNotice, Key: "azure-budget:" + r.DedupKey,
		OrderKey: "azure-budget:" + r.Key, Payload: raw}}
}

// deliverBudgetNotice posts a budget notice in the finance channel.
func (b *Bot) deliverBudgetNotice(ctx context.Context, msg *ica.OutboxMessage) (bool, error) {
	if b.cfg.FinanceChannel == "" {
		return false, nil // nowhere to say it; the ledger has it
	}
	var p budgetNoticePayload
	if err := json.Unmarshal(msg.Payload, &p); err != nil {
		return false, fmt.Errorf("outbox message %d: bad payload: %w", msg.ID, err)
	}
	chID, retry, err := b.lookupChannel(ctx, b.cfg.FinanceChannel)
	if err != nil {
		return retry, err
	}
	post := &model.Post{ChannelId: chID, Message: p.Text, PendingPostId: b.pendingID(msg.Key, msg)}
	_, retry, err = call(ctx, "post the budget notice", func(ctx context.Context) (*model.Post, *model.Response, error) {
		return b.client.API().CreatePost(ctx, post)
	})
	return retry, err
}

// amountIn writes an amount in its currency: "$1,234.00" for ICA's, "EUR
// 1,234.00" for another.
func amountIn(v float64, currency string) string {
	c := strings.TrimSpace(currency)
	if c == "" || strings.EqualFold(c, ica.Currency) || c == "$" {
		return money(v)
	}
	return show(c) + " " + strings.TrimPrefix(money(v), "$")
}

func pctOf(v, of float64) string {
	if of <= 0 {
		return "no amount set"
	}
	return fmt.Sprintf("%.0f%%", 100*v/of)
}

// azureBudgetLines is the Azure part of the card's budget line: each Azure
// budget's latest report and its age, whether the gate counts it.
func azureBudgetLines(bud *ica.Budget, now time.Time) string {
	if len(bud.Azure) == 0 {
		return ""
	}
	var parts []string
	for i, v := range bud.Azure {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("+%d more", len(bud.Azure)-3))
			break
		}
		s := fmt.Sprintf("%s %s of %s, %s old", show(v.Name), amountIn(v.Spent, v.Currency), amountIn(v.Amount, v.Currency),
			FormatDuration(now.Sub(v.AsOf)))
		switch {
		case v.Gated:
			s += ", counted by the gate"
		case !v.SameCurrency():
			s += ", not summed"
		}
		parts = append(parts, s)
	}
	line := "; Azure budgets: " + strings.Join(parts, "; ")
	if bud.GateMonthToDate > bud.MonthToDate {
		line += fmt.Sprintf("; the gate counts %s month-to-date with Azure's actuals", money(bud.GateMonthToDate))
	}
	return line
}
