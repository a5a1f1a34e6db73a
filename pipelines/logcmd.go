package pipelines

import (
	"fmt"
	"io"
	"strings"
)

// Azure Pipelines logging commands (##vso[…]). The agent recognises a
// command anywhere in an output line, so text that comes from outside (a
// rejection comment typed in Mattermost, a server message) is passed through
// safeText before it is printed, and never lets a reviewer's comment set a
// variable or complete the task.

// escapeData escapes a logging command's message the way azure-pipelines-task-lib
// does: % first, then CR and LF.
func escapeData(s string) string {
	s = strings.ReplaceAll(s, "%", "%AZP25")
	s = strings.ReplaceAll(s, "\r", "%0D")
	return strings.ReplaceAll(s, "\n", "%0A")
}

// escapeProperty escapes a property value: as data, plus ';' and ']'.
func escapeProperty(s string) string {
	s = escapeData(s)
	s = strings.ReplaceAll(s, ";", "%3B")
	return strings.ReplaceAll(s, "]", "%5D")
}

// safeText makes untrusted text harmless on one output line: control
// characters become spaces and "##" (the start of ##vso[ and ##[ commands)
// is broken up.
func safeText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, s)
	for strings.Contains(s, "##") {
		s = strings.ReplaceAll(s, "##", "# #")
	}
	return s
}

// logIssue prints ##vso[task.logissue type=…]message.
func logIssue(w io.Writer, typ, msg string) {
	fmt.Fprintf(w, "##vso[task.logissue type=%s]%s\n", typ, escapeData(safeText(msg)))
}

// setVariable prints the step-local and the output form of
// ##vso[task.setvariable]: the first makes $(name) and $NAME available to
// later steps of the job, the second makes <step>.name available to later
// jobs and stages.
func setVariable(w io.Writer, name, value string) {
	v := escapeData(safeText(value))
	fmt.Fprintf(w, "##vso[task.setvariable variable=%s]%s\n", escapeProperty(name), v)
	fmt.Fprintf(w, "##vso[task.setvariable variable=%s;isOutput=true]%s\n", escapeProperty(name), v)
}

// completeFailed prints ##vso[task.complete result=Failed;]message.
func completeFailed(w io.Writer, msg string) {
	fmt.Fprintf(w, "##vso[task.complete result=Failed;]%s\n", escapeData(safeText(msg)))
}
