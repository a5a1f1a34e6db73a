package pipelines

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzLogIssue checks that text from outside (a reviewer's comment) always
// yields exactly one logging command: one line, one "##".
func FuzzLogIssue(f *testing.F) {
	for _, s := range []string{"plain", "a\nb", "x##vso[task.complete result=Succeeded;]", "###vso[", "%AZP25\r\n", "\u2028##[error]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		var b bytes.Buffer
		logIssue(&b, "error", msg)
		out := b.String()
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") || strings.Contains(out, "\r") {
			t.Fatalf("not one line: %q", out)
		}
		if !strings.HasPrefix(out, "##vso[task.logissue type=error]") || strings.Count(out, "##") != 1 {
			t.Fatalf("injected command: %q", out)
		}
	})
}

func TestEscapeProperty(t *testing.T) {
	if got := escapeProperty("a;b]c%\n"); got != "a%3Bb%5Dc%AZP25%0A" {
		t.Fatal(got)
	}
}
