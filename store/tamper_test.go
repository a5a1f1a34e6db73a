package store_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
)

// witnessedLedger is a ledger with runs, events, approvals, a cost, an
// incident, and checkpoints a witness took at three sizes: the last one
// right after a break-glass bypass, the ledger's last entry.
type witnessedLedger struct {
	s         *store.Store
	target    *storetest.Target
	opt       store.Options
	witnessed []store.WitnessedCheckpoint
	sizes     []uint64
	pending   *ica.Approval // technical_approved, open
	bypassed  *ica.Approval // bypassed by the last entry
	requested *ica.Approval // the same, as requested
	eventSeq  uint64        // a run.event entry between the first and second witnessed sizes
}

func (w *witnessedLedger) witness(t *testing.T) {
	t.Helper()
	cp, err := w.s.Checkpoint()
	require.NoError(t, err)
	n, err := cp.OpenNote(w.s.PublicKey())
	require.NoError(t, err)
	w.witnessed = append(w.witnessed, store.WitnessedCheckpoint{Note: n,
		Where: fmt.Sprintf("https://witness.example/checkpoints/%s/%020d", w.s.LedgerID(), cp.Seq)})
	w.sizes = append(w.sizes, cp.Seq)
}

func newWitnessedLedger(t *testing.T) *witnessedLedger {
	t.Helper()
	ctx := context.Background()
	clock := ica.NewFakeClock(t0)
	w := &witnessedLedger{target: storetest.New(t)}
	w.opt = store.Options{Clock: clock, Key: testKey(t), CheckpointEvery: 1000, PublicHost: "https://ica.example.com/"}
	w.s = w.target.MustOpen(w.opt)
	t.Cleanup(func() { w.s.Close() })
	s := w.s
	for i := range 3 {
		id := fmt.Sprintf("r%d", i)
		_, _, err := s.StartRun(ctx, start(id), "ado")
		require.NoError(t, err)
		for j := range 3 {
			_, _, err := s.AddEvent(ctx, id, &ica.EventInput{EventType: "step", EventData: json.RawMessage(fmt.Sprintf(`{"n":%d}`, j)), EventID: fmt.Sprintf("e%d", j)}, "ado")
			require.NoError(t, err)
		}
	}
	_, _, err := s.FinishRun(ctx, "r2", &ica.RunFinish{Status: ica.RunFailed}, "ado")
	require.NoError(t, err)
	_, _, err = s.RecordCost(ctx, cost("r0", "aks", "2026-11-01", 12.5), "ado")
	require.NoError(t, err)
	_, _, err = s.RecordAlert(ctx, testAlert("alert-1", ica.AlertFired, t0), []byte(`{"x":1}`), "azure-monitor")
	require.NoError(t, err)
	w.witness(t)
	ev, _, err := s.AddEvent(ctx, "r0", &ica.EventInput{EventType: "deploy", EventData: json.RawMessage(`{"image":"app:1.2.3"}`)}, "ado")
	require.NoError(t, err)
	w.eventSeq = ev.LedgerSeq
	a := approvalFor(t, s, "r0")
	w.pending, err = s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{Username: "tess"}, Via: "api"}, "api", nil)
	require.NoError(t, err)
	w.witness(t)
	b := approvalFor(t, s, "r1")
	w.requested = b
	w.bypassed, err = s.Transition(ctx, b.ID, ica.Transition{Action: ica.ActBypass, By: ica.Decider{Username: "sre"}, Comment: "outage", Via: "breakglass"}, "breakglass", nil)
	require.NoError(t, err)
	w.witness(t)
	return w
}

func (w *witnessedLedger) check(t *testing.T, withWitness bool) *store.CheckReport {
	t.Helper()
	opt := store.CheckOptions{}
	if withWitness {
		opt = store.CheckOptions{Witnessed: w.witnessed, Witness: "the test witness"}
	}
	rep, err := w.s.CheckWith(opt)
	require.NoError(t, err)
	return rep
}

func requireProblem(t *testing.T, rep *store.CheckReport, parts ...string) {
	t.Helper()
	t.Logf("problems:\n%s", strings.Join(rep.Problems, "\n"))
	for _, p := range rep.Problems {
		ok := true
		for _, part := range parts {
			ok = ok && strings.Contains(p, part)
		}
		if ok {
			return
		}
	}
	t.Fatalf("no problem mentions %q; problems:\n%s", parts, strings.Join(rep.Problems, "\n"))
}

func TestCheck_CleanLedgerPasses(t *testing.T) {
	w := newWitnessedLedger(t)
	rep := w.check(t, true)
	require.Empty(t, rep.Problems)
	require.Equal(t, 3, rep.WitnessChecked)
	require.Contains(t, rep.Witness, "3 witnessed checkpoints")
	require.Equal(t, 3, rep.Runs)
	require.Equal(t, 2, rep.Approvals)
	require.Equal(t, 1, rep.Incidents)
	require.Equal(t, 1, rep.Costs)
	require.NotEmpty(t, rep.Root)
	rep = w.check(t, false)
	require.Empty(t, rep.Problems)
	require.Contains(t, rep.Witness, "no witness is configured")
}

// The insider of the issue: the bypass, the last entry, is dropped and the
// head moved back. The stored approval still says bypassed.
func TestCheck_DroppedTail_Naive(t *testing.T) {
	w := newWitnessedLedger(t)
	head := w.sizes[2]
	require.NoError(t, w.s.Tamper(func(tx store.Tx) error {
		prev := tx.Bucket([]byte("ledger")).Get(u64(head - 1))
		var e ica.LedgerEntry
		if err := json.Unmarshal(prev, &e); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("ledger")).Delete(u64(head)); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("head"), append(u64(head-1), e.Hash...))
	}))
	rep := w.check(t, false)
	requireProblem(t, rep, "approval "+w.bypassed.ID, fmt.Sprintf("its last change is entry %d", head), "dropped from its end")
	requireProblem(t, rep, fmt.Sprintf("approval %s: stored status bypassed, the ledger says pending at entry %d", w.bypassed.ID, w.requested.DecisionSeq))
	rep = w.check(t, true)
	requireProblem(t, rep, fmt.Sprintf("witnessed checkpoint of size %d", head), "published at https://witness.example/",
		fmt.Sprintf("the ledger has only %d entries; entry %d is missing", head-1, head))
}

// The careful insider with the key: the bypass is cut from the chain, the
// Merkle log rebuilt, every checkpoint re-signed and the approval record put
// back as it was before the bypass. Only the witness can tell.
func TestCheck_DroppedTail_Resigned(t *testing.T) {
	w := newWitnessedLedger(t)
	require.NoError(t, w.s.RewriteChain(w.sizes[2], func(tail []*ica.LedgerEntry) []*ica.LedgerEntry { return tail[:0] }))
	require.NoError(t, w.s.Tamper(func(tx store.Tx) error {
		// The record as it was before the bypass, and its deadline key back.
		buf, _ := json.Marshal(w.requested)
		if err := tx.Bucket([]byte("approvals")).Put([]byte(w.requested.ID), buf); err != nil {
			return err
		}
		return tx.Bucket([]byte("idx_approval_deadline")).Put(append(u64(uint64(w.requested.ExpiresAt.UnixNano())), w.requested.ID...), nil)
	}))
	rep := w.check(t, false)
	require.Empty(t, rep.Problems, "without a witness the rewrite is perfect")
	rep = w.check(t, true)
	requireProblem(t, rep, fmt.Sprintf("witnessed checkpoint of size %d", w.sizes[2]), "entries")
	require.Len(t, rep.Problems, 1)
}

// An entry in the middle (the deploy event) is dropped and the chain
// re-linked, re-hashed and re-signed.
func TestCheck_DroppedMiddleEntry_Relinked(t *testing.T) {
	w := newWitnessedLedger(t)
	require.NoError(t, w.s.RewriteChain(w.eventSeq, func(tail []*ica.LedgerEntry) []*ica.LedgerEntry { return tail[1:] }))
	rep := w.check(t, true)
	requireProblem(t, rep, fmt.Sprintf("witnessed checkpoint of size %d", w.sizes[1]),
		fmt.Sprintf("an entry in %d..%d was changed, dropped or inserted (entries up to %d match the witness)", w.sizes[0]+1, w.sizes[1], w.sizes[0]))
}

// An entry is rewritten (what was deployed) and every later hash and
// checkpoint recomputed with the real key: the state is untouched, so only
// the witness tells, and it names the narrowest range it can.
func TestCheck_RewrittenEntry_Resigned(t *testing.T) {
	w := newWitnessedLedger(t)
	require.NoError(t, w.s.RewriteChain(w.eventSeq, func(tail []*ica.LedgerEntry) []*ica.LedgerEntry {
		tail[0].Data = json.RawMessage(strings.Replace(string(tail[0].Data), "app:1.2.3", "app:6.6.6", 1))
		return tail
	}))
	rep := w.check(t, false)
	requireProblem(t, rep, "approval "+w.pending.ID+": stored decision_hash") // the records name the entries they came from
	fixDecisionHashes(t, w.s)
	rep = w.check(t, false)
	require.Empty(t, rep.Problems, "the chain, the Merkle log, the checkpoints and the records all agree again")
	rep = w.check(t, true)
	requireProblem(t, rep, fmt.Sprintf("witnessed checkpoint of size %d", w.sizes[1]), "does not match the ledger",
		fmt.Sprintf("%d..%d", w.sizes[0]+1, w.sizes[1]))
	requireProblem(t, rep, fmt.Sprintf("witnessed checkpoint of size %d", w.sizes[2]))
	require.Len(t, rep.Problems, 2)
}

// The second insider: an approval's status rewritten in the store,
// no entry, and its deadline key deleted so no index betrays it.
func TestCheck_ApprovalChangedWithoutEntry(t *testing.T) {
	w := newWitnessedLedger(t)
	a := *w.pending
	require.NoError(t, w.s.Tamper(func(tx store.Tx) error {
		if err := tx.Bucket([]byte("idx_approval_deadline")).Delete(append(u64(uint64(a.ExpiresAt.UnixNano())), a.ID...)); err != nil {
			return err
		}
		a.Status = ica.ApprovalApproved
		a.Business = &ica.Decision{Decider: ica.Decider{Username: "mallory"}, At: a.UpdatedAt, Via: "api"}
		buf, _ := json.Marshal(&a)
		return tx.Bucket([]byte("approvals")).Put([]byte(a.ID), buf)
	}))
	rep := w.check(t, false)
	requireProblem(t, rep, fmt.Sprintf("approval %s: stored status approved, the ledger says technical_approved at entry %d", a.ID, a.LastSeq))
	requireProblem(t, rep, "idx_approval_deadline", "open approval "+a.ID, "missing")
}

// State with no entry at all, and index keys that point nowhere.
func TestCheck_StrayRecordsAndKeys(t *testing.T) {
	w := newWitnessedLedger(t)
	require.NoError(t, w.s.Tamper(func(tx store.Tx) error {
		buf, _ := json.Marshal(&ica.Approval{ID: "A-99", RunID: "r0", Status: ica.ApprovalApproved})
		if err := tx.Bucket([]byte("approvals")).Put([]byte("A-99"), buf); err != nil {
			return err
		}
		buf, _ = json.Marshal(&ica.CostEntry{Key: "api:#77", ResourceType: "aks", CostUSD: 1e6, BillingPeriod: "2026-11-01"})
		if err := tx.Bucket([]byte("costs")).Put([]byte("api:#77"), buf); err != nil {
			return err
		}
		return tx.Bucket([]byte("idx_run_status")).Put([]byte("success\x00\x00\x00\x00\x00\x00\x00\x00\x01r0"), nil)
	}))
	rep := w.check(t, false)
	requireProblem(t, rep, "approval A-99 is not in the ledger")
	requireProblem(t, rep, "cost api:#77 is not in the ledger")
	requireProblem(t, rep, "idx_run_status", "stray")
}

// A stored Merkle node that differs would make proofs lie: named.
func TestCheck_MerkleNodeTampered(t *testing.T) {
	w := newWitnessedLedger(t)
	keys, err := w.s.Keys("merkle")
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	require.NoError(t, w.s.Tamper(func(tx store.Tx) error {
		return tx.Bucket([]byte("merkle")).Put(keys[0], make([]byte, 32))
	}))
	rep := w.check(t, false)
	requireProblem(t, rep, "Merkle log", "differs from the tree the entries make")
}

// An older copy restored (the bypass is gone from the ledger and its state):
// the start-up comparison sees the ledger behind the newest witnessed
// checkpoint; accepting the rollback records an entry, after which the
// checkpoint it gave up is named, not failed.
func TestStore_ProveAgainst_RollbackAccepted(t *testing.T) {
	w := newWitnessedLedger(t)
	v, err := w.s.ProveAgainst(w.witnessed)
	require.NoError(t, err)
	require.Nil(t, v.Behind)
	require.Empty(t, v.Problems)
	require.Equal(t, 3, v.Checked)

	require.NoError(t, w.s.RewriteChain(w.sizes[2], func(tail []*ica.LedgerEntry) []*ica.LedgerEntry { return tail[:0] }))
	v, err = w.s.ProveAgainst(w.witnessed)
	require.NoError(t, err)
	require.NotNil(t, v.Behind)
	require.Equal(t, w.sizes[2], v.Behind.Note.Size)
	require.Equal(t, w.sizes[2]-1, v.Head)

	e, err := w.s.AcceptRollback(context.Background(), "restored last night's backup after the disk failed", "operator", *v.Behind)
	require.NoError(t, err)
	require.Equal(t, store.KindRollbackAccepted, e.Kind)
	v, err = w.s.ProveAgainst(w.witnessed)
	require.NoError(t, err)
	require.Nil(t, v.Behind)
	require.Empty(t, v.Problems)
	require.Len(t, v.Excused, 1)

	// The record of the bypass is from the lost future: fix it as a restore
	// would have it (the test's RewriteChain left it).
	require.NoError(t, w.s.Tamper(func(tx store.Tx) error {
		return tx.Bucket([]byte("approvals")).Delete([]byte(w.bypassed.ID))
	}))
	rep := w.check(t, true)
	for _, p := range rep.Problems {
		require.NotContains(t, p, "witnessed checkpoint", "the given-up checkpoint is excused")
	}
	require.Contains(t, strings.Join(rep.Notes, "\n"), "given up by the rollback accepted at entry")
}

func TestCheck_WitnessUnreadable(t *testing.T) {
	w := newWitnessedLedger(t)
	rep, err := w.s.CheckWith(store.CheckOptions{Witness: "container x", WitnessErr: fmt.Errorf("connection refused")})
	require.NoError(t, err)
	require.Empty(t, rep.Problems)
	require.True(t, rep.WitnessUnreadable)
	require.Contains(t, rep.Witness, "UNREADABLE")
}

func TestStore_Proof_VerifiesOffline(t *testing.T) {
	w := newWitnessedLedger(t)
	ctx := context.Background()
	require.NoError(t, w.s.MarkWitnessed(ctx, w.sizes[1], "https://witness.example/x"))
	b, err := w.s.Proof(ctx, w.pending.DecisionSeq)
	require.NoError(t, err)
	require.Equal(t, w.sizes[1], b.TreeSize, "the first witnessed checkpoint that covers it")
	require.NotNil(t, b.Witness)
	res, err := b.Verify(w.s.PublicKey())
	require.NoError(t, err)
	require.Equal(t, w.pending.DecisionSeq, res.Seq)
	require.Equal(t, "ica.example.com/ledger/"+w.s.LedgerID(), res.Origin)
	// Every entry of the ledger proves against the newest checkpoint.
	for seq := uint64(1); seq <= w.sizes[2]; seq++ {
		b, err := w.s.Proof(ctx, seq)
		require.NoError(t, err)
		_, err = b.Verify(w.s.PublicKey())
		require.NoError(t, err, "entry %d", seq)
	}
	b.Entry.Actor = "mallory"
	_, err = b.Verify(w.s.PublicKey())
	require.ErrorContains(t, err, "altered")
	_, err = w.s.Proof(ctx, w.sizes[2]+5)
	require.Equal(t, ica.ENOTFOUND, ica.ErrorCode(err))
}

func TestStore_Merkle_ConsistencyProofs(t *testing.T) {
	w := newWitnessedLedger(t)
	for i, a := range w.witnessed {
		for _, b := range w.witnessed[i:] {
			p, err := w.s.ConsistencyProof(a.Note.Size, b.Note.Size)
			require.NoError(t, err)
			path, err := ica.DecodeHashes(p)
			require.NoError(t, err)
			require.NoError(t, ica.VerifyConsistency(a.Note.Size, b.Note.Size, path, a.Note.Root, b.Note.Root))
		}
	}
}

// fixDecisionHashes is the careful insider's last step: the approvals name
// the hashes of their decision entries, so they are rewritten too.
func fixDecisionHashes(t *testing.T, s *store.Store) {
	t.Helper()
	require.NoError(t, s.Tamper(func(tx store.Tx) error {
		var as []ica.Approval
		c := tx.Bucket([]byte("approvals")).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var a ica.Approval
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			as = append(as, a)
		}
		for _, a := range as {
			var e ica.LedgerEntry
			if err := json.Unmarshal(tx.Bucket([]byte("ledger")).Get(u64(a.DecisionSeq)), &e); err != nil {
				return err
			}
			a.DecisionHash = e.Hash
			buf, _ := json.Marshal(&a)
			if err := tx.Bucket([]byte("approvals")).Put([]byte(a.ID), buf); err != nil {
				return err
			}
		}
		return nil
	}))
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// A ledger written before entries carried what the replay needs (the
// alert, the decision time) and before records named their last change:
// it still checks, leniently, and the report says how.
func TestCheck_OldLedgerLenient(t *testing.T) {
	w := newWitnessedLedger(t)
	require.NoError(t, w.s.RewriteChain(1, func(tail []*ica.LedgerEntry) []*ica.LedgerEntry {
		for _, e := range tail {
			var m map[string]json.RawMessage
			if json.Unmarshal(e.Data, &m) != nil || m == nil {
				continue
			}
			delete(m, "alert")
			delete(m, "at")
			e.Data, _ = json.Marshal(m)
		}
		return tail
	}))
	require.NoError(t, w.s.Tamper(func(tx store.Tx) error {
		strip := func(bucket string, fn func(raw []byte) ([]byte, error)) error {
			b := tx.Bucket([]byte(bucket))
			var keys, vals [][]byte
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				nv, err := fn(v)
				if err != nil {
					return err
				}
				keys, vals = append(keys, append([]byte(nil), k...)), append(vals, nv)
			}
			for i := range keys {
				if err := b.Put(keys[i], vals[i]); err != nil {
					return err
				}
			}
			return nil
		}
		drop := func(fields ...string) func([]byte) ([]byte, error) {
			return func(raw []byte) ([]byte, error) {
				var m map[string]json.RawMessage
				if err := json.Unmarshal(raw, &m); err != nil {
					return nil, err
				}
				for _, f := range fields {
					delete(m, f)
				}
				return json.Marshal(m)
			}
		}
		for b, f := range map[string][]string{"runs": {"last_seq"}, "approvals": {"last_seq", "decision_seq", "decision_hash"},
			"incidents": {"last_seq"}, "costs": {"last_seq"}} {
			if err := strip(b, drop(f...)); err != nil {
				return err
			}
		}
		return nil
	}))
	rep := w.check(t, false)
	require.Empty(t, rep.Problems)
	notes := strings.Join(rep.Notes, "\n")
	require.Contains(t, notes, "incidents opened before alerts were recorded in full were compared on status, severity, version and paging only")
	require.Contains(t, notes, "approvals stored before records kept last_seq were compared without it")

	// Leniency is about missing fields, not about edits: an old record
	// changed without an entry is still named.
	require.NoError(t, w.s.Tamper(func(tx store.Tx) error {
		raw := tx.Bucket([]byte("approvals")).Get([]byte(w.pending.ID))
		return tx.Bucket([]byte("approvals")).Put([]byte(w.pending.ID), []byte(strings.Replace(string(raw), `"status":"technical_approved"`, `"status":"approved"`, 1)))
	}))
	rep = w.check(t, false)
	requireProblem(t, rep, "approval "+w.pending.ID+": stored status approved, the ledger says technical_approved")
}
