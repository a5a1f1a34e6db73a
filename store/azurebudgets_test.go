package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
)

const sub = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"

func azureReport(name string, spent float64, asOf time.Time, dedup string) *ica.AzureBudgetReport {
	return &ica.AzureBudgetReport{Key: ica.AzureBudgetKey(sub, name), Name: name, Scope: ica.NormalizeScope(sub), Amount: 1000,
		Spent: spent, Currency: "USD", Threshold: 800, ThresholdType: ica.ThresholdActual, BudgetType: "Cost",
		Condition: ica.AlertFired, AsOf: asOf, Schema: ica.SchemaCommon, DedupKey: dedup}
}

func TestStore_RecordAzureBudget_DedupLatestAndOutbox(t *testing.T) {
	s, clock := MustOpen(t)
	ctx := context.Background()
	msg := &ica.OutboxMessage{Destination: "mattermost", Kind: "budget.notice", Key: "azure-budget:d1", Payload: []byte(`{}`)}
	created, err := s.RecordAzureBudget(ctx, azureReport("prod", 900, clock.Now(), "d1"), []byte(`{"raw":true}`), "azure-monitor", msg)
	require.NoError(t, err)
	require.True(t, created)
	n := s.LedgerEntries()
	e, err := s.Entry(n)
	require.NoError(t, err)
	require.Equal(t, ica.KindAzureBudget, e.Kind)
	require.Contains(t, string(e.Data), `"payload":{"raw":true}`, "the body as received is in the ledger")
	require.EqualValues(t, 1, s.OutboxDepth())

	// A repeated delivery writes nothing and sends nothing.
	created, err = s.RecordAzureBudget(ctx, azureReport("prod", 900, clock.Now(), "d1"), []byte(`{"raw":true}`), "azure-monitor",
		&ica.OutboxMessage{Destination: "mattermost", Kind: "budget.notice", Key: "azure-budget:d1-again", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, n, s.LedgerEntries())
	require.EqualValues(t, 1, s.OutboxDepth())

	// A later report replaces the latest; an older one is recorded, not shown.
	clock.Advance(time.Hour)
	_, err = s.RecordAzureBudget(ctx, azureReport("prod", 950, clock.Now(), "d2"), nil, "azure-monitor")
	require.NoError(t, err)
	_, err = s.RecordAzureBudget(ctx, azureReport("prod", 700, clock.Now().Add(-2*time.Hour), "d3"), nil, "azure-monitor")
	require.NoError(t, err)
	require.Equal(t, n+2, s.LedgerEntries())
	list, err := s.AzureBudgets(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, 950.0, list[0].Spent)
	require.Equal(t, clock.Now(), list[0].ReceivedAt)

	// A legacy report without a time is stamped with the store's clock.
	r := azureReport("legacy", 10, time.Time{}, "sha256:x")
	_, err = s.RecordAzureBudget(ctx, r, nil, "azure-monitor")
	require.NoError(t, err)
	list, _ = s.AzureBudgets(ctx)
	require.Len(t, list, 2)
	for _, l := range list {
		require.False(t, l.AsOf.IsZero())
	}

	// Refused without writing.
	bad := azureReport("", 10, clock.Now(), "d9")
	_, err = s.RecordAzureBudget(ctx, bad, nil, "azure-monitor")
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
	require.Equal(t, n+3, s.LedgerEntries())
}

// TestStore_AzureBudgetGate: a fresh Azure actual for ICA's scope, higher
// than ICA's own figure for it, is what the gate counts; forecasts, other
// scopes, stale reports and other currencies are not.
func TestStore_AzureBudgetGate(t *testing.T) {
	scopes := []string{"subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"}
	s, clock := MustOpen(t, func(o *store.Options) {
		o.Gates = []store.ApprovalGate{store.AzureBudgetGate(1000, 1, scopes)}
	})
	ctx := context.Background()
	clock.Set(time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC))
	// ICA knows $100 for the scope (synced) and $50 posted without a scope.
	_, err := s.UpsertCosts(ctx, []*ica.CostEntry{{Key: "cm:" + scopes[0] + ":2026-11-09:aks", ResourceType: "aks", CostUSD: 100,
		BillingPeriod: "2026-11-09", Source: "cost-management", Scope: scopes[0]}}, "cost-management")
	require.NoError(t, err)
	_, _, err = s.RecordCost(ctx, cost("", "acr", "2026-11-09", 50), "ado")
	require.NoError(t, err)
	_, _, err = s.StartRun(ctx, start("g1"), "ado")
	require.NoError(t, err)
	request := func(est float64) error {
		_, _, err := s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "g1", DeploymentTarget: ica.TargetStaging, EstimatedCost: &est}, "ado")
		return err
	}

	record := func(r *ica.AzureBudgetReport) {
		t.Helper()
		_, err := s.RecordAzureBudget(ctx, r, nil, "azure-monitor")
		require.NoError(t, err)
	}
	// Ignored by the gate: a forecast-only figure, another scope, another
	// currency, a report from yesterday.
	fc := azureReport("forecast", 100, clock.Now(), "f1")
	f := 5000.0
	fc.Forecast, fc.ThresholdType = &f, ica.ThresholdForecasted
	record(fc)
	other := azureReport("other", 5000, clock.Now(), "o1")
	other.Scope, other.Key = "/subscriptions/ffff", ica.AzureBudgetKey("/subscriptions/ffff", "other")
	record(other)
	eur := azureReport("eur", 5000, clock.Now(), "e1")
	eur.Currency = "EUR"
	record(eur)
	record(azureReport("stale", 5000, clock.Now().Add(-25*time.Hour), "s1"))

	b, err := s.BudgetWithAzure(ctx, 1000, 1, scopes)
	require.NoError(t, err)
	require.Equal(t, 150.0, b.MonthToDate)
	require.Equal(t, 150.0, b.GateMonthToDate, "nothing Azure said counts yet")
	require.Len(t, b.Azure, 4)
	notes := map[string]string{}
	for _, v := range b.Azure {
		require.False(t, v.Gated, v.Name)
		notes[v.Name] = v.Note
	}
	require.Contains(t, notes["eur"], "not summed")
	require.Contains(t, notes["stale"], "older than 24 h")
	require.Contains(t, notes["other"], "another scope")
	require.NoError(t, request(800), "150 + 800 is under 1000")

	// Azure says $600 was spent on the scope ICA knows $100 of: the gate
	// counts 600 (not 600 + 50: posted costs are inside the scope), so the
	// pending 800 and 1 more do not fit.
	record(azureReport("prod", 600, clock.Now().Add(-time.Hour), "p1"))
	b, err = s.BudgetWithAzure(ctx, 1000, 1, scopes)
	require.NoError(t, err)
	require.Equal(t, 150.0, b.MonthToDate, "ICA's own figure is unchanged")
	require.Equal(t, 600.0, b.GateMonthToDate, "Azure's actual for the scope replaces ICA's month-to-date")
	_, _, err = s.StartRun(ctx, start("g2"), "ado")
	require.NoError(t, err)
	est := 1.0
	_, _, err = s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "g2", DeploymentTarget: ica.TargetProduction, EstimatedCost: &est}, "ado")
	require.Equal(t, ica.EPOLICY, ica.ErrorCode(err))
	require.Contains(t, ica.ErrorMessage(err), "Azure's budget actuals $600.00")

	// 25 hours later the Azure figure is stale: ICA's own counts again.
	clock.Advance(25 * time.Hour)
	b, err = s.BudgetWithAzure(ctx, 1000, 1, scopes)
	require.NoError(t, err)
	require.Equal(t, 150.0, b.GateMonthToDate)
}
