package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf16"

	"github.com/ica-governance/ica"
)

// pdfKeywordsPrefix starts the Keywords metadata of a PDF export.
const pdfKeywordsPrefix = "ica-manifest "

// maxPDFSize bounds how much of a PDF verification reads.
const maxPDFSize = 1 << 30

// verifyPDF checks the manifest embedded in a PDF export's metadata. The
// pages are not read back (see the package documentation).
func (v *verifier) verifyPDF(r io.Reader) error {
	doc, err := io.ReadAll(io.LimitReader(r, maxPDFSize+1))
	if err != nil {
		return err
	}
	v.rep.RecordsVerified = false
	if len(doc) > maxPDFSize {
		v.fail(0, fmt.Sprintf("PDF is larger than %d bytes", maxPDFSize))
		return nil
	}
	truncated := !bytes.Contains(doc[max(0, len(doc)-1024):], []byte("%%EOF"))
	raw, problem := pdfManifest(doc)
	switch {
	case problem != "" && truncated:
		v.fail(0, "file is truncated: the PDF has no end-of-file marker")
	case problem != "":
		v.fail(0, problem)
	default:
		v.finishManifestOnly(raw)
		if truncated {
			v.fail(0, "file is truncated: the PDF has no end-of-file marker")
		}
	}
	return nil
}

// finishManifestOnly fills the report from a manifest without records.
func (v *verifier) finishManifestOnly(raw []byte) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		v.fail(0, "manifest is not valid JSON: "+err.Error())
		return
	}
	rep := v.rep
	rep.Manifest = &m
	rep.Fingerprint = ica.KeyFingerprint(m.PublicKey)
	rep.Records, rep.FirstSeq, rep.LastSeq = m.Count, m.FirstSeq, m.LastSeq
	if _, err := parseSeqs(m.Seqs); err != nil {
		v.fail(0, "manifest seq list is malformed: "+err.Error())
		return
	}
	if msg := v.checkManifest(&m, raw); msg != "" {
		v.fail(0, msg)
		return
	}
	if m.LastSeq > m.Head.Seq {
		v.fail(0, fmt.Sprintf("manifest's last seq %d is after its head checkpoint (seq %d)", m.LastSeq, m.Head.Seq))
		return
	}
	rep.Warnings = append(rep.Warnings,
		"PDF: only the embedded manifest was verified (signature, key, head checkpoint); the records drawn on the pages "+
			"cannot be checked offline. Verify the CSV or JSON export of the same range: its manifest digest must be "+m.Digest)
}

// pdfManifest finds the manifest JSON in the document's Keywords entry.
func pdfManifest(doc []byte) ([]byte, string) {
	i := bytes.LastIndex(doc, []byte("/Keywords ("))
	if i < 0 {
		return nil, "PDF has no ICA manifest in its metadata (Keywords): not an ICA export, or the metadata was removed"
	}
	s, ok := pdfLiteral(doc[i+len("/Keywords ("):])
	if !ok {
		return nil, "PDF metadata is malformed: the Keywords string is not closed"
	}
	if len(s) >= 2 && s[0] == 0xfe && s[1] == 0xff {
		s = utf16BE(s[2:])
	}
	rest, found := bytes.CutPrefix(s, []byte(pdfKeywordsPrefix))
	if !found {
		return nil, "PDF Keywords do not hold an ICA manifest: not an ICA export, or the metadata was changed"
	}
	return rest, ""
}

// pdfLiteral decodes a PDF literal string whose opening parenthesis has been
// consumed (PDF 32000-1 §7.3.4.2).
func pdfLiteral(b []byte) ([]byte, bool) {
	var out []byte
	depth := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch c {
		case '(':
			depth++
		case ')':
			if depth == 0 {
				return out, true
			}
			depth--
		case '\\':
			i++
			if i == len(b) {
				return nil, false
			}
			switch e := b[i]; e {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case '\r', '\n':
				if e == '\r' && i+1 < len(b) && b[i+1] == '\n' {
					i++
				}
				continue
			default:
				if e >= '0' && e <= '7' {
					n := 0
					for k := 0; k < 3 && i < len(b) && b[i] >= '0' && b[i] <= '7'; k++ {
						n = n*8 + int(b[i]-'0')
						i++
					}
					i--
					c = byte(n)
				} else {
					c = e
				}
			}
		}
		out = append(out, c)
	}
	return nil, false
}

func utf16BE(b []byte) []byte {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u = append(u, uint16(b[i])<<8|uint16(b[i+1]))
	}
	return []byte(string(utf16.Decode(u)))
}
