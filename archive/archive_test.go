package archive

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// azuriteKey is the emulator's well-known, public account key.
const azuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

const defaultAzurite = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + azuriteKey +
	";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"

// azurite returns the connection string of a running Azurite emulator:
// $ICA_TEST_AZURITE, or the well-known one when something listens on
// 127.0.0.1:10000. Without an emulator the test is skipped, loudly: CI
// always starts one (.ci/run).
func azurite(t *testing.T) string {
	t.Helper()
	if cs := os.Getenv("ICA_TEST_AZURITE"); cs != "" {
		return cs
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:10000", 500*time.Millisecond)
	if err != nil {
		t.Skip("SKIPPING: no Azurite emulator on 127.0.0.1:10000 and ICA_TEST_AZURITE is unset. " +
			"Start one: npm install -g azurite@3.35.0 && azurite-blob --blobHost 127.0.0.1 --blobPort 10000 " +
			"--inMemoryPersistence --skipApiVersionCheck --disableTelemetry &")
	}
	_ = c.Close()
	return defaultAzurite
}

// newArchive returns an Archive on a fresh container that does not exist yet.
func newArchive(t *testing.T, cs, prefix string) *Archive {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	a, err := New(Config{ConnectionString: cs, Container: "test-" + hex.EncodeToString(b[:]), Prefix: prefix, Retries: 1}, nil)
	require.NoError(t, err)
	return a
}

func download(t *testing.T, a *Archive, name string) []byte {
	t.Helper()
	rc, err := a.Download(context.Background(), name)
	require.NoError(t, err)
	defer rc.Close()
	got, err := io.ReadAll(rc)
	require.NoError(t, err)
	return got
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// closedPort returns an address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, ica.ErrorCode(err), "error: %v", err)
}

// requireNoSecret checks every way an error is usually printed.
func requireNoSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, text := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), ica.ErrorMessage(err)} {
			require.NotContains(t, text, s)
		}
		for e := err; e != nil; e = errors.Unwrap(e) {
			if _, ok := e.(*redactedError); ok {
				require.NotContains(t, e.Error(), s)
			}
		}
	}
}

func TestArchive_Upload_RoundTrip(t *testing.T) {
	t.Parallel()
	a := newArchive(t, azurite(t), "exports/")
	ctx := context.Background()
	require.NoError(t, a.Ping(ctx), "ping before the container exists")

	data := randomBytes(300 << 10)
	// A reader that cannot seek is spooled.
	url, err := a.Upload(ctx, "2026-01.csv", io.MultiReader(bytes.NewReader(data)), "text/csv", map[string]string{"records": "42", "fingerprint": "3f1a:0b2c"})
	require.NoError(t, err)
	require.Equal(t, "http://127.0.0.1:10000/devstoreaccount1/"+a.Container()+"/exports/2026-01.csv", url)
	require.Equal(t, data, download(t, a, "2026-01.csv"))

	props, err := a.container.NewBlobClient("exports/2026-01.csv").GetProperties(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, "text/csv", *props.ContentType)
	sum := md5.Sum(data)
	require.Equal(t, sum[:], props.ContentMD5)
	// Go canonicalises header names, so metadata names come back as "Records".
	var records string
	for k, v := range props.Metadata {
		if strings.EqualFold(k, "records") {
			records = *v
		}
	}
	require.Equal(t, "42", records)

	// A file is read from its current offset, without spooling.
	f, err := os.CreateTemp(t.TempDir(), "x")
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write(append([]byte("HEADER"), data[:1000]...))
	require.NoError(t, err)
	_, err = f.Seek(6, io.SeekStart)
	require.NoError(t, err)
	_, err = a.Upload(ctx, "from-file.csv", f, "", nil)
	require.NoError(t, err)
	require.Equal(t, data[:1000], download(t, a, "from-file.csv"))

	// An empty export is a valid blob.
	_, err = a.Upload(ctx, "empty.csv", strings.NewReader(""), "text/csv", nil)
	require.NoError(t, err)
	require.Empty(t, download(t, a, "empty.csv"))
}

func TestArchive_Upload_Collision(t *testing.T) {
	t.Parallel()
	a := newArchive(t, azurite(t), "")
	ctx := context.Background()
	_, err := a.Upload(ctx, "ica-export-2026-01.csv", strings.NewReader("first"), "text/csv", nil)
	require.NoError(t, err)

	_, err = a.Upload(ctx, "ica-export-2026-01.csv", strings.NewReader("second"), "text/csv", nil)
	requireCode(t, err, ica.ECONFLICT)
	require.Contains(t, ica.ErrorMessage(err), "already exists")
	require.Equal(t, "first", string(download(t, a, "ica-export-2026-01.csv")), "the first export is untouched")
}

// TestArchive_Upload_Blocks takes the staged-block path (large exports) with
// small sizes. Not parallel: it changes the package's size limits.
func TestArchive_Upload_Blocks(t *testing.T) {
	cs := azurite(t)
	oldMax, oldBlock := singleShotMax, blockSize
	singleShotMax, blockSize = 1000, 333
	t.Cleanup(func() { singleShotMax, blockSize = oldMax, oldBlock })

	a := newArchive(t, cs, "")
	ctx := context.Background()
	data := randomBytes(2500)
	_, err := a.Upload(ctx, "big.json", bytes.NewReader(data), "application/x-ndjson", nil)
	require.NoError(t, err)
	require.Equal(t, data, download(t, a, "big.json"), "download verifies the stored Content-MD5")

	_, err = a.Upload(ctx, "big.json", bytes.NewReader(data), "application/x-ndjson", nil)
	requireCode(t, err, ica.ECONFLICT)
}

func TestArchive_Download_NotFound(t *testing.T) {
	t.Parallel()
	a := newArchive(t, azurite(t), "")
	_, err := a.Download(context.Background(), "nope.csv")
	requireCode(t, err, ica.ENOTFOUND)
}

func TestArchive_Unavailable(t *testing.T) {
	t.Parallel()
	addr := closedPort(t)
	cs := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + azuriteKey +
		";BlobEndpoint=http://" + addr + "/devstoreaccount1;"
	a, err := New(Config{ConnectionString: cs, Retries: 2}, nil)
	require.NoError(t, err)
	ctx := context.Background()

	start := time.Now()
	_, err = a.Upload(ctx, "x.csv", strings.NewReader("data"), "text/csv", nil)
	elapsed := time.Since(start)
	requireCode(t, err, ica.EUNAVAILABLE)
	require.Less(t, elapsed, 20*time.Second, "retries are bounded")
	require.Greater(t, elapsed, 2*time.Second, "2 retries with 1 s, 2 s backoff (jittered)")
	requireNoSecret(t, err, azuriteKey)
	var oe *net.OpError
	require.ErrorAs(t, err, &oe, "the cause is wrapped")

	// The other calls classify the same way; no need to wait for retries again.
	a, err = New(Config{ConnectionString: cs, Retries: -1}, nil)
	require.NoError(t, err)
	err = a.Ping(ctx)
	requireCode(t, err, ica.EUNAVAILABLE)
	requireNoSecret(t, err, azuriteKey)

	_, err = a.Download(ctx, "x.csv")
	requireCode(t, err, ica.EUNAVAILABLE)
}

// TestArchive_Unavailable_Retries counts the tries against a service that
// answers 503.
func TestArchive_Unavailable_Retries(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("x-ms-error-code", "ServerBusy")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	cs := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + azuriteKey + ";BlobEndpoint=" + srv.URL + "/devstoreaccount1;"
	a, err := New(Config{ConnectionString: cs, Retries: 2}, nil)
	require.NoError(t, err)
	err = a.Ping(context.Background())
	requireCode(t, err, ica.EUNAVAILABLE)
	require.Contains(t, ica.ErrorMessage(err), "503 ServerBusy")
	require.EqualValues(t, 3, calls.Load(), "one try and two retries")
	requireNoSecret(t, err, azuriteKey)
}

func TestArchive_WrongKey(t *testing.T) {
	t.Parallel()
	cs := azurite(t)
	wrongKey := "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
	cs = strings.Replace(cs, azuriteKey, wrongKey, 1)
	if !strings.Contains(cs, wrongKey) {
		t.Skip("ICA_TEST_AZURITE does not use the well-known key")
	}
	a := newArchive(t, cs, "")
	_, err := a.Upload(context.Background(), "x.csv", strings.NewReader("data"), "text/csv", nil)
	requireCode(t, err, ica.EFORBIDDEN)
	requireNoSecret(t, err, wrongKey)
}

func TestArchive_SASNotInErrors(t *testing.T) {
	t.Parallel()
	sig := "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
	cs := "BlobEndpoint=http://" + closedPort(t) + "/devstoreaccount1;SharedAccessSignature=sv=2021-08-06&ss=b&srt=sco&sp=rwc&se=2030-01-01T00:00:00Z&sig=" + sig
	a, err := New(Config{ConnectionString: cs, Retries: -1}, nil)
	require.NoError(t, err)
	url, err := a.Upload(context.Background(), "x.csv", strings.NewReader("data"), "", nil)
	requireCode(t, err, ica.EUNAVAILABLE)
	require.Empty(t, url)
	requireNoSecret(t, err, sig, "c2VjcmV0LXNpZ25hdHVyZQ")
	require.NotContains(t, a.URL(), "sig=")
}

func TestNew_Config(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing", Config{}, "not configured"},
		{"both", Config{ConnectionString: defaultAzurite, AccountURL: "https://a.blob.core.windows.net/"}, "not both"},
		{"bad container", Config{ConnectionString: defaultAzurite, Container: "Exports"}, "container name"},
		{"bad prefix", Config{ConnectionString: defaultAzurite, Prefix: "../"}, "segments"},
		{"bad url", Config{AccountURL: "ftp://x"}, "not an http(s) URL"},
		{"malformed connection string", Config{ConnectionString: "AccountKey=" + azuriteKey}, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, fakeCred{})
			requireCode(t, err, ica.EINVALID)
			require.Contains(t, err.Error(), tc.want)
			requireNoSecret(t, err, azuriteKey)
		})
	}

	a, err := New(Config{AccountURL: "https://acct.blob.core.windows.net/", Container: "exports"}, fakeCred{})
	require.NoError(t, err)
	require.Equal(t, "https://acct.blob.core.windows.net/exports", a.URL())
}

func TestArchive_Upload_Invalid(t *testing.T) {
	t.Parallel()
	a, err := New(Config{ConnectionString: defaultAzurite}, nil)
	require.NoError(t, err)
	ctx := context.Background()
	for _, name := range []string{"", "a/../b", "dir/", "x\n.csv", strings.Repeat("a", 1025)} {
		_, err := a.Upload(ctx, name, strings.NewReader("x"), "", nil)
		requireCode(t, err, ica.EINVALID)
	}
	_, err = a.Upload(ctx, "ok.csv", strings.NewReader("x"), "", map[string]string{"bad-key": "v"})
	requireCode(t, err, ica.EINVALID)
	_, err = a.Upload(ctx, "ok.csv", strings.NewReader("x"), "", map[string]string{"k": "é"})
	requireCode(t, err, ica.EINVALID)
}

func TestDownloadReader_MD5Mismatch(t *testing.T) {
	t.Parallel()
	want := md5.Sum([]byte("original"))
	d := &downloadReader{rc: io.NopCloser(strings.NewReader("tampered")), a: &Archive{}, name: "x", want: want[:], h: md5.New()}
	_, err := io.ReadAll(d)
	requireCode(t, err, ica.EUNAVAILABLE)
	require.Contains(t, err.Error(), "do not match")
}

type fakeCred struct{}

func (fakeCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}
