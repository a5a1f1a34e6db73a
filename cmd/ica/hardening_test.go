package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/bot/mmtest"
)

// TestServe_SourceRateLimit: the real server limits the routes without a
// credential per source address, believes X-Forwarded-For only from
// ICA_TRUSTED_PROXIES, and never limits its probes.
func TestServe_SourceRateLimit(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		env := map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": t.TempDir(), "ICA_SOURCE_RATE_LIMIT": "1"}
		if trusted {
			env["ICA_TRUSTED_PROXIES"] = "127.0.0.0/8"
		}
		base, stop, _ := startServe(t, env)
		get := func(path, xff string) *http.Response {
			req, _ := http.NewRequest("GET", base+path, nil)
			if xff != "" {
				req.Header.Set("X-Forwarded-For", xff)
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			return res
		}
		for range 5 {
			require.Equal(t, 200, get("/healthz", "").StatusCode)
		}
		codes := []int{}
		var last *http.Response
		for i := range 3 {
			last = get("/api/v1/openapi.json", "203.0.113."+strconv.Itoa(i+1))
			codes = append(codes, last.StatusCode)
		}
		if trusted {
			require.Equal(t, []int{200, 200, 200}, codes, "three clients behind the trusted proxy")
		} else {
			require.Equal(t, []int{200, 200, 429}, codes, "one client, whatever it claims")
			require.NotEmpty(t, last.Header.Get("Retry-After"))
		}
		require.Equal(t, 0, stop())
	}
}

// TestServe_CheckJobTokenSealed: through the real server, a check's job
// token is in no backup and is still posted with the TaskCompleted.
func TestServe_CheckJobTokenSealed(t *testing.T) {
	var mu sync.Mutex
	var auth []string
	ado := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		auth = append(auth, r.Header.Get("Authorization"))
	}))
	defer ado.Close()
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	jobToken := "job-token-" + hex.EncodeToString(b)
	dir := t.TempDir()
	base, stop, _ := startServe(t, map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": dir, "ICA_PIPELINE_TOKENS": "ado=" + testToken,
		"ICA_BREAKGLASS_TOKENS": "sre=breakglass-token-00000001", "ICA_ADMIN_TOKENS": "backup=" + testAdminToken, "ICA_ADO_HOSTS": "127.0.0.1"})
	defer func() { require.Equal(t, 0, stop()) }()
	st, _ := call(t, "POST", base+"/api/v1/runs", testToken, `{"pipeline_name":"payments","run_id":"c-1","branch":"main","commit":"0123456789abcdef","triggered_by":"alice"}`)
	require.Equal(t, 201, st)
	req, _ := http.NewRequest("POST", base+"/api/v1/ado/checks", strings.NewReader(`{"run_id":"c-1","deployment_target":"production","estimated_cost":10}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	for k, v := range map[string]string{"PlanUrl": ado.URL + "/contoso/", "ProjectId": "p-1", "HubName": "build", "PlanId": "plan-1",
		"JobId": "job-1", "TaskInstanceId": "task-1", "AuthToken": jobToken} {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 201, res.StatusCode)

	backup := func() []byte {
		req, _ := http.NewRequest("GET", base+"/api/v1/admin/backup", nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		require.Equal(t, 200, res.StatusCode)
		raw, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return raw
	}
	require.False(t, bytes.Contains(backup(), []byte(jobToken)), "a backup taken while the check waits")

	st, body := call(t, "POST", base+"/api/v1/approvals/A-1/bypass", "breakglass-token-00000001", `{"reason":"test the callback"}`)
	require.Equal(t, 200, st, body)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(auth) == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "Bearer "+jobToken, auth[0])
	require.False(t, bytes.Contains(backup(), []byte(jobToken)), "a backup taken after the delivery")
}

// TestServe_ExportNobodyWarned: without export users or channels the set-up
// warning says that nobody may export.
func TestServe_ExportNobodyWarned(t *testing.T) {
	for _, users := range []string{"", "auditor"} {
		mm := mmtest.New(t)
		mm.AddTeam("eng")
		for _, c := range []string{"deployments", "incidents", "finance"} {
			mm.AddChannel("eng", c)
		}
		_, botToken := mm.AddBot("ica")
		for _, c := range []string{"deployments", "incidents", "finance"} {
			mm.Join(c, "ica")
		}
		addr := freeAddr(t)
		_, stop, logs := startServe(t, map[string]string{"ICA_ADDR": addr, "ICA_DATA_DIR": t.TempDir(), "ICA_PUBLIC_URL": "http://" + addr,
			"ICA_MATTERMOST_URL": mm.URL, "ICA_MATTERMOST_TOKEN": botToken, "ICA_MATTERMOST_TEAM": "eng",
			"ICA_SLASH_TOKENS": "slash-token-000000000001", "ICA_EXPORT_USERS": users})
		require.Equal(t, 0, stop())
		warned := strings.Contains(logs.String(), "nobody may run /ica export: name who may in ICA_EXPORT_USERS")
		require.Equal(t, users == "", warned, logs.String())
	}
}
