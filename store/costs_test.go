package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
)

func cost(run, typ, day string, usd float64) *ica.CostInput {
	return &ica.CostInput{RunID: run, ResourceType: typ, CostUSD: &usd, BillingPeriod: day}
}

func TestStore_RecordCost_IdempotentAndCorrected(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	_, _, err := s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	_, created, err := s.RecordCost(ctx, cost("r1", "aks", "2026-11-02", 100), "ado")
	require.NoError(t, err)
	require.True(t, created)
	n := s.LedgerEntries()
	_, created, err = s.RecordCost(ctx, cost("r1", "aks", "2026-11-02", 100), "ado")
	require.NoError(t, err)
	require.False(t, created, "a repeat changes nothing")
	require.Equal(t, n, s.LedgerEntries())
	_, created, err = s.RecordCost(ctx, cost("r1", "aks", "2026-11-02", 120), "ado")
	require.NoError(t, err)
	require.True(t, created)
	e, _ := s.Entry(s.LedgerEntries())
	require.Equal(t, "cost.corrected", e.Kind)
	_, _, err = s.RecordCost(ctx, cost("nope", "aks", "2026-11-02", 1), "ado")
	require.Equal(t, ica.ENOTFOUND, ica.ErrorCode(err))

	b, err := s.Budget(ctx, 1000, 0.95)
	require.NoError(t, err)
	require.Equal(t, 120.0, b.MonthToDate)
	require.Equal(t, 120.0, b.ByResourceType["aks"])
}

func TestStore_Budget_MonthBoundaryUTC(t *testing.T) {
	s, clock := MustOpen(t)
	ctx := context.Background()
	clock.Set(time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC))
	for _, c := range []*ica.CostInput{cost("", "aks", "2026-10-31", 500), cost("", "acr", "2026-11-01", 10), cost("", "blob", "2026-11-30", 5)} {
		_, _, err := s.RecordCost(ctx, c, "ado")
		require.NoError(t, err)
	}
	b, err := s.Budget(ctx, 1000, 0.95)
	require.NoError(t, err)
	require.Equal(t, "2026-11", b.Month)
	require.Equal(t, 15.0, b.MonthToDate, "October's cost is not November's")
	clock.Set(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	b, err = s.Budget(ctx, 1000, 0.95)
	require.NoError(t, err)
	require.Equal(t, 0.0, b.MonthToDate, "a new month starts at zero at midnight UTC")
}

func TestStore_UpsertCosts_Idempotent(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	entries := []*ica.CostEntry{
		{Key: "cm:sub1:2026-11-01:aks", ResourceType: "aks", CostUSD: 40, BillingPeriod: "2026-11-01", Source: "cost-management", Scope: "sub1"},
		{Key: "cm:sub1:2026-11-01:acr", ResourceType: "acr", CostUSD: 2, BillingPeriod: "2026-11-01", Source: "cost-management", Scope: "sub1"},
	}
	n, err := s.UpsertCosts(ctx, entries, "cost-sync")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = s.UpsertCosts(ctx, entries, "cost-sync")
	require.NoError(t, err)
	require.Equal(t, 0, n, "a repeated sync changes nothing")
	b, err := s.Budget(ctx, 100, 0.95)
	require.NoError(t, err)
	require.Equal(t, 42.0, b.MonthToDate)
	require.NotNil(t, b.AsOf)
}

func TestStore_BudgetGate(t *testing.T) {
	s, _ := MustOpen(t, func(o *store.Options) { o.Gates = []store.ApprovalGate{store.BudgetGate(1000, 0.95)} })
	ctx := context.Background()
	_, _, err := s.RecordCost(ctx, cost("", "aks", "2026-11-01", 500), "ado")
	require.NoError(t, err)
	_, _, err = s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	_, _, err = s.StartRun(ctx, start("r2"), "ado")
	require.NoError(t, err)
	_, created, err := s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r1", DeploymentTarget: "production", EstimatedCost: ptr(400.0)}, "ado")
	require.NoError(t, err)
	require.True(t, created)
	before := s.LedgerEntries()
	// 500 actual + 400 pending + 50.01 > 950.
	_, _, err = s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r2", DeploymentTarget: "production", EstimatedCost: ptr(50.01)}, "ado")
	require.Equal(t, ica.EPOLICY, ica.ErrorCode(err))
	require.Contains(t, ica.ErrorMessage(err), "pending approvals $400.00")
	require.Equal(t, before, s.LedgerEntries(), "a refused request writes nothing")
	_, _, err = s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r2", DeploymentTarget: "production", EstimatedCost: ptr(50.0)}, "ado")
	require.NoError(t, err, "exactly at the threshold is allowed")
}
