package alerts

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/ica-governance/ica"
)

// SchemaIDBudget is the schemaId of Azure's legacy budget notification
// (Microsoft's "non-common alert schema definitions", "Actual Cost Budget or
// Forecasted Budget").
const SchemaIDBudget = "AIP Budget Notification"

// UnrecognisedError is Parse's answer to a JSON object whose schema ICA does
// not know. It is an EINVALID *ica.Error for callers that only read codes;
// the intake asks for UnrecognisedSchema and keeps the delivery instead
// (Azure drops what gets a 4xx).
type UnrecognisedError struct {
	SchemaID string
	err      *ica.Error
}

func (e *UnrecognisedError) Error() string { return e.err.Error() }

// Unwrap returns the *ica.Error.
func (e *UnrecognisedError) Unwrap() error { return e.err }

// UnrecognisedSchema names the schema ("" when the payload has no schemaId).
func (e *UnrecognisedError) UnrecognisedSchema() string { return e.SchemaID }

func unrecognised(schemaID, msg string) error {
	return &UnrecognisedError{SchemaID: schemaID, err: ica.FieldErrorf(ica.EINVALID, "schemaId", "%s", msg)}
}

// ParseBudget reads an Azure budget signal: the legacy budget notification
// ("schemaId": "AIP Budget Notification") or a Common Alert Schema budget
// alert (monitoringService CostAlerts, AlertCategory budgets: actual,
// forecasted, cost budget actual). It returns nil and no error for any other
// payload. Amounts are read leniently ("$11,111.00", "1111.32"); the
// threshold of the legacy schema may be an amount ("8000.0") or a fraction
// of the budget ("0.8"). ReceivedAt is left to the store.
func ParseBudget(body []byte) (*ica.AzureBudgetReport, error) {
	if len(body) > MaxPayloadSize {
		return nil, ica.Errorf(ica.ETOOLARGE, "alert payload is larger than %d bytes", MaxPayloadSize)
	}
	// Both schemas name the budget (BudgetName): a body without the word is
	// not a budget, and is not decoded twice on the alerts' hot path (Parse
	// reports what is wrong with it).
	if !bytes.Contains(body, []byte("udget")) && !bytes.Contains(body, []byte("UDGET")) {
		return nil, nil
	}
	tree, err := decodeTree(body)
	if err != nil {
		return nil, err
	}
	root, ok := tree.(object)
	if !ok {
		return nil, nil
	}
	schemaID, err := getString(root, "", "schemaId")
	if err != nil {
		return nil, nil // Parse reports it
	}
	switch {
	case strings.EqualFold(schemaID, SchemaIDBudget):
		return parseLegacyBudget(root, body)
	case strings.EqualFold(schemaID, SchemaIDCommon):
		return parseCommonBudget(root)
	}
	return nil, nil
}

// amount reads a required amount field.
func amount(m object, path, key string, required bool) (float64, bool, error) {
	s, err := getString(m, path, key)
	if err != nil {
		return 0, false, err
	}
	if s == "" {
		if required {
			return 0, false, fieldRequired(join(path, key))
		}
		return 0, false, nil
	}
	v, err := ica.ParseAmount(s)
	if err != nil {
		p := join(path, key)
		return 0, false, ica.FieldErrorf(ica.EINVALID, p, "%s is not an amount: %q", p, clip(s, 40))
	}
	return v, true, nil
}

func parseLegacyBudget(root object, body []byte) (*ica.AzureBudgetReport, error) {
	const p = "data"
	data, err := requireObject(root, "", "data")
	if err != nil {
		return nil, err
	}
	r := &ica.AzureBudgetReport{Schema: ica.SchemaLegacyBudget, Condition: ica.AlertFired, DedupKey: ica.BodyDedupKey(body)}
	if r.Name, err = requireString(data, p, "BudgetName"); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		dst *string
		key string
	}{
		{&r.Subscription, "SubscriptionId"}, {&r.SubscriptionName, "SubscriptionName"}, {&r.ResourceGroup, "ResourceGroup"},
		{&r.Currency, "Unit"}, {&r.BudgetType, "BudgetType"}, {&r.PeriodStart, "BudgetStartDate"},
	} {
		if *f.dst, err = getString(data, p, f.key); err != nil {
			return nil, err
		}
	}
	if r.Amount, _, err = amount(data, p, "Budget", true); err != nil {
		return nil, err
	}
	if r.Spent, _, err = amount(data, p, "SpendingAmount", true); err != nil {
		return nil, err
	}
	if r.Threshold, _, err = amount(data, p, "NotificationThresholdAmount", false); err != nil {
		return nil, err
	}
	// Microsoft's samples send the threshold both as an amount ("8000.0" of
	// a 10000 budget) and as a fraction ("0.8" of a 50 budget).
	if r.Threshold > 0 && r.Threshold <= 10 && r.Amount >= 20*r.Threshold {
		r.Threshold *= r.Amount
	}
	r.Scope = "/subscriptions/" + r.Subscription
	if r.ResourceGroup != "" {
		r.Scope += "/resourceGroups/" + r.ResourceGroup
	}
	r.Scope = ica.NormalizeScope(r.Scope)
	r.Key = ica.AzureBudgetKey(r.Scope, r.Name)
	return validBudget(r)
}

func parseCommonBudget(root object) (*ica.AzureBudgetReport, error) {
	data, err := getObject(root, "", "data")
	if err != nil || data == nil {
		return nil, nil // Parse reports it
	}
	const ep = "data.essentials"
	ess, err := getObject(data, "data", "essentials")
	if err != nil || ess == nil {
		return nil, nil
	}
	svc, _ := getString(ess, ep, "monitoringService")
	if !strings.EqualFold(svc, MonitoringServiceCost) {
		return nil, nil
	}
	actx, err := getObject(data, "data", "alertContext")
	if err != nil || actx == nil {
		return nil, err
	}
	const p = "data.alertContext.AlertData"
	ad, err := getObject(actx, "data.alertContext", "AlertData")
	if err != nil || ad == nil {
		return nil, err
	}
	if cat, _ := getString(actx, "data.alertContext", "AlertCategory"); cat != "" && !strings.EqualFold(cat, "budgets") {
		return nil, nil // other cost alerts (anomalies) are not budgets
	}
	r := &ica.AzureBudgetReport{}
	if r.AlertID, err = requireString(ess, ep, "alertId"); err != nil {
		return nil, err
	}
	cond, err := getString(ess, ep, "monitorCondition")
	if err != nil {
		return nil, err
	}
	if r.Condition, err = monitorCondition(cond, ep+".monitorCondition"); err != nil {
		return nil, err
	}
	if r.AsOf, err = requireTime(ess, ep, "firedDateTime"); err != nil {
		return nil, err
	}
	if r.Name, err = requireString(ad, p, "BudgetName"); err != nil {
		return nil, err
	}
	var scope, ttype string
	for _, f := range []struct {
		dst *string
		key string
	}{
		{&r.BudgetID, "BudgetId"}, {&scope, "Scope"}, {&ttype, "ThresholdType"}, {&r.BudgetType, "BudgetType"},
		{&r.Currency, "Unit"}, {&r.PeriodStart, "BudgetStartDate"},
	} {
		if *f.dst, err = getString(ad, p, f.key); err != nil {
			return nil, err
		}
	}
	switch {
	case strings.EqualFold(ttype, ica.ThresholdActual):
		r.ThresholdType = ica.ThresholdActual
	case strings.EqualFold(ttype, ica.ThresholdForecasted), strings.EqualFold(ttype, "Forecast"):
		r.ThresholdType = ica.ThresholdForecasted
	case ttype != "":
		return nil, ica.FieldErrorf(ica.EINVALID, p+".ThresholdType", "%s.ThresholdType %q is not Actual or Forecasted", p, clip(ttype, 40))
	}
	if r.Amount, _, err = amount(ad, p, "BudgetThreshold", true); err != nil {
		return nil, err
	}
	if r.Spent, _, err = amount(ad, p, "SpentAmount", true); err != nil {
		return nil, err
	}
	if r.Threshold, _, err = amount(ad, p, "NotificationThresholdAmount", false); err != nil {
		return nil, err
	}
	if f, ok, err := amount(ad, p, "ForecastedTotalForPeriod", false); err != nil {
		return nil, err
	} else if ok {
		r.Forecast = &f
	}
	if scope == "" && r.BudgetID != "" {
		scope, _, _ = strings.Cut(strings.ToLower(r.BudgetID), "/providers/microsoft.consumption/")
	}
	r.Scope = ica.NormalizeScope(scope)
	r.Subscription, r.ResourceGroup = splitResourceID(r.Scope)
	r.Key = ica.AzureBudgetKey(r.Scope, r.Name)
	// Azure's test deliveries reuse one alertId for every budget: the budget
	// and the fire time are part of a delivery's identity.
	r.DedupKey = fmt.Sprintf("alert:%s|%s|%s|%s", r.AlertID, r.Condition, r.Key, r.AsOf.UTC().Format("2006-01-02T15:04:05.000000000Z"))
	r.Schema = ica.SchemaCommon
	return validBudget(r)
}

func validBudget(r *ica.AzureBudgetReport) (*ica.AzureBudgetReport, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}
