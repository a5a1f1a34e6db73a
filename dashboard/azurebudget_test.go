package dashboard_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/dashboard"
	"github.com/ica-governance/ica/store"
)

// azureSource is the store as cmd/ica hands it to the dashboard, with the
// Azure budgets of ICA's scope.
type azureSource struct {
	storeSource
	scopes []string
}

func (s azureSource) Budget(ctx context.Context) (*ica.Budget, error) {
	return s.Store.BudgetWithAzure(ctx, s.monthly, s.threshold, s.scopes)
}

// TestDashboard_AzureBudgets: the budget section shows each Azure budget's
// latest report with its age, says which one the gate counts, and shows a
// report in another currency without adding it up.
func TestDashboard_AzureBudgets(t *testing.T) {
	st, clock := openStore(t, ts("2026-11-10T12:00:00Z"))
	ctx := context.Background()
	const scope = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
	usd := 120.0
	_, _, err := st.RecordCost(ctx, &ica.CostInput{ResourceType: ica.ResourceAKS, CostUSD: &usd, BillingPeriod: "2026-11-09"}, "ado")
	require.NoError(t, err)
	for _, r := range []*ica.AzureBudgetReport{
		{Name: "prod-monthly", Scope: scope, Amount: 5000, Spent: 3100, Currency: "USD", Threshold: 2500, ThresholdType: ica.ThresholdActual,
			Condition: ica.AlertFired, AsOf: clock.Now().Add(-3 * time.Hour), Schema: ica.SchemaCommon, DedupKey: "a"},
		{Name: "eu-\u202eteg", Scope: scope + "/resourcegroups/eu", Amount: 900, Spent: 800, Currency: "EUR", Threshold: 700,
			Condition: ica.AlertFired, AsOf: clock.Now().Add(-30 * time.Minute), Schema: ica.SchemaLegacyBudget, DedupKey: "b"},
	} {
		r.Key = ica.AzureBudgetKey(r.Scope, r.Name)
		_, err := st.RecordAzureBudget(ctx, r, nil, "azure-monitor")
		require.NoError(t, err)
	}
	src := azureSource{storeSource: storeSource{Store: st, monthly: 5000, threshold: 0.9}, scopes: []string{scope}}
	h := dashboard.New(dashboard.Deps{Source: src, Sessions: st, Secret: []byte("0123456789abcdef0123456789abcdef"),
		PublicURL: "http://ica.test", Clock: clock})
	s, err := h.Stats(ctx, "")
	require.NoError(t, err)
	require.Equal(t, 120.0, s.Budget.MonthToDate)
	require.Equal(t, 3100.0, s.Budget.GateMonthToDate, "Azure's fresh, higher actual for ICA's scope replaces ICA's month-to-date")
	require.Len(t, s.Budget.Azure, 2)

	page := renderPage(t, st, clock, src)
	require.Contains(t, page, `id="azure-budget-table"`)
	require.Contains(t, page, "prod-monthly")
	require.Contains(t, page, "$3,100.00")
	require.Contains(t, page, "3h 00m", "the report's age")
	require.Contains(t, page, "counted")
	require.Contains(t, page, "EUR 800.00")
	require.Contains(t, page, "not summed")
	require.Contains(t, page, "eu-&lt;U&#43;202E&gt;teg", "the budget's name is shown with its bidi override escaped")
	require.Contains(t, page, `data-figure="gate_month_to_date">$3,100.00`)
}

// renderPage signs in through a link and returns the dashboard page.
func renderPage(t *testing.T, st *store.Store, clock *ica.FakeClock, src dashboard.Source) string {
	t.Helper()
	s := newServerWith(t, st, clock, src)
	resp, _ := do(t, "POST", s.issue(t, "fin1"), map[string]string{"Origin": s.URL})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, body := do(t, "GET", s.URL+"/dashboard", nil, sessionCookie(t, resp))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.False(t, strings.Contains(body, "\u202e"))
	return body
}
