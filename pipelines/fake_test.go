package pipelines_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/pipelines"
)

const testToken = "s3cret-pipeline-token"

// fakeICA is an in-memory ICA pipeline API that speaks docs/design.md's
// contract, dedupes starts and event_ids like the real server, and fails on
// demand.
type fakeICA struct {
	t     testing.TB
	srv   *httptest.Server
	clock ica.Clock

	mu        sync.Mutex
	runs      map[string]*ica.Run
	events    map[string][]ica.Event // by run
	approvals map[string]*ica.Approval
	latest    map[string]string // run → newest approval id
	calls     []call
	// failures answer the next requests instead of the handler.
	failures []failure
	// refuse, when set, refuses approval requests with 422 and this reason.
	refuse string
	// onGetApproval runs before an approval is returned by GET, with the
	// number of GETs so far (1-based); tests decide approvals with it.
	onGetApproval func(a *ica.Approval, n int)
	gets          int
}

type call struct {
	Method, Path string
	At           time.Time
	Auth         string
}

type failure struct {
	status     int
	retryAfter string
	// after: handle the request first, then answer the failure (a lost
	// response: the server did the work, the client saw an error).
	after bool
	// hangup: close the connection without an answer.
	hangup bool
}

func newFakeICA(t testing.TB, clock ica.Clock) *fakeICA {
	f := &fakeICA{t: t, clock: clock, runs: map[string]*ica.Run{}, events: map[string][]ica.Event{},
		approvals: map[string]*ica.Approval{}, latest: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/runs", f.startRun)
	mux.HandleFunc("POST /api/v1/runs/{run_id}/events", f.addEvent)
	mux.HandleFunc("POST /api/v1/runs/{run_id}/finish", f.finishRun)
	mux.HandleFunc("POST /api/v1/approvals", f.requestApproval)
	mux.HandleFunc("GET /api/v1/approvals/{id}", f.getApproval)
	mux.HandleFunc("GET /api/v1/runs/{run_id}/approvals/latest", f.latestApproval)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls = append(f.calls, call{Method: r.Method, Path: r.URL.Path, At: f.clock.Now(), Auth: r.Header.Get("Authorization")})
		var fl *failure
		if len(f.failures) > 0 {
			fl = &f.failures[0]
			f.failures = f.failures[1:]
		}
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			writeErr(w, http.StatusUnauthorized, ica.EUNAUTHORIZED, "bad or missing bearer token", "")
			return
		}
		if fl != nil && fl.hangup {
			hj, ok := w.(http.Hijacker)
			require.True(t, ok)
			conn, _, err := hj.Hijack()
			require.NoError(t, err)
			conn.Close()
			return
		}
		if fl != nil && !fl.after {
			fl.write(w)
			return
		}
		if fl != nil {
			mux.ServeHTTP(httptest.NewRecorder(), r)
			fl.write(w)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (fl *failure) write(w http.ResponseWriter) {
	if fl.retryAfter != "" {
		w.Header().Set("Retry-After", fl.retryAfter)
	}
	code := map[int]string{429: ica.ERATELIMIT, 503: ica.EUNAVAILABLE, 500: ica.EINTERNAL}[fl.status]
	if code == "" {
		code = "error"
	}
	if fl.status == http.StatusBadGateway {
		// A proxy's answer, not ICA's JSON.
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(fl.status)
		fmt.Fprint(w, "<html><body>502 Bad Gateway</body></html>")
		return
	}
	writeErr(w, fl.status, code, http.StatusText(fl.status), "")
}

func (f *fakeICA) fail(fs ...failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, fs...)
}

func (f *fakeICA) callCount(method, path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.Method == method && c.Path == path {
			n++
		}
	}
	return n
}

func (f *fakeICA) callTimes(method, path string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ts []time.Time
	for _, c := range f.calls {
		if c.Method == method && c.Path == path {
			ts = append(ts, c.At)
		}
	}
	return ts
}

func (f *fakeICA) run(id string) *ica.Run {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.runs[id]; r != nil {
		c := *r
		return &c
	}
	return nil
}

func (f *fakeICA) eventsOf(id string) []ica.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ica.Event(nil), f.events[id]...)
}

// addApproval stores an approval directly (for wait tests).
func (f *fakeICA) addApproval(a *ica.Approval) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.approvals[a.ID] = a
	f.latest[a.RunID] = a.ID
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg, field string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg, "field": field}})
}

func writeICAErr(w http.ResponseWriter, err error) {
	status := map[string]int{ica.EINVALID: 400, ica.ENOTFOUND: 404, ica.ECONFLICT: 409, ica.EPOLICY: 422}[ica.ErrorCode(err)]
	if status == 0 {
		status = 500
	}
	writeErr(w, status, ica.ErrorCode(err), ica.ErrorMessage(err), ica.ErrorField(err))
}

func (f *fakeICA) startRun(w http.ResponseWriter, r *http.Request) {
	var s ica.RunStart
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
		writeErr(w, 400, ica.EINVALID, "malformed JSON", "")
		return
	}
	if err := s.Validate(); err != nil {
		writeICAErr(w, err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old := f.runs[s.RunID]; old != nil {
		if d := s.Diff(old); len(d) > 0 {
			writeErr(w, 409, ica.ECONFLICT, fmt.Sprintf("run %s was started with another %s", s.RunID, d[0]), d[0])
			return
		}
		writeJSON(w, 200, old)
		return
	}
	run := &ica.Run{RunID: s.RunID, PipelineName: s.PipelineName, Branch: s.Branch, Commit: s.Commit,
		TriggeredBy: s.TriggeredBy, ArtifactDigest: s.ArtifactDigest, URL: s.URL, Status: ica.RunRunning,
		StartTime: f.clock.Now(), Actor: "azure"}
	f.runs[s.RunID] = run
	writeJSON(w, 201, run)
}

func (f *fakeICA) addEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run_id")
	var in ica.EventInput
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, 400, ica.EINVALID, "malformed JSON", "")
		return
	}
	if err := in.Validate(); err != nil {
		writeICAErr(w, err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	run := f.runs[id]
	if run == nil {
		writeErr(w, 404, ica.ENOTFOUND, "no run "+id, "")
		return
	}
	for _, e := range f.events[id] {
		if in.EventID != "" && e.EventID == in.EventID {
			writeJSON(w, 200, e)
			return
		}
	}
	ev := ica.Event{RunID: id, Seq: len(f.events[id]) + 1, EventID: in.EventID, EventType: in.EventType,
		EventData: in.EventData, Time: f.clock.Now(), Actor: "azure"}
	f.events[id] = append(f.events[id], ev)
	run.EventCount++
	writeJSON(w, 201, ev)
}

func (f *fakeICA) finishRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run_id")
	var in ica.RunFinish
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, 400, ica.EINVALID, "malformed JSON", "")
		return
	}
	if err := in.Validate(); err != nil {
		writeICAErr(w, err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	run := f.runs[id]
	switch {
	case run == nil:
		writeErr(w, 404, ica.ENOTFOUND, "no run "+id, "")
		return
	case run.Final() && run.Status != in.Status:
		writeErr(w, 409, ica.ECONFLICT, fmt.Sprintf("run %s already finished as %s", id, run.Status), "status")
		return
	case !run.Final():
		run.Status = in.Status
		end := f.clock.Now()
		run.EndTime = &end
		run.AuditHash = fmt.Sprintf("%064x", len(f.events[id])+1)
	}
	writeJSON(w, 200, run)
}

func (f *fakeICA) requestApproval(w http.ResponseWriter, r *http.Request) {
	var in ica.ApprovalRequest
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, 400, ica.EINVALID, "malformed JSON", "")
		return
	}
	if err := in.Validate(); err != nil {
		writeICAErr(w, err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	run := f.runs[in.RunID]
	if run == nil {
		writeErr(w, 404, ica.ENOTFOUND, "no run "+in.RunID, "run_id")
		return
	}
	if f.refuse != "" {
		writeErr(w, 422, ica.EPOLICY, f.refuse, "")
		return
	}
	if id := f.latest[in.RunID]; id != "" {
		if a := f.approvals[id]; !a.Final() && a.Target == in.DeploymentTarget {
			writeJSON(w, 200, a)
			return
		}
	}
	now := f.clock.Now()
	a := &ica.Approval{ID: "A-" + strconv.Itoa(len(f.approvals)+1), RunID: run.RunID, PipelineName: run.PipelineName,
		Branch: run.Branch, Commit: run.Commit, Target: in.DeploymentTarget, EstimatedCost: *in.EstimatedCost,
		Status: ica.ApprovalPending, RequestedBy: run.TriggeredBy, Actor: "azure", CreatedAt: now,
		ExpiresAt: now.Add(ica.DefaultApprovalTimeout), UpdatedAt: now, Version: 1}
	f.approvals[a.ID] = a
	f.latest[a.RunID] = a.ID
	writeJSON(w, 201, a)
}

func (f *fakeICA) getApproval(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.approvals[r.PathValue("id")]
	if a == nil {
		writeErr(w, 404, ica.ENOTFOUND, "no approval "+r.PathValue("id"), "")
		return
	}
	f.gets++
	if f.onGetApproval != nil {
		f.onGetApproval(a, f.gets)
	}
	writeJSON(w, 200, a)
}

func (f *fakeICA) latestApproval(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.latest[r.PathValue("run_id")]
	if id == "" {
		writeErr(w, 404, ica.ENOTFOUND, "run "+r.PathValue("run_id")+" has no approval", "")
		return
	}
	writeJSON(w, 200, f.approvals[id])
}

// decide applies a transition through the real state machine.
func decide(t testing.TB, a *ica.Approval, action, user, comment string, at time.Time) {
	t.Helper()
	n, err := a.Apply(ica.Transition{Action: action, By: ica.Decider{Username: user}, Comment: comment, Via: "mattermost", At: at})
	require.NoError(t, err)
	*a = *n
}

var t0 = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

// newTestClient returns a client of f with deterministic jitter (0.5).
func newTestClient(t testing.TB, f *fakeICA, clock ica.Clock) *pipelines.Client {
	t.Helper()
	c, err := pipelines.NewClient(pipelines.Config{URL: f.srv.URL, Tokens: pipelines.StaticToken(testToken),
		Clock: clock, Rand: func() float64 { return 0.5 }, Logf: t.Logf})
	require.NoError(t, err)
	return c
}

// drive advances clock by step whenever a goroutine sleeps on it, until done
// is closed, so code that backs off on the fake clock runs without waiting.
func drive(clock *ica.FakeClock, step time.Duration, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		default:
		}
		if clock.Waiters() > 0 {
			clock.Advance(step)
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// async runs fn while driving clock, and returns when fn does.
func async(clock *ica.FakeClock, step time.Duration, fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	drive(clock, step, done)
}
