package ica_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func TestApplyAzureBudgets(t *testing.T) {
	now := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	const a, b = "/subscriptions/a", "/subscriptions/b"
	rep := func(name, scope string, spent float64, age time.Duration) *ica.AzureBudgetReport {
		return &ica.AzureBudgetReport{Name: name, Scope: scope, Spent: spent, Amount: 1000, Currency: "USD", AsOf: now.Add(-age), BudgetType: "Cost"}
	}
	tests := []struct {
		name    string
		mtd     float64
		scopes  []string
		byScope map[string]float64
		reports []*ica.AzureBudgetReport
		gate    float64
		gated   []string
	}{
		{"no reports", 300, []string{a}, map[string]float64{a: 200}, nil, 300, nil},
		{"higher and fresh replaces", 300, []string{"subscriptions/A/"}, map[string]float64{a: 200}, []*ica.AzureBudgetReport{rep("x", a, 450, time.Hour)}, 450, []string{"x"}},
		{"lower is ignored", 300, []string{a}, map[string]float64{a: 200}, []*ica.AzureBudgetReport{rep("x", a, 250, time.Hour)}, 300, nil},
		{"higher than the scope, lower than ICA's total", 300, []string{a}, map[string]float64{a: 100}, []*ica.AzureBudgetReport{rep("x", a, 250, time.Hour)}, 300, nil},
		{"24 hours old is too old", 300, []string{a}, map[string]float64{a: 200}, []*ica.AzureBudgetReport{rep("x", a, 900, 24*time.Hour)}, 300, nil},
		{"two scopes: per scope, the higher", 500, []string{a, b}, map[string]float64{a: 200, b: 300},
			[]*ica.AzureBudgetReport{rep("x", a, 450, time.Hour), rep("y", b, 100, time.Hour)}, 750, []string{"x"}},
		{"two budgets of one scope: the higher", 100, []string{a}, map[string]float64{a: 100},
			[]*ica.AzureBudgetReport{rep("x", a, 400, time.Hour), rep("y", a, 600, 2*time.Hour)}, 600, []string{"y"}},
		{"another scope is shown only", 100, []string{a}, nil, []*ica.AzureBudgetReport{rep("x", b, 900, time.Hour)}, 100, nil},
		{"another currency is shown only", 100, []string{a}, nil, []*ica.AzureBudgetReport{func() *ica.AzureBudgetReport {
			r := rep("x", a, 900, time.Hour)
			r.Currency = "EUR"
			return r
		}()}, 100, nil},
		{"last month's report", 100, []string{a}, nil, []*ica.AzureBudgetReport{rep("x", a, 900, 12*24*time.Hour)}, 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bud := &ica.Budget{MonthToDate: tt.mtd, MonthlyBudget: 1000, Threshold: 1}
			for _, r := range tt.reports {
				r.Scope = ica.NormalizeScope(r.Scope)
			}
			ica.ApplyAzureBudgets(bud, tt.reports, tt.scopes, tt.byScope, now)
			require.Equal(t, tt.gate, bud.GateMonthToDate)
			require.Len(t, bud.Azure, len(tt.reports), "every report is shown")
			var gated []string
			for _, v := range bud.Azure {
				if v.Gated {
					gated = append(gated, v.Name)
				}
				require.NotEmpty(t, v.Note, v.Name)
			}
			require.Equal(t, tt.gated, gated)
		})
	}
	// The gate refuses on the higher figure and says so.
	bud := &ica.Budget{Month: "2026-11", MonthToDate: 100, GateMonthToDate: 900, MonthlyBudget: 1000, Threshold: 1}
	err := ica.CheckBudget(bud, 200)
	require.Equal(t, ica.EPOLICY, ica.ErrorCode(err))
	require.Contains(t, ica.ErrorMessage(err), "with Azure's budget actuals $900.00")
	require.NoError(t, ica.CheckBudget(bud, 100))
}
