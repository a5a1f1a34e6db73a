package store_test

import (
	"context"
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

// azuriteWitness returns a fresh container on the Azurite emulator (the
// real witness of these tests), or skips loudly: CI always starts one.
func azuriteWitness(t *testing.T) *archive.Archive {
	t.Helper()
	cs := os.Getenv("ICA_TEST_AZURITE")
	if cs == "" {
		c, err := net.DialTimeout("tcp", "127.0.0.1:10000", 500*time.Millisecond)
		if err != nil {
			t.Skip("SKIPPING: no Azurite emulator on 127.0.0.1:10000 and ICA_TEST_AZURITE is unset. " +
				"Start one: azurite-blob --blobHost 127.0.0.1 --blobPort 10000 --inMemoryPersistence --skipApiVersionCheck &")
		}
		_ = c.Close()
		cs = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" +
			"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==" +
			";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	a, err := archive.New(archive.Config{ConnectionString: cs, Container: "ledger-" + hex.EncodeToString(b[:]), Retries: -1}, nil)
	require.NoError(t, err)
	return a
}

// publishedLedger is a store whose checkpoints go to the Azurite witness
// through the outbox, as ica serve wires it.
type publishedLedger struct {
	s     *store.Store
	blobs *archive.Archive
	disp  *outbox.Dispatcher
}

func newPublishedLedger(t *testing.T) *publishedLedger {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := &publishedLedger{blobs: azuriteWitness(t)}
	clock := ica.NewFakeClock(t0)
	p.s = storetest.New(t).MustOpen(store.Options{Clock: clock, Key: testKey(t), CheckpointEvery: 10, PublicHost: "https://ica.example.com",
		OnEnqueue: func() { p.disp.Notify() },
		CheckpointMessages: func(id string, cp *ica.Checkpoint) []*ica.OutboxMessage {
			return []*ica.OutboxMessage{witness.Message(id, cp)}
		}})
	p.disp = outbox.New(p.s, clock, quiet, outbox.Policy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}, nil)
	p.disp.Register(witness.Destination, witness.NewPublisher(p.blobs, p.s, quiet))
	ctx, cancel := context.WithCancel(context.Background())
	p.disp.Start(ctx)
	t.Cleanup(func() {
		cancel()
		_ = p.disp.Stop(context.Background())
		p.s.Close()
	})
	return p
}

func (p *publishedLedger) settle(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		m, err := p.s.PendingOutbox(context.Background(), witness.Destination, 1)
		return err == nil && len(m) == 0
	}, 10*time.Second, 10*time.Millisecond)
}

func (p *publishedLedger) check(t *testing.T) *store.CheckReport {
	t.Helper()
	origin, err := p.s.Origin()
	require.NoError(t, err)
	res, err := witness.Read(context.Background(), p.blobs, p.s.LedgerID(), origin, p.s.PublicKey(), witness.ReadOptions{})
	require.NoError(t, err)
	opt := store.CheckOptions{Witness: p.blobs.URL()}
	for _, w := range res.Checkpoints {
		opt.Witnessed = append(opt.Witnessed, store.WitnessedCheckpoint{Note: w.Note, Where: w.Where})
	}
	rep, err := p.s.CheckWith(opt)
	require.NoError(t, err)
	return rep
}

// The whole story against the real witness: a clean ledger passes; an
// insider who holds the key rewrites an event, recomputes every later hash,
// the Merkle log and every checkpoint; only the witness can tell, and it
// names the checkpoint, where it was published and the range of entries.
func TestWitness_Azurite_CatchesRewriteByKeyHolder(t *testing.T) {
	p := newPublishedLedger(t)
	ctx := context.Background()
	_, _, err := p.s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	for i := range 24 {
		_, _, err := p.s.AddEvent(ctx, "r1", &ica.EventInput{EventType: "step", EventData: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}, "ado")
		require.NoError(t, err)
	}
	_, err = p.s.Checkpoint()
	require.NoError(t, err)
	p.settle(t)
	rep := p.check(t)
	require.Empty(t, rep.Problems)
	require.Equal(t, 3, rep.WitnessChecked) // 10, 20, 25

	require.NoError(t, p.s.RewriteChain(15, func(tail []*ica.LedgerEntry) []*ica.LedgerEntry {
		tail[0].Data = json.RawMessage(strings.Replace(string(tail[0].Data), `"event_data":{"i":13}`, `"event_data":{"i":"forged"}`, 1))
		return tail
	}))
	rep, err = p.s.Check()
	require.NoError(t, err)
	require.Empty(t, rep.Problems, "the ledger agrees with itself again")
	rep = p.check(t)
	require.Len(t, rep.Problems, 2, strings.Join(rep.Problems, "\n"))
	require.Contains(t, rep.Problems[0], "witnessed checkpoint of size 20")
	require.Contains(t, rep.Problems[0], "an entry in 11..20 was changed, dropped or inserted")
	require.Contains(t, rep.Problems[0], p.blobs.Container()+"/checkpoints/"+p.s.LedgerID()+"/00000000000000000020")
	require.Contains(t, rep.Problems[1], "witnessed checkpoint of size 25")
}

// Truncation against the real witness: the last five entries are cut and
// everything re-signed; the ledger is behind the newest witnessed checkpoint.
func TestWitness_Azurite_CatchesTruncation(t *testing.T) {
	p := newPublishedLedger(t)
	ctx := context.Background()
	_, _, err := p.s.StartRun(ctx, start("r1"), "ado")
	require.NoError(t, err)
	for i := range 14 {
		_, _, err := p.s.AddEvent(ctx, "r1", &ica.EventInput{EventType: "step", EventData: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}, "ado")
		require.NoError(t, err)
	}
	_, err = p.s.Checkpoint()
	require.NoError(t, err)
	p.settle(t)
	require.NoError(t, p.s.RewriteChain(11, func(tail []*ica.LedgerEntry) []*ica.LedgerEntry { return tail[:0] }))
	rep := p.check(t)
	require.NotEmpty(t, rep.Problems)
	require.Contains(t, strings.Join(rep.Problems, "\n"), "witnessed checkpoint of size 15")
	require.Contains(t, strings.Join(rep.Problems, "\n"), "the ledger has only 10 entries; entries 11..15 are missing")
}
