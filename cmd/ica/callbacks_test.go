package main

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/bot/mmtest"
)

// TestMain_CallbackListener: with ICA_CALLBACK_ADDR, Mattermost's callbacks
// are served on their own port and nowhere else; ICA_CALLBACK_ALLOWED_CIDRS
// limits who may reach them; ICA_INSTANCE_NAME shows on the card; and
// /readyz (still 200) names an approver that does not resolve.
func TestMain_CallbackListener(t *testing.T) {
	mm := mmtest.New(t)
	mm.AddTeam("eng")
	mm.AddChannel("eng", "deployments")
	for _, u := range []string{"tech1", "biz1", "alice"} {
		mm.AddUser(u)
	}
	_, botToken := mm.AddBot("ica")
	mm.Join("deployments", "tech1", "biz1", "alice", "ica")

	cbAddr := freeAddr(t)
	slashToken := mm.AddCommand("eng", "ica", "http://"+cbAddr+"/mattermost/slash")
	env := map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": t.TempDir(), "ICA_PIPELINE_TOKENS": "ado=" + testToken,
		"ICA_PUBLIC_URL": "http://" + cbAddr, "ICA_CALLBACK_ADDR": cbAddr, "ICA_CALLBACK_ALLOWED_CIDRS": "127.0.0.0/8,::1",
		"ICA_MATTERMOST_URL": mm.URL, "ICA_MATTERMOST_TOKEN": botToken, "ICA_INSTANCE_NAME": "staging",
		"ICA_MATTERMOST_SIGNING_KEY": mm.SigningPublicKey(),
		"ICA_MATTERMOST_TEAM":        "eng", "ICA_TECH_APPROVERS": "tech1,ghost", "ICA_BUSINESS_APPROVERS": "biz1",
		"ICA_SLASH_TOKENS": slashToken}
	base, stop, logs := startServe(t, env)
	defer func() { require.Equal(t, 0, stop()) }()

	var checks map[string]any
	require.Eventually(t, func() bool {
		st, body := call(t, "GET", base+"/readyz", "", "")
		checks, _ = body["checks"].(map[string]any)
		return st == 200 && checks["mattermost"] == "ok"
	}, 10*time.Second, 20*time.Millisecond, "the bot connects: %s", logs.String())
	require.Contains(t, checks["mattermost_approvers"], "ghost", "an unresolved approver shows in /readyz, which stays 200")
	require.Equal(t, "ok", checks["mattermost_email"])
	require.Contains(t, logs.String(), "listening for Mattermost callbacks")

	// The callbacks are not on the main port; the API is not on the callback port.
	res, err := http.Post(base+"/mattermost/actions", "application/json", bytes.NewReader([]byte("{}")))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 404, res.StatusCode)
	res, err = http.Get("http://" + cbAddr + "/api/v1/runs")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 404, res.StatusCode)

	st, body := call(t, "POST", base+"/api/v1/runs", testToken,
		`{"pipeline_name":"payments","run_id":"888","branch":"refs/heads/main","commit":"0123456789abcdef0123456789abcdef01234567","triggered_by":"alice@example.com","requested_for_email":"alice@example.com","requested_for_id":"6f1c9a1e-0b1d-4c53-9d2f-7d0c6a0c1b11"}`)
	require.Equal(t, 201, st, body)
	st, body = call(t, "POST", base+"/api/v1/approvals", testToken, `{"run_id":"888","deployment_target":"staging","estimated_cost":5}`)
	require.Equal(t, 201, st, body)
	id := body["approval_id"].(string)
	var card *model.Post
	require.Eventually(t, func() bool {
		for _, p := range mm.Posts("deployments") {
			if fmt.Sprint(p.GetProp("ica_approval_id")) == id {
				card = p
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "ICA staging · ledger-recorded decision", card.Attachments()[0].Footer)

	// Clicks through the callback port work.
	r, err := mm.Click(card.Id, "approvetechnical", "tech1")
	require.NoError(t, err)
	require.Equal(t, 200, r.Status)
	_, body = call(t, "GET", base+"/api/v1/approvals/"+id, testToken, "")
	require.Equal(t, "technical_approved", body["status"])
	code, resp, err := mm.SlashCommand("alice", "deployments", "/ica status")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.Contains(t, resp.Text, "`staging`")
}

// TestMain_CallbackSourcesRefused: a Mattermost outside the allowed
// networks gets an ephemeral refusal (HTTP 200) and changes nothing.
func TestMain_CallbackSourcesRefused(t *testing.T) {
	mm := mmtest.New(t)
	mm.AddTeam("eng")
	mm.AddChannel("eng", "deployments")
	mm.AddUser("tech1")
	_, botToken := mm.AddBot("ica")
	mm.Join("deployments", "tech1", "ica")
	addr := freeAddr(t)
	slashToken := mm.AddCommand("eng", "ica", "http://"+addr+"/mattermost/slash")
	env := map[string]string{"ICA_ADDR": addr, "ICA_DATA_DIR": t.TempDir(), "ICA_PIPELINE_TOKENS": "ado=" + testToken,
		"ICA_PUBLIC_URL": "http://" + addr, "ICA_CALLBACK_ALLOWED_CIDRS": "10.99.0.0/16",
		"ICA_MATTERMOST_URL": mm.URL, "ICA_MATTERMOST_TOKEN": botToken, "ICA_MATTERMOST_TEAM": "eng",
		"ICA_TECH_APPROVERS": "tech1", "ICA_SLASH_TOKENS": slashToken}
	base, stop, logs := startServe(t, env)
	defer func() { require.Equal(t, 0, stop()) }()
	code, resp, err := mm.SlashCommand("tech1", "deployments", "/ica status")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.Contains(t, resp.Text, "ICA_CALLBACK_ALLOWED_CIDRS")
	require.Contains(t, logs.String(), "outside ICA_CALLBACK_ALLOWED_CIDRS")
	st, _ := call(t, "GET", base+"/healthz", "", "")
	require.Equal(t, 200, st, "the rest of the API is not limited")
}

func TestConfig_CallbackSettings(t *testing.T) {
	c, err := loadConfig("", envFunc(map[string]string{"ICA_INSTANCE_NAME": "production", "ICA_CALLBACK_ADDR": "0.0.0.0:8081",
		"ICA_CALLBACK_ALLOWED_CIDRS": "10.0.0.0/8, 10.1.2.3", "ICA_APPROVER_REFRESH": "5m"}))
	require.NoError(t, err)
	require.Equal(t, "production", c.InstanceName)
	require.Equal(t, "0.0.0.0:8081", c.Callbacks.Addr)
	require.Equal(t, []string{"10.0.0.0/8", "10.1.2.3"}, c.Callbacks.AllowedCIDRs)
	require.Equal(t, 5*time.Minute, c.Callbacks.ApproverRefresh)
	for name, env := range map[string]map[string]string{
		"bad cidr":      {"ICA_CALLBACK_ALLOWED_CIDRS": "mattermost.internal"},
		"bad addr":      {"ICA_CALLBACK_ADDR": "8081"},
		"same addr":     {"ICA_ADDR": "127.0.0.1:9000", "ICA_CALLBACK_ADDR": "127.0.0.1:9000"},
		"bad key":       {"ICA_MATTERMOST_SIGNING_KEY": "bm90IGEga2V5"},
		"bad refresh":   {"ICA_APPROVER_REFRESH": "often"},
		"short refresh": {"ICA_APPROVER_REFRESH": "1s"},
	} {
		_, err := loadConfig("", envFunc(env))
		require.Error(t, err, name)
	}
}
