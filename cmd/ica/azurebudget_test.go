package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/bot/mmtest"
)

// budgetFixture reads a Microsoft budget sample and makes it current.
func budgetFixture(t *testing.T, name string, fired time.Time) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "alerts", "testdata", name))
	require.NoError(t, err)
	if fired.IsZero() {
		return raw
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	m["data"].(map[string]any)["essentials"].(map[string]any)["firedDateTime"] = fired.UTC().Format(time.RFC3339Nano)
	out, _ := json.Marshal(m)
	return out
}

func postBody(t *testing.T, url string, body []byte) (int, map[string]any) {
	t.Helper()
	res, err := http.Post(url, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m
}

// TestMain_AzureBudgets runs the real main: Azure's budget notifications
// (both schemas) reach GET /api/v1/budget, the finance channel, the
// approval card's budget line and the gate, which counts Azure's fresh,
// higher actual for ICA's scope.
func TestMain_AzureBudgets(t *testing.T) {
	mm := mmtest.New(t)
	mm.AddTeam("eng")
	mm.AddChannel("eng", "deployments")
	mm.AddChannel("eng", "finance")
	mm.AddUser("tech1")
	_, botToken := mm.AddBot("ica")
	mm.Join("deployments", "tech1", "ica")
	mm.Join("finance", "ica")
	const alertTok = "alert-token-for-budgets-001"
	addr := freeAddr(t)
	base, stop, logs := startServe(t, map[string]string{"ICA_ADDR": addr, "ICA_DATA_DIR": t.TempDir(), "ICA_PIPELINE_TOKENS": "ado=" + testToken,
		"ICA_PUBLIC_URL": "http://" + addr, "ICA_MATTERMOST_URL": mm.URL, "ICA_MATTERMOST_TOKEN": botToken, "ICA_MATTERMOST_TEAM": "eng",
		"ICA_TECH_APPROVERS": "tech1", "ICA_ALERT_TOKEN": alertTok, "ICA_MONTHLY_BUDGET": "20000",
		"ICA_BUDGET_SCOPES": "subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"})
	defer func() { require.Equal(t, 0, stop()) }()
	intake := base + "/api/v1/alerts/azure-monitor?token=" + alertTok

	// Azure: $11,111 spent on the subscription ICA's budget covers, now.
	st, body := postBody(t, intake, budgetFixture(t, "common/cost-budget-actual-fired.json", time.Now().Add(-time.Minute)))
	require.Equal(t, 202, st, body)
	// The legacy schema: a resource group's budget, in the same subscription.
	st, body = postBody(t, intake, budgetFixture(t, "budget/legacy-budget-notification.json", time.Time{}))
	require.Equal(t, 202, st, body)
	require.Equal(t, "budget_recorded", body["outcome"])

	st, bud := call(t, "GET", base+"/api/v1/budget", testToken, "")
	require.Equal(t, 200, st, bud)
	require.Equal(t, 0.0, bud["month_to_date"], "ICA's own figure")
	require.Equal(t, 11111.0, bud["gate_month_to_date"], "Azure's fresh, higher actual for ICA's scope")
	azure := bud["azure_budgets"].([]any)
	require.Len(t, azure, 2)
	byName := map[string]map[string]any{}
	for _, a := range azure {
		m := a.(map[string]any)
		byName[m["name"].(string)] = m
	}
	require.Equal(t, true, byName["Test_actual_cost_budget"]["gated"])
	require.Less(t, byName["Test_actual_cost_budget"]["age_seconds"].(float64), 3600.0)
	require.Equal(t, false, byName["test-budgetName"]["gated"], "a resource group is another scope than ICA's")

	// The finance channel hears of both.
	require.Eventually(t, func() bool { return len(mm.Posts("finance")) == 2 }, 10*time.Second, 20*time.Millisecond, logs.String())
	var notices []string
	for _, p := range mm.Posts("finance") {
		notices = append(notices, p.Message)
	}
	text := strings.Join(notices, "\n")
	require.Contains(t, text, "Azure budget Test_actual_cost_budget crossed its threshold")
	require.Contains(t, text, "Spent **$11,111.00** of a $50.00 budget")
	require.Contains(t, text, "test-budgetName")

	// A deployment that fits under the gate with Azure's figure gets a card
	// whose budget line names the Azure budget and its age.
	st, body = call(t, "POST", base+"/api/v1/runs", testToken,
		`{"pipeline_name":"payments","run_id":"b-1","branch":"main","commit":"0123456789abcdef","triggered_by":"alice"}`)
	require.Equal(t, 201, st, body)
	st, body = call(t, "POST", base+"/api/v1/approvals", testToken, `{"run_id":"b-1","deployment_target":"production","estimated_cost":5000}`)
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
	line := fmt.Sprint(card.GetProps())
	require.Contains(t, line, "Azure budgets: Test_actual_cost_budget $11,111.00 of $50.00")
	require.Contains(t, line, "counted by the gate")

	// 11,111 + 5,000 pending + 3,000 passes 95% of 20,000: refused, saying why.
	st, body = call(t, "POST", base+"/api/v1/runs", testToken,
		`{"pipeline_name":"payments","run_id":"b-2","branch":"main","commit":"0123456789abcdef","triggered_by":"alice"}`)
	require.Equal(t, 201, st, body)
	st, body = call(t, "POST", base+"/api/v1/approvals", testToken, `{"run_id":"b-2","deployment_target":"production","estimated_cost":3000}`)
	require.Equal(t, 422, st, body)
	require.Contains(t, body["error"].(map[string]any)["message"], "with Azure's budget actuals $11111.00")
}
