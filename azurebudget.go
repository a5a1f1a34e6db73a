package ica

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Azure budgets. Azure Cost Management sends a notification when one of its
// budgets crosses a threshold: either as a Common Alert Schema alert
// (monitoringService CostAlerts) or in the legacy "AIP Budget Notification"
// schema. ICA records what each says (AzureBudgetReport), shows each
// budget's latest report beside its own figures, and lets a fresh Azure
// actual for the scope its budget covers raise the figure the budget gate
// uses (ApplyAzureBudgets). Forecasts are shown, never gated; a currency
// other than ICA's is shown, never summed.

// Currency is the currency of ICA's own figures (cost_usd, budget).
const Currency = "USD"

// AzureBudgetMaxAge is how long an Azure actual may stand in for ICA's
// month-to-date (DESIGN "Operations").
const AzureBudgetMaxAge = 24 * time.Hour

// Azure budget threshold types.
const (
	ThresholdActual     = "Actual"
	ThresholdForecasted = "Forecasted"
)

// Schemas of Azure budget reports.
const (
	SchemaLegacyBudget = "legacy-budget" // "schemaId": "AIP Budget Notification"
)

// SchemaUnrecognised is the schema of a delivery ICA does not understand:
// kept in the ledger and raised as a warning incident.
const SchemaUnrecognised = "unrecognised"

// KindAzureBudget is the ledger kind of an Azure budget report.
const KindAzureBudget = "cost.azure_budget"

// AzureBudgetReport is what one Azure budget notification says about one
// budget.
type AzureBudgetReport struct {
	// Key identifies the budget: its normalised scope and name.
	Key  string `json:"key"`
	Name string `json:"name"`
	// BudgetID is the budget's resource id, when the payload has it.
	BudgetID         string `json:"budget_id,omitempty"`
	Scope            string `json:"scope"` // normalised: /subscriptions/<id>[/resourcegroups/<rg>]
	Subscription     string `json:"subscription,omitempty"`
	SubscriptionName string `json:"subscription_name,omitempty"`
	ResourceGroup    string `json:"resource_group,omitempty"`
	// Amount is the budget; Spent what Azure says was spent in the budget's
	// period so far; Forecast its forecast for the period, when it sent one.
	Amount   float64  `json:"amount"`
	Spent    float64  `json:"spent"`
	Forecast *float64 `json:"forecast,omitempty"`
	Currency string   `json:"currency"`
	// Threshold is the notification's threshold as an amount; ThresholdType
	// is Actual or Forecasted ("" when the legacy schema does not say).
	Threshold     float64 `json:"threshold"`
	ThresholdType string  `json:"threshold_type,omitempty"`
	BudgetType    string  `json:"budget_type,omitempty"` // Cost or Usage
	PeriodStart   string  `json:"period_start,omitempty"`
	// Condition is Fired or Resolved (common schema); legacy notifications
	// only ever fire.
	Condition string `json:"monitor_condition"`
	// AsOf is when Azure fired the notification (the common schema's
	// firedDateTime), or when ICA received it (the legacy schema has no time).
	AsOf       time.Time `json:"as_of"`
	ReceivedAt time.Time `json:"received_at"`
	AlertID    string    `json:"alert_id,omitempty"`
	Schema     string    `json:"schema"`
	// DedupKey makes a repeated delivery a no-op: the alert id, condition,
	// budget and fire time; without an alert id, the SHA-256 of the body.
	DedupKey string `json:"dedup_key"`
}

// Validate checks what every consumer relies on.
func (r *AzureBudgetReport) Validate() error {
	switch {
	case strings.TrimSpace(r.Name) == "":
		return FieldErrorf(EINVALID, "BudgetName", "the budget notification names no budget (BudgetName)")
	case r.Key == "" || r.DedupKey == "":
		return FieldErrorf(EINVALID, "BudgetName", "the budget notification has no identity")
	}
	for field, v := range map[string]float64{"Budget": r.Amount, "SpentAmount": r.Spent, "NotificationThresholdAmount": r.Threshold} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 1e15 {
			return FieldErrorf(EINVALID, field, "%s is not a plausible amount", field)
		}
	}
	return nil
}

// CrossedActual reports whether the report says actual spend reached the
// threshold (rather than a forecast).
func (r *AzureBudgetReport) CrossedActual() bool {
	if r.ThresholdType == ThresholdForecasted {
		return false
	}
	return r.Threshold > 0 && r.Spent >= r.Threshold
}

// SameCurrency reports whether the report is in ICA's currency.
func (r *AzureBudgetReport) SameCurrency() bool {
	c := strings.TrimSpace(r.Currency)
	return strings.EqualFold(c, Currency) || c == "$"
}

// AzureBudgetKey is a budget's identity: normalised scope and name.
func AzureBudgetKey(scope, name string) string {
	return NormalizeScope(scope) + "|" + strings.ToLower(strings.TrimSpace(name))
}

// BodyDedupKey is the de-duplication key of a payload without an alert id.
func BodyDedupKey(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NormalizeScope folds the spellings of an Azure scope
// ("subscriptions/S/", "/Subscriptions/S/resourceGroups/RG") to one:
// lower case, one leading slash, no trailing slash.
func NormalizeScope(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.Trim(s, "/")
	if s == "" {
		return ""
	}
	return "/" + s
}

// ParseAmount reads an amount as Azure writes it: "1111.32", "$11,111.00",
// "€1.234,56", "8000.0". It refuses what has no digits.
func ParseAmount(s string) (float64, error) {
	var b strings.Builder
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r >= '0' && r <= '9', r == '.', r == ',', r == '-':
			b.WriteRune(r)
		case r == ' ', r == '\u00a0', r == '\'':
			// thousands separators in some locales
		default:
			// currency symbols and codes
		}
	}
	t := b.String()
	if strings.IndexFunc(t, func(r rune) bool { return r >= '0' && r <= '9' }) < 0 {
		return 0, fmt.Errorf("%q is not an amount", clip(s, 40))
	}
	lastDot, lastComma := strings.LastIndex(t, "."), strings.LastIndex(t, ",")
	switch {
	case lastDot >= 0 && lastComma >= 0:
		if lastComma > lastDot { // 1.234,56
			t = strings.ReplaceAll(t, ".", "")
			t = strings.Replace(t, ",", ".", 1)
		} else { // 1,234.56
			t = strings.ReplaceAll(t, ",", "")
		}
	case lastComma >= 0:
		// One comma with one or two digits after it is a decimal comma;
		// otherwise commas group thousands.
		if strings.Count(t, ",") == 1 && len(t)-lastComma-1 <= 2 {
			t = strings.Replace(t, ",", ".", 1)
		} else {
			t = strings.ReplaceAll(t, ",", "")
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not an amount", clip(s, 40))
	}
	return v, nil
}

// AzureBudgetView is one Azure budget's latest report as ICA shows it.
type AzureBudgetView struct {
	*AzureBudgetReport
	// AgeSeconds is how old the report is.
	AgeSeconds float64 `json:"age_seconds"`
	// ScopeMatched says the budget's scope is one ICA's budget covers.
	ScopeMatched bool `json:"scope_matched"`
	// Gated says the gate uses this report's actual; Note says why not.
	Gated bool   `json:"gated"`
	Note  string `json:"note,omitempty"`
}

// ApplyAzureBudgets adds the latest Azure budget reports to b and sets the
// figure the budget gate uses (b.GateMonthToDate). An Azure actual for a
// scope ICA's budget covers (scopes), in ICA's currency, of the current
// month and under AzureBudgetMaxAge old, stands for that scope when it is
// higher than ICA's own figure for it (scopeMTD, by normalised scope); the
// gate counts the sum over the covered scopes when that is higher than
// ICA's month-to-date. With one scope: Azure's actual replaces ICA's
// month-to-date when it is higher (DESIGN "Operations"). Forecasts are
// shown, never gated; other currencies are shown, never summed. reports
// are the latest per budget.
func ApplyAzureBudgets(b *Budget, reports []*AzureBudgetReport, scopes []string, scopeMTD map[string]float64, now time.Time) {
	b.GateMonthToDate = b.MonthToDate
	covered := map[string]bool{}
	for _, s := range scopes {
		if n := NormalizeScope(s); n != "" {
			covered[n] = true
		}
	}
	best := map[string]*AzureBudgetView{} // scope → highest usable actual
	month := now.UTC().Format("2006-01")
	for _, r := range reports {
		v := &AzureBudgetView{AzureBudgetReport: r, AgeSeconds: math.Max(0, now.Sub(r.AsOf).Seconds()), ScopeMatched: covered[r.Scope]}
		switch {
		case !r.SameCurrency():
			v.Note = fmt.Sprintf("in %s: shown, not summed with ICA's %s", r.Currency, Currency)
		case !v.ScopeMatched:
			v.Note = "another scope than ICA's budget"
		case now.Sub(r.AsOf) >= AzureBudgetMaxAge:
			v.Note = "older than 24 h: not used by the gate"
		case r.AsOf.UTC().Format("2006-01") != month:
			v.Note = "from another month: not used by the gate"
		case r.BudgetType != "" && !strings.EqualFold(r.BudgetType, "Cost"):
			v.Note = "a usage budget, not a cost: not used by the gate"
		default:
			if cur := best[r.Scope]; cur == nil || r.Spent > cur.Spent {
				if cur != nil {
					cur.Note = "another budget of this scope reports more"
				}
				best[r.Scope] = v
			} else {
				v.Note = "another budget of this scope reports more"
			}
		}
		b.Azure = append(b.Azure, v)
	}
	sum := 0.0
	for scope := range covered {
		own := scopeMTD[scope]
		if v := best[scope]; v != nil && v.Spent > own {
			sum += v.Spent
			v.Gated = true
			continue
		}
		sum += own
	}
	for scope, v := range best {
		own := scopeMTD[scope]
		switch {
		case !v.Gated:
			v.Note = fmt.Sprintf("not higher than ICA's %s for this scope", money(own))
		case sum > b.MonthToDate:
			v.Note = fmt.Sprintf("higher than ICA's %s for this scope: the gate counts it", money(own))
		default:
			v.Gated = false
			v.Note = fmt.Sprintf("higher than ICA's %s for this scope, but not than ICA's month-to-date", money(own))
		}
	}
	if sum > b.MonthToDate {
		b.GateMonthToDate = sum
	}
	slices.SortFunc(b.Azure, func(x, y *AzureBudgetView) int {
		if c := strings.Compare(x.Scope, y.Scope); c != 0 {
			return c
		}
		return strings.Compare(strings.ToLower(x.Name), strings.ToLower(y.Name))
	})
}

func money(v float64) string { return "$" + strconv.FormatFloat(v, 'f', 2, 64) }

// UnrecognisedAlert is the warning ICA raises for a delivery that
// authenticated and is JSON but whose schema it does not know: an incident
// "unrecognised Azure Monitor payload" naming the schema, so that someone
// looks, while the ledger keeps the body (Azure would drop it on a 4xx).
// The same body is the same alert, so a retried delivery is a repeat.
func UnrecognisedAlert(schemaID string, body []byte, at time.Time) *Alert {
	name := schemaID
	if name == "" {
		name = "(none)"
	}
	return &Alert{AlertID: "unrecognised:" + BodyDedupKey(body), Severity: Sev2, MonitorCondition: AlertFired,
		Rule:              "unrecognised Azure Monitor payload (schemaId " + clip(name, 80) + ")",
		MonitoringService: "Azure Monitor",
		Description: "Azure Monitor sent a payload whose schemaId is " + strconv.Quote(clip(name, 80)) +
			", which ICA does not understand. Its body is kept in the ledger. Check the action group (Enable the common alert schema) or upgrade ICA.",
		FiredAt: at, Schema: SchemaUnrecognised}
}
