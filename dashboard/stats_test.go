package dashboard_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/dashboard"
)

// TestCompute_SmallLedger checks every figure against values computed by
// hand from the story in smallLedger (helpers_test.go).
func TestCompute_SmallLedger(t *testing.T) {
	st, clock := smallLedger(t)
	ctx := context.Background()
	src := storeSource{Store: st, monthly: 5000, threshold: 0.9}
	in, err := dashboard.Load(ctx, src, clock.Now())
	require.NoError(t, err)
	s := dashboard.Compute(in, "")

	t.Run("budget", func(t *testing.T) {
		b := s.Budget
		require.Equal(t, "2026-11", b.Month)
		require.Equal(t, 30, b.DaysInMonth)
		require.Equal(t, 3, b.DayOfMonth)
		// 100 + 200 + 50 + 30; the 500 of 10-31 belongs to October.
		require.InDelta(t, 380, b.MonthToDate, 1e-9)
		// 2.5 of 30 days elapsed: 380 × 12.
		require.InDelta(t, 4560, b.Forecast, 1e-9)
		require.InDelta(t, 4500, b.ThresholdUSD, 1e-9)
		require.InDelta(t, 0.076, b.UsedShare, 1e-12)
		require.InDelta(t, 425, b.PendingEstimates, 1e-9) // A-6 400 + A-7 25
		require.Equal(t, dashboard.BudgetForecastOverThreshold, b.State)
		require.Equal(t, []dashboard.DaySpend{
			{Day: "2026-11-01", Spend: 100, Cumulative: 100},
			{Day: "2026-11-02", Spend: 250, Cumulative: 350},
			{Day: "2026-11-03", Spend: 30, Cumulative: 380},
		}, b.Days)
		// The store's own month-to-date agrees.
		sb, err := src.Budget(ctx)
		require.NoError(t, err)
		require.InDelta(t, sb.MonthToDate, b.MonthToDate, 1e-9)
	})

	t.Run("approvals", func(t *testing.T) {
		a := s.Approvals
		require.Equal(t, ts("2026-09-14T00:00:00Z"), a.From)
		require.Equal(t, 7200.0, a.TechnicalTargetSeconds)
		require.Equal(t, 14400.0, a.BusinessTargetSeconds)
		// A-2 … A-7 (A-1 is before the window); final, A-4 (expired), A-5.
		require.Equal(t, dashboard.TargetSLA{Requests: 6, Final: 4, Expired: 1, ExpiredShare: 0.25,
			// technical: 1 h, 30 min, 3 h, 45 min → median (45 min + 1 h)/2, p90 the 4th of 4.
			Technical: dashboard.Dist{N: 4, MedianSeconds: hours(0.875), P90Seconds: hours(3)},
			// business: 3 h, 1 h 30 → median 2 h 15, p90 the 2nd of 2.
			Business: dashboard.Dist{N: 2, MedianSeconds: hours(2.25), P90Seconds: hours(3)}}, a.All)
		require.Equal(t, []dashboard.TargetSLA{
			{Target: ica.TargetStaging, Requests: 2, Final: 1,
				Technical: dashboard.Dist{N: 1, MedianSeconds: hours(0.5), P90Seconds: hours(0.5)},
				Business:  dashboard.Dist{N: 1, MedianSeconds: hours(1.5), P90Seconds: hours(1.5)}},
			{Target: ica.TargetProduction, Requests: 4, Final: 3, Expired: 1, ExpiredShare: 1.0 / 3,
				Technical: dashboard.Dist{N: 3, MedianSeconds: hours(1), P90Seconds: hours(3)},
				Business:  dashboard.Dist{N: 1, MedianSeconds: hours(3), P90Seconds: hours(3)}},
		}, a.ByTarget)
		require.Len(t, a.Weeks, dashboard.SLAWeeks)
		require.Equal(t, "2026-09-14", a.Weeks[0].Week)
		require.Equal(t, "2026-11-02", a.Weeks[7].Week)
		require.Equal(t, dashboard.TargetSLA{Requests: 2, Final: 2,
			Technical: dashboard.Dist{N: 2, MedianSeconds: hours(0.75), P90Seconds: hours(1)},
			Business:  dashboard.Dist{N: 2, MedianSeconds: hours(2.25), P90Seconds: hours(3)}}, a.Weeks[0].All)
		require.Len(t, a.Weeks[0].Targets, 2)
		for i := 1; i <= 5; i++ {
			require.Equal(t, dashboard.TargetSLA{}, a.Weeks[i].All, "week %s", a.Weeks[i].Week)
		}
		require.Equal(t, dashboard.TargetSLA{Requests: 2, Final: 2, Expired: 1, ExpiredShare: 0.5,
			Technical: dashboard.Dist{N: 1, MedianSeconds: hours(3), P90Seconds: hours(3)}}, a.Weeks[6].All)
		require.Equal(t, dashboard.TargetSLA{Requests: 2,
			Technical: dashboard.Dist{N: 1, MedianSeconds: hours(0.75), P90Seconds: hours(0.75)}}, a.Weeks[7].All)
		// Who is slow: alice (technical 1 h and 3 h), bob (business 2 h and
		// 1 h after the technical decision), carol (30 and 45 min).
		require.Equal(t, []dashboard.ApproverSLA{
			{Username: "alice", Step: ica.StepTechnical, Dist: dashboard.Dist{N: 2, MedianSeconds: hours(2), P90Seconds: hours(3)}},
			{Username: "bob", Step: ica.StepBusiness, Dist: dashboard.Dist{N: 2, MedianSeconds: hours(1.5), P90Seconds: hours(2)}},
			{Username: "carol", Step: ica.StepTechnical, Dist: dashboard.Dist{N: 2, MedianSeconds: hours(0.625), P90Seconds: hours(0.75)}},
		}, a.Approvers)
		// Pending, oldest first: A-6 waits for business past its deadline,
		// A-7 for technical.
		require.Len(t, a.Pending, 2)
		require.Equal(t, "A-6", a.Pending[0].ID)
		require.Equal(t, ica.StepBusiness, a.Pending[0].Step)
		require.Equal(t, hours(27), a.Pending[0].AgeSeconds)
		require.True(t, a.Pending[0].Overdue)
		require.Equal(t, "A-7", a.Pending[1].ID)
		require.Equal(t, ica.StepTechnical, a.Pending[1].Step)
		require.Equal(t, 1800.0, a.Pending[1].AgeSeconds)
		require.False(t, a.Pending[1].Overdue)
		require.Equal(t, "api", a.Pending[1].Pipeline)
	})

	t.Run("runs", func(t *testing.T) {
		r := s.Runs
		require.Equal(t, ts("2026-10-05T00:00:00Z"), r.From)
		require.Len(t, r.Days, 30)
		require.Equal(t, "2026-10-05", r.Days[0].Day)
		require.Equal(t, "2026-11-03", r.Days[29].Day)
		want := map[string]dashboard.RunDay{
			"2026-10-27": {Day: "2026-10-27", Failed: 1},
			"2026-10-31": {Day: "2026-10-31", Success: 1}, // 23:59:59 UTC
			"2026-11-01": {Day: "2026-11-01", Failed: 1},  // 00:00:00 UTC
			"2026-11-02": {Day: "2026-11-02", Failed: 1},
			"2026-11-03": {Day: "2026-11-03", Cancelled: 1, Running: 1},
		}
		for _, d := range r.Days {
			w, ok := want[d.Day]
			if !ok {
				w = dashboard.RunDay{Day: d.Day}
			}
			require.Equal(t, w, d)
		}
		require.Equal(t, 26, dayIndex("2026-10-31"))
		require.Equal(t, dashboard.RunDay{Success: 1, Failed: 3, Cancelled: 1, Running: 1}, r.Totals)
		require.InDelta(t, 0.2, r.SuccessShare, 1e-12)
		require.Equal(t, 2, r.FailedThisWeek) // r2, r3; r6 is 7 days 4 hours old
		require.Len(t, r.Failed, 2)
		require.Equal(t, "r3", r.Failed[0].RunID)
		require.Equal(t, "web", r.Failed[0].Pipeline)
		require.Equal(t, "r2", r.Failed[1].RunID)
		require.Equal(t, []string{"api", "web"}, s.Pipelines)
	})

	t.Run("runs of one pipeline", func(t *testing.T) {
		api := dashboard.Compute(in, "api")
		require.Equal(t, "api", api.Pipeline)
		require.Equal(t, dashboard.RunDay{Success: 1, Failed: 1, Running: 1}, api.Runs.Totals)
		require.InDelta(t, 0.5, api.Runs.SuccessShare, 1e-12)
		require.Equal(t, 1, api.Runs.FailedThisWeek)
		require.Equal(t, []string{"api", "web"}, api.Pipelines)
		// Other sections do not depend on the filter.
		require.Equal(t, s.Approvals, api.Approvals)
		require.Equal(t, s.Budget, api.Budget)
	})

	t.Run("incidents", func(t *testing.T) {
		i := s.Incidents
		require.Equal(t, 2, i.Total)
		require.Equal(t, []dashboard.SeverityCount{{Severity: ica.Sev0}, {Severity: ica.Sev1, Open: 1}, {Severity: ica.Sev2},
			{Severity: ica.Sev3, Acknowledged: 1}, {Severity: ica.Sev4}}, i.BySeverity)
		require.Len(t, i.List, 2)
		require.Equal(t, ica.Sev1, i.List[0].Severity)
		require.Equal(t, ica.IncidentAcknowledged, i.List[1].Status)
	})

	t.Run("ledger", func(t *testing.T) {
		seq, hash, err := st.Head()
		require.NoError(t, err)
		require.Len(t, s.Ledger, dashboard.LedgerRows)
		require.Equal(t, seq, s.Ledger[0].Seq)
		require.Equal(t, hash, s.Ledger[0].Hash)
		for i := 1; i < len(s.Ledger); i++ {
			require.Equal(t, s.Ledger[i-1].Seq-1, s.Ledger[i].Seq)
			require.Equal(t, s.Ledger[i].Hash, s.Ledger[i-1].PrevHash, "the chain links")
			e, err := st.Entry(s.Ledger[i].Seq)
			require.NoError(t, err)
			require.Equal(t, e.Hash, s.Ledger[i].Hash)
		}
	})
}

// TestCompute_Empty: a new ledger renders zeros, not errors.
func TestCompute_Empty(t *testing.T) {
	st, clock := openStore(t, ts("2026-03-01T00:00:00Z"))
	in, err := dashboard.Load(context.Background(), storeSource{Store: st}, clock.Now())
	require.NoError(t, err)
	s := dashboard.Compute(in, "")
	require.Equal(t, dashboard.BudgetNone, s.Budget.State)
	require.Equal(t, 0.0, s.Budget.Forecast)
	require.Len(t, s.Budget.Days, 1)
	require.Equal(t, 0, s.Runs.Totals.Total())
	require.Empty(t, s.Approvals.Pending)
	require.Empty(t, s.Ledger)
	require.Equal(t, 0, s.Incidents.Total)
}

// TestStore_ApprovalSummaries_Window checks the binary search at the window's
// edges (the first approval exactly at from, the last just before to).
func TestStore_ApprovalSummaries_Window(t *testing.T) {
	st, clock := openStore(t, ts("2026-01-01T00:00:00Z"))
	b := &ledgerBuilder{tb: t, st: st, clock: clock, ctx: context.Background()}
	var times []time.Time
	for i := range 37 {
		id := "w" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		b.at(ts("2026-01-01T00:00:00Z").Add(time.Duration(i) * time.Hour).Format(time.RFC3339))
		b.start(id, "p")
		b.request(id, ica.TargetStaging, 1)
		times = append(times, clock.Now())
	}
	for _, c := range []struct{ from, to, want int }{{0, 37, 37}, {5, 6, 1}, {10, 20, 10}, {36, 37, 1}, {0, 1, 1}} {
		var got []string
		err := st.ApprovalSummaries(context.Background(), times[c.from], times[min(c.to, 36)].Add(time.Duration(c.to/37)*time.Hour), func(a *ica.Approval) error {
			got = append(got, a.ID)
			return nil
		})
		require.NoError(t, err)
		require.Len(t, got, c.want, "window %d..%d", c.from, c.to)
	}
	n := 0
	require.NoError(t, st.ApprovalSummaries(context.Background(), times[36].Add(time.Second), times[36].Add(time.Hour), func(*ica.Approval) error { n++; return nil }))
	require.Zero(t, n)
}

func TestCompute_UnusedApprovals(t *testing.T) {
	now := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	at := now.Add(-24 * time.Hour)
	in := &dashboard.Input{Now: now,
		Runs: []dashboard.RunRow{{Start: at, RunID: "r1", Status: ica.RunSuccess}, {Start: at, RunID: "r2", Status: ica.RunSuccess},
			{Start: at, RunID: "r3", Status: ica.RunRunning}, {Start: at, RunID: "r4", Status: ica.RunFailed}},
		Approvals: []dashboard.ApprovalRow{
			{ID: "A-1", RunID: "r1", Status: ica.ApprovalApproved, CreatedAt: at},             // finished, never used
			{ID: "A-2", RunID: "r2", Status: ica.ApprovalApproved, CreatedAt: at, Used: true}, // used
			{ID: "A-3", RunID: "r3", Status: ica.ApprovalApproved, CreatedAt: at},             // still running
			{ID: "A-4", RunID: "r4", Status: ica.ApprovalRejected, CreatedAt: at},             // not approved
		}}
	require.Equal(t, 1, dashboard.Compute(in, "").Approvals.UnusedApprovals)
}
