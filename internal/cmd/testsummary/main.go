// Command testsummary runs `go test -json` with the given arguments and
// prints what a person needs from it: one line per package (as go test
// prints them), the whole output of every test that failed, and at the end
// the list of tests that were skipped, each with its reason. A skipped test
// is otherwise easy to miss: its package still prints "ok". It exits with go
// test's own exit status.
//
//	go run ./internal/cmd/testsummary -race -count=1 -timeout 25m ./...
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

func main() {
	cmd := exec.Command("go", append([]string{"test", "-json"}, os.Args[1:]...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	failed := summarize(out, os.Stdout)
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.ExitCode())
	case err != nil:
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	case failed:
		os.Exit(1) // go test said 0 but a test failed: never hide a failure
	}
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time       time.Time
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
}

// skip is a skipped test and why.
type skip struct {
	pkg, test, reason string
}

// summarize reads go test's JSON events from r and writes the summary to w.
// It reports whether anything failed.
func summarize(r io.Reader, w io.Writer) bool {
	type key struct{ pkg, test string }
	output := map[key][]string{} // buffered output per test (and per package: test "")
	var skips []skip
	failed := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintln(w, string(line)) // not an event: pass it through
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			fmt.Fprint(w, e.Output)
		case "build-fail":
			failed = true
		case "output":
			output[k] = append(output[k], e.Output)
		case "fail":
			failed = true
			if e.Test != "" {
				fmt.Fprintf(w, "--- FAIL: %s %s\n", e.Package, e.Test)
				for _, o := range output[k] {
					if !strings.HasPrefix(o, "=== ") {
						fmt.Fprint(w, o)
					}
				}
			} else {
				// The package's own output: the FAIL line, and any panic,
				// timeout or failure outside a test.
				for _, o := range output[k] {
					if !strings.HasPrefix(o, "=== ") {
						fmt.Fprint(w, o)
					}
				}
			}
			delete(output, k)
		case "pass", "skip":
			if e.Test == "" {
				for _, o := range output[k] {
					if strings.HasPrefix(o, "ok ") || strings.HasPrefix(o, "ok\t") || strings.HasPrefix(o, "?") {
						fmt.Fprint(w, o)
					}
				}
			} else if e.Action == "skip" {
				skips = append(skips, skip{pkg: e.Package, test: e.Test, reason: skipReason(output[k])})
			}
			delete(output, k)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(w, "testsummary: reading go test's output:", err)
		failed = true
	}
	printSkips(w, skips)
	return failed
}

// skipReason is what a skipped test said, without go test's own lines.
func skipReason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " ")
}

func printSkips(w io.Writer, skips []skip) {
	if len(skips) == 0 {
		fmt.Fprintln(w, "\nSkipped tests: none.")
		return
	}
	sort.Slice(skips, func(i, j int) bool {
		if skips[i].pkg != skips[j].pkg {
			return skips[i].pkg < skips[j].pkg
		}
		return skips[i].test < skips[j].test
	})
	fmt.Fprintf(w, "\nSkipped tests (%d): these did not run, so they prove nothing here.\n", len(skips))
	for _, s := range skips {
		fmt.Fprintf(w, "  SKIP %s %s: %s\n", s.pkg, s.test, s.reason)
	}
}
