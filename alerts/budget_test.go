package alerts

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func TestParseBudget_Fixtures(t *testing.T) {
	scope := "/subscriptions/" + testSub
	tests := []struct {
		file                      string
		name, typ, cond, currency string
		scope, rg                 string
		amount, spent, threshold  float64
		forecast                  float64 // 0: none
		fired                     string
		schema                    string
	}{
		{file: "common/budget-fired.json", name: "Test_forcasted_budget", typ: ica.ThresholdForecasted, cond: ica.AlertFired, currency: "USD",
			scope: scope, amount: 50, spent: 999.99, threshold: 50, forecast: 1111.11, fired: "2025-04-15T17:49:34.022Z", schema: ica.SchemaCommon},
		{file: "common/cost-budget-actual-fired.json", name: "Test_actual_cost_budget", typ: ica.ThresholdActual, cond: ica.AlertFired, currency: "USD",
			scope: scope, amount: 50, spent: 11111, threshold: 25, fired: "2025-04-15T17:53:32.996Z", schema: ica.SchemaCommon},
		{file: "common/forecasted-budget-fired.json", name: "Test_forcasted_budget", typ: ica.ThresholdForecasted, cond: ica.AlertFired, currency: "USD",
			scope: scope, amount: 50, spent: 999.99, threshold: 50, forecast: 1111.11, fired: "2025-04-15T17:55:39.04Z", schema: ica.SchemaCommon},
		{file: "common/cost-budget-actual-resolved.json", name: "Test_actual_cost_budget", typ: ica.ThresholdActual, cond: ica.AlertResolved, currency: "USD",
			scope: scope, amount: 50, spent: 11111, threshold: 25, fired: "2025-04-15T17:53:32.996Z", schema: ica.SchemaCommon},
		{file: "budget/legacy-budget-notification.json", name: "test-budgetName", cond: ica.AlertFired, currency: "USD",
			scope: scope + "/resourcegroups/test-rg", rg: "test-RG", amount: 10000, spent: 1111.32, threshold: 8000, schema: ica.SchemaLegacyBudget},
		{file: "budget/legacy-budget-notification-scenario.json", name: "BudgetName", cond: ica.AlertFired, currency: "USD",
			scope: "/subscriptions/<guid>", amount: 50, spent: 100, threshold: 40, schema: ica.SchemaLegacyBudget},
	}
	keys := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := MustRead(t, tt.file)
			r, err := ParseBudget(body)
			require.NoError(t, err)
			require.NotNil(t, r)
			require.Equal(t, tt.name, r.Name)
			require.Equal(t, tt.typ, r.ThresholdType)
			require.Equal(t, tt.cond, r.Condition)
			require.Equal(t, tt.currency, r.Currency)
			require.Equal(t, tt.scope, r.Scope)
			require.InDelta(t, tt.amount, r.Amount, 1e-9)
			require.InDelta(t, tt.spent, r.Spent, 1e-9)
			require.InDelta(t, tt.threshold, r.Threshold, 1e-9)
			if tt.forecast > 0 {
				require.NotNil(t, r.Forecast)
				require.InDelta(t, tt.forecast, *r.Forecast, 1e-9)
			} else {
				require.Nil(t, r.Forecast)
			}
			if tt.rg != "" {
				require.Equal(t, tt.rg, r.ResourceGroup)
			}
			require.Equal(t, tt.schema, r.Schema)
			if tt.fired != "" {
				require.Equal(t, mustTime(t, tt.fired), r.AsOf)
				require.Equal(t, budgetAlert, r.AlertID)
			} else {
				require.True(t, r.AsOf.IsZero(), "the legacy schema has no time: the store stamps it")
				require.Equal(t, ica.BodyDedupKey(body), r.DedupKey, "no alertId: the SHA-256 of the body")
			}
			require.NoError(t, r.Validate())
			for other, k := range keys {
				require.NotEqual(t, k, r.DedupKey, "%s and %s are different deliveries", other, tt.file)
			}
			keys[tt.file] = r.DedupKey
		})
	}
}

// TestParseBudget_NotABudget: every other Microsoft sample is not a budget,
// and Parse still reads the common-schema budget alerts as alerts.
func TestParseBudget_NotABudget(t *testing.T) {
	for _, name := range allTestdata(t) {
		r, err := ParseBudget(MustRead(t, name))
		require.NoError(t, err, name)
		switch name {
		case "common/budget-fired.json", "common/budget-resolved.json", "common/cost-budget-actual-fired.json",
			"common/cost-budget-actual-resolved.json", "common/forecasted-budget-fired.json", "common/forecasted-budget-resolved.json":
			require.NotNil(t, r, name)
		default:
			require.Nil(t, r, name)
		}
		MustParse(t, name)
	}
	for _, s := range []string{`[]`, `"x"`, `{"schemaId":"SomethingNew"}`, `{"schemaId":1}`,
		`{"schemaId":"azureMonitorCommonAlertSchema","data":{"essentials":{"monitoringService":"CostAlerts"},"alertContext":{"AlertCategory":"Anomaly","AlertData":{}}}}`} {
		r, err := ParseBudget([]byte(s))
		require.NoError(t, err, s)
		require.Nil(t, r, s)
	}
}

func TestParseBudget_Refusals(t *testing.T) {
	legacy := "budget/legacy-budget-notification.json"
	actual := "common/cost-budget-actual-fired.json"
	ad := func(r map[string]any) map[string]any {
		return r["data"].(map[string]any)["alertContext"].(map[string]any)["AlertData"].(map[string]any)
	}
	for _, tt := range []struct {
		name  string
		body  []byte
		code  string
		field string
	}{
		{"malformed JSON", []byte(`{"schemaId":"AIP Budget Notification","data":{`), ica.EINVALID, ""},
		{"legacy without data", []byte(`{"schemaId":"AIP Budget Notification"}`), ica.EINVALID, "data"},
		{"legacy without a name", mutate(t, legacy, func(r map[string]any) { delete(r["data"].(map[string]any), "BudgetName") }), ica.EINVALID, "data.BudgetName"},
		{"legacy spending not an amount", mutate(t, legacy, func(r map[string]any) { r["data"].(map[string]any)["SpendingAmount"] = "lots" }), ica.EINVALID, "data.SpendingAmount"},
		{"legacy without a budget", mutate(t, legacy, func(r map[string]any) { delete(r["data"].(map[string]any), "Budget") }), ica.EINVALID, "data.Budget"},
		{"legacy negative spending", mutate(t, legacy, func(r map[string]any) { r["data"].(map[string]any)["SpendingAmount"] = "-5" }), ica.EINVALID, "SpentAmount"},
		{"common without a name", mutate(t, actual, func(r map[string]any) { delete(ad(r), "BudgetName") }), ica.EINVALID, "data.alertContext.AlertData.BudgetName"},
		{"common spent not an amount", mutate(t, actual, func(r map[string]any) { ad(r)["SpentAmount"] = map[string]any{} }), ica.EINVALID, "data.alertContext.AlertData.SpentAmount"},
		{"common odd threshold type", mutate(t, actual, func(r map[string]any) { ad(r)["ThresholdType"] = "Guess" }), ica.EINVALID, "data.alertContext.AlertData.ThresholdType"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseBudget(tt.body)
			require.Nil(t, r)
			require.Error(t, err)
			require.Equal(t, tt.code, ica.ErrorCode(err))
			require.Equal(t, tt.field, ica.ErrorField(err))
		})
	}
}

func TestParse_Unrecognised(t *testing.T) {
	for body, schema := range map[string]string{
		`{"schemaId":"Microsoft.Insights/somethingNew","data":{}}`: "Microsoft.Insights/somethingNew",
		`{"hello":"world"}`: "",
		`{"schemaId":"AIP Budget Notification","data":{}}`: "AIP Budget Notification",
	} {
		a, err := Parse([]byte(body))
		require.Nil(t, a)
		var u *UnrecognisedError
		require.True(t, errors.As(err, &u), body)
		require.Equal(t, schema, u.UnrecognisedSchema())
		require.Equal(t, ica.EINVALID, ica.ErrorCode(err), "callers that read only codes see a 400 as before")
	}
	_, err := Parse([]byte(`{"schemaId":{}}`))
	var u *UnrecognisedError
	require.False(t, errors.As(err, &u), "a schemaId that is not a string is malformed")
}

func TestParseAmount(t *testing.T) {
	for in, want := range map[string]float64{"1111.32": 1111.32, "$11,111.00": 11111, "$999.99": 999.99, "8000.0": 8000, "0.8": 0.8,
		"€1.234,56": 1234.56, "1 234,5": 1234.5, "10,000": 10000, "USD 50": 50, "12,5": 12.5} {
		got, err := ica.ParseAmount(in)
		require.NoError(t, err, in)
		require.InDelta(t, want, got, 1e-9, in)
	}
	for _, in := range []string{"", "lots", "$", "1-2"} {
		_, err := ica.ParseAmount(in)
		require.Error(t, err, in)
	}
}

func FuzzParseBudget(f *testing.F) {
	for _, name := range []string{"budget/legacy-budget-notification.json", "budget/legacy-budget-notification-scenario.json",
		"common/cost-budget-actual-fired.json", "common/forecasted-budget-fired.json"} {
		f.Add(MustRead(f, name))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseBudget(body)
		if err != nil {
			if r != nil {
				t.Fatal("report and error")
			}
			if c := ica.ErrorCode(err); c != ica.EINVALID && c != ica.ETOOLARGE {
				t.Fatalf("code %q", c)
			}
			return
		}
		if r != nil {
			if err := r.Validate(); err != nil {
				t.Fatalf("parsed report does not validate: %v", err)
			}
		}
	})
}
