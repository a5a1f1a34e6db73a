package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/policy"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
)

// wed is a Wednesday, 11:00 in Berlin: inside office hours.
var wed = time.Date(2026, 1, 14, 10, 0, 0, 0, time.UTC)

const fullSHA = "0123456789abcdef0123456789abcdef01234567"

var office = []policy.Window{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "09:00", To: "17:00"}}

type pstore struct {
	t      *testing.T
	s      *store.Store
	clock  *ica.FakeClock
	freeze string
}

func openPolicyStore(t *testing.T, prod policy.Rules, more ...func(p *policy.Policy)) *pstore {
	t.Helper()
	ps := &pstore{t: t, clock: ica.NewFakeClock(wed)}
	ps.s, _ = MustOpen(t, func(o *store.Options) {
		o.Clock = ps.clock
		o.Freeze = func(store.ReadTx, string) (string, error) { return ps.freeze, nil }
	})
	if prod.TZ == "" {
		prod.TZ = "Europe/Berlin"
	}
	p := policy.Policy{Targets: map[string]policy.Target{"production": {Rules: prod}}}
	for _, f := range more {
		f(&p)
	}
	_, changed, err := ps.s.RecordPolicy(context.Background(), p, "test", "tester")
	require.NoError(t, err)
	require.True(t, changed)
	return ps
}

func (ps *pstore) run(id, pipeline, branch string) *ica.Run {
	ps.t.Helper()
	r, _, err := ps.s.StartRun(context.Background(), &ica.RunStart{PipelineName: pipeline, RunID: id, Branch: branch,
		Commit: fullSHA, TriggeredBy: "dev"}, "ado")
	require.NoError(ps.t, err)
	return r
}

func (ps *pstore) request(run, target string) (*ica.Approval, error) {
	a, _, err := ps.s.RequestApproval(context.Background(), &ica.ApprovalRequest{RunID: run, DeploymentTarget: target, EstimatedCost: ptr(10.0)}, "ado")
	return a, err
}

func (ps *pstore) approve(id string) *ica.Approval {
	ps.t.Helper()
	_, err := ps.s.Transition(context.Background(), id, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: "u1", Username: "tech1"}, Via: "mattermost"}, "bot", nil)
	require.NoError(ps.t, err)
	a, err := ps.s.Transition(context.Background(), id, ica.Transition{Action: ica.ActApproveBusiness, By: ica.Decider{UserID: "u2", Username: "biz1"}, Via: "mattermost"}, "bot", nil)
	require.NoError(ps.t, err)
	return a
}

func (ps *pstore) approved(run, target string) *ica.Approval {
	ps.t.Helper()
	a, err := ps.request(run, target)
	require.NoError(ps.t, err)
	return ps.approve(a.ID)
}

func (ps *pstore) use(a *ica.Approval) (*ica.Approval, error) {
	u, _, err := ps.s.UseApproval(context.Background(), a.ID, &ica.UseRequest{RunID: a.RunID, Commit: fullSHA}, "ado")
	return u, err
}

func (ps *pstore) gate(id string) *store.Gate {
	ps.t.Helper()
	_, g, err := ps.s.ApprovalGate(context.Background(), id)
	require.NoError(ps.t, err)
	return g
}

func details(t *testing.T, err error) map[string]any {
	t.Helper()
	var r *ica.Refusal
	require.True(t, errors.As(err, &r), "want a refusal with details, got %v", err)
	return r.Details
}

func TestStore_RecordPolicy(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{Branches: []string{"refs/heads/main"}})
	ctx := context.Background()
	cur, err := ps.s.CurrentPolicy(ctx)
	require.NoError(t, err)
	require.Equal(t, "first policy recorded", cur.Changes[0])
	require.Contains(t, cur.Changes[1], `approval.targets.production: added {"branches":["refs/heads/main"]`)
	n := ps.s.LedgerEntries()
	_, changed, err := ps.s.RecordPolicy(ctx, cur.Policy, "reload", "tester")
	require.NoError(t, err)
	require.False(t, changed, "the same policy is not recorded twice")
	require.Equal(t, n, ps.s.LedgerEntries())
	p := cur.Policy
	pt := p.Targets["production"]
	pt.Windows = office
	p.Targets["production"] = pt
	rec, changed, err := ps.s.RecordPolicy(ctx, p, "reload", "tester")
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, cur.Hash, rec.Previous)
	require.Len(t, rec.Changes, 1)
	require.Contains(t, rec.Changes[0], "approval.targets.production.windows: added")
	var kinds []string
	require.NoError(t, ps.s.ScanLedger(1, func(e *ica.LedgerEntry) error {
		kinds = append(kinds, e.Kind)
		return nil
	}))
	require.Equal(t, []string{store.KindPolicyChanged, store.KindPolicyChanged}, kinds)
	_, _, err = ps.s.RecordPolicy(ctx, policy.Policy{Targets: map[string]policy.Target{"production": {Rules: policy.Rules{Exclusive: "often"}}}}, "x", "y")
	require.Equal(t, "approval.targets.production.exclusive", ica.ErrorField(err))
}

func TestStore_Request_BranchRefusedAndRecorded(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{Branches: []string{"refs/heads/main", "refs/heads/release/*"}})
	ps.run("r1", "web", "refs/heads/feature/x")
	n := ps.s.LedgerEntries()
	_, err := ps.request("r1", "production")
	require.Equal(t, ica.EPOLICY, ica.ErrorCode(err))
	require.Equal(t, "branch", ica.ErrorField(err))
	require.Contains(t, ica.ErrorMessage(err), "refs/heads/main, refs/heads/release/*")
	require.Contains(t, ica.ErrorMessage(err), "refs/heads/feature/x")
	require.Equal(t, n+1, ps.s.LedgerEntries(), "the refusal is a ledger entry")
	pending, err := ps.s.PendingApprovals(context.Background())
	require.NoError(t, err)
	require.Empty(t, pending)
	// Staging has no branch rule.
	_, err = ps.request("r1", "staging")
	require.NoError(t, err)
}

func TestStore_Use_CoverageAndRepeat(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{})
	ps.run("r1", "web", "refs/heads/main")
	a := ps.approved("r1", "production")
	ctx := context.Background()
	n := ps.s.LedgerEntries()
	for _, in := range []*ica.UseRequest{
		{RunID: "r2", Commit: fullSHA},
		{RunID: "r1", Commit: "abcdef0"},
		{RunID: "r1", Commit: fullSHA, ArtifactDigest: "sha256:" + strings.Repeat("a", 64)},
	} {
		_, _, err := ps.s.UseApproval(ctx, a.ID, in, "ado")
		require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err), "%+v", in)
		require.Equal(t, false, details(t, err)["covers"])
	}
	for field, in := range map[string]*ica.UseRequest{
		"run_id":          {Commit: fullSHA},
		"commit":          {RunID: "r1", Commit: "xyz"},
		"artifact_digest": {RunID: "r1", Commit: fullSHA, ArtifactDigest: "md5:1"},
	} {
		_, _, err := ps.s.UseApproval(ctx, a.ID, in, "ado")
		require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
		require.Equal(t, field, ica.ErrorField(err))
	}
	require.Equal(t, n, ps.s.LedgerEntries(), "refusals change nothing")
	u, err := ps.use(a)
	require.NoError(t, err)
	require.NotNil(t, u.Use)
	require.Equal(t, n+1, ps.s.LedgerEntries())
	u2, _, err := ps.s.UseApproval(ctx, a.ID, &ica.UseRequest{RunID: "r1", Commit: fullSHA[:7]}, "ado")
	require.NoError(t, err, "a repeat by the same run is harmless")
	require.Equal(t, u.Use.At, u2.Use.At)
	require.Equal(t, n+1, ps.s.LedgerEntries())
}

func TestStore_Use_ChangeWindowAndUseWindow(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{Windows: office})
	ps.run("r1", "web", "refs/heads/main")
	ps.clock.Set(time.Date(2026, 1, 14, 15, 50, 0, 0, time.UTC)) // 16:50 in Berlin
	a := ps.approved("r1", "production")
	ps.clock.Set(time.Date(2026, 1, 14, 16, 30, 0, 0, time.UTC)) // closed for the night
	n := ps.s.LedgerEntries()
	_, err := ps.use(a)
	d := details(t, err)
	require.Equal(t, false, d["can_deploy"])
	require.Equal(t, []string{policy.WaitWindow}, d["waiting_for"])
	require.Equal(t, time.Date(2026, 1, 15, 8, 0, 0, 0, time.UTC), *d["opens_at"].(*time.Time))
	require.Equal(t, n, ps.s.LedgerEntries())
	g := ps.gate(a.ID)
	require.Equal(t, time.Date(2026, 1, 15, 11, 50, 0, 0, time.UTC), *g.UsableUntil, "ten minutes used on the evening, the rest in the morning")
	ps.clock.Set(time.Date(2026, 1, 15, 8, 0, 0, 0, time.UTC))
	_, err = ps.use(a)
	require.NoError(t, err, "the morning window opens the gate of an approval given at 16:50")

	// Another approval, never used: stale after its use window; a new
	// request then makes a new approval.
	ps.run("r2", "web", "refs/heads/main")
	b := ps.approved("r2", "production")
	ps.clock.Set(time.Date(2026, 1, 15, 12, 0, 0, 1, time.UTC))
	g = ps.gate(b.ID)
	require.False(t, g.Usable)
	require.False(t, g.CanDeploy)
	c, err := ps.request("r2", "production")
	require.NoError(t, err)
	require.NotEqual(t, b.ID, c.ID)
}

func TestStore_Request_FinishedRun(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{})
	ps.run("r1", "web", "refs/heads/main")
	a := ps.approved("r1", "production")
	_, _, err := ps.s.FinishRun(context.Background(), "r1", &ica.RunFinish{Status: ica.RunSuccess}, "ado")
	require.NoError(t, err)
	n := ps.s.LedgerEntries()
	_, err = ps.request("r1", "production")
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
	require.Contains(t, ica.ErrorMessage(err), "finished")
	_, err = ps.use(a)
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
	require.Equal(t, false, details(t, err)["usable"])
	require.Equal(t, n, ps.s.LedgerEntries())
}

// TestStore_ExclusiveLock_Race races two runs of one pipeline for the lock:
// exactly one deploys; the other waits behind it until the first reports
// its deployment.
func TestStore_ExclusiveLock_Race(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{Exclusive: policy.ExclusiveSequential})
	ctx := context.Background()
	var as []*ica.Approval
	for _, id := range []string{"r1", "r2"} {
		ps.run(id, "web", "refs/heads/main")
		as = append(as, ps.approved(id, "production"))
	}
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, a := range as {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = ps.use(a)
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			}
		}
		if round == 0 {
			require.Equal(t, 2, ok+countLock(errs), "%v", errs)
		}
	}
	g1, g2 := ps.gate(as[0].ID), ps.gate(as[1].ID)
	require.True(t, g1.CanDeploy != g2.CanDeploy, "exactly one holds the lock: %+v %+v", *g1, *g2)
	holder, waiter := as[0], as[1]
	gw := g2
	if g2.CanDeploy {
		holder, waiter, gw = as[1], as[0], g1
	}
	require.Equal(t, []string{policy.WaitLock}, gw.WaitingFor)
	// The holder reports its deployment: the lock is released.
	_, _, err := ps.s.AddEvent(ctx, holder.RunID, &ica.EventInput{EventType: ica.EventDeployment, EventData: json.RawMessage(`{"target":"production","result":"succeeded"}`)}, "ado")
	require.NoError(t, err)
	_, err = ps.use(waiter)
	require.NoError(t, err)
	// A third run queues behind the second, which holds the lock until it finishes.
	ps.run("r3", "web", "refs/heads/main")
	c := ps.approved("r3", "production")
	_, err = ps.use(c)
	require.Equal(t, []string{policy.WaitLock}, details(t, err)["waiting_for"])
	_, _, err = ps.s.FinishRun(ctx, waiter.RunID, &ica.RunFinish{Status: ica.RunSuccess}, "ado")
	require.NoError(t, err)
	_, err = ps.use(c)
	require.NoError(t, err)
}

func countLock(errs []error) int {
	n := 0
	for _, err := range errs {
		if err != nil && ica.ErrorCode(err) == ica.ECONFLICT {
			n++
		}
	}
	return n
}

func TestStore_ExclusiveLock_QueueOrderAndTimeout(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{Exclusive: policy.ExclusiveSequential, LockScope: policy.ScopeTarget, LockTimeout: policy.Duration(time.Hour)})
	ctx := context.Background()
	ps.run("r1", "web", "refs/heads/main")
	ps.run("r2", "api", "refs/heads/main")
	ps.run("r3", "web", "refs/heads/main")
	a1 := ps.approved("r1", "production")
	_, err := ps.use(a1)
	require.NoError(t, err)
	a3 := ps.approved("r3", "production") // approved first: first in the queue
	a2 := ps.approved("r2", "production")
	g := ps.gate(a2.ID)
	require.Equal(t, []string{policy.WaitLock}, g.WaitingFor)
	_, err = ps.use(a2)
	require.Equal(t, []string{policy.WaitLock}, details(t, err)["waiting_for"])
	// The lock times out.
	ps.clock.Advance(time.Hour)
	next, err := ps.s.PolicyTick(ctx)
	require.NoError(t, err)
	require.True(t, next.IsZero())
	g = ps.gate(a2.ID)
	require.Equal(t, "r3", g.QueuedBehind, "a target-wide lock: r2 of another pipeline waits behind r3")
	_, err = ps.use(a2)
	require.Equal(t, "r3", details(t, err)["queued_behind"])
	_, err = ps.use(a3)
	require.NoError(t, err)
	var released []string
	require.NoError(t, ps.s.ScanLedger(1, func(e *ica.LedgerEntry) error {
		if e.Kind == store.KindLockReleased {
			var d map[string]any
			_ = json.Unmarshal(e.Data, &d)
			released = append(released, fmt.Sprint(d["run_id"], ": ", d["reason"]))
		}
		return nil
	}))
	require.Equal(t, []string{"r1: lock_timeout passed (1h0m0s)"}, released)
}

func TestStore_ExclusiveLatest_Supersedes(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{Exclusive: policy.ExclusiveLatest})
	ps.run("r1", "web", "refs/heads/main")
	a1 := ps.approved("r1", "production")
	_, err := ps.use(a1)
	require.NoError(t, err)
	ps.clock.Advance(time.Minute)
	ps.run("r2", "web", "refs/heads/main")
	ps.clock.Advance(time.Minute)
	ps.run("r3", "web", "refs/heads/main")
	a3 := ps.approved("r3", "production")
	a2 := ps.approved("r2", "production")
	require.Equal(t, ica.ApprovalSuperseded, a2.Status, "the older run is superseded by the newer one already waiting")
	require.Equal(t, "r3", a2.SupersededBy)
	ps.run("r4", "web", "refs/heads/main")
	a4 := ps.approved("r4", "production")
	got, err := ps.s.Approval(context.Background(), a3.ID)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalSuperseded, got.Status, "the run started last supersedes older waiting ones")
	require.Equal(t, ica.ApprovalApproved, a4.Status)
	_, err = ps.use(got)
	require.False(t, details(t, err)["usable"].(bool))
}

func TestStore_Promotion(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{Requires: &policy.Requirement{Target: "staging", Bake: policy.Duration(30 * time.Minute)}})
	ctx := context.Background()
	report := func(run, target, result string) {
		t.Helper()
		_, _, err := ps.s.AddEvent(ctx, run, &ica.EventInput{EventType: ica.EventDeployment,
			EventData: json.RawMessage(`{"target":"` + target + `","result":"` + result + `"}`)}, "ado")
		require.NoError(t, err)
	}
	ps.run("r1", "web", "refs/heads/main")
	n := ps.s.LedgerEntries()
	_, err := ps.request("r1", "production")
	require.Equal(t, ica.EPOLICY, ica.ErrorCode(err))
	require.Equal(t, "commit", ica.ErrorField(err))
	require.Contains(t, ica.ErrorMessage(err), "no successful deployment of commit 0123456789ab to staging")
	require.Equal(t, n+1, ps.s.LedgerEntries())

	// A report without a used staging approval is no evidence.
	report("r1", "staging", "succeeded")
	_, err = ps.request("r1", "production")
	require.Contains(t, ica.ErrorMessage(err), "not made through a used ICA approval")
	// The run carries both stages: staging approved, used, deployed.
	s := ps.approved("r1", "staging")
	_, err = ps.use(s)
	require.NoError(t, err)
	report("r1", "staging", "failed")
	_, err = ps.request("r1", "production")
	require.Contains(t, ica.ErrorMessage(err), "did not succeed: failed")
	report("r1", "staging", "succeeded")
	a, err := ps.request("r1", "production")
	require.NoError(t, err)
	require.Equal(t, "r1", a.Promotion.RunID)
	require.Equal(t, s.ID, a.Promotion.ApprovalID)
	a = ps.approve(a.ID)
	g := ps.gate(a.ID)
	require.Equal(t, []string{policy.WaitPromotion}, g.WaitingFor, "still baking")
	require.Equal(t, wed.Add(30*time.Minute), *g.OpensAt)
	ps.clock.Advance(30 * time.Minute)
	_, err = ps.use(a)
	require.NoError(t, err)

	// Another run of the same commit, with another artifact digest.
	_, _, err = ps.s.StartRun(ctx, &ica.RunStart{PipelineName: "web", RunID: "r2", Branch: "refs/heads/main", Commit: fullSHA,
		TriggeredBy: "dev", ArtifactDigest: "sha256:" + strings.Repeat("b", 64)}, "ado")
	require.NoError(t, err)
	_, err = ps.request("r2", "production")
	require.Contains(t, ica.ErrorMessage(err), "with artifact digest none, not sha256:bbbb")
}

func TestStore_FreezeAfterApproval(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{})
	ps.run("r1", "web", "refs/heads/main")
	a := ps.approved("r1", "production")
	ps.freeze = "Sev0 incident inc-1 (db down, open since …)"
	again, err := ps.request("r1", "production")
	require.NoError(t, err)
	require.Equal(t, a.ID, again.ID)
	g := ps.gate(a.ID)
	require.Equal(t, []string{policy.WaitFreeze}, g.WaitingFor)
	_, err = ps.use(a)
	require.Equal(t, []string{policy.WaitFreeze}, details(t, err)["waiting_for"])
	ps.freeze = ""
	_, err = ps.use(a)
	require.NoError(t, err)
}

func TestStore_NOfM_PolicyChangeBetweenRequestAndDecision(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{}, func(p *policy.Policy) {
		p.FinanceApprovers = []string{"fin1"}
		p.Targets["production"] = policy.Target{TechnicalApprovers: []string{"tech1", "tech2"}, Rules: p.Targets["production"].Rules}
	})
	ctx := context.Background()
	ps.run("r1", "web", "refs/heads/main")
	a, err := ps.request("r1", "production")
	require.NoError(t, err)
	first := a.PolicyHashes
	require.Len(t, first, 1)
	// The policy now wants two technical approvers.
	cur, err := ps.s.CurrentPolicy(ctx)
	require.NoError(t, err)
	p := cur.Policy
	pt := p.Targets["production"]
	pt.TechnicalRequired = 2
	p.Targets["production"] = pt
	_, _, err = ps.s.RecordPolicy(ctx, p, "reload", "tester")
	require.NoError(t, err)
	tech := func(id, name string) (*ica.Approval, error) {
		return ps.s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: id, Username: name}, Via: "mattermost"}, "bot", nil)
	}
	a1, err := tech("u1", "tech1")
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalPending, a1.Status)
	require.Equal(t, 2, a1.TechnicalRequired)
	require.Len(t, a1.PolicyHashes, 2, "request and decision were evaluated under two policies")
	_, err = tech("u1", "tech1")
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err), "the same person twice")
	a2, err := tech("u3", "tech2")
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalTechnical, a2.Status)
	a3, err := ps.s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveBusiness, By: ica.Decider{UserID: "u9", Username: "fin1"}, Via: "mattermost"}, "bot", nil)
	require.NoError(t, err)
	require.True(t, a3.Business.Finance, "a finance approver by the policy")
}

func TestStore_ConcurrentNOfMClicks(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{TechnicalRequired: 2}, func(p *policy.Policy) {
		p.Targets["production"] = policy.Target{TechnicalApprovers: []string{"tech0", "tech1", "tech2"}, Rules: p.Targets["production"].Rules}
	})
	ctx := context.Background()
	ps.run("r1", "web", "refs/heads/main")
	a, err := ps.request("r1", "production")
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := fmt.Sprintf("tech%d", i%3)
			_, errs[i] = ps.s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: "u-" + who, Username: who}, Via: "mattermost"}, "bot", nil)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
		}
	}
	require.Equal(t, 2, ok, "two distinct people complete the step; every other click is refused")
	got, err := ps.s.Approval(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalTechnical, got.Status)
	require.Len(t, got.TechnicalApprovals, 2)
	require.NotEqual(t, got.TechnicalApprovals[0].Username, got.TechnicalApprovals[1].Username)
}

func TestStore_DeferredApproval(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{})
	ctx := context.Background()
	ps.run("r1", "web", "refs/heads/main")
	a, err := ps.request("r1", "production")
	require.NoError(t, err)
	_, err = ps.s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: "u1", Username: "tech1"}}, "bot", nil)
	require.NoError(t, err)
	nb, err := policy.MustCompile(policy.Policy{Targets: map[string]policy.Target{"production": {Rules: policy.Rules{TZ: "Europe/Berlin"}}}}).Target("production").NextLocal(wed, "22:00")
	require.NoError(t, err)
	a, err = ps.s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveBusiness, By: ica.Decider{UserID: "u2", Username: "biz1"}, NotBefore: nb}, "bot", nil)
	require.NoError(t, err)
	g := ps.gate(a.ID)
	require.Equal(t, []string{policy.WaitNotBefore}, g.WaitingFor)
	require.Equal(t, time.Date(2026, 1, 14, 21, 0, 0, 0, time.UTC), *g.OpensAt)
	ps.clock.Set(*g.OpensAt)
	_, err = ps.use(a)
	require.NoError(t, err)
}

func TestStore_Bypass_NamesOverriddenRules(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{Windows: office, Exclusive: policy.ExclusiveSequential})
	ctx := context.Background()
	ps.run("r1", "web", "refs/heads/main")
	a, err := ps.request("r1", "production")
	require.NoError(t, err)
	ps.clock.Set(time.Date(2026, 1, 14, 20, 0, 0, 0, time.UTC))
	ps.freeze = "Sev1 incident inc-2"
	_, err = ps.s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActBypass, By: ica.Decider{Username: "oncall"}, Comment: "outage fix", Via: "breakglass"}, "oncall", nil)
	require.NoError(t, err)
	var overrode any
	require.NoError(t, ps.s.ScanLedger(1, func(e *ica.LedgerEntry) error {
		if e.Kind == ica.KindApprovalTransition+ica.ApprovalBypassed {
			var d map[string]any
			_ = json.Unmarshal(e.Data, &d)
			overrode = d["overrode"]
		}
		return nil
	}))
	require.Equal(t, []any{"approval", "window", "freeze"}, overrode)
	_, err = ps.use(a)
	require.NoError(t, err)
}

func TestStore_Void(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{})
	ctx := context.Background()
	ps.run("r1", "web", "refs/heads/main")
	a := ps.approved("r1", "production")
	n := ps.s.LedgerEntries()
	_, err := ps.s.VoidApproval(ctx, a.ID, "  ", "ado")
	require.Equal(t, "reason", ica.ErrorField(err))
	require.Equal(t, n, ps.s.LedgerEntries())
	v, err := ps.s.VoidApproval(ctx, a.ID, "wrong artifact", "ado")
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalRejected, v.Status)
	require.Equal(t, "voided: wrong artifact", v.Rejection.Comment)
	_, err = ps.use(a)
	require.False(t, details(t, err)["usable"].(bool))
}

func TestStore_Checks_AnsweredWhenTheWindowOpens(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{Windows: office})
	ctx := context.Background()
	ps.run("r1", "web", "refs/heads/main")
	ps.clock.Set(time.Date(2026, 1, 14, 18, 0, 0, 0, time.UTC))
	cb := &ica.CheckCallback{PlanURL: "https://dev.azure.com/org/", ProjectID: "p", HubName: "build", PlanID: "plan", JobID: "job", TaskInstanceID: "task", AuthToken: "tok"}
	a, _, err := ps.s.RequestApprovalWithCheck(ctx, &ica.ApprovalRequest{RunID: "r1", DeploymentTarget: "production", EstimatedCost: ptr(1.0)}, cb, "ado")
	require.NoError(t, err)
	ps.approve(a.ID)
	completions := func() []string {
		var out []string
		require.NoError(t, ps.s.ScanLedger(1, func(e *ica.LedgerEntry) error {
			if e.Kind == store.KindCheckCompleted {
				var d map[string]any
				_ = json.Unmarshal(e.Data, &d)
				out = append(out, d["result"].(string))
			}
			return nil
		}))
		return out
	}
	require.Empty(t, completions(), "approved at night: the check waits for the window")
	next, err := ps.s.PolicyTick(ctx)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 1, 15, 8, 0, 0, 0, time.UTC), next)
	require.Empty(t, completions())
	ps.clock.Set(next)
	_, err = ps.s.PolicyTick(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"succeeded"}, completions())
	got, err := ps.s.Approval(ctx, a.ID)
	require.NoError(t, err)
	require.NotNil(t, got.Use, "ICA used the approval on the check's behalf")
	require.Equal(t, "ado-check", got.Use.Actor)
}

// TestStore_ExclusiveLock_TwoReplicas: two ICA replicas on one PostgreSQL
// database race two runs for one deployment lock: the database serialises
// the writes, so exactly one run deploys.
func TestStore_ExclusiveLock_TwoReplicas(t *testing.T) {
	if storetest.Engine() != storetest.Postgres {
		t.Skip("replicas share a PostgreSQL database (ICA_TEST_STORE=postgres)")
	}
	ctx := context.Background()
	clock := ica.NewFakeClock(wed)
	target := storetest.New(t)
	key := testKey(t)
	a := target.MustOpen(store.Options{Clock: clock, Key: key})
	defer a.Close()
	b := target.MustOpen(store.Options{Clock: clock, Key: key})
	defer b.Close()
	_, _, err := a.RecordPolicy(ctx, policy.Policy{Targets: map[string]policy.Target{"production": {Rules: policy.Rules{Exclusive: policy.ExclusiveSequential}}}}, "test", "tester")
	require.NoError(t, err)
	var ids []string
	for _, run := range []string{"r1", "r2"} {
		_, _, err := a.StartRun(ctx, &ica.RunStart{PipelineName: "web", RunID: run, Branch: "refs/heads/main", Commit: fullSHA, TriggeredBy: "dev"}, "ado")
		require.NoError(t, err)
		ap, _, err := b.RequestApproval(ctx, &ica.ApprovalRequest{RunID: run, DeploymentTarget: "production", EstimatedCost: ptr(1.0)}, "ado")
		require.NoError(t, err)
		for _, tr := range []ica.Transition{{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: "u1", Username: "tech1"}},
			{Action: ica.ActApproveBusiness, By: ica.Decider{UserID: "u2", Username: "biz1"}}} {
			_, err := a.Transition(ctx, ap.ID, tr, "bot", nil)
			require.NoError(t, err)
		}
		ids = append(ids, ap.ID)
	}
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, s := range []*store.Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				run := []string{"r1", "r2"}[i]
				_, _, errs[i] = s.UseApproval(ctx, ids[i], &ica.UseRequest{RunID: run, Commit: fullSHA}, "ado")
			}()
		}
		wg.Wait()
		if round == 0 {
			require.True(t, (errs[0] == nil) != (errs[1] == nil), "exactly one replica opens the gate: %v", errs)
		}
	}
	_, g1, err := a.ApprovalGate(ctx, ids[0])
	require.NoError(t, err)
	_, g2, err := b.ApprovalGate(ctx, ids[1])
	require.NoError(t, err)
	require.True(t, g1.CanDeploy != g2.CanDeploy)
	used := 0
	require.NoError(t, a.ScanLedger(1, func(e *ica.LedgerEntry) error {
		if e.Kind == store.KindApprovalUsed {
			used++
		}
		return nil
	}))
	require.Equal(t, 1, used)
}

// TestStore_ExclusiveLock_OrderOfBecomingDeployable: a deferred approval
// given first waits behind one given later that became deployable earlier.
func TestStore_ExclusiveLock_OrderOfBecomingDeployable(t *testing.T) {
	ps := openPolicyStore(t, policy.Rules{Exclusive: policy.ExclusiveSequential, LockTimeout: policy.Duration(24 * time.Hour)})
	ctx := context.Background()
	for _, r := range []string{"r1", "r2", "r3"} {
		ps.run(r, "web", "refs/heads/main")
	}
	holder := ps.approved("r1", "production")
	_, err := ps.use(holder)
	require.NoError(t, err)
	// r2 is approved first, effective at 13:00; r3 at 10:30, effective at once.
	a2, err := ps.request("r2", "production")
	require.NoError(t, err)
	_, err = ps.s.Transition(ctx, a2.ID, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: "u1", Username: "tech1"}}, "bot", nil)
	require.NoError(t, err)
	_, err = ps.s.Transition(ctx, a2.ID, ica.Transition{Action: ica.ActApproveBusiness, By: ica.Decider{UserID: "u2", Username: "biz1"}, NotBefore: wed.Add(3 * time.Hour)}, "bot", nil)
	require.NoError(t, err)
	ps.clock.Advance(30 * time.Minute)
	a3 := ps.approved("r3", "production")
	ps.clock.Set(wed.Add(4 * time.Hour)) // both deployable now, r1 still holds the lock
	require.Equal(t, []string{policy.WaitLock}, ps.gate(a2.ID).WaitingFor)
	g3 := ps.gate(a3.ID)
	require.Equal(t, []string{policy.WaitLock}, g3.WaitingFor)
	_, _, err = ps.s.FinishRun(ctx, "r1", &ica.RunFinish{Status: ica.RunSuccess}, "ado")
	require.NoError(t, err)
	require.Empty(t, ps.gate(a3.ID).QueuedBehind, "r3 became deployable at 10:30, before r2 (13:00)")
	_, err = ps.use(a2)
	require.Equal(t, "r3", details(t, err)["queued_behind"], "r2 was approved first but became deployable later")
	_, err = ps.use(a3)
	require.NoError(t, err)
}
