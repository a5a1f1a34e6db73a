package store

// The check's replay of what the deployment policy, pipeline checks and
// Azure budgets keep: the policy records and the policy in force, the
// answered checks, each budget's latest report and its deliveries.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/policy"
)

type policyChangedData struct {
	Hash     string        `json:"hash"`
	Previous string        `json:"previous"`
	Policy   policy.Policy `json:"policy"`
}

// replayPolicy proves a policy.changed entry: the policy it records has the
// hash it names, it follows the policy in force before it, and the stored
// record of that hash is the entry's (unless the policy was recorded again
// later).
func (c *checker) replayPolicy(tx Tx, e *ica.LedgerEntry) {
	var d policyChangedData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		c.rep.add("entry %d: policy.changed data: %v", e.Seq, err)
		return
	}
	c.rep.Policies++
	if comp, err := policy.Compile(d.Policy); err != nil {
		c.rep.add("entry %d: the policy it records does not compile: %s", e.Seq, ica.ErrorMessage(err))
	} else if comp.Hash != d.Hash {
		c.rep.add("entry %d: the policy it records hashes to %s, but the entry names %s", e.Seq, comp.Hash, d.Hash)
	}
	if d.Previous != c.policyLast {
		c.rep.add("entry %d: policy %s follows %s, but the policy in force was %s", e.Seq, d.Hash, orNone(d.Previous), orNone(c.policyLast))
	}
	c.policies[d.Hash], c.policyLast = e.Seq, d.Hash
	stored, err := getJSON[PolicyRecord](tx.Bucket(bucketPolicy), join(prefixPolicy, []byte(d.Hash)))
	switch {
	case err != nil:
		c.rep.add("policy %s: unreadable: %v", d.Hash, err)
	case stored == nil:
		c.rep.add("policy %s (entry %d) is missing from the store", d.Hash, e.Seq)
	case stored.LedgerSeq == e.Seq:
		if stored.Hash != d.Hash || stored.Previous != d.Previous || !sameJSON(stored.Policy, d.Policy) {
			c.rep.add("policy %s: the stored record differs from entry %d", d.Hash, e.Seq)
		}
	case stored.LedgerSeq < e.Seq:
		c.rep.add("policy %s: recorded again at entry %d, but the store kept the record of entry %d", d.Hash, e.Seq, stored.LedgerSeq)
	}
}

// knownPolicies reports a policy hash on an approval that no earlier
// policy.changed entry recorded: a decision under a policy nobody can read.
func (c *checker) knownPolicies(e *ica.LedgerEntry, a *ica.Approval) {
	for _, h := range a.PolicyHashes {
		if seq, ok := c.policies[h]; !ok || seq > e.Seq {
			c.rep.add("approval %s: entry %d names policy %s, which no earlier policy.changed entry records", a.ID, e.Seq, h)
			return
		}
	}
}

// passPolicy compares the policy in force with the last one recorded, and
// names stored policy records that no entry recorded.
func (c *checker) passPolicy() error {
	err := c.s.view(func(tx Tx) error {
		if now, _ := readHead(tx); now != c.head {
			return nil // a newer policy may be in force; the next check compares
		}
		if cur := string(tx.Bucket(bucketPolicy).Get(keyPolicyCurrent)); cur != c.policyLast {
			c.rep.add("the policy in force is %s, but the last policy the ledger records is %s", orNone(cur), orNone(c.policyLast))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.scan(bucketPolicy, func(tx Tx, k, v []byte) {
		if !bytes.HasPrefix(k, prefixPolicy) {
			return
		}
		var r PolicyRecord
		if err := json.Unmarshal(v, &r); err != nil {
			c.rep.add("policy record %q: unreadable", k)
			return
		}
		if c.later(tx, "policy "+r.Hash, r.LedgerSeq) {
			return
		}
		if _, ok := c.policies[r.Hash]; !ok {
			c.rep.add("policy %s is stored but no ledger entry recorded it", r.Hash)
		}
	})
}

// replayCheckCompleted: a pipeline check was answered, and its record
// dropped with the answer.
func (c *checker) replayCheckCompleted(tx Tx, e *ica.LedgerEntry) {
	var d struct {
		ApprovalID     string `json:"approval_id"`
		TaskInstanceID string `json:"task_instance_id"`
	}
	if err := json.Unmarshal(e.Data, &d); err != nil || d.ApprovalID != e.Subject {
		c.rep.add("entry %d: check_completed data does not name approval %s", e.Seq, e.Subject)
		return
	}
	key := checkKey(d.ApprovalID, d.TaskInstanceID)
	if _, ok := c.openChecks[string(key)]; ok {
		delete(c.openChecks, string(key))
		return
	}
	stored, err := getJSON[ica.CheckCallback](tx.Bucket(bucketChecks), key)
	if err == nil && stored != nil && stored.LinkedSeq != 0 && stored.LinkedSeq < e.Seq {
		c.rep.add("the pipeline check of approval %s (task %s) was answered at entry %d but is still stored: it would be answered again",
			d.ApprovalID, d.TaskInstanceID, e.Seq)
	}
}

// passBudgets compares each budget's latest report and its deliveries with
// what the ledger derives, and reports the pipeline checks linked but
// neither stored nor answered.
func (c *checker) passBudgets() error {
	grown := false
	if err := c.s.view(func(tx Tx) error {
		now, _ := readHead(tx)
		grown = now != c.head
		if grown {
			return nil
		}
		for _, e := range c.openChecks {
			var d checkLinked
			_ = json.Unmarshal(e.Data, &d)
			if tx.Bucket(bucketChecks).Get(checkKey(d.ApprovalID, d.TaskInstanceID)) == nil {
				c.rep.add("the pipeline check of approval %s (task %s, linked at entry %d) is missing from the store, and the ledger never answered it",
					d.ApprovalID, d.TaskInstanceID, e.Seq)
			}
		}
		return nil
	}); err != nil || grown {
		return err // reports and deliveries after the head are the next check's
	}
	seen := map[string]bool{}
	if err := c.scan(bucketAzureBudgets, func(tx Tx, k, v []byte) {
		seen[string(k)] = true
		var stored ica.AzureBudgetReport
		if err := json.Unmarshal(v, &stored); err != nil {
			c.rep.add("azure budget %q: unreadable", k)
			return
		}
		d := c.budgets[string(k)]
		if d == nil {
			c.rep.add("azure budget %s is stored but no ledger entry reported it", k)
			return
		}
		c.mismatch("azure budget "+string(k), &stored, d, nil, c.budgetDedups[d.DedupKey])
	}); err != nil {
		return err
	}
	for k := range c.budgets {
		if !seen[k] {
			c.rep.add("azure budget %s (reported in the ledger) is missing from the store", k)
		}
	}
	n := 0
	if err := c.scan(bucketAzureBudgetDedup, func(tx Tx, k, v []byte) {
		n++
		seq, ok := c.budgetDedups[string(k)]
		if !ok || len(v) != 8 || binary.BigEndian.Uint64(v) != seq {
			c.rep.add("azure budget delivery %q is stored but does not point at the entry that recorded it", k)
		}
	}); err != nil {
		return err
	}
	if n < len(c.budgetDedups) {
		c.rep.add("%d azure budget deliveries recorded in the ledger are missing from the store (they would be recorded again)", len(c.budgetDedups)-n)
	}
	return nil
}

// replayBudget derives a budget's latest report from a cost.azure_budget
// entry: a report older than the latest one known is recorded but does not
// replace it.
func (c *checker) replayBudget(e *ica.LedgerEntry) {
	var d struct {
		Report *ica.AzureBudgetReport `json:"report"`
	}
	if err := json.Unmarshal(e.Data, &d); err != nil || d.Report == nil || d.Report.Key != e.Subject {
		c.rep.add("entry %d: cost.azure_budget data does not report budget %s", e.Seq, e.Subject)
		return
	}
	r := d.Report
	if _, dup := c.budgetDedups[r.DedupKey]; dup {
		c.rep.add("entry %d: azure budget delivery %s recorded twice", e.Seq, r.DedupKey)
	}
	c.budgetDedups[r.DedupKey] = e.Seq
	if prev := c.budgets[r.Key]; prev == nil {
		c.rep.Budgets++
		c.budgets[r.Key] = r
	} else if !r.AsOf.Before(prev.AsOf) {
		c.budgets[r.Key] = r
	}
}
