package store

// ica check: the chain, the Merkle log, the signed checkpoints, the witnessed
// checkpoints and the state, in one walk of the ledger.
//
// The walk reads the chain in pages (short read transactions, so a check
// runs beside a serving ledger), verifies each entry's link and hash,
// rebuilds the Merkle tree from the entries (comparing every stored node on
// the way, and the root at every locally signed and every witnessed
// checkpoint), and replays the entries into records (replay.go). A record is
// compared with the stored one at its last change (the last_seq each record
// keeps) and dropped, so memory holds only records still open, whatever the
// length of the ledger. Then the stored buckets are walked once more: a
// record no entry derives, or an index key that no record explains, is named.
// The check covers the ledger up to the head it found at its start; records
// changed after that are left to the next check.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"

	"github.com/ica-governance/ica"
)

// CheckReport is the outcome of a full consistency check.
type CheckReport struct {
	Entries     uint64 `json:"entries"`
	Head        string `json:"head"`
	Root        string `json:"root,omitempty"` // hex Merkle root of the entries checked
	Checkpoints int    `json:"checkpoints"`
	Runs        int    `json:"runs"`
	Approvals   int    `json:"approvals"`
	Incidents   int    `json:"incidents"`
	Costs       int    `json:"costs"`
	Checks      int    `json:"checks"`
	Policies    int    `json:"policies"`
	Budgets     int    `json:"azure_budgets"`
	// Witness says which witnessed checkpoints were checked, or why none.
	Witness string `json:"witness"`
	// WitnessChecked counts the witnessed checkpoints the ledger was proven against.
	WitnessChecked int `json:"witness_checked"`
	// WitnessUnreadable is set when a configured witness could not be read.
	WitnessUnreadable bool `json:"witness_unreadable,omitempty"`
	// Notes are facts worth knowing that are not problems (lenient checks
	// of old entries, what was left out).
	Notes []string `json:"notes,omitempty"`
	// Problems lists what is wrong, the first bad ledger entry first; empty means consistent.
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether the check found nothing wrong.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

const maxProblems = 50

func (r *CheckReport) add(format string, args ...any) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	} else if len(r.Problems) == maxProblems {
		r.Problems = append(r.Problems, "… more problems were found; fix these first")
	}
}

func (r *CheckReport) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// WitnessedCheckpoint is a checkpoint read back from a witness, its note
// already verified with the ledger's key.
type WitnessedCheckpoint struct {
	Note *ica.CheckpointNote
	// Where names the copy (a blob URL).
	Where string
}

// CheckOptions are the outside facts a check proves the ledger against.
type CheckOptions struct {
	// Witnessed are the checkpoints read from the witness, in any order.
	Witnessed []WitnessedCheckpoint
	// Witness describes what was read ("Azure Blob container …"); empty
	// means no witness is configured.
	Witness string
	// WitnessErr is why the witness could not be read (nil: it was).
	WitnessErr error
}

// Check walks the whole ledger with no witness (see CheckWith).
func (s *Store) Check() (*CheckReport, error) { return s.CheckWith(CheckOptions{}) }

// PublicKey returns the ledger's checkpoint signing key.
func (s *Store) PublicKey() ed25519.PublicKey { return s.opt.Key.Public().(ed25519.PublicKey) }

// CheckWith walks the whole ledger once and proves it against itself (chain,
// Merkle log, checkpoints), against the witnessed checkpoints in opt, and
// the stored state against the ledger. Problems name what differs.
func (s *Store) CheckWith(opt CheckOptions) (*CheckReport, error) {
	c := newChecker(s, opt)
	if err := c.run(); err != nil {
		return c.rep, err
	}
	return c.rep, nil
}

type runState struct {
	run    *ica.Run
	events []uint64       // ledger seq of event i+1
	ids    map[string]int // event id → event seq
}

type apprState struct {
	a       *ica.Approval
	missing bool // already reported missing from the store
}

type incState struct {
	inc     *ica.Incident
	partial bool
	missing bool
}

type costState struct {
	c       *ica.CostEntry
	partial bool
}

type witnessResult struct {
	w     WitnessedCheckpoint
	match bool
	seen  bool
}

type rollback struct {
	seq      uint64
	at       time.Time
	reason   string
	from     uint64 // the head the ledger was restored to
	abandons uint64 // the newest witnessed size it gave up
}

type checker struct {
	s    *Store
	rep  *CheckReport
	opt  CheckOptions
	head uint64
	pub  string

	// chain
	prev        *ica.LedgerEntry
	chainBroken bool
	// Merkle
	rng         *compact.Range
	nodeNext    []byte // the stored node key the walk expects next
	nodeBad     bool
	cpNext      uint64 // next local checkpoint seq to meet
	cpLeft      bool   // whether any local checkpoint is left to meet
	witness     []*witnessResult
	wi          int
	lastGood    uint64 // the largest witnessed size whose root matched
	rollbacks   []rollback
	unknownKind map[string]int

	// replay
	runs      map[string]*runState
	approvals map[string]*apprState
	incidents map[string]*incState
	overrides map[string]*freezeOverride
	costs     map[string]*costState
	oldChecks map[string]bool
	events    int // events derived (for the events bucket total)
	lenient   map[string]int
	// linked pipeline checks not stored when their link was replayed:
	// answered later in the walk, or missing
	openChecks map[string]*ica.LedgerEntry
	// policies recorded so far (hash → entry seq), the latest one
	policies   map[string]uint64
	policyLast string
	// Azure budgets: each budget's latest report, and every delivery
	budgets      map[string]*ica.AzureBudgetReport
	budgetDedups map[string]uint64
}

func newChecker(s *Store, opt CheckOptions) *checker {
	c := &checker{s: s, rep: &CheckReport{}, opt: opt, pub: hex.EncodeToString(s.PublicKey()),
		rng: rangeFactory.NewEmptyRange(0), nodeNext: []byte{},
		runs: map[string]*runState{}, approvals: map[string]*apprState{}, incidents: map[string]*incState{},
		overrides: map[string]*freezeOverride{}, costs: map[string]*costState{}, oldChecks: map[string]bool{},
		unknownKind: map[string]int{}, lenient: map[string]int{}, openChecks: map[string]*ica.LedgerEntry{},
		policies: map[string]uint64{}, budgets: map[string]*ica.AzureBudgetReport{}, budgetDedups: map[string]uint64{}}
	ws := append([]WitnessedCheckpoint(nil), opt.Witnessed...)
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Note.Size < ws[j].Note.Size })
	for _, w := range ws {
		c.witness = append(c.witness, &witnessResult{w: w})
	}
	return c
}

func (c *checker) run() error {
	var headHash string
	if err := c.s.view(func(tx Tx) error {
		c.head, headHash = readHead(tx)
		cur := tx.Bucket(bucketCheckpoints).Cursor()
		k, v := cur.First()
		if k != nil && seqOf(k) == 0 {
			// A checkpoint of the empty ledger.
			c.rep.Checkpoints++
			var cp ica.Checkpoint
			if err := json.Unmarshal(v, &cp); err != nil || cp.Verify() != nil || cp.Hash != ica.GenesisHash ||
				(cp.Root != "" && cp.Root != hex.EncodeToString(ica.EmptyTreeRoot())) {
				c.rep.add("checkpoint 0: it is not a valid checkpoint of the empty ledger")
			}
			k, _ = cur.Next()
		}
		c.cpNext, c.cpLeft = seqOf(k), k != nil
		return nil
	}); err != nil {
		return err
	}
	c.rep.Head = headHash
	// Witnessed checkpoints of size 0 say nothing; the empty tree matches.
	for c.wi < len(c.witness) && c.witness[c.wi].w.Note.Size == 0 {
		c.meetWitness(c.witness[c.wi], ica.EmptyTreeRoot(), ica.GenesisHash)
		c.wi++
	}
	if err := c.walk(); err != nil {
		return err
	}
	if err := c.s.view(c.afterWalk); err != nil {
		return err
	}
	for _, pass := range []func() error{c.passRuns, c.passApprovals, c.passIncidents, c.passCosts, c.passChecks, c.passPolicy, c.passBudgets, c.passIndexes} {
		if err := pass(); err != nil {
			return err
		}
	}
	c.witnessVerdicts()
	c.notes()
	return nil
}

func seqOf(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

// walk reads the chain to the head in pages of short transactions.
func (c *checker) walk() error {
	const page = 2048
	next := uint64(1)
	for next <= c.head {
		n := 0
		err := c.s.view(func(tx Tx) error {
			cur := tx.Bucket(bucketLedger).Cursor()
			mc := tx.Bucket(bucketMerkle).Cursor()
			mk, mv := mc.Seek(c.nodeNext)
			cc := tx.Bucket(bucketCheckpoints).Cursor()
			for k, v := cur.Seek(u64(next)); k != nil && n < page; k, v = cur.Next() {
				seq := binary.BigEndian.Uint64(k)
				if seq > c.head {
					break
				}
				var e ica.LedgerEntry
				if err := json.Unmarshal(v, &e); err != nil {
					c.rep.add("ledger: entry %d is unreadable: %v", seq, err)
					return errStopScan
				}
				c.entry(tx, &e, &mk, &mv, mc, cc)
				next, n = seq+1, n+1
			}
			return nil
		})
		if err == errStopScan {
			return nil
		}
		if err != nil {
			return err
		}
		if c.s.releasePages {
			c.s.releaseMapped()
		}
		if n == 0 {
			break
		}
	}
	return nil
}

// entry checks one entry: its link, its leaf, and what it derives.
func (c *checker) entry(tx Tx, e *ica.LedgerEntry, mk, mv *[]byte, mc, cc Cursor) {
	c.rep.Entries++
	if !c.chainBroken {
		if err := verifyStored(e, c.prev); err != nil {
			c.rep.add("ledger: first bad entry: %v", err)
			c.chainBroken = true
		}
	}
	c.prev = e
	// The Merkle tree, rebuilt from the entries; every node it makes must be
	// the stored one.
	leaf, err := ica.LeafHash(e.Hash)
	if err != nil {
		c.rep.add("ledger: entry %d: %v", e.Seq, err)
		leaf = make([]byte, 32)
	}
	if err := c.rng.Append(leaf, func(id compact.NodeID, h []byte) {
		if id.Level >= minStoredLevel {
			c.node(id, h, mk, mv, mc)
		}
	}); err != nil {
		c.rep.add("Merkle log: %v", err)
	}
	var root []byte
	rootNow := func() []byte {
		if root == nil {
			root, _ = c.rng.GetRootHash(nil)
		}
		return root
	}
	if c.cpLeft && e.Seq >= c.cpNext {
		c.localCheckpoints(tx, e, rootNow, cc)
	}
	for c.wi < len(c.witness) && c.witness[c.wi].w.Note.Size <= e.Seq {
		if w := c.witness[c.wi]; w.w.Note.Size == e.Seq {
			c.meetWitness(w, rootNow(), e.Hash)
		} else {
			c.meetWitness(w, nil, "") // its entry is missing: the walk jumped past it
		}
		c.wi++
	}
	c.replay(tx, e)
}

// verifyStored is LedgerEntry.Verify, first hashing the data as stored:
// the store writes it canonical, so the hash over the stored bytes is the
// one appended, and canonicalising each entry again (the slow part of a
// walk) is needed only where it differs (entries written before the store
// canonicalised, or data whose encoding escaped characters).
func verifyStored(e, prev *ica.LedgerEntry) error {
	wantPrev, wantSeq := ica.GenesisHash, uint64(1)
	if prev != nil {
		wantPrev, wantSeq = prev.Hash, prev.Seq+1
	}
	if e.Seq == wantSeq && e.PrevHash == wantPrev {
		if h, err := e.HashCanonical(); err == nil && h == e.Hash {
			return nil
		}
	}
	return e.Verify(prev)
}

// node compares one node the walk made with the stored node it expects.
func (c *checker) node(id compact.NodeID, h []byte, mk, mv *[]byte, mc Cursor) {
	want := merkleKey(id)
	for *mk != nil && bytes.Compare(*mk, want) < 0 {
		if !c.nodeBad {
			c.rep.add("Merkle log: stored node %x is not a node of the tree the entries make", *mk)
			c.nodeBad = true
		}
		*mk, *mv = mc.Next()
	}
	switch {
	case *mk == nil || !bytes.Equal(*mk, want):
		if !c.nodeBad {
			c.rep.add("Merkle log: node (level %d, index %d), complete at entry %d, is missing from the store", id.Level, id.Index, binary.BigEndian.Uint64(want[:8])+1)
			c.nodeBad = true
		}
	default:
		if !bytes.Equal(*mv, h) && !c.nodeBad {
			c.rep.add("Merkle log: stored node (level %d, index %d) differs from the tree the entries make (first at entry %d): proofs served from it would be false",
				id.Level, id.Index, binary.BigEndian.Uint64(want[:8])+1)
			c.nodeBad = true
		}
		*mk, *mv = mc.Next()
	}
	c.nodeNext = after(want)
}

// localCheckpoints verifies the signed checkpoints stored at or before e.
func (c *checker) localCheckpoints(tx Tx, e *ica.LedgerEntry, root func() []byte, cc Cursor) {
	for k, v := cc.Seek(u64(c.cpNext)); k != nil; k, v = cc.Next() {
		seq := seqOf(k)
		if seq > e.Seq {
			c.cpNext = seq
			return
		}
		c.rep.Checkpoints++
		var cp ica.Checkpoint
		if err := json.Unmarshal(v, &cp); err != nil {
			c.rep.add("checkpoint %d: unreadable", seq)
			continue
		}
		if err := cp.Verify(); err != nil {
			c.rep.add("%v", err)
		} else if cp.PublicKey != c.pub {
			c.rep.add("checkpoint %d: signed by another key (%s)", cp.Seq, ica.KeyFingerprint(cp.PublicKey))
		}
		if seq < e.Seq {
			// Stored under a seq the walk passed: no such entry (or a key
			// that does not match its seq).
			c.rep.add("checkpoint %d: there is no ledger entry %d it could sign", seq, seq)
			continue
		}
		if cp.Seq != seq || cp.Hash != e.Hash {
			c.rep.add("checkpoint %d: does not match ledger entry %d", seq, seq)
		} else if cp.Root != "" && cp.Root != hex.EncodeToString(root()) {
			c.rep.add("checkpoint %d: its Merkle root is not the root of the first %d entries", seq, seq)
		}
	}
	c.cpLeft = false
}

// meetWitness compares a witnessed checkpoint with the ledger at its size.
func (c *checker) meetWitness(w *witnessResult, root []byte, head string) {
	w.seen = true
	w.match = bytes.Equal(root, w.w.Note.Root) && head == w.w.Note.ChainHead
	if w.match {
		c.lastGood = w.w.Note.Size
	}
	c.rep.WitnessChecked++
}

// afterWalk compares the head and the tree's meta with the walk.
func (c *checker) afterWalk(tx Tx) error {
	seq, hash := readHead(tx)
	last, lastHash := uint64(0), ica.GenesisHash
	if c.prev != nil {
		last, lastHash = c.prev.Seq, c.prev.Hash
	}
	if last < c.head {
		c.rep.add("ledger: the head says entry %d but the last entry is %d (entries %d..%d are missing)", c.head, last, last+1, c.head)
	} else if seq == c.head && hash != lastHash {
		c.rep.add("ledger: head says entry %d %s but the last entry is %d %s", seq, hash, last, lastHash)
	}
	if root, err := rootOf(c.rng); err == nil {
		c.rep.Root = hex.EncodeToString(root)
	}
	if seq != c.head {
		c.rep.note("the ledger grew from %d to %d entries during the check; the entries after %d are left to the next check", c.head, seq, c.head)
		return nil
	}
	r, err := readRange(tx)
	switch {
	case err != nil:
		c.rep.add("Merkle log: %v", err)
	case r.End() != c.rng.End():
		c.rep.add("Merkle log: the stored tree has %d entries, the ledger %d", r.End(), c.rng.End())
	case !c.rng.Equal(r):
		c.rep.add("Merkle log: the stored head range differs from the tree the entries make: the next appends would build on a false root")
	}
	if k, _ := tx.Bucket(bucketMerkle).Cursor().Seek(c.nodeNext); k != nil && !c.nodeBad {
		c.rep.add("Merkle log: stored node %x is beyond the tree the entries make", k)
	}
	if c.cpLeft {
		if k, _ := tx.Bucket(bucketCheckpoints).Cursor().Seek(u64(c.cpNext)); k != nil {
			c.rep.add("checkpoint %d: there is no ledger entry %d it could sign", seqOf(k), seqOf(k))
		}
	}
	return nil
}

// witnessVerdicts turns the witnessed checkpoints the walk met, or could not
// meet, into problems that name them.
func (c *checker) witnessVerdicts() {
	switch {
	case c.opt.WitnessErr != nil:
		c.rep.WitnessUnreadable = true
		c.rep.Witness = fmt.Sprintf("UNREADABLE: %s could not be read: %v", orDefault(c.opt.Witness, "the witness"), c.opt.WitnessErr)
	case c.opt.Witness == "":
		c.rep.Witness = "no witness is configured: the ledger was checked against itself only, which cannot show that entries were dropped from its end or that it was rewritten and re-signed"
	default:
		c.rep.Witness = fmt.Sprintf("%d witnessed checkpoints read from %s", len(c.witness), c.opt.Witness)
	}
	good := uint64(0)
	for _, w := range c.witness {
		n := w.w.Note
		name := fmt.Sprintf("witnessed checkpoint of size %d (signed %s, published at %s)", n.Size, n.Time.Format(time.RFC3339), w.w.Where)
		if w.match {
			good = n.Size
			continue
		}
		if rb := c.abandonedBy(n); rb != nil {
			c.rep.note("%s was given up by the rollback accepted at entry %d (%s): the ledger was restored to %d entries", name, rb.seq, rb.reason, rb.from)
			continue
		}
		if !w.seen {
			last := uint64(0)
			if c.prev != nil {
				last = c.prev.Seq
			}
			c.rep.add("%s: the ledger has only %d entries; %s missing (the ledger was truncated or an older copy restored)",
				name, last, span("entry", "entries", last+1, n.Size)+map[bool]string{true: " is", false: " are"}[last+1 == n.Size])
			continue
		}
		if good+1 == n.Size {
			c.rep.add("%s does not match the ledger: entry %d differs from the witnessed one (entries up to %d match the witness)", name, n.Size, good)
		} else {
			c.rep.add("%s does not match the ledger: its root differs, so an entry in %d..%d was changed, dropped or inserted (entries up to %d match the witness)",
				name, good+1, n.Size, good)
		}
	}
}

// abandonedBy returns the accepted rollback that gave up a witnessed
// checkpoint, if one did.
func (c *checker) abandonedBy(n *ica.CheckpointNote) *rollback {
	for i := range c.rollbacks {
		rb := &c.rollbacks[i]
		if n.Size > rb.from && n.Size <= rb.abandons && !n.Time.After(rb.at) {
			return rb
		}
	}
	return nil
}

// span names one entry or a range of them.
func span(one, many string, lo, hi uint64) string {
	if lo == hi {
		return fmt.Sprintf("%s %d", one, lo)
	}
	return fmt.Sprintf("%s %d..%d", many, lo, hi)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (c *checker) notes() {
	for k, n := range c.unknownKind {
		c.rep.note("%d entries of kind %s change no record the check knows", n, k)
	}
	for what, n := range c.lenient {
		c.rep.note("%d %s", n, what)
	}
	sort.Strings(c.rep.Notes)
}

// --- replay ---

func (c *checker) replay(tx Tx, e *ica.LedgerEntry) {
	switch {
	case e.Kind == ica.KindRunStarted:
		r, err := runFromStart(e)
		if err != nil {
			c.rep.add("%v", err)
			return
		}
		if c.runs[r.RunID] != nil {
			c.rep.add("run %s: started again at entry %d", r.RunID, e.Seq)
			return
		}
		c.runs[r.RunID] = &runState{run: r, ids: map[string]int{}}
		c.rep.Runs++
	case e.Kind == ica.KindRunEvent:
		var ev eventRecord
		if err := json.Unmarshal(e.Data, &ev); err != nil {
			c.rep.add("entry %d: event data: %v", e.Seq, err)
			return
		}
		st := c.runs[e.Subject]
		if st == nil || ev.RunID != e.Subject {
			c.rep.add("entry %d: event of run %s, which is not running (never started, or already finished)", e.Seq, e.Subject)
			return
		}
		if ev.Seq != len(st.events)+1 {
			c.rep.add("run %s: entry %d is its event %d, expected event %d", e.Subject, e.Seq, ev.Seq, len(st.events)+1)
		}
		st.events = append(st.events, e.Seq)
		if ev.EventID != "" {
			if _, dup := st.ids[ev.EventID]; dup {
				c.rep.add("run %s: event id %s recorded twice (entry %d)", e.Subject, ev.EventID, e.Seq)
			}
			st.ids[ev.EventID] = ev.Seq
		}
		c.events++
	case e.Kind == ica.KindRunFinished:
		st := c.runs[e.Subject]
		if st == nil {
			c.rep.add("entry %d: run %s finishes, but it is not running", e.Seq, e.Subject)
			return
		}
		r, count, err := applyRunFinish(st.run, e)
		if err != nil {
			c.rep.add("%v", err)
			return
		}
		if count != len(st.events) {
			c.rep.add("run %s: finished at entry %d with event_count %d, but the ledger has %d of its events", e.Subject, e.Seq, count, len(st.events))
		}
		st.run = r
		c.compareRun(tx, st)
		delete(c.runs, e.Subject)
	case e.Kind == KindApprovalCheckLinked:
		c.replayCheck(tx, e)
	case e.Kind == KindCheckCompleted:
		c.replayCheckCompleted(tx, e)
	case e.Kind == KindPolicyChanged:
		c.replayPolicy(tx, e)
	case e.Kind == ica.KindAzureBudget:
		c.replayBudget(e)
	case isApprovalKind(e.Kind):
		c.replayApproval(tx, e)
	case isIncidentChange(e.Kind):
		c.replayIncident(tx, e)
	case e.Kind == KindIncidentFreezeOverride:
		var inc *ica.Incident
		if st := c.incidents[e.Subject]; st != nil {
			inc = st.inc
		} else if stored, _ := getIncident(tx, e.Subject); stored != nil {
			inc = stored // compared and dropped already; its firing count is final
		}
		o, err := overrideFromEntry(e, inc)
		if err != nil {
			c.rep.add("%v", err)
			return
		}
		c.overrides[e.Subject] = o
	case e.Kind == ica.KindCost || e.Kind == KindCostCorrected || e.Kind == KindCostSynced:
		c.replayCosts(tx, e)
	case e.Kind == KindRollbackAccepted:
		var d struct {
			Reason   string `json:"reason"`
			From     uint64 `json:"restored_entries"`
			Abandons uint64 `json:"witnessed_size"`
		}
		_ = json.Unmarshal(e.Data, &d)
		c.rollbacks = append(c.rollbacks, rollback{seq: e.Seq, at: e.Time, reason: d.Reason, from: d.From, abandons: d.Abandons})
	case e.Kind == KindIncidentAlertDropped, e.Kind == KindIncidentAlertUnmatched, e.Kind == ica.KindOutboxUndeliverable,
		strings.HasPrefix(e.Kind, ica.KindSession), e.Kind == KindApprovalRefused, e.Kind == KindLockReleased, e.Kind == KindKeyAccepted:
		// Facts without state (or with operational state only).
	default:
		c.unknownKind[e.Kind]++
	}
}

// mismatch reports the first differing field of a record.
func (c *checker) mismatch(what string, stored, derived any, only []string, at uint64) {
	d := diffRecords(stored, derived, only)
	if len(d) == 0 {
		return
	}
	more := ""
	if len(d) > 1 {
		fields := make([]string, 0, len(d)-1)
		for _, f := range d[1:] {
			fields = append(fields, f[0])
		}
		more = fmt.Sprintf(" (also differs: %s)", strings.Join(fields, ", "))
	}
	c.rep.add("%s: stored %s %s, the ledger says %s at entry %d%s", what, d[0][0], d[0][1], d[0][2], at, more)
}

func (c *checker) compareRun(tx Tx, st *runState) {
	r := st.run
	stored, err := getRun(tx, r.RunID)
	if err != nil {
		c.rep.add("run %s: unreadable: %v", r.RunID, err)
		return
	}
	if stored == nil {
		c.rep.add("run %s (started at entry %d) is missing from the store", r.RunID, r.StartSeq)
		return
	}
	if c.later(tx, "run "+r.RunID, stored.LastSeq) {
		return
	}
	d := *r
	if stored.LastSeq == 0 {
		d.LastSeq = 0
		c.lenient["runs stored before records kept last_seq were compared without it"]++
	}
	c.mismatch("run "+r.RunID, stored, &d, nil, r.LastSeq)
	tk := timeKey(r.StartTime)
	for _, k := range []struct {
		b   []byte
		key []byte
	}{{bucketRunByStart, join(tk, []byte(r.RunID))}, {bucketRunByPipeline, join([]byte(r.PipelineName), sep, tk, []byte(r.RunID))},
		{bucketRunByStatus, statusKey(r)}} {
		if tx.Bucket(k.b).Get(k.key) == nil {
			c.rep.add("index %s: the key of run %s is missing", k.b, r.RunID)
		}
	}
	// Its events and event ids, one range each.
	prefix := append([]byte(r.RunID), 0)
	n := 0
	ec := tx.Bucket(bucketEvents).Cursor()
	for k, v := ec.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = ec.Next() {
		if len(k) != len(prefix)+4 {
			continue
		}
		i := int(binary.BigEndian.Uint32(k[len(prefix):]))
		switch {
		case len(v) == 8 && binary.BigEndian.Uint64(v) > c.head:
		case i < 1 || i > len(st.events):
			c.rep.add("run %s: stored event %d is not in the ledger", r.RunID, i)
		case len(v) != 8 || binary.BigEndian.Uint64(v) != st.events[i-1]:
			c.rep.add("run %s: stored event %d does not point at its entry %d", r.RunID, i, st.events[i-1])
		default:
			n++
		}
	}
	if n < len(st.events) {
		c.rep.add("run %s: %d of its %d events are missing from the store", r.RunID, len(st.events)-n, len(st.events))
	}
	ic := tx.Bucket(bucketEventIDs).Cursor()
	m := 0
	for k, v := ic.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = ic.Next() {
		id := string(k[len(prefix):])
		want, ok := st.ids[id]
		switch {
		case !ok && len(v) == 4 && int(binary.BigEndian.Uint32(v)) > len(st.events) && !r.Final():
			// an event after the check began
		case !ok:
			c.rep.add("run %s: event id %s is stored but no event of the ledger has it", r.RunID, id)
		case len(v) != 4 || int(binary.BigEndian.Uint32(v)) != want:
			c.rep.add("run %s: event id %s points at the wrong event", r.RunID, id)
		default:
			m++
		}
	}
	if m < len(st.ids) {
		c.rep.add("run %s: %d event ids are missing from the store", r.RunID, len(st.ids)-m)
	}
}

func (c *checker) replayApproval(tx Tx, e *ica.LedgerEntry) {
	st := c.approvals[e.Subject]
	var prev *ica.Approval
	if st != nil {
		prev = st.a
	}
	if e.Kind == ica.KindApprovalRequested && st != nil {
		c.rep.add("approval %s: requested again at entry %d", e.Subject, e.Seq)
		return
	}
	n, err := applyApprovalEntry(prev, e)
	if err == errNoRecord {
		c.rep.add("entry %d (%s) changes approval %s, which the ledger never requested or which the store says changed last before it (%s)",
			e.Seq, e.Kind, e.Subject, c.lastChange(tx, e.Subject))
		return
	}
	if err != nil {
		c.rep.add("approval %s: %v", e.Subject, err)
		return
	}
	if st == nil {
		st = &apprState{}
		c.approvals[e.Subject] = st
		c.rep.Approvals++
	}
	c.knownPolicies(e, n)
	st.a = n
	if st.missing {
		return
	}
	stored, err := getApproval(tx, e.Subject)
	switch {
	case err != nil:
		c.rep.add("approval %s: unreadable: %v", e.Subject, err)
	case stored == nil:
		c.rep.add("approval %s (entry %d) is missing from the store", e.Subject, e.Seq)
		st.missing = true
	case stored.LastSeq == e.Seq:
		c.compareApproval(tx, stored, n)
		delete(c.approvals, e.Subject)
	case stored.LastSeq == 0, stored.LastSeq > e.Seq:
		// An older record (compared at the end), or more changes to come.
	default:
		c.rep.add("approval %s: entry %d changes it, but the stored record's last change is entry %d", e.Subject, e.Seq, stored.LastSeq)
		c.compareApproval(tx, stored, n)
		delete(c.approvals, e.Subject)
	}
}

func (c *checker) lastChange(tx Tx, id string) string {
	a, _ := getApproval(tx, id)
	if a == nil {
		return "it is not stored"
	}
	return fmt.Sprintf("stored last change: entry %d", a.LastSeq)
}

func (c *checker) compareApproval(tx Tx, stored, derived *ica.Approval) {
	d := *derived
	if stored.LastSeq == 0 {
		d.LastSeq = 0
		c.lenient["approvals stored before records kept last_seq were compared without it"]++
	}
	if stored.DecisionSeq == 0 && stored.DecisionHash == "" {
		d.DecisionSeq, d.DecisionHash = 0, ""
	}
	c.mismatch("approval "+d.ID, stored, &d, nil, derived.LastSeq)
	if tx.Bucket(bucketApprByRun).Get(join([]byte(d.RunID), sep, timeKey(d.CreatedAt), []byte(d.ID))) == nil {
		c.rep.add("index %s: the key of approval %s is missing", bucketApprByRun, d.ID)
	}
	if !d.Final() && tx.Bucket(bucketApprDeadline).Get(deadlineKey(&d)) == nil {
		c.rep.add("index %s: the deadline of open approval %s is missing (it would never expire)", bucketApprDeadline, d.ID)
	}
	if d.Card.PostID != "" && string(tx.Bucket(bucketApprByPost).Get([]byte(d.Card.PostID))) != d.ID {
		c.rep.add("index %s: the card %s of approval %s is not indexed", bucketApprByPost, d.Card.PostID, d.ID)
	}
}

func (c *checker) replayIncident(tx Tx, e *ica.LedgerEntry) {
	st := c.incidents[e.Subject]
	var prev *ica.Incident
	if st != nil {
		prev = st.inc
	}
	n, partial, err := applyIncidentEntryPartial(prev, e)
	if err == errNoRecord {
		c.rep.add("entry %d (%s) changes incident %s, which the ledger never opened or which the store says changed last before it", e.Seq, e.Kind, e.Subject)
		return
	}
	if err != nil {
		c.rep.add("incident %s: %v", e.Subject, err)
		if n == nil {
			return
		}
	}
	if st == nil {
		if e.Kind != KindIncidentOpened {
			c.rep.add("entry %d (%s) changes incident %s, which is not open in the ledger", e.Seq, e.Kind, e.Subject)
			return
		}
		st = &incState{}
		c.incidents[e.Subject] = st
		c.rep.Incidents++
	} else if e.Kind == KindIncidentOpened {
		c.rep.add("incident %s: opened again at entry %d", e.Subject, e.Seq)
	}
	st.inc, st.partial = n, st.partial || partial
	if st.missing {
		return
	}
	stored, err := getIncident(tx, e.Subject)
	switch {
	case err != nil:
		c.rep.add("incident %s: unreadable: %v", e.Subject, err)
	case stored == nil:
		c.rep.add("incident %s (entry %d) is missing from the store", e.Subject, e.Seq)
		st.missing = true
	case stored.LastSeq == e.Seq:
		c.compareIncident(tx, stored, st)
		delete(c.incidents, e.Subject)
	case stored.LastSeq == 0, stored.LastSeq > e.Seq:
	default:
		c.rep.add("incident %s: entry %d changes it, but the stored record's last change is entry %d", e.Subject, e.Seq, stored.LastSeq)
		c.compareIncident(tx, stored, st)
		delete(c.incidents, e.Subject)
	}
}

func (c *checker) compareIncident(tx Tx, stored *ica.Incident, st *incState) {
	d := *st.inc
	var only []string
	if st.partial {
		only = partialIncidentFields
		d.AlertID = stored.AlertID // not in old entries' data as a field of the record
		c.lenient["incidents opened before alerts were recorded in full were compared on status, severity, version and paging only"]++
	}
	if stored.LastSeq == 0 {
		d.LastSeq = 0
		c.lenient["incidents stored before records kept last_seq were compared without it"]++
	}
	c.mismatch("incident "+d.ID, stored, &d, only, st.inc.LastSeq)
	if !d.Final() && tx.Bucket(bucketIncidentOpen).Get([]byte(d.ID)) == nil {
		c.rep.add("index %s: open incident %s is missing", bucketIncidentOpen, d.ID)
	}
	if d.Card.PostID != "" && string(tx.Bucket(bucketIncidentByPost).Get([]byte(d.Card.PostID))) != d.ID {
		c.rep.add("index %s: card %s of incident %s is not indexed", bucketIncidentByPost, d.Card.PostID, d.ID)
	}
}

func (c *checker) replayCosts(tx Tx, e *ica.LedgerEntry) {
	derived, partial, err := costsFromEntry(e)
	if err != nil {
		c.rep.add("%v", err)
		return
	}
	for i, d := range derived {
		st := c.costs[d.Key]
		if st == nil {
			st = &costState{}
			c.costs[d.Key] = st
		}
		if partial[i] && st.c != nil {
			n := *st.c
			n.CostUSD, n.LastSeq = d.CostUSD, d.LastSeq
			st.c = &n
		} else {
			st.c, st.partial = d, partial[i]
		}
		stored, err := getJSON[ica.CostEntry](tx.Bucket(bucketCosts), []byte(d.Key))
		switch {
		case err != nil:
			c.rep.add("cost %s: unreadable: %v", d.Key, err)
		case stored == nil:
			c.rep.add("cost %s (entry %d) is missing from the store", d.Key, e.Seq)
			delete(c.costs, d.Key)
		case stored.LastSeq == e.Seq:
			c.compareCost(tx, stored, st)
			delete(c.costs, d.Key)
		case stored.LastSeq == 0, stored.LastSeq > e.Seq:
		default:
			c.rep.add("cost %s: entry %d changes it, but the stored record's last change is entry %d", d.Key, e.Seq, stored.LastSeq)
			c.compareCost(tx, stored, st)
			delete(c.costs, d.Key)
		}
	}
}

func (c *checker) compareCost(tx Tx, stored *ica.CostEntry, st *costState) {
	c.rep.Costs++
	d := *st.c
	var only []string
	if st.partial {
		only = partialCostFields
		c.lenient["costs synced before sync entries recorded them in full were compared on their amount only"]++
	}
	if stored.LastSeq == 0 {
		d.LastSeq = 0
		c.lenient["costs stored before records kept last_seq were compared without it"]++
	}
	c.mismatch("cost "+d.Key, stored, &d, only, st.c.LastSeq)
	if len(stored.BillingPeriod) >= 7 && tx.Bucket(bucketCostByMonth).Get(costMonthKey(stored)) == nil {
		c.rep.add("index %s: cost %s is missing", bucketCostByMonth, d.Key)
	}
}

func (c *checker) replayCheck(tx Tx, e *ica.LedgerEntry) {
	key, cb, fields, err := checkFromEntry(e)
	if err != nil {
		c.rep.add("%v", err)
		return
	}
	stored, err := getJSON[ica.CheckCallback](tx.Bucket(bucketChecks), key)
	switch {
	case err != nil:
		c.rep.add("check %s: unreadable: %v", key, err)
	case stored == nil:
		// Answered (and dropped) later, or lost: the answer's entry says.
		c.openChecks[string(key)] = e
	case stored.LinkedSeq == e.Seq:
		c.rep.Checks++
		c.mismatch(fmt.Sprintf("check of approval %s (task %s)", e.Subject, cb.TaskInstanceID), stored, cb, fields, e.Seq)
	case stored.LinkedSeq == 0:
		c.rep.Checks++
		c.oldChecks[string(key)] = true
		c.lenient["pipeline checks linked before the store kept linked_seq were compared with every link"]++
		c.mismatch(fmt.Sprintf("check of approval %s (task %s)", e.Subject, cb.TaskInstanceID), stored, cb, fields[:4], e.Seq)
	case stored.LinkedSeq < e.Seq:
		c.rep.add("the pipeline check of approval %s (task %s) was linked again at entry %d, but the store kept the link of entry %d", e.Subject, cb.TaskInstanceID, e.Seq, stored.LinkedSeq)
	}
}

// later reports whether a record's last change is an entry after the head
// the check began at: a change made while the check ran, left to the next
// check. A change from an entry the ledger does not have at all (the ledger
// was cut back under its records) is a problem, and the record is compared.
func (c *checker) later(tx Tx, what string, seq uint64) bool {
	if seq <= c.head {
		return false
	}
	if now, _ := readHead(tx); seq > now {
		c.rep.add("%s: its last change is entry %d, but the ledger ends at entry %d (entries were dropped from its end)", what, seq, now)
		return false
	}
	return true
}

// --- passes over the stored buckets ---

// scan walks a bucket in pages of short read transactions.
func (c *checker) scan(bucket []byte, fn func(tx Tx, k, v []byte)) error {
	const page = 1024
	var from []byte
	for {
		n := 0
		var last []byte
		err := c.s.view(func(tx Tx) error {
			cur := tx.Bucket(bucket).Cursor()
			k, v := cur.First()
			if from != nil {
				k, v = cur.Seek(from)
			}
			for ; k != nil && n < page; k, v = cur.Next() {
				fn(tx, k, v)
				last = append(last[:0], k...)
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n < page {
			return nil
		}
		from = after(last)
	}
}

// entryTouches reports whether ledger entry seq (at or before the checked
// head) is about subject and of a kind that changes its record.
func (c *checker) entryTouches(tx Tx, seq uint64, subject string, kinds func(string) bool) (bool, string) {
	if seq == 0 || seq > c.head {
		return false, "no entry"
	}
	e, err := getEntry(tx, seq)
	if err != nil {
		return false, err.Error()
	}
	if e.Subject != subject || !kinds(e.Kind) {
		return false, fmt.Sprintf("entry %d is %s of %s", seq, e.Kind, e.Subject)
	}
	return true, ""
}

func (c *checker) passRuns() error {
	err := c.scan(bucketRuns, func(tx Tx, k, v []byte) {
		var r ica.Run
		if err := json.Unmarshal(v, &r); err != nil {
			c.rep.add("run %s: unreadable", k)
			return
		}
		if c.later(tx, "run "+r.RunID, max(r.StartSeq, r.LastSeq)) {
			delete(c.runs, r.RunID)
			return
		}
		if st := c.runs[r.RunID]; st != nil {
			c.compareRun(tx, st) // still running
			delete(c.runs, r.RunID)
			return
		}
		if ok, why := c.entryTouches(tx, r.StartSeq, r.RunID, func(k string) bool { return k == ica.KindRunStarted }); !ok || string(k) != r.RunID {
			c.rep.add("run %s is not in the ledger: it has no run.started entry (its start_seq %d: %s)", k, r.StartSeq, why)
		}
	})
	for id, st := range c.runs {
		c.rep.add("run %s (started at entry %d) is missing from the store", id, st.run.StartSeq)
	}
	return err
}

func (c *checker) passApprovals() error {
	err := c.scan(bucketApprovals, func(tx Tx, k, v []byte) {
		var a ica.Approval
		if err := json.Unmarshal(v, &a); err != nil {
			c.rep.add("approval %s: unreadable", k)
			return
		}
		if c.later(tx, "approval "+a.ID, a.LastSeq) {
			delete(c.approvals, string(k))
			return
		}
		if st := c.approvals[string(k)]; st != nil {
			if !st.missing {
				c.compareApproval(tx, &a, st.a)
			}
			delete(c.approvals, string(k))
			return
		}
		if a.LastSeq == 0 || a.LastSeq > c.head || string(k) != a.ID {
			c.rep.add("approval %s is not in the ledger: no entry requested it", k)
			return
		}
		if ok, why := c.entryTouches(tx, a.LastSeq, a.ID, isApprovalKind); !ok {
			c.rep.add("approval %s is not in the ledger: its last change, %s", k, why)
		}
	})
	for id, st := range c.approvals {
		if !st.missing {
			c.rep.add("approval %s (last changed at entry %d) is missing from the store", id, st.a.LastSeq)
		}
	}
	return err
}

func (c *checker) passIncidents() error {
	err := c.scan(bucketIncidents, func(tx Tx, k, v []byte) {
		var inc ica.Incident
		if err := json.Unmarshal(v, &inc); err != nil {
			c.rep.add("incident %s: unreadable", k)
			return
		}
		if c.later(tx, "incident "+inc.ID, inc.LastSeq) {
			delete(c.incidents, string(k))
			return
		}
		if string(k) != inc.ID || inc.ID != ica.IncidentIDFor(inc.AlertID) {
			c.rep.add("incident %s: key or id does not match alert %s", k, inc.AlertID)
		}
		if st := c.incidents[string(k)]; st != nil {
			if !st.missing {
				c.compareIncident(tx, &inc, st)
			}
			delete(c.incidents, string(k))
			return
		}
		if inc.LastSeq == 0 || inc.LastSeq > c.head {
			c.rep.add("incident %s is not in the ledger: no entry opened it", k)
			return
		}
		if ok, why := c.entryTouches(tx, inc.LastSeq, inc.ID, isIncidentChange); !ok {
			c.rep.add("incident %s is not in the ledger: its last change, %s", k, why)
		}
	})
	for id, st := range c.incidents {
		if !st.missing {
			c.rep.add("incident %s (last changed at entry %d) is missing from the store", id, st.inc.LastSeq)
		}
	}
	if err != nil {
		return err
	}
	// Freeze overrides: the latest one of each incident (few: people's decisions).
	cutoff := time.Time{}
	if c.prev != nil {
		cutoff = c.prev.Time
	}
	err = c.scan(bucketIncidentFreezes, func(tx Tx, k, v []byte) {
		var o freezeOverride
		if err := json.Unmarshal(v, &o); err != nil {
			c.rep.add("freeze override of incident %s: unreadable", k)
			return
		}
		d := c.overrides[string(k)]
		delete(c.overrides, string(k))
		switch {
		case d == nil && o.At.After(cutoff):
		case d == nil:
			c.rep.add("freeze override of incident %s is not in the ledger", k)
		default:
			c.mismatch("freeze override of incident "+string(k), &o, d, nil, 0)
		}
	})
	for id := range c.overrides {
		c.rep.add("freeze override of incident %s is missing from the store", id)
	}
	return err
}

func (c *checker) passCosts() error {
	err := c.scan(bucketCosts, func(tx Tx, k, v []byte) {
		var e ica.CostEntry
		if err := json.Unmarshal(v, &e); err != nil {
			c.rep.add("cost %s: unreadable", k)
			return
		}
		if c.later(tx, "cost "+e.Key, e.LastSeq) {
			delete(c.costs, string(k))
			return
		}
		if st := c.costs[string(k)]; st != nil {
			c.compareCost(tx, &e, st)
			delete(c.costs, string(k))
			return
		}
		if e.LastSeq == 0 || e.LastSeq > c.head || string(k) != e.Key {
			c.rep.add("cost %s is not in the ledger: no entry recorded it", k)
			return
		}
		ok, why := c.entryTouches(tx, e.LastSeq, e.Key, func(kind string) bool { return kind == ica.KindCost || kind == KindCostCorrected })
		if !ok {
			// A sync entry names many keys: look among them.
			if le, err := getEntry(tx, e.LastSeq); err == nil && le.Kind == KindCostSynced {
				ds, _, _ := costsFromEntry(le)
				for _, d := range ds {
					ok = ok || d.Key == e.Key
				}
			}
		}
		if !ok {
			c.rep.add("cost %s is not in the ledger: its last change, %s", k, why)
		}
	})
	for key, st := range c.costs {
		c.rep.add("cost %s (last changed at entry %d) is missing from the store", key, st.c.LastSeq)
	}
	return err
}

func (c *checker) passChecks() error {
	return c.scan(bucketChecks, func(tx Tx, k, v []byte) {
		var cb ica.CheckCallback
		if err := json.Unmarshal(v, &cb); err != nil {
			c.rep.add("pipeline check %q: unreadable", k)
			return
		}
		if c.later(tx, fmt.Sprintf("pipeline check %q", k), cb.LinkedSeq) {
			return
		}
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			c.rep.add("pipeline check %q: malformed key", k)
			return
		}
		approval := string(k[:i])
		if cb.LinkedSeq == 0 {
			if !c.oldChecks[string(k)] {
				c.rep.add("the pipeline check of approval %s (task %s) is not in the ledger: no entry linked it", approval, k[i+1:])
			}
			return
		}
		e, err := getEntry(tx, cb.LinkedSeq)
		if err == nil && e.Kind == KindApprovalCheckLinked && e.Subject == approval {
			if ek, _, _, err := checkFromEntry(e); err == nil && bytes.Equal(ek, k) {
				return
			}
		}
		c.rep.add("the pipeline check of approval %s (task %s) is not in the ledger: entry %d did not link it", approval, k[i+1:], cb.LinkedSeq)
	})
}

// passIndexes names index keys that no stored record explains (missing
// keys were named when each record was compared).
func (c *checker) passIndexes() error {
	runKey := func(name []byte, prefixed bool) error {
		return c.scan(name, func(tx Tx, k, _ []byte) {
			rest := k
			var prefix string
			if prefixed {
				i := bytes.IndexByte(k, 0)
				if i < 0 {
					c.rep.add("index %s: stray key %q", name, k)
					return
				}
				prefix, rest = string(k[:i]), k[i+1:]
			}
			if len(rest) <= 8 {
				c.rep.add("index %s: stray key %q", name, k)
				return
			}
			r, _ := getRun(tx, string(rest[8:]))
			if r != nil && r.StartSeq > c.head {
				return
			}
			ok := r != nil && bytes.Equal(rest[:8], timeKey(r.StartTime))
			switch {
			case !ok:
			case bytes.Equal(name, bucketRunByPipeline):
				ok = prefix == r.PipelineName
			case bytes.Equal(name, bucketRunByStatus):
				ok = prefix == r.Status
			}
			if !ok {
				c.rep.add("index %s: stray key %q", name, k)
			}
		})
	}
	if err := runKey(bucketRunByStart, false); err != nil {
		return err
	}
	if err := runKey(bucketRunByPipeline, true); err != nil {
		return err
	}
	if err := runKey(bucketRunByStatus, true); err != nil {
		return err
	}
	// Events and event ids of runs the store does not have.
	for _, b := range [][]byte{bucketEvents, bucketEventIDs} {
		lastRun, lastOK := "", true
		if err := c.scan(b, func(tx Tx, k, _ []byte) {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				c.rep.add("index %s: stray key %q", b, k)
				return
			}
			if run := string(k[:i]); run != lastRun {
				r, _ := getRun(tx, run)
				lastRun, lastOK = run, r != nil
				if !lastOK {
					c.rep.add("index %s: keys of run %s, which is not stored", b, run)
				}
			}
		}); err != nil {
			return err
		}
	}
	if err := c.scan(bucketApprByRun, func(tx Tx, k, _ []byte) {
		i := bytes.IndexByte(k, 0)
		if i < 0 || len(k) <= i+9 {
			c.rep.add("index %s: stray key %q", bucketApprByRun, k)
			return
		}
		a, _ := getApproval(tx, string(k[i+9:]))
		if a != nil && a.LastSeq > c.head {
			return
		}
		if a == nil || a.RunID != string(k[:i]) || !bytes.Equal(k[i+1:i+9], timeKey(a.CreatedAt)) {
			c.rep.add("index %s: stray key for approval %s", bucketApprByRun, k[i+9:])
		}
	}); err != nil {
		return err
	}
	if err := c.scan(bucketApprDeadline, func(tx Tx, k, _ []byte) {
		if len(k) <= 8 {
			c.rep.add("index %s: stray key %q", bucketApprDeadline, k)
			return
		}
		a, _ := getApproval(tx, string(k[8:]))
		if a != nil && a.LastSeq > c.head {
			return
		}
		if a == nil || a.Final() || !bytes.Equal(k, deadlineKey(a)) {
			c.rep.add("index %s: stray key for approval %s", bucketApprDeadline, k[8:])
		}
	}); err != nil {
		return err
	}
	if err := c.scan(bucketApprByPost, func(tx Tx, k, v []byte) {
		if a, _ := getApproval(tx, string(v)); a == nil {
			c.rep.add("index %s: post %s points to approval %s, which is not stored", bucketApprByPost, k, v)
		}
	}); err != nil {
		return err
	}
	if err := c.scan(bucketIncidentOpen, func(tx Tx, k, _ []byte) {
		inc, _ := getIncident(tx, string(k))
		if inc != nil && inc.LastSeq > c.head {
			return
		}
		if inc == nil || inc.Final() {
			c.rep.add("index %s: stray key for incident %s", bucketIncidentOpen, k)
		}
	}); err != nil {
		return err
	}
	if err := c.scan(bucketIncidentByPost, func(tx Tx, k, v []byte) {
		if inc, _ := getIncident(tx, string(v)); inc == nil {
			c.rep.add("index %s: post %s points to incident %s, which is not stored", bucketIncidentByPost, k, v)
		}
	}); err != nil {
		return err
	}
	return c.scan(bucketCostByMonth, func(tx Tx, k, _ []byte) {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			c.rep.add("index %s: stray key %q", bucketCostByMonth, k)
			return
		}
		e, _ := getJSON[ica.CostEntry](tx.Bucket(bucketCosts), k[i+1:])
		if e != nil && e.LastSeq > c.head {
			return
		}
		if e == nil || len(e.BillingPeriod) < 7 || e.BillingPeriod[:7] != string(k[:i]) {
			c.rep.add("index %s: stray key for cost %s", bucketCostByMonth, k[i+1:])
		}
	})
}
