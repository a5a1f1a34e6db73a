package store_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
)

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

func testKey(tb testing.TB) ed25519.PrivateKey {
	tb.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	return k
}

// MustOpen opens a store in a temporary directory and checks its consistency
// when the test ends.
func MustOpen(tb testing.TB, opts ...func(*store.Options)) (*store.Store, *ica.FakeClock) {
	tb.Helper()
	s, clock := openUnchecked(tb, opts...)
	tb.Cleanup(func() { MustCheck(tb, s) })
	return s, clock
}

// openUnchecked is MustOpen for a test that writes records behind the
// ledger's back and checks the report itself.
func openUnchecked(tb testing.TB, opts ...func(*store.Options)) (*store.Store, *ica.FakeClock) {
	tb.Helper()
	clock := ica.NewFakeClock(t0)
	o := store.Options{Clock: clock, Key: testKey(tb), CheckpointEvery: 5}
	for _, f := range opts {
		f(&o)
	}
	s := storetest.New(tb).MustOpen(o)
	tb.Cleanup(func() { require.NoError(tb, s.Close()) })
	return s, clock
}

// MustCheck fails the test when the ledger or its indexes are inconsistent.
func MustCheck(tb testing.TB, s *store.Store) {
	tb.Helper()
	rep, err := s.Check()
	require.NoError(tb, err)
	require.Empty(tb, rep.Problems, "consistency check")
}

func start(id string) *ica.RunStart {
	return &ica.RunStart{PipelineName: "payments", RunID: id, Branch: "refs/heads/main",
		Commit: "0123456789abcdef0123456789abcdef01234567", TriggeredBy: "alice"}
}

func code(err error) string { return ica.ErrorCode(err) }

func TestStore_StartRun_Idempotent(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	r, created, err := s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, ica.RunRunning, r.Status)
	require.Equal(t, uint64(1), r.StartSeq)

	again, created, err := s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, r.StartTime, again.StartTime)
	require.Equal(t, uint64(1), s.LedgerEntries(), "a retried start must not add a ledger entry")

	other := start("r1")
	other.Commit = "fedcba9876543210fedcba9876543210fedcba98"
	_, _, err = s.StartRun(ctx, other, "ado")
	require.Equal(t, ica.ECONFLICT, code(err))
	require.Contains(t, ica.ErrorMessage(err), "commit")
}

func TestStore_AddEvent_DedupAndAfterFinish(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	_, _, err := s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	in := &ica.EventInput{EventType: "build", EventData: json.RawMessage(`{"b":1,"a":"x"}`), EventID: "e-1"}
	ev, created, err := s.AddEvent(ctx, "r1", in, "ado")
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, 1, ev.Seq)
	require.JSONEq(t, `{"a":"x","b":1}`, string(ev.EventData))

	dup, created, err := s.AddEvent(ctx, "r1", in, "ado")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, ev.Hash, dup.Hash)

	_, _, err = s.AddEvent(ctx, "nope", in, "ado")
	require.Equal(t, ica.ENOTFOUND, code(err))

	_, _, err = s.FinishRun(ctx, "r1", &ica.RunFinish{Status: ica.RunSuccess}, "ado")
	require.NoError(t, err)
	_, _, err = s.AddEvent(ctx, "r1", &ica.EventInput{EventType: "late", EventData: json.RawMessage(`{}`)}, "ado")
	require.Equal(t, ica.ECONFLICT, code(err))

	evs, err := s.Events(ctx, "r1")
	require.NoError(t, err)
	require.Len(t, evs, 1)
}

func TestStore_FinishRun(t *testing.T) {
	s, clock := MustOpen(t)
	ctx := context.Background()
	_, _, err := s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	before := t0.Add(-time.Minute)
	_, _, err = s.FinishRun(ctx, "r1", &ica.RunFinish{Status: ica.RunFailed, EndTime: &before}, "ado")
	require.Equal(t, ica.EINVALID, code(err))
	require.Equal(t, "end_time", ica.ErrorField(err))

	clock.Advance(10 * time.Minute)
	r, changed, err := s.FinishRun(ctx, "r1", &ica.RunFinish{Status: ica.RunFailed}, "ado")
	require.NoError(t, err)
	require.True(t, changed)
	require.NotEmpty(t, r.AuditHash)
	e, err := s.Entry(3 - 1)
	require.NoError(t, err)
	require.Equal(t, r.AuditHash, e.Hash, "audit_hash is the hash of the finish entry")

	r2, changed, err := s.FinishRun(ctx, "r1", &ica.RunFinish{Status: ica.RunFailed}, "ado")
	require.NoError(t, err)
	require.False(t, changed)
	require.Equal(t, r.AuditHash, r2.AuditHash)

	_, _, err = s.FinishRun(ctx, "r1", &ica.RunFinish{Status: ica.RunSuccess}, "ado")
	require.Equal(t, ica.ECONFLICT, code(err))
}

func TestStore_Runs_Pagination(t *testing.T) {
	s, clock := MustOpen(t)
	ctx := context.Background()
	for i := range 25 {
		in := start(fmt.Sprintf("r%02d", i))
		if i%2 == 1 {
			in.PipelineName = "web"
		}
		_, _, err := s.StartRun(ctx, in, "ado")
		require.NoError(t, err)
		if i%3 == 0 {
			_, _, err = s.FinishRun(ctx, in.RunID, &ica.RunFinish{Status: ica.RunSuccess}, "ado")
			require.NoError(t, err)
		}
		clock.Advance(time.Minute)
	}
	var all []string
	cursor := ""
	for {
		p, err := s.Runs(ctx, ica.RunFilter{Limit: 10, Cursor: cursor})
		require.NoError(t, err)
		for _, r := range p.Runs {
			all = append(all, r.RunID)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	require.Len(t, all, 25)
	require.Equal(t, "r24", all[0], "newest first")
	require.Equal(t, "r00", all[24])

	p, err := s.Runs(ctx, ica.RunFilter{Pipeline: "web", Limit: 100})
	require.NoError(t, err)
	require.Len(t, p.Runs, 12)
	p, err = s.Runs(ctx, ica.RunFilter{Status: ica.RunSuccess, Limit: 100})
	require.NoError(t, err)
	require.Len(t, p.Runs, 9)
	p, err = s.Runs(ctx, ica.RunFilter{Pipeline: "payments", Status: ica.RunRunning, Limit: 100})
	require.NoError(t, err)
	for _, r := range p.Runs {
		require.Equal(t, "payments", r.PipelineName)
		require.Equal(t, ica.RunRunning, r.Status)
	}
	p, err = s.Runs(ctx, ica.RunFilter{From: t0.Add(5 * time.Minute), To: t0.Add(10 * time.Minute)})
	require.NoError(t, err)
	require.Len(t, p.Runs, 5)
	require.Equal(t, "r09", p.Runs[0].RunID)

	_, err = s.Runs(ctx, ica.RunFilter{Cursor: "!!"})
	require.Equal(t, ica.EINVALID, code(err))
}

func ptr[T any](v T) *T { return &v }

func approvalFor(t *testing.T, s *store.Store, run string) *ica.Approval {
	t.Helper()
	ctx := context.Background()
	_, _, err := s.StartRun(ctx, start(run), "ado")
	require.NoError(t, err)
	a, created, err := s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: run, DeploymentTarget: "production", EstimatedCost: ptr(120.0)}, "ado")
	require.NoError(t, err)
	require.True(t, created)
	return a
}

type recNotifier struct {
	mu   sync.Mutex
	seen []string
}

func (n *recNotifier) ApprovalMessages(prev, next *ica.Approval) []*ica.OutboxMessage {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seen = append(n.seen, next.Status)
	return []*ica.OutboxMessage{{Destination: "mattermost", Kind: "card", Key: next.ID + ":" + next.Status,
		Payload: json.RawMessage(`{}`)}}
}

func TestStore_Approval_Lifecycle(t *testing.T) {
	n := &recNotifier{}
	s, clock := MustOpen(t, func(o *store.Options) { o.Notifier = n; o.FinanceThreshold = 100 })
	ctx := context.Background()
	a := approvalFor(t, s, "r1")
	require.Equal(t, "A-1", a.ID)
	require.Equal(t, ica.ApprovalPending, a.Status)
	require.Equal(t, t0.Add(4*time.Hour), a.ExpiresAt)
	require.True(t, a.FinanceRequired)

	again, created, err := s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r1", DeploymentTarget: "production", EstimatedCost: ptr(120.0)}, "ado")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, a.ID, again.ID)

	tech := ica.Decider{UserID: "u-tech", Username: "tech1"}
	_, err = s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveBusiness, By: tech, Via: "test"}, "mm", nil)
	require.Equal(t, ica.ECONFLICT, code(err), "business before technical")
	_, err = s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveTechnical, By: ica.Decider{Username: "alice"}}, "mm", nil)
	require.Equal(t, ica.EFORBIDDEN, code(err), "requester approving own run")

	clock.Advance(time.Minute)
	a2, err := s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveTechnical, By: tech, Via: "test"}, "mm", nil)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalTechnical, a2.Status)
	_, err = s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveBusiness, By: tech}, "mm", nil)
	require.Equal(t, ica.EFORBIDDEN, code(err), "same person both steps")

	a3, err := s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveBusiness, By: ica.Decider{UserID: "u-biz", Username: "biz1"}}, "mm", nil)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalApproved, a3.Status)
	require.Equal(t, []string{"pending", "technical_approved", "approved"}, n.seen)

	msgs, err := s.PendingOutbox(ctx, "mattermost", 10)
	require.NoError(t, err)
	require.Len(t, msgs, 3)
	require.Equal(t, int64(3), s.OutboxDepth())
	require.NoError(t, s.CompleteOutbox(ctx, "mattermost", msgs[0].ID))
	require.Equal(t, int64(2), s.OutboxDepth())
	// The same key again is not enqueued twice, even after delivery.
	require.NoError(t, s.Enqueue(ctx, &ica.OutboxMessage{Destination: "mattermost", Key: msgs[0].Key, Payload: json.RawMessage(`{}`)}))
	require.Equal(t, int64(2), s.OutboxDepth())
	d, err := s.NextDeadline(ctx)
	require.NoError(t, err)
	require.True(t, d.IsZero(), "a final approval leaves the deadline index")
}

func TestStore_Transition_RaceAppliesOnce(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	a := approvalFor(t, s, "r1")
	var wg sync.WaitGroup
	results := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Transition(ctx, a.ID, ica.Transition{Action: ica.ActApproveTechnical,
				By: ica.Decider{UserID: fmt.Sprintf("u%d", i), Username: fmt.Sprintf("tech%d", i)}}, "mm", nil)
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		if err == nil {
			ok++
		} else {
			require.Equal(t, ica.ECONFLICT, code(err))
		}
	}
	require.Equal(t, 1, ok)
}

func TestStore_ExpireDue(t *testing.T) {
	s, clock := MustOpen(t)
	ctx := context.Background()
	a := approvalFor(t, s, "r1")
	exp, err := s.ExpireDue(ctx)
	require.NoError(t, err)
	require.Empty(t, exp)
	clock.Set(a.ExpiresAt)
	exp, err = s.ExpireDue(ctx)
	require.NoError(t, err)
	require.Len(t, exp, 1)
	got, err := s.Approval(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, ica.ApprovalExpired, got.Status)
	// A new request after expiry creates a new approval.
	b, created, err := s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: "r1", DeploymentTarget: "production", EstimatedCost: ptr(120.0)}, "ado")
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, a.ID, b.ID)
}

func TestStore_Open_LockedFailsFast(t *testing.T) {
	boltOnly(t)
	path := filepath.Join(t.TempDir(), "ica.db")
	s, err := store.Open(path, store.Options{Key: testKey(t)})
	require.NoError(t, err)
	defer s.Close()
	startT := time.Now()
	_, err = store.Open(path, store.Options{Key: testKey(t)})
	require.Error(t, err)
	require.Contains(t, err.Error(), "ledger is locked by another process")
	require.Less(t, time.Since(startT), 2*time.Second)
}

func TestStore_Open_DamagedFileUntouched(t *testing.T) {
	boltOnly(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	s, err := store.Open(good, store.Options{Key: testKey(t)})
	require.NoError(t, err)
	_, _, err = s.StartRun(context.Background(), start("r1"), "ado")
	require.NoError(t, err)
	require.NoError(t, s.Close())
	raw, err := os.ReadFile(good)
	require.NoError(t, err)

	cases := map[string][]byte{
		"empty":     {},
		"truncated": raw[:3000],
		"garbage":   append([]byte("this is not a bbolt file"), make([]byte, 64<<10)...),
		"zeroed-meta": func() []byte {
			b := append([]byte(nil), raw...)
			clear(b[:8192])
			return b
		}(),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".db")
			require.NoError(t, os.WriteFile(p, content, 0o600))
			_, err := store.Open(p, store.Options{Key: testKey(t)})
			require.Error(t, err)
			require.Contains(t, err.Error(), p, "the message names the file")
			after, _ := os.ReadFile(p)
			require.Equal(t, content, after, "a damaged ledger is never overwritten")
		})
	}
}

func TestStore_FailedWriteLeavesNothing(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	_, _, err := s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	s.SetBeforeCommit(func() error { return errors.New("disk full") })
	_, _, err = s.AddEvent(ctx, "r1", &ica.EventInput{EventType: "x", EventData: json.RawMessage(`{}`)}, "ado")
	require.Equal(t, ica.EUNAVAILABLE, code(err))
	_, _, err = s.StartRun(ctx, start("r2"), "ado")
	require.Equal(t, ica.EUNAVAILABLE, code(err))
	s.SetBeforeCommit(nil)
	require.Equal(t, uint64(1), s.LedgerEntries())
	_, err = s.Run(ctx, "r2")
	require.Equal(t, ica.ENOTFOUND, code(err))
	r, err := s.Run(ctx, "r1")
	require.NoError(t, err)
	require.Equal(t, 0, r.EventCount)
}

func TestStore_ConcurrentWriters_GroupCommit(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for c := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("run-%d", c)
			_, _, err := s.StartRun(ctx, start(id), "ado")
			require.NoError(t, err)
			for i := range 10 {
				_, _, err := s.AddEvent(ctx, id, &ica.EventInput{EventType: "step", EventData: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}, "ado")
				require.NoError(t, err)
			}
			// A conflicting repeat inside a busy group must not fail the others.
			bad := start(id)
			bad.Branch = "other"
			_, _, err = s.StartRun(ctx, bad, "ado")
			require.Equal(t, ica.ECONFLICT, code(err))
		}()
	}
	wg.Wait()
	require.Equal(t, uint64(32*11), s.LedgerEntries())
}

func TestStore_Checkpoints_Signed(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	for i := range 12 {
		_, _, err := s.StartRun(ctx, start(fmt.Sprintf("r%d", i)), "ado")
		require.NoError(t, err)
	}
	cps, err := s.Checkpoints(12, 10)
	require.NoError(t, err)
	require.Len(t, cps, 2) // every 5 entries
	require.Equal(t, uint64(10), cps[0].Seq)
	require.NoError(t, cps[0].Verify())
	cp, err := s.Checkpoint()
	require.NoError(t, err)
	require.Equal(t, uint64(12), cp.Seq)
	require.NoError(t, cp.Verify())
}

func TestStore_Backup_IsConsistentCopy(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	for i := range 20 {
		_, _, err := s.StartRun(ctx, start(fmt.Sprintf("r%d", i)), "ado")
		require.NoError(t, err)
	}
	p := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(p)
	require.NoError(t, err)
	_, err = s.WriteBackup(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	b, err := store.Open(p, store.Options{Key: testKey(t)})
	require.NoError(t, err)
	defer b.Close()
	require.Equal(t, uint64(20), b.LedgerEntries())
	rep, err := b.Check()
	require.NoError(t, err)
	// Checkpoints were signed by the original key; the check names that.
	for _, p := range rep.Problems {
		require.Contains(t, p, "signed by another key")
	}
}

func TestStore_Check_FindsTampering(t *testing.T) {
	target := storetest.New(t)
	key := testKey(t)
	s := target.MustOpen(store.Options{Key: key})
	for i := range 5 {
		_, _, err := s.StartRun(context.Background(), start(fmt.Sprintf("r%d", i)), "ado")
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	require.NoError(t, tamperEntry(target, 3, func(e *ica.LedgerEntry) { e.Actor = "mallory" }))
	s = target.MustOpen(store.Options{Key: key})
	defer s.Close()
	rep, err := s.Check()
	require.NoError(t, err)
	require.NotEmpty(t, rep.Problems)
	require.Contains(t, rep.Problems[0], "entry seq 3")
}

func TestEventRecord_IsCanonical(t *testing.T) {
	for _, data := range []string{`{}`, `{"b":"<&>","a":[1,2.50,{"z":null,"y":"\u00e9"}]}`, `{"k":"tab\there","n":12345678901234567890}`} {
		canon, err := ica.CanonicalJSON([]byte(data))
		require.NoError(t, err)
		e := &ica.Event{RunID: "r-1", Seq: 3, EventID: "", EventType: "build <x>", EventData: canon,
			Time: time.Date(2026, 11, 2, 9, 0, 0, 123456789, time.UTC), Actor: "ado&co"}
		got, err := store.EventRecordJSON(e)
		require.NoError(t, err)
		want, err := ica.CanonicalJSON(got)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "the event record must encode canonically")
		e.EventID = "e1"
		got, _ = store.EventRecordJSON(e)
		want, _ = ica.CanonicalJSON(got)
		require.Equal(t, string(want), string(got))
	}
}

// boltOnly skips a test of the bbolt engine itself on a PostgreSQL run.
func boltOnly(t *testing.T) {
	t.Helper()
	if storetest.Engine() != storetest.Bolt {
		t.Skip("a test of the bbolt file engine")
	}
}

// tamperEntry rewrites one ledger entry of a closed ledger, bypassing the
// chain, on either engine.
func tamperEntry(t *storetest.Target, seq uint64, fn func(e *ica.LedgerEntry)) error {
	if t.DSN == "" {
		return store.TamperEntryFile(t.Path, seq, fn)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, t.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	key := binary.BigEndian.AppendUint64(nil, seq)
	var raw []byte
	if err := conn.QueryRow(ctx, "SELECT v FROM kv_ledger WHERE k = $1", key).Scan(&raw); err != nil {
		return err
	}
	var e ica.LedgerEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return err
	}
	fn(&e)
	if raw, err = json.Marshal(&e); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "UPDATE kv_ledger SET v = $2 WHERE k = $1", key, raw)
	return err
}
