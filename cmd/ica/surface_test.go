package main

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMain_UnconfiguredFeaturesSayWhatIsMissing runs the real main with only
// pipeline tokens: every documented endpoint of a feature that is not
// configured answers with the setting that would enable it, every answer is
// JSON with X-Request-Id, and nothing is written.
func TestMain_UnconfiguredFeaturesSayWhatIsMissing(t *testing.T) {
	const metricsToken = "metrics-token-0000000001"
	base, stop, logs := startServe(t, map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": t.TempDir(),
		"ICA_PIPELINE_TOKENS": "ado=" + testToken, "ICA_LOG_LEVEL": "debug", "ICA_METRICS_ADDR": "off", "ICA_METRICS_TOKEN": metricsToken})
	defer func() { require.Equal(t, 0, stop()) }()
	entries := func() string {
		req, _ := http.NewRequest("GET", base+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+metricsToken)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		return regexp.MustCompile(`(?m)^ica_ledger_entries .*$`).FindString(string(raw))
	}
	before := entries()
	require.NotEmpty(t, before)

	cases := []struct {
		name, method, path, token, body, contentType string
		status                                       int
		code, want                                   string
	}{
		{"button click without Mattermost", "POST", "/mattermost/actions", "", `{"user_id":"u1"}`, "application/json", 200, "", "ICA_MATTERMOST_URL"},
		{"dialog without Mattermost", "POST", "/mattermost/dialogs", "", `{"state":"x"}`, "application/json", 200, "", "ICA_MATTERMOST_URL"},
		{"slash command without Mattermost", "POST", "/mattermost/slash", "", "token=x&text=status", "application/x-www-form-urlencoded", 200, "", "ICA_MATTERMOST_URL"},
		{"remote backup without admin tokens", "GET", "/api/v1/admin/backup", testToken, "", "", 503, "not_configured", "ICA_ADMIN_TOKENS"},
		{"bypass without break-glass tokens", "POST", "/api/v1/approvals/A-1/bypass", testToken, `{"reason":"x"}`, "application/json", 503, "not_configured", "ICA_BREAKGLASS_TOKENS"},
		{"alerts without a token or Entra ID", "POST", "/api/v1/alerts/azure-monitor?token=x", "", `{}`, "application/json", 503, "not_configured", "ICA_ALERT_TOKEN"},
		{"freeze override without tokens", "POST", "/api/v1/incidents/I-1/freeze-override", testToken, `{"reason":"x"}`, "application/json", 503, "not_configured", "ICA_INCIDENT_COMMANDER_TOKENS"},
		{"incident card without Mattermost", "GET", "/incidents/I-1/card", "", "", "", 503, "not_configured", "ICA_MATTERMOST_URL"},
		{"missing dashboard asset", "GET", "/dashboard/static/nope.css", "", "", "", 404, "not_found", `no dashboard asset \"nope.css\"`},
		{"unknown route", "GET", "/api/v2/runs", testToken, "", "", 404, "not_found", "no such endpoint"},
		{"wrong method", "PATCH", "/api/v1/runs", testToken, "", "", 405, "method_not_allowed", "allowed: GET, POST"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
			require.NoError(t, err)
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			require.Equal(t, c.status, res.StatusCode, string(raw))
			require.Contains(t, res.Header.Get("Content-Type"), "application/json")
			rid := res.Header.Get("X-Request-Id")
			require.NotEmpty(t, rid)
			require.Empty(t, res.Header.Get("Retry-After"), "a retry cannot help")
			require.Contains(t, string(raw), c.want)
			var doc map[string]any
			require.NoError(t, json.Unmarshal(raw, &doc), string(raw))
			if c.code != "" {
				e := doc["error"].(map[string]any)
				require.Equal(t, c.code, e["code"])
				require.Equal(t, rid, e["request_id"])
			}
			require.Contains(t, logs.String(), `"request_id":"`+rid+`"`, "an access-log line")
		})
	}
	require.Equal(t, before, entries(), "nothing was written")
	require.NotContains(t, logs.String(), "superfluous")
	require.Contains(t, logs.String(), "decide through POST /api/v1/approvals/{id}/decisions with their own Entra ID token", "the start-up warning says what is true")
	require.NotContains(t, logs.String(), "decided through the API")
}
