package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ica-governance/ica"
)

// Azure budget buckets, both derived from the ledger's cost.azure_budget
// entries.
var (
	bucketAzureBudgets     = []byte("azure_budgets")      // budget key → its latest report
	bucketAzureBudgetDedup = []byte("azure_budget_dedup") // delivery dedup key → ledger seq
)

// RecordAzureBudget records what an Azure budget notification reports, in
// one transaction: the ledger entry (cost.azure_budget, with the body as
// received), the budget's latest report, and msgs (the finance channel's
// notice). A repeated delivery (same dedup key) writes nothing and reports
// created=false. A report older than the latest one known for its budget is
// recorded in the ledger but does not replace it.
func (s *Store) RecordAzureBudget(ctx context.Context, r *ica.AzureBudgetReport, raw []byte, actor string, msgs ...*ica.OutboxMessage) (created bool, err error) {
	if err := r.Validate(); err != nil {
		return false, err
	}
	err = s.update(func(tx Tx, st *txState) error {
		created = false
		if tx.Bucket(bucketAzureBudgetDedup).Get([]byte(r.DedupKey)) != nil {
			return nil
		}
		rep := *r
		rep.ReceivedAt = st.now
		if rep.AsOf.IsZero() {
			rep.AsOf = st.now
		}
		latest := tx.Bucket(bucketAzureBudgets)
		prev, err := getJSON[ica.AzureBudgetReport](latest, []byte(rep.Key))
		if err != nil {
			return err
		}
		data := map[string]any{"report": &rep}
		if len(raw) > 0 && json.Valid(raw) {
			data["payload"] = json.RawMessage(raw)
		}
		e, err := s.appendLedger(tx, st.now, ica.KindAzureBudget, rep.Key, actor, data)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketAzureBudgetDedup).Put([]byte(rep.DedupKey), u64(e.Seq)); err != nil {
			return err
		}
		if prev == nil || !rep.AsOf.Before(prev.AsOf) {
			if err := putJSON(latest, []byte(rep.Key), &rep); err != nil {
				return err
			}
		}
		if err := s.enqueue(tx, st, msgs); err != nil {
			return err
		}
		created = true
		return nil
	})
	return created, err
}

func azureBudgetsTx(tx Tx) ([]*ica.AzureBudgetReport, error) {
	b := tx.Bucket(bucketAzureBudgets)
	var out []*ica.AzureBudgetReport
	err := b.ForEach(func(k, v []byte) error {
		var r ica.AzureBudgetReport
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("azure budget %s: %w", k, err)
		}
		out = append(out, &r)
		return nil
	})
	return out, err
}

// AzureBudgets returns each Azure budget's latest report.
func (s *Store) AzureBudgets(ctx context.Context) ([]*ica.AzureBudgetReport, error) {
	var out []*ica.AzureBudgetReport
	err := s.view(func(tx Tx) error {
		var err error
		out, err = azureBudgetsTx(tx)
		return err
	})
	return out, err
}

// scopeCosts sums the month's cost entries per normalised scope (synced
// Azure Cost Management costs carry their scope; posted costs have none).
func scopeCosts(tx Tx, month string) (map[string]float64, error) {
	out := map[string]float64{}
	prefix := join([]byte(month), sep)
	c := tx.Bucket(bucketCostByMonth).Cursor()
	costs := tx.Bucket(bucketCosts)
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		var e ica.CostEntry
		if err := json.Unmarshal(costs.Get(k[len(prefix):]), &e); err != nil {
			return nil, fmt.Errorf("cost %s: %w", k[len(prefix):], err)
		}
		if e.Scope != "" {
			out[ica.NormalizeScope(e.Scope)] += e.CostUSD
		}
	}
	return out, nil
}

func budgetWithAzureTx(tx Tx, now time.Time, monthly, threshold float64, scopes []string) (*ica.Budget, error) {
	b, err := budgetTx(tx, now, monthly, threshold)
	if err != nil {
		return nil, err
	}
	reports, err := azureBudgetsTx(tx)
	if err != nil {
		return nil, err
	}
	byScope, err := scopeCosts(tx, b.Month)
	if err != nil {
		return nil, err
	}
	ica.ApplyAzureBudgets(b, reports, scopes, byScope, now)
	return b, nil
}

// BudgetWithAzure is Budget with each Azure budget's latest report and the
// figure the gate uses (ica.ApplyAzureBudgets); scopes are the Azure scopes
// ICA's budget covers.
func (s *Store) BudgetWithAzure(ctx context.Context, monthly, threshold float64, scopes []string) (*ica.Budget, error) {
	var b *ica.Budget
	err := s.view(func(tx Tx) error {
		var err error
		b, err = budgetWithAzureTx(tx, s.clock.Now(), monthly, threshold, scopes)
		return err
	})
	return b, err
}

// AzureBudgetGate is BudgetGate with Azure's word: where an Azure budget of
// one of scopes reports a higher actual than ICA's own for that scope, under
// 24 hours old and in ICA's currency, the gate counts Azure's figure.
func AzureBudgetGate(monthly, threshold float64, scopes []string) ApprovalGate {
	return func(tx ReadTx, a *ica.Approval) error {
		if monthly <= 0 {
			return nil
		}
		b, err := budgetWithAzureTx(tx.(readTx).tx, a.CreatedAt, monthly, threshold, scopes)
		if err != nil {
			return err
		}
		return ica.CheckBudget(b, a.EstimatedCost)
	}
}
