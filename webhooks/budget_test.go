package webhooks_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// TestAlerts_LegacyBudgetNotification: Azure's legacy budget notification
// (Microsoft's samples) is accepted, recorded as cost data with its body,
// de-duplicated on the SHA-256 of the body, and opens no incident.
func TestAlerts_LegacyBudgetNotification(t *testing.T) {
	e := newAlertEnv(t)
	for _, name := range []string{"budget/legacy-budget-notification.json", "budget/legacy-budget-notification-scenario.json"} {
		body := fixture(t, name)
		r := e.post("/api/v1/alerts/azure-monitor", body)
		require.Equal(t, 202, r.status, r.raw)
		require.Equal(t, "budget_recorded", r.body["outcome"])
		entry, err := e.store.Entry(e.store.LedgerEntries())
		require.NoError(t, err)
		require.Equal(t, ica.KindAzureBudget, entry.Kind)
		require.Equal(t, "azure-monitor", entry.Actor)
		var data struct {
			Report  ica.AzureBudgetReport `json:"report"`
			Payload json.RawMessage       `json:"payload"`
		}
		require.NoError(t, json.Unmarshal(entry.Data, &data))
		canon, err := ica.CanonicalJSON(body)
		require.NoError(t, err)
		require.JSONEq(t, string(canon), string(data.Payload), "the body as Azure sent it")
		require.Equal(t, ica.BodyDedupKey(body), data.Report.DedupKey)

		n := e.store.LedgerEntries()
		r = e.post("/api/v1/alerts/azure-monitor", body)
		require.Equal(t, 200, r.status, r.raw)
		require.Equal(t, "duplicate", r.body["outcome"])
		require.Equal(t, n, e.store.LedgerEntries(), "a repeat writes nothing")
	}
	list, err := e.store.Incidents(context.Background(), ica.IncidentFilter{})
	require.NoError(t, err)
	require.Empty(t, list, "a budget notification is not an incident")
	reports, err := e.store.AzureBudgets(context.Background())
	require.NoError(t, err)
	require.Len(t, reports, 2)
}

// TestAlerts_CommonSchemaBudgets: the three CostAlerts samples share one
// alertId; each is a report of its budget (and the incident path is kept).
func TestAlerts_CommonSchemaBudgets(t *testing.T) {
	e := newAlertEnv(t)
	for _, name := range []string{"common/budget-fired.json", "common/cost-budget-actual-fired.json", "common/forecasted-budget-fired.json"} {
		r := e.post("/api/v1/alerts/azure-monitor", fixture(t, name))
		require.Equal(t, 202, r.status, r.raw)
		require.Equal(t, "recorded", r.body["budget"].(map[string]any)["outcome"], name)
	}
	r := e.post("/api/v1/alerts/azure-monitor", fixture(t, "common/cost-budget-actual-fired.json"))
	require.Equal(t, 200, r.status, "a repeat records nothing: %s", r.raw)
	require.Equal(t, "duplicate", r.body["budget"].(map[string]any)["outcome"])
	reports, err := e.store.AzureBudgets(context.Background())
	require.NoError(t, err)
	require.Len(t, reports, 2, "two budgets; the forecasted one's latest report wins")
	for _, rep := range reports {
		if rep.Name == "Test_forcasted_budget" {
			require.Equal(t, "2025-04-15T17:55:39.04Z", rep.AsOf.Format("2006-01-02T15:04:05.999Z07:00"))
		}
	}
	list, err := e.store.Incidents(context.Background(), ica.IncidentFilter{})
	require.NoError(t, err)
	require.Len(t, list, 1, "one incident per alertId, as before")
}

// TestAlerts_BadBudgetRefused: a budget notification that cannot be read is
// 400 naming the field, and nothing is written.
func TestAlerts_BadBudgetRefused(t *testing.T) {
	e := newAlertEnv(t)
	n := e.store.LedgerEntries()
	for _, c := range []struct{ name, body, field string }{
		{"legacy without a name", `{"schemaId":"AIP Budget Notification","data":{"Budget":"10","SpendingAmount":"5","Unit":"USD"}}`, "data.BudgetName"},
		{"legacy spending not an amount", `{"schemaId":"AIP Budget Notification","data":{"BudgetName":"b","Budget":"10","SpendingAmount":"lots"}}`, "data.SpendingAmount"},
		{"common spent not an amount", strings.Replace(string(fixture(t, "common/cost-budget-actual-fired.json")), `"$11,111.00"`, `"n/a"`, 1),
			"data.alertContext.AlertData.SpentAmount"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.post("/api/v1/alerts/azure-monitor", []byte(c.body))
			require.Equal(t, 400, r.status, r.raw)
			require.Equal(t, c.field, r.errField())
			require.Contains(t, r.errMessage(), c.field)
			require.Equal(t, n, e.store.LedgerEntries(), "nothing was written")
		})
	}
}

// TestAlerts_UnrecognisedPayload: an authenticated, valid JSON delivery of
// a schema ICA does not know is 202, kept in the ledger, and raises a
// warning incident naming the schema; a repeat is a duplicate. Malformed
// JSON stays 400.
func TestAlerts_UnrecognisedPayload(t *testing.T) {
	e := newAlertEnv(t)
	for _, c := range []struct{ body, schema string }{
		{`{"schemaId":"Microsoft.Insights/somethingNew","data":{"x":1}}`, "Microsoft.Insights/somethingNew"},
		{`{"hello":"world","note":"bidi \u202e"}`, "(none)"},
	} {
		r := e.post("/api/v1/alerts/azure-monitor", []byte(c.body))
		require.Equal(t, 202, r.status, r.raw)
		require.Equal(t, true, r.body["unrecognised"])
		require.Equal(t, ica.Sev2, r.body["severity"], "a warning")
		inc, err := e.store.Incident(context.Background(), r.body["incident_id"].(string))
		require.NoError(t, err)
		require.Equal(t, "unrecognised Azure Monitor payload (schemaId "+c.schema+")", inc.Rule)
		entry, err := e.store.Entry(e.store.LedgerEntries())
		require.NoError(t, err)
		var data struct {
			Payload json.RawMessage `json:"payload"`
		}
		require.NoError(t, json.Unmarshal(entry.Data, &data))
		canon, _ := ica.CanonicalJSON([]byte(c.body))
		require.JSONEq(t, string(canon), string(data.Payload), "the raw body is kept")

		n := e.store.LedgerEntries()
		r = e.post("/api/v1/alerts/azure-monitor", []byte(c.body))
		require.Equal(t, 200, r.status, r.raw)
		require.Equal(t, "duplicate", r.body["outcome"])
		require.Equal(t, n, e.store.LedgerEntries())
	}
	n := e.store.LedgerEntries()
	r := e.post("/api/v1/alerts/azure-monitor", []byte(`{"schemaId":"Microsoft.Insights/somethingNew",`))
	require.Equal(t, 400, r.status, "malformed JSON is still refused")
	require.Equal(t, n, e.store.LedgerEntries())
}
