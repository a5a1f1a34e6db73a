package witness_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/archive"
	"github.com/ica-governance/ica/outbox"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
	"github.com/ica-governance/ica/witness"
)

const azuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

func azuriteAt(endpoint string) string {
	return "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + azuriteKey +
		";BlobEndpoint=http://" + endpoint + "/devstoreaccount1;"
}

// azurite returns the connection string of a running Azurite (the real
// witness of these tests), or skips loudly: CI always starts one.
func azurite(t *testing.T) string {
	t.Helper()
	if cs := os.Getenv("ICA_TEST_AZURITE"); cs != "" {
		return cs
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:10000", 500*time.Millisecond)
	if err != nil {
		t.Skip("SKIPPING: no Azurite emulator on 127.0.0.1:10000 and ICA_TEST_AZURITE is unset. " +
			"Start one: azurite-blob --blobHost 127.0.0.1 --blobPort 10000 --inMemoryPersistence --skipApiVersionCheck &")
	}
	_ = c.Close()
	return azuriteAt("127.0.0.1:10000")
}

func newContainer(t *testing.T, cs string) *archive.Archive {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	a, err := archive.New(archive.Config{ConnectionString: cs, Container: "witness-" + hex.EncodeToString(b[:]), Retries: -1}, nil)
	require.NoError(t, err)
	return a
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// ledger is a store whose checkpoints are published to a real blob
// container through the outbox.
type ledger struct {
	s     *store.Store
	blobs *archive.Archive
	disp  *outbox.Dispatcher
	clock *ica.FakeClock
}

func newLedger(t *testing.T, blobs *archive.Archive) *ledger {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	l := &ledger{blobs: blobs, clock: ica.NewFakeClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))}
	l.s = storetest.New(t).MustOpen(store.Options{Clock: l.clock, Key: key, CheckpointEvery: 10, PublicHost: "ica.example.com",
		OnEnqueue: func() { l.disp.Notify() },
		CheckpointMessages: func(id string, cp *ica.Checkpoint) []*ica.OutboxMessage {
			return []*ica.OutboxMessage{witness.Message(id, cp)}
		}})
	l.disp = outbox.New(l.s, l.clock, quiet, outbox.Policy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, Timeout: 5 * time.Second}, nil)
	l.disp.Register(witness.Destination, witness.NewPublisher(blobs, l.s, quiet))
	ctx, cancel := context.WithCancel(context.Background())
	l.disp.Start(ctx)
	t.Cleanup(func() {
		cancel()
		_ = l.disp.Stop(context.Background())
		l.s.Close()
	})
	return l
}

func (l *ledger) events(t *testing.T, run string, n int) {
	t.Helper()
	ctx := context.Background()
	if _, err := l.s.Run(ctx, run); err != nil {
		_, _, err := l.s.StartRun(ctx, &ica.RunStart{PipelineName: "payments", RunID: run, Branch: "main", Commit: "abcdef1", TriggeredBy: "dev"}, "ado")
		require.NoError(t, err)
	}
	for i := range n {
		_, _, err := l.s.AddEvent(ctx, run, &ica.EventInput{EventType: "step", EventData: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}, "ado")
		require.NoError(t, err)
	}
}

// settle waits until the outbox is empty.
func (l *ledger) settle(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		m, err := l.s.PendingOutbox(context.Background(), witness.Destination, 1)
		return err == nil && len(m) == 0
	}, 10*time.Second, 10*time.Millisecond)
}

func (l *ledger) read(t *testing.T) *witness.ReadResult {
	t.Helper()
	origin, err := l.s.Origin()
	require.NoError(t, err)
	res, err := witness.Read(context.Background(), l.blobs, l.s.LedgerID(), origin, l.s.PublicKey(), witness.ReadOptions{})
	require.NoError(t, err)
	return res
}

func (l *ledger) check(t *testing.T) *store.CheckReport {
	t.Helper()
	res := l.read(t)
	opt := store.CheckOptions{Witness: l.blobs.URL()}
	for _, w := range res.Checkpoints {
		opt.Witnessed = append(opt.Witnessed, store.WitnessedCheckpoint{Note: w.Note, Where: w.Where})
	}
	rep, err := l.s.CheckWith(opt)
	require.NoError(t, err)
	return rep
}

func TestWitness_PublishesEveryCheckpointOnce(t *testing.T) {
	l := newLedger(t, newContainer(t, azurite(t)))
	l.events(t, "r1", 24) // checkpoints at 10 and 20 in the appends
	_, err := l.s.Checkpoint()
	require.NoError(t, err)
	l.settle(t)
	res := l.read(t)
	require.Empty(t, res.Ignored)
	var sizes []uint64
	for _, w := range res.Checkpoints {
		sizes = append(sizes, w.Note.Size)
		require.True(t, strings.HasSuffix(w.Where, fmt.Sprintf("/checkpoints/%s/%020d", l.s.LedgerID(), w.Note.Size)), w.Where)
	}
	require.Equal(t, []uint64{10, 20, 25}, sizes)
	// The store remembers where each one went.
	seq, r, err := l.s.LatestWitnessed(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(25), seq)
	require.Contains(t, r.Where, l.blobs.Container())

	rep := l.check(t)
	require.Empty(t, rep.Problems)
	require.Equal(t, 3, rep.WitnessChecked)
}

func TestWitness_SameCheckpointAgainIsSuccess_AnotherIsLoud(t *testing.T) {
	blobs := newContainer(t, azurite(t))
	ctx := context.Background()
	p := witness.NewPublisher(blobs, nil, quiet)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	sign := func(root byte) *ica.Checkpoint {
		r := make([]byte, 32)
		r[0] = root
		head := strings.Repeat("ab", 32)
		note, err := ica.SignCheckpointNote(key, &ica.CheckpointNote{Origin: "ica.example.com/ledger/l1", Size: 7, Root: r, ChainHead: head, Time: time.Unix(1, 0)})
		require.NoError(t, err)
		return &ica.Checkpoint{Seq: 7, Hash: head, Note: note}
	}
	msg := witness.Message("l1", sign(1))
	retry, err := p.Deliver(ctx, msg)
	require.NoError(t, err)
	require.False(t, retry)
	retry, err = p.Deliver(ctx, msg)
	require.NoError(t, err, "a repeat of the same checkpoint (a lost answer) is success")
	require.False(t, retry)
	retry, err = p.Deliver(ctx, witness.Message("l1", sign(2)))
	require.Error(t, err)
	require.False(t, retry, "a different checkpoint of the same size is a permanent failure")
	require.Contains(t, err.Error(), "already holds a different checkpoint of size 7")
	got, err := blobs.Read(ctx, witness.BlobName("l1", 7), 4096)
	require.NoError(t, err)
	require.Equal(t, sign(1).Note, string(got), "never overwritten")
}

// A conflict reaches the ledger: the dispatcher dead-letters the message and
// records outbox.undeliverable with the reason.
func TestWitness_ConflictRecordedInLedger(t *testing.T) {
	blobs := newContainer(t, azurite(t))
	l := newLedger(t, blobs)
	l.events(t, "r1", 3)
	// Someone (an older copy of this ledger) already published size 4.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	note, err := ica.SignCheckpointNote(other, &ica.CheckpointNote{Origin: "x/ledger/" + l.s.LedgerID(), Size: 4, Root: make([]byte, 32), ChainHead: strings.Repeat("0", 64), Time: time.Unix(1, 0)})
	require.NoError(t, err)
	_, err = blobs.Create(context.Background(), witness.BlobName(l.s.LedgerID(), 4), []byte(note), "")
	require.NoError(t, err)
	_, err = l.s.Checkpoint()
	require.NoError(t, err)
	l.settle(t)
	dead, err := l.s.DeadLetters(context.Background(), 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Contains(t, dead[0].LastError, "already holds a different checkpoint of size 4")
	var found bool
	require.NoError(t, l.s.ScanLedger(1, func(e *ica.LedgerEntry) error {
		found = found || (e.Kind == ica.KindOutboxUndeliverable && strings.Contains(string(e.Data), "different checkpoint"))
		return nil
	}))
	require.True(t, found, "the conflict is recorded in the ledger")
	// Reading back ignores the foreign blob: not signed by this ledger's key.
	res := l.read(t)
	require.Len(t, res.Ignored, 1)
	require.Contains(t, res.Ignored[0], "not signed by this ledger's key")
}

// Witness down: checkpoints queue, serving goes on, and they are delivered
// once it is back.
func TestWitness_DownQueuesThenDelivers(t *testing.T) {
	cs := azurite(t)
	l := newLedger(t, newContainer(t, cs))
	down, err := archive.New(archive.Config{ConnectionString: azuriteAt(closedPort(t)), Container: l.blobs.Container(), Retries: -1}, nil)
	require.NoError(t, err)
	p := witness.NewPublisher(down, l.s, quiet)
	retry, err := p.Deliver(context.Background(), witness.Message("l", &ica.Checkpoint{Seq: 1, Note: "x"}))
	require.Error(t, err)
	require.True(t, retry, "unreachable is transient")

	_, err = witness.Read(context.Background(), down, "l", "o", l.s.PublicKey(), witness.ReadOptions{})
	require.ErrorIs(t, err, witness.ErrUnreadable)
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
