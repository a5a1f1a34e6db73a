package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// PDFEncoder writes the PDF report (see the package documentation). The
// document is laid out on Close, because its cover page needs totals; until
// then it keeps one small row per entry and per run.
type PDFEncoder struct {
	*base
	w         io.Writer
	newCanvas func() canvas
	entries   []pdfEntry
	runs      map[string]*pdfRun
	runOrder  []*pdfRun
	approvals map[string]*pdfApproval
	apOrder   []*pdfApproval
}

var _ Encoder = (*PDFEncoder)(nil)

// pdfEntry is what the entries table shows of one entry.
type pdfEntry struct {
	seq                  uint64
	time                 time.Time
	kind, subject, actor string
	hash                 string
}

// pdfRun is one row of the runs summary, merged from the run's entries.
type pdfRun struct {
	id, pipeline, branch, commit, triggeredBy, status string
	start, end                                        time.Time
	firstTime                                         time.Time // of its first entry in the export
	firstSeq                                          uint64
	approval                                          *pdfApproval // the latest for this run
}

// pdfApproval is the latest known state of one approval.
type pdfApproval struct {
	id, runID, target, status  string
	technical, business, other string // "user (time)"
}

// entryData is the part of an entry's data the report reads; fields are
// optional because kinds differ.
type entryData struct {
	RunID        string     `json:"run_id"`
	ApprovalID   string     `json:"approval_id"`
	PipelineName string     `json:"pipeline_name"`
	Branch       string     `json:"branch"`
	Commit       string     `json:"commit"`
	TriggeredBy  string     `json:"triggered_by"`
	Status       string     `json:"status"`
	Target       string     `json:"deployment_target"`
	StartTime    *time.Time `json:"start_time"`
	EndTime      *time.Time `json:"end_time"`
	Technical    *decision  `json:"technical"`
	Business     *decision  `json:"business"`
	Rejection    *decision  `json:"rejection"`
	Bypass       *decision  `json:"bypass"`
}

type decision struct {
	Username string    `json:"username"`
	At       time.Time `json:"at"`
}

func (d *decision) String() string {
	if d == nil || d.Username == "" {
		return ""
	}
	if d.At.IsZero() {
		return d.Username
	}
	return d.Username + " " + d.At.UTC().Format("01-02 15:04")
}

// NewPDFEncoder returns an encoder that writes the PDF report to w on Close.
func NewPDFEncoder(w io.Writer, opt Options) (*PDFEncoder, error) {
	b, err := newBase(FormatPDF, opt)
	if err != nil {
		return nil, err
	}
	return &PDFEncoder{
		base: b, w: w,
		newCanvas: func() canvas { return newFpdfCanvas() },
		runs:      make(map[string]*pdfRun),
		approvals: make(map[string]*pdfApproval),
	}, nil
}

// Encode adds one entry to the report.
func (e *PDFEncoder) Encode(le *ica.LedgerEntry) error {
	if err := e.check(le); err != nil {
		return err
	}
	e.entries = append(e.entries, pdfEntry{
		seq: le.Seq, time: le.Time.UTC(), kind: le.Kind, subject: le.Subject, actor: le.Actor, hash: le.Hash,
	})
	e.t.add(le.Seq, le.Kind, le.Hash)
	if strings.HasPrefix(le.Kind, "run.") || strings.HasPrefix(le.Kind, ica.KindApprovalTransition) {
		e.summarise(le)
	}
	return nil
}

// summarise folds a run or approval entry into the runs summary. Data that
// does not parse is left out of the summary (the entry is still listed).
func (e *PDFEncoder) summarise(le *ica.LedgerEntry) {
	var d entryData
	if len(le.Data) == 0 || json.Unmarshal(le.Data, &d) != nil {
		return
	}
	isApproval := strings.HasPrefix(le.Kind, ica.KindApprovalTransition)
	if isApproval {
		if le.Kind == ica.KindApprovalCard || le.Kind == ica.KindApprovalReminder {
			return
		}
		id := d.ApprovalID
		if id == "" {
			id = le.Subject
		}
		a := e.approvals[id]
		if a == nil {
			a = &pdfApproval{id: id}
			e.approvals[id] = a
			e.apOrder = append(e.apOrder, a)
		}
		setIf(&a.runID, d.RunID)
		setIf(&a.target, d.Target)
		status := d.Status
		if status == "" && le.Kind != ica.KindApprovalRequested {
			status = strings.TrimPrefix(le.Kind, ica.KindApprovalTransition)
		}
		if status == "" {
			status = ica.ApprovalPending
		}
		a.status = status
		setIf(&a.technical, d.Technical.String())
		setIf(&a.business, d.Business.String())
		if d.Rejection != nil && d.Rejection.Username != "" {
			a.other = "rejected by " + d.Rejection.Username
		}
		if d.Bypass != nil && d.Bypass.Username != "" {
			a.other = "bypassed by " + d.Bypass.Username
		}
		if a.runID == "" {
			return
		}
	}
	runID := d.RunID
	if runID == "" && !isApproval {
		runID = le.Subject
	}
	if runID == "" {
		return
	}
	r := e.runs[runID]
	if r == nil {
		r = &pdfRun{id: runID, firstSeq: le.Seq, firstTime: le.Time.UTC()}
		e.runs[runID] = r
		e.runOrder = append(e.runOrder, r)
	}
	setIf(&r.pipeline, d.PipelineName)
	if isApproval {
		r.approval = e.approvals[d.ApprovalID]
		if r.approval == nil {
			r.approval = e.approvals[le.Subject]
		}
		return
	}
	setIf(&r.branch, d.Branch)
	setIf(&r.commit, d.Commit)
	setIf(&r.triggeredBy, d.TriggeredBy)
	switch le.Kind {
	case ica.KindRunStarted:
		if r.status == "" {
			r.status = ica.RunRunning
		}
		if d.StartTime != nil {
			r.start = d.StartTime.UTC()
		} else if r.start.IsZero() {
			r.start = le.Time.UTC()
		}
	case ica.KindRunFinished:
		if d.Status != "" {
			r.status = d.Status
		}
		if d.EndTime != nil {
			r.end = d.EndTime.UTC()
		} else {
			r.end = le.Time.UTC()
		}
		if d.StartTime != nil && r.start.IsZero() {
			r.start = d.StartTime.UTC()
		}
	}
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// Close lays out and writes the report and returns the manifest.
func (e *PDFEncoder) Close() (*Manifest, error) {
	if e.closed {
		return nil, fmt.Errorf("export: already closed")
	}
	e.closed = true
	if e.err != nil {
		return nil, e.err
	}
	m, err := e.manifest()
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("export: encode manifest: %w", err)
	}
	c := e.newCanvas()
	r := &pdfReport{c: c, m: m, manifestJSON: asciiJSON(raw), e: e}
	r.render()
	if err := c.Output(e.w); err != nil {
		return nil, fmt.Errorf("export: write pdf: %w", err)
	}
	return m, nil
}

// asciiJSON escapes every non-ASCII character of a JSON document, so it
// can sit in PDF metadata as plain bytes; the value it denotes is unchanged.
func asciiJSON(b []byte) string {
	var out bytes.Buffer
	for _, r := range string(b) {
		switch {
		case r < 0x80:
			out.WriteByte(byte(r))
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(&out, `\u%04x`, r)
		}
	}
	return out.String()
}

// when is the time a run is charted and sorted by: its start, or when it
// first appears in the export (a run started before the period).
func (r *pdfRun) when() time.Time {
	if !r.start.IsZero() {
		return r.start
	}
	return r.firstTime
}

// sortedRuns returns the runs by start time, then by first seq.
func (e *PDFEncoder) sortedRuns() []*pdfRun {
	runs := slices.Clone(e.runOrder)
	slices.SortStableFunc(runs, func(a, b *pdfRun) int {
		if c := a.when().Compare(b.when()); c != 0 {
			return c
		}
		switch {
		case a.firstSeq < b.firstSeq:
			return -1
		case a.firstSeq > b.firstSeq:
			return 1
		}
		return 0
	})
	return runs
}
