package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/internal/testclock"
	"github.com/ica-governance/ica/pipelines"
)

// TestMain_ExpiryWithoutMattermost runs the real main on a fake clock with
// Mattermost disabled, so no approval ever queues a message: a 5 s approval
// reads expired at its deadline, and `ica approval wait` reports it within a
// couple of seconds of it (not after the scheduler's one-minute nap).
func TestMain_ExpiryWithoutMattermost(t *testing.T) {
	clock := ica.NewFakeClock(testclock.Start(t, time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	serveClockHook.Store(clock)
	defer serveClockHook.Store(nil)
	base, stop, logs := startServe(t, map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": t.TempDir(),
		"ICA_PIPELINE_TOKENS": "ado=" + testToken, "ICA_APPROVAL_TIMEOUT": "5s"})
	defer func() { require.Equal(t, 0, stop()) }()
	require.Eventually(t, func() bool { return clock.Waiters() >= 2 }, 5*time.Second, time.Millisecond,
		"the background loops (scheduler, housekeeping) sleep on the fake clock")

	// request asks for an approval and returns once the scheduler sleeps
	// until its deadline, so the test never moves the clock while the
	// scheduler is between reading it and going to sleep.
	request := func(run string) (string, time.Time) {
		asleep := clock.Waiters()
		st, body := call(t, "POST", base+"/api/v1/runs", testToken, fmt.Sprintf(
			`{"pipeline_name":"payments","run_id":%q,"branch":"main","commit":"0123456789abcdef0123456789abcdef01234567","triggered_by":"alice"}`, run))
		require.Equal(t, 201, st, body)
		st, body = call(t, "POST", base+"/api/v1/approvals", testToken, fmt.Sprintf(`{"run_id":%q,"deployment_target":"production","estimated_cost":1}`, run))
		require.Equal(t, 201, st, body)
		exp, err := time.Parse(time.RFC3339Nano, body["expires_at"].(string))
		require.NoError(t, err)
		require.Equal(t, clock.Now().Add(5*time.Second), exp)
		require.Eventually(t, func() bool { return clock.Waiters() > asleep }, 5*time.Second, time.Millisecond,
			"the scheduler, woken by the new approval, sleeps until its deadline")
		return body["approval_id"].(string), exp
	}

	// 1. At the deadline, and not a moment later, the approval reads expired.
	id, deadline := request("r1")
	clock.Set(deadline.Add(-time.Millisecond))
	_, body := call(t, "GET", base+"/api/v1/approvals/"+id, testToken, "")
	require.Equal(t, "pending", body["status"])
	clock.Set(deadline)
	require.Eventually(t, func() bool {
		_, body = call(t, "GET", base+"/api/v1/approvals/"+id, testToken, "")
		return body["status"] == "expired"
	}, 5*time.Second, 5*time.Millisecond, "expired at its deadline: %v\n%s", body, logs.String())
	require.Equal(t, deadline, clock.Now(), "the fake clock did not move")
	require.Equal(t, deadline.Format(time.RFC3339Nano), body["expired_at"])

	// 2. The pipeline's wait reports the expiry promptly.
	id, deadline = request("r2")
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		cli := &pipelines.CLI{Clock: clock, Rand: func() float64 { return 0.5 }}
		done <- cli.Main(context.Background(), []string{"approval", "wait", "--id", id}, envFunc(map[string]string{
			"ICA_URL": base, "ICA_TOKEN": testToken, "BUILD_BUILDID": "r2",
			"BUILD_SOURCEVERSION": "0123456789abcdef0123456789abcdef01234567"}), &out, &errOut)
	}()
	var code int
	for finished := false; !finished; {
		select {
		case code = <-done:
			finished = true
		case <-time.After(20 * time.Millisecond):
			require.Less(t, clock.Now().Sub(deadline), time.Minute, "the wait is still waiting: %s%s", out.String(), errOut.String())
			clock.Advance(250 * time.Millisecond)
		}
	}
	require.Equal(t, pipelines.ExitFailed, code, out.String()+errOut.String())
	require.Contains(t, out.String()+errOut.String(), "Approval "+id+" expired at "+deadline.UTC().Format(time.RFC3339))
	late := clock.Now().Sub(deadline)
	require.Less(t, late, 3*time.Second, "reported %s after the deadline", late)
}
