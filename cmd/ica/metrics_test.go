package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMain_MetricsListener: /metrics is served on ICA_METRICS_ADDR only;
// with ICA_METRICS_TOKEN it needs that token, on both listeners.
func TestMain_MetricsListener(t *testing.T) {
	const metricsToken = "metrics-token-0000000000001"
	base, stop, logs := startServe(t, map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": t.TempDir(),
		"ICA_PIPELINE_TOKENS": "ado=" + testToken, "ICA_METRICS_TOKEN": metricsToken})
	defer func() { require.Equal(t, 0, stop()) }()
	murl := metricsURL(t, logs)
	for _, u := range []string{murl, base + "/metrics"} {
		st, _ := call(t, "GET", u, "", "")
		require.Equal(t, 401, st, u)
		st, _ = call(t, "GET", u, testToken, "")
		require.Equal(t, 401, st, "a pipeline token is not the metrics token: %s", u)
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Authorization", "Bearer "+metricsToken)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, 200, res.StatusCode, u)
	}
	// The metrics listener serves nothing else.
	st, _ := call(t, "GET", murl[:len(murl)-len("/metrics")]+"/healthz", "", "")
	require.Equal(t, 404, st)

	var out bytes.Buffer
	code := run(context.Background(), []string{"ica", "serve"}, envFunc(map[string]string{"ICA_ADDR": "127.0.0.1:0",
		"ICA_DATA_DIR": t.TempDir(), "ICA_METRICS_ADDR": murl[len("http://") : len(murl)-len("/metrics")]}), &out, &out)
	require.Equal(t, 1, code, "an address the operator chose must be free")
	require.Contains(t, out.String(), "ICA_METRICS_ADDR")
}

// TestMain_QueryStringsNeverLogged: the alert token in a webhook URL (and
// any other query string) stays out of the logs, at debug level, for
// accepted and refused requests alike.
func TestMain_QueryStringsNeverLogged(t *testing.T) {
	const alertTok = "alert-token-in-the-url-000001"
	base, stop, logs := startServe(t, map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": t.TempDir(),
		"ICA_PIPELINE_TOKENS": "ado=" + testToken, "ICA_ALERT_TOKEN": alertTok, "ICA_LOG_LEVEL": "debug"})
	body, err := os.ReadFile(filepath.Join("..", "..", "alerts", "testdata", "common", "metric-static-threshold-fired.json"))
	require.NoError(t, err)
	for _, q := range []string{"?token=" + alertTok, "?token=wrong-secret-value-0001", "?token=" + alertTok + "&x=1"} {
		res, err := http.Post(base+"/api/v1/alerts/azure-monitor"+q, "application/json", bytes.NewReader(body))
		require.NoError(t, err)
		res.Body.Close()
	}
	res, err := http.Post(base+"/api/v1/alerts/azure-monitor?token="+alertTok, "application/json", bytes.NewReader([]byte("{not json")))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 400, res.StatusCode)
	st, _ := call(t, "GET", base+"/api/v1/runs?pipeline=secret-pipeline-filter&limit=oops", testToken, "")
	require.Equal(t, 400, st)
	require.Equal(t, 0, stop())
	for _, secret := range []string{alertTok, "wrong-secret-value-0001", "secret-pipeline-filter", "token="} {
		require.NotContains(t, logs.String(), secret)
	}
}
