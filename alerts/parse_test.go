package alerts

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

const (
	testSub      = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"
	alertsMgmtID = "/subscriptions/" + testSub + "/providers/Microsoft.AlertsManagement/alerts/eeeeeeee-4444-5555-6666-ffffffffffff"
	workspaceID  = "/subscriptions/" + testSub + "/resourcegroups/test-RG/providers/microsoft.operationalinsights/workspaces/test-logAnalyticsWorkspace"
	vmID         = "/subscriptions/" + testSub + "/resourcegroups/test-RG/providers/microsoft.compute/virtualmachines/test-VM"
	appInsights  = "/subscriptions/" + testSub + "/resourcegroups/test-RG/providers/microsoft.insights/components/test-applicationInsights"
	budgetAlert  = "/subscriptions/" + testSub + "/providers/Microsoft.CostManagement/alerts/Test_Alert"
)

// MustRead reads a testdata file.
func MustRead(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(tb, err)
	return b
}

// MustParse parses a testdata file and requires success.
func MustParse(tb testing.TB, name string) *ica.Alert {
	tb.Helper()
	a, err := Parse(MustRead(tb, name))
	require.NoError(tb, err, name)
	return a
}

func mustTime(tb testing.TB, s string) time.Time {
	tb.Helper()
	t, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(tb, err)
	return t.UTC()
}

type fixtureWant struct {
	file     string
	id       string
	rule     string
	sev      string
	signal   string
	service  string
	targets  []string
	rgs      []string
	fired    string
	schema   string
	inferred bool
}

var commonFixtures = []fixtureWant{
	{file: "activity-log-administrative", id: "/subscriptions/" + testSub + "/resourceGroups/test-RG/providers/microsoft.insights/activityLogAlerts/Test_Alert",
		rule: "test-activityLogAlertRule", sev: ica.Sev4, signal: ica.SignalActivityLog, service: "Activity Log - Administrative",
		targets: []string{vmID}, rgs: []string{"test-RG"}, fired: "2025-04-15T11:26:21.386Z"},
	{file: "availability-test", id: alertsMgmtID, rule: "test-availabilityTest-test-applicationInsights", sev: ica.Sev4,
		signal: ica.SignalMetric, service: "Platform", targets: []string{appInsights}, rgs: []string{"test-RG"}, fired: "2025-04-15T17:42:34.824Z"},
	{file: "budget", id: budgetAlert, rule: "Test_forcasted_budget", sev: ica.Sev3, inferred: true, signal: ica.SignalCost,
		service: "CostAlerts", fired: "2025-04-15T17:49:34.022Z"},
	{file: "cost-budget-actual", id: budgetAlert, rule: "Test_actual_cost_budget", sev: ica.Sev3, inferred: true, signal: ica.SignalCost,
		service: "CostAlerts", fired: "2025-04-15T17:53:32.996Z"},
	{file: "forecasted-budget", id: budgetAlert, rule: "Test_forcasted_budget", sev: ica.Sev3, inferred: true, signal: ica.SignalCost,
		service: "CostAlerts", fired: "2025-04-15T17:55:39.04Z"},
	{file: "log-v1-metric-measurement", id: alertsMgmtID, rule: "test-logAlertRule-v1-metricMeasurement", sev: ica.Sev4,
		signal: ica.SignalLog, service: "Log Analytics", targets: []string{workspaceID}, rgs: []string{"test-RG"}, fired: "2025-04-15T17:57:27.967Z"},
	{file: "log-v1-number-of-results", id: alertsMgmtID, rule: "test-logAlertRule-v1-numResults", sev: ica.Sev4,
		signal: ica.SignalLog, service: "Log Analytics", targets: []string{workspaceID}, rgs: []string{"test-RG"}, fired: "2025-04-15T18:04:40.852Z"},
	{file: "log-v2", id: alertsMgmtID, rule: "test-logAlertRule-v2", sev: ica.Sev4, signal: ica.SignalLog, service: "Log Alerts V2",
		targets: []string{workspaceID}, rgs: []string{"test-RG"}, fired: "2025-04-15T18:08:03.626Z"},
	{file: "metric-dynamic-threshold", id: alertsMgmtID, rule: "test-dynamicMetricAlertRule", sev: ica.Sev4, signal: ica.SignalMetric,
		service: "Platform", targets: []string{"/subscriptions/" + testSub + "/resourcegroups/test-RG/providers/Microsoft.Storage/storageAccounts/test-storageAccount"},
		rgs: []string{"test-RG"}, fired: "2025-04-15T18:15:16.104Z"},
	{file: "metric-static-threshold", id: alertsMgmtID, rule: "test-metricAlertRule", sev: ica.Sev4, signal: ica.SignalMetric,
		service: "Platform", targets: []string{"/subscriptions/" + testSub + "/resourcegroups/test-RG/providers/microsoft.storage/storageaccounts/test-storageAccount"},
		rgs: []string{"test-RG"}, fired: "2025-04-15T18:17:12.851Z"},
	{file: "resource-health", id: alertsMgmtID, rule: "test-ResourceHealthAlertRule", sev: ica.Sev4, signal: ica.SignalActivityLog,
		service: "Resource Health", targets: []string{vmID}, rgs: []string{"test-RG"}, fired: "2025-04-15T18:19:45.304Z"},
	// Service Health spells the signal type "ActivityLog".
	{file: "service-health", id: "/subscriptions/" + testSub + "/providers/Microsoft.AlertsManagement/alerts/1234abcd5678efgh1234abcd5678efgh1234abcd5678efgh1234abcd5678efgh",
		rule: "test-ServiceHealthAlertRule", sev: ica.Sev4, signal: ica.SignalActivityLog, service: "ServiceHealth",
		targets: []string{"/subscriptions/" + testSub}, fired: "2025-04-15T18:20:36.256Z"},
	{file: "smart-detector", id: alertsMgmtID, rule: "test-SmartAlertRule", sev: ica.Sev4, signal: ica.SignalLog, service: "SmartDetector",
		targets: []string{appInsights}, rgs: []string{"test-RG"}, fired: "2021-10-28T19:09:09.1115084Z"},
	{file: "prometheus", id: "/subscriptions/" + testSub + "/providers/Microsoft.AlertsManagement/alerts/5c3e1f2a-7b9d-4e6f-a1b2-c3d4e5f6a7b8",
		rule: "KubernetesRecommended-aks-prod/KubePodCrashLooping", sev: ica.Sev1, signal: ica.SignalMetric, service: "Prometheus",
		targets: []string{"/subscriptions/" + testSub + "/resourcegroups/test-RG/providers/microsoft.monitor/accounts/test-monitorWorkspace"},
		rgs:     []string{"test-RG"}, fired: "2025-04-15T18:30:05.1234567Z"},
}

func checkAlert(t *testing.T, w fixtureWant, a *ica.Alert, cond string) {
	t.Helper()
	require.Equal(t, w.id, a.AlertID)
	require.Equal(t, w.rule, a.Rule)
	require.Equal(t, w.sev, a.Severity)
	require.Equal(t, w.inferred, a.SeverityInferred)
	require.Equal(t, cond, a.MonitorCondition)
	require.Equal(t, w.signal, a.SignalType)
	require.Equal(t, w.service, a.MonitoringService)
	require.Equal(t, w.targets, a.TargetResources)
	require.Equal(t, w.rgs, a.ResourceGroups)
	require.Equal(t, []string{testSub}, a.Subscriptions)
	require.Equal(t, mustTime(t, w.fired), a.FiredAt)
	require.NoError(t, a.Validate())
	require.NotEmpty(t, a.PortalLink)
	require.True(t, json.Valid(a.Essentials), "essentials must be JSON")
}

func TestParse_CommonFixtures(t *testing.T) {
	for _, w := range commonFixtures {
		t.Run(w.file, func(t *testing.T) {
			a := MustParse(t, "common/"+w.file+"-fired.json")
			checkAlert(t, w, a, ica.AlertFired)
			require.Equal(t, ica.SchemaCommon, a.Schema)
			require.True(t, a.ResolvedAt.IsZero())

			var ess map[string]any
			require.NoError(t, json.Unmarshal(a.Essentials, &ess))
			require.Equal(t, w.id, ess["alertId"], "Essentials is data.essentials verbatim")
		})
	}
}

func TestParse_ResolvedTwins(t *testing.T) {
	for _, w := range commonFixtures {
		t.Run(w.file, func(t *testing.T) {
			fired := MustParse(t, "common/"+w.file+"-fired.json")
			a := MustParse(t, "common/"+w.file+"-resolved.json")
			checkAlert(t, w, a, ica.AlertResolved)
			require.True(t, a.Resolved())
			require.Equal(t, mustTime(t, "2025-04-15T19:00:00Z"), a.ResolvedAt)
			require.Equal(t, fired.AlertID, a.AlertID, "resolve must match its trigger")
			require.NotEqual(t, fired.DeliveryKey(), a.DeliveryKey())
		})
	}
}

func TestParse_BudgetScope(t *testing.T) {
	a := MustParse(t, "common/cost-budget-actual-fired.json")
	require.Equal(t, "/subscriptions/"+testSub+"/providers/Microsoft.Consumption/budgets/Test_actual_cost_budget", a.RuleID)
	require.Equal(t, []string{"budgets"}, a.ConfigurationItems)
	require.Contains(t, a.Description, "Test_actual_cost_budget")
}

func TestParse_LegacyMetric(t *testing.T) {
	const ruleID = "/subscriptions/" + testSub + "/resourceGroups/test-RG/providers/microsoft.insights/metricAlerts/test-metricAlertRule"
	const target = "/subscriptions/" + testSub + "/resourceGroups/test-RG/providers/Microsoft.Storage/storageAccounts/test-storageAccount"

	a := MustParse(t, "legacy/metric-alert-static-activated.json")
	require.Equal(t, ruleID, a.AlertID)
	require.Equal(t, "test-metricAlertRule", a.Rule)
	require.Equal(t, ica.Sev3, a.Severity)
	require.Equal(t, ica.AlertFired, a.MonitorCondition)
	require.Equal(t, ica.SignalMetric, a.SignalType)
	require.Equal(t, []string{target}, a.TargetResources)
	require.Equal(t, []string{testSub}, a.Subscriptions)
	require.Equal(t, []string{"test-RG"}, a.ResourceGroups)
	require.Equal(t, mustTime(t, "2021-11-15T09:35:12.9703687Z"), a.FiredAt)
	require.Equal(t, ica.SchemaLegacyMetric, a.Schema)
	require.True(t, strings.HasPrefix(a.PortalLink, "https://portal.azure.com/#resource/"))
	require.Contains(t, string(a.Essentials), `"alertId":"`+ruleID+`"`)

	r := MustParse(t, "legacy/metric-alert-static-resolved.json")
	require.Equal(t, ica.AlertResolved, r.MonitorCondition)
	require.Equal(t, a.AlertID, r.AlertID)
	require.Equal(t, mustTime(t, "2021-11-15T09:50:12.9703687Z"), r.ResolvedAt)
}

func TestParse_LegacyLog(t *testing.T) {
	a := MustParse(t, "legacy/log-v1-fired.json")
	require.Equal(t, "legacy-log:dddd3333-ee44-5555-66ff-777777aaaaaa/test-legacyLogAlertRule@2025-04-15T18:15:00Z", a.AlertID)
	require.Equal(t, "test-legacyLogAlertRule", a.Rule)
	require.Equal(t, ica.Sev2, a.Severity, "Warning is Sev2")
	require.Equal(t, ica.AlertFired, a.MonitorCondition)
	require.Equal(t, ica.SignalLog, a.SignalType)
	require.Equal(t, "Log Analytics", a.MonitoringService)
	require.Equal(t, []string{testSub}, a.Subscriptions)
	require.Equal(t, []string{"test-computer"}, a.ConfigurationItems)
	require.Equal(t, ica.SchemaLegacyLog, a.Schema)
	require.Equal(t, mustTime(t, "2025-04-15T18:15:00Z"), a.FiredAt)

	again := MustParse(t, "legacy/log-v1-fired.json")
	require.Equal(t, a.DeliveryKey(), again.DeliveryKey(), "a retried delivery is recognisable")

	ai := MustParse(t, "legacy/log-v1-appinsights-fired.json")
	require.Equal(t, ica.Sev0, ai.Severity, "Critical is Sev0")
	require.Equal(t, "Application Insights", ai.MonitoringService)
	require.Equal(t, mustTime(t, "2025-04-15T18:05:00Z"), ai.FiredAt, "US-style time")
	require.Equal(t, "test-appInsightsLogAlertRule", ai.Rule)
}

func TestParse_LegacyActivityLog(t *testing.T) {
	a := MustParse(t, "legacy/activity-log-fired.json")
	require.Equal(t, "dddd3333-ee44-5555-66ff-777777aaaaaa", a.AlertID)
	require.Equal(t, ica.Sev3, a.Severity, "level Informational")
	require.Equal(t, ica.AlertFired, a.MonitorCondition)
	require.Equal(t, ica.SignalActivityLog, a.SignalType)
	require.Equal(t, "Activity Log - Administrative", a.MonitoringService)
	require.Equal(t, []string{"/subscriptions/" + testSub + "/resourceGroups/test-RG/providers/Microsoft.Compute/virtualMachines/test-VM"}, a.TargetResources)
	require.Equal(t, []string{"test-RG"}, a.ResourceGroups)
	require.Equal(t, mustTime(t, "2025-04-15T18:40:11.762469Z"), a.FiredAt)
	require.Equal(t, "Microsoft.Compute/virtualMachines/deallocate/action Succeeded", a.Description)
	require.Equal(t, ica.SchemaLegacyActivity, a.Schema)
}

// TestParse_KeepsBody checks that Parse neither modifies the body nor keeps
// slices that alias it (the caller stores the raw payload).
func TestParse_KeepsBody(t *testing.T) {
	for _, name := range allTestdata(t) {
		body := MustRead(t, name)
		orig := bytes.Clone(body)
		a, err := Parse(body)
		require.NoError(t, err, name)
		require.Equal(t, orig, body, name)
		ess := bytes.Clone(a.Essentials)
		for i := range body {
			body[i] = 'x'
		}
		require.Equal(t, ess, []byte(a.Essentials), name)
	}
}

func allTestdata(tb testing.TB) []string {
	tb.Helper()
	var out []string
	for _, dir := range []string{"common", "legacy"} {
		ents, err := os.ReadDir(filepath.Join("testdata", dir))
		require.NoError(tb, err)
		for _, e := range ents {
			out = append(out, dir+"/"+e.Name())
		}
	}
	require.Len(tb, out, 33)
	return out
}

// mutate loads a testdata file as a generic tree, lets f change it and
// returns the new body.
func mutate(tb testing.TB, name string, f func(root map[string]any)) []byte {
	tb.Helper()
	var root map[string]any
	require.NoError(tb, json.Unmarshal(MustRead(tb, name), &root))
	f(root)
	b, err := json.Marshal(root)
	require.NoError(tb, err)
	return b
}

func essentials(root map[string]any) map[string]any {
	return root["data"].(map[string]any)["essentials"].(map[string]any)
}

func legacyContext(root map[string]any) map[string]any {
	return root["data"].(map[string]any)["context"].(map[string]any)
}

func TestParse_Lenient(t *testing.T) {
	const metric = "common/metric-static-threshold-fired.json"
	cases := []struct {
		name  string
		body  []byte
		check func(t *testing.T, a *ica.Alert)
	}{
		{"numbers as numbers", mutate(t, metric, func(r map[string]any) {
			essentials(r)["essentialsVersion"] = 1
			essentials(r)["alertContextVersion"] = 1.1
			essentials(r)["alertRule"] = 42
		}), func(t *testing.T, a *ica.Alert) { require.Equal(t, "42", a.Rule) }},
		{"severity as a number", mutate(t, metric, func(r map[string]any) { essentials(r)["severity"] = 1 }),
			func(t *testing.T, a *ica.Alert) { require.Equal(t, ica.Sev1, a.Severity) }},
		{"severity lower case", mutate(t, metric, func(r map[string]any) { essentials(r)["severity"] = "sev0" }),
			func(t *testing.T, a *ica.Alert) { require.Equal(t, ica.Sev0, a.Severity) }},
		{"condition lower case", mutate(t, metric, func(r map[string]any) { essentials(r)["monitorCondition"] = "resolved" }),
			func(t *testing.T, a *ica.Alert) { require.Equal(t, ica.AlertResolved, a.MonitorCondition) }},
		{"targets as JSON in a string", mutate(t, metric, func(r map[string]any) {
			essentials(r)["alertTargetIDs"] = `["/subscriptions/s1/resourceGroups/RG-One/providers/x/y/z"]`
		}), func(t *testing.T, a *ica.Alert) {
			require.Equal(t, []string{"/subscriptions/s1/resourceGroups/RG-One/providers/x/y/z"}, a.TargetResources)
			require.Equal(t, []string{"RG-One"}, a.ResourceGroups)
			require.Equal(t, []string{"s1", testSub}, a.Subscriptions)
		}},
		{"targets with single quotes", mutate(t, metric, func(r map[string]any) {
			essentials(r)["alertTargetIDs"] = `['/subscriptions/s2']`
		}), func(t *testing.T, a *ica.Alert) { require.Equal(t, []string{"/subscriptions/s2"}, a.TargetResources) }},
		{"one target as a string", mutate(t, metric, func(r map[string]any) { essentials(r)["alertTargetIDs"] = "/subscriptions/s3" }),
			func(t *testing.T, a *ica.Alert) { require.Equal(t, []string{"/subscriptions/s3"}, a.TargetResources) }},
		{"essentials as JSON in a string", mutate(t, metric, func(r map[string]any) {
			b, _ := json.Marshal(essentials(r))
			r["data"].(map[string]any)["essentials"] = string(b)
		}), func(t *testing.T, a *ica.Alert) {
			require.Equal(t, alertsMgmtID, a.AlertID)
			require.Equal(t, byte('{'), a.Essentials[0], "Essentials is the object, not the string")
		}},
		{"time without zone", mutate(t, metric, func(r map[string]any) { essentials(r)["firedDateTime"] = "2025-04-15T18:17:12.8512345" }),
			func(t *testing.T, a *ica.Alert) {
				require.Equal(t, mustTime(t, "2025-04-15T18:17:12.8512345Z"), a.FiredAt)
			}},
		{"US-style time", mutate(t, metric, func(r map[string]any) { essentials(r)["firedDateTime"] = "3/22/2019 1:36:31 PM" }),
			func(t *testing.T, a *ica.Alert) { require.Equal(t, mustTime(t, "2019-03-22T13:36:31Z"), a.FiredAt) }},
		{"key case differs", mutate(t, metric, func(r map[string]any) {
			e := essentials(r)
			e["AlertId"], e["alertId"] = e["alertId"], nil
			delete(e, "alertId")
		}), func(t *testing.T, a *ica.Alert) { require.Equal(t, alertsMgmtID, a.AlertID) }},
		{"schemaId case differs", mutate(t, metric, func(r map[string]any) { r["schemaId"] = "AzureMonitorCommonAlertSchema" }),
			func(t *testing.T, a *ica.Alert) { require.Equal(t, ica.SchemaCommon, a.Schema) }},
		{"Fired ignores resolvedDateTime", mutate(t, metric, func(r map[string]any) { essentials(r)["resolvedDateTime"] = "2025-04-15T19:00:00Z" }),
			func(t *testing.T, a *ica.Alert) { require.True(t, a.ResolvedAt.IsZero()) }},
		{"investigationLink is the portal link", mutate(t, metric, func(r map[string]any) {
			essentials(r)["investigationLink"] = "https://portal.azure.com/#view/x"
		}), func(t *testing.T, a *ica.Alert) { require.Equal(t, "https://portal.azure.com/#view/x", a.PortalLink) }},
		{"legacy severity as a number", mutate(t, "legacy/metric-alert-static-activated.json", func(r map[string]any) {
			legacyContext(r)["severity"] = 2
		}), func(t *testing.T, a *ica.Alert) { require.Equal(t, ica.Sev2, a.Severity) }},
		{"legacy severity as a string", mutate(t, "legacy/metric-alert-static-activated.json", func(r map[string]any) {
			legacyContext(r)["severity"] = "0"
		}), func(t *testing.T, a *ica.Alert) { require.Equal(t, ica.Sev0, a.Severity) }},
		{"classic metric alert without schemaId or severity", func() []byte {
			return mutate(t, "legacy/metric-alert-static-activated.json", func(r map[string]any) {
				data := r["data"].(map[string]any)
				delete(r, "schemaId")
				delete(r, "data")
				delete(data["context"].(map[string]any), "severity")
				for k, v := range data {
					r[k] = v
				}
			})
		}(), func(t *testing.T, a *ica.Alert) {
			require.Equal(t, ica.Sev3, a.Severity)
			require.True(t, a.SeverityInferred)
			require.Equal(t, ica.SchemaLegacyMetric, a.Schema)
		}},
		{"legacy log with numbers as strings", mutate(t, "legacy/log-v1-fired.json", func(r map[string]any) {
			r["ResultCount"] = "1"
			r["Severity"] = "3"
		}), func(t *testing.T, a *ica.Alert) { require.Equal(t, ica.Sev3, a.Severity) }},
		{"activity log without level", mutate(t, "legacy/activity-log-fired.json", func(r map[string]any) {
			delete(legacyContext(r)["activityLog"].(map[string]any), "level")
		}), func(t *testing.T, a *ica.Alert) {
			require.Equal(t, ica.Sev3, a.Severity)
			require.True(t, a.SeverityInferred)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := Parse(c.body)
			require.NoError(t, err)
			require.NoError(t, a.Validate())
			c.check(t, a)
		})
	}
}

func TestParse_Invalid(t *testing.T) {
	const metric = "common/metric-static-threshold-fired.json"
	const legacy = "legacy/metric-alert-static-activated.json"
	cases := []struct {
		name  string
		body  []byte
		code  string
		field string
	}{
		{"malformed JSON", []byte(`{"schemaId": "azureMonitorCommonAlertSchema", "data": {`), ica.EINVALID, ""},
		{"not JSON", []byte(`alert!`), ica.EINVALID, ""},
		{"empty body", nil, ica.EINVALID, ""},
		{"trailing data", append(MustRead(t, metric), []byte(" {}")...), ica.EINVALID, ""},
		{"top level is an array", []byte(`[1,2]`), ica.EINVALID, ""},
		{"top level is null", []byte(`null`), ica.EINVALID, ""},
		{"unknown schemaId", mutate(t, metric, func(r map[string]any) { r["schemaId"] = "Microsoft.Insights/somethingNew" }), ica.EINVALID, "schemaId"},
		{"schemaId not a string", mutate(t, metric, func(r map[string]any) { r["schemaId"] = map[string]any{} }), ica.EINVALID, "schemaId"},
		{"no schemaId, not legacy", []byte(`{"hello": "world"}`), ica.EINVALID, "schemaId"},
		{"no data", []byte(`{"schemaId": "azureMonitorCommonAlertSchema"}`), ica.EINVALID, "data"},
		{"essentials is an array", mutate(t, metric, func(r map[string]any) { r["data"].(map[string]any)["essentials"] = []any{1} }), ica.EINVALID, "data.essentials"},
		{"missing alertId", mutate(t, metric, func(r map[string]any) { delete(essentials(r), "alertId") }), ica.EINVALID, "data.essentials.alertId"},
		{"blank alertId", mutate(t, metric, func(r map[string]any) { essentials(r)["alertId"] = "  " }), ica.EINVALID, "data.essentials.alertId"},
		{"alertId is an object", mutate(t, metric, func(r map[string]any) { essentials(r)["alertId"] = map[string]any{"id": "x"} }), ica.EINVALID, "data.essentials.alertId"},
		{"missing severity", mutate(t, metric, func(r map[string]any) { delete(essentials(r), "severity") }), ica.EINVALID, "data.essentials.severity"},
		{"null severity outside budgets", mutate(t, metric, func(r map[string]any) { essentials(r)["severity"] = nil }), ica.EINVALID, "data.essentials.severity"},
		{"severity out of range", mutate(t, metric, func(r map[string]any) { essentials(r)["severity"] = "Sev9" }), ica.EINVALID, "data.essentials.severity"},
		{"severity is a list", mutate(t, metric, func(r map[string]any) { essentials(r)["severity"] = []any{"Sev1"} }), ica.EINVALID, "data.essentials.severity"},
		{"missing monitorCondition", mutate(t, metric, func(r map[string]any) { delete(essentials(r), "monitorCondition") }), ica.EINVALID, "data.essentials.monitorCondition"},
		{"unknown monitorCondition", mutate(t, metric, func(r map[string]any) { essentials(r)["monitorCondition"] = "Maybe" }), ica.EINVALID, "data.essentials.monitorCondition"},
		{"missing firedDateTime", mutate(t, metric, func(r map[string]any) { delete(essentials(r), "firedDateTime") }), ica.EINVALID, "data.essentials.firedDateTime"},
		{"bad firedDateTime", mutate(t, metric, func(r map[string]any) { essentials(r)["firedDateTime"] = "yesterday" }), ica.EINVALID, "data.essentials.firedDateTime"},
		{"firedDateTime is a bool", mutate(t, metric, func(r map[string]any) { essentials(r)["firedDateTime"] = true }), ica.EINVALID, "data.essentials.firedDateTime"},
		{"bad resolvedDateTime", mutate(t, metric, func(r map[string]any) { essentials(r)["resolvedDateTime"] = "soon" }), ica.EINVALID, "data.essentials.resolvedDateTime"},
		{"targets is an object", mutate(t, metric, func(r map[string]any) { essentials(r)["alertTargetIDs"] = map[string]any{} }), ica.EINVALID, "data.essentials.alertTargetIDs"},
		{"target is an object", mutate(t, metric, func(r map[string]any) { essentials(r)["alertTargetIDs"] = []any{map[string]any{}} }), ica.EINVALID, "data.essentials.alertTargetIDs[0]"},
		{"budget alertContext is a number", mutate(t, "common/budget-fired.json", func(r map[string]any) { r["data"].(map[string]any)["alertContext"] = 7 }), ica.EINVALID, "data.alertContext"},
		{"legacy metric without id", mutate(t, legacy, func(r map[string]any) { delete(legacyContext(r), "id") }), ica.EINVALID, "data.context.id"},
		{"legacy metric without severity", mutate(t, legacy, func(r map[string]any) { delete(legacyContext(r), "severity") }), ica.EINVALID, "data.context.severity"},
		{"legacy metric bad status", mutate(t, legacy, func(r map[string]any) { r["data"].(map[string]any)["status"] = "Sleeping" }), ica.EINVALID, "data.status"},
		{"legacy metric without timestamp", mutate(t, legacy, func(r map[string]any) { delete(legacyContext(r), "timestamp") }), ica.EINVALID, "data.context.timestamp"},
		{"legacy metric without context", mutate(t, legacy, func(r map[string]any) { delete(r["data"].(map[string]any), "context") }), ica.EINVALID, "data.context"},
		{"legacy log without rule", mutate(t, "legacy/log-v1-appinsights-fired.json", func(r map[string]any) {
			r["data"].(map[string]any)["AlertRuleName"] = ""
		}), ica.EINVALID, "data.AlertRuleName"},
		{"legacy log without window end", mutate(t, "legacy/log-v1-fired.json", func(r map[string]any) { delete(r, "SearchIntervalEndtimeUtc") }), ica.EINVALID, "SearchIntervalEndtimeUtc"},
		{"legacy log odd severity", mutate(t, "legacy/log-v1-fired.json", func(r map[string]any) { r["Severity"] = "Apocalyptic" }), ica.EINVALID, "Severity"},
		{"activity log without event id", mutate(t, "legacy/activity-log-fired.json", func(r map[string]any) {
			delete(legacyContext(r)["activityLog"].(map[string]any), "eventDataId")
		}), ica.EINVALID, "data.context.activityLog.eventDataId"},
		{"activity log without times", mutate(t, "legacy/activity-log-fired.json", func(r map[string]any) {
			al := legacyContext(r)["activityLog"].(map[string]any)
			delete(al, "eventTimestamp")
			delete(al, "submissionTimestamp")
		}), ica.EINVALID, "data.context.activityLog.eventTimestamp"},
		{"too large", append([]byte(`{"schemaId":"`), bytes.Repeat([]byte("a"), MaxPayloadSize)...), ica.ETOOLARGE, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := Parse(c.body)
			require.Error(t, err)
			require.Nil(t, a)
			require.Equal(t, c.code, ica.ErrorCode(err), err.Error())
			require.Equal(t, c.field, ica.ErrorField(err), err.Error())
			require.NotEqual(t, "internal error", ica.ErrorMessage(err))
		})
	}
}
