// Package alerts turns Azure Monitor alert webhooks into ica.Alert values,
// decides where each alert goes (routing by severity with overrides), and
// delivers PagerDuty Events API v2 events from the outbox.
package alerts

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Schema ids Azure Monitor puts in "schemaId" (compared case-insensitively).
const (
	SchemaIDCommon      = "azureMonitorCommonAlertSchema"
	SchemaIDMetricAlert = "AzureMonitorMetricAlert"
	SchemaIDActivityLog = "Microsoft.Insights/activityLogs"
	SchemaIDLogAlert    = "Microsoft.Insights/LogAlert"
)

// Monitoring services that need special handling.
const (
	MonitoringServiceCost       = "CostAlerts" // budgets: no severity, rule or signal type
	MonitoringServicePrometheus = "Prometheus" // Azure Monitor managed Prometheus rule groups
)

// MaxPayloadSize bounds what Parse reads. Azure caps common-schema alerts at
// 256 KB; the margin is for legacy log alerts that embed search results.
const MaxPayloadSize = 1 << 20

const (
	// defaultInferredSev is the severity of alerts that carry none.
	defaultInferredSev = ica.Sev3
	// Portal deep links built when a payload has no link of its own.
	azurePortalAlertPrefix = "https://portal.azure.com/#blade/Microsoft_Azure_Monitoring/AlertDetailsTemplateBlade/alertId/"
	azurePortalResource    = "https://portal.azure.com/#resource"
)

// Parse reads one Azure Monitor webhook body: the Common Alert Schema (every
// alert kind, including budgets and managed Prometheus), the legacy metric
// alert schema, the legacy log alert schema (with or without a schemaId) and
// the legacy activity log schema. It never modifies body and keeps nothing
// that aliases it. Errors are *ica.Error with code EINVALID naming the JSON
// path at fault (ETOOLARGE above MaxPayloadSize); a JSON object of a schema
// it does not know is an *UnrecognisedError (also EINVALID).
func Parse(body []byte) (*ica.Alert, error) {
	if len(body) > MaxPayloadSize {
		return nil, ica.Errorf(ica.ETOOLARGE, "alert payload is larger than %d bytes", MaxPayloadSize)
	}
	tree, err := decodeTree(body)
	if err != nil {
		return nil, err
	}
	root, ok := tree.(object)
	if !ok {
		return nil, ica.Errorf(ica.EINVALID, "alert payload must be a JSON object")
	}
	schemaID, err := getString(root, "", "schemaId")
	if err != nil {
		return nil, err
	}
	var a *ica.Alert
	switch {
	case strings.EqualFold(schemaID, SchemaIDCommon):
		a, err = parseCommon(root, body)
	case strings.EqualFold(schemaID, SchemaIDMetricAlert):
		a, err = parseLegacyMetric(root, "data", false)
	case strings.EqualFold(schemaID, SchemaIDActivityLog):
		a, err = parseLegacyActivity(root)
	case strings.EqualFold(schemaID, SchemaIDLogAlert):
		a, err = parseLegacyLogData(root)
	case strings.EqualFold(schemaID, SchemaIDBudget):
		return nil, unrecognised(schemaID, "a budget notification is cost data, not an alert (ParseBudget reads it)")
	case schemaID == "":
		a, err = parseSchemaless(root)
	default:
		return nil, unrecognised(schemaID, fmt.Sprintf("schemaId %q is not one ICA understands (use the common alert schema)", clip(schemaID, 80)))
	}
	if err != nil {
		return nil, err
	}
	finish(a)
	return a, nil
}

// parseSchemaless recognises the payloads Azure sends without a schemaId:
// legacy log alerts (top-level AlertRuleName) and classic metric alerts
// (top-level status and context).
func parseSchemaless(root object) (*ica.Alert, error) {
	if _, ok := lookup(root, "AlertRuleName"); ok {
		return parseLegacyLog(root, "")
	}
	_, hasStatus := lookup(root, "status")
	_, hasContext := lookup(root, "context")
	if hasStatus && hasContext {
		return parseLegacyMetric(root, "", true)
	}
	return nil, unrecognised("", "schemaId is missing and the payload is not a known legacy alert")
}

// parseCommon reads the Common Alert Schema.
func parseCommon(root object, body []byte) (*ica.Alert, error) {
	data, err := requireObject(root, "", "data")
	if err != nil {
		return nil, err
	}
	const ep = "data.essentials"
	ess, err := requireObject(data, "data", "essentials")
	if err != nil {
		return nil, err
	}
	a := &ica.Alert{Schema: ica.SchemaCommon}
	if a.AlertID, err = requireString(ess, ep, "alertId"); err != nil {
		return nil, err
	}
	var sev, cond, signal string
	for _, f := range []struct {
		dst *string
		key string
	}{
		{&a.Rule, "alertRule"}, {&a.RuleID, "alertRuleId"}, {&sev, "severity"},
		{&signal, "signalType"}, {&cond, "monitorCondition"},
		{&a.MonitoringService, "monitoringService"}, {&a.Description, "description"},
		{&a.PortalLink, "investigationLink"},
	} {
		if *f.dst, err = getString(ess, ep, f.key); err != nil {
			return nil, err
		}
	}
	if a.MonitorCondition, err = monitorCondition(cond, ep+".monitorCondition"); err != nil {
		return nil, err
	}
	isCost := strings.EqualFold(a.MonitoringService, MonitoringServiceCost)
	if sev == "" && isCost {
		// Budget alerts carry "severity": null. ICA treats them as
		// informational; routing overrides can page on them by rule name.
		a.Severity, a.SeverityInferred = defaultInferredSev, true
	} else if a.Severity, err = ica.ParseSeverity(ep+".severity", sev); err != nil {
		return nil, err
	}
	if a.FiredAt, err = requireTime(ess, ep, "firedDateTime"); err != nil {
		return nil, err
	}
	if a.ResolvedAt, err = getTime(ess, ep, "resolvedDateTime"); err != nil {
		return nil, err
	}
	if a.MonitorCondition == ica.AlertFired {
		a.ResolvedAt = time.Time{}
	}
	if a.TargetResources, err = getStrings(ess, ep, "alertTargetIDs"); err != nil {
		return nil, err
	}
	if a.ConfigurationItems, err = getStrings(ess, ep, "configurationItems"); err != nil {
		return nil, err
	}
	a.SignalType = normalizeSignal(signal)
	if rg, err := getString(ess, ep, "resourceGroupName"); err == nil && rg != "" {
		a.ResourceGroups = append(a.ResourceGroups, rg)
	}
	if isCost {
		if err := budgetDetails(a, data); err != nil {
			return nil, err
		}
	}
	a.Essentials = rawEssentials(body)
	return a, nil
}

// budgetDetails fills what budget alerts leave null in the essentials: the
// rule (the budget's name), the signal type and the subscription in scope.
func budgetDetails(a *ica.Alert, data object) error {
	if a.SignalType == "" {
		a.SignalType = ica.SignalCost
	}
	ctx, err := getObject(data, "data", "alertContext")
	if err != nil || ctx == nil {
		return err
	}
	const p = "data.alertContext.AlertData"
	ad, err := getObject(ctx, "data.alertContext", "AlertData")
	if err != nil || ad == nil {
		return err
	}
	if a.Rule == "" {
		if a.Rule, err = getString(ad, p, "BudgetName"); err != nil {
			return err
		}
	}
	if a.RuleID == "" {
		if a.RuleID, err = getString(ad, p, "BudgetId"); err != nil {
			return err
		}
	}
	scope, err := getString(ad, p, "Scope")
	if err != nil {
		return err
	}
	if sub, rg := splitResourceID(scope); sub != "" {
		a.Subscriptions = append(a.Subscriptions, sub)
		if rg != "" {
			a.ResourceGroups = append(a.ResourceGroups, rg)
		}
	}
	return nil
}

// rawEssentials copies data.essentials out of the body verbatim.
func rawEssentials(body []byte) json.RawMessage {
	var env struct {
		Data struct {
			Essentials json.RawMessage `json:"essentials"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &env) != nil {
		return nil
	}
	raw := env.Data.Essentials // json.RawMessage.UnmarshalJSON copies
	var inner string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &inner) == nil && json.Valid([]byte(inner)) {
		return json.RawMessage(inner) // essentials sent as JSON in a string
	}
	return raw
}

// parseLegacyMetric reads the legacy metric alert schema ("schemaId":
// "AzureMonitorMetricAlert", fields under data) and the classic one (no
// schemaId, fields at the top level, no severity).
func parseLegacyMetric(root object, dataKey string, classic bool) (*ica.Alert, error) {
	data := root
	if dataKey != "" {
		var err error
		if data, err = requireObject(root, "", dataKey); err != nil {
			return nil, err
		}
	}
	cp := join(dataKey, "context")
	ctx, err := requireObject(data, dataKey, "context")
	if err != nil {
		return nil, err
	}
	a := &ica.Alert{Schema: ica.SchemaLegacyMetric, SignalType: ica.SignalMetric, MonitoringService: "Platform"}
	if a.AlertID, err = requireString(ctx, cp, "id"); err != nil {
		return nil, err
	}
	a.RuleID = a.AlertID
	status, err := getString(data, dataKey, "status")
	if err != nil {
		return nil, err
	}
	if a.MonitorCondition, err = monitorCondition(status, join(dataKey, "status")); err != nil {
		return nil, err
	}
	sev, err := getString(ctx, cp, "severity")
	if err != nil {
		return nil, err
	}
	if sev == "" && classic {
		a.Severity, a.SeverityInferred = defaultInferredSev, true
	} else if a.Severity, err = ica.ParseSeverity(cp+".severity", sev); err != nil {
		return nil, err
	}
	// The legacy schema carries only the time of the change.
	ts, err := requireTime(ctx, cp, "timestamp")
	if err != nil {
		return nil, err
	}
	a.FiredAt = ts
	if a.MonitorCondition == ica.AlertResolved {
		a.ResolvedAt = ts
	}
	var sub, rg, rid, name string
	for _, f := range []struct {
		dst *string
		key string
	}{
		{&a.Rule, "name"}, {&a.Description, "description"}, {&a.PortalLink, "portalLink"},
		{&sub, "subscriptionId"}, {&rg, "resourceGroupName"}, {&rid, "resourceId"}, {&name, "resourceName"},
	} {
		if *f.dst, err = getString(ctx, cp, f.key); err != nil {
			return nil, err
		}
	}
	if rid != "" {
		a.TargetResources = []string{rid}
	}
	if name != "" {
		a.ConfigurationItems = []string{name}
	}
	if sub != "" {
		a.Subscriptions = []string{sub}
	}
	if rg != "" {
		a.ResourceGroups = []string{rg}
	}
	a.Essentials = synthEssentials(a)
	return a, nil
}

// parseLegacyLogData reads the Application Insights flavour of the legacy log
// alert: "schemaId": "Microsoft.Insights/LogAlert" with the fields under data.
func parseLegacyLogData(root object) (*ica.Alert, error) {
	data, err := requireObject(root, "", "data")
	if err != nil {
		return nil, err
	}
	return parseLegacyLog(data, "data")
}

// parseLegacyLog reads a legacy log alert (Log Analytics alert API). These
// alerts have no id and never resolve: each evaluation window that matched is
// its own alert, so the id is built from the workspace, the rule and the end
// of the window, which stays the same when Azure retries the delivery.
func parseLegacyLog(m object, path string) (*ica.Alert, error) {
	a := &ica.Alert{Schema: ica.SchemaLegacyLog, SignalType: ica.SignalLog, MonitorCondition: ica.AlertFired,
		MonitoringService: "Log Analytics"}
	var err error
	if a.Rule, err = requireString(m, path, "AlertRuleName"); err != nil {
		return nil, err
	}
	var sev, sub, ws, app string
	for _, f := range []struct {
		dst *string
		key string
	}{
		{&sev, "Severity"}, {&sub, "SubscriptionId"}, {&ws, "WorkspaceId"}, {&app, "ApplicationId"},
		{&a.Description, "Description"}, {&a.PortalLink, "LinkToSearchResults"},
	} {
		if *f.dst, err = getString(m, path, f.key); err != nil {
			return nil, err
		}
	}
	if a.Severity, err = severityFromLevel(join(path, "Severity"), sev); err != nil {
		return nil, err
	}
	if a.FiredAt, err = requireTime(m, path, "SearchIntervalEndtimeUtc"); err != nil {
		return nil, err
	}
	if a.ConfigurationItems, err = getStrings(m, path, "AffectedConfigurationItems"); err != nil {
		return nil, err
	}
	scope := ws
	if app != "" {
		a.MonitoringService, scope = "Application Insights", app
	}
	if scope == "" {
		scope = sub
	}
	a.AlertID = "legacy-log:" + scope + "/" + a.Rule + "@" + a.FiredAt.Format(time.RFC3339)
	if sub != "" {
		a.Subscriptions = []string{sub}
	}
	a.Essentials = synthEssentials(a)
	return a, nil
}

// parseLegacyActivity reads the classic activity log alert
// ("schemaId": "Microsoft.Insights/activityLogs"). Its payload names no rule
// and no severity; the event's id is the alert id and its level the severity.
func parseLegacyActivity(root object) (*ica.Alert, error) {
	data, err := requireObject(root, "", "data")
	if err != nil {
		return nil, err
	}
	ctx, err := requireObject(data, "data", "context")
	if err != nil {
		return nil, err
	}
	const p = "data.context.activityLog"
	al, err := requireObject(ctx, "data.context", "activityLog")
	if err != nil {
		return nil, err
	}
	a := &ica.Alert{Schema: ica.SchemaLegacyActivity, SignalType: ica.SignalActivityLog}
	if a.AlertID, err = requireString(al, p, "eventDataId"); err != nil {
		return nil, err
	}
	status, err := getString(data, "data", "status")
	if err != nil {
		return nil, err
	}
	if status == "" {
		status = "Activated" // "always set to Activated" for activity log alerts
	}
	if a.MonitorCondition, err = monitorCondition(status, "data.status"); err != nil {
		return nil, err
	}
	var level, source, op, opStatus, desc, rid, rg, sub string
	for _, f := range []struct {
		dst *string
		key string
	}{
		{&level, "level"}, {&source, "eventSource"}, {&op, "operationName"}, {&opStatus, "status"},
		{&desc, "description"}, {&rid, "resourceId"}, {&rg, "resourceGroupName"}, {&sub, "subscriptionId"},
	} {
		if *f.dst, err = getString(al, p, f.key); err != nil {
			return nil, err
		}
	}
	if level == "" {
		a.Severity, a.SeverityInferred = defaultInferredSev, true
	} else if a.Severity, err = severityFromLevel(p+".level", level); err != nil {
		return nil, err
	}
	if a.FiredAt, err = getTime(al, p, "eventTimestamp"); err != nil {
		return nil, err
	}
	if a.FiredAt.IsZero() {
		if a.FiredAt, err = requireTime(al, p, "submissionTimestamp"); err != nil {
			return nil, fieldRequired(p + ".eventTimestamp")
		}
	}
	a.MonitoringService = "Activity Log"
	if source != "" {
		a.MonitoringService += " - " + source
	}
	a.Description = desc
	if a.Description == "" {
		a.Description = strings.TrimSpace(op + " " + opStatus)
	}
	if rid != "" {
		a.TargetResources = []string{rid}
	}
	if sub != "" {
		a.Subscriptions = []string{sub}
	}
	if rg != "" {
		a.ResourceGroups = []string{rg}
	}
	a.Essentials = synthEssentials(a)
	return a, nil
}

func fieldRequired(p string) error {
	return ica.FieldErrorf(ica.EINVALID, p, "%s is required", p)
}

// monitorCondition normalises Fired/Resolved (and the legacy
// Activated/Deactivated) in any letter case.
func monitorCondition(s, path string) (string, error) {
	switch strings.ToLower(s) {
	case "fired", "activated", "active":
		return ica.AlertFired, nil
	case "resolved", "deactivated":
		return ica.AlertResolved, nil
	case "":
		return "", fieldRequired(path)
	}
	return "", ica.FieldErrorf(ica.EINVALID, path, "%s %q is not Fired or Resolved", path, clip(s, 40))
}

// severityFromLevel maps the level names of legacy payloads to severities,
// using Azure Monitor's own naming (Sev0 Critical, Sev1 Error, Sev2 Warning,
// Sev3 Informational, Sev4 Verbose). "Sev2" and "2" are accepted too.
func severityFromLevel(path, s string) (string, error) {
	switch strings.ToLower(s) {
	case "critical":
		return ica.Sev0, nil
	case "error":
		return ica.Sev1, nil
	case "warning":
		return ica.Sev2, nil
	case "informational", "information", "info", "low":
		return ica.Sev3, nil
	case "verbose":
		return ica.Sev4, nil
	}
	return ica.ParseSeverity(path, s)
}

// normalizeSignal folds Azure's spellings of the signal type.
func normalizeSignal(s string) string {
	switch strings.ToLower(strings.ReplaceAll(s, " ", "")) {
	case "":
		return ""
	case "metric":
		return ica.SignalMetric
	case "log":
		return ica.SignalLog
	case "activitylog":
		return ica.SignalActivityLog
	case "cost", "budget":
		return ica.SignalCost
	}
	return s
}

// synthEssentials builds a common-schema-shaped essentials object for the
// legacy schemas, so consumers (PagerDuty custom_details, cards) see one shape.
func synthEssentials(a *ica.Alert) json.RawMessage {
	e := struct {
		AlertID           string   `json:"alertId"`
		AlertRule         string   `json:"alertRule,omitempty"`
		Severity          string   `json:"severity"`
		SignalType        string   `json:"signalType,omitempty"`
		MonitorCondition  string   `json:"monitorCondition"`
		MonitoringService string   `json:"monitoringService,omitempty"`
		AlertTargetIDs    []string `json:"alertTargetIDs,omitempty"`
		ConfigItems       []string `json:"configurationItems,omitempty"`
		FiredDateTime     string   `json:"firedDateTime"`
		ResolvedDateTime  string   `json:"resolvedDateTime,omitempty"`
		Description       string   `json:"description,omitempty"`
		SourceSchema      string   `json:"icaSourceSchema"`
	}{
		AlertID: a.AlertID, AlertRule: a.Rule, Severity: a.Severity, SignalType: a.SignalType,
		MonitorCondition: a.MonitorCondition, MonitoringService: a.MonitoringService,
		AlertTargetIDs: a.TargetResources, ConfigItems: a.ConfigurationItems,
		FiredDateTime: a.FiredAt.Format(time.RFC3339Nano), Description: a.Description, SourceSchema: a.Schema,
	}
	if !a.ResolvedAt.IsZero() {
		e.ResolvedDateTime = a.ResolvedAt.Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil
	}
	return b
}

// finish derives subscriptions and resource groups from the resource ids,
// de-duplicates them and fills a portal link when the payload had none.
func finish(a *ica.Alert) {
	for _, id := range append(slices.Clone(a.TargetResources), a.AlertID) {
		sub, rg := splitResourceID(id)
		if sub != "" {
			a.Subscriptions = append(a.Subscriptions, sub)
		}
		if rg != "" {
			a.ResourceGroups = append(a.ResourceGroups, rg)
		}
	}
	a.Subscriptions = uniqueFold(a.Subscriptions)
	a.ResourceGroups = uniqueFold(a.ResourceGroups)
	if a.PortalLink == "" && strings.HasPrefix(strings.ToLower(a.AlertID), "/subscriptions/") {
		if strings.Contains(strings.ToLower(a.AlertID), "/providers/microsoft.alertsmanagement/alerts/") {
			a.PortalLink = azurePortalAlertPrefix + url.QueryEscape(a.AlertID)
		} else {
			a.PortalLink = azurePortalResource + a.AlertID
		}
	}
}

// splitResourceID returns the subscription and resource group named by an
// Azure resource id (/subscriptions/S/resourceGroups/G/...), either may be "".
func splitResourceID(id string) (sub, rg string) {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	for i := 0; i+1 < len(parts); i += 2 {
		switch strings.ToLower(parts[i]) {
		case "subscriptions":
			if sub == "" {
				sub = parts[i+1]
			}
		case "resourcegroups":
			if rg == "" {
				rg = parts[i+1]
			}
		case "providers":
			return sub, rg
		}
	}
	return sub, rg
}

// uniqueFold removes case-insensitive duplicates, keeping the first spelling.
func uniqueFold(in []string) []string {
	var out []string
	for _, s := range in {
		if s == "" || slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, s) }) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// clip shortens untrusted text quoted back in error messages.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) > n {
		r = r[:n]
	}
	return string(r) + "…"
}
