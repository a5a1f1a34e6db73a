package export

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"

	"github.com/ica-governance/ica"
)

// Report is the outcome of verifying an export.
type Report struct {
	// Format is the detected format: "csv", "json" or "pdf".
	Format string `json:"format"`
	// OK is true when everything checked verifies.
	OK bool `json:"ok"`
	// Records is the number of records read (for a PDF: the manifest's count).
	Records uint64 `json:"records"`
	// FirstSeq and LastSeq are the seqs of the first and last record read.
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// RecordsVerified is false when the records themselves could not be
	// checked (a PDF: only its embedded manifest is verified).
	RecordsVerified bool `json:"records_verified"`
	// Manifest is the export's manifest, nil when it is missing or unreadable.
	Manifest *Manifest `json:"manifest,omitempty"`
	// Fingerprint is the fingerprint of the key that signed the manifest.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Problem says what is wrong, naming the first bad record; empty when OK.
	Problem string `json:"problem,omitempty"`
	// ProblemSeq is the seq of the first bad record, 0 when the problem is
	// not about one record (a bad signature, a missing manifest).
	ProblemSeq uint64 `json:"problem_seq,omitempty"`
	// Warnings are facts worth an auditor's attention that do not make the
	// export invalid (records outside the stated period, limits of a format).
	Warnings []string `json:"warnings,omitempty"`
	// MerkleRecomputed is set when the export holds every entry from the
	// first to its head checkpoint and their Merkle root was recomputed and
	// found equal to the one the checkpoint's signed note commits to.
	MerkleRecomputed bool `json:"merkle_recomputed,omitempty"`
}

// String describes the report for people, one fact per line.
func (r *Report) String() string {
	var b strings.Builder
	if r.OK {
		fmt.Fprintf(&b, "OK: %s export verifies\n", r.Format)
	} else {
		fmt.Fprintf(&b, "FAILED: %s\n", r.Problem)
	}
	fmt.Fprintf(&b, "records: %d", r.Records)
	if r.Records > 0 {
		fmt.Fprintf(&b, " (seq %d..%d)", r.FirstSeq, r.LastSeq)
	}
	if !r.RecordsVerified {
		b.WriteString(", not checked individually")
	}
	b.WriteByte('\n')
	if m := r.Manifest; m != nil {
		if !m.From.IsZero() || !m.To.IsZero() {
			fmt.Fprintf(&b, "period: %s to %s\n", fmtPeriodEnd(m.From, "start"), fmtPeriodEnd(m.To, "now"))
		}
		if m.Filter != "" {
			fmt.Fprintf(&b, "filter: %s\n", m.Filter)
		}
		fmt.Fprintf(&b, "head checkpoint: seq %d hash %s at %s\n", m.Head.Seq, m.Head.Hash, m.Head.Time.Format(time.RFC3339))
		if m.Head.Note != "" {
			how := "signed; not recomputed: the export does not hold every entry up to it"
			if r.MerkleRecomputed {
				how = "recomputed from the records"
			}
			fmt.Fprintf(&b, "merkle root: %s (%s), log %s\n", m.Head.Root, how, m.Head.Origin)
		}
		fmt.Fprintf(&b, "generated at: %s\n", m.GeneratedAt.Format(time.RFC3339))
		fmt.Fprintf(&b, "digest: %s\n", m.Digest)
	}
	if r.Fingerprint != "" {
		fmt.Fprintf(&b, "signed by key: %s\n", r.Fingerprint)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

func fmtPeriodEnd(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format(time.RFC3339)
}

// VerifyOptions adjust verification.
type VerifyOptions struct {
	// PublicKey, when set, is the only key the export may be signed with.
	// Without it, an export re-signed with another key verifies, and the
	// report's Fingerprint is what tells the auditor whose key it was.
	PublicKey ed25519.PublicKey
}

// Verify checks an export of any format. The report is always returned.
// The error is nil when the export verifies; otherwise it is an *ica.Error
// (code ica.EINVALID) whose message is the report's Problem, or an I/O error
// when r cannot be read.
func Verify(r io.Reader) (*Report, error) {
	return VerifyWith(r, VerifyOptions{})
}

// VerifyFile verifies the export at path.
func VerifyFile(path string) (*Report, error) {
	return VerifyFileWith(path, VerifyOptions{})
}

// VerifyFileWith verifies the export at path with options.
func VerifyFileWith(path string, opt VerifyOptions) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return &Report{Problem: "cannot open export: " + err.Error()}, fmt.Errorf("verify %q: %w", path, err)
	}
	defer f.Close()
	return VerifyWith(f, opt)
}

// VerifyWith checks an export with options (see Verify).
func VerifyWith(r io.Reader, opt VerifyOptions) (*Report, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	v := &verifier{rep: &Report{RecordsVerified: true}, opt: opt, t: newTally(), h: newHasher(),
		merkle: (&compact.RangeFactory{Hash: ica.HashChildren}).NewEmptyRange(0)}
	// Tolerate a UTF-8 byte order mark: spreadsheets add one when saving.
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	head, err := br.Peek(5)
	switch {
	case len(head) == 0 && err == io.EOF:
		v.rep.Problem = "file is empty"
	case len(head) == 0 && err != nil:
		return v.ioFail(err)
	case string(head) == "%PDF-":
		v.rep.Format = FormatPDF
		err = v.verifyPDF(br)
	case head[0] == '{':
		v.rep.Format = FormatJSON
		err = v.verifyJSON(br)
	default:
		v.rep.Format = FormatCSV
		err = v.verifyCSV(br)
	}
	if err != nil {
		return v.ioFail(err)
	}
	v.rep.OK = v.rep.Problem == ""
	if !v.rep.OK {
		return v.rep, &ica.Error{Code: ica.EINVALID, Message: v.rep.Problem}
	}
	return v.rep, nil
}

// problem is a candidate for the report's Problem; key orders record
// problems by position in the chain.
type problem struct {
	key uint64 // the seq it is about, or the seq just after the last good one
	seq uint64 // 0 when not about one record
	msg string
}

// verifier holds the state of one verification.
type verifier struct {
	rep *Report
	opt VerifyOptions
	t   *tally

	havePrev bool
	prevSeq  uint64
	prevHash string

	rec *problem // first problem found while reading records
	h   *hasher

	// merkle is the Merkle tree of the records while they run from seq 1
	// without a gap (nil once they do not).
	merkle *compact.Range

	// earliest and latest record times, to warn about records outside the
	// stated period without keeping every time.
	minTime, maxTime time.Time
	minSeq, maxSeq   uint64
}

func (v *verifier) ioFail(err error) (*Report, error) {
	v.rep.OK = false
	if v.rep.Problem == "" {
		v.rep.Problem = "cannot read export: " + err.Error()
	}
	return v.rep, fmt.Errorf("verify export: %w", err)
}

// recordProblem keeps the first record problem.
func (v *verifier) recordProblem(key, seq uint64, format string, args ...any) {
	if v.rec == nil {
		v.rec = &problem{key: key, seq: seq, msg: fmt.Sprintf(format, args...)}
	}
}

// nextKey is where a record that could not be read sits in the chain.
func (v *verifier) nextKey() uint64 {
	if v.havePrev {
		return v.prevSeq + 1
	}
	return 1
}

// where names a record that could not be read by its line and neighbour.
func (v *verifier) where(line int) string {
	if v.havePrev {
		return fmt.Sprintf("record at line %d (after seq %d)", line, v.prevSeq)
	}
	return fmt.Sprintf("record at line %d", line)
}

// entry checks one record and adds it to the tally.
func (v *verifier) entry(e *ica.LedgerEntry) {
	if v.rec == nil {
		v.checkEntry(e)
	}
	if v.t.count == 0 || e.Time.Before(v.minTime) {
		v.minTime, v.minSeq = e.Time, e.Seq
	}
	if v.t.count == 0 || e.Time.After(v.maxTime) {
		v.maxTime, v.maxSeq = e.Time, e.Seq
	}
	v.t.add(e.Seq, e.Kind, e.Hash)
	if v.merkle != nil {
		leaf, err := ica.LeafHash(e.Hash)
		if err != nil || e.Seq != v.merkle.End()+1 || v.merkle.Append(leaf, nil) != nil {
			v.merkle = nil
		}
	}
	if v.havePrev && e.Seq < v.prevSeq {
		return // keep the highest seq as "previous" for the head check
	}
	v.havePrev, v.prevSeq, v.prevHash = true, e.Seq, e.Hash
}

func (v *verifier) checkEntry(e *ica.LedgerEntry) {
	if e.Seq == 0 {
		v.recordProblem(v.nextKey(), 0, "record seq 0 is malformed: ledger seqs start at 1")
		return
	}
	if v.havePrev && e.Seq == v.prevSeq {
		v.recordProblem(e.Seq, e.Seq, "record seq %d appears twice", e.Seq)
		return
	}
	if v.havePrev && e.Seq < v.prevSeq {
		v.recordProblem(e.Seq, e.Seq, "records seq %d and %d are out of order (seq %d comes after seq %d)",
			e.Seq, v.prevSeq, e.Seq, v.prevSeq)
		return
	}
	h, err := v.h.hash(e)
	if err != nil {
		v.recordProblem(e.Seq, e.Seq, "record seq %d is malformed: data is not valid JSON", e.Seq)
		return
	}
	if h != e.Hash {
		v.recordProblem(e.Seq, e.Seq, "record seq %d was edited (hash mismatch)", e.Seq)
		return
	}
	if v.havePrev && e.Seq == v.prevSeq+1 && e.PrevHash != v.prevHash {
		v.recordProblem(v.prevSeq, v.prevSeq,
			"record seq %d does not link to seq %d (seq %d's prev_hash is not seq %d's hash): one of them was rewritten",
			v.prevSeq, e.Seq, e.Seq, v.prevSeq)
		return
	}
	if e.Seq == 1 && e.PrevHash != ica.GenesisHash {
		v.recordProblem(1, 1, "record seq 1 does not start the chain (prev_hash is not the genesis hash)")
	}
}

// parseTime reads a record time as written by the encoders.
func parseTime(s string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, s)
}

// finish compares the records with the manifest and fills the report. raw
// is the manifest JSON (nil when missing); partial says whether the input
// ended in the middle of a line.
func (v *verifier) finish(raw []byte, missing string) {
	rep := v.rep
	rep.Records, rep.FirstSeq, rep.LastSeq = v.t.count, v.t.first(), v.t.last()
	if raw == nil {
		if v.rec != nil {
			v.fail(v.rec.seq, v.rec.msg)
			return
		}
		v.fail(0, missing)
		return
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		if v.rec != nil {
			v.fail(v.rec.seq, v.rec.msg)
			return
		}
		v.fail(0, "manifest is not valid JSON: "+err.Error())
		return
	}
	rep.Manifest = &m
	rep.Fingerprint = ica.KeyFingerprint(m.PublicKey)

	want, seqErr := parseSeqs(m.Seqs)
	best := v.rec
	if seqErr == nil {
		if seq, msg, differ := seqDiff(want, v.t.ranges); differ && (best == nil || seq < best.key) {
			best = &problem{key: seq, seq: seq, msg: msg}
		}
	}
	if best != nil {
		v.fail(best.seq, best.msg)
		return
	}
	if seqErr != nil {
		v.fail(0, "manifest seq list is malformed: "+seqErr.Error())
		return
	}
	if msg := v.checkManifest(&m, raw); msg != "" {
		v.fail(0, msg)
		return
	}
	// The records agree with the manifest's seqs; what is left is content
	// rewritten with recomputed hashes where no neighbour exposes it.
	switch {
	case v.t.count > 0 && v.t.last() > m.Head.Seq:
		v.fail(v.t.last(), fmt.Sprintf("record seq %d is after the head checkpoint (seq %d)", v.t.last(), m.Head.Seq))
	case v.t.count > 0 && v.t.last() == m.Head.Seq && v.prevHash != m.Head.Hash:
		v.fail(m.Head.Seq, fmt.Sprintf("record seq %d does not match the signed head checkpoint (hash differs): it was rewritten", m.Head.Seq))
	case m.Count != v.t.count:
		v.fail(0, fmt.Sprintf("manifest says %d records, the file has %d", m.Count, v.t.count))
	case m.FirstSeq != v.t.first() || m.LastSeq != v.t.last():
		v.fail(0, fmt.Sprintf("manifest says seq %d..%d, the file has seq %d..%d", m.FirstSeq, m.LastSeq, v.t.first(), v.t.last()))
	case m.Digest != v.t.sum():
		v.fail(0, "records do not match the manifest digest: a record was rewritten with a recomputed hash "+
			"(it cannot be located offline because its neighbours are not in this export)")
	case !maps.Equal(m.CountsByKind, v.t.kinds) && !(len(m.CountsByKind) == 0 && len(v.t.kinds) == 0):
		v.fail(0, "manifest counts by kind do not match the records")
	case m.Head.Root != "" && v.merkle != nil && v.merkle.End() == m.Head.Seq && m.Head.Seq > 0:
		root, err := v.merkle.GetRootHash(nil)
		if err != nil || hex.EncodeToString(root) != m.Head.Root {
			v.fail(0, fmt.Sprintf("the records do not make the Merkle root the head checkpoint's signed note commits to (tree of %d entries)", m.Head.Seq))
		} else {
			rep.MerkleRecomputed = true
		}
	}
	if rep.Problem != "" {
		return
	}
	if m.Format != "" && m.Format != rep.Format {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("the manifest was made for a %s export; this file is %s", m.Format, rep.Format))
	}
	if v.t.count > 0 && !m.From.IsZero() && v.minTime.Before(m.From) {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("record seq %d (%s) is before the stated period (from %s)",
			v.minSeq, v.minTime.UTC().Format(time.RFC3339Nano), m.From.UTC().Format(time.RFC3339)))
	}
	if v.t.count > 0 && !m.To.IsZero() && !v.maxTime.Before(m.To) {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("record seq %d (%s) is not before the end of the stated period (to %s)",
			v.maxSeq, v.maxTime.UTC().Format(time.RFC3339Nano), m.To.UTC().Format(time.RFC3339)))
	}
}

// checkManifest checks the signature, key and head checkpoint; raw is the
// manifest as written, so unknown fields are covered by the signature too.
func (v *verifier) checkManifest(m *Manifest, raw []byte) string {
	if m.Version != ManifestVersion {
		return fmt.Sprintf("manifest version %d is not supported (this verifier reads version %d)", m.Version, ManifestVersion)
	}
	msg, err := signingBytesRaw(raw)
	if err != nil {
		return "manifest is malformed: " + err.Error()
	}
	if err := verifySig(m.PublicKey, m.Signature, msg); err != nil {
		return err.Error()
	}
	if want := ica.KeyFingerprint(m.PublicKey); m.Fingerprint != want {
		return fmt.Sprintf("manifest fingerprint %s does not match its public key (%s)", m.Fingerprint, want)
	}
	if len(v.opt.PublicKey) > 0 {
		if trusted := hex.EncodeToString(v.opt.PublicKey); !strings.EqualFold(trusted, m.PublicKey) {
			return fmt.Sprintf("export is signed by key %s, not the trusted key %s", m.Fingerprint, ica.KeyFingerprint(trusted))
		}
	}
	if err := m.Head.Verify(); err != nil {
		return "head checkpoint signature does not verify: " + err.Error()
	}
	if !strings.EqualFold(m.Head.PublicKey, m.PublicKey) {
		return fmt.Sprintf("head checkpoint is signed by key %s, the manifest by key %s",
			ica.KeyFingerprint(m.Head.PublicKey), m.Fingerprint)
	}
	return ""
}

func (v *verifier) fail(seq uint64, msg string) {
	v.rep.Problem, v.rep.ProblemSeq = msg, seq
}

// ---- CSV ----

func (v *verifier) verifyCSV(r io.Reader) error {
	c := newCSVReader(r)
	hdr, err := c.readRecord()
	if err == io.EOF {
		v.finish(nil, "file is empty")
		return nil
	}
	if err != nil {
		if c.ioErr != nil {
			return c.ioErr
		}
		v.finish(nil, "not an ICA CSV export: header row is malformed: "+err.Error())
		return nil
	}
	col := make(map[string]int, len(hdr))
	for i, h := range hdr {
		name := strings.ToLower(strings.TrimSpace(string(h)))
		if _, dup := col[name]; !dup {
			col[name] = i
		}
	}
	idx := make([]int, len(ledgerColumns))
	for i, name := range ledgerColumns {
		j, ok := col[name]
		if !ok {
			v.finish(nil, fmt.Sprintf("not an ICA CSV export: column %q is missing from the header row", name))
			return nil
		}
		idx[i] = j
	}
	nfields := len(hdr)
	var e ica.LedgerEntry
	for {
		trailer, err := c.peekTrailer()
		if err == io.EOF {
			v.finish(nil, v.truncated(c.partial))
			return nil
		}
		if err != nil {
			return err
		}
		if trailer {
			break
		}
		fields, err := c.readRecord()
		if err != nil {
			if c.partial {
				// The input ends inside this record: the file was cut.
				v.finish(nil, v.truncated(true))
				return nil
			}
			if c.ioErr != nil {
				return c.ioErr
			}
			v.recordProblem(v.nextKey(), 0, "%s is malformed: %v", v.where(c.line), err)
			continue
		}
		if c.partial {
			v.finish(nil, v.truncated(true))
			return nil
		}
		seq, serr := strconv.ParseUint(string(fields[idx[0]]), 10, 64)
		if len(fields) != nfields {
			if serr == nil {
				v.recordProblem(seq, seq, "record seq %d is malformed: it has %d fields, the header has %d", seq, len(fields), nfields)
			} else {
				v.recordProblem(v.nextKey(), 0, "%s is malformed: it has %d fields, the header has %d", v.where(c.line), len(fields), nfields)
			}
			continue
		}
		if serr != nil {
			v.recordProblem(v.nextKey(), 0, "%s is malformed: seq %q is not a number", v.where(c.line), fields[idx[0]])
			continue
		}
		t, err := parseTime(string(fields[idx[1]]))
		if err != nil {
			v.recordProblem(seq, seq, "record seq %d is malformed: time %q is not RFC 3339", seq, fields[idx[1]])
			continue
		}
		e = ica.LedgerEntry{
			Seq: seq, Time: t,
			Kind: string(fields[idx[2]]), Subject: string(fields[idx[3]]), Actor: string(fields[idx[4]]),
			PrevHash: string(fields[idx[5]]), Hash: string(fields[idx[6]]),
			Data: fields[idx[7]],
		}
		v.entry(&e)
	}
	// Trailer: '#' lines to the end; the manifest line must be the last.
	var raw []byte
	for {
		line, err := c.readLine()
		if err == io.EOF {
			break
		}
		if err != nil {
			if c.ioErr != nil {
				return c.ioErr
			}
			v.finish(nil, "trailer is malformed: "+err.Error())
			return nil
		}
		if raw != nil {
			v.finish(nil, fmt.Sprintf("line %d: unexpected content after the manifest", c.line))
			return nil
		}
		if len(line) == 0 || line[0] != '#' {
			v.finish(nil, fmt.Sprintf("line %d: a record after the trailer started (trailer lines start with '#')", c.line))
			return nil
		}
		if rest, ok := bytes.CutPrefix(line, []byte(csvManifestPrefix)); ok {
			if c.partial {
				v.finish(nil, "file is truncated: the manifest line is incomplete")
				return nil
			}
			raw = bytes.Clone(rest)
		}
	}
	v.finish(raw, v.truncated(c.partial))
	return nil
}

// truncated is the problem for an input that ends without a manifest.
func (v *verifier) truncated(partial bool) string {
	last := "no complete record"
	if v.havePrev {
		last = fmt.Sprintf("last complete record: seq %d", v.prevSeq)
	}
	if partial {
		return fmt.Sprintf("file is truncated: manifest missing and the last line is cut off (%s)", last)
	}
	return fmt.Sprintf("file is truncated: manifest missing (%s)", last)
}

// ---- JSON Lines ----

func (v *verifier) verifyJSON(r io.Reader) error {
	c := newCSVReader(r) // only its line reading
	line, err := c.readLine()
	if err != nil && err != io.EOF {
		return err
	}
	var hdr jsonHeader
	if err := json.Unmarshal(line, &hdr); err != nil || hdr.Type != "header" || hdr.Format != jsonFormatName {
		if c.partial {
			v.finish(nil, v.truncated(true))
			return nil
		}
		v.finish(nil, `not an ICA JSON export: the first line is not a {"type":"header","format":"ica-export"} object`)
		return nil
	}
	var raw []byte
	for {
		line, err := c.readLine()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if raw != nil {
			v.finish(nil, fmt.Sprintf("line %d: unexpected content after the manifest", c.line))
			return nil
		}
		var jl jsonLine
		if err := json.Unmarshal(line, &jl); err != nil {
			if c.partial {
				if bytes.HasPrefix(line, []byte(`{"type":"manifest"`)) {
					v.finish(nil, "file is truncated: the manifest line is incomplete")
				} else {
					v.finish(nil, v.truncated(true))
				}
				return nil
			}
			v.recordProblem(v.nextKey(), 0, "%s is malformed: not a JSON object", v.where(c.line))
			continue
		}
		switch jl.Type {
		case "entry":
			if c.partial {
				// A whole object without its newline: the manifest line is gone.
				v.finish(nil, v.truncated(true))
				return nil
			}
			if jl.Seq == nil {
				v.recordProblem(v.nextKey(), 0, "%s is malformed: it has no seq", v.where(c.line))
				continue
			}
			seq := *jl.Seq
			t, err := parseTime(jl.Time)
			if err != nil {
				v.recordProblem(seq, seq, "record seq %d is malformed: time %q is not RFC 3339", seq, jl.Time)
				continue
			}
			v.entry(&ica.LedgerEntry{
				Seq: seq, Time: t, Kind: jl.Kind, Subject: jl.Subject, Actor: jl.Actor,
				Data: jl.Data, PrevHash: jl.PrevHash, Hash: jl.Hash,
			})
		case "manifest":
			if len(jl.Manifest) == 0 || string(jl.Manifest) == "null" {
				v.finish(nil, fmt.Sprintf("line %d: the manifest line holds no manifest", c.line))
				return nil
			}
			raw = jl.Manifest
		case "header":
			v.recordProblem(v.nextKey(), 0, "line %d: a second header line", c.line)
		default:
			v.recordProblem(v.nextKey(), 0, "line %d: unknown line type %q", c.line, jl.Type)
		}
	}
	v.finish(raw, v.truncated(c.partial))
	if m := v.rep.Manifest; m != nil && v.rep.Problem == "" {
		var diff []string
		if hdr.PublicKey != m.PublicKey {
			diff = append(diff, "public_key")
		}
		if !hdr.From.Equal(m.From) {
			diff = append(diff, "from")
		}
		if !hdr.To.Equal(m.To) {
			diff = append(diff, "to")
		}
		if hdr.Filter != m.Filter {
			diff = append(diff, "filter")
		}
		if hdr.HeadSeq != m.Head.Seq {
			diff = append(diff, "head_seq")
		}
		if len(diff) > 0 {
			v.fail(0, "the header line does not match the signed manifest ("+strings.Join(diff, ", ")+")")
		}
	}
	return nil
}
