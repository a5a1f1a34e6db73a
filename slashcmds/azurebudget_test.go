package slashcmds

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// TestBudget_AzureBudgets: /ica budget shows each Azure budget's latest
// report and its age beside ICA's figures, says which one the gate counts,
// and shows another currency without adding it up.
func TestBudget_AzureBudgets(t *testing.T) {
	w := newWorld(t)
	sampleData(w.q)
	f := 12000.0
	w.q.bud.GateMonthToDate = 9800
	w.q.bud.Azure = []*ica.AzureBudgetView{
		{AzureBudgetReport: &ica.AzureBudgetReport{Name: "prod-monthly", Scope: "/subscriptions/a", Spent: 9800, Amount: 10000, Forecast: &f,
			Currency: "USD", AsOf: t0.Add(-3 * time.Hour)}, Gated: true, Note: "higher than ICA's $9600.00 for this scope: the gate counts it"},
		{AzureBudgetReport: &ica.AzureBudgetReport{Name: "eu|\u202ebudget", Scope: "/subscriptions/b", Spent: 800, Amount: 900,
			Currency: "EUR", AsOf: t0.Add(-30 * time.Minute)}, Note: "in EUR: shown, not summed with ICA's USD"},
	}
	reply := w.slash("tech1", "deployments", "/ica budget")
	for _, want := range []string{"| The gate counts | $9,800.00 (Azure's budget actuals) |", "**Azure budgets**",
		"| prod-monthly | $9,800.00 | $10,000.00 | $12,000.00 | 3h 0m | counted |", "EUR 800.00", "30m", "not summed",
		"eu\\|\\<U+202E\\>budget"} {
		require.Contains(t, reply, want)
	}
	require.NotContains(t, reply, "\u202e")
	require.Contains(t, reply, "past the 95% gate", "the warning follows the figure the gate counts")
}
