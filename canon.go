package ica

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Canonicalizer turns JSON into its canonical form (sorted keys, no
// insignificant space, no HTML escaping, numbers as written) in one pass
// over the bytes, without decoding into maps: every ledger write and every
// exported or verified entry goes through it. It refuses what it could not
// keep exactly: invalid JSON, data after the value, repeated object keys
// and invalid UTF-8 (each would let two different inputs hash alike).
// FuzzCanonicalizer checks it against encoding/json. Results are valid until
// the next call; a Canonicalizer is not safe for concurrent use.
type Canonicalizer struct {
	out   []byte
	pairs [][]canonPair // per nesting depth, reused
	sbuf  bytes.Buffer
	senc  *json.Encoder
	hbuf  []byte // the bytes HashEntry hashes
}

type canonPair struct {
	key        []byte // in the input, or decoded when it had escapes
	start, end int    // canonical value in out
}

// NewCanonicalizer returns a Canonicalizer with empty buffers.
func NewCanonicalizer() *Canonicalizer {
	return &Canonicalizer{}
}

// Canonical returns the canonical form of raw. When raw is an object and
// top is set, top is called with each of its keys and canonical values, in
// key order.
func (c *Canonicalizer) Canonical(raw []byte, top func(key, value []byte)) ([]byte, error) {
	c.out = c.out[:0]
	p := &jparser{b: raw}
	if err := c.value(p, 0, top); err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, fmt.Errorf("canonical json: data after the value")
	}
	return c.out, nil
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

const maxCanonDepth = 10000 // as encoding/json

func (c *Canonicalizer) value(p *jparser, depth int, top func(key, value []byte)) error {
	if depth > maxCanonDepth {
		return fmt.Errorf("canonical json: nested too deeply")
	}
	p.ws()
	if p.i >= len(p.b) {
		return fmt.Errorf("canonical json: unexpected end")
	}
	switch ch := p.b[p.i]; {
	case ch == '{':
		return c.object(p, depth, top)
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
				return fmt.Errorf("canonical json: unexpected end")
			}
			if p.b[p.i] == ']' {
				p.i++
				c.out = append(c.out, ']')
				return nil
			}
			if p.b[p.i] != ',' {
				return fmt.Errorf("canonical json: expected , or ]")
			}
			p.i++
		}
	case ch == '"':
		s, err := c.str(p)
		if err != nil {
			return err
		}
		c.out = c.AppendString(c.out, s)
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
	return fmt.Errorf("canonical json: unexpected %q", p.b[p.i])
}

func (c *Canonicalizer) literal(p *jparser, lit string) error {
	if !bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		return fmt.Errorf("canonical json: bad literal")
	}
	p.i += len(lit)
	c.out = append(c.out, lit...)
	return nil
}

// number copies a number as written: encoding/json keeps json.Number text.
func (c *Canonicalizer) number(p *jparser) error {
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
		return fmt.Errorf("canonical json: bad number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return fmt.Errorf("canonical json: bad number")
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
			return fmt.Errorf("canonical json: bad number")
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
func (c *Canonicalizer) str(p *jparser) ([]byte, error) {
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
				return nil, fmt.Errorf("canonical json: invalid UTF-8")
			}
			return raw, nil
		case ch == '\\':
			// Escapes are rare: let encoding/json decode this string.
			end, err := stringEnd(b, start)
			if err != nil {
				return nil, err
			}
			if !utf8.Valid(b[start:end]) {
				return nil, fmt.Errorf("canonical json: invalid UTF-8")
			}
			var s string
			if err := json.Unmarshal(b[start:end], &s); err != nil {
				return nil, fmt.Errorf("canonical json: %v", err)
			}
			p.i = end
			return []byte(s), nil
		case ch < 0x20:
			return nil, fmt.Errorf("canonical json: control character in string")
		}
		i++
	}
	return nil, fmt.Errorf("canonical json: unterminated string")
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
	return 0, fmt.Errorf("canonical json: unterminated string")
}

// AppendString appends s as a JSON string, encoded as encoding/json does without HTML escaping.
func (c *Canonicalizer) AppendString(dst []byte, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < 0x20 || ch == '"' || ch == '\\' || (ch == 0xe2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9)) {
			if c.senc == nil {
				c.senc = json.NewEncoder(&c.sbuf)
				c.senc.SetEscapeHTML(false)
			}
			c.sbuf.Reset()
			c.senc.Encode(string(s))
			return append(dst, bytes.TrimRight(c.sbuf.Bytes(), "\n")...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

func (c *Canonicalizer) object(p *jparser, depth int, top func(key, value []byte)) error {
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
			return fmt.Errorf("canonical json: expected a key")
		}
		key, err := c.str(p)
		if err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return fmt.Errorf("canonical json: expected :")
		}
		p.i++
		start := len(c.out)
		if err := c.value(p, depth+1, nil); err != nil {
			return err
		}
		pairs = append(pairs, canonPair{key: key, start: start, end: len(c.out)})
		p.ws()
		if p.i >= len(p.b) {
			return fmt.Errorf("canonical json: unexpected end")
		}
		if p.b[p.i] == '}' {
			p.i++
			break
		}
		if p.b[p.i] != ',' {
			return fmt.Errorf("canonical json: expected , or }")
		}
		p.i++
	}
	// Values were written in input order after base; append the object
	// in key order after them, then move it down over them.
	byKey := func(a, b canonPair) int { return bytes.Compare(a.key, b.key) }
	if !slices.IsSortedFunc(pairs, byKey) {
		slices.SortStableFunc(pairs, byKey)
	}
	mid := len(c.out)
	c.out = append(c.out, '{')
	n := 0
	for i, pr := range pairs {
		if i+1 < len(pairs) && bytes.Equal(pairs[i+1].key, pr.key) {
			// ica.CanonicalJSON refuses repeated keys too.
			return fmt.Errorf("canonical json: key %q appears twice in one object", pr.key)
		}
		if n > 0 {
			c.out = append(c.out, ',')
		}
		n++
		c.out = c.AppendString(c.out, pr.key)
		c.out = append(c.out, ':')
		c.out = append(c.out, c.out[pr.start:pr.end]...)
		if top != nil {
			top(pr.key, c.out[pr.start:pr.end])
		}
	}
	c.out = append(c.out, '}')
	c.out = append(c.out[:base], c.out[mid:]...)
	c.pairs[depth] = pairs
	return nil
}

// HashEntry returns the hash e should carry given its PrevHash, with data
// the canonical form of e.Data ("null" for none): SHA-256 of prev_hash ‖
// {"actor","data","kind","seq","subject","time"} written out in key order,
// as the canonical form of that object.
func (c *Canonicalizer) HashEntry(e *LedgerEntry, data []byte) string {
	b := append(c.hbuf[:0], e.PrevHash...)
	b = append(b, `{"actor":`...)
	b = c.AppendString(b, []byte(e.Actor))
	b = append(b, `,"data":`...)
	b = append(b, data...)
	b = append(b, `,"kind":`...)
	b = c.AppendString(b, []byte(e.Kind))
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"subject":`...)
	b = c.AppendString(b, []byte(e.Subject))
	b = append(b, `,"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	c.hbuf = b
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
