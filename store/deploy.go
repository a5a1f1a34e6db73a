package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/policy"
)

// deployLock is the one deployment at a time of a lock key (a target, or a
// pipeline and a target).
type deployLock struct {
	Lock       string    `json:"lock"`
	ApprovalID string    `json:"approval_id"`
	RunID      string    `json:"run_id"`
	Pipeline   string    `json:"pipeline"`
	Target     string    `json:"target"`
	TakenAt    time.Time `json:"taken_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

func getLock(tx Tx, key string) (*deployLock, error) {
	return getJSON[deployLock](tx.Bucket(bucketDeployLocks), []byte(key))
}

// closedGate is the refusal of a use while the gate is shut (409,
// can_deploy: false, waiting_for …).
func closedGate(a *ica.Approval, g *Gate) error {
	msg := "the gate of approval " + a.ID + " is closed"
	if len(g.Reasons) > 0 {
		msg += ": " + strings.Join(g.Reasons, "; ")
	}
	d := map[string]any{"covers": true, "can_deploy": false, "waiting_for": g.WaitingFor, "usable": g.Usable,
		"approval_id": a.ID, "status": a.Status, "reasons": g.Reasons}
	if g.OpensAt != nil {
		d["opens_at"] = g.OpensAt
	}
	if g.QueuedBehind != "" {
		d["queued_behind"] = g.QueuedBehind
	}
	if g.PolicyHash != "" {
		d["policy_hash"] = g.PolicyHash
	}
	return &ica.Refusal{Err: ica.Errorf(ica.ECONFLICT, "%s", msg), Details: d}
}

// UseApproval is the one call that opens the gate: it checks that the
// approval covers this run, commit and digest, judges every rule now, takes
// the deployment lock, and records the use. A repeat by the same run is
// harmless. A refusal changes nothing.
func (s *Store) UseApproval(ctx context.Context, id string, in *ica.UseRequest, actor string) (a *ica.Approval, g *Gate, err error) {
	if err := ica.ValidID("approval_id", id); err != nil {
		return nil, nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, nil, err
	}
	err = s.update(func(tx Tx, st *txState) error {
		a, g = nil, nil
		cur, err := mustApproval(tx, id)
		if err != nil {
			return err
		}
		if why := cur.Coverage(in.RunID, in.Commit, in.ArtifactDigest); why != "" {
			return ica.NotCovered(cur, why)
		}
		a, g, err = s.useTx(tx, st, cur, in.Commit, in.ArtifactDigest, actor, "api")
		return err
	}, hintGet(bucketApprovals, []byte(id)), hintGet(bucketPolicy, keyPolicyCurrent))
	return a, g, err
}

// useTx judges the gate of a and, when it is open, records the use and
// takes the lock. It returns the closed-gate refusal otherwise.
func (s *Store) useTx(tx Tx, st *txState, a *ica.Approval, commit, digest, actor, via string) (*ica.Approval, *Gate, error) {
	pol, hash, err := s.policyTx(tx)
	if err != nil {
		return nil, nil, err
	}
	f, tr, err := s.factsTx(tx, st.now, pol, a, true)
	if err != nil {
		return nil, nil, err
	}
	v := tr.Evaluate(f)
	v.PolicyHash = hash
	g := &v
	if !v.CanDeploy {
		return nil, nil, closedGate(a, g)
	}
	lockKey := ""
	if tr.Exclusive() {
		lockKey = tr.LockKey(a.PipelineName)
		l, err := getLock(tx, lockKey)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case l != nil && l.RunID == a.RunID:
			// Held already by this run: a repeat.
		case a.Use != nil && ranDeployment(tx, a):
			// Used and reported: nothing left to lock.
			lockKey = ""
		default:
			if l != nil {
				if err := s.releaseLockTx(tx, st, l, "timeout"); err != nil {
					return nil, nil, err
				}
			}
			nl := &deployLock{Lock: lockKey, ApprovalID: a.ID, RunID: a.RunID, Pipeline: a.PipelineName, Target: a.Target,
				TakenAt: st.now, ExpiresAt: st.now.Add(tr.LockTimeout.D())}
			if err := putJSON(tx.Bucket(bucketDeployLocks), []byte(lockKey), nl); err != nil {
				return nil, nil, err
			}
			st.wake() // the scheduler records the lock's timeout
		}
	}
	if err := dequeueTx(tx, a.ID); err != nil {
		return nil, nil, err
	}
	if a.Use != nil {
		return a, g, nil // a repeat by the same run is harmless
	}
	prev := *a
	n := *a
	n.Use = &ica.ApprovalUse{RunID: a.RunID, Commit: commit, ArtifactDigest: digest, At: st.now, Actor: actor, Lock: lockKey, PolicyHash: hash}
	if n.Use.Commit == "" {
		n.Use.Commit = a.Commit
	}
	n.AddPolicyHash(hash)
	n.UpdatedAt = st.now
	n.Version++
	data := map[string]any{"approval_id": n.ID, "run_id": n.RunID, "target": n.Target, "commit": n.Use.Commit,
		"artifact_digest": digest, "lock": lockKey, "policy_hash": hash, "via": via}
	if n.Status == ica.ApprovalBypassed && len(v.Overrode) > 0 {
		data["overrode"] = v.Overrode
	}
	e, err := s.appendLedger(tx, st.now, KindApprovalUsed, n.ID, actor, data)
	if err != nil {
		return nil, nil, err
	}
	n.LastSeq = e.Seq
	if err := putApproval(tx, &prev, &n); err != nil {
		return nil, nil, err
	}
	if err := s.enqueue(tx, st, s.opt.Notifier.ApprovalMessages(&prev, &n)); err != nil {
		return nil, nil, err
	}
	return &n, g, nil
}

// ranDeployment reports whether the run has reported a deployment to the
// approval's target since it used it.
func ranDeployment(tx Tx, a *ica.Approval) bool {
	if a.Use == nil {
		return false
	}
	d, _, _ := evidenceTx(tx, a.Target, a.Commit, "")
	return d != nil && d.RunID == a.RunID && !d.DeployedAt.Before(a.Use.At)
}

// releaseLockTx records the end of a lock and drops it.
func (s *Store) releaseLockTx(tx Tx, st *txState, l *deployLock, reason string) error {
	if _, err := s.appendLedger(tx, st.now, KindLockReleased, l.Lock, "ica", map[string]any{
		"lock": l.Lock, "run_id": l.RunID, "approval_id": l.ApprovalID, "taken_at": l.TakenAt, "reason": reason}); err != nil {
		return err
	}
	st.wake() // waiting checks may deploy now
	return tx.Bucket(bucketDeployLocks).Delete([]byte(l.Lock))
}

// releaseRunLocksTx releases the locks a run holds (to one target, or all).
func (s *Store) releaseRunLocksTx(tx Tx, st *txState, runID, target, reason string) error {
	var held []*deployLock
	if err := forLocks(tx, func(l *deployLock) error {
		if l.RunID == runID && (target == "" || l.Target == target) {
			held = append(held, l)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, l := range held {
		if err := s.releaseLockTx(tx, st, l, reason); err != nil {
			return err
		}
	}
	return nil
}

// enterQueueTx puts an approval that became approved into the queue of its
// lock, in the order approvals became approved. Under "latest" the run
// started last supersedes older waiting ones of the same pipeline.
func (s *Store) enterQueueTx(tx Tx, st *txState, pol *policy.Compiled, a *ica.Approval) error {
	tr := pol.Target(a.Target)
	if !tr.Exclusive() || a.Status != ica.ApprovalApproved {
		return nil
	}
	key := tr.LockKey(a.PipelineName)
	if tr.Target.Exclusive == policy.ExclusiveLatest {
		run, err := mustRun(tx, a.RunID)
		if err != nil {
			return err
		}
		newer := func(b *ica.Approval) (bool, error) {
			br, err := mustRun(tx, b.RunID)
			if err != nil {
				return false, err
			}
			return br.StartTime.After(run.StartTime) || (br.StartTime.Equal(run.StartTime) && b.RunID > a.RunID), nil
		}
		// A newer run of the pipeline already deploying makes this one moot.
		if l, err := getLock(tx, key); err != nil {
			return err
		} else if l != nil && l.Pipeline == a.PipelineName && l.RunID != a.RunID {
			holder, err := mustApproval(tx, l.ApprovalID)
			if err != nil {
				return err
			}
			if nw, err := newer(holder); err != nil {
				return err
			} else if nw {
				return s.supersedeTx(tx, st, pol, a, holder.RunID)
			}
		}
		var older []*ica.Approval
		err = s.forQueue(tx, key, func(b *ica.Approval) error {
			if b.ID == a.ID || b.PipelineName != a.PipelineName || b.Status != ica.ApprovalApproved {
				return nil
			}
			nw, err := newer(b)
			if err != nil {
				return err
			}
			if nw {
				return errSupersededBy{b.RunID}
			}
			older = append(older, b)
			return nil
		})
		if sb, ok := err.(errSupersededBy); ok {
			return s.supersedeTx(tx, st, pol, a, sb.runID)
		} else if err != nil {
			return err
		}
		for _, b := range older {
			if err := s.supersedeTx(tx, st, pol, b, a.RunID); err != nil {
				return err
			}
		}
	}
	if tx.Bucket(bucketDeployQueuePos).Get([]byte(a.ID)) != nil {
		return nil
	}
	q := tx.Bucket(bucketDeployQueue)
	seq, err := q.NextSequence()
	if err != nil {
		return err
	}
	qk := join([]byte(key), sep, u64(seq), []byte(a.ID))
	if err := q.Put(qk, nil); err != nil {
		return err
	}
	return tx.Bucket(bucketDeployQueuePos).Put([]byte(a.ID), qk)
}

type errSupersededBy struct{ runID string }

func (e errSupersededBy) Error() string { return "superseded by run " + e.runID }

// supersedeTx marks a waiting approval superseded by a newer run.
func (s *Store) supersedeTx(tx Tx, st *txState, pol *policy.Compiled, a *ica.Approval, by string) error {
	t := ica.Transition{Action: ica.ActSupersede, By: ica.Decider{Username: "ica"}, Via: "policy", At: st.now,
		Comment: fmt.Sprintf("run %s of %s started later and supersedes run %s (exclusive: latest)", by, a.PipelineName, a.RunID)}
	n, err := a.Apply(t)
	if err != nil {
		return err
	}
	n.SupersededBy = by
	if err := s.recordTransition(tx, st, a, n, t, "ica", map[string]any{"superseded_by": by}); err != nil {
		return err
	}
	if err := dequeueTx(tx, a.ID); err != nil {
		return err
	}
	return s.settleChecksTx(tx, st, n)
}

// forQueue calls fn for the approvals queued for a lock, in queue order.
func (s *Store) forQueue(tx Tx, key string, fn func(a *ica.Approval) error) error {
	prefix := join([]byte(key), sep)
	var ids []string
	c := tx.Bucket(bucketDeployQueue).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix)+8:]))
	}
	for _, id := range ids {
		a, err := mustApproval(tx, id)
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
	}
	return nil
}

func dequeueTx(tx Tx, approvalID string) error {
	pos := tx.Bucket(bucketDeployQueuePos)
	qk := pos.Get([]byte(approvalID))
	if qk == nil {
		return nil
	}
	if err := tx.Bucket(bucketDeployQueue).Delete(bytes.Clone(qk)); err != nil {
		return err
	}
	return pos.Delete([]byte(approvalID))
}

// readySince is when an approval became deployable as far as its own
// time rules go (its last decision, not_before, the promotion bake); the
// target's windows, blackouts and freezes are the same for every approval
// queued for one lock, so they do not change the order.
func readySince(pol *policy.Compiled, a *ica.Approval) time.Time {
	t := a.LastDecision()
	if a.NotBefore != nil && a.NotBefore.After(t) {
		t = *a.NotBefore
	}
	if r := pol.Target(a.Target).Requires; r != nil && a.Promotion != nil {
		if b := a.Promotion.DeployedAt.Add(r.Bake.D()); b.After(t) {
			t = b
		}
	}
	return t
}

// queuedBehindTx returns the run of the approval ahead of a in its lock's
// queue that could deploy now (""). The queue is in the order in which
// approvals became otherwise deployable (readySince, then the order they
// were approved); approvals that wait for something else do not hold it
// up, and an approval that is not queued waits behind every queued one.
func (s *Store) queuedBehindTx(tx Tx, now time.Time, pol *policy.Compiled, a *ica.Approval, key string) (string, error) {
	mine := tx.Bucket(bucketDeployQueuePos).Get([]byte(a.ID))
	myReady := readySince(pol, a)
	prefix := join([]byte(key), sep)
	type entry struct {
		k  []byte
		id string
	}
	var queued []entry
	c := tx.Bucket(bucketDeployQueue).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		queued = append(queued, entry{bytes.Clone(k), string(k[len(prefix)+8:])})
	}
	best, bestReady := "", time.Time{}
	for _, e := range queued {
		if e.id == a.ID {
			continue
		}
		b, err := mustApproval(tx, e.id)
		if err != nil {
			return "", err
		}
		ready := readySince(pol, b)
		ahead := mine == nil || ready.Before(myReady) || (ready.Equal(myReady) && bytes.Compare(e.k, mine) < 0)
		if !ahead || (best != "" && !ready.Before(bestReady)) {
			continue
		}
		f, tr, err := s.factsTx(tx, now, pol, b, false)
		if err != nil {
			return "", err
		}
		if tr.Evaluate(f).CanDeploy {
			best, bestReady = b.RunID, ready
		}
	}
	return best, nil
}

// VoidApproval voids an approval at the request of its run's credential:
// it will never open the gate. An approval already used cannot be voided.
func (s *Store) VoidApproval(ctx context.Context, id, reason, actor string) (*ica.Approval, error) {
	if err := ica.ValidID("approval_id", id); err != nil {
		return nil, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return nil, ica.FieldErrorf(ica.EINVALID, "reason", "reason is required to void an approval")
	}
	if len(reason) > 2000 {
		return nil, ica.FieldErrorf(ica.EINVALID, "reason", "reason is longer than 2000 bytes")
	}
	var out *ica.Approval
	err := s.update(func(tx Tx, st *txState) error {
		out = nil
		a, err := mustApproval(tx, id)
		if err != nil {
			return err
		}
		t := ica.Transition{Action: ica.ActVoid, By: ica.Decider{Username: actor}, Comment: "voided: " + reason, Via: "api", At: st.now}
		n, err := a.Apply(t)
		if err != nil {
			return err
		}
		if err := s.recordTransition(tx, st, a, n, t, actor); err != nil {
			return err
		}
		if err := dequeueTx(tx, a.ID); err != nil {
			return err
		}
		out = n
		return s.settleChecksTx(tx, st, n)
	}, hintGet(bucketApprovals, []byte(id)))
	return out, err
}

// recordDeploymentTx indexes a deployment report and releases the lock the
// run holds for that target.
func (s *Store) recordDeploymentTx(tx Tx, st *txState, r *ica.Run, rep *ica.DeploymentReport, ledgerSeq uint64) error {
	d := ica.Deployment{Target: rep.Target, RunID: r.RunID, Commit: r.Commit, Result: rep.Result, DeployedAt: st.now, LedgerSeq: ledgerSeq}
	err := forRunApprovals(tx, r.RunID, func(a *ica.Approval) error {
		if a.Target == rep.Target && a.Use != nil {
			d.ApprovalID, d.ArtifactDigest = a.ID, a.ArtifactDigest
		}
		return nil
	})
	if err != nil {
		return err
	}
	key := join(deploymentPrefix(r.Commit, rep.Target), timeKey(st.now), []byte(r.RunID))
	if err := putJSON(tx.Bucket(bucketDeployments), key, &d); err != nil {
		return err
	}
	return s.releaseRunLocksTx(tx, st, r.RunID, rep.Target, "deployment reported")
}

// runFinishedTx releases what a finished run held: its locks, its places
// in the queues; its linked checks fail.
func (s *Store) runFinishedTx(tx Tx, st *txState, runID string) error {
	if err := s.releaseRunLocksTx(tx, st, runID, "", "run finished"); err != nil {
		return err
	}
	return forRunApprovals(tx, runID, func(a *ica.Approval) error {
		if err := dequeueTx(tx, a.ID); err != nil {
			return err
		}
		return s.settleChecksTx(tx, st, a)
	})
}

// settleChecksTx answers the Azure Pipelines checks (callback mode) linked
// to an approval once its gate opens (ICA uses the approval on the check's
// behalf: nothing else opens the gate) or can never open.
func (s *Store) settleChecksTx(tx Tx, st *txState, a *ica.Approval) error {
	prefix := join([]byte(a.ID), sep)
	var keys [][]byte
	var cbs []ica.CheckCallback
	c := tx.Bucket(bucketChecks).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var cb ica.CheckCallback
		if err := json.Unmarshal(v, &cb); err != nil {
			return err
		}
		keys = append(keys, bytes.Clone(k))
		cbs = append(cbs, cb)
	}
	if len(keys) == 0 {
		return nil
	}
	result := ""
	g, err := s.gateTx(tx, st.now, a)
	if err != nil {
		return err
	}
	switch {
	case g.CanDeploy:
		used, _, err := s.useTx(tx, st, a, a.Commit, a.ArtifactDigest, "ado-check", "ado-check")
		if err != nil {
			return err
		}
		a, result = used, "succeeded"
	case !g.Usable:
		result = "failed"
	default:
		return nil // still waiting: the scheduler looks again
	}
	var msgs []*ica.OutboxMessage
	for i, k := range keys {
		cb := cbs[i]
		// The job token leaves its bucket with the message that uses it.
		sealed, err := takeJobToken(tx, k)
		if err != nil {
			return err
		}
		m := checkMessage(a, &cb, sealed)
		if result == "failed" {
			raw, _ := json.Marshal(ica.CheckCompletion{Callback: cb, ApprovalID: a.ID, Status: a.Status, Result: result})
			m.Payload = raw
		}
		msgs = append(msgs, m)
		if _, err := s.appendLedger(tx, st.now, KindCheckCompleted, a.ID, "ica", map[string]any{
			"approval_id": a.ID, "task_instance_id": cb.TaskInstanceID, "plan_id": cb.PlanID, "result": result,
			"reasons": g.Reasons}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketChecks).Delete(k); err != nil {
			return err
		}
	}
	return s.enqueue(tx, st, msgs)
}

// PolicyTick does the deployment policy's scheduled work: it records
// locks whose timeout passed and settles the checks whose gate opened (or
// closed for good). It returns when it should run next (zero: nothing
// waits). It writes only when there is something to record.
func (s *Store) PolicyTick(ctx context.Context) (time.Time, error) {
	work := false
	next, err := s.policyScan(&work)
	if err != nil || !work {
		return next, err
	}
	err = s.update(func(tx Tx, st *txState) error {
		var expired []*deployLock
		if err := forLocks(tx, func(l *deployLock) error {
			if !st.now.Before(l.ExpiresAt) {
				expired = append(expired, l)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, l := range expired {
			if err := s.releaseLockTx(tx, st, l, fmt.Sprintf("lock_timeout passed (%s)", l.ExpiresAt.Sub(l.TakenAt))); err != nil {
				return err
			}
		}
		for _, id := range checkApprovals(tx) {
			a, err := mustApproval(tx, id)
			if err != nil {
				return err
			}
			if err := s.settleChecksTx(tx, st, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return next, err
	}
	work = false
	return s.policyScan(&work)
}

// policyScan looks, without writing, for what PolicyTick must do now
// (work) and when it must look next.
func (s *Store) policyScan(work *bool) (time.Time, error) {
	var next time.Time
	soonest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	now := s.clock.Now()
	err := s.view(func(tx Tx) error {
		if err := forLocks(tx, func(l *deployLock) error {
			if !now.Before(l.ExpiresAt) {
				*work = true
			} else {
				soonest(l.ExpiresAt)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, id := range checkApprovals(tx) {
			a, err := mustApproval(tx, id)
			if err != nil {
				return err
			}
			g, err := s.gateTx(tx, now, a)
			if err != nil {
				return err
			}
			if g.CanDeploy || !g.Usable {
				*work = true
				continue
			}
			if g.OpensAt != nil && g.OpensAt.After(now) {
				soonest(*g.OpensAt)
			}
			if g.UsableUntil != nil && g.UsableUntil.After(now) {
				soonest(*g.UsableUntil)
			}
		}
		return nil
	})
	return next, err
}

func forLocks(tx Tx, fn func(l *deployLock) error) error {
	var locks []*deployLock
	c := tx.Bucket(bucketDeployLocks).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var l deployLock
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("deploy lock %q: %w", k, err)
		}
		locks = append(locks, &l)
	}
	for _, l := range locks {
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

// checkApprovals lists the approvals that have checks waiting for an answer.
func checkApprovals(tx Tx) []string {
	var ids []string
	c := tx.Bucket(bucketChecks).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		id, _, _ := bytes.Cut(k, sep)
		if len(ids) == 0 || ids[len(ids)-1] != string(id) {
			ids = append(ids, string(id))
		}
	}
	return ids
}
