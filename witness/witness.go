// Package witness publishes the ledger's signed checkpoints outside the
// ledger's storage, and reads them back to prove the ledger against them.
//
// Each checkpoint is one blob, checkpoints/<ledger id>/<tree size, 20
// digits>, created only if absent (If-None-Match: *): a blob is never
// overwritten, so with version-level immutability on the container the
// witness is WORM. Publication goes through the outbox (durable, retried):
// while the witness is down, checkpoints queue and serving goes on. A blob
// that already holds the same checkpoint is success (a retry); one that
// holds a different checkpoint of the same size is a permanent failure,
// which the dispatcher records in the ledger (outbox.undeliverable): the
// ledger forked from what the witness saw.
package witness

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ica-governance/ica"
)

// Destination is the outbox destination of witness publications.
const Destination = "witness"

// KindPublish publishes one checkpoint.
const KindPublish = "checkpoint.publish"

// Blobs is the blob container the witness writes and reads (archive.Archive).
type Blobs interface {
	// Create stores data under name only if absent; the same bytes already
	// there are success, other bytes an ica.ECONFLICT error.
	Create(ctx context.Context, name string, data []byte, contentType string) (string, error)
	// Read returns a blob of at most limit bytes.
	Read(ctx context.Context, name string, limit int64) ([]byte, error)
	// List returns the names under prefix.
	List(ctx context.Context, prefix string) ([]string, error)
	// BlobURL names a blob for people.
	BlobURL(name string) string
}

// Prefix is the folder of a ledger's checkpoints.
func Prefix(ledgerID string) string { return "checkpoints/" + ledgerID + "/" }

// BlobName is the blob of the checkpoint of size entries.
func BlobName(ledgerID string, size uint64) string {
	return fmt.Sprintf("%s%020d", Prefix(ledgerID), size)
}

type payload struct {
	Name string `json:"name"`
	Size uint64 `json:"size"`
	Note string `json:"note"`
}

// Message is the outbox message that publishes cp (nil when it has no note).
func Message(ledgerID string, cp *ica.Checkpoint) *ica.OutboxMessage {
	if cp.Note == "" {
		return nil
	}
	raw, _ := json.Marshal(payload{Name: BlobName(ledgerID, cp.Seq), Size: cp.Seq, Note: cp.Note})
	return &ica.OutboxMessage{Destination: Destination, Kind: KindPublish,
		Key: fmt.Sprintf("witness:%s:%d", ledgerID, cp.Seq), Payload: raw}
}

// Receipts records where a witness took a checkpoint (the store).
type Receipts interface {
	MarkWitnessed(ctx context.Context, seq uint64, where string) error
}

// Publisher delivers KindPublish messages to the blob container.
type Publisher struct {
	blobs    Blobs
	receipts Receipts
	log      *slog.Logger
}

var _ ica.Deliverer = (*Publisher)(nil)

// NewPublisher returns the deliverer of Destination.
func NewPublisher(b Blobs, r Receipts, log *slog.Logger) *Publisher {
	return &Publisher{blobs: b, receipts: r, log: log}
}

// Deliver implements ica.Deliverer.
func (p *Publisher) Deliver(ctx context.Context, msg *ica.OutboxMessage) (bool, error) {
	var pl payload
	if err := json.Unmarshal(msg.Payload, &pl); err != nil || pl.Name == "" || pl.Note == "" {
		return false, fmt.Errorf("witness message %d: bad payload", msg.ID)
	}
	url, err := p.blobs.Create(ctx, pl.Name, []byte(pl.Note), "text/plain; charset=utf-8")
	if ica.ErrorCode(err) == ica.ECONFLICT {
		p.log.Error("WITNESS CONFLICT: the witness holds a different checkpoint of the same size; the ledger forked from what was published",
			"blob", p.blobs.BlobURL(pl.Name), "size", pl.Size)
		return false, fmt.Errorf("witness %s already holds a different checkpoint of size %d: the ledger no longer matches what it published (restored from an older copy, or rewritten)",
			p.blobs.BlobURL(pl.Name), pl.Size)
	}
	if err != nil {
		// Everything but a malformed name is worth retrying: credentials
		// refused today may be fixed tomorrow, and a checkpoint must not be
		// given up lightly.
		return ica.ErrorCode(err) != ica.EINVALID, err
	}
	if p.receipts != nil {
		if err := p.receipts.MarkWitnessed(ctx, pl.Size, url); err != nil {
			p.log.Warn("checkpoint witnessed but the receipt was not recorded", "size", pl.Size, "err", err)
		}
	}
	return false, nil
}

// Witnessed is a checkpoint read back from the witness and verified.
type Witnessed struct {
	Note  *ica.CheckpointNote
	Where string
}

// ReadResult is what Read found.
type ReadResult struct {
	Checkpoints []Witnessed
	// Listed counts the blobs found; Checkpoints may hold fewer when the
	// time budget ran out (newest are read first).
	Listed int
	// Ignored name blobs that are not this ledger's checkpoints (bad
	// signature, wrong origin, name and size disagree).
	Ignored []string
}

// ReadOptions tune Read.
type ReadOptions struct {
	// Concurrency bounds parallel downloads (default 8).
	Concurrency int
	// Budget, when set, stops downloading once it is spent (ica serve at
	// start); the newest checkpoints are read first.
	Budget time.Duration
}

// ErrUnreadable wraps a witness that could not be read.
var ErrUnreadable = errors.New("the witness could not be read")

// Read lists and downloads the witnessed checkpoints of a ledger and
// verifies each against the ledger's key and origin.
func Read(ctx context.Context, b Blobs, ledgerID, origin string, pub ed25519.PublicKey, opt ReadOptions) (*ReadResult, error) {
	names, err := b.List(ctx, Prefix(ledgerID))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnreadable, ica.ErrorMessage(err))
	}
	type item struct {
		name string
		size uint64
	}
	var items []item
	res := &ReadResult{Listed: len(names)}
	for _, n := range names {
		sz, err := strconv.ParseUint(strings.TrimPrefix(n, Prefix(ledgerID)), 10, 64)
		if err != nil || BlobName(ledgerID, sz) != n {
			res.Ignored = append(res.Ignored, fmt.Sprintf("%s: not a checkpoint name", b.BlobURL(n)))
			continue
		}
		items = append(items, item{n, sz})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].size > items[j].size }) // newest first
	conc := opt.Concurrency
	if conc <= 0 {
		conc = 8
	}
	var deadline time.Time
	if opt.Budget > 0 {
		deadline = time.Now().Add(opt.Budget)
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		readErr error
		sem     = make(chan struct{}, conc)
	)
	for _, it := range items {
		if !deadline.IsZero() && time.Now().After(deadline) {
			break
		}
		mu.Lock()
		stop := readErr != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(it item) {
			defer func() { <-sem; wg.Done() }()
			raw, err := b.Read(ctx, it.name, ica.MaxCheckpointNote)
			mu.Lock()
			defer mu.Unlock()
			where := b.BlobURL(it.name)
			if err != nil {
				if ica.ErrorCode(err) == ica.ETOOLARGE {
					res.Ignored = append(res.Ignored, fmt.Sprintf("%s: too large to be a checkpoint", where))
				} else if readErr == nil {
					readErr = fmt.Errorf("%w: %s: %v", ErrUnreadable, where, ica.ErrorMessage(err))
				}
				return
			}
			n, err := ica.OpenCheckpointNote(raw, pub, origin)
			if err != nil {
				res.Ignored = append(res.Ignored, fmt.Sprintf("%s: %v", where, err))
				return
			}
			if n.Size != it.size {
				res.Ignored = append(res.Ignored, fmt.Sprintf("%s: holds the checkpoint of size %d", where, n.Size))
				return
			}
			res.Checkpoints = append(res.Checkpoints, Witnessed{Note: n, Where: where})
		}(it)
	}
	wg.Wait()
	if readErr == nil && ctx.Err() != nil {
		readErr = fmt.Errorf("%w: %v", ErrUnreadable, ctx.Err())
	}
	sort.Slice(res.Checkpoints, func(i, j int) bool { return res.Checkpoints[i].Note.Size < res.Checkpoints[j].Note.Size })
	sort.Strings(res.Ignored)
	return res, readErr
}
