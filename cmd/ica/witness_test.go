package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/archive"
)

const azuriteAccount = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" +
	"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// azuriteBlob returns the connection string of the Azurite emulator (the
// real witness of these tests), or skips loudly: CI always starts one.
func azuriteBlob(t *testing.T) string {
	t.Helper()
	if cs := os.Getenv("ICA_TEST_AZURITE"); cs != "" {
		return cs
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:10000", 500*time.Millisecond)
	if err != nil {
		t.Skip("SKIPPING: no Azurite emulator on 127.0.0.1:10000 and ICA_TEST_AZURITE is unset. " +
			"Start one: azurite-blob --blobHost 127.0.0.1 --blobPort 10000 --inMemoryPersistence --skipApiVersionCheck &")
	}
	_ = c.Close()
	return azuriteAccount + ";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
}

// waitWitnessed waits until the witness holds a checkpoint of the ledger at
// least size entries long.
func waitWitnessed(t *testing.T, cs, container, dir string, size uint64) {
	t.Helper()
	a, err := archive.New(archive.Config{ConnectionString: cs, Container: container, Retries: -1}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		names, err := a.List(context.Background(), "checkpoints/")
		if err != nil || len(names) == 0 {
			return false
		}
		last := names[len(names)-1]
		var n uint64
		_, err = fmt.Sscanf(last[strings.LastIndex(last, "/")+1:], "%d", &n)
		return err == nil && n >= size
	}, 15*time.Second, 100*time.Millisecond, "the witness takes a checkpoint of %d entries", size)
}

// TestMain_WitnessCatchesRollback: a served ledger publishes its checkpoints
// to Azurite; ica check proves it against them; proofs verify offline; a
// backup older than a witnessed checkpoint, restored, fails ica check and
// is refused by ica serve until the rollback is accepted with a reason,
// which the ledger records.
func TestMain_WitnessCatchesRollback(t *testing.T) {
	cs := azuriteBlob(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	container := "ica-e2e-" + hex.EncodeToString(b[:])
	dir := t.TempDir()
	env := map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": dir, "ICA_PIPELINE_TOKENS": "ado=" + testToken,
		"ICA_BLOB_CONNECTION_STRING": cs, "ICA_BLOB_CONTAINER": container, "ICA_CHECKPOINT_INTERVAL": "1s",
		"ICA_PUBLIC_URL": "http://127.0.0.1:1"}
	base, stop, logs := startServe(t, env)
	post := func(path, body string) map[string]any {
		st, m := call(t, "POST", base+path, testToken, body)
		require.Less(t, st, 300, m)
		return m
	}
	post("/api/v1/runs", `{"pipeline_name":"payments","run_id":"r1","branch":"main","commit":"0123456789abcdef0123456789abcdef01234567","triggered_by":"alice"}`)
	for i := range 3 {
		post("/api/v1/runs/r1/events", fmt.Sprintf(`{"event_type":"step","event_data":{"i":%d}}`, i))
	}
	bk := filepath.Join(t.TempDir(), "old.db")
	code, out := icaCmd(t, nil, "backup", bk, "--data-dir", dir)
	require.Equal(t, 0, code, out)
	a := post("/api/v1/approvals", `{"run_id":"r1","deployment_target":"production","estimated_cost":5}`)
	id := a["approval_id"].(string)
	// The serve records its policy first, then the run: the backup holds
	// every entry before the approval's request.
	reqSeq := uint64(a["decision_seq"].(float64))
	backed := reqSeq - 1
	st, m := call(t, "POST", base+"/api/v1/runs/r1/finish", testToken, `{"status":"success"}`)
	require.Equal(t, 200, st, m)
	waitWitnessed(t, cs, container, dir, reqSeq+1)

	code, out = icaCmd(t, env, "check", "--data-dir", dir)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "matches its")

	code, out = icaCmd(t, env, "proof", id, "--data-dir", dir, "--out", filepath.Join(t.TempDir(), "p.json"))
	require.Equal(t, 0, code, out)
	require.Equal(t, 0, stop())
	require.Contains(t, logs.String(), "ledger consistent with its witness")

	// ica proof offline, and ica verify-proof with the key.
	proofFile := filepath.Join(t.TempDir(), "proof.json")
	code, out = icaCmd(t, env, "proof", id, "--data-dir", dir, "--out", proofFile)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "witnessed at")
	pub := keyHex(t, dir)
	code, out = icaCmd(t, nil, "verify-proof", proofFile, "--public-key", pub)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, fmt.Sprintf("OK: entry %d (approval.requested %s", reqSeq, id))
	raw, _ := os.ReadFile(proofFile)
	forged := filepath.Join(t.TempDir(), "forged.json")
	require.Contains(t, string(raw), `"estimated_cost": 5`)
	require.NoError(t, os.WriteFile(forged, []byte(strings.Replace(string(raw), `"estimated_cost": 5`, `"estimated_cost": 6`, 1)), 0o600))
	code, out = icaCmd(t, nil, "verify-proof", forged, "--public-key", pub)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "altered")

	// The old backup restored: behind the witness.
	code, out = icaCmd(t, env, "restore", bk, "--data-dir", dir, "--force")
	require.Equal(t, 0, code, out)
	code, out = icaCmd(t, env, "check", "--data-dir", dir)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "PROBLEM: witnessed checkpoint of size")
	require.Contains(t, out, fmt.Sprintf("the ledger has only %d entries", backed))
	require.Contains(t, out, container+"/checkpoints/")

	code, out = icaCmd(t, env, "serve")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, fmt.Sprintf("the ledger has %d entries, but the witness holds a checkpoint of", backed))
	require.Contains(t, out, "--accept-rollback REASON")

	var buf syncBuffer
	buf.addrC = make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"ica", "serve", "--accept-rollback", "restored the backup of 09:00 after the disk failed"}, envFunc(env), &buf, &buf)
	}()
	select {
	case <-buf.addrC:
	case c := <-done:
		t.Fatalf("serve --accept-rollback exited %d:\n%s", c, buf.String())
	case <-time.After(15 * time.Second):
		t.Fatal("serve --accept-rollback did not start")
	}
	cancel()
	require.Equal(t, 0, <-done)
	require.Contains(t, buf.String(), "ROLLBACK ACCEPTED")

	code, out = icaCmd(t, env, "check", "--data-dir", dir)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, fmt.Sprintf("given up by the rollback accepted at entry %d (restored the backup of 09:00 after the disk failed)", backed+1))
}

// keyHex returns the public key of the signing key in dir.
func keyHex(t *testing.T, dir string) string {
	t.Helper()
	cfg := defaultConfig()
	cfg.DataDir = dir
	k, err := loadSigningKey(cfg)
	require.NoError(t, err)
	return hex.EncodeToString(k.Public().(ed25519.PublicKey))
}

// TestMain_CheckWitnessUnreachable: a witness that cannot be read is
// reported as such, with its own exit code, never as "ok".
func TestMain_CheckWitnessUnreachable(t *testing.T) {
	dir := t.TempDir()
	seedLedger(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{"ICA_BLOB_CONNECTION_STRING": azuriteAccount + ";BlobEndpoint=http://" + addr + "/devstoreaccount1;"}
	code, out := icaCmd(t, env, "check", "--data-dir", dir)
	require.Equal(t, 3, code, out)
	require.Contains(t, out, "WITNESS UNREADABLE")
	code, out = icaCmd(t, nil, "check", "--data-dir", dir)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "no witness is configured")
}

// The key warning: once at start, only when a key is about to be generated
// into the data directory of a server others reach.
func TestWarnKeyBesideLedger(t *testing.T) {
	for url, want := range map[string]bool{"": true, "http://127.0.0.1:8080": true, "http://localhost:8080/": true,
		"http://[::1]:8080": true, "https://ica.example.com": false, "http://10.0.0.5:8080": false} {
		require.Equal(t, want, loopback(url), url)
	}
	warned := func(cfg *Config) bool {
		var buf syncBuffer
		warnKeyBesideLedger(cfg, newLogger(&buf, "info"))
		return strings.Contains(buf.String(), "generating the ledger's signing key into the data directory")
	}
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.PublicURL = "https://ica.example.com"
	require.True(t, warned(cfg))
	cfg.SigningKey = strings.Repeat("ab", 32)
	require.False(t, warned(cfg), "a key from the environment or a secret")
	cfg.SigningKey = ""
	_, err := loadSigningKey(cfg)
	require.NoError(t, err)
	require.False(t, warned(cfg), "the key exists already: warned when it was generated")
	cfg.DataDir, cfg.PublicURL = t.TempDir(), "http://127.0.0.1:8080"
	require.False(t, warned(cfg), "a loopback server")
}
