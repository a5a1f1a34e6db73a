package ica

import (
	"math"
	"time"
)

// Resource types of cost entries.
const (
	ResourceAKS   = "aks"
	ResourceACR   = "acr"
	ResourceBlob  = "blob"
	ResourceOther = "other"
)

// MaxCostUSD bounds one cost entry so a typo cannot poison the month.
const MaxCostUSD = 1e8

// CostEntry is one actual cost: posted by a pipeline (optionally for a run)
// or synced from Azure Cost Management (per scope, day and resource type).
type CostEntry struct {
	Key           string    `json:"key"` // identity: a repeat with the same key replaces the amount
	RunID         string    `json:"run_id,omitempty"`
	ResourceType  string    `json:"resource_type"`
	CostUSD       float64   `json:"cost_usd"`
	BillingPeriod string    `json:"billing_period"` // YYYY-MM-DD (the day the cost accrued)
	Source        string    `json:"source"`         // api | cost-management
	Scope         string    `json:"scope,omitempty"`
	RecordedAt    time.Time `json:"recorded_at"`
	Actor         string    `json:"actor"`
	// LastSeq is the ledger entry that last changed this record.
	LastSeq uint64 `json:"last_seq,omitempty"`
}

// CostInput is the body of POST /api/v1/costs.
type CostInput struct {
	RunID         string   `json:"run_id,omitempty"`
	ResourceType  string   `json:"resource_type"`
	CostUSD       *float64 `json:"cost_usd"`
	BillingPeriod string   `json:"billing_period"`
}

// Validate checks a cost and names the first bad field.
func (c *CostInput) Validate() error {
	if c.RunID != "" {
		if err := ValidID("run_id", c.RunID); err != nil {
			return err
		}
	}
	switch c.ResourceType {
	case ResourceAKS, ResourceACR, ResourceBlob, ResourceOther:
	case "":
		return FieldErrorf(EINVALID, "resource_type", "resource_type is required (aks, acr, blob or other)")
	default:
		return FieldErrorf(EINVALID, "resource_type", "resource_type %q is not one of aks, acr, blob, other", c.ResourceType)
	}
	if c.CostUSD == nil {
		return FieldErrorf(EINVALID, "cost_usd", "cost_usd is required (US dollars)")
	}
	if v := *c.CostUSD; math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return FieldErrorf(EINVALID, "cost_usd", "cost_usd must be a non-negative number")
	} else if v > MaxCostUSD {
		return FieldErrorf(EINVALID, "cost_usd", "cost_usd is larger than %.0f", float64(MaxCostUSD))
	}
	if _, err := ParseDay(c.BillingPeriod); err != nil {
		return FieldErrorf(EINVALID, "billing_period", "billing_period must be a date YYYY-MM-DD")
	}
	return nil
}

// ParseDay parses YYYY-MM-DD as midnight UTC.
func ParseDay(s string) (time.Time, error) { return time.Parse(time.DateOnly, s) }

// MonthStart returns the first instant of t's month in UTC.
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// Budget is the month's spend against the budget.
type Budget struct {
	Month            string             `json:"month"` // YYYY-MM (UTC)
	MonthlyBudget    float64            `json:"monthly_budget"`
	Threshold        float64            `json:"threshold"` // fraction, e.g. 0.95
	MonthToDate      float64            `json:"month_to_date"`
	PendingEstimates float64            `json:"pending_estimates"` // open approvals
	Forecast         float64            `json:"forecast"`          // linear month-end forecast of actuals
	ByResourceType   map[string]float64 `json:"by_resource_type"`
	AsOf             *time.Time         `json:"as_of,omitempty"` // newest cost data
	Entries          int                `json:"entries"`
	// GateMonthToDate is the month-to-date the budget gate uses:
	// MonthToDate, with ICA's figure for a scope replaced by a fresh, higher
	// Azure actual for the same scope (ApplyAzureBudgets).
	GateMonthToDate float64 `json:"gate_month_to_date"`
	// Azure is each Azure budget's latest report, with its age and whether
	// the gate uses it.
	Azure []*AzureBudgetView `json:"azure_budgets,omitempty"`
}

// Limit returns the spend the gate allows (budget × threshold); 0 means no gate.
func (b *Budget) Limit() float64 { return b.MonthlyBudget * b.Threshold }

// Forecast extrapolates month-to-date actuals linearly to the month's end.
func Forecast(mtd float64, now time.Time) float64 {
	start := MonthStart(now)
	end := start.AddDate(0, 1, 0)
	elapsed := now.Sub(start)
	if elapsed <= 0 {
		return mtd
	}
	return mtd * float64(end.Sub(start)) / float64(elapsed)
}

// CheckBudget is the budget gate: an approval whose estimate would take
// month-to-date actuals (the higher GateMonthToDate when Azure reported
// more for ICA's scope) plus pending estimates past budget × threshold is
// refused with the numbers. Exactly at the limit is allowed; a zero budget
// means no budget is configured and nothing is refused.
func CheckBudget(b *Budget, estimate float64) error {
	limit := b.Limit()
	if limit <= 0 {
		return nil
	}
	mtd, from := b.MonthToDate, "month-to-date"
	if b.GateMonthToDate > mtd {
		mtd, from = b.GateMonthToDate, "month-to-date with Azure's budget actuals"
	}
	total := mtd + b.PendingEstimates + estimate
	// Cents decide: float sums of dollar amounts must not refuse $0.00 over.
	if math.Round(total*100) > math.Round(limit*100) {
		return Errorf(EPOLICY, "budget gate: estimated cost $%.2f would take %s to $%.2f (%s $%.2f + pending approvals $%.2f), past %.0f%% of the $%.2f monthly budget ($%.2f)",
			estimate, b.Month, total, from, mtd, b.PendingEstimates, b.Threshold*100, b.MonthlyBudget, limit)
	}
	return nil
}
