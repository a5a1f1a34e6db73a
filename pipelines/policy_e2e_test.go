package pipelines_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/pipelines"
	"github.com/ica-governance/ica/policy"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
	"github.com/ica-governance/ica/webhooks"
)

// TestApprovalWait_ThroughWindowAndLock runs `ica approval wait` against the
// real handler and store: production deploys on weekdays 09:00–17:00 in
// Berlin, one run of a pipeline at a time. Run r2 is approved in the
// evening while r1 holds the lock; the wait sits through the night, then
// through the lock, and opens the gate (records the use) once r1 reports
// its deployment.
func TestApprovalWait_ThroughWindowAndLock(t *testing.T) {
	const token = "pipeline-token-for-the-e2e-01"
	full := "9fceb02d0ae598e95dc970b74767f19372d61af8"
	clock := ica.NewFakeClock(time.Date(2026, 1, 14, 13, 0, 0, 0, time.UTC)) // Wednesday 14:00 Berlin
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key})
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	_, _, err = st.RecordPolicy(ctx, policy.Policy{Targets: map[string]policy.Target{"production": {Rules: policy.Rules{
		TZ:        "Europe/Berlin",
		Windows:   []policy.Window{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "09:00", To: "17:00"}},
		Exclusive: policy.ExclusiveSequential, LockTimeout: policy.Duration(24 * time.Hour)}}}}, "test", "tester")
	require.NoError(t, err)
	tok, err := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken(token)}, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(webhooks.NewHandler(webhooks.Deps{Ledger: st, Pipelines: tok, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()

	cliEnv := func(run, approval string) func(string) string {
		env := map[string]string{"ICA_URL": srv.URL, "ICA_TOKEN": token, "BUILD_BUILDID": run,
			"BUILD_SOURCEVERSION": full, "BUILD_DEFINITIONNAME": "web", "BUILD_SOURCEBRANCH": "refs/heads/main",
			"BUILD_REQUESTEDFOREMAIL": "jane@contoso.com", "ICA_APPROVAL_ID": approval, "SYSTEM_JOBID": "job-" + run}
		return func(k string) string { return env[k] }
	}
	cli := &pipelines.CLI{Clock: clock, Rand: func() float64 { return 0.5 }}
	approve := func(id string) {
		t.Helper()
		for _, tr := range []ica.Transition{
			{Action: ica.ActApproveTechnical, By: ica.Decider{UserID: "u1", Username: "tech1"}},
			{Action: ica.ActApproveBusiness, By: ica.Decider{UserID: "u2", Username: "biz1"}},
		} {
			_, err := st.Transition(ctx, id, tr, "bot", nil)
			require.NoError(t, err)
		}
	}
	var ids []string
	for _, run := range []string{"r1", "r2"} {
		var out, errb bytes.Buffer
		require.Equal(t, 0, cli.Main(ctx, []string{"run", "start"}, cliEnv(run, ""), &out, &errb), errb.String())
		require.Equal(t, 0, cli.Main(ctx, []string{"approval", "request", "--target", "production", "--cost", "10"}, cliEnv(run, ""), &out, &errb), errb.String())
		a, err := st.LatestApproval(ctx, run)
		require.NoError(t, err)
		ids = append(ids, a.ID)
	}
	// r1 is approved and deploys now: it holds the lock.
	approve(ids[0])
	var out, errb bytes.Buffer
	require.Equal(t, 0, cli.Main(ctx, []string{"approval", "wait"}, cliEnv("r1", ids[0]), &out, &errb), errb.String()+out.String())
	require.Contains(t, out.String(), "ICA opened the gate: approval "+ids[0]+" used by run r1")

	// r2 is approved at 16:45 Berlin; its wait starts at 17:30, after the window.
	clock.Set(time.Date(2026, 1, 14, 15, 45, 0, 0, time.UTC))
	approve(ids[1])
	clock.Set(time.Date(2026, 1, 14, 16, 30, 0, 0, time.UTC))
	out.Reset()
	errb.Reset()
	done := make(chan int)
	go func() { done <- cli.Main(ctx, []string{"approval", "wait"}, cliEnv("r2", ids[1]), &out, &errb) }()
	reportAt := time.Date(2026, 1, 15, 9, 0, 0, 0, time.UTC) // 10:00 Berlin: r1 is done
	reported := false
	var code int
	for waiting := true; waiting; {
		select {
		case code = <-done:
			waiting = false
		default:
			if clock.Waiters() == 0 {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			if !reported && !clock.Now().Before(reportAt) {
				var o, e bytes.Buffer
				require.Equal(t, 0, cli.Main(ctx, []string{"run", "deployed", "--target", "production"}, cliEnv("r1", ""), &o, &e), e.String())
				reported = true
			}
			clock.Advance(time.Minute)
		}
	}
	require.Equal(t, 0, code, errb.String()+out.String())
	text := out.String()
	require.Contains(t, text, "the deployment is waiting for window, lock: outside the change windows of production; the next window opens at 2026-01-15 09:00 CET; run r1 is deploying to production")
	require.Contains(t, text, "the deployment is waiting for lock: run r1 is deploying to production")
	require.Contains(t, text, "ICA opened the gate: approval "+ids[1]+" used by run r2")
	require.Less(t, strings.Index(text, "waiting for window"), strings.Index(text, "waiting for lock:"))
	a, err := st.Approval(ctx, ids[1])
	require.NoError(t, err)
	require.NotNil(t, a.Use)
	require.False(t, a.Use.At.Before(reportAt), "the gate opened only after r1 reported its deployment")

	// The ledger shows the lock handed over.
	var kinds []string
	require.NoError(t, st.ScanLedger(1, func(e *ica.LedgerEntry) error {
		if e.Kind == store.KindApprovalUsed || e.Kind == store.KindLockReleased {
			var d map[string]any
			_ = json.Unmarshal(e.Data, &d)
			kinds = append(kinds, e.Kind+" "+d["run_id"].(string))
		}
		return nil
	}))
	require.Equal(t, []string{"approval.used r1", "deploy.lock_released r1", "approval.used r2"}, kinds)

	// A wait for another build's approval is refused.
	out.Reset()
	errb.Reset()
	require.Equal(t, 1, cli.Main(ctx, []string{"approval", "wait"}, cliEnv("r3", ids[1]), &out, &errb))
	require.Contains(t, out.String(), "does not cover this deployment: approval "+ids[1]+" is for run r2, not run r3")
}
