// Package store keeps ICA's state: the current-state buckets and their
// indexes, the hash-chained ledger, signed checkpoints and the outbox, in an
// embedded bbolt file (the default) or in PostgreSQL (shared by replicas).
// Every state change is one transaction that updates the state, appends to
// the chain and enqueues the messages it causes (see kv.go for the seam
// between the operations and the engines).
package store

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ica-governance/ica"
)

var (
	bucketMeta          = []byte("meta")
	bucketRuns          = []byte("runs")
	bucketRunByStart    = []byte("idx_run_start")
	bucketRunByPipeline = []byte("idx_run_pipeline")
	bucketRunByStatus   = []byte("idx_run_status")
	bucketEvents        = []byte("events")
	bucketEventIDs      = []byte("event_ids")
	bucketApprovals     = []byte("approvals")
	bucketApprByRun     = []byte("idx_approval_run")
	bucketApprDeadline  = []byte("idx_approval_deadline")
	bucketApprByPost    = []byte("idx_approval_post")
	bucketLedger        = []byte("ledger")
	bucketLedgerByTime  = []byte("idx_ledger_time")
	bucketCheckpoints   = []byte("checkpoints")
	bucketMerkle        = []byte("merkle")
	bucketOutbox        = []byte("outbox")
	bucketOutboxKeys    = []byte("outbox_keys")
	bucketOutboxDead    = []byte("outbox_dead")
	bucketChecks        = []byte("approval_checks")
	// bucketWitness holds, per checkpoint seq, where and when a witness
	// took it (operational: outside the replay).
	bucketWitness = []byte("witness_receipts")

	// allBuckets is the schema: every bucket every engine has. A bucket
	// added here is created on an existing bbolt file at its next start,
	// and by a migration on PostgreSQL.
	allBuckets = [][]byte{bucketMeta, bucketRuns, bucketRunByStart, bucketRunByPipeline, bucketRunByStatus,
		bucketEvents, bucketEventIDs, bucketApprovals, bucketApprByRun, bucketApprDeadline, bucketApprByPost,
		bucketLedger, bucketLedgerByTime, bucketCheckpoints, bucketMerkle, bucketOutbox, bucketOutboxKeys, bucketOutboxDead,
		bucketCosts, bucketCostByMonth, bucketChecks,
		bucketIncidents, bucketIncidentOpen, bucketIncidentByPost, bucketIncidentFreezes,
		bucketDashboardLinks, bucketAzureBudgets, bucketAzureBudgetDedup,
		bucketPolicy, bucketDeployLocks, bucketDeployQueue, bucketDeployQueuePos, bucketDeployments,
		bucketUsedTriggers, bucketDialogNonces, bucketNonceExpiry,
		bucketJobTokens,
		bucketWitness}

	keyHead     = []byte("head")
	keySchema   = []byte("schema")
	keyLedgerID = []byte("ledger_id")
)

// schemaVersion is the layout of the buckets. 2: the outbox is one flat
// keyspace (destination ‖ 0 ‖ id) instead of nested buckets.
const schemaVersion = "2"

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("ledger is closed")

// Options configure a Store. Zero values are sensible defaults.
type Options struct {
	Clock    ica.Clock
	Key      ed25519.PrivateKey // signs checkpoints; required
	Notifier ica.Notifier       // turns approval changes into outbox messages
	Logger   *slog.Logger
	// CheckpointEvery signs a checkpoint every N ledger entries (default 1000).
	CheckpointEvery uint64
	// PublicHost names the log in the checkpoints' origin
	// ("<public host>/ledger/<ledger id>", fixed by the first checkpoint):
	// ICA_PUBLIC_URL, or ica.PlaceholderHost when empty.
	PublicHost string
	// CheckpointMessages returns the outbox messages that publish a new
	// checkpoint to the witnesses (Azure Blob, a Mattermost channel); they
	// are queued in the transaction that signs it. Nil publishes nothing.
	CheckpointMessages func(ledgerID string, cp *ica.Checkpoint) []*ica.OutboxMessage
	// ApprovalTimeout gives the expiry of a new approval per target (default 4h).
	ApprovalTimeout func(target string) time.Duration
	// FinanceThreshold: an estimated cost above it needs a finance approver (0 disables).
	FinanceThreshold float64
	// OnEnqueue is called after a commit that enqueued outbox messages.
	OnEnqueue func()
	// ObserveCommit receives the duration of every write transaction's commit (fsync included).
	ObserveCommit func(time.Duration)
	// OpenTimeout bounds the wait for the file lock (default 1s).
	OpenTimeout time.Duration
	// MaxBatch bounds how many writes share one commit (default 256).
	MaxBatch int
	// ReleaseMappedEvery, when set, hands the ledger's mapped pages back to
	// the kernel at most this often (after a commit): the server's resident
	// memory then stays near what it allocates itself instead of growing
	// with every page of the file it has read. Pages stay in the page cache.
	ReleaseMappedEvery time.Duration
	// TokenSealer seals the Azure DevOps job tokens of checks in callback
	// mode (jobtokens.go); without it such checks are refused.
	TokenSealer TokenSealer
	// Gates are policy checks run inside the transaction that creates an
	// approval (budget, deployment freeze); an error refuses the request.
	Gates []ApprovalGate
	// Freeze names the open incident that freezes a deployment target
	// ("" when none): the gate of every approval for it stays shut, however
	// long ago it was approved (policy.go).
	Freeze func(tx ReadTx, target string) (string, error)

	// --- incidents (store/incidents.go) ---
	// RouteAlert decides what an alert causes (page, drop, card channel);
	// nil routes nothing: incidents are recorded, no messages are sent.
	RouteAlert func(a *ica.Alert) AlertRoute
	// Incidents turns incident changes into outbox messages (PagerDuty,
	// incident cards, approval cards whose freeze warning changes).
	Incidents IncidentNotifier
	// --- end incidents ---
}

// ApprovalGate is a policy check on a new approval; see Options.Gates.
type ApprovalGate func(tx ReadTx, a *ica.Approval) error

// Store is ICA's state: the current-state buckets and their indexes, the
// hash-chained ledger, its Merkle tree and checkpoints, and the outbox, on
// one engine (bbolt or PostgreSQL). It is safe for concurrent use.
type Store struct {
	eng   engine
	opt   Options
	clock ica.Clock
	log   *slog.Logger

	ledgerID string

	// policies caches compiled recorded policies by hash (policy.go).
	policies sync.Map
	// runs memoizes decoded run records for events and finishes (runmemo.go).
	runs runMemo

	writes    chan *writeReq
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	entries     atomic.Uint64 // ledger head seq
	outboxDepth atomic.Int64
	leading     atomic.Bool

	// beforeCommit is a test seam that fails a transaction just before commit.
	beforeCommit func() error
	// noPrecheck sends every write to the writer (a test seam: the answers
	// must not depend on the pre-checks of precheck.go).
	noPrecheck bool

	// releasePages makes long scans hand the mapped pages they read back to
	// the kernel (see ReleasePagesWhileScanning).
	releasePages bool
	lastRelease  time.Time // writer goroutine only
}

// pageReleaser is an engine whose reads map file pages into the process.
type pageReleaser interface{ releaseMapped() }

// ReleasePagesWhileScanning makes ScanLedger drop the ledger's mapped pages
// from the process after each page of entries. A one-shot reader of a large
// ledger (ica export) then stays small: the pages stay in the page cache
// and are faulted back in when needed.
func (s *Store) ReleasePagesWhileScanning() { s.releasePages = true }

func (s *Store) releaseMapped() {
	if r, ok := s.eng.(pageReleaser); ok {
		r.releaseMapped()
	}
}

func (o *Options) defaults() error {
	if o.Key == nil {
		return errors.New("open ledger: a signing key is required")
	}
	if o.Clock == nil {
		o.Clock = ica.SystemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Notifier == nil {
		o.Notifier = ica.NopNotifier{}
	}
	if o.CheckpointEvery == 0 {
		o.CheckpointEvery = 1000
	}
	if o.ApprovalTimeout == nil {
		o.ApprovalTimeout = func(string) time.Duration { return ica.DefaultApprovalTimeout }
	}
	if o.OpenTimeout == 0 {
		o.OpenTimeout = time.Second
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 256
	}
	return nil
}

// Open opens (or creates) the bbolt ledger at path. It fails fast when
// another process holds the file, and refuses a truncated or corrupted file
// without writing to it.
func Open(path string, opt Options) (*Store, error) {
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	eng, err := openBoltEngine(path, opt.OpenTimeout, false)
	if err != nil {
		return nil, err
	}
	return start(eng, opt)
}

// start checks the ledger an engine holds, gives a new one its id, and
// starts the writer.
func start(eng engine, opt Options) (*Store, error) {
	s := &Store{eng: eng, opt: opt, clock: opt.Clock, log: opt.Logger,
		writes: make(chan *writeReq, 1024), closing: make(chan struct{})}
	if err := s.init(); err != nil {
		eng.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

// init gives a new ledger its id and checks the head of an old one.
func (s *Store) init() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ledger %s is corrupted (%v); it was left untouched: restore it from a backup", s.eng.Describe(), r)
		}
	}()
	if err := s.ensureLedgerID(); err != nil {
		return err
	}
	if err := s.backfillMerkle(); err != nil {
		return err
	}
	return s.eng.View(func(tx Tx) error {
		seq, hash := readHead(tx)
		if seq > 0 {
			e, err := getEntry(tx, seq)
			if err != nil {
				return fmt.Errorf("ledger %s is corrupted: head entry %d: %w", s.eng.Describe(), seq, err)
			}
			if h, err := e.ComputeHash(); err != nil || h != hash || e.Hash != hash {
				return fmt.Errorf("ledger %s is corrupted: head entry %d does not match its hash", s.eng.Describe(), seq)
			}
		}
		s.entries.Store(seq)
		s.ledgerID = string(tx.Bucket(bucketMeta).Get(keyLedgerID))
		s.outboxDepth.Store(int64(countKeys(tx.Bucket(bucketOutbox))))
		return nil
	})
}

// ensureLedgerID gives a ledger its id, once: the first start of a new
// ledger, or of one written before ledgers had ids. Backup, restore and
// copy-store keep it.
func (s *Store) ensureLedgerID() error {
	has := false
	if err := s.eng.View(func(tx Tx) error {
		has = len(tx.Bucket(bucketMeta).Get(keyLedgerID)) > 0
		return nil
	}); err != nil || has {
		return err
	}
	wtx, err := s.eng.Begin(context.Background())
	if err != nil {
		return fmt.Errorf("ledger %s: %w", s.eng.Describe(), err)
	}
	meta := wtx.Bucket(bucketMeta)
	if len(meta.Get(keyLedgerID)) == 0 {
		if err := meta.Put(keyLedgerID, []byte(newLedgerID())); err != nil {
			wtx.Rollback()
			return err
		}
	}
	return wtx.Commit()
}

// newLedgerID returns 26 characters of randomness in lower-case base32.
func newLedgerID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// LedgerID is this ledger's id, given once when it was created: it names
// the ledger's Mattermost cards, its checkpoints' origin and its witness
// blobs, so two ledgers never take each other's.
func (s *Store) LedgerID() string { return s.ledgerID }

// Describe names where the ledger is (a file, or a database without its
// password).
func (s *Store) Describe() string { return s.eng.Describe() }

// Path returns the ledger file's path (bbolt), or where the ledger is.
func (s *Store) Path() string { return s.eng.Describe() }

// Close stops the writer after the queued writes and closes the engine.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.wg.Wait()
	return s.eng.Close()
}

// LedgerEntries returns the number of entries in the chain.
func (s *Store) LedgerEntries() uint64 { return s.entries.Load() }

// OutboxDepth returns the number of undelivered outbox messages.
func (s *Store) OutboxDepth() int64 { return s.outboxDepth.Load() }

// Ping checks that the ledger is open and writable (for /readyz).
func (s *Store) Ping() error {
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.eng.Ping(ctx)
}

// leaderEngine is an engine shared by several processes, of which one at a
// time runs the scheduled work.
type leaderEngine interface {
	lead(ctx context.Context, key int64, poll time.Duration, fn func(ctx context.Context), log func(msg string, args ...any))
	listen(ctx context.Context, wake func(), log func(msg string, args ...any))
}

// LeaderPoll is how often a replica that does not lead tries to take over,
// and how often the leader checks that it still holds its lock.
const LeaderPoll = 2 * time.Second

// Lead runs fn while this process leads the scheduled work (expiry,
// reminders, cost sync, checkpoints): always on an embedded ledger (one
// process); on a shared database, while it holds the scheduler lock. fn's
// context ends when the lead may be lost; Lead returns when ctx ends.
func (s *Store) Lead(ctx context.Context, fn func(ctx context.Context)) {
	run := func(ctx context.Context) {
		s.leading.Store(true)
		defer s.leading.Store(false)
		fn(ctx)
	}
	if le, ok := s.eng.(leaderEngine); ok {
		le.lead(ctx, pgLockScheduler, LeaderPoll, run, func(msg string, args ...any) { s.log.Info(msg, args...) })
		return
	}
	run(ctx)
}

// Leading reports whether this process runs the scheduled work now.
func (s *Store) Leading() bool { return s.leading.Load() }

// Shared reports whether other processes may write the same ledger.
func (s *Store) Shared() bool {
	_, ok := s.eng.(leaderEngine)
	return ok
}

// Watch calls wake whenever another process committed something that may
// concern this one's dispatcher or scheduler (on a shared database), until
// ctx ends. On an embedded ledger every commit is this process's own
// (Options.OnEnqueue), and Watch only waits for ctx.
func (s *Store) Watch(ctx context.Context, wake func()) {
	if le, ok := s.eng.(leaderEngine); ok {
		le.listen(ctx, func() {
			s.refreshCounters()
			wake()
		}, func(msg string, args ...any) { s.log.Warn(msg, args...) })
		return
	}
	<-ctx.Done()
}

// view runs fn in a read-only snapshot.
func (s *Store) view(fn func(tx Tx) error) error { return s.eng.View(fn) }

// WriteBackup writes a consistent copy of the whole ledger to w, as a bbolt
// ledger file whatever the engine, while writers continue; it returns the
// bytes written.
func (s *Store) WriteBackup(w io.Writer) (int64, error) { return s.eng.Backup(w) }

// BackupFile writes a consistent copy of a ledger file that no server has open.
func BackupFile(path string, w io.Writer) (int64, error) {
	eng, err := openBoltEngine(path, time.Second, true)
	if err != nil {
		if strings.Contains(err.Error(), "locked by another process") {
			return 0, fmt.Errorf("ledger is locked by another process: %s (a server without its admin socket?)", path)
		}
		return 0, err
	}
	defer eng.Close()
	return eng.Backup(w)
}

// VerifyBackup opens a backup read-only and walks its hash chain; it does not
// check checkpoint keys (a backup may be verified without the signing key).
func VerifyBackup(path string) (err error) {
	defer func() {
		// bbolt panics on some kinds of damage (a file cut short) while
		// reading pages.
		if r := recover(); r != nil {
			err = fmt.Errorf("backup %s is corrupted (%v)", path, r)
		}
	}()
	eng, err := openBoltEngine(path, time.Second, true)
	if err != nil {
		return err
	}
	defer eng.Close()
	s := &Store{eng: eng, opt: Options{Key: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))}}
	if err := eng.View(func(tx Tx) error {
		seq, hash := readHead(tx)
		if seq > 0 {
			e, err := getEntry(tx, seq)
			if err != nil {
				return fmt.Errorf("backup %s is corrupted: head entry %d: %w", path, seq, err)
			}
			if e.Hash != hash {
				return fmt.Errorf("backup %s is corrupted: head entry %d does not match its hash", path, seq)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	var prev *ica.LedgerEntry
	return s.ScanLedger(1, func(e *ica.LedgerEntry) error {
		if err := e.Verify(prev); err != nil {
			return err
		}
		prev = e
		return nil
	})
}

// Now returns the store's clock reading.
func (s *Store) Now() time.Time { return s.clock.Now() }
