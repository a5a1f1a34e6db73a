package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
)

// precheckCase is one request whose answer a read can give.
type precheckCase struct {
	name string
	// bothEngines: refused before the writer on PostgreSQL too.
	bothEngines bool
	do          func(s *store.Store) (any, error)
}

func precheckWorld(t *testing.T) (*store.Store, []precheckCase) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	for _, id := range []string{"open", "done", "failed"} {
		_, _, err := s.StartRun(ctx, start(id), "ado")
		require.NoError(t, err)
	}
	ev := &ica.EventInput{EventType: "build", EventData: json.RawMessage(`{"a":1}`), EventID: "e-1"}
	_, _, err := s.AddEvent(ctx, "open", ev, "ado")
	require.NoError(t, err)
	_, _, err = s.FinishRun(ctx, "done", &ica.RunFinish{Status: ica.RunSuccess}, "ado")
	require.NoError(t, err)
	_, _, err = s.FinishRun(ctx, "failed", &ica.RunFinish{Status: ica.RunFailed}, "ado")
	require.NoError(t, err)
	_, _, err = s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "open", DeploymentTarget: "production", EstimatedCost: ptr(120.0)}, "ado")
	require.NoError(t, err)
	used := sha256.Sum256([]byte("used-link"))
	_, err = s.CreateDashboardLink(ctx, hex.EncodeToString(used[:]), "u1", "alice", time.Hour)
	require.NoError(t, err)
	_, _, err = s.UseDashboardLink(ctx, hex.EncodeToString(used[:]), t0.Add(time.Hour))
	require.NoError(t, err)

	late := &ica.EventInput{EventType: "late", EventData: json.RawMessage(`{}`)}
	other := start("open")
	other.Branch = "refs/heads/other"
	pair := func(a any, b any, err error) (any, error) { return []any{a, b}, err }
	return s, []precheckCase{
		{"an unknown dashboard link", true, func(s *store.Store) (any, error) {
			return pair(s.UseDashboardLink(ctx, hex.EncodeToString(make([]byte, 32)), t0.Add(time.Hour)))
		}},
		{"a used dashboard link", true, func(s *store.Store) (any, error) {
			return pair(s.UseDashboardLink(ctx, hex.EncodeToString(used[:]), t0.Add(time.Hour)))
		}},
		{"an event of an unknown run", false, func(s *store.Store) (any, error) { return pair(s.AddEvent(ctx, "nope", late, "ado")) }},
		{"an event after finish", false, func(s *store.Store) (any, error) { return pair(s.AddEvent(ctx, "done", late, "ado")) }},
		{"a repeated event id", false, func(s *store.Store) (any, error) { return pair(s.AddEvent(ctx, "open", ev, "ado")) }},
		{"a finish of an unknown run", false, func(s *store.Store) (any, error) {
			return pair(s.FinishRun(ctx, "nope", &ica.RunFinish{Status: ica.RunSuccess}, "ado"))
		}},
		{"a finish with another status", false, func(s *store.Store) (any, error) {
			return pair(s.FinishRun(ctx, "done", &ica.RunFinish{Status: ica.RunFailed}, "ado"))
		}},
		{"a repeated finish", false, func(s *store.Store) (any, error) {
			return pair(s.FinishRun(ctx, "done", &ica.RunFinish{Status: ica.RunSuccess}, "ado"))
		}},
		{"a repeated start", false, func(s *store.Store) (any, error) { return pair(s.StartRun(ctx, start("open"), "ado")) }},
		{"a conflicting start", false, func(s *store.Store) (any, error) { return pair(s.StartRun(ctx, other, "ado")) }},
		{"an approval of an unknown run", false, func(s *store.Store) (any, error) {
			return pair(s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "nope", DeploymentTarget: "production", EstimatedCost: ptr(1.0)}, "ado"))
		}},
		{"an approval of a failed run", false, func(s *store.Store) (any, error) {
			return pair(s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "failed", DeploymentTarget: "production", EstimatedCost: ptr(1.0)}, "ado"))
		}},
		{"a conflicting approval request", false, func(s *store.Store) (any, error) {
			return pair(s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "open", DeploymentTarget: "production", EstimatedCost: ptr(999.0)}, "ado"))
		}},
	}
}

// TestPrecheck_RefusedWithoutTheWriter: what a read can answer is answered
// while the writer is busy, so a flood of such requests takes no place in
// the group commit (issue 18 item 2).
func TestPrecheck_RefusedWithoutTheWriter(t *testing.T) {
	s, cases := precheckWorld(t)
	entries := s.LedgerEntries()
	release := s.HoldWriter()
	defer release()
	for _, c := range cases {
		if !c.bothEngines && !s.PrechecksPipelineWrites() {
			continue // PostgreSQL: the group commit decides these (precheck.go)
		}
		got := make(chan error, 1)
		go func() {
			_, err := c.do(s)
			got <- err
		}()
		select {
		case err := <-got:
			if ica.ErrorCode(err) == "" {
				continue // a repeat, answered
			}
			require.Contains(t, []string{ica.ENOTFOUND, ica.ECONFLICT, ica.EUNAUTHORIZED}, ica.ErrorCode(err), c.name)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s waited for the writer", c.name)
		}
	}
	release()
	require.Equal(t, entries, s.LedgerEntries(), "nothing was recorded")
}

// TestPrecheck_SameAnswers: the pre-checks change when a request is
// answered, never what it is answered.
func TestPrecheck_SameAnswers(t *testing.T) {
	s, cases := precheckWorld(t)
	for _, c := range cases {
		s.SetPrecheck(true)
		with, errWith := c.do(s)
		s.SetPrecheck(false)
		without, errWithout := c.do(s)
		require.Equal(t, fmt.Sprint(errWithout), fmt.Sprint(errWith), c.name)
		a, _ := json.Marshal(with)
		b, _ := json.Marshal(without)
		require.JSONEq(t, string(b), string(a), c.name)
	}
	s.SetPrecheck(true)
}
