package export

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ica-governance/ica"
)

// jsonHeader is the first line of a JSON Lines export.
type jsonHeader struct {
	Type        string    `json:"type"` // "header"
	Format      string    `json:"format"`
	Version     int       `json:"version"`
	From        time.Time `json:"from,omitzero"`
	To          time.Time `json:"to,omitzero"`
	Filter      string    `json:"filter,omitempty"`
	GeneratedAt time.Time `json:"generated_at"`
	PublicKey   string    `json:"public_key"`
	Fingerprint string    `json:"fingerprint"`
	HeadSeq     uint64    `json:"head_seq"`
}

// jsonLine is any line of a JSON Lines export, as read back.
type jsonLine struct {
	Type string `json:"type"`
	// entry
	Seq      *uint64         `json:"seq"`
	Time     string          `json:"time"`
	Kind     string          `json:"kind"`
	Subject  string          `json:"subject"`
	Actor    string          `json:"actor"`
	Data     json.RawMessage `json:"data"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
	// manifest
	Manifest json.RawMessage `json:"manifest"`
}

const jsonFormatName = "ica-export"

// JSONEncoder writes a JSON Lines export (see the package documentation).
type JSONEncoder struct {
	*base
	w    *bufio.Writer
	line []byte
	dc   *dataCanon
}

var _ Encoder = (*JSONEncoder)(nil)

// NewJSONEncoder writes the header line and returns an encoder.
func NewJSONEncoder(w io.Writer, opt Options) (*JSONEncoder, error) {
	b, err := newBase(FormatJSON, opt)
	if err != nil {
		return nil, err
	}
	e := &JSONEncoder{base: b, w: bufio.NewWriterSize(w, 64<<10), dc: newDataCanon()}
	h, err := json.Marshal(jsonHeader{
		Type: "header", Format: jsonFormatName, Version: ManifestVersion,
		From: b.opt.From, To: b.opt.To, Filter: b.opt.Filter, GeneratedAt: b.opt.GeneratedAt,
		PublicKey: b.pubHex, Fingerprint: ica.KeyFingerprint(b.pubHex), HeadSeq: b.opt.Head.Seq,
	})
	if err != nil {
		return nil, err
	}
	e.w.Write(h)
	if err := e.w.WriteByte('\n'); err != nil {
		return nil, fmt.Errorf("export: write json header: %w", err)
	}
	return e, nil
}

// Encode writes one entry line.
func (e *JSONEncoder) Encode(le *ica.LedgerEntry) error {
	if err := e.check(le); err != nil {
		return err
	}
	data, _, err := e.dc.canon(le.Data)
	if err != nil {
		return fmt.Errorf("export: entry seq %d: %w", le.Seq, err)
	}
	l := append(e.line[:0], `{"type":"entry","seq":`...)
	l = strconv.AppendUint(l, le.Seq, 10)
	l = append(l, `,"time":"`...)
	l = le.Time.UTC().AppendFormat(l, time.RFC3339Nano)
	l = append(l, `","kind":`...)
	l = appendJSONString(l, le.Kind)
	l = append(l, `,"subject":`...)
	l = appendJSONString(l, le.Subject)
	l = append(l, `,"actor":`...)
	l = appendJSONString(l, le.Actor)
	l = append(l, `,"data":`...)
	l = append(l, data...)
	l = append(l, `,"prev_hash":`...)
	l = appendJSONString(l, le.PrevHash)
	l = append(l, `,"hash":`...)
	l = appendJSONString(l, le.Hash)
	l = append(l, "}\n"...)
	e.line = l
	if _, err := e.w.Write(l); err != nil {
		e.err = fmt.Errorf("export: write json: %w", err)
		return e.err
	}
	e.t.add(le.Seq, le.Kind, le.Hash)
	return nil
}

// Close writes the manifest line, flushes, and returns the manifest.
func (e *JSONEncoder) Close() (*Manifest, error) {
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
	raw, err := json.Marshal(struct {
		Type     string    `json:"type"`
		Manifest *Manifest `json:"manifest"`
	}{"manifest", m})
	if err != nil {
		return nil, fmt.Errorf("export: encode manifest: %w", err)
	}
	e.w.Write(raw)
	e.w.WriteByte('\n')
	if err := e.w.Flush(); err != nil {
		return nil, fmt.Errorf("export: write json: %w", err)
	}
	return m, nil
}

// appendJSONString appends s as a JSON string; plain ASCII takes a fast path.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
