package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/ica-governance/ica"
)

var (
	bucketCosts       = []byte("costs")
	bucketCostByMonth = []byte("idx_cost_month")
	keyCostSynced     = []byte("cost_synced_at")
)

func costMonthKey(e *ica.CostEntry) []byte {
	return join([]byte(e.BillingPeriod[:7]), sep, []byte(e.Key))
}

// putCost stores e (replacing an entry with the same key) and reports
// whether anything changed.
func putCost(tx Tx, e *ica.CostEntry) (prev *ica.CostEntry, changed bool, err error) {
	b := tx.Bucket(bucketCosts)
	prev, err = getJSON[ica.CostEntry](b, []byte(e.Key))
	if err != nil {
		return nil, false, err
	}
	if prev != nil {
		if math.Abs(prev.CostUSD-e.CostUSD) < 0.005 && prev.BillingPeriod == e.BillingPeriod {
			return prev, false, nil
		}
		if err := tx.Bucket(bucketCostByMonth).Delete(costMonthKey(prev)); err != nil {
			return nil, false, err
		}
	}
	if err := putJSON(b, []byte(e.Key), e); err != nil {
		return nil, false, err
	}
	return prev, true, tx.Bucket(bucketCostByMonth).Put(costMonthKey(e), nil)
}

// RecordCost records an actual cost posted through the API. With a run id,
// (run, resource type, day) is its identity: a repeat with the same amount
// changes nothing (created=false), another amount corrects it. Without one,
// every post is a new entry.
func (s *Store) RecordCost(ctx context.Context, in *ica.CostInput, actor string) (out *ica.CostEntry, created bool, err error) {
	if err := in.Validate(); err != nil {
		return nil, false, err
	}
	err = s.update(func(tx Tx, st *txState) error {
		out, created = nil, false
		e := &ica.CostEntry{RunID: in.RunID, ResourceType: in.ResourceType, CostUSD: *in.CostUSD,
			BillingPeriod: in.BillingPeriod, Source: "api", RecordedAt: st.now, Actor: actor}
		if in.RunID != "" {
			if _, err := mustRun(tx, in.RunID); err != nil {
				return err
			}
			e.Key = fmt.Sprintf("api:%s:%s:%s", in.RunID, in.ResourceType, in.BillingPeriod)
		} else {
			n, err := tx.Bucket(bucketCosts).NextSequence()
			if err != nil {
				return err
			}
			e.Key = fmt.Sprintf("api:#%d", n)
		}
		prev, changed, err := putCost(tx, e)
		if err != nil {
			return err
		}
		if !changed {
			out = prev
			return nil
		}
		kind := ica.KindCost
		data := map[string]any{"entry": e}
		if prev != nil {
			kind = KindCostCorrected
			data["previous_cost_usd"] = prev.CostUSD
		}
		le, err := s.appendLedger(tx, st.now, kind, e.Key, actor, data)
		if err != nil {
			return err
		}
		e.LastSeq = le.Seq
		if err := putJSON(tx.Bucket(bucketCosts), []byte(e.Key), e); err != nil {
			return err
		}
		out, created = e, true
		return nil
	})
	return out, created, err
}

// UpsertCosts records costs synced from Azure Cost Management, idempotent per
// key (scope, day, resource type); the changed entries are one ledger entry.
func (s *Store) UpsertCosts(ctx context.Context, entries []*ica.CostEntry, actor string) (changed int, err error) {
	err = s.update(func(tx Tx, st *txState) error {
		changed = 0
		var diffs []map[string]any
		var stored []*ica.CostEntry
		for _, e := range entries {
			c := *e
			c.RecordedAt, c.Actor = st.now, actor
			if _, err := ica.ParseDay(c.BillingPeriod); err != nil || c.Key == "" {
				return fmt.Errorf("cost entry %q: bad key or billing period", c.Key)
			}
			prev, ch, err := putCost(tx, &c)
			if err != nil {
				return err
			}
			if ch {
				// The whole entry, so the record is derivable (ica check).
				d := map[string]any{"key": c.Key, "cost_usd": c.CostUSD, "entry": &c}
				stored = append(stored, &c)
				if prev != nil {
					d["previous_cost_usd"] = prev.CostUSD
				}
				diffs = append(diffs, d)
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyCostSynced, timeKey(st.now)); err != nil {
			return err
		}
		if len(diffs) > 0 {
			le, err := s.appendLedger(tx, st.now, KindCostSynced, "cost-management", actor, map[string]any{"changes": diffs})
			if err != nil {
				return err
			}
			for _, c := range stored {
				c.LastSeq = le.Seq
				if err := putJSON(tx.Bucket(bucketCosts), []byte(c.Key), c); err != nil {
					return err
				}
			}
		}
		changed = len(diffs)
		return nil
	})
	return changed, err
}

func monthCosts(tx Tx, month string, b *ica.Budget) error {
	prefix := join([]byte(month), sep)
	c := tx.Bucket(bucketCostByMonth).Cursor()
	costs := tx.Bucket(bucketCosts)
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		var e ica.CostEntry
		if err := json.Unmarshal(costs.Get(k[len(prefix):]), &e); err != nil {
			return fmt.Errorf("cost %s: %w", k[len(prefix):], err)
		}
		b.MonthToDate += e.CostUSD
		b.ByResourceType[e.ResourceType] += e.CostUSD
		b.Entries++
		if b.AsOf == nil || e.RecordedAt.After(*b.AsOf) {
			t := e.RecordedAt
			b.AsOf = &t
		}
	}
	return nil
}

func budgetTx(tx Tx, now time.Time, monthly, threshold float64) (*ica.Budget, error) {
	b := &ica.Budget{Month: now.UTC().Format("2006-01"), MonthlyBudget: monthly, Threshold: threshold,
		ByResourceType: map[string]float64{}}
	if err := monthCosts(tx, b.Month, b); err != nil {
		return nil, err
	}
	if v := tx.Bucket(bucketMeta).Get(keyCostSynced); len(v) == 8 {
		t := time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
		if b.AsOf == nil || t.After(*b.AsOf) {
			b.AsOf = &t
		}
	}
	err := forPending(tx, func(a *ica.Approval) error {
		b.PendingEstimates += a.EstimatedCost
		return nil
	})
	b.Forecast = ica.Forecast(b.MonthToDate, now)
	return b, err
}

// Budget returns the current month's spend against the budget.
func (s *Store) Budget(ctx context.Context, monthly, threshold float64) (*ica.Budget, error) {
	var b *ica.Budget
	err := s.view(func(tx Tx) error {
		var err error
		b, err = budgetTx(tx, s.clock.Now(), monthly, threshold)
		return err
	})
	return b, err
}

// BudgetGate refuses approvals that would take the month past the budget
// threshold; it runs inside the approval's transaction, so two requests
// cannot both squeeze under the limit.
func BudgetGate(monthly, threshold float64) ApprovalGate {
	return func(tx ReadTx, a *ica.Approval) error {
		if monthly <= 0 {
			return nil
		}
		b, err := budgetTx(tx.(readTx).tx, a.CreatedAt, monthly, threshold)
		if err != nil {
			return err
		}
		return ica.CheckBudget(b, a.EstimatedCost)
	}
}
