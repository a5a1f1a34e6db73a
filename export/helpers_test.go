package export

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// testKey is a fixed Ed25519 key so failures reproduce.
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

var t0 = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

// chainBuilder appends real, hash-chained ledger entries.
type chainBuilder struct {
	tb      testing.TB
	entries []*ica.LedgerEntry
	now     time.Time
}

func newChain(tb testing.TB) *chainBuilder { return &chainBuilder{tb: tb, now: t0} }

func (c *chainBuilder) add(kind, subject, actor string, data any) *ica.LedgerEntry {
	c.tb.Helper()
	raw, err := json.Marshal(data)
	require.NoError(c.tb, err)
	prev := ica.GenesisHash
	if n := len(c.entries); n > 0 {
		prev = c.entries[n-1].Hash
	}
	e := &ica.LedgerEntry{
		Seq: uint64(len(c.entries)) + 1, Time: c.now, Kind: kind, Subject: subject, Actor: actor,
		Data: raw, PrevHash: prev,
	}
	e.Hash, err = e.ComputeHash()
	require.NoError(c.tb, err)
	c.entries = append(c.entries, e)
	c.now = c.now.Add(37*time.Second + 123456789*time.Nanosecond)
	return e
}

// run adds the entries of one pipeline run: start, events, finish, and for
// some runs an approval.
func (c *chainBuilder) run(i int, pipeline, status string, withApproval bool) {
	c.tb.Helper()
	id := fmt.Sprintf("%s-%d", pipeline, 1000+i)
	start := c.now
	r := ica.Run{
		RunID: id, PipelineName: pipeline, Branch: "refs/heads/main", Commit: fmt.Sprintf("%040x", 0xabc000+i),
		TriggeredBy: "alice@example.com", Status: ica.RunRunning, StartTime: start, Actor: "azp-" + pipeline,
		URL: "https://dev.azure.com/contoso/payments/_build/results?buildId=" + fmt.Sprint(1000+i),
	}
	c.add(ica.KindRunStarted, id, r.Actor, r)
	c.add(ica.KindRunEvent, id, r.Actor, map[string]any{"run_id": id, "event_type": "stage.completed",
		"event_data": map[string]any{"stage": "build", "result": "succeeded", "note": "a \"quoted\", comma, <html> & ü"}})
	if withApproval {
		aid := "apr-" + id
		a := ica.Approval{ID: aid, RunID: id, PipelineName: pipeline, Branch: r.Branch, Commit: r.Commit,
			Target: ica.TargetProduction, EstimatedCost: 12.5, Status: ica.ApprovalPending, RequestedBy: r.TriggeredBy,
			CreatedAt: c.now, ExpiresAt: c.now.Add(4 * time.Hour)}
		c.add(ica.KindApprovalRequested, aid, r.Actor, a)
		a.Status = ica.ApprovalTechnical
		a.Technical = &ica.Decision{Decider: ica.Decider{Username: "bob"}, At: c.now, Via: "mattermost"}
		c.add(ica.KindApprovalTransition+a.Status, aid, "bob", a)
		if i%3 == 0 {
			a.Status = ica.ApprovalRejected
			a.Rejection = &ica.Decision{Decider: ica.Decider{Username: "carol"}, At: c.now, Comment: "not now", Via: "mattermost"}
		} else {
			a.Status = ica.ApprovalApproved
			a.Business = &ica.Decision{Decider: ica.Decider{Username: "carol"}, At: c.now, Via: "mattermost"}
		}
		c.add(ica.KindApprovalTransition+a.Status, aid, "carol", a)
	}
	end := c.now
	r.Status, r.EndTime = status, &end
	c.add(ica.KindRunFinished, id, r.Actor, r)
}

// sample builds a chain of n runs over a few pipelines and outcomes.
func sample(tb testing.TB, n int) *chainBuilder {
	c := newChain(tb)
	statuses := []string{ica.RunSuccess, ica.RunSuccess, ica.RunFailed, ica.RunSuccess, ica.RunCancelled}
	pipelines := []string{"payments", "ledger-api", "web-frontend"}
	for i := 0; i < n; i++ {
		c.run(i, pipelines[i%len(pipelines)], statuses[i%len(statuses)], i%2 == 0)
		c.now = c.now.Add(3 * time.Hour)
	}
	return c
}

// head signs the chain's last entry (or genesis for an empty chain).
func (c *chainBuilder) head() ica.Checkpoint {
	if len(c.entries) == 0 {
		return ica.SignCheckpoint(testKey, 0, ica.GenesisHash, t0)
	}
	last := c.entries[len(c.entries)-1]
	return ica.SignCheckpoint(testKey, last.Seq, last.Hash, c.now)
}

func testOptions(format string, head ica.Checkpoint) Options {
	return Options{
		Format: format, From: t0.Add(-time.Hour), To: t0.AddDate(0, 2, 0), Filter: "all pipelines",
		Key: testKey, Head: head, GeneratedAt: time.Date(2025, 5, 2, 10, 30, 0, 0, time.UTC),
	}
}

// mustExport encodes entries in format and returns the bytes and manifest.
func mustExport(tb testing.TB, format string, entries []*ica.LedgerEntry, head ica.Checkpoint) ([]byte, *Manifest) {
	tb.Helper()
	var buf bytes.Buffer
	enc, err := NewEncoder(&buf, testOptions(format, head))
	require.NoError(tb, err)
	for _, e := range entries {
		require.NoError(tb, enc.Encode(e))
	}
	m, err := enc.Close()
	require.NoError(tb, err)
	return buf.Bytes(), m
}

// mustVerifyOK verifies b and requires success.
func mustVerifyOK(tb testing.TB, b []byte) *Report {
	tb.Helper()
	rep, err := Verify(bytes.NewReader(b))
	require.NoError(tb, err, "report: %s", rep)
	require.True(tb, rep.OK)
	require.Empty(tb, rep.Problem)
	return rep
}

// mustVerifyFail verifies b and requires the given problem.
func mustVerifyFail(tb testing.TB, b []byte, problem string, seq uint64) *Report {
	tb.Helper()
	rep, err := Verify(bytes.NewReader(b))
	require.Error(tb, err)
	require.Equal(tb, ica.EINVALID, ica.ErrorCode(err))
	require.False(tb, rep.OK)
	require.Equal(tb, problem, rep.Problem)
	require.Equal(tb, seq, rep.ProblemSeq)
	return rep
}
