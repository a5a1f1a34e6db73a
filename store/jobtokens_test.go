package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
)

// xorSealer stands for the job token key: it only has to change the bytes.
type xorSealer struct{}

func (xorSealer) Seal(secret, context []byte) ([]byte, error) {
	out := append([]byte("sealed:"), secret...)
	for i := 7; i < len(out); i++ {
		out[i] ^= 0x5a
	}
	return out, nil
}

func checkCallback(task string) *ica.CheckCallback {
	return &ica.CheckCallback{PlanURL: "https://dev.azure.com/contoso/", ProjectID: "p-1", HubName: "build", PlanID: "plan-1",
		JobID: "job-1", TaskInstanceID: task, AuthToken: "job-token-" + task}
}

func TestStore_CheckWithoutSealer_Refused(t *testing.T) {
	s, _ := MustOpen(t)
	_, _, err := s.StartRun(context.Background(), start("r1"), "ado")
	require.NoError(t, err)
	_, _, err = s.RequestApprovalWithCheck(context.Background(), &ica.ApprovalRequest{RunID: "r1", DeploymentTarget: "production", EstimatedCost: ptr(1.0)},
		checkCallback("t-1"), "ado")
	require.Equal(t, ica.ENOTCONFIGURED, code(err), "a job token is never kept in clear")
}

func TestStore_DeadLetter_DropsSealedSecret(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	require.NoError(t, s.Enqueue(ctx, &ica.OutboxMessage{Destination: ica.CheckDestination, Kind: "task.completed", Key: "k1",
		Payload: json.RawMessage(`{}`), Sealed: []byte("sealed-secret")}))
	msgs, err := s.PendingOutbox(ctx, ica.CheckDestination, 1)
	require.NoError(t, err)
	require.Equal(t, []byte("sealed-secret"), msgs[0].Sealed)
	require.NoError(t, s.FailOutbox(ctx, ica.CheckDestination, msgs[0].ID, "401"))
	dead, err := s.DeadLetters(ctx, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Nil(t, dead[0].Sealed, "a dead letter is never sent: its secret is not kept")
}

// TestStore_SealLegacyJobTokens: the tokens an earlier ICA kept in clear are
// sealed (a check still waiting) or erased (decided, dead letters) at start.
func TestStore_SealLegacyJobTokens(t *testing.T) {
	s, _ := openUnchecked(t, func(o *store.Options) { o.TokenSealer = xorSealer{} })
	ctx := context.Background()
	open := approvalFor(t, s, "r1")
	done := approvalFor(t, s, "r2")
	_, err := s.Transition(ctx, done.ID, ica.Transition{Action: ica.ActReject, By: ica.Decider{Username: "tech1"}, Comment: "no"}, "mm", nil)
	require.NoError(t, err)
	legacy := func(v any) []byte {
		raw, err := json.Marshal(v)
		require.NoError(t, err)
		return raw
	}
	// As an earlier version wrote them: the callback with its token.
	require.NoError(t, s.PutRaw("approval_checks", []byte(open.ID+"\x00t-open"), legacy(checkCallback("t-open"))))
	require.NoError(t, s.PutRaw("approval_checks", []byte(done.ID+"\x00t-done"), legacy(checkCallback("t-done"))))
	payload := legacy(ica.CheckCompletion{Callback: *checkCallback("t-queued"), ApprovalID: done.ID, Status: "rejected", Result: "failed"})
	require.NoError(t, s.Enqueue(ctx, &ica.OutboxMessage{Destination: ica.CheckDestination, Kind: "task.completed", Key: "legacy", Payload: payload}))
	require.NoError(t, s.PutRaw("outbox_dead", []byte("\x00\x00\x00\x00\x00\x00\x03\xe7"),
		legacy(ica.OutboxMessage{ID: 999, Destination: ica.CheckDestination, Payload: legacy(ica.CheckCompletion{Callback: *checkCallback("t-dead")})})))

	n, err := s.SealLegacyJobTokens()
	require.NoError(t, err)
	require.Equal(t, 4, n)
	n, err = s.SealLegacyJobTokens()
	require.NoError(t, err)
	require.Zero(t, n, "once")

	// Every record of a backup, read back (the freed pages of a bbolt file
	// keep the old bytes until reused: such tokens expire 48 h after their
	// check ran, and the README says so).
	for _, task := range []string{"t-open", "t-done", "t-queued", "t-dead"} {
		require.Empty(t, backupRecordsWith(t, s, "job-token-"+task), task)
	}
	kept, err := s.KeptJobTokens(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, kept, "the waiting check's token, sealed")
	msgs, err := s.PendingOutbox(ctx, ica.CheckDestination, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, "sealed:", string(msgs[0].Sealed[:7]), "the queued message carries its token sealed")
	require.NotContains(t, string(msgs[0].Payload), "auth_token")

	// The waiting check's sealed token goes into its message at the decision.
	_, err = s.Transition(ctx, open.ID, ica.Transition{Action: ica.ActReject, By: ica.Decider{Username: "tech1"}, Comment: "no"}, "mm", nil)
	require.NoError(t, err)
	kept, err = s.KeptJobTokens(ctx)
	require.NoError(t, err)
	require.Zero(t, kept)
	msgs, err = s.PendingOutbox(ctx, ica.CheckDestination, 10)
	require.NoError(t, err)
	require.Len(t, msgs, 2)
	require.Equal(t, "sealed:", string(msgs[1].Sealed[:7]))

	// The records written behind the ledger's back are what ica check
	// names: the waiting one was answered (and dropped); the other stays.
	rep, err := s.Check()
	require.NoError(t, err)
	require.Len(t, rep.Problems, 1, "%v", rep.Problems)
	require.Contains(t, rep.Problems[0], "task t-done) is not in the ledger")
}

// backupRecordsWith returns the bucket/key of every record of a backup of s
// whose value contains needle.
func backupRecordsWith(t *testing.T, s *store.Store, needle string) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	require.NoError(t, err)
	_, err = s.WriteBackup(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var found []string
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if bytes.Contains(v, []byte(needle)) {
					found = append(found, string(name)+"/"+string(k))
				}
				return nil
			})
		})
	}))
	return found
}
