package dashboard_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/ica-governance/ica/store/storetest"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
)

// storeSource is the store as cmd/ica hands it to the dashboard.
type storeSource struct {
	*store.Store
	monthly, threshold float64
}

func (s storeSource) Budget(ctx context.Context) (*ica.Budget, error) {
	return s.Store.Budget(ctx, s.monthly, s.threshold)
}

func openStore(tb testing.TB, at time.Time) (*store.Store, *ica.FakeClock) {
	tb.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	clock := ica.NewFakeClock(at)
	st, err := storetest.New(tb).Open(store.Options{Clock: clock, Key: key, CheckpointEvery: 7})
	require.NoError(tb, err)
	tb.Cleanup(func() {
		rep, err := st.Check()
		require.NoError(tb, err)
		require.True(tb, rep.OK(), "consistency: %v", rep.Problems)
		require.NoError(tb, st.Close())
	})
	return st, clock
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// ledgerBuilder drives a store through a story, moving the clock forward.
type ledgerBuilder struct {
	tb    testing.TB
	st    *store.Store
	clock *ica.FakeClock
	ctx   context.Context
}

func (b *ledgerBuilder) at(s string) *ledgerBuilder {
	t := ts(s)
	require.False(b.tb, t.Before(b.clock.Now()), "the story must move forward: %s", s)
	b.clock.Set(t)
	return b
}

func (b *ledgerBuilder) start(id, pipeline string) {
	_, _, err := b.st.StartRun(b.ctx, &ica.RunStart{PipelineName: pipeline, RunID: id, Branch: "refs/heads/main",
		Commit: "9fceb02d0ae598e95dc970b74767f19372d61af8", TriggeredBy: "erin@example.com",
		URL: "https://dev.azure.com/contoso/" + pipeline + "/_build/results?buildId=" + id}, "azure-pipelines")
	require.NoError(b.tb, err)
}

func (b *ledgerBuilder) finish(id, status string) {
	_, _, err := b.st.FinishRun(b.ctx, id, &ica.RunFinish{Status: status}, "azure-pipelines")
	require.NoError(b.tb, err)
}

func (b *ledgerBuilder) request(runID, target string, cost float64) string {
	a, _, err := b.st.RequestApproval(b.ctx, &ica.ApprovalRequest{RunID: runID, DeploymentTarget: target, EstimatedCost: &cost}, "azure-pipelines")
	require.NoError(b.tb, err)
	return a.ID
}

func (b *ledgerBuilder) decide(id, action, user, at string) {
	t := ica.Transition{Action: action, By: ica.Decider{UserID: "uid-" + user, Username: user}, Via: "mattermost", At: ts(at)}
	if action == ica.ActReject {
		t.Comment = "not today"
	}
	b.at(at)
	_, err := b.st.Transition(b.ctx, id, t, "mattermost:"+user, nil)
	require.NoError(b.tb, err)
}

func (b *ledgerBuilder) cost(day string, usd float64) {
	_, _, err := b.st.RecordCost(b.ctx, &ica.CostInput{ResourceType: ica.ResourceAKS, CostUSD: &usd, BillingPeriod: day}, "azure-pipelines")
	require.NoError(b.tb, err)
}

func (b *ledgerBuilder) alert(id, sev string) *ica.Incident {
	inc, _, err := b.st.RecordAlert(b.ctx, &ica.Alert{AlertID: id, Rule: "rule " + id, Severity: sev, MonitorCondition: ica.AlertFired,
		FiredAt: b.clock.Now(), Schema: ica.SchemaCommon}, []byte(`{}`), "azure-monitor")
	require.NoError(b.tb, err)
	return inc
}

func (b *ledgerBuilder) resolveAlert(id, sev string) {
	_, _, err := b.st.RecordAlert(b.ctx, &ica.Alert{AlertID: id, Rule: "rule " + id, Severity: sev, MonitorCondition: ica.AlertResolved,
		FiredAt: b.clock.Now(), ResolvedAt: b.clock.Now(), Schema: ica.SchemaCommon}, []byte(`{}`), "azure-monitor")
	require.NoError(b.tb, err)
}

// smallLedger writes the story of TestCompute_SmallLedger and returns the
// store at its "now", 2026-11-03T12:00:00Z (a Tuesday).
func smallLedger(tb testing.TB) (*store.Store, *ica.FakeClock) {
	st, clock := openStore(tb, ts("2026-08-31T10:00:00Z"))
	b := &ledgerBuilder{tb: tb, st: st, clock: clock, ctx: context.Background()}

	// before the SLA window (which starts Monday 2026-09-14).
	b.start("d4", "deploy")
	b.at("2026-09-01T09:00:00Z")
	a1 := b.request("d4", ica.TargetProduction, 10)
	b.decide(a1, ica.ActApproveTechnical, "alice", "2026-09-01T09:05:00Z")
	b.decide(a1, ica.ActApproveBusiness, "bob", "2026-09-01T09:10:00Z")

	b.at("2026-09-15T08:00:00Z")
	for _, id := range []string{"d1", "d2", "d3", "d5"} {
		b.start(id, "deploy")
	}
	// week of 09-14, production: technical 1 h, business 3 h after the request.
	b.at("2026-09-15T09:00:00Z")
	a2 := b.request("d1", ica.TargetProduction, 10)
	b.decide(a2, ica.ActApproveTechnical, "alice", "2026-09-15T10:00:00Z")
	b.decide(a2, ica.ActApproveBusiness, "bob", "2026-09-15T12:00:00Z")
	// week of 09-14, staging: technical 30 min, business 1 h 30.
	b.at("2026-09-16T09:00:00Z")
	a3 := b.request("d2", ica.TargetStaging, 10)
	b.decide(a3, ica.ActApproveTechnical, "carol", "2026-09-16T09:30:00Z")
	b.decide(a3, ica.ActApproveBusiness, "bob", "2026-09-16T10:30:00Z")

	// r0: the day before the runs window (which starts 2026-10-05).
	b.at("2026-10-04T23:00:00Z")
	b.start("r0", "api")
	b.finish("r0", ica.RunSuccess)

	// r6 fails 7 days and 4 hours before now: in the chart, not "this week".
	b.at("2026-10-27T08:00:00Z")
	b.start("r6", "web")
	// week of 10-26, production: technical after 3 h, then expires.
	a4 := b.request("d3", ica.TargetProduction, 10)
	b.at("2026-10-27T08:30:00Z")
	b.finish("r6", ica.RunFailed)
	b.decide(a4, ica.ActApproveTechnical, "alice", "2026-10-27T11:00:00Z")
	b.at("2026-10-27T12:00:00Z")
	exp, err := st.ExpireDue(b.ctx)
	require.NoError(tb, err)
	require.Len(tb, exp, 1)
	// week of 10-26, production: rejected.
	b.at("2026-10-28T09:00:00Z")
	a5 := b.request("d5", ica.TargetProduction, 10)
	b.decide(a5, ica.ActReject, "dave", "2026-10-28T09:20:00Z")

	// The month boundary, UTC: r1 on 10-31, r2 on 11-01.
	b.at("2026-10-31T23:59:59Z")
	b.start("r1", "api")
	b.at("2026-11-01T00:00:00Z")
	b.start("r2", "api")
	b.at("2026-11-01T00:10:00Z")
	b.finish("r1", ica.RunSuccess)
	b.at("2026-11-01T00:20:00Z")
	b.finish("r2", ica.RunFailed)

	// week of 11-02, production: technical after 45 min, then waits
	// for the business step past its deadline (13:00; the scheduler has not
	// expired it yet).
	b.at("2026-11-02T09:00:00Z")
	a6 := b.request("d3", ica.TargetProduction, 400) // a running run: a finished one cannot be deployed
	b.decide(a6, ica.ActApproveTechnical, "carol", "2026-11-02T09:45:00Z")
	b.at("2026-11-02T10:00:00Z")
	b.start("r3", "web")
	b.at("2026-11-02T10:30:00Z")
	b.finish("r3", ica.RunFailed)
	b.at("2026-11-03T09:00:00Z")
	b.start("r4", "web")
	b.at("2026-11-03T09:05:00Z")
	b.finish("r4", ica.RunCancelled)
	b.at("2026-11-03T11:00:00Z")
	b.start("r5", "api")
	// pending, technical step, 30 min old at now.
	b.at("2026-11-03T11:30:00Z")
	b.request("r5", ica.TargetStaging, 25)

	// Costs: the last day of October is not November's.
	b.at("2026-11-03T11:40:00Z")
	b.cost("2026-10-31", 500)
	b.cost("2026-11-01", 100)
	b.cost("2026-11-02", 200)
	b.cost("2026-11-02", 50)
	b.cost("2026-11-03", 30)

	// Incidents: Sev1 open, Sev3 acknowledged, Sev2 resolved.
	b.at("2026-11-03T11:50:00Z")
	b.alert("alert-sev1", ica.Sev1)
	inc3 := b.alert("alert-sev3", ica.Sev3)
	_, err = st.IncidentTransition(b.ctx, inc3.ID, ica.IncidentTransition{Action: ica.IncidentActAcknowledge,
		By: ica.Decider{Username: "oncall"}, Via: "mattermost"}, "mattermost:oncall", nil)
	require.NoError(tb, err)
	b.alert("alert-sev2", ica.Sev2)
	b.resolveAlert("alert-sev2", ica.Sev2)

	b.at("2026-11-03T12:00:00Z")
	return st, clock
}

func hours(h float64) float64 { return h * 3600 }

func dayIndex(day string) int {
	from := ts("2026-10-05T00:00:00Z")
	return int(ts(day+"T00:00:00Z").Sub(from) / (24 * time.Hour))
}

var _ = fmt.Sprint
