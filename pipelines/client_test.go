package pipelines_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/pipelines"
)

func testStart() ica.RunStart {
	return ica.RunStart{PipelineName: "web", RunID: "1234", Branch: "refs/heads/main",
		Commit: "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567", TriggeredBy: "jane.doe"}
}

func TestClient_StartRun_RetriesTransientStatuses(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			clock := ica.NewFakeClock(t0)
			f := newFakeICA(t, clock)
			f.fail(failure{status: status}, failure{status: status})
			c := newTestClient(t, f, clock)
			var run *ica.Run
			var err error
			async(clock, 100*time.Millisecond, func() { run, err = c.StartRun(context.Background(), testStart()) })
			require.NoError(t, err)
			require.Equal(t, "1234", run.RunID)
			require.Equal(t, ica.RunRunning, run.Status)
			require.Equal(t, 3, f.callCount("POST", "/api/v1/runs"))
		})
	}
}

func TestClient_DoesNotRetryAnswers(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 409, 413, 422, 500} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			clock := ica.NewFakeClock(t0)
			f := newFakeICA(t, clock)
			f.fail(failure{status: status})
			c := newTestClient(t, f, clock)
			_, err := c.StartRun(context.Background(), testStart())
			require.Error(t, err)
			var ae *pipelines.APIError
			require.ErrorAs(t, err, &ae)
			require.Equal(t, status, ae.Status)
			require.False(t, pipelines.IsTransient(err))
			require.Equal(t, 1, f.callCount("POST", "/api/v1/runs"))
			require.Zero(t, clock.Waiters(), "no backoff sleep for a definitive answer")
		})
	}
}

func TestClient_Retry429_HonoursRetryAfter(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.fail(failure{status: 429, retryAfter: "7"})
	c := newTestClient(t, f, clock)
	errc := make(chan error, 1)
	go func() {
		_, err := c.StartRun(context.Background(), testStart())
		errc <- err
	}()
	require.Eventually(t, func() bool { return clock.Waiters() == 1 }, 5*time.Second, time.Millisecond)
	clock.Advance(6900 * time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, 1, f.callCount("POST", "/api/v1/runs"), "retried before Retry-After")
	clock.Advance(100 * time.Millisecond)
	require.NoError(t, <-errc)
	times := f.callTimes("POST", "/api/v1/runs")
	require.Len(t, times, 2)
	require.Equal(t, 7*time.Second, times[1].Sub(times[0]))
}

func TestClient_Retry503_HTTPDateRetryAfterAndCap(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.fail(failure{status: 503, retryAfter: t0.Add(20 * time.Second).Format(http.TimeFormat)},
		failure{status: 503, retryAfter: "86400"})
	c := newTestClient(t, f, clock)
	var err error
	async(clock, time.Second, func() { _, err = c.StartRun(context.Background(), testStart()) })
	require.NoError(t, err)
	times := f.callTimes("POST", "/api/v1/runs")
	require.Len(t, times, 3)
	require.Equal(t, 20*time.Second, times[1].Sub(times[0]))
	require.Equal(t, pipelines.DefaultMaxRetryAfter, times[2].Sub(times[1]), "a day-long Retry-After is capped")
}

func TestClient_Backoff_GrowsWithJitter(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	for range 5 {
		f.fail(failure{status: 503})
	}
	c := newTestClient(t, f, clock) // jitter fixed at 0.5: delay = 0.75 × 1s·2^n
	var err error
	async(clock, 50*time.Millisecond, func() { _, err = c.StartRun(context.Background(), testStart()) })
	require.NoError(t, err)
	times := f.callTimes("POST", "/api/v1/runs")
	require.Len(t, times, 6)
	want := []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 6 * time.Second, 12 * time.Second}
	for i, w := range want {
		require.InDelta(t, float64(w), float64(times[i+1].Sub(times[i])), float64(50*time.Millisecond), "gap %d", i)
	}
}

func TestClient_GivesUpAfterMaxAttempts(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	for range 10 {
		f.fail(failure{status: 503})
	}
	c := newTestClient(t, f, clock)
	var err error
	async(clock, time.Second, func() { _, err = c.StartRun(context.Background(), testStart()) })
	require.Error(t, err)
	require.Contains(t, err.Error(), "giving up after 6 attempts")
	require.True(t, pipelines.IsTransient(err))
	require.Equal(t, ica.EUNAVAILABLE, ica.ErrorCode(err))
	require.Equal(t, pipelines.DefaultMaxAttempts, f.callCount("POST", "/api/v1/runs"))
}

func TestClient_RetriesNetworkErrors(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.fail(failure{hangup: true})
	c := newTestClient(t, f, clock)
	var err error
	async(clock, time.Second, func() { _, err = c.StartRun(context.Background(), testStart()) })
	require.NoError(t, err)
	require.Equal(t, 2, f.callCount("POST", "/api/v1/runs"))
	require.NotNil(t, f.run("1234"))
}

func TestClient_AddEvent_LostResponseIsRecordedOnce(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	c := newTestClient(t, f, clock)
	_, err := c.StartRun(context.Background(), testStart())
	require.NoError(t, err)

	// The server stores the event, then the answer is lost twice.
	f.fail(failure{status: 503, after: true}, failure{status: 502, after: true})
	var ev *ica.Event
	async(clock, time.Second, func() {
		ev, err = c.AddEvent(context.Background(), "1234", ica.EventInput{EventType: "build.completed", EventData: json.RawMessage(`{"image":"web:1.2"}`)})
	})
	require.NoError(t, err)
	require.NotEmpty(t, ev.EventID, "the client names the event before the first attempt")
	require.Equal(t, 3, f.callCount("POST", "/api/v1/runs/1234/events"))
	evs := f.eventsOf("1234")
	require.Len(t, evs, 1)
	require.Equal(t, ev.EventID, evs[0].EventID)
}

func TestClient_StartRun_RepeatAndConflict(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	c := newTestClient(t, f, clock)
	ctx := context.Background()
	r1, err := c.StartRun(ctx, testStart())
	require.NoError(t, err)
	r2, err := c.StartRun(ctx, testStart())
	require.NoError(t, err)
	require.Equal(t, r1, r2)

	other := testStart()
	other.Commit = "ffffffffffffffffffffffffffffffffffffffff"
	_, err = c.StartRun(ctx, other)
	require.Error(t, err)
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
	require.Equal(t, "commit", ica.ErrorField(err))
	var ae *pipelines.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 409, ae.Status)
}

func TestClient_FinishRun_ReturnsAuditHash(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	c := newTestClient(t, f, clock)
	ctx := context.Background()
	_, err := c.StartRun(ctx, testStart())
	require.NoError(t, err)
	r, err := c.FinishRun(ctx, "1234", ica.RunFinish{Status: ica.RunSuccess})
	require.NoError(t, err)
	require.NotEmpty(t, r.AuditHash)
	require.Equal(t, ica.RunSuccess, r.Status)
	_, err = c.FinishRun(ctx, "1234", ica.RunFinish{Status: ica.RunSuccess})
	require.NoError(t, err, "finishing twice with the same status is fine")
	_, err = c.FinishRun(ctx, "1234", ica.RunFinish{Status: ica.RunFailed})
	require.Equal(t, ica.ECONFLICT, ica.ErrorCode(err))
}

func TestClient_ValidatesBeforeSending(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	c := newTestClient(t, f, clock)
	ctx := context.Background()
	s := testStart()
	s.Commit = "not-a-commit"
	_, err := c.StartRun(ctx, s)
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
	_, err = c.FinishRun(ctx, "1234", ica.RunFinish{Status: "done"})
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
	_, err = c.AddEvent(ctx, "1234", ica.EventInput{EventType: "x", EventData: json.RawMessage(`[1]`)})
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
	_, err = c.GetApproval(ctx, "../admin")
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
	require.Empty(t, f.calls)
}

func TestClient_BearerToken(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	c, err := pipelines.NewClient(pipelines.Config{URL: f.srv.URL + "/", Clock: clock,
		Tokens: pipelines.TokenFunc(func(context.Context) (string, error) { return "wrong", nil })})
	require.NoError(t, err)
	_, err = c.StartRun(context.Background(), testStart())
	require.Equal(t, ica.EUNAUTHORIZED, ica.ErrorCode(err))
	require.Equal(t, 1, f.callCount("POST", "/api/v1/runs"), "401 is not retried")

	c = newTestClient(t, f, clock)
	_, err = c.StartRun(context.Background(), testStart())
	require.NoError(t, err)
	require.Equal(t, "Bearer "+testToken, f.calls[len(f.calls)-1].Auth)

	c, err = pipelines.NewClient(pipelines.Config{URL: f.srv.URL, Clock: clock,
		Tokens: pipelines.TokenFunc(func(context.Context) (string, error) { return "", errors.New("IMDS down") })})
	require.NoError(t, err)
	_, err = c.GetApproval(context.Background(), "A-1")
	require.ErrorContains(t, err, "IMDS down")
}

func TestClient_CancelDuringBackoff(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.fail(failure{status: 503})
	c := newTestClient(t, f, clock)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.StartRun(ctx, testStart())
		errc <- err
	}()
	require.Eventually(t, func() bool { return clock.Waiters() == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	err := <-errc
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, pipelines.IsTransient(err))
}

func TestNewClient_RejectsBadConfig(t *testing.T) {
	for _, u := range []string{"", "ica.example.com", "ftp://ica", "https://user:pw@ica.example.com"} {
		_, err := pipelines.NewClient(pipelines.Config{URL: u, Tokens: pipelines.StaticToken("x")})
		require.Error(t, err, u)
	}
	_, err := pipelines.NewClient(pipelines.Config{URL: "https://ica.example.com"})
	require.Error(t, err)
}

func TestScopeFor(t *testing.T) {
	require.Equal(t, "api://ica/.default", pipelines.ScopeFor("api://ica"))
	require.Equal(t, "api://ica/.default", pipelines.ScopeFor("api://ica/"))
	require.Equal(t, "api://ica/.default", pipelines.ScopeFor("api://ica/.default"))
}
