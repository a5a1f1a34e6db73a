package slashcmds

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Arg
		err  string
	}{
		{"", nil, ""},
		{"   ", nil, ""},
		{"status", []Arg{{Value: "status"}}, ""},
		{"export from=2026-01-01  to=2026-12-31\tformat=csv", []Arg{{Value: "export"}, {"from", "2026-01-01"}, {"to", "2026-12-31"}, {"format", "csv"}}, ""},
		{`export pipeline="payments api"`, []Arg{{Value: "export"}, {"pipeline", "payments api"}}, ""},
		{`export pipeline=“payments api”`, []Arg{{Value: "export"}, {"pipeline", "payments api"}}, ""},
		{`export FROM=2026-01-01`, []Arg{{Value: "export"}, {"from", "2026-01-01"}}, ""},
		{`status "a=b"`, []Arg{{Value: "status"}, {Value: "a=b"}}, ""},
		{`x k=a=b`, []Arg{{Value: "x"}, {"k", "a=b"}}, ""},
		{`x k="say \"hi\" \\ ok"`, []Arg{{Value: "x"}, {"k", `say "hi" \ ok`}}, ""},
		{`x C:\path`, []Arg{{Value: "x"}, {Value: `C:\path`}}, ""},
		{`x ""`, []Arg{{Value: "x"}, {Value: ""}}, ""},
		{`x from=`, nil, "from= needs a value"},
		{`x =v`, nil, "parameter name is missing"},
		{`x "k"=v`, nil, "cannot be quoted"},
		{`x 1k=v`, nil, "is not a parameter name"},
		{`x a=1 a=2`, nil, "a is given more than once"},
		{`x "open`, nil, "double quote is not closed"},
		{"x \"a\nb\"", nil, "control characters"},
		{"x \x00", nil, "control characters"},
		{"x \xff", nil, "not valid UTF-8"},
		{strings.Repeat("a ", 33), nil, "too many words"},
		{strings.Repeat("a", MaxTextBytes+1), nil, "longer than"},
	} {
		got, err := ParseArgs(tc.in)
		if tc.err != "" {
			require.Error(t, err, tc.in)
			require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
			require.Contains(t, ica.ErrorMessage(err), tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestParseExport(t *testing.T) {
	d := func(y, m, day int) time.Time { return time.Date(y, time.Month(m), day, 0, 0, 0, 0, time.UTC) }
	now := time.Date(2026, 11, 27, 23, 59, 0, 0, time.UTC)
	for _, tc := range []struct {
		in       string
		from, to time.Time
		format   string
	}{
		{"", d(2026, 11, 1), d(2026, 11, 28), "csv"},
		{"format=json", d(2026, 11, 1), d(2026, 11, 28), "json"},
		{"format=ndjson", d(2026, 11, 1), d(2026, 11, 28), "json"},
		{"from=2026-01-01", d(2026, 1, 1), d(2026, 11, 28), "csv"},
		{"to=2026-02-28", d(2026, 2, 1), d(2026, 3, 1), "csv"},
		{"from=2024-02-29 to=2024-02-29", d(2024, 2, 29), d(2024, 3, 1), "csv"},
		{"from=2027-01-05", d(2027, 1, 5), d(2027, 1, 6), "csv"},
		{"from=2016-11-28 to=2026-11-27", d(2016, 11, 28), d(2026, 11, 28), "csv"},
	} {
		args, err := ParseArgs(tc.in)
		require.NoError(t, err)
		q, err := parseExport(args, now)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.from, q.From, tc.in)
		require.Equal(t, tc.to, q.To, tc.in)
		require.Equal(t, tc.format, q.Format, tc.in)
	}
	for in, field := range map[string]string{
		"from=2026-13-01":                      "from",
		"from=2026-00-10":                      "from",
		"to=2025-02-29":                        "to",
		"from=1969-12-31":                      "from",
		"from=2026-1-1":                        "from",
		"to=2026-01-01 from=2026-01-02":        "to",
		"from=2016-11-27 to=2026-11-27":        "to",
		"format=docx":                          "format",
		"pipeline=" + strings.Repeat("p", 300): "pipeline",
		"foo=bar":                              "foo",
	} {
		args, err := ParseArgs(in)
		require.NoError(t, err)
		_, err = parseExport(args, now)
		require.Error(t, err, in)
		require.Equal(t, field, ica.ErrorField(err), in)
	}
}

// FuzzParseArgs checks that the parser never panics, that what it accepts
// is well-formed, and that writing the arguments back reads the same.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{"", "status", "export from=2026-01-01 to=2026-12-31 format=csv",
		`export pipeline="payments api"`, `x k="a \"b\" \\"`, `"a=b" =`, "“x y”", "a=b=c", `x ""`, "\u00a0a\u0085b", "\\", `"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := ParseArgs(s)
		if err != nil {
			if ica.ErrorCode(err) != ica.EINVALID {
				t.Fatalf("ParseArgs(%q): error code %s", s, ica.ErrorCode(err))
			}
			return
		}
		if len(args) > MaxArgs {
			t.Fatalf("ParseArgs(%q): %d args", s, len(args))
		}
		words := make([]string, len(args))
		seen := map[string]bool{}
		for i, a := range args {
			if a.Key != "" {
				if !keyPattern.MatchString(a.Key) || a.Value == "" || seen[a.Key] {
					t.Fatalf("ParseArgs(%q): bad arg %+v", s, a)
				}
				seen[a.Key] = true
			}
			if !utf8.ValidString(a.Value) {
				t.Fatalf("ParseArgs(%q): invalid UTF-8 in %q", s, a.Value)
			}
			words[i] = a.String()
		}
		again, err := ParseArgs(strings.Join(words, " "))
		if err != nil {
			t.Fatalf("ParseArgs(%q) = %+v; reparse of %q: %v", s, args, strings.Join(words, " "), err)
		}
		if len(again) != len(args) {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, args)
		}
		for i := range args {
			if again[i] != args[i] {
				t.Fatalf("round trip of %q: %+v != %+v", s, again, args)
			}
		}
		// The export parser must not panic on anything the arg parser accepts.
		_, _ = parseExport(args, time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC))
	})
}
