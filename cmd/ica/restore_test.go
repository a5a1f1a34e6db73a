package main

import (
	"bytes"
	"context"
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

	"github.com/ica-governance/ica/store"
)

const testAdminToken = "e2e-admin-token-000000001"

// icaCmd runs the real run() with args and env, and returns its exit code and output.
func icaCmd(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(context.Background(), append([]string{"ica"}, args...), envFunc(env), &out, &out)
	return code, out.String()
}

// seedLedger serves dir, records two runs with events and an approval, and
// takes a hot backup through the admin socket and one over HTTP. It returns
// the backup files and the ledger's entry count.
func seedLedger(t *testing.T, dir string) (socketBackup, httpBackup string) {
	t.Helper()
	env := map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": dir, "ICA_PIPELINE_TOKENS": "ado=" + testToken,
		"ICA_ADMIN_TOKENS": "backup=" + testAdminToken}
	base, stop, _ := startServe(t, env)
	for r := range 2 {
		st, body := call(t, "POST", base+"/api/v1/runs", testToken, fmt.Sprintf(
			`{"pipeline_name":"payments","run_id":"r%d","branch":"refs/heads/main","commit":"0123456789abcdef0123456789abcdef01234567","triggered_by":"alice"}`, r))
		require.Equal(t, 201, st, body)
		for i := range 3 {
			st, body = call(t, "POST", base+fmt.Sprintf("/api/v1/runs/r%d/events", r), testToken,
				fmt.Sprintf(`{"event_type":"build.step","event_data":{"step":%d},"event_id":"s%d"}`, i, i))
			require.Equal(t, 201, st, body)
		}
	}
	st, body := call(t, "POST", base+"/api/v1/approvals", testToken, `{"run_id":"r1","deployment_target":"production","estimated_cost":42}`)
	require.Equal(t, 201, st, body)

	bdir := t.TempDir()
	socketBackup = filepath.Join(bdir, "socket.db")
	code, out := icaCmd(t, nil, "backup", socketBackup, "--data-dir", dir)
	require.Equal(t, 0, code, out)

	httpBackup = filepath.Join(bdir, "http.db")
	code, out = icaCmd(t, map[string]string{"ICA_ADMIN_TOKENS": "backup=" + testAdminToken}, "backup", httpBackup, "--url", base)
	require.Equal(t, 0, code, out)
	code, out = icaCmd(t, map[string]string{"ICA_ADMIN_TOKEN": "wrong-token-000000000000"}, "backup", filepath.Join(bdir, "x.db"), "--url", base)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "401")
	require.NoFileExists(t, filepath.Join(bdir, "x.db"))

	// While serving, restore refuses: the admin socket answers.
	code, out = icaCmd(t, nil, "restore", socketBackup, "--data-dir", dir, "--force")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "a server is running")

	require.Equal(t, 0, stop())
	return socketBackup, httpBackup
}

// newDataDir returns an empty data directory holding the signing key of src,
// as a disaster-recovery host would (the key comes from the secret).
func newDataDir(t *testing.T, src string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.MkdirAll(d, 0o700))
	k, err := os.ReadFile(filepath.Join(src, "signing.key"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(d, "signing.key"), k, 0o600))
	return d
}

// TestMain_BackupRestoreCheck is the round trip: backup (socket and HTTP) →
// restore into a fresh data directory → ica check → serve the restored ledger.
func TestMain_BackupRestoreCheck(t *testing.T) {
	dir := t.TempDir()
	socketBackup, httpBackup := seedLedger(t, dir)
	code, orig := icaCmd(t, nil, "check", "--data-dir", dir)
	require.Equal(t, 0, code, orig)

	for name, bk := range map[string]string{"socket": socketBackup, "http": httpBackup} {
		t.Run(name, func(t *testing.T) {
			before, err := os.ReadFile(bk)
			require.NoError(t, err)
			nd := newDataDir(t, dir)
			code, out := icaCmd(t, nil, "restore", bk, "--data-dir", nd)
			require.Equal(t, 0, code, out)
			require.Contains(t, out, "restored "+bk)
			after, err := os.ReadFile(bk)
			require.NoError(t, err)
			require.Equal(t, before, after, "restore leaves the backup file as it was")

			code, got := icaCmd(t, nil, "check", "--data-dir", nd)
			require.Equal(t, 0, code, got)
			require.Equal(t, reportLine(orig, "entries:"), reportLine(got, "entries:"))
			require.Equal(t, reportLine(orig, "head:"), reportLine(got, "head:"))
			require.Contains(t, got, "runs: 2")
			require.Contains(t, got, "approvals: 1")

			// The restored ledger serves, with the runs it had.
			base, stop, _ := startServe(t, map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": nd, "ICA_PIPELINE_TOKENS": "ado=" + testToken})
			st, body := call(t, "GET", base+"/api/v1/runs/r1", testToken, "")
			require.Equal(t, 200, st, body)
			require.EqualValues(t, 3, body["event_count"], body)
			require.Equal(t, 0, stop())
		})
	}
}

func reportLine(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestMain_RestoreRefuses: an existing ledger needs --force (and is kept), a
// tampered or truncated backup changes nothing, a locked ledger is not
// touched, and restore never invents a signing key.
func TestMain_RestoreRefuses(t *testing.T) {
	dir := t.TempDir()
	bk, _ := seedLedger(t, dir)
	live := ledgerPath(dir)
	liveBefore, err := os.ReadFile(live)
	require.NoError(t, err)

	t.Run("existing ledger without --force", func(t *testing.T) {
		code, out := icaCmd(t, nil, "restore", bk, "--data-dir", dir)
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "pass --force")
		now, _ := os.ReadFile(live)
		require.True(t, bytes.Equal(liveBefore, now), "the live ledger is untouched")
	})

	t.Run("tampered backup", func(t *testing.T) {
		raw, err := os.ReadFile(bk)
		require.NoError(t, err)
		require.True(t, bytes.Contains(raw, []byte("payments")))
		bad := filepath.Join(t.TempDir(), "tampered.db")
		require.NoError(t, os.WriteFile(bad, bytes.ReplaceAll(raw, []byte("payments"), []byte("paymentz")), 0o600))
		code, out := icaCmd(t, nil, "restore", bad, "--data-dir", dir, "--force")
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "does not verify, nothing was changed")
		now, _ := os.ReadFile(live)
		require.True(t, bytes.Equal(liveBefore, now), "the live ledger is untouched")
		assertNoLeftovers(t, dir)
	})

	t.Run("truncated backup", func(t *testing.T) {
		raw, err := os.ReadFile(bk)
		require.NoError(t, err)
		bad := filepath.Join(t.TempDir(), "short.db")
		require.NoError(t, os.WriteFile(bad, raw[:len(raw)/3], 0o600))
		code, out := icaCmd(t, nil, "restore", bad, "--data-dir", dir, "--force")
		require.Equal(t, 1, code, out)
		now, _ := os.ReadFile(live)
		require.True(t, bytes.Equal(liveBefore, now), "the live ledger is untouched")
		assertNoLeftovers(t, dir)
	})

	t.Run("locked by another process", func(t *testing.T) {
		key, err := restoreKey(ledgerLocation{Dir: dir})
		require.NoError(t, err)
		st, err := store.Open(live, store.Options{Key: key})
		require.NoError(t, err)
		defer st.Close()
		code, out := icaCmd(t, nil, "restore", bk, "--data-dir", dir, "--force")
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "locked by another process")
	})

	t.Run("no signing key", func(t *testing.T) {
		nd := t.TempDir()
		code, out := icaCmd(t, nil, "restore", bk, "--data-dir", nd)
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "no signing key")
		require.NoFileExists(t, filepath.Join(nd, "signing.key"))
		require.NoFileExists(t, ledgerPath(nd))
	})

	t.Run("--force keeps the old ledger", func(t *testing.T) {
		liveBefore, err := os.ReadFile(live)
		require.NoError(t, err)
		code, out := icaCmd(t, nil, "restore", "--force", bk, "--data-dir", dir)
		require.Equal(t, 0, code, out)
		kept, err := filepath.Glob(live + ".before-restore-*")
		require.NoError(t, err)
		require.Len(t, kept, 1)
		old, _ := os.ReadFile(kept[0])
		require.True(t, bytes.Equal(liveBefore, old), "the previous ledger is kept as it was")
		code, out = icaCmd(t, nil, "check", "--data-dir", dir)
		require.Equal(t, 0, code, out)
	})
}

func assertNoLeftovers(t *testing.T, dir string) {
	t.Helper()
	tmp, _ := filepath.Glob(filepath.Join(dir, ".ica-restore-*"))
	require.Empty(t, tmp, "temporary files are removed")
	kept, _ := filepath.Glob(filepath.Join(dir, "ica.db.before-restore-*"))
	require.Empty(t, kept, "nothing was moved aside")
}

// TestMain_BackupRestoreBlob goes through Azure Blob Storage (Azurite): the
// backup job's command uploads, restore --blob downloads.
func TestMain_BackupRestoreBlob(t *testing.T) {
	cs := os.Getenv("ICA_TEST_AZURITE")
	if cs == "" {
		c, err := net.DialTimeout("tcp", "127.0.0.1:10000", 500*time.Millisecond)
		if err != nil {
			t.Skip("SKIPPING: no Azurite emulator on 127.0.0.1:10000 and ICA_TEST_AZURITE is unset " +
				"(azurite-blob --blobHost 127.0.0.1 --blobPort 10000 --inMemoryPersistence --skipApiVersionCheck)")
		}
		c.Close()
		cs = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" +
			"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==" +
			";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
	}
	dir := t.TempDir()
	env := map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": dir, "ICA_PIPELINE_TOKENS": "ado=" + testToken,
		"ICA_ADMIN_TOKENS": "backup=" + testAdminToken}
	base, stop, _ := startServe(t, env)
	st, body := call(t, "POST", base+"/api/v1/runs", testToken,
		`{"pipeline_name":"payments","run_id":"b1","branch":"main","commit":"0123456789abcdef0123456789abcdef01234567","triggered_by":"alice"}`)
	require.Equal(t, 201, st, body)

	var b [6]byte
	_, _ = rand.Read(b[:])
	container := "test-backups-" + hex.EncodeToString(b[:])
	benv := map[string]string{"ICA_ADMIN_TOKENS": "backup=" + testAdminToken, "ICA_BLOB_CONNECTION_STRING": cs, "ICA_BACKUP_CONTAINER": container}
	code, out := icaCmd(t, benv, "backup", "--url", base, "--blob", "--blob-name", "nightly.db")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "backup uploaded to")
	require.NotContains(t, out, "Eby8vdM02xNO", "no secret in the output")
	require.Equal(t, 0, stop())

	nd := newDataDir(t, dir)
	code, out = icaCmd(t, benv, "restore", "--blob", "nightly.db", "--data-dir", nd)
	require.Equal(t, 0, code, out)
	code, out = icaCmd(t, nil, "check", "--data-dir", nd)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "runs: 1")
}
