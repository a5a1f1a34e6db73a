package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// walkthroughStep is the commands before one "# →" line of the README's
// walkthrough, and what that line promises they print.
type walkthroughStep struct {
	commands []string
	expect   string // "201 fragment … fragment", or fragments only
}

// readmeWalkthrough returns the shell block of the README's "Walkthrough
// with curl" section, cut into steps at its "# →" lines.
func readmeWalkthrough(t *testing.T) (string, []walkthroughStep) {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	s := string(raw)
	i := strings.Index(s, "\n## Walkthrough with curl")
	require.Positive(t, i, "the README has its walkthrough")
	s = s[i:]
	start := strings.Index(s, "```sh\n")
	require.Positive(t, start)
	s = s[start+len("```sh\n"):]
	end := strings.Index(s, "\n```")
	require.Positive(t, end)
	block := s[:end+1]
	var steps []walkthroughStep
	cur := walkthroughStep{}
	for _, line := range strings.Split(strings.TrimSuffix(block, "\n"), "\n") {
		if e, ok := strings.CutPrefix(line, "# → "); ok {
			cur.expect = e
			steps = append(steps, cur)
			cur = walkthroughStep{}
			continue
		}
		cur.commands = append(cur.commands, line)
	}
	if len(cur.commands) > 0 {
		steps = append(steps, cur)
	}
	return block, steps
}

// TestREADME_WalkthroughRunsAsWritten pastes the README's walkthrough into
// bash in an empty directory, against the built binary on a free port, and
// checks that every step prints what its "# →" line says: the HTTP status,
// and each fragment of the answer. `make build` is the one line replaced
// (by the binary this test built): the rest runs exactly as written.
func TestREADME_WalkthroughRunsAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a server")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPING THE README WALKTHROUGH: %s is not installed", tool)
		}
	}
	block, steps := readmeWalkthrough(t)
	require.GreaterOrEqual(t, len(steps), 10, "the walkthrough has its steps")
	require.Contains(t, block, "make build")
	require.Contains(t, block, "bin/ica serve")
	require.Contains(t, block, "kill $ICA_PID")
	require.Contains(t, block, "/bypass")
	require.Contains(t, block, "/api/v1/approvals/A-1/decisions", "the walkthrough names the decision API")

	bin := buildICA(t)
	work := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(work, "bin"), 0o755))
	require.NoError(t, os.Symlink(bin, filepath.Join(work, "bin", "ica")))
	// `make build` has been done by this test: a stand-in make accepts it.
	fake := filepath.Join(work, "fakebin")
	require.NoError(t, os.MkdirAll(fake, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(fake, "make"), []byte("#!/bin/sh\n[ \"$1\" = build ] && [ -x bin/ica ]\n"), 0o755))

	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	var script strings.Builder
	script.WriteString("trap 'kill $ICA_PID 2>/dev/null' EXIT\n")
	for i, st := range steps {
		fmt.Fprintf(&script, "echo '@@@ step %d'\n", i)
		for _, c := range st.commands {
			script.WriteString(strings.ReplaceAll(c, "localhost:8080", "localhost:"+port) + "\n")
		}
	}
	script.WriteString("echo '@@@ end'\n")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+fake+string(os.PathListSeparator)+os.Getenv("PATH"), "ICA_ADDR=127.0.0.1:"+port)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	log, _ := os.ReadFile(filepath.Join(work, "ica.log"))
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s\nica.log:\n%s", stdout.String(), stderr.String(), log)
	require.Empty(t, stderr.String(), "nothing on stderr")
	require.Contains(t, stdout.String(), "@@@ end")

	out := stdout.String()
	codeRe := regexp.MustCompile(`^(\d{3})(?: (.*))?$`)
	for i, st := range steps {
		if st.expect == "" {
			continue
		}
		from := strings.Index(out, fmt.Sprintf("@@@ step %d\n", i))
		to := strings.Index(out, fmt.Sprintf("@@@ step %d\n", i+1))
		if to < 0 {
			to = strings.Index(out, "@@@ end")
		}
		require.True(t, from >= 0 && to > from, "step %d ran", i)
		got := strings.TrimSpace(out[from+len(fmt.Sprintf("@@@ step %d\n", i)) : to])
		want := st.expect
		if m := codeRe.FindStringSubmatch(want); m != nil {
			lines := strings.Split(got, "\n")
			require.Equal(t, m[1], strings.TrimSpace(lines[len(lines)-1]), "step %d (%s): the status code\n%s", i, strings.Join(st.commands, "\n"), got)
			want = m[2]
		}
		for _, frag := range strings.Split(want, " … ") {
			require.Contains(t, got, strings.TrimSpace(frag), "step %d (%s)", i, strings.Join(st.commands, "\n"))
		}
	}
	require.Contains(t, string(log), `"msg":"stopped"`, "kill stopped the real server, which shut down cleanly")
	require.NoFileExists(t, filepath.Join(work, "data", "ica.sock"), "the server is gone")
}
