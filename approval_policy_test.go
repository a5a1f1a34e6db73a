package ica_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func TestApproval_Apply_NOfM(t *testing.T) {
	dave := ica.Decider{UserID: "uid-dave", Username: "dave"}
	a := approvalIn(ica.ApprovalPending)
	a.TechnicalRequired, a.BusinessRequired = 2, 2
	approve := func(a *ica.Approval, action string, by ica.Decider) (*ica.Approval, error) {
		return a.Apply(ica.Transition{Action: action, By: by, At: t0.Add(time.Minute), Via: "mattermost"})
	}
	a1, err := approve(a, ica.ActApproveTechnical, alice)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalPending, a1.Status, "one of two technical approvals")
	require.Len(t, a1.TechnicalApprovals, 1)
	require.Nil(t, a1.Technical)
	_, err = approve(a1, ica.ActApproveTechnical, ica.Decider{UserID: "uid-alice", Username: "ALICE"})
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err), "the same person counts once")
	_, err = approve(a1, ica.ActApproveBusiness, bob)
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err), "technical first")
	a2, err := approve(a1, ica.ActApproveTechnical, bob)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalTechnical, a2.Status)
	require.Equal(t, "bob", a2.Technical.Username)
	_, err = approve(a2, ica.ActApproveBusiness, alice)
	require.Equal(t, ica.EFORBIDDEN, ica.ErrorCode(err), "never on both steps, even the first technical approver")
	a3, err := approve(a2, ica.ActApproveBusiness, carol)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalTechnical, a3.Status)
	_, err = approve(a3, ica.ActApproveBusiness, carol)
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
	a4, err := a3.Apply(ica.Transition{Action: ica.ActReject, By: dave, Comment: "no", At: t0.Add(time.Minute)})
	require.NoError(t, err, "any eligible reject rejects")
	require.Equal(t, ica.ApprovalRejected, a4.Status)
	a5, err := approve(a3, ica.ActApproveBusiness, dave)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalApproved, a5.Status)
	require.Len(t, a5.BusinessApprovals, 2)

	// Above the finance threshold one business approver must be finance.
	f := *a2
	f.FinanceRequired = true
	f1, err := approve(&f, ica.ActApproveBusiness, carol)
	require.NoError(t, err)
	_, err = approve(f1, ica.ActApproveBusiness, dave)
	require.Equal(t, ica.EFORBIDDEN, ica.ErrorCode(err))
	require.Contains(t, ica.ErrorMessage(err), "finance approver")
	f2, err := f1.Apply(ica.Transition{Action: ica.ActApproveBusiness, By: dave, Finance: true, At: t0.Add(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalApproved, f2.Status)
}

func TestApproval_Apply_Deferred(t *testing.T) {
	a := approvalIn(ica.ApprovalTechnical)
	nb := t0.Add(12 * time.Hour)
	got, err := a.Apply(ica.Transition{Action: ica.ActApproveBusiness, By: bob, At: t0.Add(time.Minute), NotBefore: nb})
	require.NoError(t, err)
	require.Equal(t, nb, *got.NotBefore)
	require.Equal(t, t0.Add(time.Minute), got.LastDecision())
}

func TestApproval_Apply_UsedCannotBeVoided(t *testing.T) {
	a := approvalIn(ica.ApprovalApproved)
	a.Use = &ica.ApprovalUse{RunID: "run-1", At: t0}
	_, err := a.Apply(ica.Transition{Action: ica.ActVoid, By: carol, Comment: "x", At: t0})
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
}

func TestCommitCovers(t *testing.T) {
	full := "0123456789abcdef0123456789abcdef01234567"
	for _, c := range []struct {
		recorded, asked string
		ok              bool
	}{
		{full, full, true},
		{full, "0123456789ABCDEF0123456789ABCDEF01234567", true},
		{full, "0123456", true},
		{full, "01234567", true},
		{full, "1234567", false},
		{full, full[:39] + "8", false},
		{"0123456789abcdef", "0123456789abcdef", false}, // a short recorded id proves nothing
		{"0123456789abcdef", "0123456", false},
	} {
		require.Equal(t, c.ok, ica.CommitCovers(c.recorded, c.asked), "%s / %s", c.recorded, c.asked)
	}
	a := &ica.Approval{ID: "A-1", RunID: "r1", Commit: full}
	require.Empty(t, a.Coverage("r1", full[:7], ""))
	require.Contains(t, a.Coverage("r2", "", ""), "not run r2")
	require.Contains(t, a.Coverage("", "abcdef0", ""), "not the approved commit")
	require.Contains(t, a.Coverage("", "", "sha256:"+full[:32]+full[:32]), "recorded no artifact digest")
	for _, bad := range []string{"", "012345", "xyz1234", full + full + "0"} {
		err := ica.ValidCommitParam("commit", bad)
		require.Equal(t, "commit", ica.ErrorField(err), bad)
	}
}

func TestParseDeploymentReport(t *testing.T) {
	r, err := ica.ParseDeploymentReport(json.RawMessage(`{"target":"staging","result":"succeeded","extra":1}`))
	require.NoError(t, err)
	require.Equal(t, "staging", r.Target)
	for in, field := range map[string]string{
		`{"result":"succeeded"}`:                 "event_data.target",
		`{"target":"qa","result":"succeeded"}`:   "event_data.target",
		`{"target":"staging"}`:                   "event_data.result",
		`{"target":"staging","result":"maybe"}`:  "event_data.result",
		`{"target":["staging"],"result":"done"}`: "event_data",
	} {
		_, err := ica.ParseDeploymentReport(json.RawMessage(in))
		require.Equal(t, field, ica.ErrorField(err), in)
	}
}
