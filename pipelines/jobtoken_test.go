package pipelines_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/internal/testclock"
	"github.com/ica-governance/ica/outbox"
	"github.com/ica-governance/ica/pipelines"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
	"github.com/ica-governance/ica/webhooks"
)

func mustJobTokenKey(t *testing.T) *pipelines.JobTokenKey {
	t.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	k, err := pipelines.NewJobTokenKey(secret)
	require.NoError(t, err)
	return k
}

func TestJobTokenKey_SealOpen(t *testing.T) {
	k := mustJobTokenKey(t)
	ctx := []byte("plan\x00job\x00task")
	sealed, err := k.Seal([]byte("job-token"), ctx)
	require.NoError(t, err)
	require.NotContains(t, string(sealed), "job-token")
	again, err := k.Seal([]byte("job-token"), ctx)
	require.NoError(t, err)
	require.NotEqual(t, sealed, again, "a fresh nonce each time")

	got, err := k.Open(sealed, ctx)
	require.NoError(t, err)
	require.Equal(t, "job-token", string(got))

	_, err = k.Open(sealed, []byte("plan\x00job\x00other-task"))
	require.ErrorContains(t, err, "moved to another check")
	bad := bytes.Clone(sealed)
	bad[len(bad)-1] ^= 1
	_, err = k.Open(bad, ctx)
	require.ErrorContains(t, err, "damaged")
	_, err = k.Open(sealed[:10], ctx)
	require.ErrorContains(t, err, "damaged")

	other := mustJobTokenKey(t)
	_, err = other.Open(sealed, ctx)
	require.ErrorIs(t, err, pipelines.ErrJobTokenKey)
	require.ErrorContains(t, err, k.ID())
	require.ErrorContains(t, err, other.ID())
	require.ErrorContains(t, err, "ICA_ACTION_SECRET")
}

// TestCheck_JobTokenNeverAtRestInClear: the job token of a check in callback
// mode is in no backup, in clear, at any point; it is never in the ledger;
// it is erased once its TaskCompleted is delivered (issue 18 item 3).
func TestCheck_JobTokenNeverAtRestInClear(t *testing.T) {
	ado := &fakeADO{}
	adoSrv := httptest.NewServer(ado)
	defer adoSrv.Close()
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tokens := mustJobTokenKey(t)
	var disp *outbox.Dispatcher
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key, OnEnqueue: func() { disp.Notify() }, TokenSealer: tokens})
	require.NoError(t, err)
	defer st.Close()
	disp = outbox.New(st, clock, log, outbox.Policy{BaseDelay: time.Second}, nil)
	disp.Register(ica.CheckDestination, &pipelines.CheckDeliverer{Tokens: tokens})
	disp.Start(context.Background())
	defer disp.Stop(context.Background())
	tok, _ := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken("check-service-connection-token")}, nil)
	srv := httptest.NewServer(webhooks.NewHandler(webhooks.Deps{Ledger: st, Checks: st, Pipelines: tok, Logger: log, Clock: clock}))
	defer srv.Close()
	ctx := context.Background()
	_, _, err = st.StartRun(ctx, &ica.RunStart{PipelineName: "payments", RunID: "4711", Branch: "main",
		Commit: "0123456789abcdef", TriggeredBy: "alice"}, "ado")
	require.NoError(t, err)

	b := make([]byte, 24)
	_, _ = rand.Read(b)
	jobToken := "eyJ0eXAiOiJKV1Qi." + hex.EncodeToString(b) // what $(system.AccessToken) looks like, and unique
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/ado/checks", strings.NewReader(`{"run_id":"4711","deployment_target":"production","estimated_cost":120}`))
	req.Header.Set("Authorization", "Bearer check-service-connection-token")
	for k, v := range map[string]string{"PlanUrl": adoSrv.URL + "/contoso/", "ProjectId": "6a3f2f04-8a7b-4c1b-9c71-22f3c1d2e9a1",
		"HubName": "build", "PlanId": "b1c2d3e4-0000-4000-8000-000000000001", "JobId": "c1c2d3e4-0000-4000-8000-000000000002",
		"TaskInstanceId": "d1c2d3e4-0000-4000-8000-000000000003", "AuthToken": jobToken} {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var created ica.Approval
	require.NoError(t, json.NewDecoder(res.Body).Decode(&created))
	res.Body.Close()
	require.Equal(t, 201, res.StatusCode)

	backup := func() []byte {
		t.Helper()
		var buf bytes.Buffer
		_, err := st.WriteBackup(&buf)
		require.NoError(t, err)
		return buf.Bytes()
	}
	noToken := func(when string) {
		t.Helper()
		raw := backup()
		require.Greater(t, len(raw), 4096)
		require.False(t, bytes.Contains(raw, []byte(jobToken)), "a backup %s holds the job token", when)
		require.False(t, bytes.Contains(raw, []byte(jobToken[18:])), "a backup %s holds part of the job token", when)
		require.NoError(t, st.ScanLedger(1, func(e *ica.LedgerEntry) error {
			require.NotContains(t, string(e.Data), jobToken[18:], "ledger entry %d (%s)", e.Seq, e.Kind)
			return nil
		}))
	}
	noToken("while the approval waits")
	n, err := st.KeptJobTokens(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "kept, sealed, until the decision")

	ado.mu.Lock()
	ado.fail = 1 // the first TaskCompleted fails: the message waits in the outbox
	ado.mu.Unlock()
	_, err = st.Transition(ctx, created.ID, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{Username: "tech1"}}, "mm", nil)
	require.NoError(t, err)
	_, err = st.Transition(ctx, created.ID, ica.Transition{Action: ica.ActApproveBusiness, By: ica.Decider{Username: "biz1"}}, "mm", nil)
	require.NoError(t, err)
	n, err = st.KeptJobTokens(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "the sealed token moved into the TaskCompleted message")
	var queued *ica.OutboxMessage
	require.Eventually(t, func() bool {
		msgs, err := st.PendingOutbox(ctx, ica.CheckDestination, 10)
		require.NoError(t, err)
		if len(msgs) == 1 && msgs[0].Attempts == 1 {
			queued = msgs[0]
		}
		return queued != nil
	}, 5*time.Second, 5*time.Millisecond)
	require.NotEmpty(t, queued.Sealed)
	require.NotContains(t, string(queued.Payload), "auth_token")
	noToken("while the TaskCompleted is retried")

	require.Eventually(t, func() bool {
		clock.Advance(time.Second)
		return len(ado.got()) == 1
	}, 5*time.Second, 5*time.Millisecond)
	ado.mu.Lock()
	require.Equal(t, "Bearer "+jobToken, ado.auth[0], "the token was opened for the call")
	ado.mu.Unlock()
	require.Eventually(t, func() bool {
		msgs, err := st.PendingOutbox(ctx, ica.CheckDestination, 10)
		require.NoError(t, err)
		return len(msgs) == 0
	}, 5*time.Second, 5*time.Millisecond, "delivered: the message, and the token with it, are gone")
	noToken("after the delivery")
	if storetest.Engine() == storetest.Postgres {
		// A database backup is written afresh: nothing deleted survives in it
		// (a bbolt file copy may keep freed pages, which held only ciphertext).
		raw := backup()
		require.False(t, bytes.Contains(raw, queued.Sealed))
		require.False(t, bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(queued.Sealed))))
	}
}

// TestCheckDeliverer_JobTokenKeyMissing: a message whose key this server
// lacks fails at once, saying which key it needs; it is not retried.
func TestCheckDeliverer_JobTokenKeyMissing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("nothing is posted without the token")
	}))
	defer srv.Close()
	cb := ica.CheckCallback{PlanURL: srv.URL, ProjectID: "p", HubName: "build", PlanID: "pl", JobID: "j", TaskInstanceID: "t"}
	raw, _ := json.Marshal(ica.CheckCompletion{Callback: cb, ApprovalID: "A-1", Status: "approved", Result: "succeeded"})
	sealer := mustJobTokenKey(t)
	sealed, err := sealer.Seal([]byte("job-access-token-secret"), cb.TokenContext())
	require.NoError(t, err)
	msg := &ica.OutboxMessage{Payload: raw, Sealed: sealed}

	other := mustJobTokenKey(t)
	retry, err := (&pipelines.CheckDeliverer{Tokens: other}).Deliver(context.Background(), msg)
	require.False(t, retry)
	require.ErrorContains(t, err, "check callback for A-1: sealed with another key: the job token was sealed with key "+sealer.ID()+", this server's key is "+other.ID())

	retry, err = (&pipelines.CheckDeliverer{}).Deliver(context.Background(), msg)
	require.False(t, retry)
	require.ErrorContains(t, err, "this server has no job token key")

	retry, err = (&pipelines.CheckDeliverer{Tokens: other}).Deliver(context.Background(), &ica.OutboxMessage{Payload: raw})
	require.False(t, retry)
	require.ErrorContains(t, err, "no job token was kept for this check")
}
