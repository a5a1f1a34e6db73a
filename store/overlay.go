package store

import (
	"bytes"
	"sort"
)

// overlay is one operation's view of a write transaction: its writes are
// kept aside and read back through it, and reach the group's transaction
// only through merge, when the operation succeeded. A failed operation's
// overlay is dropped, so its neighbours in the group commit neither re-run
// nor lose anything. (On PostgreSQL the group transaction is itself an
// overlay over the database, flushed at commit.)
type overlay struct {
	base     Tx
	buckets  map[string]*obucket
	order    []*obucket // buckets in first-use order, so merges are deterministic
	onCommit []func()
}

func newOverlay(base Tx) *overlay {
	return &overlay{base: base, buckets: map[string]*obucket{}}
}

// Bucket implements Tx.
func (o *overlay) Bucket(name []byte) Bucket {
	if b := o.buckets[string(name)]; b != nil {
		return b
	}
	b := &obucket{name: string(name), base: o.base.Bucket(name), writes: map[string]oentry{}}
	o.buckets[b.name] = b
	o.order = append(o.order, b)
	return b
}

// OnCommit implements Tx: fn runs after the group that merged this overlay
// commits; it is dropped with a failed operation.
func (o *overlay) OnCommit(fn func()) { o.onCommit = append(o.onCommit, fn) }

// dirty reports whether the overlay holds any write.
func (o *overlay) dirty() bool {
	for _, b := range o.order {
		if len(b.writes) > 0 || b.seqSet {
			return true
		}
	}
	return false
}

// merge applies the overlay's writes to its base and hands its commit
// callbacks over.
func (o *overlay) merge() error {
	for _, b := range o.order {
		for _, k := range b.sorted() {
			e := b.writes[k]
			var err error
			if e.deleted {
				err = b.base.Delete([]byte(k))
			} else {
				err = b.base.Put([]byte(k), e.v)
			}
			if err != nil {
				return err
			}
		}
		if b.seqSet {
			if err := b.base.SetSequence(b.seq); err != nil {
				return err
			}
		}
	}
	for _, fn := range o.onCommit {
		o.base.OnCommit(fn)
	}
	return nil
}

// reset empties the overlay for reuse over the same base.
func (o *overlay) reset() {
	clear(o.buckets)
	o.order = o.order[:0]
	o.onCommit = o.onCommit[:0]
}

type oentry struct {
	v       []byte
	deleted bool
}

type obucket struct {
	name   string
	base   Bucket
	writes map[string]oentry
	keys   []string // sorted keys of writes; nil when it must be rebuilt
	seq    uint64
	seqSet bool
}

func (b *obucket) sorted() []string {
	if b.keys == nil && len(b.writes) > 0 {
		b.keys = make([]string, 0, len(b.writes))
		for k := range b.writes {
			b.keys = append(b.keys, k)
		}
		sort.Strings(b.keys)
	}
	return b.keys
}

func (b *obucket) Get(key []byte) []byte {
	if e, ok := b.writes[string(key)]; ok {
		if e.deleted {
			return nil
		}
		return e.v
	}
	return b.base.Get(key)
}

func (b *obucket) Put(key, value []byte) error {
	if len(key) == 0 {
		return errEmptyKey
	}
	if value == nil {
		value = []byte{}
	}
	k := string(key)
	if _, ok := b.writes[k]; !ok {
		b.keys = nil
	}
	b.writes[k] = oentry{v: bytes.Clone(value)}
	return nil
}

func (b *obucket) Delete(key []byte) error {
	k := string(key)
	if _, ok := b.writes[k]; !ok {
		b.keys = nil
	}
	b.writes[k] = oentry{deleted: true}
	return nil
}

func (b *obucket) NextSequence() (uint64, error) {
	if !b.seqSet {
		b.seq, b.seqSet = b.base.Sequence(), true
	}
	b.seq++
	return b.seq, nil
}

func (b *obucket) Sequence() uint64 {
	if b.seqSet {
		return b.seq
	}
	return b.base.Sequence()
}

func (b *obucket) SetSequence(v uint64) error {
	b.seq, b.seqSet = v, true
	return nil
}

func (b *obucket) ForEach(fn func(k, v []byte) error) error { return forEach(b, fn) }

// Cursor merges the overlay's writes with the base bucket's keys. A bucket
// the operation has not written is read through the base cursor directly.
func (b *obucket) Cursor() Cursor {
	if len(b.writes) == 0 {
		return b.base.Cursor()
	}
	return &mergedCursor{b: b, bc: b.base.Cursor()}
}

// mergedCursor walks the union of a base cursor and an overlay's writes,
// the overlay winning on equal keys and hiding deleted ones. Each move seeks
// both sides afresh from the current key, which keeps it simple and correct
// whatever moves came before; it is used only where an operation scans a
// bucket it has also written.
type mergedCursor struct {
	b   *obucket
	bc  Cursor
	cur []byte
}

// after returns the smallest key strictly greater than k.
func after(k []byte) []byte { return append(bytes.Clone(k), 0) }

// ge moves to the first visible key >= k (from the start when k is nil).
func (c *mergedCursor) ge(k []byte) ([]byte, []byte) {
	keys := c.b.sorted()
	for {
		var bk, bv []byte
		if k == nil {
			bk, bv = c.bc.First()
		} else {
			bk, bv = c.bc.Seek(k)
		}
		i := 0
		if k != nil {
			i = sort.SearchStrings(keys, string(k))
		}
		if i < len(keys) && (bk == nil || keys[i] <= string(bk)) {
			ok := keys[i]
			e := c.b.writes[ok]
			if e.deleted {
				k = after([]byte(ok))
				continue
			}
			c.cur = []byte(ok)
			return c.cur, e.v
		}
		if bk == nil {
			c.cur = nil
			return nil, nil
		}
		c.cur = bytes.Clone(bk)
		return bk, bv
	}
}

// lt moves to the last visible key < k (from the end when k is nil).
func (c *mergedCursor) lt(k []byte) ([]byte, []byte) {
	keys := c.b.sorted()
	for {
		var bk, bv []byte
		if k == nil {
			bk, bv = c.bc.Last()
		} else if bk, _ = c.bc.Seek(k); bk == nil {
			bk, bv = c.bc.Last()
		} else {
			bk, bv = c.bc.Prev()
		}
		i := len(keys) - 1
		if k != nil {
			i = sort.SearchStrings(keys, string(k)) - 1
		}
		if i >= 0 && (bk == nil || keys[i] >= string(bk)) {
			ok := keys[i]
			e := c.b.writes[ok]
			if e.deleted {
				k = []byte(ok)
				continue
			}
			c.cur = []byte(ok)
			return c.cur, e.v
		}
		if bk == nil {
			c.cur = nil
			return nil, nil
		}
		c.cur = bytes.Clone(bk)
		return bk, bv
	}
}

func (c *mergedCursor) First() ([]byte, []byte) { return c.ge(nil) }
func (c *mergedCursor) Last() ([]byte, []byte)  { return c.lt(nil) }
func (c *mergedCursor) Seek(seek []byte) ([]byte, []byte) {
	if seek == nil {
		seek = []byte{}
	}
	return c.ge(seek)
}

func (c *mergedCursor) Next() ([]byte, []byte) {
	if c.cur == nil {
		return nil, nil
	}
	return c.ge(after(c.cur))
}

func (c *mergedCursor) Prev() ([]byte, []byte) {
	if c.cur == nil {
		return nil, nil
	}
	return c.lt(c.cur)
}
