package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

func getApproval(tx Tx, id string) (*ica.Approval, error) {
	return getJSON[ica.Approval](tx.Bucket(bucketApprovals), []byte(id))
}

func mustApproval(tx Tx, id string) (*ica.Approval, error) {
	a, err := getApproval(tx, id)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, ica.Errorf(ica.ENOTFOUND, "approval %s not found", id)
	}
	return a, nil
}

func deadlineKey(a *ica.Approval) []byte { return join(timeKey(a.ExpiresAt), []byte(a.ID)) }

// putApproval stores a and keeps the deadline index to the approvals still open.
func putApproval(tx Tx, prev, a *ica.Approval) error {
	if prev != nil && !prev.Final() {
		if err := tx.Bucket(bucketApprDeadline).Delete(deadlineKey(prev)); err != nil {
			return err
		}
	}
	if !a.Final() {
		if err := tx.Bucket(bucketApprDeadline).Put(deadlineKey(a), nil); err != nil {
			return err
		}
	}
	return putJSON(tx.Bucket(bucketApprovals), []byte(a.ID), a)
}

// ReadTx gives gates read access to the state inside the creating transaction.
type ReadTx interface {
	// PendingApprovals calls fn for every approval that is not final.
	PendingApprovals(fn func(a *ica.Approval) error) error
}

type readTx struct{ tx Tx }

func (r readTx) PendingApprovals(fn func(a *ica.Approval) error) error {
	return forPending(r.tx, fn)
}

func forPending(tx Tx, fn func(a *ica.Approval) error) error {
	c := tx.Bucket(bucketApprDeadline).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		a, err := mustApproval(tx, string(k[8:]))
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
	}
	return nil
}

// RequestApproval creates an approval for a run, or returns the open (or
// approved and still usable) one that a previous identical request created
// (created=false), so a pipeline that retries never gets two cards. A
// refusal by the deployment policy (branch, promotion) is recorded in the
// ledger and answered 422.
func (s *Store) RequestApproval(ctx context.Context, in *ica.ApprovalRequest, actor string) (ap *ica.Approval, created bool, err error) {
	if err := in.Validate(); err != nil {
		return nil, false, err
	}
	if err := s.precheckApproval(in); err != nil {
		return nil, false, err
	}
	var refusal error
	err = s.update(func(tx Tx, st *txState) error {
		refusal = nil
		ap, created, refusal, err = s.requestApprovalTx(tx, st, in, actor)
		return err
	}, hintGet(bucketRuns, []byte(in.RunID)), hintGet(bucketPolicy, keyPolicyCurrent))
	if err == nil && refusal != nil {
		return nil, false, refusal
	}
	return ap, created, err
}

// RequestApprovalWithCheck is RequestApproval for an Azure Pipelines check
// in callback mode: it also keeps the callback, so the decision is posted to
// the plan when the approval is final (at once if it already is).
func (s *Store) RequestApprovalWithCheck(ctx context.Context, in *ica.ApprovalRequest, cb *ica.CheckCallback, actor string) (ap *ica.Approval, created bool, err error) {
	if err := in.Validate(); err != nil {
		return nil, false, err
	}
	if err := cb.Validate(); err != nil {
		return nil, false, err
	}
	if err := s.precheckApproval(in); err != nil {
		return nil, false, err
	}
	// The job token is sealed before the writer, and kept only sealed
	// (jobtokens.go).
	kept, sealed, err := s.sealJobToken(cb)
	if err != nil {
		return nil, false, err
	}
	cb = kept
	var refusal error
	err = s.update(func(tx Tx, st *txState) error {
		ap, created, refusal, err = s.requestApprovalTx(tx, st, in, actor)
		if err != nil || refusal != nil {
			return err
		}
		key := checkKey(ap.ID, cb.TaskInstanceID)
		// Everything of the callback but the job's token is in the entry,
		// so the stored record is derivable from the ledger (ica check).
		e, err := s.appendLedger(tx, st.now, KindApprovalCheckLinked, ap.ID, actor, checkLinkedData(ap.ID, cb))
		if err != nil {
			return err
		}
		linked := *cb
		linked.LinkedSeq = e.Seq
		if err := putJSON(tx.Bucket(bucketChecks), key, &linked); err != nil {
			return err
		}
		// The sealed job token waits beside the check until its answer
		// is queued (jobtokens.go).
		if err := tx.Bucket(bucketJobTokens).Put(key, sealed); err != nil {
			return err
		}
		// Answered at once when the gate is open (or can never open);
		// otherwise when it opens (PolicyTick).
		st.wake()
		return s.settleChecksTx(tx, st, ap)
	}, hintGet(bucketRuns, []byte(in.RunID)), hintGet(bucketPolicy, keyPolicyCurrent))
	if err == nil && refusal != nil {
		return nil, false, refusal
	}
	return ap, created, err
}

func checkMessage(a *ica.Approval, cb *ica.CheckCallback, sealedToken []byte) *ica.OutboxMessage {
	raw, _ := json.Marshal(ica.CheckCompletion{Callback: *cb, ApprovalID: a.ID, Status: a.Status, Result: ica.CheckResult(a.Status)})
	return &ica.OutboxMessage{Destination: ica.CheckDestination, Kind: "task.completed",
		Key: "check:" + a.ID + ":" + cb.TaskInstanceID, OrderKey: "check:" + cb.PlanID, Payload: raw, Sealed: sealedToken}
}

// existingApprovalTx decides what a read can decide of an approval
// request: an unknown or finished run is refused, and an earlier request
// for the same run and target that is still open, or approved and still
// usable, answers this one (reuse), or conflicts when its estimate differs.
// The write transaction and the pre-check before the writer both use it,
// so they cannot disagree.
func (s *Store) existingApprovalTx(tx Tx, now time.Time, in *ica.ApprovalRequest) (r *ica.Run, reuse *ica.Approval, err error) {
	if r, err = mustRun(tx, in.RunID); err != nil {
		return nil, nil, err
	}
	if r.Final() {
		return nil, nil, ica.Errorf(ica.ECONFLICT, "run %s finished as %s: a finished run cannot be deployed; start a new run", r.RunID, r.Status)
	}
	err = forRunApprovals(tx, in.RunID, func(old *ica.Approval) error {
		if old.Target != in.DeploymentTarget || reuse != nil {
			return nil
		}
		switch {
		case !old.Final():
		case old.Status == ica.ApprovalApproved || old.Status == ica.ApprovalBypassed:
			g, err := s.gateTx(tx, now, old)
			if err != nil {
				return err
			}
			if !g.Usable {
				return nil // stale: a new request makes a new approval
			}
		default:
			return nil
		}
		reuse = old
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if reuse != nil && reuse.EstimatedCost != *in.EstimatedCost {
		return nil, nil, ica.Errorf(ica.ECONFLICT, "approval %s for run %s to %s is already %s with estimated_cost %.2f",
			reuse.ID, reuse.RunID, reuse.Target, reuse.Status, reuse.EstimatedCost)
	}
	return r, reuse, nil
}

func (s *Store) requestApprovalTx(tx Tx, st *txState, in *ica.ApprovalRequest, actor string) (*ica.Approval, bool, error, error) {
	r, reuse, err := s.existingApprovalTx(tx, st.now, in)
	if err != nil {
		return nil, false, nil, err
	}
	if reuse != nil {
		return reuse, false, nil, nil
	}
	pol, hash, err := s.policyTx(tx)
	if err != nil {
		return nil, false, nil, err
	}
	prefix := join([]byte(in.RunID), sep)
	tr := pol.Target(in.DeploymentTarget)
	refuse := func(field, msg string) (*ica.Approval, bool, error, error) {
		if _, err := s.appendLedger(tx, st.now, KindApprovalRefused, r.RunID, actor, map[string]any{
			"run_id": r.RunID, "target": in.DeploymentTarget, "field": field, "reason": msg, "policy_hash": hash}); err != nil {
			return nil, false, nil, err
		}
		return nil, false, ica.FieldErrorf(ica.EPOLICY, field, "%s", msg), nil
	}
	if !tr.BranchAllowed(r.Branch) {
		return refuse("branch", tr.BranchRefusal(r.RunID, r.Branch))
	}
	var evidence *ica.Deployment
	if req := tr.Requires; req != nil {
		ev, missing, err := evidenceTx(tx, req.Target, r.Commit, r.ArtifactDigest)
		if err != nil {
			return nil, false, nil, err
		}
		if ev == nil {
			return refuse("commit", fmt.Sprintf("%s requires a deployment to %s first: %s", tr.Name, req.Target, missing))
		}
		evidence = ev
	}
	n, err := tx.Bucket(bucketApprovals).NextSequence()
	if err != nil {
		return nil, false, nil, err
	}
	a := &ica.Approval{
		ID: fmt.Sprintf("A-%d", n), RunID: r.RunID, PipelineName: r.PipelineName, Branch: r.Branch,
		Commit: r.Commit, ArtifactDigest: r.ArtifactDigest, RunURL: r.URL, Target: in.DeploymentTarget,
		EstimatedCost: *in.EstimatedCost, Status: ica.ApprovalPending, RequestedBy: r.TriggeredBy,
		Actor: actor, CreatedAt: st.now, UpdatedAt: st.now,
		ExpiresAt: st.now.Add(s.opt.ApprovalTimeout(in.DeploymentTarget)),
		Promotion: evidence,
	}
	if hash != "" {
		a.TechnicalRequired, a.BusinessRequired = tr.TechnicalRequired, tr.BusinessRequired
		if tr.Timeout > 0 {
			a.ExpiresAt = st.now.Add(tr.Timeout.D())
		}
	}
	a.AddPolicyHash(hash)
	a.FinanceRequired = s.opt.FinanceThreshold > 0 && a.EstimatedCost > s.opt.FinanceThreshold
	for _, g := range s.opt.Gates {
		if err := g(readTx{tx}, a); err != nil {
			return nil, false, nil, err
		}
	}
	e, err := s.appendLedger(tx, st.now, ica.KindApprovalRequested, a.ID, actor, a)
	if err != nil {
		return nil, false, nil, err
	}
	a.LastSeq, a.DecisionSeq, a.DecisionHash = e.Seq, e.Seq, e.Hash
	if err := putApproval(tx, nil, a); err != nil {
		return nil, false, nil, err
	}
	if err := tx.Bucket(bucketApprByRun).Put(join(prefix, timeKey(a.CreatedAt), []byte(a.ID)), nil); err != nil {
		return nil, false, nil, err
	}
	if err := s.enqueue(tx, st, s.opt.Notifier.ApprovalMessages(nil, a)); err != nil {
		return nil, false, nil, err
	}
	return a, true, nil, nil
}

// Approval returns one approval.
func (s *Store) Approval(ctx context.Context, id string) (*ica.Approval, error) {
	if err := ica.ValidID("approval_id", id); err != nil {
		return nil, err
	}
	var a *ica.Approval
	err := s.view(func(tx Tx) error {
		var err error
		a, err = mustApproval(tx, id)
		return err
	})
	return a, err
}

// ApprovalByPost returns the approval whose card is the given Mattermost post.
func (s *Store) ApprovalByPost(ctx context.Context, postID string) (*ica.Approval, error) {
	var a *ica.Approval
	err := s.view(func(tx Tx) error {
		id := tx.Bucket(bucketApprByPost).Get([]byte(postID))
		if id == nil {
			return ica.Errorf(ica.ENOTFOUND, "no approval card with post id %s", postID)
		}
		var err error
		a, err = mustApproval(tx, string(id))
		return err
	})
	return a, err
}

// LatestApproval returns the newest approval of a run.
func (s *Store) LatestApproval(ctx context.Context, runID string) (*ica.Approval, error) {
	var a *ica.Approval
	err := s.view(func(tx Tx) error {
		prefix := join([]byte(runID), sep)
		c := tx.Bucket(bucketApprByRun).Cursor()
		k, _ := c.Seek(join(prefix, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k == nil || !bytes.HasPrefix(k, prefix) {
			return ica.Errorf(ica.ENOTFOUND, "run %s has no approval", runID)
		}
		var err error
		a, err = mustApproval(tx, string(k[len(prefix)+8:]))
		return err
	})
	return a, err
}

// Transition applies one state-machine transition atomically with its ledger
// entry and the outbox messages it causes. Of two racing transitions, exactly
// one is applied; the other gets the conflict the state machine reports.
// check, when not nil, is a policy check run inside the transaction on the
// approval as it is then (so two racing clicks see each other's effect).
// The policy in force applies: how many approvers each step needs, who is
// a finance approver; its hash is recorded on the approval.
func (s *Store) Transition(ctx context.Context, id string, t ica.Transition, actor string, check func(a *ica.Approval) error) (*ica.Approval, error) {
	var out *ica.Approval
	err := s.update(func(tx Tx, st *txState) error {
		out = nil
		a, err := mustApproval(tx, id)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(a); err != nil {
				return err
			}
		}
		if t.At.IsZero() {
			t.At = st.now
		}
		pol, hash, err := s.policyTx(tx)
		if err != nil {
			return err
		}
		in := *a
		tr := pol.Target(a.Target)
		if hash != "" && !a.Final() {
			in.TechnicalRequired, in.BusinessRequired = tr.TechnicalRequired, tr.BusinessRequired
		}
		if t.NotBeforeLocal != "" {
			if t.Action != ica.ActApproveBusiness {
				return ica.FieldErrorf(ica.EINVALID, "not_before", "only the business approval can be deferred")
			}
			if t.NotBefore, err = tr.NextLocal(st.now, t.NotBeforeLocal); err != nil {
				return err
			}
		}
		for _, f := range pol.Policy.FinanceApprovers {
			if t.By.Username != "" && strings.EqualFold(strings.TrimPrefix(f, "@"), t.By.Username) {
				t.Finance = true
			}
		}
		var extra map[string]any
		if t.Action == ica.ActBypass {
			// Name the rules the bypass overrides: those that would hold
			// the deployment now.
			pre := in
			pre.Status, pre.Bypass = ica.ApprovalBypassed, &ica.Decision{At: t.At}
			f, trb, err := s.factsTx(tx, st.now, pol, &pre, true)
			if err != nil {
				return err
			}
			overrode := trb.Evaluate(f).Overrode
			if in.Status != ica.ApprovalApproved {
				overrode = append([]string{"approval"}, overrode...)
			}
			extra = map[string]any{"overrode": overrode}
		}
		n, err := in.Apply(t)
		if err != nil {
			return err
		}
		n.AddPolicyHash(hash)
		if err := s.recordTransition(tx, st, a, n, t, actor, extra); err != nil {
			return err
		}
		if err := s.enterQueueTx(tx, st, pol, n); err != nil {
			return err
		}
		if cur, err := mustApproval(tx, id); err != nil {
			return err
		} else {
			n = cur // entering the queue may have superseded it
		}
		if n.Final() {
			if err := s.settleChecksTx(tx, st, n); err != nil {
				return err
			}
			if cur, err := mustApproval(tx, id); err == nil {
				n = cur
			}
		}
		out = n
		return nil
	}, hintGet(bucketApprovals, []byte(id)), hintGet(bucketPolicy, keyPolicyCurrent))
	return out, err
}

func (s *Store) recordTransition(tx Tx, st *txState, prev, n *ica.Approval, t ica.Transition, actor string, extra ...map[string]any) error {
	data := map[string]any{"approval_id": n.ID, "run_id": n.RunID, "action": t.Action, "from": prev.Status,
		"to": n.Status, "by": t.By, "comment": t.Comment, "via": t.Via, "at": t.At}
	if len(n.PolicyHashes) > 0 {
		data["policy_hash"] = n.PolicyHashes[len(n.PolicyHashes)-1]
	}
	if n.NotBefore != nil && (prev.NotBefore == nil || !prev.NotBefore.Equal(*n.NotBefore)) {
		data["not_before"] = n.NotBefore
	}
	if t.Action == ica.ActApproveTechnical || t.Action == ica.ActApproveBusiness {
		data["technical_approvals"], data["technical_required"] = len(n.TechnicalApprovals), max(n.TechnicalRequired, 1)
		data["business_approvals"], data["business_required"] = len(n.BusinessApprovals), max(n.BusinessRequired, 1)
	}
	if t.Finance {
		data["finance"] = true
	}
	// The counts the policy in force asks for, as set on the record (0:
	// one), whenever they change: what a replay applies before the action.
	if n.TechnicalRequired != prev.TechnicalRequired || n.BusinessRequired != prev.BusinessRequired {
		data["requires"] = [2]int{n.TechnicalRequired, n.BusinessRequired}
	}
	for _, e := range extra {
		for k, v := range e {
			data[k] = v
		}
	}
	kind := ica.KindApprovalTransition + n.Status
	if n.Status == prev.Status {
		kind = ica.KindApprovalTransition + "vote" // one of several approvals a step needs
	}
	e, err := s.appendLedger(tx, st.now, kind, n.ID, actor, data)
	if err != nil {
		return err
	}
	n.LastSeq, n.DecisionSeq, n.DecisionHash = e.Seq, e.Seq, e.Hash
	if err := putApproval(tx, prev, n); err != nil {
		return err
	}
	return s.enqueue(tx, st, s.opt.Notifier.ApprovalMessages(prev, n))
}

// ExpireDue expires every open approval whose deadline is at or before now,
// in one transaction, and returns them.
func (s *Store) ExpireDue(ctx context.Context) ([]*ica.Approval, error) {
	var out []*ica.Approval
	err := s.update(func(tx Tx, st *txState) error {
		out = nil
		var due []string
		c := tx.Bucket(bucketApprDeadline).Cursor()
		limit := timeKey(st.now)
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) <= 0; k, _ = c.Next() {
			due = append(due, string(k[8:]))
		}
		for _, id := range due {
			a, err := mustApproval(tx, id)
			if err != nil {
				return err
			}
			t := ica.Transition{Action: ica.ActExpire, By: ica.Decider{Username: "ica"}, Via: "scheduler", At: st.now}
			n, err := a.Apply(t)
			if err != nil {
				return err
			}
			if err := s.recordTransition(tx, st, a, n, t, "scheduler"); err != nil {
				return err
			}
			if err := s.settleChecksTx(tx, st, n); err != nil {
				return err
			}
			out = append(out, n)
		}
		return nil
	})
	return out, err
}

// NextDeadline returns the earliest expiry among open approvals (zero when none).
func (s *Store) NextDeadline(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := s.view(func(tx Tx) error {
		if k, _ := tx.Bucket(bucketApprDeadline).Cursor().First(); k != nil {
			t = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC()
		}
		return nil
	})
	return t, err
}

// PendingApprovals returns the approvals that are not final, by deadline.
func (s *Store) PendingApprovals(ctx context.Context) ([]*ica.Approval, error) {
	var out []*ica.Approval
	err := s.view(func(tx Tx) error {
		return forPending(tx, func(a *ica.Approval) error {
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// UpdateApproval changes fields of an approval that are not part of the state
// machine (the card reference, the reminder flag) and records why in the
// ledger. fn returns the ledger kind and data, or "" to record nothing.
func (s *Store) UpdateApproval(ctx context.Context, id, actor string, fn func(a *ica.Approval) (kind string, data any, msgs []*ica.OutboxMessage, err error)) (*ica.Approval, error) {
	var out *ica.Approval
	err := s.update(func(tx Tx, st *txState) error {
		out = nil
		a, err := mustApproval(tx, id)
		if err != nil {
			return err
		}
		prev := *a
		kind, data, msgs, err := fn(a)
		if err != nil {
			return err
		}
		if prev.Card.PostID != a.Card.PostID && a.Card.PostID != "" {
			if err := tx.Bucket(bucketApprByPost).Put([]byte(a.Card.PostID), []byte(a.ID)); err != nil {
				return err
			}
		}
		if kind == "" {
			if !sameJSON(&prev, a) {
				return ica.Errorf(ica.EINTERNAL, "approval %s: a change without a ledger entry", a.ID)
			}
			out = a
			return s.enqueue(tx, st, msgs)
		}
		e, err := s.appendLedger(tx, st.now, kind, a.ID, actor, data)
		if err != nil {
			return err
		}
		a.LastSeq = e.Seq
		// Every change must be what ica check derives from the entry.
		if d, err := applyApprovalEntry(&prev, e); err != nil || !sameJSON(d, a) {
			return ica.Errorf(ica.EINTERNAL, "approval %s: the change is not derivable from its %s entry (%v)", a.ID, kind, err)
		}
		if err := putApproval(tx, &prev, a); err != nil {
			return err
		}
		if err := s.enqueue(tx, st, msgs); err != nil {
			return err
		}
		out = a
		return nil
	})
	return out, err
}
