package ica_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func TestShowText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"payments", "payments"},
		{"", ""},
		{"line one\nline two", "line one\nline two"},
		{"pay\u202estnemyap", "pay<U+202E>stnemyap"},
		{"\u2066main\u2069", "<U+2066>main<U+2069>"},
		{"a\u200bb\u200cc\u200dd\u200ee\u200ff", "a<U+200B>b<U+200C>c<U+200D>d<U+200E>e<U+200F>f"},
		{"x\u2028y\u2029z", "x<U+2028>y<U+2029>z"},
		{"\ufeffbom", "<U+FEFF>bom"},
		{"tab\there\r", "tab<U+0009>here<U+000D>"},
		{"bell\a\x7f\u0085", "bell<U+0007><U+007F><U+0085>"},
		{"bad\xffbyte", "bad<0xFF>byte"},
		{"émoji 🚀 日本", "émoji 🚀 日本"},
	}
	for _, tt := range tests {
		got := ica.ShowText(tt.in)
		require.Equal(t, tt.want, got, "%q", tt.in)
		require.True(t, utf8.ValidString(got))
		for _, r := range got {
			require.False(t, r != '\n' && ica.IsHiddenRune(r), "%q still hides %U", got, r)
		}
	}
}

func TestValidText(t *testing.T) {
	require.NoError(t, ica.ValidText("pipeline_name", "payments-api (prod) ünïcode 🚀", 256, true))
	for _, v := range []string{"pay\u202ements", "a\u2067b", "a\u200bb", "a\u2028b", "\ufeffa", "a\nb", "a\x00b", "a\u0085b", "a\u00adb"} {
		err := ica.ValidText("branch", v, 256, true)
		require.Error(t, err, "%q", v)
		require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
		require.Equal(t, "branch", ica.ErrorField(err))
		require.Contains(t, ica.ErrorMessage(err), "U+")
	}
	require.Error(t, ica.ValidText("branch", "a\xffb", 256, true))
	require.Error(t, ica.ValidText("branch", " ", 256, true))
	require.Error(t, ica.ValidText("branch", "abcdef", 5, true))
}

func TestCheckJSONText(t *testing.T) {
	ok := []string{
		`{}`, `[]`, `"plain"`, `{"a":"\ud83d\ude80","b":[1,2,{"c":null}],"d":true,"e":-1.5e3}`,
		`{"a":"\\ud800"}`, // an escaped backslash, not an escape
		`{"a":"\u00e9\n\t\"\/"}`, `{"é":"ü"}`,
		// Syntax errors are the decoder's to report.
		`{"a":`, `{"a" 1}`, `{"a":"\u12"}`, `{"a":"unterminated`, `nonsense`,
	}
	for _, s := range ok {
		require.NoError(t, ica.CheckJSONText([]byte(s)), s)
	}
	bad := []struct{ in, field string }{
		{`{"a":"\ud800"}`, "a"},
		{`{"a":"\uDBFF\u0041"}`, "a"},
		{`{"a":"\udc00\ud800"}`, "a"},
		{`{"a":{"b":["x","\ude00"]}}`, "a.b[1]"},
		{`{"a\ud800":1}`, "body"},
		{`{"a":{"b\ud800":1}}`, "a"},
		{"{\"a\":\"\xc3\"}", "a"},
		{"{\"a\":\"\xed\xa0\x80\"}", "a"}, // a surrogate encoded as UTF-8
		{`"\ud800"`, "body"},
	}
	for _, b := range bad {
		err := ica.CheckJSONText([]byte(b.in))
		require.Error(t, err, b.in)
		require.Equal(t, ica.EINVALID, ica.ErrorCode(err), b.in)
		require.Equal(t, b.field, ica.ErrorField(err), b.in)
		// What the check refuses is what encoding/json would have changed.
		var v any
		if json.Unmarshal([]byte(b.in), &v) == nil {
			re, _ := json.Marshal(v)
			require.Contains(t, string(re), "\ufffd", "%s decodes to a replacement character", b.in)
		}
	}
}

func FuzzCheckJSONText(f *testing.F) {
	for _, s := range []string{`{"a":"\ud800"}`, `{"a":[1,"\ud83d\ude80"]}`, `{"k\udc00":1}`, "{\"a\":\"\xff\"}", `[[[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		err := ica.CheckJSONText(raw)
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return
		}
		// Valid JSON that passes the check decodes without any replacement
		// character that the input did not spell out itself.
		if err == nil {
			re, _ := json.Marshal(v)
			var again any
			require.NoError(t, json.Unmarshal(re, &again))
			require.Equal(t, v, again)
			if !containsRepl(raw) {
				require.NotContains(t, string(re), "\ufffd")
			}
		}
	})
}

func containsRepl(raw []byte) bool {
	s := strings.ToLower(string(raw))
	return strings.Contains(s, "\ufffd") || strings.Contains(s, `\ufffd`)
}
