package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/entraid"
	"github.com/ica-governance/ica/entraid/entraidtest"
)

const (
	entraTenant = "6e2d4f2a-1c3b-4b8e-9f10-2a7d3c4e5f60"
	icaAudience = "api://ica"
	agentApp    = "2f1e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b" // the pipeline agents' managed identity
	agentOID    = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	monitorOID  = "c7b0a1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d" // the AzNS service principal in the tenant
	personOID   = "690222be-ff1a-4d56-abd1-7e4f7d38e474"
)

func entraEnv(t *testing.T, idp *entraidtest.IdP, extra map[string]string) map[string]string {
	env := map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": t.TempDir(), "ICA_PIPELINE_TOKENS": "ado=" + testToken,
		"ICA_ENTRA_TENANT_ID": entraTenant, "ICA_ENTRA_AUDIENCES": icaAudience, "ICA_ENTRA_METADATA_URL": idp.MetadataURL(entraTenant)}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func postAlert(t *testing.T, url, bearer string) (int, map[string]any) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "alerts", "testdata", "common", "metric-static-threshold-fired.json"))
	require.NoError(t, err)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return res.StatusCode, m
}

// TestMain_EntraSurfaces runs the real main with Entra ID and offers each
// surface the other surfaces' tokens: the Secure Webhook's token cannot
// start a run, the pipelines' managed identity cannot raise an alert, a
// person's token is refused by the pipeline API and an application token
// by the user surface. Nothing refused reaches the ledger.
func TestMain_EntraSurfaces(t *testing.T) {
	idp := entraidtest.New(t)
	base, stop, logs := startServe(t, entraEnv(t, idp, map[string]string{"ICA_ENTRA_PIPELINE_APP_IDS": agentApp, "ICA_LOG_LEVEL": "debug"}))
	defer func() { require.Equal(t, 0, stop()) }()

	pipelineTok := idp.Sign(t, entraidtest.AppClaims(entraTenant, icaAudience, agentApp, agentOID))
	alertTok := idp.Sign(t, entraidtest.AppClaims(entraTenant, icaAudience, entraid.ActionGroupsAppID, monitorOID, entraid.ActionGroupsRole))
	userTok := idp.Sign(t, entraidtest.UserClaims(entraTenant, icaAudience, personOID, "abeli@example.com", "Abe Lincoln"))
	runBody := `{"pipeline_name":"payments","run_id":"e-1","branch":"refs/heads/main","commit":"0123456789abcdef0123456789abcdef01234567","triggered_by":"alice"}`

	// Refused, each with the reason, before anything is written.
	for _, tc := range []struct {
		name, method, path, tok, body, msg string
		status                             int
	}{
		{"alert token starts a run", "POST", "/api/v1/runs", alertTok, runBody, "caller not allowed on the pipeline API", 403},
		{"user token starts a run", "POST", "/api/v1/runs", userTok, runBody, "not a person's delegated token", 403},
		{"app token on the user surface", "GET", "/api/v1/me", pipelineTok, "", "not an application token", 403},
		{"alert token on the user surface", "GET", "/api/v1/me", alertTok, "", "not an application token", 403},
		{"static pipeline token on the user surface", "GET", "/api/v1/me", testToken, "", "only a person's Entra ID access token", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := call(t, tc.method, base+tc.path, tc.tok, tc.body)
			require.Equal(t, tc.status, st, body)
			require.Contains(t, body["error"].(map[string]any)["message"], tc.msg)
		})
	}
	st, body := postAlert(t, base+"/api/v1/alerts/azure-monitor", pipelineTok)
	require.Equal(t, 403, st, "the pipelines' managed identity cannot raise an alert: %v", body)
	require.Contains(t, body["error"].(map[string]any)["message"], "caller not allowed on the alert intake")
	st, body = postAlert(t, base+"/api/v1/alerts/azure-monitor", userTok)
	require.Equal(t, 403, st, body)

	st, body = call(t, "GET", base+"/api/v1/runs?limit=10", testToken, "")
	require.Equal(t, 200, st)
	require.Empty(t, body["runs"], "no refused request started a run")
	st, body = call(t, "GET", base+"/api/v1/incidents", testToken, "")
	require.Equal(t, 200, st)
	require.Empty(t, body["incidents"], "no refused request raised an alert")

	// Accepted, each on its own surface, with its actor.
	st, body = call(t, "POST", base+"/api/v1/runs", pipelineTok, runBody)
	require.Equal(t, 201, st, body)
	require.Equal(t, "entra:"+agentApp, body["actor"])
	st, body = postAlert(t, base+"/api/v1/alerts/azure-monitor", alertTok)
	require.Equal(t, 202, st, body)
	st, body = call(t, "GET", base+"/api/v1/me", userTok, "")
	require.Equal(t, 200, st, body)
	require.Equal(t, map[string]any{"id": "entra:" + entraTenant + "/" + personOID, "tid": entraTenant, "oid": personOID,
		"upn": "abeli@example.com", "name": "Abe Lincoln"}, body)

	// The alert's actor (access log at debug) is the Secure Webhook's application.
	require.Contains(t, logs.String(), `"actor":"azure-monitor:entra:`+entraid.ActionGroupsAppID+`"`)
}

// TestMain_EntraEmptyPolicyRefuses: with a tenant but no pipeline identity
// configured, the pipeline API refuses every Entra token (it does not admit
// the whole tenant), and says what to set.
func TestMain_EntraEmptyPolicyRefuses(t *testing.T) {
	idp := entraidtest.New(t)
	base, stop, logs := startServe(t, entraEnv(t, idp, nil))
	defer func() { require.Equal(t, 0, stop()) }()
	require.Contains(t, logs.String(), "the pipeline API accepts no Entra token until ICA_ENTRA_PIPELINE_APP_IDS")
	tok := idp.Sign(t, entraidtest.AppClaims(entraTenant, icaAudience, agentApp, agentOID))
	st, body := call(t, "POST", base+"/api/v1/runs", tok,
		`{"pipeline_name":"payments","run_id":"e-2","branch":"main","commit":"0123456789abcdef","triggered_by":"alice"}`)
	require.Equal(t, 403, st, body)
	require.Contains(t, body["error"].(map[string]any)["message"], "the pipeline API accepts no Entra ID token")
	st, body = call(t, "GET", base+"/api/v1/runs", testToken, "")
	require.Equal(t, 200, st)
	require.Empty(t, body["runs"])
}

// TestConfig_EntraRenamedSettings: a setting whose meaning changed fails at
// start and names its replacement.
func TestConfig_EntraRenamedSettings(t *testing.T) {
	for env, repl := range map[string]string{
		"ICA_ENTRA_ALLOWED_APP_IDS":    "ICA_ENTRA_PIPELINE_APP_IDS",
		"ICA_ENTRA_ALLOWED_OBJECT_IDS": "ICA_ENTRA_PIPELINE_OBJECT_IDS",
		"ICA_ENTRA_ALLOWED_ROLES":      "ICA_ENTRA_ALERT_ROLES",
	} {
		var out bytes.Buffer
		code := run(context.Background(), []string{"ica", "serve"}, envFunc(map[string]string{"ICA_ADDR": "127.0.0.1:0",
			"ICA_DATA_DIR": t.TempDir(), env: "x"}), &out, &out)
		require.NotEqual(t, 0, code)
		require.Contains(t, out.String(), env+" is no longer read")
		require.Contains(t, out.String(), repl)
	}
	p := filepath.Join(t.TempDir(), "ica.yaml")
	require.NoError(t, os.WriteFile(p, []byte("entra:\n  tenant_id: "+entraTenant+"\n  audiences: [api://ica]\n  allowed_roles: [Pipeline.Write]\n"), 0o600))
	_, err := loadConfig(p, envFunc(nil))
	require.ErrorContains(t, err, "entra.allowed_roles is no longer read: it was replaced by entra.pipeline.roles")

	// The pipeline policy may not admit the Secure Webhook's caller.
	_, err = loadConfig("", envFunc(map[string]string{"ICA_ENTRA_TENANT_ID": entraTenant, "ICA_ENTRA_AUDIENCES": icaAudience,
		"ICA_ENTRA_PIPELINE_ROLES": "ActionGroupsSecureWebhook"}))
	require.ErrorContains(t, err, "must not start runs")
	_, err = loadConfig("", envFunc(map[string]string{"ICA_ENTRA_TENANT_ID": entraTenant, "ICA_ENTRA_AUDIENCES": icaAudience,
		"ICA_ENTRA_PIPELINE_APP_IDS": entraid.ActionGroupsAppID}))
	require.ErrorContains(t, err, "must not start runs")
	_, err = loadConfig("", envFunc(map[string]string{"ICA_ENTRA_TENANT_ID": entraTenant}))
	require.ErrorContains(t, err, "ICA_ENTRA_AUDIENCES")

	c, err := loadConfig("", envFunc(map[string]string{"ICA_ENTRA_TENANT_ID": entraTenant, "ICA_ENTRA_AUDIENCES": icaAudience,
		"ICA_ENTRA_ALERT_AUDIENCES": "api://ica-alerts", "ICA_ENTRA_PIPELINE_OBJECT_IDS": agentOID}))
	require.NoError(t, err)
	require.Equal(t, []string{entraid.ActionGroupsAppID}, c.Entra.Alert.AppIDs, "the alert intake defaults to Azure Monitor's action groups")
	require.Equal(t, []string{entraid.ActionGroupsRole}, c.Entra.Alert.Roles)
	require.ElementsMatch(t, []string{icaAudience, "api://ica-alerts"}, c.Entra.audiences())
}
