package main

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMain_Health is the image's HEALTHCHECK: 0 against a serving ICA
// (found through ICA_ADDR, an unspecified host meaning loopback), 1 when
// nothing answers.
func TestMain_Health(t *testing.T) {
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	_, stop, _ := startServe(t, map[string]string{"ICA_ADDR": addr, "ICA_DATA_DIR": t.TempDir()})
	code, out := icaCmd(t, map[string]string{"ICA_ADDR": "0.0.0.0:" + port}, "health")
	require.Equal(t, 0, code, out)
	code, out = icaCmd(t, nil, "health", "--url", "http://"+addr+"/healthz")
	require.Equal(t, 0, code, out)
	require.Equal(t, 0, stop())
	code, out = icaCmd(t, map[string]string{"ICA_ADDR": addr}, "health", "--timeout", "1s")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "unhealthy")
}

func TestLoopbackAddr(t *testing.T) {
	for in, want := range map[string]string{"": "127.0.0.1:8080", ":8080": "127.0.0.1:8080", "0.0.0.0:9": "127.0.0.1:9",
		"[::]:9": "127.0.0.1:9", "10.1.2.3:80": "10.1.2.3:80", "[::1]:80": "[::1]:80"} {
		require.Equal(t, want, loopbackAddr(in), in)
	}
}
