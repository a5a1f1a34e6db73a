package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/policy"
)

// The deployment policy in the store. The policy in force is the one
// recorded last (policy.changed ledger entries); every replica evaluates
// that one, read inside the transaction that applies it, so two replicas
// never judge one request under two policies.

var (
	bucketPolicy = []byte("policy")
	// bucketDeployLocks: lock key → deployLock (one deployment at a time).
	bucketDeployLocks = []byte("deploy_locks")
	// bucketDeployQueue: lock key ‖ 0 ‖ seq ‖ approval id → nil, in the
	// order approvals became approved; bucketDeployQueuePos: approval id →
	// its queue key.
	bucketDeployQueue    = []byte("deploy_queue")
	bucketDeployQueuePos = []byte("deploy_queue_pos")
	// bucketDeployments: commit ‖ 0 ‖ target ‖ 0 ‖ time ‖ run id →
	// ica.Deployment (deployment reports, the evidence of promotion).
	bucketDeployments = []byte("deployments")

	keyPolicyCurrent = []byte("current")
	prefixPolicy     = []byte("p\x00")
)

// Ledger entry kinds of the deployment policy.
const (
	KindPolicyChanged    = "policy.changed"
	KindApprovalRefused  = "approval.refused"
	KindApprovalUsed     = "approval.used"
	KindLockReleased     = "deploy.lock_released"
	KindDeploymentReport = "deploy.reported"
	KindCheckCompleted   = "approval.check_completed"
)

// PolicyRecord is a policy as the ledger recorded it.
type PolicyRecord struct {
	Hash       string        `json:"hash"`
	Policy     policy.Policy `json:"policy"`
	RecordedAt time.Time     `json:"recorded_at"`
	Source     string        `json:"source"`
	Actor      string        `json:"actor"`
	Previous   string        `json:"previous,omitempty"`
	Changes    []string      `json:"changes,omitempty"`
	LedgerSeq  uint64        `json:"ledger_seq"`
}

// RecordPolicy makes p the policy in force, with a policy.changed ledger
// entry that lists what changed, unless it is the policy in force already
// (changed=false). source says where it came from (a file, "start",
// "reload", "ica policy apply").
func (s *Store) RecordPolicy(ctx context.Context, p policy.Policy, source, actor string) (rec *PolicyRecord, changed bool, err error) {
	c, err := policy.Compile(p)
	if err != nil {
		return nil, false, err
	}
	err = s.update(func(tx Tx, st *txState) error {
		rec, changed = nil, false
		b := tx.Bucket(bucketPolicy)
		cur := string(b.Get(keyPolicyCurrent))
		if cur == c.Hash {
			rec, err = getPolicyRecord(tx, cur)
			return err
		}
		r := &PolicyRecord{Hash: c.Hash, Policy: c.Policy, RecordedAt: st.now, Source: source, Actor: actor, Previous: cur}
		old := policy.Empty().Policy
		if cur != "" {
			prev, err := getPolicyRecord(tx, cur)
			if err != nil {
				return err
			}
			old = prev.Policy
		}
		r.Changes = policy.Diff(old, c.Policy)
		if cur == "" {
			r.Changes = append([]string{"first policy recorded"}, r.Changes...)
		}
		e, err := s.appendLedger(tx, st.now, KindPolicyChanged, "policy", actor, map[string]any{
			"hash": r.Hash, "previous": r.Previous, "changes": r.Changes, "source": source, "policy": c.Policy})
		if err != nil {
			return err
		}
		r.LedgerSeq = e.Seq
		if err := putJSON(b, join(prefixPolicy, []byte(r.Hash)), r); err != nil {
			return err
		}
		if err := b.Put(keyPolicyCurrent, []byte(r.Hash)); err != nil {
			return err
		}
		st.wake() // the scheduler re-judges waiting checks under the new policy
		rec, changed = r, true
		return nil
	}, hintGet(bucketPolicy, keyPolicyCurrent))
	return rec, changed, err
}

func getPolicyRecord(tx Tx, hash string) (*PolicyRecord, error) {
	r, err := getJSON[PolicyRecord](tx.Bucket(bucketPolicy), join(prefixPolicy, []byte(hash)))
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("policy %s is recorded as current but missing", hash)
	}
	return r, nil
}

// CurrentPolicy returns the policy in force, or nil when none was recorded
// (then no rules apply).
func (s *Store) CurrentPolicy(ctx context.Context) (*PolicyRecord, error) {
	var rec *PolicyRecord
	err := s.view(func(tx Tx) error {
		cur := tx.Bucket(bucketPolicy).Get(keyPolicyCurrent)
		if cur == nil {
			return nil
		}
		var err error
		rec, err = getPolicyRecord(tx, string(cur))
		return err
	})
	return rec, err
}

// PolicyByHash returns a recorded policy.
func (s *Store) PolicyByHash(ctx context.Context, hash string) (*PolicyRecord, error) {
	var rec *PolicyRecord
	err := s.view(func(tx Tx) error {
		r, err := getJSON[PolicyRecord](tx.Bucket(bucketPolicy), join(prefixPolicy, []byte(hash)))
		if err != nil {
			return err
		}
		if r == nil {
			return ica.Errorf(ica.ENOTFOUND, "no policy %s is recorded", hash)
		}
		rec = r
		return nil
	})
	return rec, err
}

// policyTx returns the policy in force and its recorded hash ("" when none
// is recorded: no rules).
func (s *Store) policyTx(tx Tx) (*policy.Compiled, string, error) {
	h := tx.Bucket(bucketPolicy).Get(keyPolicyCurrent)
	if h == nil {
		return policy.Empty(), "", nil
	}
	hash := string(h)
	if c, ok := s.policies.Load(hash); ok {
		return c.(*policy.Compiled), hash, nil
	}
	rec, err := getPolicyRecord(tx, hash)
	if err != nil {
		return nil, "", err
	}
	c, err := policy.Compile(rec.Policy)
	if err != nil {
		return nil, "", fmt.Errorf("recorded policy %s: %w", hash, err)
	}
	s.policies.Store(hash, c)
	return c, hash, nil
}

// Gate is what the gate says about an approval now, under the policy in
// force.
type Gate = policy.Verdict

// factsTx gathers what the gate of a needs to know. Without withLock the
// lock and queue are left out (is the approval otherwise deployable?).
func (s *Store) factsTx(tx Tx, now time.Time, pol *policy.Compiled, a *ica.Approval, withLock bool) (policy.Facts, *policy.TargetRules, error) {
	tr := pol.Target(a.Target)
	r, err := mustRun(tx, a.RunID)
	if err != nil {
		return policy.Facts{}, nil, err
	}
	f := policy.Facts{Now: now, RunID: a.RunID, Branch: a.Branch, Status: a.Status, Decided: a.LastDecision(),
		RunFinished: r.Final(), Used: a.Use != nil, UseWindow: pol.UseWindow()}
	if a.NotBefore != nil {
		f.NotBefore = *a.NotBefore
	}
	if req := tr.Requires; req != nil {
		f.Promotion, f.PromotionMissing, err = evidenceTx(tx, req.Target, a.Commit, a.ArtifactDigest)
		if err != nil {
			return f, nil, err
		}
	}
	if s.opt.Freeze != nil {
		if f.Freeze, err = s.opt.Freeze(readTx{tx}, a.Target); err != nil {
			return f, nil, err
		}
	}
	if withLock && tr.Exclusive() {
		key := tr.LockKey(a.PipelineName)
		l, err := getLock(tx, key)
		if err != nil {
			return f, nil, err
		}
		if l != nil && l.RunID != a.RunID && now.Before(l.ExpiresAt) {
			f.LockHolder, f.LockUntil = l.RunID, l.ExpiresAt
		}
		// The holder, and a run that used its approval already, wait for
		// nobody in the queue.
		if f.LockHolder == "" && a.Use == nil && (l == nil || l.RunID != a.RunID) {
			if f.QueuedBehind, err = s.queuedBehindTx(tx, now, pol, a, key); err != nil {
				return f, nil, err
			}
		}
	}
	return f, tr, nil
}

// gateTx judges the gate of a now.
func (s *Store) gateTx(tx Tx, now time.Time, a *ica.Approval) (*Gate, error) {
	pol, hash, err := s.policyTx(tx)
	if err != nil {
		return nil, err
	}
	f, tr, err := s.factsTx(tx, now, pol, a, true)
	if err != nil {
		return nil, err
	}
	v := tr.Evaluate(f)
	v.PolicyHash = hash
	return &v, nil
}

// ApprovalGate returns an approval and what its gate says now. It changes
// nothing.
func (s *Store) ApprovalGate(ctx context.Context, id string) (*ica.Approval, *Gate, error) {
	if err := ica.ValidID("approval_id", id); err != nil {
		return nil, nil, err
	}
	var a *ica.Approval
	var g *Gate
	err := s.view(func(tx Tx) error {
		var err error
		if a, err = mustApproval(tx, id); err != nil {
			return err
		}
		g, err = s.gateTx(tx, s.clock.Now(), a)
		return err
	})
	return a, g, err
}

// Explain judges every rule for a run's deployment to a target: for its
// newest approval to that target, or as if it asked now.
func (s *Store) Explain(ctx context.Context, runID, target string) (*policy.Explanation, error) {
	if err := ica.ValidID("run_id", runID); err != nil {
		return nil, err
	}
	switch target {
	case ica.TargetStaging, ica.TargetProduction:
	default:
		return nil, ica.FieldErrorf(ica.EINVALID, "target", "target %q is not staging or production", target)
	}
	var out *policy.Explanation
	err := s.view(func(tx Tx) error {
		r, err := mustRun(tx, runID)
		if err != nil {
			return err
		}
		a, err := latestApprovalTx(tx, runID, target)
		if err != nil {
			return err
		}
		if a == nil {
			a = &ica.Approval{ID: "(none yet)", RunID: r.RunID, PipelineName: r.PipelineName, Branch: r.Branch,
				Commit: r.Commit, ArtifactDigest: r.ArtifactDigest, Target: target, Status: ica.ApprovalPending}
		}
		pol, hash, err := s.policyTx(tx)
		if err != nil {
			return err
		}
		f, tr, err := s.factsTx(tx, s.clock.Now(), pol, a, true)
		if err != nil {
			return err
		}
		v := tr.Evaluate(f)
		out = &policy.Explanation{RunID: runID, Target: target, Status: a.Status, PolicyHash: hash, Verdict: v, Checks: v.Checks}
		if a.CreatedAt.IsZero() {
			out.Status = "not requested"
		} else {
			out.ApprovalID = a.ID
		}
		return nil
	})
	return out, err
}

// latestApprovalTx returns the run's newest approval to target (nil: none).
func latestApprovalTx(tx Tx, runID, target string) (*ica.Approval, error) {
	var found *ica.Approval
	err := forRunApprovals(tx, runID, func(a *ica.Approval) error {
		if a.Target == target {
			found = a
		}
		return nil
	})
	return found, err
}

// forRunApprovals calls fn for a run's approvals, oldest first.
func forRunApprovals(tx Tx, runID string, fn func(a *ica.Approval) error) error {
	prefix := join([]byte(runID), sep)
	c := tx.Bucket(bucketApprByRun).Cursor()
	for k, _ := c.Seek(prefix); k != nil && len(k) > len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
		a, err := mustApproval(tx, string(k[len(prefix)+8:]))
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
	}
	return nil
}

// evidenceTx finds the latest deployment report of commit to target (with
// the same artifact digest when digest is set) and says whether it counts.
func evidenceTx(tx Tx, target, commit, digest string) (*ica.Deployment, string, error) {
	prefix := deploymentPrefix(commit, target)
	c := tx.Bucket(bucketDeployments).Cursor()
	k, v := c.Seek(append(append([]byte{}, prefix...), 0xff))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	otherDigest := ""
	for ; k != nil && strings.HasPrefix(string(k), string(prefix)); k, v = c.Prev() {
		var d ica.Deployment
		if err := json.Unmarshal(v, &d); err != nil {
			return nil, "", fmt.Errorf("deployment report %q: %w", k, err)
		}
		if digest != "" && !strings.EqualFold(d.ArtifactDigest, digest) {
			if otherDigest == "" {
				otherDigest = fmt.Sprintf("; run %s deployed it to %s with artifact digest %s, not %s", d.RunID, target, orNone(d.ArtifactDigest), digest)
			}
			continue
		}
		switch {
		case d.Result != ica.DeploySucceeded:
			return nil, fmt.Sprintf("the latest deployment of commit %s to %s (run %s, %s) did not succeed: %s",
				short(commit), target, d.RunID, d.DeployedAt.UTC().Format(time.RFC3339), d.Result), nil
		case d.ApprovalID == "":
			return nil, fmt.Sprintf("the latest deployment of commit %s to %s (run %s) was not made through a used ICA approval",
				short(commit), target, d.RunID), nil
		}
		return &d, "", nil
	}
	return nil, fmt.Sprintf("no successful deployment of commit %s to %s is recorded (a %s approval used by a run that then reports {\"event_type\": \"deployment\", \"event_data\": {\"target\": %q, \"result\": \"succeeded\"}})%s",
		short(commit), target, target, target, otherDigest), nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func deploymentPrefix(commit, target string) []byte {
	return join([]byte(strings.ToLower(commit)), sep, []byte(target), sep)
}
