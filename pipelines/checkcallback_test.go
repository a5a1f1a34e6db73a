package pipelines_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ica-governance/ica/store/storetest"

	"github.com/ica-governance/ica/internal/testclock"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/outbox"
	"github.com/ica-governance/ica/pipelines"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

// fakeADO records TaskCompleted events and can fail on demand.
type fakeADO struct {
	mu     sync.Mutex
	events []map[string]string
	auth   []string
	paths  []string
	fail   int
}

func (f *fakeADO) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		w.WriteHeader(503)
		return
	}
	var ev map[string]string
	_ = json.NewDecoder(r.Body).Decode(&ev)
	f.events = append(f.events, ev)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.paths = append(f.paths, r.URL.String())
	w.WriteHeader(200)
}

func (f *fakeADO) got() []map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]string(nil), f.events...)
}

func TestCheck_CallbackModeEndToEnd(t *testing.T) {
	ado := &fakeADO{fail: 2}
	adoSrv := httptest.NewServer(ado)
	defer adoSrv.Close()

	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var disp *outbox.Dispatcher
	tokens := mustJobTokenKey(t)
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key, OnEnqueue: func() { disp.Notify() }, TokenSealer: tokens})
	require.NoError(t, err)
	defer st.Close()
	disp = outbox.New(st, clock, log, outbox.Policy{BaseDelay: time.Second}, nil)
	disp.Register(ica.CheckDestination, &pipelines.CheckDeliverer{Tokens: tokens})
	disp.Start(context.Background())
	defer disp.Stop(context.Background())

	tok, _ := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken("check-service-connection-token")}, nil)
	h := webhooks.NewHandler(webhooks.Deps{Ledger: st, Checks: st, Pipelines: tok, Logger: log, Clock: clock,
		CheckHosts: pipelines.AzureDevOpsHosts([]string{"dev.azure.com", "*.visualstudio.com", "127.0.0.1"})})
	srv := httptest.NewServer(h)
	defer srv.Close()

	_, _, err = st.StartRun(context.Background(), &ica.RunStart{PipelineName: "payments", RunID: "4711", Branch: "main",
		Commit: "0123456789abcdef", TriggeredBy: "alice"}, "ado")
	require.NoError(t, err)

	headers := map[string]string{"PlanUrl": adoSrv.URL + "/contoso/", "ProjectId": "6a3f2f04-8a7b-4c1b-9c71-22f3c1d2e9a1",
		"HubName": "build", "PlanId": "b1c2d3e4-0000-4000-8000-000000000001", "JobId": "c1c2d3e4-0000-4000-8000-000000000002",
		"TaskInstanceId": "d1c2d3e4-0000-4000-8000-000000000003", "AuthToken": "job-access-token-secret"}
	post := func(hdr map[string]string, body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/ado/checks", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer check-service-connection-token")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	body := `{"run_id":"4711","deployment_target":"production","estimated_cost":120}`

	bad := map[string]string{}
	for k, v := range headers {
		bad[k] = v
	}
	delete(bad, "AuthToken")
	code, m := post(bad, body)
	require.Equal(t, 400, code)
	require.Equal(t, "AuthToken", m["error"].(map[string]any)["field"])
	evil := map[string]string{}
	for k, v := range headers {
		evil[k] = v
	}
	evil["PlanUrl"] = "https://attacker.example.com/"
	code, _ = post(evil, body)
	require.Equal(t, 403, code, "a job token is never sent to a host that is not Azure DevOps")

	code, m = post(headers, body)
	require.Equal(t, 201, code, m)
	id := m["approval_id"].(string)
	code, m = post(headers, body)
	require.Equal(t, 200, code, "a re-evaluated check links the same approval")
	require.Equal(t, id, m["approval_id"])
	require.Empty(t, ado.got(), "nothing is posted before the decision")

	_, err = st.Transition(context.Background(), id, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{Username: "tech1"}}, "mm", nil)
	require.NoError(t, err)
	_, err = st.Transition(context.Background(), id, ica.Transition{Action: ica.ActApproveBusiness, By: ica.Decider{Username: "biz1"}}, "mm", nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		clock.Advance(time.Second)
		return len(ado.got()) == 1
	}, 5*time.Second, 5*time.Millisecond, "TaskCompleted is retried until Azure DevOps takes it")
	ev := ado.got()[0]
	require.Equal(t, map[string]string{"name": "TaskCompleted", "taskId": headers["TaskInstanceId"], "jobId": headers["JobId"], "result": "succeeded"}, ev)
	require.Equal(t, "Bearer job-access-token-secret", ado.auth[0])
	require.Equal(t, "/contoso/"+headers["ProjectId"]+"/_apis/distributedtask/hubs/build/plans/"+headers["PlanId"]+"/events?api-version=2.0-preview.1", ado.paths[0])

	// A check evaluated after the decision is answered at once.
	h2 := map[string]string{}
	for k, v := range headers {
		h2[k] = v
	}
	h2["TaskInstanceId"] = "e1c2d3e4-0000-4000-8000-000000000004"
	code, _ = post(h2, body)
	require.Equal(t, 200, code)
	require.Eventually(t, func() bool { return len(ado.got()) == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "succeeded", ado.got()[1]["result"])
}

func TestCheckDeliverer_ResultsAndErrors(t *testing.T) {
	var status int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status == 429 {
			w.Header().Set("Retry-After", "7")
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"message":"token job-access-token-secret expired"}`))
	}))
	defer srv.Close()
	cb := ica.CheckCallback{PlanURL: srv.URL, ProjectID: "p", HubName: "build", PlanID: "pl", JobID: "j", TaskInstanceID: "t", AuthToken: "job-access-token-secret"}
	raw, _ := json.Marshal(ica.CheckCompletion{Callback: cb, ApprovalID: "A-1", Status: "rejected", Result: ica.CheckResult("rejected")})
	msg := &ica.OutboxMessage{Payload: raw}
	d := &pipelines.CheckDeliverer{}
	for _, c := range []struct {
		status int
		retry  bool
	}{{200, false}, {204, false}, {500, true}, {503, true}, {429, true}, {401, false}, {404, false}} {
		status = c.status
		retry, err := d.Deliver(context.Background(), msg)
		require.Equal(t, c.retry, retry, "status %d", c.status)
		if c.status/100 == 2 {
			require.NoError(t, err)
			continue
		}
		require.Error(t, err)
		require.NotContains(t, err.Error(), "job-access-token-secret", "the job token never reaches an error")
		if c.status == 429 {
			ra, ok := ica.RetryAfter(err)
			require.True(t, ok)
			require.Equal(t, 7*time.Second, ra)
		}
	}
	require.Equal(t, "failed", ica.CheckResult("expired"))
	require.Equal(t, "succeeded", ica.CheckResult("bypassed"))
}
