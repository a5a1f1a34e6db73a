package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// testdata/events.json is go test -json's output for three packages: one
// with a passing, a failing, a skipped test and a skipped subtest; one
// without tests; one that does not build.
func TestSummarize(t *testing.T) {
	f, err := os.Open("testdata/events.json")
	require.NoError(t, err)
	defer f.Close()
	var out strings.Builder
	failed := summarize(f, &out)
	require.True(t, failed)
	s := out.String()
	require.Contains(t, s, "?   \texample.com/m/b\t[no test files]\n")
	require.Contains(t, s, "--- FAIL: example.com/m/a TestFail\n")
	require.Contains(t, s, "a_test.go:5: context\n", "a failed test's whole output is shown")
	require.Contains(t, s, "FAIL\texample.com/m/a")
	require.Contains(t, s, "c/c.go:2:12: undefined: undefined\n", "build errors are shown")
	require.Contains(t, s, "FAIL\texample.com/m/c [build failed]")
	require.NotContains(t, s, "--- PASS", "passing tests stay quiet")
	require.NotContains(t, s, "=== RUN")

	i := strings.Index(s, "Skipped tests (2)")
	require.Positive(t, i, s)
	tail := s[i:]
	require.Contains(t, tail, "SKIP example.com/m/a TestSkip: a_test.go:4: SKIPPING: no emulator second line\n")
	require.Contains(t, tail, "SKIP example.com/m/a TestSub/x: a_test.go:6: sub skip 1\n")
	require.True(t, strings.HasSuffix(s, "sub skip 1\n"), "the skip list ends the output")
}

func TestSummarize_NothingSkipped(t *testing.T) {
	var out strings.Builder
	failed := summarize(strings.NewReader(`{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
{"Action":"pass","Package":"p"}
`), &out)
	require.False(t, failed)
	require.Equal(t, "ok  \tp\t0.1s\n\nSkipped tests: none.\n", out.String())
}
