package export

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ica-governance/ica"
)

// Page geometry (A4 landscape, millimetres).
const (
	pgMargin  = 12.0
	pgTop     = 22.0  // first content line under the running header
	pgBottom  = 193.0 // last content line above the footer
	rowH      = 4.6
	headRowH  = 6.0
	tableFont = 7.5
)

type rgb struct{ r, g, b int }

var (
	colInk      = rgb{33, 37, 41}
	colMuted    = rgb{108, 117, 125}
	colNavy     = rgb{31, 56, 100}
	colZebra    = rgb{243, 246, 250}
	colRule     = rgb{200, 206, 214}
	colSuccess  = rgb{46, 139, 87}
	colFailed   = rgb{200, 48, 48}
	colCancel   = rgb{150, 150, 150}
	colRunning  = rgb{70, 130, 200}
	colApproved = rgb{46, 139, 87}
	colRejected = rgb{200, 48, 48}
	colExpired  = rgb{222, 150, 30}
	colBypassed = rgb{140, 70, 160}
	colTechOK   = rgb{120, 170, 220}
	colPending  = rgb{160, 160, 160}
)

// runStatuses are the run outcomes charted, in stacking order.
var runStatuses = []struct {
	status, label string
	col           rgb
}{
	{ica.RunSuccess, "success", colSuccess},
	{ica.RunFailed, "failed", colFailed},
	{ica.RunCancelled, "cancelled", colCancel},
	{ica.RunRunning, "running / unknown", colRunning},
}

// approvalStatuses are the approval outcomes charted, in display order.
var approvalStatuses = []struct {
	status, label string
	col           rgb
}{
	{ica.ApprovalApproved, "approved", colApproved},
	{ica.ApprovalRejected, "rejected", colRejected},
	{ica.ApprovalExpired, "expired", colExpired},
	{ica.ApprovalBypassed, "bypassed (break-glass)", colBypassed},
	{ica.ApprovalTechnical, "technical approval only", colTechOK},
	{ica.ApprovalPending, "pending", colPending},
}

// pdfReport lays out one report on a canvas.
type pdfReport struct {
	c            canvas
	m            *Manifest
	manifestJSON string
	e            *PDFEncoder
	w, h         float64 // page size
	y            float64 // current line
	section      string  // title repeated on continuation pages
}

func (r *pdfReport) render() {
	r.w, r.h = r.c.PageSize()
	r.c.SetMetadata(pdfMetadata{
		Title:    "ICA audit export " + r.period(),
		Subject:  fmt.Sprintf("Ledger entries seq %d..%d (%d records), chain head seq %d", r.m.FirstSeq, r.m.LastSeq, r.m.Count, r.m.Head.Seq),
		Author:   "ICA (signed by key " + r.m.Fingerprint + ")",
		Creator:  "ICA export",
		Keywords: pdfKeywordsPrefix + r.manifestJSON,
		Created:  r.m.GeneratedAt,
	})
	runs := r.e.sortedRuns()
	r.cover(runs)
	r.charts(runs)
	r.runsTable(runs)
	r.entriesTable()
	r.manifestPage()
}

// ---- page furniture ----

func (r *pdfReport) color(c rgb)       { r.c.SetTextColor(c.r, c.g, c.b) }
func (r *pdfReport) fill(c rgb)        { r.c.SetFillColor(c.r, c.g, c.b) }
func (r *pdfReport) draw(c rgb)        { r.c.SetDrawColor(c.r, c.g, c.b) }
func (r *pdfReport) contentW() float64 { return r.w - 2*pgMargin }

func (r *pdfReport) newPage() {
	r.c.AddPage()
	r.c.SetFont("sans", "B", 8)
	r.color(colNavy)
	r.c.Cell(pgMargin, 8, 90, 5, "ICA audit export", "L", false)
	r.c.SetFont("sans", "", 8)
	r.color(colMuted)
	r.c.Cell(pgMargin+60, 8, r.contentW()-120, 5, "Period: "+r.period(), "C", false)
	r.c.Cell(r.w-pgMargin-90, 8, 90, 5, "Generated "+fmtTime(r.m.GeneratedAt, false), "R", false)
	r.draw(colNavy)
	r.c.SetLineWidth(0.4)
	r.c.Line(pgMargin, 14.5, r.w-pgMargin, 14.5)

	r.draw(colRule)
	r.c.SetLineWidth(0.2)
	r.c.Line(pgMargin, r.h-14, r.w-pgMargin, r.h-14)
	r.c.SetFont("sans", "", 7)
	r.color(colMuted)
	r.c.Cell(pgMargin, r.h-13, 200, 5, fmt.Sprintf("Signed by key %s  |  digest %s  |  verify: ica verify <file>",
		r.m.Fingerprint, shortHash(r.m.Digest)), "L", false)
	r.c.Cell(r.w-pgMargin-50, r.h-13, 50, 5, fmt.Sprintf("Page %d of %s", r.c.PageNo(), r.c.TotalPages()), "R", false)
	r.color(colInk)
	r.y = pgTop
}

// heading writes a section title and remembers it for continuation pages.
func (r *pdfReport) heading(title string) {
	r.section = title
	r.c.SetFont("sans", "B", 13)
	r.color(colNavy)
	r.c.Cell(pgMargin, r.y, r.contentW(), 7, title, "L", false)
	r.color(colInk)
	r.y += 9
}

func (r *pdfReport) subheading(title string) {
	r.c.SetFont("sans", "B", 10)
	r.color(colNavy)
	r.c.Cell(pgMargin, r.y, r.contentW(), 6, title, "L", false)
	r.color(colInk)
	r.y += 7
}

// period describes the export's requested period.
func (r *pdfReport) period() string {
	from, to := "start of ledger", "time of export"
	if !r.m.From.IsZero() {
		from = fmtTime(r.m.From, false)
	}
	if !r.m.To.IsZero() {
		to = fmtTime(r.m.To, false) + " (exclusive)"
	}
	return from + " to " + to
}

func fmtTime(t time.Time, seconds bool) string {
	if t.IsZero() {
		return ""
	}
	if seconds {
		return t.UTC().Format("2006-01-02 15:04:05")
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// fit shortens s with an ellipsis so that it fits in a cell of width w
// (the canvas pads cells by 1 mm each side).
func (r *pdfReport) fit(s string, w float64) string {
	avail := w - 2.2
	if r.c.StringWidth(s) <= avail {
		return s
	}
	runes := []rune(s)
	lo, hi := 0, len(runes)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if r.c.StringWidth(string(runes[:mid])+"…") <= avail {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return string(runes[:lo]) + "…"
}

// wrap breaks s into lines no wider than w, at spaces where it can and
// anywhere in long words (hashes, keys).
func (r *pdfReport) wrap(s string, w float64) []string {
	avail := w - 2.2
	var lines []string
	for _, para := range strings.Split(s, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			cand := word
			if line != "" {
				cand = line + " " + word
			}
			if r.c.StringWidth(cand) <= avail {
				line = cand
				continue
			}
			if line != "" {
				lines = append(lines, line)
				line = ""
			}
			for r.c.StringWidth(word) > avail {
				n := r.fitRunes(word, avail)
				lines = append(lines, word[:n])
				word = word[n:]
			}
			line = word
		}
		lines = append(lines, line)
	}
	return lines
}

// hardWrap breaks s into lines no wider than w without touching its
// characters (spaces included), for text that must be shown exactly.
func (r *pdfReport) hardWrap(s string, w float64) []string {
	avail := w - 2.2
	widths := map[rune]float64{}
	var lines []string
	start, cur := 0, 0.0
	for i, ch := range s {
		cw, ok := widths[ch]
		if !ok {
			cw = r.c.StringWidth(string(ch))
			widths[ch] = cw
		}
		if cur+cw > avail && i > start {
			lines = append(lines, s[start:i])
			start, cur = i, 0
		}
		cur += cw
	}
	return append(lines, s[start:])
}

// fitRunes returns how many bytes of s (whole runes, at least one) fit in avail.
func (r *pdfReport) fitRunes(s string, avail float64) int {
	n := 0
	for i, ch := range s {
		end := i + utf8.RuneLen(ch)
		if n > 0 && r.c.StringWidth(s[:end]) > avail {
			break
		}
		n = end
	}
	return n
}

// ---- cover ----

func (r *pdfReport) cover(runs []*pdfRun) {
	m := r.m
	r.newPage()
	r.c.SetFont("sans", "B", 22)
	r.color(colNavy)
	r.c.Cell(pgMargin, r.y+2, r.contentW(), 10, "Audit export of the ICA ledger", "L", false)
	r.c.SetFont("sans", "", 12)
	r.color(colInk)
	r.c.Cell(pgMargin, r.y+13, r.contentW(), 6, "Azure Pipelines runs and deployment approvals, "+r.period(), "L", false)
	r.y += 24

	left := pgMargin
	leftW := 160.0
	kv := [][2]string{
		{"Period", r.period()},
		{"Filter", orDash(m.Filter)},
		{"Generated", fmtTime(m.GeneratedAt, true) + " UTC"},
		{"Records", fmt.Sprintf("%d ledger entries", m.Count)},
	}
	if m.Count > 0 {
		kv = append(kv, [2]string{"Seq range", fmt.Sprintf("%d to %d", m.FirstSeq, m.LastSeq)})
		kv = append(kv, [2]string{"Seqs included", r.seqsSummary()})
	}
	kv = append(kv,
		[2]string{"Chain head", fmt.Sprintf("seq %d, checkpoint signed %s", m.Head.Seq, fmtTime(m.Head.Time, false))},
		[2]string{"Head hash", m.Head.Hash},
		[2]string{"Signing key", m.Fingerprint + "  (fingerprint)"},
		[2]string{"Public key", m.PublicKey},
		[2]string{"Export digest", m.Digest},
	)
	y := r.y
	r.subheading("Export")
	y = r.y
	for _, p := range kv {
		mono := p[0] == "Head hash" || p[0] == "Public key" || p[0] == "Export digest" || p[0] == "Signing key"
		y = r.keyValue(left, y, 34, leftW-34, p[0], p[1], mono)
	}

	// Right column: counts.
	x := left + leftW + 10
	colW := r.w - pgMargin - x
	ry := pgTop + 24
	r.c.SetFont("sans", "B", 10)
	r.color(colNavy)
	r.c.Cell(x, ry, colW, 6, "Entries by kind", "L", false)
	ry += 7
	kinds := make([]string, 0, len(m.CountsByKind))
	for k := range m.CountsByKind {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	r.c.SetFont("sans", "", 8.5)
	maxKinds := 16
	for i, k := range kinds {
		if i == maxKinds {
			rest := uint64(0)
			for _, k := range kinds[maxKinds:] {
				rest += m.CountsByKind[k]
			}
			r.countRow(x, ry, colW, fmt.Sprintf("%d other kinds", len(kinds)-maxKinds), rest, i%2 == 1)
			ry += rowH
			break
		}
		r.countRow(x, ry, colW, k, m.CountsByKind[k], i%2 == 1)
		ry += rowH
	}
	if len(kinds) == 0 {
		r.color(colMuted)
		r.c.Cell(x, ry, colW, rowH, "no entries", "L", false)
		ry += rowH
	}
	r.c.SetFont("sans", "B", 8.5)
	r.draw(colRule)
	r.c.Line(x, ry, x+colW, ry)
	r.countRow(x, ry, colW, "Total", m.Count, false)
	ry += rowH + 5

	r.c.SetFont("sans", "B", 10)
	r.color(colNavy)
	r.c.Cell(x, ry, colW, 6, "Runs and approvals", "L", false)
	ry += 7
	rc := countRuns(runs)
	ac := countApprovals(r.e.apOrder)
	r.c.SetFont("sans", "", 8.5)
	lines := []struct {
		label string
		n     int
	}{{"Runs in this export", len(runs)}}
	for _, s := range runStatuses {
		lines = append(lines, struct {
			label string
			n     int
		}{"   " + s.label, rc[s.status]})
	}
	lines = append(lines, struct {
		label string
		n     int
	}{"Approvals in this export", len(r.e.apOrder)})
	for _, s := range approvalStatuses {
		if ac[s.status] > 0 || s.status == ica.ApprovalApproved || s.status == ica.ApprovalRejected {
			lines = append(lines, struct {
				label string
				n     int
			}{"   " + s.label, ac[s.status]})
		}
	}
	for i, l := range lines {
		r.countRow(x, ry, colW, l.label, uint64(l.n), i%2 == 1)
		ry += rowH
	}

	// Verification note at the bottom of the page.
	by := max(y, ry) + 6
	note := "How to verify. The manifest on the last page is signed with the ledger's Ed25519 key and embedded in this " +
		"document's metadata; `ica verify <file>` checks its signature, the key fingerprint and the signed chain head. " +
		"The entries listed here cannot be re-checked from a PDF: to prove them, verify the CSV or JSON export of the same " +
		"period, whose manifest must carry the same export digest (" + m.Digest + ")."
	r.c.SetFont("sans", "", 8)
	ls := r.wrap(note, r.contentW()-6)
	bh := float64(len(ls))*4 + 4
	if by+bh > pgBottom {
		by = pgBottom - bh
	}
	r.fill(colZebra)
	r.draw(colRule)
	r.c.Rect(pgMargin, by, r.contentW(), bh, "FD")
	r.color(colInk)
	for i, l := range ls {
		r.c.Cell(pgMargin+3, by+2+float64(i)*4, r.contentW()-6, 4, l, "L", false)
	}
}

// keyValue writes a label and a wrapped value; it returns the next y.
func (r *pdfReport) keyValue(x, y, labelW, valueW float64, label, value string, mono bool) float64 {
	r.c.SetFont("sans", "B", 8.5)
	r.color(colMuted)
	r.c.Cell(x, y, labelW, 5, label, "L", false)
	if mono {
		r.c.SetFont("mono", "", 8)
	} else {
		r.c.SetFont("sans", "", 8.5)
	}
	r.color(colInk)
	for _, l := range r.wrap(value, valueW) {
		r.c.Cell(x+labelW, y, valueW, 5, l, "L", false)
		y += 4.4
	}
	return y + 1.2
}

func (r *pdfReport) countRow(x, y, w float64, label string, n uint64, zebra bool) {
	if zebra {
		r.fill(colZebra)
		r.c.Rect(x, y, w, rowH, "F")
	}
	r.color(colInk)
	r.c.Cell(x, y, w-25, rowH, r.fit(label, w-25), "L", false)
	r.c.Cell(x+w-25, y, 25, rowH, strconv.FormatUint(n, 10), "R", false)
}

func orDash(s string) string {
	if s == "" {
		return "none (all entries in the period)"
	}
	return s
}

// seqsSummary shortens the manifest's range list for the cover.
func (r *pdfReport) seqsSummary() string {
	ranges := strings.Count(r.m.Seqs, ",") + 1
	if ranges == 1 {
		return r.m.Seqs + " (contiguous)"
	}
	s := r.m.Seqs
	if len(s) > 120 {
		s = s[:strings.LastIndexByte(s[:120], ',')] + ", …"
	}
	return fmt.Sprintf("%s (%d ranges; the full list is in the manifest)", s, ranges)
}

func countRuns(runs []*pdfRun) map[string]int {
	c := make(map[string]int)
	for _, r := range runs {
		c[runBucket(r.status)]++
	}
	return c
}

func runBucket(status string) string {
	switch status {
	case ica.RunSuccess, ica.RunFailed, ica.RunCancelled:
		return status
	}
	return ica.RunRunning
}

func countApprovals(as []*pdfApproval) map[string]int {
	c := make(map[string]int)
	for _, a := range as {
		c[a.status]++
	}
	return c
}

// ---- charts ----

func (r *pdfReport) charts(runs []*pdfRun) {
	r.newPage()
	r.heading("Activity")
	unit, buckets, labels := bucketRuns(runs)
	title := "Runs per " + unit + " by outcome"
	if unit == "week" {
		title += " (weeks starting Monday)"
	}
	r.subheading(title)
	r.barChart(pgMargin, r.y, r.contentW(), 78, buckets, labels)
	r.y += 86

	half := (r.contentW() - 10) / 2
	top := r.y
	r.subheading("Approvals by outcome")
	r.approvalChart(pgMargin, r.y, half, pgBottom-r.y)

	r.y = top
	r.c.SetFont("sans", "B", 10)
	r.color(colNavy)
	x := pgMargin + half + 10
	r.c.Cell(x, r.y, half, 6, "Runs by pipeline", "L", false)
	r.y += 7
	r.pipelineTable(x, r.y, half, runs)
}

// bucketRuns counts runs per day (per week or month for long periods) and
// outcome; buckets[i][j] is the count for bucket i and runStatuses[j].
func bucketRuns(runs []*pdfRun) (unit string, buckets [][]int, labels []string) {
	if len(runs) == 0 {
		return "day", nil, nil
	}
	lo, hi := runs[0].when(), runs[0].when()
	for _, r := range runs {
		lo, hi = minTime(lo, r.when()), maxTime(hi, r.when())
	}
	day := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }
	start, next, label := day, func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }, "01-02"
	unit = "day"
	days := int(day(hi).Sub(day(lo)).Hours()/24) + 1
	switch {
	case days > 62*7:
		unit, label = "month", "2006-01"
		start = func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC) }
		next = func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }
	case days > 62:
		unit, label = "week", "01-02"
		start = func(t time.Time) time.Time {
			d := day(t)
			return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7)) // Monday
		}
		next = func(t time.Time) time.Time { return t.AddDate(0, 0, 7) }
	}
	index := make(map[time.Time]int)
	for t := start(lo); !t.After(start(hi)); t = next(t) {
		index[t] = len(buckets)
		buckets = append(buckets, make([]int, len(runStatuses)))
		labels = append(labels, t.Format(label))
	}
	for _, r := range runs {
		b := buckets[index[start(r.when())]]
		for j, s := range runStatuses {
			if s.status == runBucket(r.status) {
				b[j]++
			}
		}
	}
	return unit, buckets, labels
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// niceStep returns a round tick step so that max fits in about n ticks.
func niceStep(max float64, n int) float64 {
	if max <= 0 {
		return 1
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, f := range []float64{1, 2, 5, 10} {
		if f*mag >= raw {
			return math.Max(1, f*mag)
		}
	}
	return math.Max(1, 10*mag)
}

// barChart draws stacked bars with a y axis, gridlines, x labels and a legend.
func (r *pdfReport) barChart(x, y, w, h float64, buckets [][]int, labels []string) {
	axisW, labelH, legendH := 12.0, 7.0, 7.0
	px, py, pw, ph := x+axisW, y+legendH, w-axisW, h-labelH-legendH

	// legend
	r.c.SetFont("sans", "", 7.5)
	lx := x + w
	for i := len(runStatuses) - 1; i >= 0; i-- {
		s := runStatuses[i]
		tw := r.c.StringWidth(s.label) + 3
		lx -= tw
		r.color(colInk)
		r.c.Cell(lx, y, tw, 4, s.label, "L", false)
		lx -= 4
		r.fill(s.col)
		r.c.Rect(lx, y+0.8, 3, 2.6, "F")
		lx -= 4
	}

	if len(buckets) == 0 {
		r.draw(colRule)
		r.c.Rect(px, py, pw, ph, "D")
		r.color(colMuted)
		r.c.SetFont("sans", "I", 9)
		r.c.Cell(px, py, pw, ph, "No runs in this export", "C", false)
		return
	}
	peak := 0
	for _, b := range buckets {
		t := 0
		for _, n := range b {
			t += n
		}
		peak = max(peak, t)
	}
	step := niceStep(float64(peak), 5)
	top := math.Ceil(float64(peak)/step) * step
	if top == 0 {
		top = step
	}
	r.c.SetFont("sans", "", 7)
	r.c.SetLineWidth(0.15)
	for v := 0.0; v <= top+step/2; v += step {
		gy := py + ph - v/top*ph
		r.draw(colRule)
		r.c.Line(px, gy, px+pw, gy)
		r.color(colMuted)
		r.c.Cell(x, gy-2, axisW-1, 4, strconv.Itoa(int(v)), "R", false)
	}
	slot := pw / float64(len(buckets))
	barW := slot * 0.72
	for i, b := range buckets {
		bx := px + float64(i)*slot + (slot-barW)/2
		by := py + ph
		for j, n := range b {
			if n == 0 {
				continue
			}
			bh := float64(n) / top * ph
			by -= bh
			c := runStatuses[j].col
			r.fill(c)
			r.c.Rect(bx, by, barW, bh, "F")
		}
	}
	// x labels, thinned so they do not overlap
	labelW := r.c.StringWidth("00-00") + 2
	every := int(math.Ceil(labelW / slot))
	r.color(colMuted)
	for i, l := range labels {
		if i%every != 0 {
			continue
		}
		cx := px + float64(i)*slot + slot/2
		r.c.Cell(cx-labelW/2-2, py+ph+0.5, labelW+4, 4, l, "C", false)
	}
	r.draw(colInk)
	r.c.SetLineWidth(0.25)
	r.c.Line(px, py+ph, px+pw, py+ph)
	r.c.Line(px, py, px, py+ph)
	r.color(colInk)
}

// approvalChart draws horizontal bars of approvals by final status.
func (r *pdfReport) approvalChart(x, y, w, h float64) {
	counts := countApprovals(r.e.apOrder)
	if len(r.e.apOrder) == 0 {
		r.color(colMuted)
		r.c.SetFont("sans", "I", 9)
		r.c.Cell(x, y, w, 8, "No approvals in this export", "L", false)
		return
	}
	peak := 0
	for _, s := range approvalStatuses {
		peak = max(peak, counts[s.status])
	}
	labelW, countW := 42.0, 14.0
	barMax := w - labelW - countW
	bh := math.Min(5.5, h/float64(len(approvalStatuses))-2.5)
	r.c.SetFont("sans", "", 8)
	for i, s := range approvalStatuses {
		by := y + float64(i)*(bh+2.5)
		r.color(colInk)
		r.c.Cell(x, by, labelW, bh, s.label, "L", false)
		n := counts[s.status]
		bw := 0.0
		if peak > 0 {
			bw = float64(n) / float64(peak) * barMax
		}
		r.fill(colZebra)
		r.c.Rect(x+labelW, by, barMax, bh, "F")
		if bw > 0 {
			r.fill(s.col)
			r.c.Rect(x+labelW, by, bw, bh, "F")
		}
		r.c.Cell(x+labelW+barMax, by, countW, bh, strconv.Itoa(n), "R", false)
	}
}

// pipelineTable summarises outcomes per pipeline, busiest first.
func (r *pdfReport) pipelineTable(x, y, w float64, runs []*pdfRun) {
	type row struct {
		name   string
		counts map[string]int
		total  int
	}
	byName := map[string]*row{}
	var rows []*row
	for _, run := range runs {
		name := run.pipeline
		if name == "" {
			name = "(unknown pipeline)"
		}
		rw := byName[name]
		if rw == nil {
			rw = &row{name: name, counts: map[string]int{}}
			byName[name] = rw
			rows = append(rows, rw)
		}
		rw.counts[runBucket(run.status)]++
		rw.total++
	}
	slices.SortStableFunc(rows, func(a, b *row) int {
		if a.total != b.total {
			return b.total - a.total
		}
		return strings.Compare(a.name, b.name)
	})
	cols := []column{{"Pipeline", w - 5*16, "L"}, {"Runs", 16, "R"}, {"Success", 16, "R"}, {"Failed", 16, "R"}, {"Cancelled", 16, "R"}, {"Success %", 16, "R"}}
	r.tableHeader(x, y, cols)
	y += headRowH
	maxRows := int((pgBottom-y)/rowH) - 1
	for i, rw := range rows {
		if i == maxRows && len(rows) > maxRows+1 {
			r.color(colMuted)
			r.c.SetFont("sans", "I", tableFont)
			r.c.Cell(x, y, w, rowH, fmt.Sprintf("… and %d more pipelines (see the runs table)", len(rows)-maxRows), "L", false)
			break
		}
		rate := "-"
		if done := rw.counts[ica.RunSuccess] + rw.counts[ica.RunFailed] + rw.counts[ica.RunCancelled]; done > 0 {
			rate = fmt.Sprintf("%.0f%%", 100*float64(rw.counts[ica.RunSuccess])/float64(done))
		}
		r.tableRow(x, y, cols, i, []string{rw.name, strconv.Itoa(rw.total), strconv.Itoa(rw.counts[ica.RunSuccess]),
			strconv.Itoa(rw.counts[ica.RunFailed]), strconv.Itoa(rw.counts[ica.RunCancelled]), rate}, nil)
		y += rowH
	}
	if len(rows) == 0 {
		r.color(colMuted)
		r.c.SetFont("sans", "I", tableFont)
		r.c.Cell(x, y, w, rowH, "No runs", "L", false)
	}
}

// ---- tables ----

type column struct {
	title string
	w     float64
	align string
}

func (r *pdfReport) tableHeader(x, y float64, cols []column) {
	r.c.SetFont("sans", "B", tableFont)
	r.fill(colNavy)
	r.c.SetTextColor(255, 255, 255)
	cx := x
	for _, c := range cols {
		r.c.Cell(cx, y, c.w, headRowH, c.title, c.align, true)
		cx += c.w
	}
	r.color(colInk)
}

// tableRow draws one zebra-striped row; colour, when set, picks a text
// colour per column.
func (r *pdfReport) tableRow(x, y float64, cols []column, i int, vals []string, colour func(col int) *rgb) {
	if i%2 == 1 {
		r.fill(colZebra)
		total := 0.0
		for _, c := range cols {
			total += c.w
		}
		r.c.Rect(x, y, total, rowH, "F")
	}
	r.c.SetFont("sans", "", tableFont)
	cx := x
	for j, c := range cols {
		r.color(colInk)
		if colour != nil {
			if col := colour(j); col != nil {
				r.color(*col)
			}
		}
		r.c.Cell(cx, y, c.w, rowH, r.fit(vals[j], c.w), c.align, false)
		cx += c.w
	}
}

// longTable lays out n rows over as many pages as needed, repeating the
// section title and column header on every page.
func (r *pdfReport) longTable(title, empty string, cols []column, n int, row func(i int) []string, colour func(i, col int) *rgb) {
	r.newPage()
	r.heading(title)
	if n == 0 {
		r.c.SetFont("sans", "I", 9)
		r.color(colMuted)
		r.c.Cell(pgMargin, r.y, r.contentW(), 6, empty, "L", false)
		r.color(colInk)
		return
	}
	r.tableHeader(pgMargin, r.y, cols)
	r.y += headRowH
	for i := 0; i < n; i++ {
		if r.y+rowH > pgBottom {
			r.newPage()
			r.heading(title + " (continued)")
			r.tableHeader(pgMargin, r.y, cols)
			r.y += headRowH
		}
		var cf func(int) *rgb
		if colour != nil {
			cf = func(col int) *rgb { return colour(i, col) }
		}
		r.tableRow(pgMargin, r.y, cols, i, row(i), cf)
		r.y += rowH
	}
	r.draw(colRule)
	r.c.SetLineWidth(0.2)
	r.c.Line(pgMargin, r.y, r.w-pgMargin, r.y)
}

func (r *pdfReport) runsTable(runs []*pdfRun) {
	cols := []column{
		{"Run ID", 29, "L"}, {"Pipeline", 27, "L"}, {"Branch", 24, "L"}, {"Commit", 17, "L"},
		{"Triggered by", 30, "L"}, {"Status", 16, "L"}, {"Started (UTC)", 29, "L"}, {"Duration", 14, "R"},
		{"Approval", 31, "L"}, {"Technical approver", 28, "L"}, {"Business approver", 28, "L"},
	}
	statusCol := func(s string) *rgb {
		switch s {
		case ica.RunSuccess, ica.ApprovalApproved:
			return &colSuccess
		case ica.RunFailed, ica.ApprovalRejected:
			return &colFailed
		case ica.RunCancelled, ica.ApprovalExpired:
			return &colMuted
		case ica.ApprovalBypassed:
			return &colBypassed
		}
		return nil
	}
	r.longTable(fmt.Sprintf("Runs (%d)", len(runs)), "No runs in this export.", cols, len(runs), func(i int) []string {
		run := runs[i]
		commit := run.commit
		if len(commit) > 10 {
			commit = commit[:10]
		}
		ap, tech, bus := "", "", ""
		if a := run.approval; a != nil {
			ap = a.status
			if a.target != "" {
				ap = a.target + ": " + a.status
			}
			tech, bus = a.technical, a.business
			if a.other != "" && bus == "" {
				bus = a.other
			}
		}
		return []string{run.id, run.pipeline, strings.TrimPrefix(run.branch, "refs/heads/"), commit, run.triggeredBy,
			orUnknown(run.status), fmtTime(run.start, true), duration(run.start, run.end), ap, tech, bus}
	}, func(i, col int) *rgb {
		switch col {
		case 5:
			return statusCol(runs[i].status)
		case 8:
			if a := runs[i].approval; a != nil {
				return statusCol(a.status)
			}
		}
		return nil
	})
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func duration(start, end time.Time) string {
	if start.IsZero() || end.IsZero() || end.Before(start) {
		return ""
	}
	d := end.Sub(start).Round(time.Second)
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

func (r *pdfReport) entriesTable() {
	es := r.e.entries
	cols := []column{
		{"Seq", 18, "R"}, {"Time (UTC)", 40, "L"}, {"Kind", 44, "L"}, {"Subject", 66, "L"},
		{"Actor", 56, "L"}, {"Hash (first 16 hex)", 49, "L"},
	}
	r.longTable(fmt.Sprintf("Ledger entries (%d)", len(es)), "No ledger entries in this export.", cols, len(es), func(i int) []string {
		e := &es[i]
		return []string{strconv.FormatUint(e.seq, 10), e.time.Format("2006-01-02 15:04:05.000"), e.kind, e.subject, e.actor, shortHash(e.hash)}
	}, nil)
}

// ---- manifest ----

func (r *pdfReport) manifestPage() {
	m := r.m
	r.newPage()
	r.heading("Signed manifest")
	kinds := make([]string, 0, len(m.CountsByKind))
	for k, n := range m.CountsByKind {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	slices.Sort(kinds)
	seqs := m.Seqs
	if len(seqs) > 600 {
		seqs = seqs[:strings.LastIndexByte(seqs[:600], ',')] + ", … (truncated here; complete in the manifest JSON)"
	}
	kv := [][2]string{
		{"version", strconv.Itoa(m.Version)},
		{"format", m.Format},
		{"from", fmtOr(m.From, "(unbounded)")},
		{"to", fmtOr(m.To, "(unbounded)")},
		{"filter", m.Filter},
		{"count", strconv.FormatUint(m.Count, 10)},
		{"counts_by_kind", strings.Join(kinds, ", ")},
		{"first_seq", strconv.FormatUint(m.FirstSeq, 10)},
		{"last_seq", strconv.FormatUint(m.LastSeq, 10)},
		{"seqs", seqs},
		{"digest", m.Digest},
		{"head.seq", strconv.FormatUint(m.Head.Seq, 10)},
		{"head.hash", m.Head.Hash},
		{"head.time", m.Head.Time.Format(time.RFC3339Nano)},
		{"head.public_key", m.Head.PublicKey},
		{"head.signature", m.Head.Signature},
		{"generated_at", m.GeneratedAt.Format(time.RFC3339Nano)},
		{"public_key", m.PublicKey},
		{"fingerprint", m.Fingerprint},
		{"signature", m.Signature},
	}
	for _, p := range kv {
		if r.y > pgBottom-10 {
			r.newPage()
			r.heading("Signed manifest (continued)")
		}
		r.y = r.keyValue(pgMargin, r.y, 32, r.contentW()-32, p[0], p[1], true)
	}
	r.y += 3
	r.c.SetFont("sans", "", 8)
	r.color(colMuted)
	for _, l := range r.wrap("The signature is Ed25519 over the canonical JSON (sorted keys, no spaces) of the manifest "+
		"without its signature field. The exact manifest JSON follows; it is also embedded in this document's metadata "+
		"(Keywords), where `ica verify` reads it.", r.contentW()) {
		r.c.Cell(pgMargin, r.y, r.contentW(), 4, l, "L", false)
		r.y += 4
	}
	r.y += 2
	js := r.manifestJSON
	const maxJSON = 40000
	if len(js) > maxJSON {
		js = js[:maxJSON] + " … (truncated; the complete manifest is in the document metadata)"
	}
	r.c.SetFont("mono", "", 6.5)
	r.color(colInk)
	for _, l := range r.hardWrap(js, r.contentW()) {
		if r.y+3.2 > pgBottom {
			r.newPage()
			r.heading("Signed manifest (continued)")
			r.c.SetFont("mono", "", 6.5)
			r.color(colInk)
		}
		r.c.Cell(pgMargin, r.y, r.contentW(), 3.2, l, "L", false)
		r.y += 3.2
	}
}

func fmtOr(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format(time.RFC3339Nano)
}
