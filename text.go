package ica

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Text that misleads a reader: characters that are invisible or reorder
// what is around them (bidi overrides and isolates, zero-width characters,
// line and paragraph separators, the byte order mark, C0 and C1 controls)
// can make one pipeline name look like another on a card. Identifiers
// refuse them (ValidText); free text keeps them as sent and is shown with
// them escaped (ShowText). JSON input is checked for what encoding/json
// would silently rewrite (lone surrogates, invalid UTF-8) before it is
// decoded (CheckJSONText).

// IsHiddenRune reports whether r is a control (Cc), format (Cf), line
// separator (Zl) or paragraph separator (Zp) character: U+202E, U+2066,
// U+200B, U+2028, U+FEFF, U+0007 and the like.
func IsHiddenRune(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}

// RuneName is how a hidden character is shown: "U+202E".
func RuneName(r rune) string { return fmt.Sprintf("U+%04X", r) }

// ShowText returns s with every hidden character (IsHiddenRune) except the
// line feed replaced by its visible name in angle brackets ("<U+202E>"),
// and every byte that is not UTF-8 by "<0xNN>". Cards and the dashboard
// show free text through it, so what a reader sees is what was sent; s
// itself (and the ledger) keeps the characters. It does no I/O.
func ShowText(s string) string {
	if !needsShowing(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "<0x%02X>", s[i])
		case r != '\n' && IsHiddenRune(r):
			b.WriteString("<" + RuneName(r) + ">")
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func needsShowing(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c != '\n' && (c < 0x20 || c == 0x7f) {
				return true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || IsHiddenRune(r) {
			return true
		}
		i += n
	}
	return false
}

// ValidText checks an identifier-like text field (a pipeline name, a
// branch): required when asked, at most max bytes, UTF-8, and free of
// hidden characters. The error names the field and the first hidden
// character.
func ValidText(field, v string, max int, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return FieldErrorf(EINVALID, field, "%s is required", field)
	}
	if len(v) > max {
		return FieldErrorf(EINVALID, field, "%s is longer than %d bytes", field, max)
	}
	if !utf8.ValidString(v) {
		return FieldErrorf(EINVALID, field, "%s is not valid UTF-8", field)
	}
	if i := strings.IndexFunc(v, IsHiddenRune); i >= 0 {
		r, _ := utf8.DecodeRuneInString(v[i:])
		kind := "a format character"
		if unicode.Is(unicode.Cc, r) {
			kind = "a control character"
		}
		return FieldErrorf(EINVALID, field, "%s contains %s (%s at byte %d), which can disguise what is shown; remove it", field, kind, RuneName(r), i)
	}
	return nil
}

// CheckJSONText finds, in raw JSON, string content that encoding/json would
// not decode to exactly what was sent: a \u escape of a lone UTF-16
// surrogate (\ud800 not followed by a low surrogate, or a low surrogate on
// its own) and bytes that are not UTF-8. Both are silently replaced by
// U+FFFD when decoding, so the ledger would not record what was sent. The
// error names the field by its path ("event_data.note", "tags[2]"). Syntax
// errors are left to the decoder: CheckJSONText stops at the first byte it
// does not understand and reports nothing.
func CheckJSONText(raw []byte) error {
	sc := jsonScanner{buf: raw}
	return sc.value("")
}

type jsonScanner struct {
	buf   []byte
	pos   int
	depth int
}

// errStop ends a scan without an error: the decoder reports syntax errors.
var errStop = &Error{Code: EINVALID, Message: "stop"}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *jsonScanner) value(path string) error {
	err := s.scanValue(path)
	if err == errStop {
		return nil
	}
	return err
}

func (s *jsonScanner) scanValue(path string) error {
	s.skipSpace()
	if s.pos >= len(s.buf) {
		return errStop
	}
	switch s.buf[s.pos] {
	case '{':
		return s.object(path)
	case '[':
		return s.array(path)
	case '"':
		_, err := s.str(path, false)
		return err
	default:
		// Numbers, true, false, null: ASCII up to the next delimiter.
		for s.pos < len(s.buf) {
			switch s.buf[s.pos] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return nil
			}
			s.pos++
		}
		return nil
	}
}

const maxJSONDepth = 10000

func (s *jsonScanner) object(path string) error {
	s.pos++ // {
	if s.depth++; s.depth > maxJSONDepth {
		return errStop
	}
	defer func() { s.depth-- }()
	for {
		s.skipSpace()
		if s.pos >= len(s.buf) {
			return errStop
		}
		if s.buf[s.pos] == '}' {
			s.pos++
			return nil
		}
		if s.buf[s.pos] != '"' {
			return errStop
		}
		key, err := s.str(path, true)
		if err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.buf) || s.buf[s.pos] != ':' {
			return errStop
		}
		s.pos++
		child := key
		if path != "" {
			child = path + "." + key
		}
		if err := s.scanValue(child); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.buf) {
			return errStop
		}
		switch s.buf[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return errStop
		}
	}
}

func (s *jsonScanner) array(path string) error {
	s.pos++ // [
	if s.depth++; s.depth > maxJSONDepth {
		return errStop
	}
	defer func() { s.depth-- }()
	for i := 0; ; i++ {
		s.skipSpace()
		if s.pos >= len(s.buf) {
			return errStop
		}
		if s.buf[s.pos] == ']' {
			s.pos++
			return nil
		}
		if err := s.scanValue(path + "[" + strconv.Itoa(i) + "]"); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.buf) {
			return errStop
		}
		switch s.buf[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return errStop
		}
	}
}

// str reads a string starting at its opening quote. For a key it returns
// the decoded key (for error paths); a problem in a key is reported on the
// enclosing object.
func (s *jsonScanner) str(path string, isKey bool) (string, error) {
	s.pos++ // "
	var key strings.Builder
	bad := func(what string) error {
		field := path
		where := "the value of " + field
		if isKey {
			where = "a key of " + field
		}
		if field == "" {
			field = "body"
			where = "the request body"
			if !isKey {
				where = "a top-level string"
			}
		}
		return FieldErrorf(EINVALID, field, "%s contains %s, which would not be recorded exactly as sent", where, what)
	}
	for s.pos < len(s.buf) {
		c := s.buf[s.pos]
		switch {
		case c == '"':
			s.pos++
			return key.String(), nil
		case c == '\\':
			if s.pos+1 >= len(s.buf) {
				return "", errStop
			}
			e := s.buf[s.pos+1]
			if e != 'u' {
				if isKey {
					key.WriteByte(unescape(e))
				}
				s.pos += 2
				continue
			}
			r, ok := hex4(s.buf, s.pos+2)
			if !ok {
				return "", errStop
			}
			s.pos += 6
			switch {
			case utf16.IsSurrogate(r) && r < 0xDC00:
				// A high surrogate must be followed by \u and a low one.
				lo, ok := rune(0), false
				if s.pos+1 < len(s.buf) && s.buf[s.pos] == '\\' && s.buf[s.pos+1] == 'u' {
					lo, ok = hex4(s.buf, s.pos+2)
				}
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return "", bad(fmt.Sprintf("a lone surrogate (\\u%04x without its low half)", r))
				}
				s.pos += 6
				r = utf16.DecodeRune(r, lo)
			case utf16.IsSurrogate(r):
				return "", bad(fmt.Sprintf("a lone surrogate (\\u%04x without its high half)", r))
			}
			if isKey {
				key.WriteRune(r)
			}
		case c < utf8.RuneSelf:
			if isKey {
				key.WriteByte(c)
			}
			s.pos++
		default:
			r, n := utf8.DecodeRune(s.buf[s.pos:])
			if r == utf8.RuneError && n == 1 {
				return "", bad(fmt.Sprintf("a byte that is not UTF-8 (0x%02X)", c))
			}
			if isKey {
				key.WriteRune(r)
			}
			s.pos += n
		}
	}
	return "", errStop
}

func unescape(e byte) byte {
	switch e {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	case 'r':
		return '\r'
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	}
	return e
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, false
		}
	}
	return r, true
}
