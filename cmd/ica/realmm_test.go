package main

import (
	"testing"
	"time"

	"github.com/ica-governance/ica/internal/mmreal"
	"github.com/stretchr/testify/require"
)

// TestMain_RealMattermostReady starts the real main against a real
// Mattermost 6.7.2 (internal/mmreal): the bot connects, finds its team,
// channel and approvers, and /readyz says so. Skipped without
// ICA_TEST_MATTERMOST_URL (failed under CI).
func TestMain_RealMattermostReady(t *testing.T) {
	w := mmreal.New(t)
	addr := freeAddr(t)
	env := w.ICAEnv()
	env["ICA_ADDR"] = addr
	env["ICA_DATA_DIR"] = t.TempDir()
	env["ICA_PUBLIC_URL"] = "http://" + addr
	env["ICA_PIPELINE_TOKENS"] = "ado=" + testToken
	base, stop, logs := startServe(t, env)
	defer func() { require.Equal(t, 0, stop()) }()

	var body map[string]any
	require.Eventually(t, func() bool {
		_, body = call(t, "GET", base+"/readyz", "", "")
		checks, _ := body["checks"].(map[string]any)
		return checks["mattermost"] == "ok"
	}, 20*time.Second, 50*time.Millisecond, "the bot connects to the real server: %v\n%s", body, logs.String())
	require.Contains(t, logs.String(), "connected to Mattermost")
}
