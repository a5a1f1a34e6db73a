package ica_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func TestCheckBudget_Edges(t *testing.T) {
	b := &ica.Budget{Month: "2026-11", MonthlyBudget: 10000, Threshold: 0.95, MonthToDate: 9000, PendingEstimates: 400}
	require.NoError(t, ica.CheckBudget(b, 100), "exactly at the threshold ($9,500) is allowed")
	err := ica.CheckBudget(b, 100.01)
	require.Equal(t, ica.EPOLICY, ica.ErrorCode(err))
	msg := ica.ErrorMessage(err)
	for _, want := range []string{"$100.01", "$9500.01", "$9000.00", "$400.00", "95%", "$10000.00"} {
		require.Contains(t, msg, want, "the refusal carries the numbers")
	}
	require.NoError(t, ica.CheckBudget(&ica.Budget{MonthlyBudget: 0, Threshold: 0.95, MonthToDate: 1e6}, 1e6), "budget 0: no gate")
	// Float sums of cents must not refuse an exact fit.
	require.NoError(t, ica.CheckBudget(&ica.Budget{MonthlyBudget: 100, Threshold: 1, MonthToDate: 0.1 + 0.2}, 99.7))
}

func TestForecast(t *testing.T) {
	now := time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC) // half of a 30-day month
	require.InDelta(t, 2000, ica.Forecast(1000, now), 0.001)
	require.Equal(t, 0.0, ica.Forecast(0, now))
	require.Equal(t, 5.0, ica.Forecast(5, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)))
}

func TestMonthStart_UTC(t *testing.T) {
	// 23:30 on Oct 31 in UTC-5 is Nov 1 in UTC: the month is November.
	loc := time.FixedZone("EST", -5*3600)
	require.Equal(t, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), ica.MonthStart(time.Date(2026, 10, 31, 23, 30, 0, 0, loc)))
}

func TestCostInput_Validate(t *testing.T) {
	v := func(f float64) *float64 { return &f }
	cases := map[string]struct {
		in    ica.CostInput
		field string
	}{
		"ok":           {ica.CostInput{ResourceType: "aks", CostUSD: v(12.5), BillingPeriod: "2026-11-02"}, ""},
		"negative":     {ica.CostInput{ResourceType: "aks", CostUSD: v(-1), BillingPeriod: "2026-11-02"}, "cost_usd"},
		"NaN":          {ica.CostInput{ResourceType: "aks", CostUSD: v(math.NaN()), BillingPeriod: "2026-11-02"}, "cost_usd"},
		"missing cost": {ica.CostInput{ResourceType: "aks", BillingPeriod: "2026-11-02"}, "cost_usd"},
		"huge":         {ica.CostInput{ResourceType: "aks", CostUSD: v(1e12), BillingPeriod: "2026-11-02"}, "cost_usd"},
		"bad type":     {ica.CostInput{ResourceType: "vm", CostUSD: v(1), BillingPeriod: "2026-11-02"}, "resource_type"},
		"bad period":   {ica.CostInput{ResourceType: "acr", CostUSD: v(1), BillingPeriod: "2026-13-01"}, "billing_period"},
		"month only":   {ica.CostInput{ResourceType: "acr", CostUSD: v(1), BillingPeriod: "2026-11"}, "billing_period"},
		"bad run id":   {ica.CostInput{RunID: "a b", ResourceType: "blob", CostUSD: v(1), BillingPeriod: "2026-11-02"}, "run_id"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := c.in.Validate()
			if c.field == "" {
				require.NoError(t, err)
				return
			}
			require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
			require.Equal(t, c.field, ica.ErrorField(err))
		})
	}
}
