package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	bolt "go.etcd.io/bbolt"

	"github.com/ica-governance/ica"
)

// pgEngine keeps the buckets in PostgreSQL, one table per bucket (see
// migrations/postgres). Any number of ICA replicas share it:
//   - write transactions are serialised by a transaction-level advisory lock
//     (the chain lock), so the hash chain has one head and every
//     read-modify-write sees the last commit, whichever replica made it;
//   - each replica still groups its concurrent requests into one
//     transaction, whose writes are buffered and sent in one round trip at
//     commit (synchronous commit: a 2xx answer means durable);
//   - reads run in REPEATABLE READ snapshots.
type pgEngine struct {
	pool *pgxpool.Pool
	desc string
	// onWake is called when another replica (or this one) committed
	// something that may wake the dispatcher or the scheduler.
	mu     sync.Mutex
	onWake func()
}

var _ engine = (*pgEngine)(nil)

// Advisory lock keys (one namespace: "ICA" in ASCII, then a number).
const (
	pgLockChain     int64 = 0x494341_0001
	pgLockMigrate   int64 = 0x494341_0002
	pgLockScheduler int64 = 0x494341_0003
)

// pgWakeChannel is the LISTEN/NOTIFY channel of commits that enqueued
// outbox messages or changed deadlines.
const pgWakeChannel = "ica_wake"

func table(bucket []byte) string { return "kv_" + string(bucket) }

// knownTables are the tables of the buckets of the schema; a bucket name is
// only ever turned into SQL after it is found here.
var knownTables = func() map[string]string {
	m := map[string]string{}
	for _, b := range allBuckets {
		m[string(b)] = pgx.Identifier{table(b)}.Sanitize()
	}
	return m
}()

func (e *pgEngine) Describe() string { return e.desc }

func (e *pgEngine) Close() error {
	e.pool.Close()
	return nil
}

func (e *pgEngine) Ping(ctx context.Context) error {
	var ro string
	if err := e.pool.QueryRow(ctx, "SHOW transaction_read_only").Scan(&ro); err != nil {
		return unavailableDB(err)
	}
	if ro == "on" {
		return errors.New("the database is read-only (a standby?)")
	}
	return nil
}

// unavailableDB turns a database failure into the transient error callers
// answer with 503 and Retry-After.
func unavailableDB(err error) error {
	var ie *ica.Error
	if errors.As(err, &ie) {
		return err
	}
	return ica.Unavailable("the ledger database could not be reached; nothing was recorded, retry later", err)
}

func (e *pgEngine) View(fn func(Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tx, err := e.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return unavailableDB(err)
	}
	defer tx.Rollback(context.Background())
	r := &pgReader{ctx: ctx, tx: tx, buckets: map[string]*pgBucket{}}
	ferr := fn(r)
	if r.err != nil {
		return unavailableDB(r.err)
	}
	return ferr
}

func (e *pgEngine) Begin(ctx context.Context) (writeTx, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		cancel()
		return nil, unavailableDB(err)
	}
	// BEGIN and the chain lock in one round trip: the lock is what the
	// group waits for, so the fewer round trips around it the better.
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	b.Queue("SELECT pg_advisory_xact_lock($1)", pgLockChain)
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		_, _ = conn.Exec(context.Background(), "ROLLBACK")
		conn.Release()
		cancel()
		return nil, unavailableDB(err)
	}
	r := &pgReader{ctx: ctx, tx: conn, buckets: map[string]*pgBucket{}}
	return &pgWriteTx{overlay: newOverlay(r), r: r, conn: conn, cancel: cancel}, nil
}

// pgWriteTx is the group's transaction: the database, read under the chain
// lock, with every write buffered in an overlay until Commit.
type pgWriteTx struct {
	*overlay
	r      *pgReader
	conn   *pgxpool.Conn
	cancel context.CancelFunc
	wake   bool
}

// Err reports a database failure met while reading: the operations that ran
// may have seen nothing where something was, so the group must not commit.
func (t *pgWriteTx) Err() error { return t.r.err }

// prefetch reads what the group's operations named, in one round trip.
func (t *pgWriteTx) prefetch(h []readHint) { t.r.prefetch(h) }

// setWake asks the commit to notify every replica.
func (t *pgWriteTx) setWake() { t.wake = true }

func (t *pgWriteTx) Rollback() {
	t.end(false)
}

// end finishes the transaction's connection: rolled back unless committed,
// and back to the pool (which drops a connection left in a transaction).
func (t *pgWriteTx) end(committed bool) {
	if !committed {
		_, _ = t.conn.Exec(context.Background(), "ROLLBACK")
	}
	t.conn.Release()
	t.cancel()
}

// Commit sends the group's writes and COMMIT in one round trip.
func (t *pgWriteTx) Commit() error {
	if t.r.err != nil {
		t.end(false)
		return unavailableDB(t.r.err)
	}
	ctx := t.r.ctx
	batch := &pgx.Batch{}
	for _, b := range t.order {
		name := knownTables[b.name]
		var putK, putV, del [][]byte
		for _, k := range b.sorted() {
			w := b.writes[k]
			if w.deleted {
				del = append(del, []byte(k))
			} else {
				putK, putV = append(putK, []byte(k)), append(putV, w.v)
			}
		}
		if len(del) > 0 {
			batch.Queue("DELETE FROM "+name+" WHERE k = ANY($1::bytea[])", del)
		}
		if len(putK) > 0 {
			batch.Queue("INSERT INTO "+name+" (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", putK, putV)
		}
		if b.seqSet {
			batch.Queue("INSERT INTO ica_seq (bucket, seq) VALUES ($1, $2) ON CONFLICT (bucket) DO UPDATE SET seq = EXCLUDED.seq", b.name, int64(b.seq))
		}
	}
	if t.wake {
		batch.Queue("SELECT pg_notify($1, '')", pgWakeChannel)
	}
	committed := false
	batch.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		// A transaction that failed answers COMMIT with ROLLBACK.
		if ct.String() != "COMMIT" {
			return fmt.Errorf("the transaction was rolled back (%s)", ct.String())
		}
		committed = true
		return nil
	})
	err := t.conn.SendBatch(ctx, batch).Close()
	t.end(committed)
	if !committed {
		// Nothing of the group is durable: every write waits for COMMIT.
		if err == nil {
			err = errors.New("the commit was not confirmed")
		}
		return unavailableDB(err)
	}
	for _, fn := range t.onCommit {
		fn()
	}
	return nil
}

// pgQuerier is a transaction or a connection in one.
type pgQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// pgReader reads buckets inside one database transaction. What it reads is
// kept for the transaction's life (the group's writes are in the overlay
// above it, and no other writer runs while the group holds the chain lock,
// so what was read stays true), and the writer prefetches what a group's
// operations will read in one round trip. A query failure is kept (Err) and
// reads return nothing after it.
type pgReader struct {
	ctx      context.Context
	tx       pgQuerier
	buckets  map[string]*pgBucket
	err      error
	onCommit []func()
	queries  int
}

func (r *pgReader) Bucket(name []byte) Bucket { return r.bucket(string(name)) }

func (r *pgReader) bucket(name string) *pgBucket {
	if b := r.buckets[name]; b != nil {
		return b
	}
	t, ok := knownTables[name]
	if !ok {
		panic(fmt.Sprintf("store: unknown bucket %q", name))
	}
	b := &pgBucket{r: r, name: name, table: t, cache: map[string][]byte{}}
	r.buckets[name] = b
	return b
}

// OnCommit of a read transaction: never called (writes go to the overlay,
// whose callbacks the group keeps).
func (r *pgReader) OnCommit(fn func()) { r.onCommit = append(r.onCommit, fn) }

func (r *pgReader) fail(err error) {
	if r.err == nil && err != nil {
		r.err = err
	}
}

// readHint names a read an operation is about to make, so the group's
// reads can be fetched together.
type readHint struct {
	bucket []byte
	key    []byte
	// around: fetch the keys just before and at-or-after key (a cursor's
	// Seek then Prev), instead of key itself.
	around bool
}

func hintGet(bucket, key []byte) readHint    { return readHint{bucket: bucket, key: key} }
func hintAround(bucket, key []byte) readHint { return readHint{bucket: bucket, key: key, around: true} }

// prefetch reads what hints name in one round trip.
func (r *pgReader) prefetch(hints []readHint) {
	if r.err != nil || len(hints) == 0 {
		return
	}
	type pending struct {
		b    *pgBucket
		h    readHint
		rows []kvPair
	}
	var todo []*pending
	seen := map[string]bool{}
	batch := &pgx.Batch{}
	for _, h := range hints {
		id := fmt.Sprintf("%s\x00%t\x00%s", h.bucket, h.around, h.key)
		if seen[id] {
			continue
		}
		seen[id] = true
		b := r.bucket(string(h.bucket))
		if !h.around {
			if _, ok := b.cached(h.key); ok {
				continue
			}
		} else if b.windowFor(h.key) != nil {
			continue
		}
		p := &pending{b: b, h: h}
		todo = append(todo, p)
		q := "SELECT k, v FROM " + b.table + " WHERE k = $1"
		if h.around {
			q = "(SELECT k, v FROM " + b.table + " WHERE k < $1 ORDER BY k DESC LIMIT 1) UNION ALL (SELECT k, v FROM " + b.table + " WHERE k >= $1 ORDER BY k LIMIT 1)"
		}
		batch.Queue(q, h.key).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k, v []byte
				if err := rows.Scan(&k, &v); err != nil {
					return err
				}
				if v == nil {
					v = []byte{}
				}
				p.rows = append(p.rows, kvPair{k, v})
			}
			return rows.Err()
		})
	}
	if len(todo) == 0 {
		return
	}
	r.queries++
	if err := r.tx.SendBatch(r.ctx, batch).Close(); err != nil {
		r.fail(err)
		return
	}
	for _, p := range todo {
		if !p.h.around {
			if len(p.rows) == 1 {
				p.b.cache[string(p.h.key)] = p.rows[0].v
			} else {
				p.b.cache[string(p.h.key)] = nil
			}
			continue
		}
		// The window from the key before to the key at-or-after: every key
		// of the table between them is known (there is none).
		w := &pgWindow{hiInf: true}
		var pred, succ *kvPair
		for i := range p.rows {
			if bytes.Compare(p.rows[i].k, p.h.key) < 0 {
				pred = &p.rows[i]
			} else {
				succ = &p.rows[i]
			}
		}
		if pred != nil {
			w.lo = pred.k
			w.rows = append(w.rows, *pred)
		}
		if succ != nil {
			w.rows = append(w.rows, *succ)
			w.hi, w.hiInf = after(succ.k), false
		}
		p.b.windows = append(p.b.windows, w)
	}
}

type pgBucket struct {
	r       *pgReader
	name    string
	table   string
	seq     *uint64
	cache   map[string][]byte // key → value; a nil value: known absent
	windows []*pgWindow
}

// pgWindow is a run of a table's keys known completely: every key k with
// lo <= k < hi is in rows (lo nil: from the start; hiInf: to the end).
type pgWindow struct {
	lo, hi []byte
	hiInf  bool
	rows   []kvPair
}

func (w *pgWindow) covers(k []byte) bool {
	return (w.lo == nil || bytes.Compare(k, w.lo) >= 0) && (w.hiInf || bytes.Compare(k, w.hi) < 0)
}

func (b *pgBucket) windowFor(k []byte) *pgWindow {
	for i := len(b.windows) - 1; i >= 0; i-- {
		if b.windows[i].covers(k) {
			return b.windows[i]
		}
	}
	return nil
}

func (b *pgBucket) cached(key []byte) ([]byte, bool) {
	if v, ok := b.cache[string(key)]; ok {
		return v, true
	}
	if w := b.windowFor(key); w != nil {
		i := sort.Search(len(w.rows), func(i int) bool { return bytes.Compare(w.rows[i].k, key) >= 0 })
		if i < len(w.rows) && bytes.Equal(w.rows[i].k, key) {
			return w.rows[i].v, true
		}
		return nil, true
	}
	return nil, false
}

func (b *pgBucket) Get(key []byte) []byte {
	if b.r.err != nil {
		return nil
	}
	if v, ok := b.cached(key); ok {
		return v
	}
	var v []byte
	b.r.queries++
	err := b.r.tx.QueryRow(b.r.ctx, "SELECT v FROM "+b.table+" WHERE k = $1", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		b.cache[string(key)] = nil
		return nil
	}
	if err != nil {
		b.r.fail(err)
		return nil
	}
	if v == nil {
		v = []byte{}
	}
	b.cache[string(key)] = v
	return v
}

// Writes never reach a pgBucket: the group's overlay buffers them.
func (b *pgBucket) Put(key, value []byte) error   { return errReadOnly }
func (b *pgBucket) Delete(key []byte) error       { return errReadOnly }
func (b *pgBucket) NextSequence() (uint64, error) { return 0, errReadOnly }
func (b *pgBucket) SetSequence(uint64) error      { return errReadOnly }

func (b *pgBucket) Sequence() uint64 {
	if b.seq != nil {
		return *b.seq
	}
	var v int64
	b.r.queries++
	err := b.r.tx.QueryRow(b.r.ctx, "SELECT seq FROM ica_seq WHERE bucket = $1", b.name).Scan(&v)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		b.r.fail(err)
		return 0
	}
	u := uint64(v)
	b.seq = &u
	return u
}

func (b *pgBucket) ForEach(fn func(k, v []byte) error) error { return forEach(b, fn) }

func (b *pgBucket) Cursor() Cursor { return &pgCursor{b: b, i: -1} }

// pgCursor walks a table through windows of rows fetched in key order.
// Moves and seeks inside a known window need no query (an overlay's merged
// cursor seeks at every step); pages grow while a walk goes on.
type pgCursor struct {
	b    *pgBucket
	w    *pgWindow
	i    int
	page int
}

const (
	pgFirstPage = 16
	pgMaxPage   = 2048
)

func (c *pgCursor) nextPage() int {
	if c.page == 0 {
		c.page = pgFirstPage
	} else if c.page < pgMaxPage {
		c.page *= 2
	}
	return c.page
}

// load fetches a window: rows of query (descending when desc), of which
// there were fewer than n when the table ended.
func (c *pgCursor) load(query string, desc bool, n int, args ...any) (rows []kvPair, short bool) {
	if c.b.r.err != nil {
		return nil, true
	}
	c.b.r.queries++
	res, err := c.b.r.tx.Query(c.b.r.ctx, query, args...)
	if err != nil {
		c.b.r.fail(err)
		return nil, true
	}
	for res.Next() {
		var k, v []byte
		if err := res.Scan(&k, &v); err != nil {
			res.Close()
			c.b.r.fail(err)
			return nil, true
		}
		if v == nil {
			v = []byte{}
		}
		rows = append(rows, kvPair{k, v})
	}
	res.Close()
	if err := res.Err(); err != nil {
		c.b.r.fail(err)
		return nil, true
	}
	if desc {
		for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
			rows[i], rows[j] = rows[j], rows[i]
		}
	}
	return rows, len(rows) < n
}

func (c *pgCursor) set(w *pgWindow, i int) ([]byte, []byte) {
	c.w = w
	c.b.windows = append(c.b.windows, w)
	return c.at(i)
}

func (c *pgCursor) at(i int) ([]byte, []byte) {
	if c.w == nil || i < 0 || i >= len(c.w.rows) {
		c.i = -1
		return nil, nil
	}
	c.i = i
	return c.w.rows[i].k, c.w.rows[i].v
}

// ascending builds the window of rows fetched upwards from lo.
func ascending(lo []byte, rows []kvPair, short bool) *pgWindow {
	w := &pgWindow{lo: lo, rows: rows, hiInf: short}
	if !short {
		w.hi = after(rows[len(rows)-1].k)
	}
	return w
}

// descending builds the window of rows fetched downwards below hi (nil: the end).
func descending(hi []byte, rows []kvPair, short bool) *pgWindow {
	w := &pgWindow{hi: hi, hiInf: hi == nil, rows: rows}
	if !short {
		w.lo = rows[0].k
	}
	return w
}

// First is a seek to the smallest key: a known window from the table's
// start answers it without a query (an empty table is asked about once
// per transaction, however many operations scan it).
func (c *pgCursor) First() ([]byte, []byte) { return c.Seek(nil) }

func (c *pgCursor) Last() ([]byte, []byte) {
	for i := len(c.b.windows) - 1; i >= 0; i-- {
		if w := c.b.windows[i]; w.hiInf && len(w.rows) > 0 {
			// A window that reaches the end of the table knows its last key.
			c.w = w
			return c.at(len(w.rows) - 1)
		}
	}
	c.page = 0
	n := c.nextPage()
	rows, short := c.load("SELECT k, v FROM "+c.b.table+" ORDER BY k DESC LIMIT $1", true, n, n)
	return c.set(descending(nil, rows, short), len(rows)-1)
}

func (c *pgCursor) Seek(seek []byte) ([]byte, []byte) {
	if seek == nil {
		seek = []byte{}
	}
	c.page = 0
	return c.seek(seek)
}

// seek moves to the first key >= k from the known windows, or fetches the
// next page from there.
func (c *pgCursor) seek(k []byte) ([]byte, []byte) {
	w := c.w
	if w == nil || !w.covers(k) {
		w = c.b.windowFor(k)
	}
	if w != nil {
		i := sort.Search(len(w.rows), func(i int) bool { return bytes.Compare(w.rows[i].k, k) >= 0 })
		if i < len(w.rows) {
			c.w = w
			return c.at(i)
		}
		if w.hiInf {
			c.w, c.i = w, -1
			return nil, nil
		}
		k = w.hi // nothing in [k, hi): the answer is at or after hi
	}
	n := c.nextPage()
	rows, short := c.load("SELECT k, v FROM "+c.b.table+" WHERE k >= $1 ORDER BY k LIMIT $2", false, n, k, n)
	return c.set(ascending(k, rows, short), 0)
}

func (c *pgCursor) Next() ([]byte, []byte) {
	if c.i < 0 || c.w == nil {
		return nil, nil
	}
	if c.i+1 < len(c.w.rows) {
		return c.at(c.i + 1)
	}
	if c.w.hiInf {
		c.i = -1
		return nil, nil
	}
	return c.seek(c.w.hi)
}

func (c *pgCursor) Prev() ([]byte, []byte) {
	if c.i < 0 || c.w == nil {
		return nil, nil
	}
	if c.i > 0 {
		return c.at(c.i - 1)
	}
	if c.w.lo == nil {
		c.i = -1
		return nil, nil
	}
	lo := c.w.lo
	n := c.nextPage()
	rows, short := c.load("SELECT k, v FROM "+c.b.table+" WHERE k < $1 ORDER BY k DESC LIMIT $2", true, n, lo, n)
	return c.set(descending(lo, rows, short), len(rows)-1)
}

// Backup writes every table, read in one snapshot, as a bbolt ledger file:
// a backup of a PostgreSQL ledger restores into either engine.
func (e *pgEngine) Backup(w io.Writer) (int64, error) {
	dir, err := os.MkdirTemp("", "ica-backup-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ica.db")
	if err := e.CopyTo(path); err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.Copy(w, f)
}

// CopyTo writes every bucket, read in one snapshot, into a new bbolt file.
func (e *pgEngine) CopyTo(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return b.Put(keySchema, []byte(schemaVersion))
	}); err != nil {
		return err
	}
	return e.View(func(src Tx) error {
		return copyBuckets(src, func(fn func(dst Tx) error) error {
			return db.Update(func(tx *bolt.Tx) error {
				for _, b := range allBuckets {
					if _, err := tx.CreateBucketIfNotExists(b); err != nil {
						return err
					}
				}
				return fn(&boltTx{tx: tx})
			})
		})
	})
}

// copyBuckets copies every bucket and sequence of src into transactions
// opened by update, a few thousand keys at a time.
func copyBuckets(src Tx, update func(func(dst Tx) error) error) error {
	const chunk = 5000
	for _, name := range allBuckets {
		sb := src.Bucket(name)
		seq := sb.Sequence()
		var pending []kvPair
		flush := func() error {
			if len(pending) == 0 {
				return nil
			}
			err := update(func(dst Tx) error {
				db := dst.Bucket(name)
				for _, p := range pending {
					if err := db.Put(p.k, p.v); err != nil {
						return err
					}
				}
				return nil
			})
			pending = pending[:0]
			return err
		}
		c := sb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			pending = append(pending, kvPair{bytes.Clone(k), bytes.Clone(v)})
			if len(pending) == chunk {
				if err := flush(); err != nil {
					return fmt.Errorf("copy %s: %w", name, err)
				}
			}
		}
		if err := flush(); err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
		if seq > 0 {
			if err := update(func(dst Tx) error { return dst.Bucket(name).SetSequence(seq) }); err != nil {
				return fmt.Errorf("copy %s: sequence: %w", name, err)
			}
		}
	}
	return nil
}

// listen calls wake for every commit notification from any replica until
// ctx ends, reconnecting after a lost connection (and waking once then, as
// notifications may have been missed meanwhile).
func (e *pgEngine) listen(ctx context.Context, wake func(), log func(msg string, args ...any)) {
	for ctx.Err() == nil {
		conn, err := e.pool.Acquire(ctx)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+pgWakeChannel)
			if err == nil {
				wake()
				for ctx.Err() == nil {
					if _, err = conn.Conn().WaitForNotification(ctx); err != nil {
						break
					}
					wake()
				}
			}
			conn.Release()
		}
		if ctx.Err() != nil {
			return
		}
		log("database notifications lost; reconnecting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// lead runs fn while this replica holds the named session advisory lock on
// a connection of its own; fn's context ends when the lock may be lost (the
// connection failed). Another replica takes over within a poll interval of
// the holder's death: PostgreSQL drops a dead session's locks.
func (e *pgEngine) lead(ctx context.Context, key int64, poll time.Duration, fn func(ctx context.Context), log func(msg string, args ...any)) {
	for ctx.Err() == nil {
		conn, err := e.pool.Acquire(ctx)
		if err != nil {
			sleepCtx(ctx, poll)
			continue
		}
		var got bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err != nil || !got {
			conn.Release()
			sleepCtx(ctx, poll)
			continue
		}
		log("this replica leads the scheduled work")
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); fn(lctx) }()
	watch:
		for {
			select {
			case <-done:
				break watch
			case <-time.After(poll):
				pctx, pcancel := context.WithTimeout(ctx, poll)
				err := conn.Ping(pctx)
				pcancel()
				if err != nil {
					log("lost the scheduler lock's connection; stepping down", "err", err)
					break watch
				}
			}
		}
		cancel()
		<-done
		_, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key)
		conn.Release()
		if ctx.Err() == nil {
			sleepCtx(ctx, poll)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

var _ leaderEngine = (*pgEngine)(nil)

// erase empties every table of the ledger in one transaction, under the
// chain lock.
func (e *pgEngine) erase(ctx context.Context) error {
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return unavailableDB(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", pgLockChain); err != nil {
		return unavailableDB(err)
	}
	tables := []string{"ica_seq"}
	for _, b := range allBuckets {
		tables = append(tables, knownTables[string(b)])
	}
	if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(tables, ", ")); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
