package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ica-governance/ica"
)

// csvColumns is the CSV header. The first eight are the ledger columns
// verification uses; the rest are derived from data for readers.
var csvColumns = []string{"seq", "time", "kind", "subject", "actor", "prev_hash", "hash", "data", "run_id", "pipeline", "status"}

// ledgerColumns are the columns a CSV export must have to verify.
var ledgerColumns = csvColumns[:8]

const (
	csvManifestPrefix = "# ica-manifest "
	csvSummaryPrefix  = "# ica-export "
)

// CSVEncoder writes a CSV export (see the package documentation).
type CSVEncoder struct {
	*base
	w    *bufio.Writer
	line []byte
	dc   *dataCanon
}

var _ Encoder = (*CSVEncoder)(nil)

// NewCSVEncoder writes the header row and returns an encoder.
func NewCSVEncoder(w io.Writer, opt Options) (*CSVEncoder, error) {
	b, err := newBase(FormatCSV, opt)
	if err != nil {
		return nil, err
	}
	e := &CSVEncoder{base: b, w: bufio.NewWriterSize(w, 64<<10), dc: newDataCanon()}
	for i, c := range csvColumns {
		if i > 0 {
			e.line = append(e.line, ',')
		}
		e.line = append(e.line, c...)
	}
	e.line = append(e.line, '\n')
	if _, err := e.w.Write(e.line); err != nil {
		return nil, fmt.Errorf("export: write csv header: %w", err)
	}
	return e, nil
}

// Encode writes one record.
func (e *CSVEncoder) Encode(le *ica.LedgerEntry) error {
	if err := e.check(le); err != nil {
		return err
	}
	data, d, err := e.dc.canon(le.Data)
	if err != nil {
		return fmt.Errorf("export: entry seq %d: %w", le.Seq, err)
	}
	l := strconv.AppendUint(e.line[:0], le.Seq, 10)
	l = append(l, ',')
	l = le.Time.UTC().AppendFormat(l, time.RFC3339Nano)
	l = append(l, ',')
	l = appendCSVField(l, le.Kind)
	l = append(l, ',')
	l = appendCSVField(l, le.Subject)
	l = append(l, ',')
	l = appendCSVField(l, le.Actor)
	l = append(l, ',')
	l = appendCSVField(l, le.PrevHash)
	l = append(l, ',')
	l = appendCSVField(l, le.Hash)
	l = append(l, ',')
	l = appendCSVField(l, data)
	l = append(l, ',')
	l = appendCSVField(l, safeCell(d.RunID))
	l = append(l, ',')
	l = appendCSVField(l, safeCell(d.Pipeline))
	l = append(l, ',')
	l = appendCSVField(l, safeCell(d.Status))
	l = append(l, '\n')
	e.line = l
	if _, err := e.w.Write(l); err != nil {
		e.err = fmt.Errorf("export: write csv: %w", err)
		return e.err
	}
	e.t.add(le.Seq, le.Kind, le.Hash)
	return nil
}

// Close writes the manifest trailer, flushes, and returns the manifest.
func (e *CSVEncoder) Close() (*Manifest, error) {
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
	fmt.Fprintf(e.w, "%s%s\n", csvSummaryPrefix, summaryLine(m))
	e.w.WriteString(csvManifestPrefix)
	e.w.Write(raw)
	e.w.WriteByte('\n')
	if err := e.w.Flush(); err != nil {
		return nil, fmt.Errorf("export: write csv: %w", err)
	}
	return m, nil
}

// summaryLine is a one-line description of a manifest for people.
func summaryLine(m *Manifest) string {
	s := fmt.Sprintf("v%d: %d records", m.Version, m.Count)
	if m.Count > 0 {
		s += fmt.Sprintf(", seq %d..%d", m.FirstSeq, m.LastSeq)
	}
	return s + fmt.Sprintf(", head seq %d, signed by key %s", m.Head.Seq, m.Fingerprint)
}

// appendCSVField appends s, quoted when RFC 4180 needs it.
func appendCSVField[S string | []byte](dst []byte, s S) []byte {
	quote := len(s) > 0 && (s[0] == ' ' || s[len(s)-1] == ' ')
	for i := 0; i < len(s) && !quote; i++ {
		switch s[i] {
		case ',', '"', '\n', '\r':
			quote = true
		}
	}
	if !quote {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

// safeCell keeps spreadsheets from evaluating a derived value as a formula.
func safeCell(s string) string {
	if s != "" {
		switch s[0] {
		case '=', '+', '-', '@', '\t', '\r':
			return "'" + s
		}
	}
	return s
}

// csvReader reads the records and trailer of a CSV export. It is its own
// RFC 4180 parser because the trailer's '#' lines must be read, not skipped.
type csvReader struct {
	r      *bufio.Reader
	line   int // line number of the record being read (1-based)
	next   int // line number of the next byte
	fields [][]byte
	buf    []byte
	out    []byte
	ends   []int
	// partial reports that the input ended inside a record or line.
	partial bool
	// ioErr is set when reading failed for a reason other than the content.
	ioErr error
}

// maxCSVLine bounds one record or trailer line (the manifest range list of
// a large sparse export is the longest line we write).
const maxCSVLine = 256 << 20

func newCSVReader(r io.Reader) *csvReader {
	return &csvReader{r: bufio.NewReaderSize(r, 64<<10), next: 1}
}

// peekTrailer reports whether the next line is a '#' trailer line.
func (c *csvReader) peekTrailer() (bool, error) {
	b, err := c.r.Peek(1)
	if err != nil {
		if err != io.EOF {
			c.ioErr = err
		}
		return false, err
	}
	return b[0] == '#', nil
}

// readLine reads one raw line without its line ending.
func (c *csvReader) readLine() ([]byte, error) {
	c.line = c.next
	c.buf = c.buf[:0]
	for {
		chunk, err := c.r.ReadSlice('\n')
		c.buf = append(c.buf, chunk...)
		if len(c.buf) > maxCSVLine {
			return nil, fmt.Errorf("line %d is longer than %d bytes", c.line, maxCSVLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if len(c.buf) == 0 {
				return nil, io.EOF
			}
			c.partial = true
			return c.buf, nil
		}
		if err != nil {
			c.ioErr = err
			return nil, err
		}
		c.next++
		return trimEOL(c.buf), nil
	}
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// readRecord reads one record; fields are valid until the next call. A
// quoted field may span lines.
func (c *csvReader) readRecord() ([][]byte, error) {
	line, err := c.readLine()
	if err != nil {
		return nil, err
	}
	c.ends = c.ends[:0]
	out := c.out[:0]
	defer func() { c.out = out[:0] }()
	pos := 0
	for {
		// start of a field at line[pos:]
		if pos < len(line) && line[pos] == '"' {
			pos++
			for {
				i := bytes.IndexByte(line[pos:], '"')
				if i < 0 {
					// the quoted field continues on the next line
					out = append(out, line[pos:]...)
					if c.partial {
						return nil, fmt.Errorf("line %d: quoted field is not closed", c.line)
					}
					out = append(out, '\n')
					start := c.line
					next, err := c.readLine()
					c.line = start
					if err == io.EOF {
						c.partial = true
						return nil, fmt.Errorf("line %d: quoted field is not closed", c.line)
					}
					if err != nil {
						return nil, err
					}
					if len(out) > maxCSVLine {
						return nil, fmt.Errorf("line %d: record is longer than %d bytes", c.line, maxCSVLine)
					}
					line, pos = next, 0
					continue
				}
				out = append(out, line[pos:pos+i]...)
				pos += i + 1
				if pos < len(line) && line[pos] == '"' {
					out = append(out, '"')
					pos++
					continue
				}
				break
			}
			c.ends = append(c.ends, len(out))
			if pos == len(line) {
				break
			}
			if line[pos] != ',' {
				return nil, fmt.Errorf("line %d: unexpected %q after a quoted field", c.line, line[pos])
			}
			pos++
			continue
		}
		i := bytes.IndexByte(line[pos:], ',')
		if i < 0 {
			if bytes.IndexByte(line[pos:], '"') >= 0 {
				return nil, fmt.Errorf("line %d: bare quote in an unquoted field", c.line)
			}
			out = append(out, line[pos:]...)
			c.ends = append(c.ends, len(out))
			break
		}
		if bytes.IndexByte(line[pos:pos+i], '"') >= 0 {
			return nil, fmt.Errorf("line %d: bare quote in an unquoted field", c.line)
		}
		out = append(out, line[pos:pos+i]...)
		c.ends = append(c.ends, len(out))
		pos += i + 1
	}
	c.fields = c.fields[:0]
	start := 0
	for _, end := range c.ends {
		c.fields = append(c.fields, out[start:end:end])
		start = end
	}
	return c.fields, nil
}
