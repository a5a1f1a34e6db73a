package slashcmds

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/export"
)

// Limits on the command text, which comes from any channel member.
const (
	MaxTextBytes = 4096
	MaxArgs      = 32
)

// Arg is one word of the command text: key=value, or a positional value
// (Key empty).
type Arg struct {
	Key   string
	Value string
}

// String writes the argument back in a form ParseArgs reads as the same Arg.
func (a Arg) String() string {
	if a.Key == "" {
		return quote(a.Value, true)
	}
	return a.Key + "=" + quote(a.Value, false)
}

var keyPattern = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// ParseArgs splits the text of a slash command into words. Words are
// separated by white space; double quotes group words ("payments api") and
// a backslash inside quotes escapes the next character. A word whose
// unquoted part before the first '=' is a name is key=value (keys are
// lower-cased and may appear once). Typographic quotes (“ ”) count as
// double quotes, since some clients substitute them.
func ParseArgs(text string) ([]Arg, error) {
	if len(text) > MaxTextBytes {
		return nil, ica.FieldErrorf(ica.EINVALID, "text", "the command is longer than %d bytes", MaxTextBytes)
	}
	if !utf8.ValidString(text) {
		return nil, ica.FieldErrorf(ica.EINVALID, "text", "the command is not valid UTF-8")
	}
	text = strings.NewReplacer("“", `"`, "”", `"`).Replace(text)

	type qrune struct {
		r      rune
		quoted bool
	}
	var (
		args   []Arg
		word   []qrune
		inWord bool
		seen   = map[string]bool{}
	)
	flush := func() error {
		if !inWord {
			return nil
		}
		inWord = false
		eq := -1
		for i, q := range word {
			if q.r == '=' && !q.quoted {
				eq = i
				break
			}
		}
		str := func(qs []qrune) string {
			var b strings.Builder
			for _, q := range qs {
				b.WriteRune(q.r)
			}
			return b.String()
		}
		var a Arg
		if eq < 0 {
			a.Value = str(word)
		} else {
			key := strings.ToLower(str(word[:eq]))
			if key == "" {
				return ica.FieldErrorf(ica.EINVALID, "text", "a parameter name is missing before '=' in %q", clip(str(word), 40))
			}
			for _, q := range word[:eq] {
				if q.quoted {
					return ica.FieldErrorf(ica.EINVALID, "text", "a parameter name cannot be quoted (%q)", clip(str(word), 40))
				}
			}
			if !keyPattern.MatchString(key) {
				return ica.FieldErrorf(ica.EINVALID, "text", "%q is not a parameter name (letters, digits, '-' and '_')", clip(key, 40))
			}
			a.Key, a.Value = key, str(word[eq+1:])
			if a.Value == "" {
				return ica.FieldErrorf(ica.EINVALID, key, "%s= needs a value", key)
			}
			if seen[key] {
				return ica.FieldErrorf(ica.EINVALID, key, "%s is given more than once", key)
			}
			seen[key] = true
		}
		if len(args) == MaxArgs {
			return ica.FieldErrorf(ica.EINVALID, "text", "too many words (at most %d)", MaxArgs)
		}
		args = append(args, a)
		word = word[:0]
		return nil
	}

	quoted, escaped := false, false
	for _, r := range text {
		switch {
		case (quoted || !unicode.IsSpace(r)) && (unicode.IsControl(r) || r == utf8.RuneError):
			// White space outside quotes separates words; any other control
			// character, escaped or not, is refused.
			return nil, ica.FieldErrorf(ica.EINVALID, "text", "the command contains control characters")
		case escaped:
			word, escaped = append(word, qrune{r, true}), false
		case quoted && r == '\\':
			escaped = true
		case r == '"':
			quoted, inWord = !quoted, true
		case !quoted && unicode.IsSpace(r):
			if err := flush(); err != nil {
				return nil, err
			}
		default:
			word, inWord = append(word, qrune{r, quoted}), true
		}
	}
	if quoted || escaped {
		return nil, ica.FieldErrorf(ica.EINVALID, "text", "a double quote is not closed")
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return args, nil
}

// quote returns v as one word: quoted when it is empty or holds white
// space, quotes, backslashes (or '=' in a positional word).
func quote(v string, positional bool) string {
	need := v == "" || strings.ContainsFunc(v, func(r rune) bool {
		return unicode.IsSpace(r) || r == '"' || r == '\\' || (positional && r == '=')
	})
	if !need {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// MaxExportRange is the longest period one export may cover.
const MaxExportRange = 10 // years

const dateLayout = "2006-01-02"

var datePattern = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})$`)

// parseDate reads YYYY-MM-DD (UTC midnight) and says precisely what is wrong.
func parseDate(key, v string) (time.Time, error) {
	m := datePattern.FindStringSubmatch(v)
	if m == nil {
		return time.Time{}, ica.FieldErrorf(ica.EINVALID, key, "%s=%s is not a date: write it as YYYY-MM-DD, e.g. %s=2026-01-31", key, clip(v, 40), key)
	}
	y, _ := strconv.Atoi(m[1])
	mo, _ := strconv.Atoi(m[2])
	d, _ := strconv.Atoi(m[3])
	if mo < 1 || mo > 12 {
		return time.Time{}, ica.FieldErrorf(ica.EINVALID, key, "%s=%s is not a valid date: there is no month %d (months are 01 to 12)", key, v, mo)
	}
	if y < 1970 {
		return time.Time{}, ica.FieldErrorf(ica.EINVALID, key, "%s=%s is not a valid date: the year must be 1970 or later", key, v)
	}
	last := time.Date(y, time.Month(mo)+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if d < 1 || d > last {
		return time.Time{}, ica.FieldErrorf(ica.EINVALID, key, "%s=%s is not a valid date: %s %d has %d days", key, v, time.Month(mo), y, last)
	}
	return time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC), nil
}

// parseExport reads the arguments of "/ica export". Defaults: from the
// first day of the month of to; to today (UTC); csv. to is inclusive: the
// query's To is the midnight after it.
func parseExport(args []Arg, now time.Time) (ExportQuery, error) {
	q := ExportQuery{Format: export.FormatCSV}
	var from, to time.Time
	var err error
	for _, a := range args {
		switch a.Key {
		case "from":
			if from, err = parseDate("from", a.Value); err != nil {
				return q, err
			}
		case "to":
			if to, err = parseDate("to", a.Value); err != nil {
				return q, err
			}
		case "format":
			switch f := strings.ToLower(a.Value); f {
			case export.FormatCSV, export.FormatJSON, export.FormatPDF:
				q.Format = f
			case "jsonl", "ndjson":
				q.Format = export.FormatJSON
			default:
				return q, ica.FieldErrorf(ica.EINVALID, "format", "format=%s is not one of csv, json, pdf", clip(a.Value, 20))
			}
		case "pipeline":
			if len(a.Value) > ica.MaxNameLen {
				return q, ica.FieldErrorf(ica.EINVALID, "pipeline", "pipeline is longer than %d bytes", ica.MaxNameLen)
			}
			q.Pipeline = a.Value
		case "":
			return q, ica.FieldErrorf(ica.EINVALID, "text", "I did not understand %q: export takes only key=value parameters", clip(a.Value, 40))
		default:
			return q, ica.FieldErrorf(ica.EINVALID, a.Key, "unknown parameter %q: export takes from, to, format and pipeline", clip(a.Key, 40))
		}
	}
	today := now.UTC().Truncate(24 * time.Hour)
	if to.IsZero() {
		to = today
		if !from.IsZero() && from.After(today) {
			to = from
		}
	}
	if from.IsZero() {
		from = time.Date(to.Year(), to.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	if to.Before(from) {
		return q, ica.FieldErrorf(ica.EINVALID, "to", "to=%s is before from=%s", to.Format(dateLayout), from.Format(dateLayout))
	}
	end := to.AddDate(0, 0, 1)
	if from.AddDate(MaxExportRange, 0, 0).Before(end) {
		return q, ica.FieldErrorf(ica.EINVALID, "to", "from=%s to=%s is more than %d years; export at most %d years at a time",
			from.Format(dateLayout), to.Format(dateLayout), MaxExportRange, MaxExportRange)
	}
	q.From, q.To = from, end
	return q, nil
}

// period describes q's dates as the user wrote them (to inclusive).
func period(q ExportQuery) string {
	return fmt.Sprintf("%s to %s", q.From.Format(dateLayout), q.To.AddDate(0, 0, -1).Format(dateLayout))
}
