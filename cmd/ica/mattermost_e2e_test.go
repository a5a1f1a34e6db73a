package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/bot/mmtest"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// TestMain_MattermostEndToEnd runs the real main against the fake
// Mattermost: a pipeline asks for approval, two people click, the pipeline
// sees approved; /ica status answers; /ica export posts a signed file that
// verifies offline.
func TestMain_MattermostEndToEnd(t *testing.T) {
	mm := mmtest.New(t)
	mm.AddTeam("eng")
	mm.AddChannel("eng", "deployments")
	for _, u := range []string{"tech1", "biz1", "alice", "auditor"} {
		mm.AddUser(u)
	}
	_, botToken := mm.AddBot("ica")
	mm.Join("deployments", "tech1", "biz1", "alice", "auditor", "ica")

	addr := freeAddr(t)
	dir := t.TempDir()
	slashToken := mm.AddCommand("eng", "ica", "http://"+addr+"/mattermost/slash")
	env := map[string]string{"ICA_ADDR": addr, "ICA_DATA_DIR": dir, "ICA_PIPELINE_TOKENS": "ado=" + testToken,
		"ICA_PUBLIC_URL": "http://" + addr, "ICA_MATTERMOST_URL": mm.URL, "ICA_MATTERMOST_TOKEN": botToken,
		"ICA_MATTERMOST_TEAM": "eng", "ICA_TECH_APPROVERS": "tech1", "ICA_BUSINESS_APPROVERS": "biz1",
		"ICA_SLASH_TOKENS": slashToken, "ICA_EXPORT_USERS": "auditor", "ICA_MONTHLY_BUDGET": "10000"}
	base, stop, logs := startServe(t, env)
	defer func() { require.Equal(t, 0, stop()) }()

	require.Eventually(t, func() bool {
		_, body := call(t, "GET", base+"/readyz", "", "")
		checks, _ := body["checks"].(map[string]any)
		return checks["mattermost"] == "ok"
	}, 10*time.Second, 20*time.Millisecond, "the bot connects: %s", logs.String())

	st, body := call(t, "POST", base+"/api/v1/runs", testToken,
		`{"pipeline_name":"payments","run_id":"777","branch":"refs/heads/main","commit":"0123456789abcdef0123456789abcdef01234567","triggered_by":"alice@example.com"}`)
	require.Equal(t, 201, st, body)
	st, body = call(t, "POST", base+"/api/v1/costs", testToken, fmt.Sprintf(`{"run_id":"777","resource_type":"aks","cost_usd":1200,"billing_period":%q}`, time.Now().UTC().Format(time.DateOnly)))
	require.Equal(t, 201, st, body)
	st, body = call(t, "POST", base+"/api/v1/approvals", testToken, `{"run_id":"777","deployment_target":"production","estimated_cost":250}`)
	require.Equal(t, 201, st, body)
	id := body["approval_id"].(string)

	var card *model.Post
	require.Eventually(t, func() bool {
		for _, p := range mm.Posts("deployments") {
			if fmt.Sprint(p.GetProp("ica_approval_id")) == id {
				// A click counts only on the card ICA has recorded as its own.
				_, a := call(t, "GET", base+"/api/v1/approvals/"+id, testToken, "")
				c, _ := a["card"].(map[string]any)
				card = p
				return c["post_id"] == p.Id
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "the card is posted and recorded")
	require.Contains(t, fmt.Sprint(card.GetProps()), "month-to-date", "the card carries the budget line")
	// ICA records the card's post id just after Mattermost created it; a
	// click before that is refused as coming from a post that is not the card.
	require.Eventually(t, func() bool {
		_, body := call(t, "GET", base+"/api/v1/approvals/"+id, testToken, "")
		c, _ := body["card"].(map[string]any)
		return c["post_id"] == card.Id
	}, 10*time.Second, 5*time.Millisecond, "ICA recorded its card")

	res, err := mm.Click(card.Id, "approvetechnical", "tech1")
	require.NoError(t, err)
	require.Equal(t, 200, res.Status)
	_, body = call(t, "GET", base+"/api/v1/approvals/"+id, testToken, "")
	require.Equal(t, "technical_approved", body["status"])
	res, err = mm.Click(card.Id, "approvebusiness", "biz1")
	require.NoError(t, err)
	require.Equal(t, 200, res.Status)
	_, body = call(t, "GET", base+"/api/v1/approvals/"+id, testToken, "")
	require.Equal(t, "approved", body["status"])

	code, resp, err := mm.SlashCommand("alice", "deployments", "/ica status 777")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.Contains(t, resp.Text, "777")

	code, resp, err = mm.SlashCommand("alice", "deployments", "/ica export format=csv")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.Contains(t, strings.ToLower(resp.Text), "not allowed", "only the configured users may export")

	before := len(mm.Posts("deployments"))
	code, resp, err = mm.SlashCommand("auditor", "deployments", "/ica export format=csv")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.Contains(t, resp.Text, "Exporting")
	var filePost *model.Post
	require.Eventually(t, func() bool {
		for _, p := range mm.Posts("deployments")[before:] {
			if len(p.FileIds) > 0 {
				filePost = p
				return true
			}
		}
		return false
	}, 15*time.Second, 50*time.Millisecond, "the export is posted by the bot")
	require.Equal(t, mm.UserID("ica"), filePost.UserId)
	require.Contains(t, filePost.Message, "Signing key")
	_, data := mm.File(filePost.FileIds[0])
	p := filepath.Join(t.TempDir(), "export.csv")
	require.NoError(t, os.WriteFile(p, data, 0o600))
	var out bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"ica", "verify", p, "--data-dir", dir}, envFunc(nil), &out, &out), out.String())
	require.Contains(t, out.String(), "OK")

	// An edited export is caught and the record named.
	edited := bytes.Replace(data, []byte("payments"), []byte("paymentz"), 1)
	require.NoError(t, os.WriteFile(p, edited, 0o600))
	out.Reset()
	require.Equal(t, 1, run(context.Background(), []string{"ica", "verify", p}, envFunc(nil), &out, &out))
	require.Contains(t, out.String(), "record seq 2", "seq 1 is the policy recorded at start")

	// ica export through the admin socket while serving.
	out.Reset()
	outFile := filepath.Join(t.TempDir(), "cli.json")
	require.Equal(t, 0, run(context.Background(), []string{"ica", "export", "--data-dir", dir, "--format", "json", "--out", outFile}, envFunc(nil), &out, &out), out.String())
	require.NotContains(t, logs.String(), botToken, "the bot token never reaches the logs")
	require.NotContains(t, logs.String(), slashToken)
}
