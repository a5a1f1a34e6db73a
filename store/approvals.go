package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
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
// approved) one that a previous identical request created (created=false),
// so a pipeline that retries never gets two cards.
func (s *Store) RequestApproval(ctx context.Context, in *ica.ApprovalRequest, actor string) (ap *ica.Approval, created bool, err error) {
	if err := in.Validate(); err != nil {
		return nil, false, err
	}
	err = s.update(func(tx Tx, st *txState) error {
		ap, created, err = s.requestApprovalTx(tx, st, in, actor)
		return err
	})
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
	err = s.update(func(tx Tx, st *txState) error {
		ap, created, err = s.requestApprovalTx(tx, st, in, actor)
		if err != nil {
			return err
		}
		key := join([]byte(ap.ID), sep, []byte(cb.TaskInstanceID))
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
		if ap.Final() {
			return s.enqueue(tx, st, []*ica.OutboxMessage{checkMessage(ap, cb)})
		}
		return nil
	})
	return ap, created, err
}

func checkMessage(a *ica.Approval, cb *ica.CheckCallback) *ica.OutboxMessage {
	raw, _ := json.Marshal(ica.CheckCompletion{Callback: *cb, ApprovalID: a.ID, Status: a.Status, Result: ica.CheckResult(a.Status)})
	return &ica.OutboxMessage{Destination: ica.CheckDestination, Kind: "task.completed",
		Key: "check:" + a.ID + ":" + cb.TaskInstanceID, OrderKey: "check:" + cb.PlanID, Payload: raw}
}

// checkMessages returns the callbacks to post for an approval that became final.
func checkMessages(tx Tx, a *ica.Approval) ([]*ica.OutboxMessage, error) {
	var out []*ica.OutboxMessage
	prefix := join([]byte(a.ID), sep)
	c := tx.Bucket(bucketChecks).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var cb ica.CheckCallback
		if err := json.Unmarshal(v, &cb); err != nil {
			return nil, err
		}
		out = append(out, checkMessage(a, &cb))
	}
	return out, nil
}

func (s *Store) requestApprovalTx(tx Tx, st *txState, in *ica.ApprovalRequest, actor string) (*ica.Approval, bool, error) {
	r, err := mustRun(tx, in.RunID)
	if err != nil {
		return nil, false, err
	}
	if r.Status == ica.RunFailed || r.Status == ica.RunCancelled {
		return nil, false, ica.Errorf(ica.ECONFLICT, "run %s finished as %s and cannot be deployed", r.RunID, r.Status)
	}
	// An earlier request for the same run and target that is still
	// open or approved answers this one.
	prefix := join([]byte(in.RunID), sep)
	c := tx.Bucket(bucketApprByRun).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		old, err := mustApproval(tx, string(k[len(prefix)+8:]))
		if err != nil {
			return nil, false, err
		}
		if old.Target == in.DeploymentTarget && (!old.Final() || old.Status == ica.ApprovalApproved || old.Status == ica.ApprovalBypassed) {
			if old.EstimatedCost != *in.EstimatedCost {
				return nil, false, ica.Errorf(ica.ECONFLICT, "approval %s for run %s to %s is already %s with estimated_cost %.2f",
					old.ID, old.RunID, old.Target, old.Status, old.EstimatedCost)
			}
			return old, false, nil
		}
	}
	n, err := tx.Bucket(bucketApprovals).NextSequence()
	if err != nil {
		return nil, false, err
	}
	a := &ica.Approval{
		ID: fmt.Sprintf("A-%d", n), RunID: r.RunID, PipelineName: r.PipelineName, Branch: r.Branch,
		Commit: r.Commit, ArtifactDigest: r.ArtifactDigest, RunURL: r.URL, Target: in.DeploymentTarget,
		EstimatedCost: *in.EstimatedCost, Status: ica.ApprovalPending, RequestedBy: r.TriggeredBy,
		Actor: actor, CreatedAt: st.now, UpdatedAt: st.now,
		ExpiresAt: st.now.Add(s.opt.ApprovalTimeout(in.DeploymentTarget)),
	}
	a.FinanceRequired = s.opt.FinanceThreshold > 0 && a.EstimatedCost > s.opt.FinanceThreshold
	for _, g := range s.opt.Gates {
		if err := g(readTx{tx}, a); err != nil {
			return nil, false, err
		}
	}
	e, err := s.appendLedger(tx, st.now, ica.KindApprovalRequested, a.ID, actor, a)
	if err != nil {
		return nil, false, err
	}
	a.LastSeq, a.DecisionSeq, a.DecisionHash = e.Seq, e.Seq, e.Hash
	if err := putApproval(tx, nil, a); err != nil {
		return nil, false, err
	}
	if err := tx.Bucket(bucketApprByRun).Put(join(prefix, timeKey(a.CreatedAt), []byte(a.ID)), nil); err != nil {
		return nil, false, err
	}
	if err := s.enqueue(tx, st, s.opt.Notifier.ApprovalMessages(nil, a)); err != nil {
		return nil, false, err
	}
	return a, true, nil
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
		n, err := a.Apply(t)
		if err != nil {
			return err
		}
		if err := s.recordTransition(tx, st, a, n, t, actor); err != nil {
			return err
		}
		out = n
		return nil
	})
	return out, err
}

func (s *Store) recordTransition(tx Tx, st *txState, prev, n *ica.Approval, t ica.Transition, actor string) error {
	data := map[string]any{"approval_id": n.ID, "run_id": n.RunID, "action": t.Action, "from": prev.Status,
		"to": n.Status, "by": t.By, "comment": t.Comment, "via": t.Via, "at": t.At}
	e, err := s.appendLedger(tx, st.now, ica.KindApprovalTransition+n.Status, n.ID, actor, data)
	if err != nil {
		return err
	}
	n.LastSeq, n.DecisionSeq, n.DecisionHash = e.Seq, e.Seq, e.Hash
	if err := putApproval(tx, prev, n); err != nil {
		return err
	}
	msgs := s.opt.Notifier.ApprovalMessages(prev, n)
	if n.Final() && !prev.Final() {
		cm, err := checkMessages(tx, n)
		if err != nil {
			return err
		}
		msgs = append(msgs, cm...)
	}
	return s.enqueue(tx, st, msgs)
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
