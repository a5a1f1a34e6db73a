package alerts

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/ica-governance/ica"
)

func ptr[T any](v T) *T { return &v }

func alertWith(sev, sub, rg, rule string) *ica.Alert {
	a := &ica.Alert{AlertID: "a1", Severity: sev, Rule: rule, MonitorCondition: ica.AlertFired}
	if sub != "" {
		a.Subscriptions = []string{sub}
	}
	if rg != "" {
		a.ResourceGroups = []string{rg}
	}
	return a
}

func TestRoutingConfig_Route_Defaults(t *testing.T) {
	c := &RoutingConfig{IncidentChannel: "incidents"}
	cases := map[string]Route{
		ica.Sev0: {PagerDuty: true, Channel: "incidents"},
		ica.Sev1: {PagerDuty: true, Channel: "incidents"},
		ica.Sev2: {Channel: "incidents"},
		ica.Sev3: {Channel: "incidents", Quiet: true},
		ica.Sev4: {Channel: "incidents", Quiet: true},
		"Sev7":   {Channel: "incidents"}, // unknown: visible, not paging
		"":       {Channel: "incidents"},
	}
	for sev, want := range cases {
		require.Equal(t, want, c.Route(alertWith(sev, "", "", "")), sev)
	}

	var nilCfg *RoutingConfig
	require.Equal(t, Route{PagerDuty: true}, nilCfg.Route(alertWith(ica.Sev0, "", "", "")))
	require.NoError(t, nilCfg.Validate())
	require.Nil(t, nilCfg.Match(alertWith(ica.Sev0, "", "", "")))
}

func TestRoutingConfig_Route_Fixtures(t *testing.T) {
	c := &RoutingConfig{IncidentChannel: "incidents"}
	require.Equal(t, Route{PagerDuty: true, Channel: "incidents"}, c.Route(MustParse(t, "common/prometheus-fired.json")))
	require.Equal(t, Route{Channel: "incidents", Quiet: true}, c.Route(MustParse(t, "common/budget-fired.json")))
	require.Equal(t, Route{Channel: "incidents"}, c.Route(MustParse(t, "legacy/log-v1-fired.json")))
}

func TestRoutingConfig_Route_Overrides(t *testing.T) {
	c := &RoutingConfig{
		IncidentChannel: "incidents",
		Severity:        map[string]Route{"sev2": {Channel: "ops-warnings"}},
		Overrides: []RouteOverride{
			{Name: "sandbox", ResourceGroup: "RG-Sandbox", Action: "drop"},
			{Name: "payments", Rule: "payments-*", PagerDuty: ptr(true), Quiet: ptr(false), Channel: "payments"},
			{Name: "dev sub", Subscription: "DDDD-1111", PagerDuty: ptr(false)},
			{Name: "both", Subscription: "eeee-2222", ResourceGroup: "rg-data", Channel: "data"},
			{Name: "shadowed", ResourceGroup: "rg-sandbox", Channel: "never"},
			{Name: "budget", Rule: "Test_actual_cost_budget", PagerDuty: ptr(true)},
		},
	}
	require.NoError(t, c.Validate())
	cases := []struct {
		name string
		a    *ica.Alert
		want Route
	}{
		{"resource group drop, case-insensitive", alertWith(ica.Sev0, "s", "rg-sandbox", "x"), Route{Drop: true}},
		{"first match wins", alertWith(ica.Sev1, "dddd-1111", "rg-SANDBOX", "payments-api"), Route{Drop: true}},
		{"rule glob pages a Sev3", alertWith(ica.Sev3, "s", "rg", "Payments-API-latency"), Route{PagerDuty: true, Channel: "payments"}},
		{"rule glob needs its prefix", alertWith(ica.Sev3, "s", "rg", "api-payments-x"), Route{Channel: "incidents", Quiet: true}},
		{"subscription stops paging, keeps the rest", alertWith(ica.Sev0, "dddd-1111", "rg", "x"), Route{Channel: "incidents"}},
		{"every criterion must match", alertWith(ica.Sev2, "eeee-2222", "rg-other", "x"), Route{Channel: "ops-warnings"}},
		{"all criteria match", alertWith(ica.Sev2, "EEEE-2222", "RG-Data", "x"), Route{Channel: "data"}},
		{"severity table entry replaces the default", alertWith(ica.Sev2, "s", "rg", "x"), Route{Channel: "ops-warnings"}},
		{"budget by name pages", MustParse(t, "common/cost-budget-actual-fired.json"), Route{PagerDuty: true, Channel: "incidents", Quiet: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, c.Route(tc.a))
		})
	}
	require.Equal(t, "sandbox", c.Match(alertWith(ica.Sev0, "s", "rg-sandbox", "x")).Name)
}

func TestRoutingConfig_Route_SeverityDrop(t *testing.T) {
	c := &RoutingConfig{Severity: map[string]Route{ica.Sev4: {Drop: true, Channel: "x"}}}
	require.Equal(t, Route{Drop: true}, c.Route(alertWith(ica.Sev4, "", "", "")))
	require.Equal(t, Route{Quiet: true}, c.Route(alertWith(ica.Sev3, "", "", "")))
}

func TestRoutingConfig_YAML(t *testing.T) {
	const doc = `
incident_channel: incidents
severity:
  Sev2: {channel: ops-warnings}
  Sev4: {drop: true}
overrides:
  - name: sandbox is noise
    resource_group: rg-sandbox
    action: drop
  - name: payments always pages
    rule: "payments-*"
    pagerduty: true
  - name: quiet dev
    subscription: 11111111-2222-3333-4444-555555555555
    pagerduty: false
    quiet: true
`
	var c RoutingConfig
	require.NoError(t, yaml.Unmarshal([]byte(doc), &c))
	require.NoError(t, c.Validate())
	require.Len(t, c.Overrides, 3)
	require.Equal(t, Route{Drop: true}, c.Route(alertWith(ica.Sev1, "", "RG-SANDBOX", "")))
	require.Equal(t, Route{PagerDuty: true, Channel: "ops-warnings"}, c.Route(alertWith(ica.Sev2, "", "", "payments-db")))
	require.Equal(t, Route{Channel: "incidents", Quiet: true}, c.Route(alertWith(ica.Sev0, "11111111-2222-3333-4444-555555555555", "", "")))
	require.Equal(t, Route{Drop: true}, c.Route(alertWith(ica.Sev4, "", "", "")))
}

func TestRoutingConfig_Validate(t *testing.T) {
	cases := []struct {
		name  string
		c     RoutingConfig
		field string
	}{
		{"bad severity key", RoutingConfig{Severity: map[string]Route{"Sev5": {}}}, "alerts.routing.severity"},
		{"override matches nothing", RoutingConfig{Overrides: []RouteOverride{{Name: "x", Action: "drop"}}}, "alerts.routing.overrides[0]"},
		{"unknown action", RoutingConfig{Overrides: []RouteOverride{{Rule: "r"}, {Rule: "r", Action: "page"}}}, "alerts.routing.overrides[1].action"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			require.Error(t, err)
			require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
			require.Equal(t, tc.field, ica.ErrorField(err))
		})
	}
	require.NoError(t, (&RoutingConfig{Overrides: []RouteOverride{{Rule: "r", Action: "DROP"}}}).Validate())
}

func TestGlobFold(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"abc", "ABC", true},
		{"abc", "abcd", false},
		{"a*", "a", true},
		{"*", "", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"a*b*b", "ab", false},
		{"a*b*b", "abb", true},
		{"*/KubePod*", "KubernetesRecommended-aks-prod/KubePodCrashLooping", true},
		{"a*a", "a", false},
	}
	for _, c := range cases {
		require.Equal(t, c.want, globFold(c.pattern, c.s), "%q %q", c.pattern, c.s)
	}
}
