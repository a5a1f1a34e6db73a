package slashcmds

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/policy"
)

// policyFake answers the deployment-policy queries besides the others.
type policyFake struct {
	*fakeQueries
	rec  *RecordedPolicy
	gate *policy.Verdict
}

func (p *policyFake) RecordedPolicy(context.Context) (*RecordedPolicy, error) { return p.rec, nil }
func (p *policyFake) ApprovalGate(_ context.Context, id string) (*ica.Approval, *policy.Verdict, error) {
	return &ica.Approval{ID: id}, p.gate, nil
}

func TestPolicy_ShowAndGate(t *testing.T) {
	var pf *policyFake
	w := newWorld(t, func(d *Deps) {
		pf = &policyFake{fakeQueries: d.Queries.(*fakeQueries)}
		d.Queries = pf
	})
	require.Contains(t, w.slash("tech1", "deployments", "/ica policy"), "No deployment policy is recorded")
	opens := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	pf.rec = &RecordedPolicy{Hash: "0123456789abcdef", RecordedAt: t0, Source: "ica.yaml at start", Policy: policy.Policy{
		UseWindow: policy.Duration(4 * time.Hour), Targets: map[string]policy.Target{
			"production": {TechnicalApprovers: []string{"tech1", "tech2"}, BusinessChannel: "finance", Rules: policy.Rules{
				Branches: []string{"refs/heads/main"}, TZ: "Europe/Berlin",
				Windows:   []policy.Window{{Days: []string{"mon", "fri"}, From: "09:00", To: "17:00"}},
				Blackouts: []policy.Blackout{{From: "2026-12-20", To: "2027-01-04", Reason: "year-end"}},
				Exclusive: "latest", LockScope: "pipeline", LockTimeout: policy.Duration(2 * time.Hour),
				TechnicalRequired: 2, BusinessRequired: 1, Requires: &policy.Requirement{Target: "staging", Bake: policy.Duration(30 * time.Minute)}}},
			"staging": {}}}}
	reply := w.slash("tech1", "deployments", "/ica policy production")
	for _, want := range []string{
		"#### Deployment policy `0123456789ab`", "4h0m0s of open change-window time",
		"| Branches | refs/heads/main |", "| Change windows | mon,fri 09:00–17:00 Europe/Berlin |",
		"| Blackouts | 2026-12-20 to 2027-01-04 year-end |", "| One deployment at a time | latest, per pipeline, at most 2h0m0s |",
		"| Technical approvers | 2 of tech1, tech2 |", "| Business approvers | 1 of members of finance |",
		"| Promotion | deployed to staging first, baked 30m0s |",
	} {
		require.Contains(t, reply, want)
	}
	require.NotContains(t, reply, "**staging**")
	require.Contains(t, w.slash("tech1", "deployments", "/ica policy qa"), "is not staging or production")
	require.Contains(t, w.slash("tech1", "deployments", "/ica help"), "/ica policy")

	sampleData(w.q)
	pf.gate = &policy.Verdict{WaitingFor: []string{"window", "lock"}, OpensAt: &opens, QueuedBehind: "r-7", Usable: true}
	require.Contains(t, w.slash("tech1", "deployments", "/ica status r-99"),
		"| Gate | waiting for window, lock (the time rules allow it from 2026-11-28 08:00 UTC), queued behind run `r-7` |")
}
