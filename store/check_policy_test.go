package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/policy"
	"github.com/ica-governance/ica/store"
)

// policyLedger is a ledger with everything the deployment policy, pipeline
// checks and Azure budgets record: two policies, N-of-M votes, a deferred
// business approval, a use, a refusal, an answered pipeline check and
// budget reports (one older than the latest).
type policyLedger struct {
	s        *store.Store
	used     *ica.Approval
	checked  *ica.Approval
	policy   *store.PolicyRecord
	budget   string
	checkKey []byte
}

func newPolicyLedger(t *testing.T) *policyLedger {
	t.Helper()
	ctx := context.Background()
	clock := ica.NewFakeClock(wed)
	s, _ := openUnchecked(t, func(o *store.Options) { o.Clock = clock; o.TokenSealer = xorSealer{} })
	l := &policyLedger{s: s}
	prod := policy.Target{TechnicalApprovers: []string{"tech0", "tech1", "tech2"},
		Rules: policy.Rules{TZ: "Europe/Berlin", TechnicalRequired: 2, Exclusive: policy.ExclusiveSequential, Branches: []string{"refs/heads/main"}}}
	rec, _, err := s.RecordPolicy(ctx, policy.Policy{Targets: map[string]policy.Target{"production": prod}}, "test", "tester")
	require.NoError(t, err)
	l.policy = rec

	for _, id := range []string{"r1", "r2", "r3"} {
		_, _, err := s.StartRun(ctx, &ica.RunStart{PipelineName: "web", RunID: id, Branch: "refs/heads/main", Commit: fullSHA, TriggeredBy: "dev"}, "ado")
		require.NoError(t, err)
	}
	_, _, err = s.StartRun(ctx, &ica.RunStart{PipelineName: "web", RunID: "r-feature", Branch: "refs/heads/feature", Commit: fullSHA, TriggeredBy: "dev"}, "ado")
	require.NoError(t, err)
	_, _, err = s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r-feature", DeploymentTarget: "production", EstimatedCost: ptr(1.0)}, "ado")
	require.Equal(t, ica.EPOLICY, ica.ErrorCode(err), "refused by branch control, and recorded")

	vote := func(id, action, who, notBefore string) {
		t.Helper()
		_, err := s.Transition(ctx, id, ica.Transition{Action: action, By: ica.Decider{UserID: "u-" + who, Username: who}, Via: "mattermost", NotBeforeLocal: notBefore}, "bot", nil)
		require.NoError(t, err)
	}
	a, _, err := s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r1", DeploymentTarget: "production", EstimatedCost: ptr(10.0)}, "ado")
	require.NoError(t, err)
	vote(a.ID, ica.ActApproveTechnical, "tech0", "")
	vote(a.ID, ica.ActApproveTechnical, "tech1", "")
	vote(a.ID, ica.ActApproveBusiness, "biz", "12:00") // effective at noon, Berlin
	clock.Set(time.Date(2026, 1, 14, 11, 30, 0, 0, time.UTC))
	l.used, _, err = s.UseApproval(ctx, a.ID, &ica.UseRequest{RunID: "r1", Commit: fullSHA}, "ado")
	require.NoError(t, err)
	_, _, err = s.FinishRun(ctx, "r1", &ica.RunFinish{Status: ica.RunSuccess}, "ado") // releases the lock
	require.NoError(t, err)

	// A pipeline check in callback mode, answered when its approval opens the gate.
	cb := &ica.CheckCallback{PlanURL: "https://dev.azure.com/org/", ProjectID: "p", HubName: "build", PlanID: "plan", JobID: "job", TaskInstanceID: "task", AuthToken: "tok"}
	c, _, err := s.RequestApprovalWithCheck(ctx, &ica.ApprovalRequest{RunID: "r2", DeploymentTarget: "production", EstimatedCost: ptr(1.0)}, cb, "ado")
	require.NoError(t, err)
	l.checkKey = []byte(c.ID + "\x00task")
	vote(c.ID, ica.ActApproveTechnical, "tech1", "")
	vote(c.ID, ica.ActApproveTechnical, "tech2", "")
	vote(c.ID, ica.ActApproveBusiness, "biz", "")
	l.checked, err = s.Approval(ctx, c.ID)
	require.NoError(t, err)
	require.NotNil(t, l.checked.Use, "answered on the check's behalf")

	// The policy changes; an approval asked before it is rejected under the new one.
	d, _, err := s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r3", DeploymentTarget: "production", EstimatedCost: ptr(1.0)}, "ado")
	require.NoError(t, err)
	prod.TechnicalRequired = 1
	_, changed, err := s.RecordPolicy(ctx, policy.Policy{Targets: map[string]policy.Target{"production": prod}}, "reload", "tester")
	require.NoError(t, err)
	require.True(t, changed)
	_, err = s.Transition(ctx, d.ID, ica.Transition{Action: ica.ActReject, By: ica.Decider{UserID: "u-tech0", Username: "tech0"}, Comment: "not today", Via: "mattermost"}, "bot", nil)
	require.NoError(t, err)

	r := azureReport("prod", 900, clock.Now(), "d1")
	l.budget = r.Key
	for _, r := range []*ica.AzureBudgetReport{r, azureReport("prod", 950, clock.Now().Add(time.Minute), "d2"), azureReport("prod", 700, clock.Now().Add(-time.Hour), "d3")} {
		_, err := s.RecordAzureBudget(ctx, r, nil, "azure-monitor")
		require.NoError(t, err)
	}
	return l
}

func (l *policyLedger) check(t *testing.T) *store.CheckReport {
	t.Helper()
	rep, err := l.s.Check()
	require.NoError(t, err)
	return rep
}

func (l *policyLedger) tamper(t *testing.T, bucket, key string, fn func(v map[string]any)) {
	t.Helper()
	require.NoError(t, l.s.Tamper(func(tx store.Tx) error {
		var v map[string]any
		require.NoError(t, json.Unmarshal(tx.Bucket([]byte(bucket)).Get([]byte(key)), &v))
		fn(v)
		buf, _ := json.Marshal(v)
		return tx.Bucket([]byte(bucket)).Put([]byte(key), buf)
	}))
}

func TestCheck_PolicyChecksAndBudgets_Replayed(t *testing.T) {
	l := newPolicyLedger(t)
	rep := l.check(t)
	require.Empty(t, rep.Problems)
	require.Equal(t, 2, rep.Policies)
	require.Equal(t, 1, rep.Budgets)
	require.Equal(t, 3, rep.Approvals)
	for _, n := range rep.Notes {
		require.NotContains(t, n, "change no record the check knows", "every kind is replayed or known as a fact")
	}
	require.Len(t, l.used.TechnicalApprovals, 2)
	require.NotNil(t, l.used.NotBefore)
	require.Len(t, l.used.PolicyHashes, 1)
}

func TestCheck_PolicyChecksAndBudgets_TamperingNamed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, l *policyLedger)
		want   func(l *policyLedger) []string
	}{
		{"the use names another commit", func(t *testing.T, l *policyLedger) {
			l.tamper(t, "approvals", l.used.ID, func(v map[string]any) {
				v["use"].(map[string]any)["commit"] = "ffffffffffffffffffffffffffffffffffffffff"
			})
		}, func(l *policyLedger) []string { return []string{"approval " + l.used.ID + ": stored use"} }},
		{"the deferral dropped", func(t *testing.T, l *policyLedger) {
			l.tamper(t, "approvals", l.used.ID, func(v map[string]any) { delete(v, "not_before") })
		}, func(l *policyLedger) []string {
			return []string{"approval " + l.used.ID + ": stored not_before (none)"}
		}},
		{"a vote dropped", func(t *testing.T, l *policyLedger) {
			l.tamper(t, "approvals", l.used.ID, func(v map[string]any) {
				v["technical_approvals"] = v["technical_approvals"].([]any)[1:]
			})
		}, func(l *policyLedger) []string {
			return []string{"approval " + l.used.ID + ": stored technical_approvals"}
		}},
		{"the policy's rules rewritten", func(t *testing.T, l *policyLedger) {
			l.tamper(t, "policy", "p\x00"+l.policy.Hash, func(v map[string]any) {
				v["policy"].(map[string]any)["targets"].(map[string]any)["production"].(map[string]any)["technical_required"] = 1
			})
		}, func(l *policyLedger) []string {
			return []string{"policy " + l.policy.Hash + ": the stored record differs"}
		}},
		{"the policy in force swapped", func(t *testing.T, l *policyLedger) {
			require.NoError(t, l.s.Tamper(func(tx store.Tx) error {
				return tx.Bucket([]byte("policy")).Put([]byte("current"), []byte(l.policy.Hash))
			}))
		}, func(l *policyLedger) []string { return []string{"the policy in force is " + l.policy.Hash} }},
		{"a budget's spend lowered", func(t *testing.T, l *policyLedger) {
			l.tamper(t, "azure_budgets", l.budget, func(v map[string]any) { v["spent"] = 10 })
		}, func(l *policyLedger) []string { return []string{"azure budget " + l.budget + ": stored spent 10"} }},
		{"a delivery forgotten", func(t *testing.T, l *policyLedger) {
			require.NoError(t, l.s.Tamper(func(tx store.Tx) error { return tx.Bucket([]byte("azure_budget_dedup")).Delete([]byte("d2")) }))
		}, func(l *policyLedger) []string {
			return []string{"1 azure budget deliveries recorded in the ledger are missing from the store"}
		}},
		{"an answered check stored again", func(t *testing.T, l *policyLedger) {
			require.NoError(t, l.s.Tamper(func(tx store.Tx) error {
				buf, _ := json.Marshal(&ica.CheckCallback{PlanURL: "https://dev.azure.com/org/", PlanID: "plan", JobID: "job", TaskInstanceID: "task", LinkedSeq: 1})
				return tx.Bucket([]byte("approval_checks")).Put(l.checkKey, buf)
			}))
		}, func(l *policyLedger) []string {
			return []string{"the pipeline check of approval " + l.checked.ID + " (task task)", "not in the ledger"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newPolicyLedger(t)
			tc.tamper(t, l)
			requireProblem(t, l.check(t), tc.want(l)...)
		})
	}
}
