package slashcmds

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// proofQueries adds what "/ica status A-17" reads to the fake queries.
type proofQueries struct {
	*fakeQueries
	byID map[string]*ica.Approval
	cov  map[uint64]*Coverage
}

func (p proofQueries) Approval(_ context.Context, id string) (*ica.Approval, error) {
	if a := p.byID[id]; a != nil {
		return a, nil
	}
	return nil, ica.Errorf(ica.ENOTFOUND, "approval %s not found", id)
}

func (p proofQueries) Coverage(_ context.Context, seq uint64) (*Coverage, error) {
	return p.cov[seq], nil
}

func TestStatus_ApprovalWitness(t *testing.T) {
	pq := proofQueries{byID: map[string]*ica.Approval{
		"A-17": {ID: "A-17", RunID: "r-9", PipelineName: "payments", Target: "production", Commit: "0123456789abcdef",
			Status: ica.ApprovalApproved, Business: &ica.Decision{Decider: ica.Decider{Username: "biz1"}},
			DecisionSeq: 1234, DecisionHash: "ab12"},
		"A-18": {ID: "A-18", Status: ica.ApprovalPending, ExpiresAt: t0.Add(time.Hour), DecisionSeq: 1300, DecisionHash: "cd34"},
	}, cov: map[uint64]*Coverage{
		1234: {Size: 2000, Witnessed: true, Where: "https://acct.blob.core.windows.net/ica-exports/checkpoints/l/00000000000000002000", WitnessedAt: t0},
	}}
	w := newWorld(t, func(d *Deps) {
		pq.fakeQueries = d.Queries.(*fakeQueries)
		d.Queries = pq
	})
	reply := w.slash("tech1", "deployments", "/ica status A-17")
	for _, want := range []string{
		"#### Approval `A-17`: approved by biz1",
		"its latest decision is entry 1234 (hash `ab12`)",
		"covered by the checkpoint of 2000 entries, published at https://acct.blob.core.windows.net/ica-exports/checkpoints/l/00000000000000002000",
		"`ica proof A-17`",
	} {
		require.Contains(t, reply, want)
	}
	reply = w.slash("tech1", "deployments", "/ica status A-18")
	require.Contains(t, reply, "no signed checkpoint covers it yet")
	// Not an approval: the run and pipeline look-ups as before.
	reply = w.slash("tech1", "deployments", "/ica status A-19")
	require.Contains(t, reply, "No run with id `A-19`")
}
