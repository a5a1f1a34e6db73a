package pipelines_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/pipelines"
)

func pendingApproval(now time.Time) *ica.Approval {
	return &ica.Approval{ID: "A-12", RunID: "1234", Target: ica.TargetProduction, EstimatedCost: 1234.5,
		Status: ica.ApprovalPending, RequestedBy: "jane.doe", CreatedAt: now,
		ExpiresAt: now.Add(ica.DefaultApprovalTimeout), Version: 1}
}

func TestClient_WaitApproval_Approved(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.addApproval(pendingApproval(t0))
	f.onGetApproval = func(a *ica.Approval, n int) {
		switch n {
		case 6:
			decide(t, a, ica.ActApproveTechnical, "tech1", "", clock.Now())
		case 9:
			decide(t, a, ica.ActApproveBusiness, "biz1", "ok", clock.Now())
		}
	}
	c := newTestClient(t, f, clock)
	var seen []string
	var a *ica.Approval
	var err error
	async(clock, time.Second, func() {
		a, err = c.WaitApproval(context.Background(), "A-12", pipelines.WaitOptions{
			Progress: func(a *ica.Approval, next time.Duration) {
				seen = append(seen, a.Status)
				require.GreaterOrEqual(t, next, pipelines.DefaultMinInterval)
				require.LessOrEqual(t, next, pipelines.DefaultMaxInterval)
			},
		})
	})
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalApproved, a.Status)
	require.Equal(t, "Approval A-12 was approved by tech1 (technical) and biz1 (business)", pipelines.DescribeOutcome(a))
	require.Equal(t, []string{"pending", "pending", "pending", "pending", "pending", "technical_approved", "technical_approved", "technical_approved"}, seen)

	// Jitter is fixed at the midpoint, so the gaps are the bare schedule:
	// 5, 10, 20, 40, 60 s; back to 5 s when the status changed; 10 s.
	times := f.callTimes("GET", "/api/v1/approvals/A-12")
	require.Len(t, times, 9)
	var gaps []time.Duration
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]))
	}
	require.Equal(t, []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second,
		60 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second}, gaps)
}

func TestClient_WaitApproval_Rejected(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.addApproval(pendingApproval(t0))
	f.onGetApproval = func(a *ica.Approval, n int) {
		switch n {
		case 2:
			decide(t, a, ica.ActApproveTechnical, "tech1", "", clock.Now())
		case 3:
			decide(t, a, ica.ActReject, "biz1", "over the Q1 budget, wait for April", clock.Now())
		}
	}
	c := newTestClient(t, f, clock)
	var a *ica.Approval
	var err error
	async(clock, time.Second, func() { a, err = c.WaitApproval(context.Background(), "A-12", pipelines.WaitOptions{}) })
	var de *pipelines.DecisionError
	require.ErrorAs(t, err, &de)
	require.Equal(t, ica.ApprovalRejected, a.Status)
	require.EqualError(t, err, "Approval A-12 was rejected by biz1: over the Q1 budget, wait for April")
}

func TestClient_WaitApproval_Expired(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	ap := pendingApproval(t0)
	ap.ExpiresAt = t0.Add(time.Minute)
	f.addApproval(ap)
	f.onGetApproval = func(a *ica.Approval, n int) {
		if n == 1 {
			decide(t, a, ica.ActApproveTechnical, "tech1", "", clock.Now())
		}
		if !clock.Now().Before(a.ExpiresAt) && !a.Final() {
			decide(t, a, ica.ActExpire, "", "", clock.Now())
		}
	}
	c := newTestClient(t, f, clock)
	var err error
	async(clock, time.Second, func() { _, err = c.WaitApproval(context.Background(), "A-12", pipelines.WaitOptions{}) })
	var de *pipelines.DecisionError
	require.ErrorAs(t, err, &de)
	require.Equal(t, "Approval A-12 expired at 2025-03-14T09:01:00Z after the technical approval by tech1, without a business approval", err.Error())
}

// TestClient_WaitApproval_PollsJustAfterExpiry: however long the interval
// has grown, the wait looks again just after expires_at, so an expiry is
// reported within ExpiryPollDelay, not up to a minute later.
func TestClient_WaitApproval_PollsJustAfterExpiry(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	ap := pendingApproval(t0)
	ap.ExpiresAt = t0.Add(100 * time.Second)
	f.addApproval(ap)
	f.onGetApproval = func(a *ica.Approval, n int) {
		if !clock.Now().Before(a.ExpiresAt) && !a.Final() {
			decide(t, a, ica.ActExpire, "", "", clock.Now())
		}
	}
	c := newTestClient(t, f, clock)
	var err error
	async(clock, time.Second, func() { _, err = c.WaitApproval(context.Background(), "A-12", pipelines.WaitOptions{}) })
	var de *pipelines.DecisionError
	require.ErrorAs(t, err, &de)
	times := f.callTimes("GET", "/api/v1/approvals/A-12")
	// 0, 5, 15, 35, 75 s; the next interval (60 s) would be 135 s: 101 s instead.
	require.Equal(t, t0.Add(100*time.Second+pipelines.ExpiryPollDelay), times[len(times)-1])
	require.Len(t, times, 6)
}

func TestClient_WaitApproval_Timeout(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.addApproval(pendingApproval(t0))
	c := newTestClient(t, f, clock)
	var a *ica.Approval
	var err error
	async(clock, time.Second, func() {
		a, err = c.WaitApproval(context.Background(), "A-12", pipelines.WaitOptions{Timeout: 3 * time.Minute})
	})
	require.ErrorIs(t, err, pipelines.ErrWaitTimeout)
	require.ErrorContains(t, err, "approval A-12 is still pending after waiting 3m0s")
	require.Equal(t, ica.ApprovalPending, a.Status)
	times := f.callTimes("GET", "/api/v1/approvals/A-12")
	require.Equal(t, t0.Add(3*time.Minute), times[len(times)-1], "one last look at the deadline")
}

func TestClient_WaitApproval_DefaultTimeoutIsExpiryPlusGrace(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	ap := pendingApproval(t0)
	ap.ExpiresAt = t0.Add(10 * time.Minute) // a server that never marks it expired
	f.addApproval(ap)
	c := newTestClient(t, f, clock)
	var err error
	async(clock, 5*time.Second, func() { _, err = c.WaitApproval(context.Background(), "A-12", pipelines.WaitOptions{}) })
	require.ErrorIs(t, err, pipelines.ErrWaitTimeout)
	require.Equal(t, t0.Add(10*time.Minute+pipelines.DefaultExpiryGrace), clock.Now())
}

func TestClient_WaitApproval_SurvivesTransientFailures(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.addApproval(pendingApproval(t0))
	// More failures in a row than one call retries: the wait goes on.
	for range pipelines.DefaultMaxAttempts + 2 {
		f.fail(failure{status: 503})
	}
	f.onGetApproval = func(a *ica.Approval, n int) {
		if !a.Final() {
			decide(t, a, ica.ActBypass, "oncall", "prod is down, hotfix", clock.Now())
		}
	}
	c := newTestClient(t, f, clock)
	var pollErrs int
	var a *ica.Approval
	var err error
	async(clock, time.Second, func() {
		a, err = c.WaitApproval(context.Background(), "A-12", pipelines.WaitOptions{
			PollError: func(error, time.Duration) { pollErrs++ },
		})
	})
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalBypassed, a.Status)
	require.Equal(t, 1, pollErrs)
}

func TestClient_WaitApproval_UnknownApprovalEndsWait(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	c := newTestClient(t, f, clock)
	_, err := c.WaitApproval(context.Background(), "A-404", pipelines.WaitOptions{})
	require.Equal(t, ica.ENOTFOUND, ica.ErrorCode(err))
	require.False(t, errors.Is(err, pipelines.ErrWaitTimeout))
}
