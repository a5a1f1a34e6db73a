package ica_test

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ica-governance/ica/internal/testclock"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

var (
	t0       = testclock.At(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	deadline = t0.Add(ica.DefaultApprovalTimeout)

	alice = ica.Decider{UserID: "uid-alice", Username: "alice"}
	bob   = ica.Decider{UserID: "uid-bob", Username: "bob"}
	carol = ica.Decider{UserID: "uid-carol", Username: "carol"}
)

// approvalIn returns an approval in the given status with the decisions a
// real approval in that status would carry.
func approvalIn(status string) *ica.Approval {
	a := &ica.Approval{
		ID: "appr-1", RunID: "run-1", PipelineName: "web", Branch: "main",
		Commit: "0123456789abcdef", Target: ica.TargetProduction, EstimatedCost: 12.5,
		Status: ica.ApprovalPending, RequestedBy: "Requester", Actor: "pipeline",
		CreatedAt: t0, ExpiresAt: deadline, UpdatedAt: t0, Version: 1,
	}
	tech := &ica.Decision{Decider: alice, At: t0.Add(time.Minute), Via: "mattermost"}
	switch status {
	case ica.ApprovalPending:
	case ica.ApprovalTechnical:
		a.Technical = tech
	case ica.ApprovalApproved:
		a.Technical = tech
		a.Business = &ica.Decision{Decider: bob, At: t0.Add(2 * time.Minute), Via: "mattermost"}
	case ica.ApprovalRejected:
		a.Rejection = &ica.Decision{Decider: bob, At: t0.Add(time.Minute), Comment: "no", Via: "api"}
	case ica.ApprovalExpired:
		at := deadline
		a.ExpiredAt = &at
	case ica.ApprovalBypassed:
		a.Bypass = &ica.Decision{Decider: ica.Decider{Username: "oncall"}, At: t0.Add(time.Minute), Comment: "fire", Via: "breakglass"}
	case ica.ApprovalSuperseded:
		a.Rejection = &ica.Decision{Decider: ica.Decider{Username: "ica"}, At: t0.Add(time.Minute), Comment: "run 2 is newer", Via: "policy"}
	default:
		panic("unknown status " + status)
	}
	a.Status = status
	return a
}

// snapshot copies a and everything its pointers reach, so a later
// comparison can tell whether Apply modified its input.
func snapshot(a *ica.Approval) ica.Approval {
	c := *a
	for _, p := range []**ica.Decision{&c.Technical, &c.Business, &c.Rejection, &c.Bypass} {
		if *p != nil {
			d := **p
			*p = &d
		}
	}
	if c.ExpiredAt != nil {
		at := *c.ExpiredAt
		c.ExpiredAt = &at
	}
	return c
}

var (
	allStatuses = []string{ica.ApprovalPending, ica.ApprovalTechnical, ica.ApprovalApproved,
		ica.ApprovalRejected, ica.ApprovalExpired, ica.ApprovalBypassed, ica.ApprovalSuperseded}
	allActions = []string{ica.ActApproveTechnical, ica.ActApproveBusiness, ica.ActReject,
		ica.ActVoid, ica.ActExpire, ica.ActBypass, ica.ActSupersede, "launch_missiles"}
)

// validTransition is a transition that only the state machine's own rules
// (order, expiry) can refuse: a named decider who is neither the requester
// nor the technical approver, and a reason.
func validTransition(action string, at time.Time) ica.Transition {
	return ica.Transition{Action: action, By: carol, Comment: "looks right", Via: "mattermost", At: at}
}

// TestApproval_Apply_Matrix applies every action to every status, before
// the deadline and at it, and checks the outcome and its error code.
func TestApproval_Apply_Matrix(t *testing.T) {
	type outcome struct {
		status string // resulting status when allowed
		code   string // error code when refused
	}
	ok := func(s string) outcome { return outcome{status: s} }
	no := func(c string) outcome { return outcome{code: c} }
	final := no(ica.ECONFLICT)
	// A decided approval that was not used can still be voided by its run,
	// and an approved one superseded while it waits for the lock.
	afterApproval := func(supersede bool) map[string]outcome {
		m := map[string]outcome{ica.ActVoid: ok(ica.ApprovalRejected), ica.ActSupersede: final}
		for _, a := range allActions {
			if _, set := m[a]; !set {
				m[a] = final
			}
		}
		if supersede {
			m[ica.ActSupersede] = ok(ica.ApprovalSuperseded)
		}
		return m
	}
	beforeDeadline := map[string]map[string]outcome{
		ica.ApprovalPending: {
			ica.ActApproveTechnical: ok(ica.ApprovalTechnical),
			ica.ActApproveBusiness:  no(ica.ECONFLICT), // technical first
			ica.ActReject:           ok(ica.ApprovalRejected),
			ica.ActVoid:             ok(ica.ApprovalRejected),
			ica.ActSupersede:        ok(ica.ApprovalSuperseded),
			ica.ActExpire:           no(ica.ECONFLICT), // not due
			ica.ActBypass:           ok(ica.ApprovalBypassed),
			"launch_missiles":       no(ica.EINVALID),
		},
		ica.ApprovalTechnical: {
			ica.ActApproveTechnical: no(ica.ECONFLICT), // already given
			ica.ActApproveBusiness:  ok(ica.ApprovalApproved),
			ica.ActReject:           ok(ica.ApprovalRejected),
			ica.ActVoid:             ok(ica.ApprovalRejected),
			ica.ActSupersede:        ok(ica.ApprovalSuperseded),
			ica.ActExpire:           no(ica.ECONFLICT),
			ica.ActBypass:           ok(ica.ApprovalBypassed),
			"launch_missiles":       no(ica.EINVALID),
		},
		ica.ApprovalApproved: afterApproval(true),
		ica.ApprovalBypassed: afterApproval(false),
	}
	atDeadline := map[string]map[string]outcome{
		ica.ApprovalPending: {
			ica.ActApproveTechnical: no(ica.ECONFLICT), // expired
			ica.ActApproveBusiness:  no(ica.ECONFLICT),
			ica.ActReject:           ok(ica.ApprovalRejected),
			ica.ActVoid:             ok(ica.ApprovalRejected),
			ica.ActSupersede:        ok(ica.ApprovalSuperseded),
			ica.ActExpire:           ok(ica.ApprovalExpired),
			ica.ActBypass:           ok(ica.ApprovalBypassed),
			"launch_missiles":       no(ica.EINVALID),
		},
		ica.ApprovalTechnical: {
			ica.ActApproveTechnical: no(ica.ECONFLICT),
			ica.ActApproveBusiness:  no(ica.ECONFLICT), // expired
			ica.ActReject:           ok(ica.ApprovalRejected),
			ica.ActVoid:             ok(ica.ApprovalRejected),
			ica.ActSupersede:        ok(ica.ApprovalSuperseded),
			ica.ActExpire:           ok(ica.ApprovalExpired),
			ica.ActBypass:           ok(ica.ApprovalBypassed),
			"launch_missiles":       no(ica.EINVALID),
		},
		ica.ApprovalApproved: afterApproval(true),
		ica.ApprovalBypassed: afterApproval(false),
	}
	for _, when := range []struct {
		name string
		at   time.Time
		want map[string]map[string]outcome
	}{
		{"before_deadline", deadline.Add(-time.Nanosecond), beforeDeadline},
		{"at_deadline", deadline, atDeadline},
		{"after_deadline", deadline.Add(time.Hour), atDeadline},
	} {
		for _, status := range allStatuses {
			for _, action := range allActions {
				t.Run(when.name+"/"+status+"/"+action, func(t *testing.T) {
					want := final
					if m, open := when.want[status]; open {
						want = m[action]
					}
					a := approvalIn(status)
					before := snapshot(a)
					got, err := a.Apply(validTransition(action, when.at))
					require.Equal(t, before, snapshot(a), "Apply modified its input")
					if want.code != "" {
						require.Error(t, err)
						require.Nil(t, got)
						require.Equal(t, want.code, ica.ErrorCode(err), "error: %v", err)
						require.NotEmpty(t, ica.ErrorMessage(err))
						return
					}
					require.NoError(t, err)
					require.Equal(t, want.status, got.Status)
					require.Equal(t, ica.ResultStatus(action), got.Status)
					require.Equal(t, a.Version+1, got.Version)
					require.Equal(t, when.at, got.UpdatedAt)
					require.True(t, got.Final() || got.Status == ica.ApprovalTechnical)
					checkDecisionRecorded(t, action, a, got, when.at)
				})
			}
		}
	}
}

// checkDecisionRecorded checks that the action's decision is on the result
// and that nothing else changed.
func checkDecisionRecorded(t *testing.T, action string, in, got *ica.Approval, at time.Time) {
	t.Helper()
	want := snapshot(in)
	d := &ica.Decision{Decider: carol, At: at, Comment: "looks right", Via: "mattermost"}
	switch action {
	case ica.ActApproveTechnical:
		want.Technical = d
		want.TechnicalApprovals = append(want.TechnicalApprovals, *d)
	case ica.ActApproveBusiness:
		want.Business = d
		want.BusinessApprovals = append(want.BusinessApprovals, *d)
	case ica.ActReject, ica.ActVoid, ica.ActSupersede:
		want.Rejection = d
	case ica.ActBypass:
		want.Bypass = d
	case ica.ActExpire:
		want.ExpiredAt = &at
	}
	want.Status, want.UpdatedAt, want.Version = got.Status, at, in.Version+1
	require.Equal(t, want, snapshot(got))
}

func TestApproval_Apply_FullPath(t *testing.T) {
	a := approvalIn(ica.ApprovalPending)
	a.Version = 0
	a1, err := a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: alice, At: t0.Add(time.Minute), Via: "mattermost"})
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalTechnical, a1.Status)
	require.Equal(t, ica.StepBusiness, a1.Step())
	require.False(t, a1.Final())
	a2, err := a1.Apply(ica.Transition{Action: ica.ActApproveBusiness, By: bob, At: t0.Add(2 * time.Minute), Via: "api"})
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalApproved, a2.Status)
	require.Equal(t, "", a2.Step())
	require.True(t, a2.Final())
	require.Equal(t, 2, a2.Version)
	require.Equal(t, "alice", a2.Technical.Username)
	require.Equal(t, "bob", a2.Business.Username)
	require.Equal(t, "api", a2.Business.Via)
	// The earlier views are untouched.
	require.Equal(t, ica.ApprovalPending, a.Status)
	require.Nil(t, a.Technical)
	require.Nil(t, a1.Business)
	require.Equal(t, 1, a1.Version)

	// A decided approval names who decided it.
	_, err = a2.Apply(ica.Transition{Action: ica.ActReject, By: carol, Comment: "late", At: t0.Add(3 * time.Minute)})
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
	require.Contains(t, ica.ErrorMessage(err), "already approved by bob")
}

func TestApproval_Apply_RequesterCannotApprove(t *testing.T) {
	for _, status := range []string{ica.ApprovalPending, ica.ApprovalTechnical} {
		action := ica.ActApproveTechnical
		if status == ica.ApprovalTechnical {
			action = ica.ActApproveBusiness
		}
		for _, name := range []string{"Requester", "requester", "REQUESTER", "rEqUeStEr"} {
			t.Run(status+"/"+name, func(t *testing.T) {
				a := approvalIn(status)
				_, err := a.Apply(ica.Transition{Action: action, By: ica.Decider{UserID: "uid-x", Username: name}, At: t0.Add(time.Hour)})
				require.Equal(t, ica.EFORBIDDEN, ica.ErrorCode(err), "err: %v", err)
				require.Contains(t, ica.ErrorMessage(err), "requested this deployment")
			})
		}
	}
	t.Run("requester_may_still_reject", func(t *testing.T) {
		a := approvalIn(ica.ApprovalPending)
		got, err := a.Apply(ica.Transition{Action: ica.ActReject, By: ica.Decider{Username: "requester"}, Comment: "wrong build", At: t0.Add(time.Hour)})
		require.NoError(t, err)
		require.Equal(t, ica.ApprovalRejected, got.Status)
	})
	t.Run("similar_name_is_not_the_requester", func(t *testing.T) {
		a := approvalIn(ica.ApprovalPending)
		_, err := a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{Username: "requester2"}, At: t0.Add(time.Hour)})
		require.NoError(t, err)
	})
	t.Run("no_requester_recorded", func(t *testing.T) {
		a := approvalIn(ica.ApprovalPending)
		a.RequestedBy = ""
		_, err := a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: alice, At: t0.Add(time.Hour)})
		require.NoError(t, err)
	})
}

func TestApproval_Apply_OnePersonCannotGiveBothApprovals(t *testing.T) {
	cases := []struct {
		name      string
		technical ica.Decider
		business  ica.Decider
		forbidden bool
	}{
		{"same_user_id", alice, alice, true},
		{"same_user_id_renamed", alice, ica.Decider{UserID: "uid-alice", Username: "alice.new"}, true},
		{"same_user_id_no_names", ica.Decider{UserID: "u1"}, ica.Decider{UserID: "u1"}, true},
		{"different_user_ids_same_name", alice, ica.Decider{UserID: "uid-other", Username: "alice"}, false},
		{"no_ids_same_username", ica.Decider{Username: "alice"}, ica.Decider{Username: "alice"}, true},
		{"no_ids_username_case", ica.Decider{Username: "alice"}, ica.Decider{Username: "ALICE"}, true},
		{"one_id_missing_same_username", alice, ica.Decider{Username: "Alice"}, true},
		{"other_id_missing_same_username", ica.Decider{Username: "alice"}, alice, true},
		{"no_ids_different_usernames", ica.Decider{Username: "alice"}, ica.Decider{Username: "bob"}, false},
		{"different_people", alice, bob, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := approvalIn(ica.ApprovalPending)
			a1, err := a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: c.technical, At: t0.Add(time.Minute)})
			require.NoError(t, err)
			a2, err := a1.Apply(ica.Transition{Action: ica.ActApproveBusiness, By: c.business, At: t0.Add(2 * time.Minute)})
			if c.forbidden {
				require.Equal(t, ica.EFORBIDDEN, ica.ErrorCode(err), "err: %v", err)
				require.Nil(t, a2)
				require.Equal(t, ica.ApprovalTechnical, a1.Status)
				return
			}
			require.NoError(t, err)
			require.Equal(t, ica.ApprovalApproved, a2.Status)
		})
	}
}

func TestApproval_Apply_NeedsNamedApprover(t *testing.T) {
	for _, action := range []string{ica.ActApproveTechnical, ica.ActApproveBusiness} {
		status := ica.ApprovalPending
		if action == ica.ActApproveBusiness {
			status = ica.ApprovalTechnical
		}
		a := approvalIn(status)
		_, err := a.Apply(ica.Transition{Action: action, At: t0.Add(time.Minute)})
		require.Equal(t, ica.EFORBIDDEN, ica.ErrorCode(err), "%s: %v", action, err)
	}
}

func TestApproval_Apply_ReasonRequired(t *testing.T) {
	for _, action := range []string{ica.ActReject, ica.ActVoid, ica.ActBypass} {
		for _, reason := range []string{"", " ", "\t\n "} {
			t.Run(action+"/"+strings.ReplaceAll(reason, "\n", `\n`), func(t *testing.T) {
				a := approvalIn(ica.ApprovalPending)
				got, err := a.Apply(ica.Transition{Action: action, By: carol, Comment: reason, At: t0.Add(time.Minute)})
				require.Nil(t, got)
				require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
				require.Equal(t, "reason", ica.ErrorField(err))
			})
		}
	}
}

func TestApproval_Apply_ExpiryAtDeadline(t *testing.T) {
	a := approvalIn(ica.ApprovalPending)

	// One nanosecond before the deadline the approval is still open.
	_, err := a.Apply(ica.Transition{Action: ica.ActExpire, At: deadline.Add(-time.Nanosecond), Via: "scheduler"})
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
	_, err = a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: alice, At: deadline.Add(-time.Nanosecond)})
	require.NoError(t, err)

	// At the deadline exactly it has expired.
	_, err = a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: alice, At: deadline})
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
	require.Contains(t, ica.ErrorMessage(err), "expired")
	got, err := a.Apply(ica.Transition{Action: ica.ActExpire, At: deadline, Via: "scheduler"})
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalExpired, got.Status)
	require.NotNil(t, got.ExpiredAt)
	require.True(t, got.ExpiredAt.Equal(deadline))
	require.Nil(t, a.ExpiredAt)

	// The deadline is an instant: a time in another zone compares equal.
	_, err = a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: alice, At: deadline.In(time.FixedZone("CET", 3600))})
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))

	// Once expired, nothing more happens, approvals included.
	for _, action := range allActions {
		_, err := got.Apply(validTransition(action, deadline.Add(time.Hour)))
		require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err), action)
		require.Contains(t, ica.ErrorMessage(err), "already expired")
	}
}

func TestApproval_Apply_BusinessAfterExpiryOfTechnical(t *testing.T) {
	a := approvalIn(ica.ApprovalTechnical)
	_, err := a.Apply(ica.Transition{Action: ica.ActApproveBusiness, By: bob, At: deadline.Add(time.Second)})
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
	require.Equal(t, ica.ApprovalTechnical, a.Status)
}

func TestApproval_Apply_VersionIncrementsOncePerTransition(t *testing.T) {
	a := approvalIn(ica.ApprovalPending)
	a.Version = 41
	a1, err := a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: alice, At: t0.Add(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, 42, a1.Version)
	// A refused transition returns no approval, so no version either.
	_, err = a1.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: carol, At: t0.Add(2 * time.Minute)})
	require.Error(t, err)
	require.Equal(t, 42, a1.Version)
	a2, err := a1.Apply(ica.Transition{Action: ica.ActBypass, By: carol, Comment: "hotfix", At: t0.Add(3 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, 43, a2.Version)
}

func TestApproval_Apply_ResultDoesNotAliasInput(t *testing.T) {
	a := approvalIn(ica.ApprovalTechnical)
	got, err := a.Apply(ica.Transition{Action: ica.ActApproveBusiness, By: bob, At: t0.Add(time.Hour)})
	require.NoError(t, err)
	got.Business.Comment = "edited later"
	got.Status = "mangled"
	require.Nil(t, a.Business)
	require.Equal(t, ica.ApprovalTechnical, a.Status)
}

func TestApproval_FinalAndStep(t *testing.T) {
	for _, s := range allStatuses {
		a := approvalIn(s)
		open := s == ica.ApprovalPending || s == ica.ApprovalTechnical
		require.Equal(t, !open, a.Final(), s)
		switch s {
		case ica.ApprovalPending:
			require.Equal(t, ica.StepTechnical, a.Step())
		case ica.ApprovalTechnical:
			require.Equal(t, ica.StepBusiness, a.Step())
		default:
			require.Equal(t, "", a.Step())
		}
	}
	require.Equal(t, "", ica.ResultStatus("nope"))
}

func f64(v float64) *float64 { return &v }

func TestApprovalRequest_Validate(t *testing.T) {
	good := func() ica.ApprovalRequest {
		return ica.ApprovalRequest{RunID: "run-1", DeploymentTarget: ica.TargetStaging, EstimatedCost: f64(10)}
	}
	cases := []struct {
		name  string
		edit  func(r *ica.ApprovalRequest)
		field string // "" means valid
	}{
		{"valid_staging", func(r *ica.ApprovalRequest) {}, ""},
		{"valid_production", func(r *ica.ApprovalRequest) { r.DeploymentTarget = ica.TargetProduction }, ""},
		{"zero_cost", func(r *ica.ApprovalRequest) { r.EstimatedCost = f64(0) }, ""},
		{"negative_zero_cost", func(r *ica.ApprovalRequest) { r.EstimatedCost = f64(math.Copysign(0, -1)) }, ""},
		{"max_cost", func(r *ica.ApprovalRequest) { r.EstimatedCost = f64(ica.MaxEstimatedCost) }, ""},
		{"above_max_cost", func(r *ica.ApprovalRequest) { r.EstimatedCost = f64(math.Nextafter(ica.MaxEstimatedCost, math.Inf(1))) }, "estimated_cost"},
		{"missing_run_id", func(r *ica.ApprovalRequest) { r.RunID = "" }, "run_id"},
		{"bad_run_id", func(r *ica.ApprovalRequest) { r.RunID = "../etc" }, "run_id"},
		{"missing_target", func(r *ica.ApprovalRequest) { r.DeploymentTarget = "" }, "deployment_target"},
		{"target_case", func(r *ica.ApprovalRequest) { r.DeploymentTarget = "Production" }, "deployment_target"},
		{"unknown_target", func(r *ica.ApprovalRequest) { r.DeploymentTarget = "dev" }, "deployment_target"},
		{"missing_cost", func(r *ica.ApprovalRequest) { r.EstimatedCost = nil }, "estimated_cost"},
		{"negative_cost", func(r *ica.ApprovalRequest) { r.EstimatedCost = f64(-0.01) }, "estimated_cost"},
		{"nan_cost", func(r *ica.ApprovalRequest) { r.EstimatedCost = f64(math.NaN()) }, "estimated_cost"},
		{"inf_cost", func(r *ica.ApprovalRequest) { r.EstimatedCost = f64(math.Inf(1)) }, "estimated_cost"},
		{"minus_inf_cost", func(r *ica.ApprovalRequest) { r.EstimatedCost = f64(math.Inf(-1)) }, "estimated_cost"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := good()
			c.edit(&r)
			err := r.Validate()
			if c.field == "" {
				require.NoError(t, err)
				return
			}
			require.Equal(t, ica.EINVALID, ica.ErrorCode(err), "err: %v", err)
			require.Equal(t, c.field, ica.ErrorField(err))
		})
	}
}

// TestApproval_Apply_DoesNotModifyInputOnAnyPath re-checks, with
// reflect.DeepEqual on the whole value, that refused transitions leave the
// approval as it was too.
func TestApproval_Apply_DoesNotModifyInputOnAnyPath(t *testing.T) {
	bys := []ica.Decider{{}, alice, bob, carol, {Username: "requester"}}
	for _, status := range allStatuses {
		for _, action := range allActions {
			for _, by := range bys {
				for _, comment := range []string{"", "why"} {
					for _, at := range []time.Time{t0, deadline, deadline.Add(time.Hour)} {
						a := approvalIn(status)
						before := snapshot(a)
						got, err := a.Apply(ica.Transition{Action: action, By: by, Comment: comment, At: at})
						if !reflect.DeepEqual(before, snapshot(a)) {
							t.Fatalf("%s/%s by %v: input modified", status, action, by)
						}
						if (got == nil) == (err == nil) {
							t.Fatalf("%s/%s: got %v and err %v: exactly one must be set", status, action, got, err)
						}
					}
				}
			}
		}
	}
}
