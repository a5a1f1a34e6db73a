package export

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ica-governance/ica"
)

// dataCanon turns an entry's data into canonical JSON (byte-for-byte what
// ica.CanonicalJSON returns) and pulls out the few fields people want to
// read next to it. It works on the bytes, without decoding into maps,
// because it runs once per exported entry; FuzzCanonical checks it against
// ica.CanonicalJSON. Results are valid until the next call.
type dataCanon struct {
	out   []byte
	pairs [][]pair // per nesting depth, reused
	sbuf  bytes.Buffer
	senc  *json.Encoder
}

type pair struct {
	key        []byte // in the input, or decoded when it had escapes
	start, end int    // canonical value in out
}

// derived are the readable fields shown beside a record.
type derived struct {
	RunID, Pipeline, Status string
}

var errBadJSON = errors.New("data is not valid JSON")

func newDataCanon() *dataCanon {
	c := &dataCanon{}
	c.senc = json.NewEncoder(&c.sbuf)
	c.senc.SetEscapeHTML(false)
	return c
}

// canon returns the canonical form of raw ("null" when empty) and the
// derived fields when raw is an object.
func (c *dataCanon) canon(raw []byte) ([]byte, derived, error) {
	var d derived
	if len(raw) == 0 {
		return []byte("null"), d, nil
	}
	c.out = c.out[:0]
	p := &jparser{b: raw}
	if err := c.value(p, 0, &d); err != nil {
		return nil, derived{}, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, derived{}, fmt.Errorf("%w: data after the value", errBadJSON)
	}
	return c.out, d, nil
}

type jparser struct {
	b []byte
	i int
}

func (p *jparser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

const maxDepth = 10000 // as encoding/json

func (c *dataCanon) value(p *jparser, depth int, d *derived) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested too deeply", errBadJSON)
	}
	p.ws()
	if p.i >= len(p.b) {
		return fmt.Errorf("%w: unexpected end", errBadJSON)
	}
	switch ch := p.b[p.i]; {
	case ch == '{':
		return c.object(p, depth, d)
	case ch == '[':
		p.i++
		c.out = append(c.out, '[')
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			c.out = append(c.out, ']')
			return nil
		}
		for n := 0; ; n++ {
			if n > 0 {
				c.out = append(c.out, ',')
			}
			if err := c.value(p, depth+1, nil); err != nil {
				return err
			}
			p.ws()
			if p.i >= len(p.b) {
				return fmt.Errorf("%w: unexpected end", errBadJSON)
			}
			if p.b[p.i] == ']' {
				p.i++
				c.out = append(c.out, ']')
				return nil
			}
			if p.b[p.i] != ',' {
				return fmt.Errorf("%w: expected , or ]", errBadJSON)
			}
			p.i++
		}
	case ch == '"':
		s, err := c.str(p)
		if err != nil {
			return err
		}
		c.out = c.appendString(c.out, s)
		return nil
	case ch == 't':
		return c.literal(p, "true")
	case ch == 'f':
		return c.literal(p, "false")
	case ch == 'n':
		return c.literal(p, "null")
	case ch == '-' || (ch >= '0' && ch <= '9'):
		return c.number(p)
	}
	return fmt.Errorf("%w: unexpected %q", errBadJSON, p.b[p.i])
}

func (c *dataCanon) literal(p *jparser, lit string) error {
	if !bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		return fmt.Errorf("%w: bad literal", errBadJSON)
	}
	p.i += len(lit)
	c.out = append(c.out, lit...)
	return nil
}

// number copies a number as written: encoding/json keeps json.Number text.
func (c *dataCanon) number(p *jparser) error {
	start := p.i
	b := p.b
	i := p.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return fmt.Errorf("%w: bad number", errBadJSON)
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return fmt.Errorf("%w: bad number", errBadJSON)
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return fmt.Errorf("%w: bad number", errBadJSON)
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	p.i = i
	c.out = append(c.out, b[start:i]...)
	return nil
}

// str reads a JSON string and returns its value; plain strings are not
// copied.
func (c *dataCanon) str(p *jparser) ([]byte, error) {
	start := p.i
	i := p.i + 1
	b := p.b
	for i < len(b) {
		switch ch := b[i]; {
		case ch == '"':
			p.i = i + 1
			raw := b[start+1 : i]
			if !utf8.Valid(raw) {
				// ica.CanonicalJSON refuses it too: two inputs must not hash alike.
				return nil, fmt.Errorf("%w: invalid UTF-8", errBadJSON)
			}
			return raw, nil
		case ch == '\\':
			// Escapes are rare: let encoding/json decode this string.
			end, err := stringEnd(b, start)
			if err != nil {
				return nil, err
			}
			var s string
			if err := json.Unmarshal(b[start:end], &s); err != nil {
				return nil, fmt.Errorf("%w: %v", errBadJSON, err)
			}
			p.i = end
			return []byte(s), nil
		case ch < 0x20:
			return nil, fmt.Errorf("%w: control character in string", errBadJSON)
		}
		i++
	}
	return nil, fmt.Errorf("%w: unterminated string", errBadJSON)
}

// stringEnd returns the index after the closing quote of the string at start.
func stringEnd(b []byte, start int) (int, error) {
	for i := start + 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("%w: unterminated string", errBadJSON)
}

// appendString encodes s as encoding/json does without HTML escaping.
func (c *dataCanon) appendString(dst []byte, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < 0x20 || ch == '"' || ch == '\\' || (ch == 0xe2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9)) {
			c.sbuf.Reset()
			c.senc.Encode(string(s))
			return append(dst, bytes.TrimRight(c.sbuf.Bytes(), "\n")...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

func (c *dataCanon) object(p *jparser, depth int, d *derived) error {
	p.i++ // {
	for len(c.pairs) <= depth {
		c.pairs = append(c.pairs, nil)
	}
	pairs := c.pairs[depth][:0]
	base := len(c.out)
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		c.out = append(c.out, "{}"...)
		return nil
	}
	for {
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return fmt.Errorf("%w: expected a key", errBadJSON)
		}
		key, err := c.str(p)
		if err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return fmt.Errorf("%w: expected :", errBadJSON)
		}
		p.i++
		start := len(c.out)
		if err := c.value(p, depth+1, nil); err != nil {
			return err
		}
		pairs = append(pairs, pair{key: key, start: start, end: len(c.out)})
		p.ws()
		if p.i >= len(p.b) {
			return fmt.Errorf("%w: unexpected end", errBadJSON)
		}
		if p.b[p.i] == '}' {
			p.i++
			break
		}
		if p.b[p.i] != ',' {
			return fmt.Errorf("%w: expected , or }", errBadJSON)
		}
		p.i++
	}
	// Values were written in input order after base; append the object
	// in key order after them, then move it down over them.
	byKey := func(a, b pair) int { return bytes.Compare(a.key, b.key) }
	if !slices.IsSortedFunc(pairs, byKey) {
		slices.SortStableFunc(pairs, byKey)
	}
	mid := len(c.out)
	c.out = append(c.out, '{')
	n := 0
	for i, pr := range pairs {
		if i+1 < len(pairs) && bytes.Equal(pairs[i+1].key, pr.key) {
			// ica.CanonicalJSON refuses repeated keys too.
			return fmt.Errorf("%w: key %q appears twice in one object", errBadJSON, pr.key)
		}
		if n > 0 {
			c.out = append(c.out, ',')
		}
		n++
		c.out = c.appendString(c.out, pr.key)
		c.out = append(c.out, ':')
		c.out = append(c.out, c.out[pr.start:pr.end]...)
		if d != nil {
			v := c.out[pr.start:pr.end]
			switch string(pr.key) {
			case "run_id":
				d.RunID = plainString(v)
			case "pipeline_name":
				d.Pipeline = plainString(v)
			case "status":
				d.Status = plainString(v)
			}
		}
	}
	c.out = append(c.out, '}')
	c.out = append(c.out[:base], c.out[mid:]...)
	c.pairs[depth] = pairs
	return nil
}

// plainString returns the value of a canonical JSON string without escapes
// ("" for anything else: the derived columns are a convenience).
func plainString(v []byte) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	return ""
}

// hasher recomputes ledger entry hashes as ica.LedgerEntry.ComputeHash
// does, reusing buffers; TestHasher_MatchesComputeHash keeps them equal.
type hasher struct {
	dc  *dataCanon
	buf []byte
}

func newHasher() *hasher { return &hasher{dc: newDataCanon()} }

// hash returns the hex hash e should carry.
func (h *hasher) hash(e *ica.LedgerEntry) (string, error) {
	data, _, err := h.dc.canon(e.Data)
	if err != nil {
		return "", err
	}
	b := append(h.buf[:0], e.PrevHash...)
	b = append(b, `{"actor":`...)
	b = h.dc.appendString(b, []byte(e.Actor))
	b = append(b, `,"data":`...)
	b = append(b, data...)
	b = append(b, `,"kind":`...)
	b = h.dc.appendString(b, []byte(e.Kind))
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"subject":`...)
	b = h.dc.appendString(b, []byte(e.Subject))
	b = append(b, `,"time":`...)
	b = append(b, '"')
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = append(b, '}')
	h.buf = b
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
