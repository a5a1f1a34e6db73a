// Package store keeps ICA's state in one bbolt file: the current-state
// buckets and their indexes, the hash-chained ledger, signed checkpoints and
// the outbox. Every state change is one bbolt transaction that updates the
// state, appends to the chain and enqueues the messages it causes.
package store

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

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
	bucketOutbox        = []byte("outbox")
	bucketOutboxKeys    = []byte("outbox_keys")
	bucketOutboxDead    = []byte("outbox_dead")
	bucketChecks        = []byte("approval_checks")

	allBuckets = [][]byte{bucketMeta, bucketRuns, bucketRunByStart, bucketRunByPipeline, bucketRunByStatus,
		bucketEvents, bucketEventIDs, bucketApprovals, bucketApprByRun, bucketApprDeadline, bucketApprByPost,
		bucketLedger, bucketLedgerByTime, bucketCheckpoints, bucketOutbox, bucketOutboxKeys, bucketOutboxDead,
		bucketCosts, bucketCostByMonth, bucketChecks}

	keyHead   = []byte("head")
	keySchema = []byte("schema")
)

const schemaVersion = "1"

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
	// Gates are policy checks run inside the transaction that creates an
	// approval (budget, deployment freeze); an error refuses the request.
	Gates []ApprovalGate

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

// Store is the bbolt-backed state of ICA. It is safe for concurrent use.
type Store struct {
	db    *bolt.DB
	path  string
	opt   Options
	clock ica.Clock
	log   *slog.Logger

	writes    chan *writeReq
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	entries     atomic.Uint64 // ledger head seq
	outboxDepth atomic.Int64

	// beforeCommit is a test seam that fails a transaction just before commit.
	beforeCommit func() error

	// releasePages makes long scans hand the mapped pages they read back to
	// the kernel (see ReleasePagesWhileScanning).
	releasePages bool
	lastRelease  time.Time // writer goroutine only
}

// ReleasePagesWhileScanning makes ScanLedger drop the ledger's mapped pages
// from the process after each page of entries. A one-shot reader of a large
// ledger (ica export) then stays small: the pages stay in the page cache
// and are faulted back in when needed.
func (s *Store) ReleasePagesWhileScanning() { s.releasePages = true }

// Open opens (or creates) the ledger at path. It fails fast when another
// process holds the file, and refuses a truncated or corrupted file without
// writing to it.
func Open(path string, opt Options) (*Store, error) {
	if opt.Key == nil {
		return nil, errors.New("open ledger: a signing key is required")
	}
	if opt.Clock == nil {
		opt.Clock = ica.SystemClock{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Notifier == nil {
		opt.Notifier = ica.NopNotifier{}
	}
	if opt.CheckpointEvery == 0 {
		opt.CheckpointEvery = 1000
	}
	if opt.ApprovalTimeout == nil {
		opt.ApprovalTimeout = func(string) time.Duration { return ica.DefaultApprovalTimeout }
	}
	if opt.OpenTimeout == 0 {
		opt.OpenTimeout = time.Second
	}
	if opt.MaxBatch == 0 {
		opt.MaxBatch = 256
	}
	if fi, err := os.Stat(path); err == nil {
		// bbolt initialises an empty file in place; an existing empty or
		// short file is a damaged ledger, and must not be overwritten.
		if fi.Size() < 4*4096 {
			return nil, fmt.Errorf("ledger file %s is truncated (%d bytes); it was left untouched: restore it from a backup", path, fi.Size())
		}
	}
	db, err := openBolt(path, opt.OpenTimeout)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: path, opt: opt, clock: opt.Clock, log: opt.Logger,
		writes: make(chan *writeReq, 1024), closing: make(chan struct{})}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

func openBolt(path string, timeout time.Duration) (db *bolt.DB, err error) {
	defer func() {
		// bbolt panics on some kinds of damage while reading the meta pages.
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("ledger file %s is corrupted (%v); it was left untouched: restore it from a backup", path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("ledger is locked by another process: %s (is another ica serving this data directory?)", path)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
		return nil, fmt.Errorf("ledger file %s is corrupted (%v); it was left untouched: restore it from a backup", path, err)
	case err != nil:
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	return db, nil
}

// init creates the buckets of a new ledger and checks the head of an old one.
func (s *Store) init() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ledger file %s is corrupted (%v); it was left untouched: restore it from a backup", s.path, r)
		}
	}()
	fresh := false
	if err := s.db.View(func(tx *bolt.Tx) error {
		fresh = tx.Bucket(bucketMeta) == nil
		return nil
	}); err != nil {
		return fmt.Errorf("read ledger %s: %w", s.path, err)
	}
	if fresh {
		return s.db.Update(func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keySchema, []byte(schemaVersion))
		})
	}
	// Buckets added by later versions are created on an existing ledger; the
	// ones every ledger has from its first start must be there.
	if err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketLedger, bucketRuns} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("ledger file %s is corrupted: bucket %s is missing", s.path, b)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("upgrade ledger %s: %w", s.path, err)
	}
	return s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySchema); string(v) != schemaVersion {
			return fmt.Errorf("ledger file %s has schema %q; this ica understands %q", s.path, v, schemaVersion)
		}
		seq, hash := readHead(tx)
		if seq > 0 {
			e, err := getEntry(tx, seq)
			if err != nil {
				return fmt.Errorf("ledger file %s is corrupted: head entry %d: %w", s.path, seq, err)
			}
			if h, err := e.ComputeHash(); err != nil || h != hash || e.Hash != hash {
				return fmt.Errorf("ledger file %s is corrupted: head entry %d does not match its hash", s.path, seq)
			}
		}
		s.entries.Store(seq)
		n := 0
		tx.Bucket(bucketOutbox).ForEachBucket(func(k []byte) error {
			n += tx.Bucket(bucketOutbox).Bucket(k).Stats().KeyN
			return nil
		})
		s.outboxDepth.Store(int64(n))
		return nil
	})
}

// Path returns the ledger file's path.
func (s *Store) Path() string { return s.path }

// Close stops the writer after the queued writes and closes the file.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.wg.Wait()
	return s.db.Close()
}

// LedgerEntries returns the number of entries in the chain.
func (s *Store) LedgerEntries() uint64 { return s.entries.Load() }

// OutboxDepth returns the number of undelivered outbox messages.
func (s *Store) OutboxDepth() int64 { return s.outboxDepth.Load() }

// Ping checks that the ledger is open and writable (for /readyz).
func (s *Store) Ping() error {
	if s.db.IsReadOnly() {
		return errors.New("ledger is read-only")
	}
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	return s.db.View(func(tx *bolt.Tx) error { return nil })
}

// WriteBackup writes a consistent copy of the whole database to w while
// writers continue; it returns the bytes written.
func (s *Store) WriteBackup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// BackupFile writes a consistent copy of a ledger that no server has open.
func BackupFile(path string, w io.Writer) (int64, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("no ledger at %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return 0, fmt.Errorf("ledger is locked by another process: %s (a server without its admin socket?)", path)
	} else if err != nil {
		return 0, fmt.Errorf("open ledger %s: %w", path, err)
	}
	defer db.Close()
	var n int64
	err = db.View(func(tx *bolt.Tx) error {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// VerifyBackup opens a backup read-only and walks its hash chain; it does not
// check checkpoint keys (a backup may be verified without the signing key).
func VerifyBackup(path string) error {
	db, err := openBolt(path, time.Second)
	if err != nil {
		return err
	}
	s := &Store{db: db, path: path, opt: Options{Key: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))}}
	defer db.Close()
	if err := s.init(); err != nil {
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
