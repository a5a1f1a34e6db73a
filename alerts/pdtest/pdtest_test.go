package pdtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func post(t *testing.T, url string, body []byte) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var m map[string]any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &m), string(raw))
	}
	return resp.StatusCode, m, resp.Header
}

func withKey(t *testing.T, name, key string) []byte {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(Fixture(name), &m))
	m["routing_key"] = key
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

const key32 = "e93facc04764012d7bfb002500d5d1a6"

func TestServer_Fixtures(t *testing.T) {
	s := NewServer(t)

	status, body, _ := post(t, s.URL, Fixture("request-trigger-openapi-example.json"))
	require.Equal(t, http.StatusAccepted, status)
	require.Equal(t, map[string]any{"status": "success", "message": "Event processed", "dedup_key": "srv01/mysql"}, body)

	// PagerDuty's developer-docs examples use a placeholder routing key.
	for _, name := range []string{"request-acknowledge.json", "request-resolve.json", "request-trigger.json"} {
		status, body, _ = post(t, s.URL, Fixture(name))
		require.Equal(t, http.StatusBadRequest, status, name)
		require.Equal(t, "invalid event", body["status"])
		require.Equal(t, "Event object is invalid", body["message"])
		require.Equal(t, []any{"Length of 'routing_key' is incorrect (should be 32 characters)"}, body["errors"])

		status, body, _ = post(t, s.URL, withKey(t, name, key32))
		require.Equal(t, http.StatusAccepted, status, name)
		require.NotEmpty(t, body["dedup_key"])
	}
	require.Len(t, s.Requests(), 7)
	require.Len(t, s.Events(), 4)
}

func TestServer_Validation(t *testing.T) {
	s := NewServer(t)
	cases := map[string]struct {
		body string
		want string
	}{
		"not JSON":            {`{"routing_key":`, "JSON parse error"},
		"no action":           {`{"routing_key":"` + key32 + `"}`, "'event_action' is missing or blank"},
		"bad action":          {`{"routing_key":"` + key32 + `","event_action":"page"}`, "'event_action' is invalid"},
		"ack without dedup":   {`{"routing_key":"` + key32 + `","event_action":"acknowledge"}`, "'dedup_key' is missing or blank"},
		"trigger, no payload": {`{"routing_key":"` + key32 + `","event_action":"trigger"}`, "'payload' is missing"},
		"trigger, no summary": {`{"routing_key":"` + key32 + `","event_action":"trigger","payload":{"source":"s","severity":"info"}}`, "'payload.summary' is missing"},
		"trigger, no source":  {`{"routing_key":"` + key32 + `","event_action":"trigger","payload":{"summary":"s","severity":"info"}}`, "'payload.source' is missing"},
		"trigger, bad sev":    {`{"routing_key":"` + key32 + `","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"Sev0"}}`, "'payload.severity' is invalid"},
		"summary too long":    {`{"routing_key":"` + key32 + `","event_action":"trigger","payload":{"summary":"` + strings.Repeat("x", 1025) + `","source":"s","severity":"info"}}`, "too long"},
		"dedup key too long":  {`{"routing_key":"` + key32 + `","event_action":"resolve","dedup_key":"` + strings.Repeat("k", 256) + `"}`, "'dedup_key' is too long"},
		"bad timestamp":       {`{"routing_key":"` + key32 + `","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"info","timestamp":"yesterday"}}`, "'payload.timestamp'"},
		"details not object":  {`{"routing_key":"` + key32 + `","event_action":"trigger","payload":{"summary":"s","source":"s","severity":"info","custom_details":[1]}}`, "custom_details"},
	}
	for name, c := range cases {
		status, body, _ := post(t, s.URL, []byte(c.body))
		require.Equal(t, http.StatusBadRequest, status, name)
		require.Contains(t, body["errors"].([]any)[0], c.want, name)
	}
	require.Empty(t, s.Events())

	resp, err := http.Get(s.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	status, _, _ := post(t, strings.TrimSuffix(s.URL, EnqueuePath)+"/v1/enqueue", Fixture("request-trigger-openapi-example.json"))
	require.Equal(t, http.StatusNotFound, status)
}

func TestServer_FailNext(t *testing.T) {
	s := NewServer(t)
	s.FailNext(1, http.StatusTooManyRequests)
	s.FailNext(2, http.StatusBadGateway)
	s.SetRetryAfter("5")
	s.FailNext(1, http.StatusServiceUnavailable)
	want := []int{429, 502, 502, 503, 202}
	for i, w := range want {
		status, body, h := post(t, s.URL, Fixture("request-trigger-openapi-example.json"))
		require.Equal(t, w, status, i)
		switch w {
		case 429:
			require.Equal(t, "throttle exceeded", body["status"])
			require.Equal(t, "5", h.Get("Retry-After"))
		case 502:
			require.Equal(t, "Unrecognized object", body["status"])
			require.Empty(t, h.Get("Retry-After"))
		case 503:
			require.Equal(t, "5", h.Get("Retry-After"))
		}
	}
	reqs := s.Requests()
	require.Len(t, reqs, 5)
	last, ok := s.Last()
	require.True(t, ok)
	require.Equal(t, http.StatusAccepted, last.Status)
	for i, w := range want {
		require.Equal(t, w, reqs[i].Status)
	}
	s.Reset()
	require.Empty(t, s.Requests())
}

func TestServer_DownAndLatency(t *testing.T) {
	s := NewServer(t)
	s.SetDown(true)
	_, err := http.Post(s.URL, "application/json", bytes.NewReader(Fixture("request-trigger-openapi-example.json")))
	require.Error(t, err)
	require.Equal(t, 0, s.Requests()[0].Status)
	s.SetDown(false)

	s.SetLatency(100 * time.Millisecond)
	start := time.Now()
	status, _, _ := post(t, s.URL, Fixture("request-trigger-openapi-example.json"))
	require.Equal(t, http.StatusAccepted, status)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)

	c := &http.Client{Timeout: 20 * time.Millisecond}
	_, err = c.Post(s.URL, "application/json", bytes.NewReader(Fixture("request-trigger-openapi-example.json")))
	require.Error(t, err)
}

func TestServer_Concurrent(t *testing.T) {
	s := NewServer(t)
	s.FailNext(5, http.StatusInternalServerError)
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := http.Post(s.URL, "application/json", bytes.NewReader(Fixture("request-trigger-openapi-example.json")))
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	require.Len(t, s.Requests(), n)
	require.Len(t, s.WaitForEvents(n-5, time.Second), n-5)
	reqs := s.Requests()
	for i := 1; i < len(reqs); i++ {
		require.False(t, reqs[i].At.Before(reqs[i-1].At.Add(-time.Second)))
	}
}

func TestServer_WaitForEvents(t *testing.T) {
	s := NewServer(t)
	go func() {
		time.Sleep(20 * time.Millisecond)
		resp, err := http.Post(s.URL, "application/json", bytes.NewReader(Fixture("request-trigger-openapi-example.json")))
		if err == nil {
			resp.Body.Close()
		}
	}()
	require.Len(t, s.WaitForEvents(1, 2*time.Second), 1)
	require.Len(t, s.WaitForEvents(2, 30*time.Millisecond), 1, "times out with what arrived")
}
