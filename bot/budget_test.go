package bot_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/bot"
)

func noticeText(t *testing.T, r *ica.AzureBudgetReport) string {
	t.Helper()
	msgs := bot.AzureBudgetNotice(r)
	require.Len(t, msgs, 1)
	require.Equal(t, bot.Destination, msgs[0].Destination)
	require.Equal(t, bot.KindBudgetNotice, msgs[0].Kind)
	require.Equal(t, "azure-budget:"+r.DedupKey, msgs[0].Key, "one notice per delivery")
	var p struct{ Text string }
	require.NoError(t, json.Unmarshal(msgs[0].Payload, &p))
	return p.Text
}

func TestAzureBudgetNotice(t *testing.T) {
	at := time.Date(2026, 11, 10, 9, 30, 0, 0, time.UTC)
	base := func() *ica.AzureBudgetReport {
		return &ica.AzureBudgetReport{Name: "prod", Key: "k", Scope: "/subscriptions/s", Amount: 1000, Spent: 850, Currency: "USD",
			Threshold: 800, ThresholdType: ica.ThresholdActual, Condition: ica.AlertFired, AsOf: at, Schema: ica.SchemaCommon, DedupKey: "d"}
	}
	text := noticeText(t, base())
	require.Contains(t, text, "Azure budget prod crossed its threshold")
	require.Contains(t, text, "Spent **$850.00** of a $1,000.00 budget (85%), past its threshold $800.00. Scope /subscriptions/s.")
	require.Contains(t, text, "2026-11-10 09:30 UTC")

	r := base()
	f := 1200.0
	r.ThresholdType, r.Forecast, r.Threshold = ica.ThresholdForecasted, &f, 1000
	text = noticeText(t, r)
	require.Contains(t, text, "forecast past its threshold")
	require.Contains(t, text, "Forecast for the period **$1,200.00** of a $1,000.00 budget")

	r = base()
	r.Currency, r.Name, r.SubscriptionName = "EUR", "eu\u202ebudget", "Contoso\u200b EU"
	text = noticeText(t, r)
	require.Contains(t, text, "EUR 850.00")
	require.Contains(t, text, "not added to ICA's USD figures")
	require.Contains(t, text, "eu<U+202E>budget")
	require.Contains(t, text, "Contoso<U+200B> EU")
	require.NotContains(t, text, "\u202e")

	r = base()
	r.Schema = ica.SchemaLegacyBudget
	require.Contains(t, noticeText(t, r), "Received at 2026-11-10 09:30 UTC")

	r = base()
	r.Condition = ica.AlertResolved
	require.Empty(t, bot.AzureBudgetNotice(r), "a Resolved report says nothing new")
}

// Two ledgers on one bot hear of the same Azure budget crossing within
// Mattermost's de-duplication window: each posts its notice (the pending
// post id names the ledger, not only the delivery).
func TestAzureBudgetNotice_TwoLedgers(t *testing.T) {
	clock, mm := newMattermost(t)
	mm.AddChannel("ica", "finance")
	mm.Join("finance", "ica-bot")
	finance := func(c *bot.Config) { c.FinanceChannel = "finance" }
	for _, h := range []*harness{newHarnessOn(t, clock, mm, finance), newHarnessOn(t, clock, mm, finance)} {
		r := &ica.AzureBudgetReport{Name: "prod", Key: "k", Scope: "/subscriptions/s", Amount: 1000, Spent: 850, Currency: "USD",
			Threshold: 800, ThresholdType: ica.ThresholdActual, Condition: ica.AlertFired, AsOf: clock.Now(), Schema: ica.SchemaCommon, DedupKey: "same-alert"}
		_, err := h.store.RecordAzureBudget(context.Background(), r, nil, "azure-monitor", bot.AzureBudgetNotice(r)...)
		require.NoError(t, err)
		h.settle()
	}
	require.Len(t, mm.Posts("finance"), 2, "one notice per ledger")
}
