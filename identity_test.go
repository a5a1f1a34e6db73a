package ica_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func TestParseRequester_Spellings(t *testing.T) {
	for _, tc := range []struct {
		in       string
		username string
		email    string
	}{
		{"tech1", "tech1", ""},
		{"Tech1", "tech1", ""},
		{"@tech1", "tech1", ""},
		{"  tech1\t", "tech1", ""},
		{"tech1@example.com", "tech1", "tech1@example.com"},
		{" tech1@example.com", "tech1", "tech1@example.com"},
		{"TECH1@EXAMPLE.COM", "tech1", "tech1@example.com"},
		{"tech1+ci@example.com", "tech1", "tech1@example.com"},
		{"Tech1+CI@Example.com ", "tech1", "tech1@example.com"},
		{"Tech One <tech1@example.com>", "tech1", "tech1@example.com"},
		{"Tech One <tech1+ci@example.com>", "tech1", "tech1@example.com"},
		{"\"One, Tech\" < Tech1@Example.com >", "tech1", "tech1@example.com"},
		{"jane.o'brien@example.com", "jane.o'brien", "jane.o'brien@example.com"},
		{"microsoft.visualstudio.services.tfs", "microsoft.visualstudio.services.tfs", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ica.ParseRequester(tc.in)
			require.NoError(t, err)
			require.Equal(t, ica.Requester{Username: tc.username, Email: tc.email}, r)
		})
	}
}

func TestParseRequester_Refused(t *testing.T) {
	for _, in := range []string{"", "   ", "Tech One", "Tech One <>", "Tech One <tech1>", "<tech1@example.com",
		"tech1@", "@", "@@example.com", "+ci@example.com", "a@b@c", "tech1@exa mple.com", "tech1@.com", "tech one@example.com",
		"Project Collection Build Service (contoso)", "tech1\u202e@example.com"} {
		t.Run(in, func(t *testing.T) {
			_, err := ica.ParseRequester(in)
			require.Error(t, err)
		})
	}
}

// TestRequester_Is: every spelling of tech1's identity from issue 16 keeps
// tech1 (Mattermost username tech1, e-mail tech1@example.com) from
// approving, matched by username or by e-mail; other people are not caught.
func TestRequester_Is(t *testing.T) {
	spellings := []string{"tech1", "TECH1", "tech1+ci@example.com", " tech1@example.com", "Tech One <tech1@example.com>",
		"TECH1@EXAMPLE.COM", "Tech One <Tech1+deploy@Example.COM>", "@tech1"}
	for _, s := range spellings {
		t.Run(s, func(t *testing.T) {
			require.True(t, ica.IsRequester("tech1", "", s), "by username")
			require.True(t, ica.IsRequester("", "tech1@example.com", s), "by e-mail")
			require.True(t, ica.IsRequester("Tech1", "Tech1+x@example.com", s), "both, any case")
			require.False(t, ica.IsRequester("tech2", "tech2@example.com", s))
			require.False(t, ica.IsRequester("biz1", "", s))
			require.False(t, ica.IsRequester("", "", s), "nobody is nobody's requester")
		})
	}
	// The Mattermost username differs from the address; the e-mail still
	// matches.
	require.True(t, ica.IsRequester("t.one", "tech1@example.com", "tech1+ci@example.com"))
	// A username requester matches the local part of the person's address.
	require.True(t, ica.IsRequester("t.one", "tech1@example.com", "tech1"))
	// An unparseable requester excludes nobody (it is refused at run start).
	require.False(t, ica.IsRequester("tech", "", "Tech One"))
}

func TestApproval_IsRequester(t *testing.T) {
	a := &ica.Approval{RequestedBy: "Tech One <tech1+ci@example.com>"}
	require.True(t, a.IsRequester("tech1", ""))
	require.True(t, a.IsRequester("someone", "tech1@example.com"))
	require.False(t, a.IsRequester("tech2", "tech2@example.com"))

	// The state machine refuses the requester whichever way they are named.
	a = approvalIn(ica.ApprovalPending)
	a.RequestedBy = "Tech One <tech1+ci@example.com>"
	_, err := a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: "u1", Username: "t.one"},
		ByEmail: "Tech1@example.com", Via: "mattermost", At: t0})
	require.Equal(t, ica.EFORBIDDEN, ica.ErrorCode(err))
	_, err = a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: "u1", Username: "tech1"}, Via: "mattermost", At: t0})
	require.Equal(t, ica.EFORBIDDEN, ica.ErrorCode(err))
	_, err = a.Apply(ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: "u2", Username: "tech2"},
		ByEmail: "tech2@example.com", Via: "mattermost", At: t0})
	require.NoError(t, err)
}

func TestRunStart_Requester(t *testing.T) {
	base := func() ica.RunStart {
		return ica.RunStart{PipelineName: "web", RunID: "r1", Branch: "main", Commit: "0123456789abcdef", TriggeredBy: "tech1"}
	}
	for _, ok := range []string{"tech1", "tech1+ci@example.com", " tech1@example.com", "Tech One <tech1@example.com>"} {
		s := base()
		s.TriggeredBy = ok
		require.NoError(t, s.Validate(), ok)
	}
	for _, bad := range []string{"Tech One", "Tech One <>", "a@b@c"} {
		s := base()
		s.TriggeredBy = bad
		err := s.Validate()
		require.Equal(t, ica.EINVALID, ica.ErrorCode(err), bad)
		require.Equal(t, "triggered_by", ica.ErrorField(err), bad)
	}
	s := base()
	s.RequestedForEmail = "not an address"
	require.Equal(t, "requested_for_email", ica.ErrorField(s.Validate()))
	s = base()
	s.RequestedForID = "white space"
	require.Equal(t, "requested_for_id", ica.ErrorField(s.Validate()))
	s = base()
	s.RequestedForEmail, s.RequestedForID = "Tech1@example.com", "6f1c9a1e-0b1d-4c53-9d2f-7d0c6a0c1b11"
	require.NoError(t, s.Validate())
	require.Equal(t, ica.RunRequester{Email: "Tech1@example.com", ID: "6f1c9a1e-0b1d-4c53-9d2f-7d0c6a0c1b11"},
		(&ica.Run{RequestedForEmail: s.RequestedForEmail, RequestedForID: s.RequestedForID}).Requester())
}

func FuzzParseRequester(f *testing.F) {
	for _, s := range []string{"tech1", "Tech One <tech1+ci@example.com>", " tech1@example.com", "<>", "a@b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ica.ParseRequester(s)
		if err != nil {
			return
		}
		if r.Username == "" {
			t.Fatalf("%q parsed without a username", s)
		}
		// Normalising is idempotent, and the requester is their own requester.
		again := r.Username
		if r.Email != "" {
			again = r.Email
		}
		r2, err := ica.ParseRequester(again)
		if err != nil || r2 != r {
			t.Fatalf("%q → %+v, re-parsed %+v, %v", s, r, r2, err)
		}
		if !r.Is(r.Username, r.Email) {
			t.Fatalf("%q is not its own requester", s)
		}
	})
}
