package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain_SchedulerLeaderMetric: ica_scheduler_leader is 1 on the process
// that runs the scheduled work, which on an embedded ledger is always the
// one process (on a database, exactly one replica: see the failover bench).
func TestMain_SchedulerLeaderMetric(t *testing.T) {
	_, stop, logs := startServe(t, map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": t.TempDir()})
	defer func() { require.Equal(t, 0, stop()) }()
	murl := metricsURL(t, logs)
	require.Eventually(t, func() bool {
		res, err := http.Get(murl)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode == 200 && strings.Contains(string(b), "\nica_scheduler_leader 1\n")
	}, 10*time.Second, 20*time.Millisecond, "the one process leads")
}
