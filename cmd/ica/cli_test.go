package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// icaCmd2 runs the real run() and returns the exit code, stdout and stderr apart.
func icaCmd2(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"ica"}, args...), envFunc(env), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestMain_HelpForEveryCommand(t *testing.T) {
	cases := [][]string{
		{"serve"}, {"config"}, {"config", "example"}, {"config", "validate"}, {"check"}, {"backup"}, {"backup", "FILE"},
		{"restore"}, {"health"}, {"export"}, {"verify"}, {"key"}, {"token"}, {"token", "hash"}, {"version"},
		{"run"}, {"run", "start"}, {"approval"}, {"approval", "wait"},
	}
	for _, c := range cases {
		for _, h := range []string{"--help", "-h"} {
			args := append(append([]string{}, c...), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				dir := t.TempDir()
				code, out, errOut := icaCmd2(t, map[string]string{"ICA_DATA_DIR": dir}, args...)
				require.Equal(t, 0, code, errOut)
				require.Regexp(t, `(?i)^usage: ica `+regexp.QuoteMeta(c[0]), out)
				require.Empty(t, errOut)
				require.NotRegexp(t, `(?m)^[0-9a-f]{64}$`, out, "help, not a hash of the word help")
				entries, _ := os.ReadDir(dir)
				require.Empty(t, entries, "help touches nothing")
			})
		}
	}
	code, out, _ := icaCmd2(t, nil, "help", "export")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Usage: ica export")
	code, out, _ = icaCmd2(t, nil, "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "ica config validate")
}

// TestMain_HelpNamesEveryFlag keeps each command's help text equal to its
// flags: a flag the command defines is described in its --help.
func TestMain_HelpNamesEveryFlag(t *testing.T) {
	flagLine := regexp.MustCompile(`(?m)^  -([a-z-]+)`)
	for _, c := range [][]string{{"serve"}, {"check"}, {"backup", "x"}, {"restore", "x"}, {"health"}, {"export"},
		{"verify", "x"}, {"key"}, {"config", "validate"}, {"proof", "A-1"}, {"verify-proof", "x"}} {
		t.Run(c[0], func(t *testing.T) {
			code, _, errOut := icaCmd2(t, nil, append(c, "--no-such-flag")...)
			require.Equal(t, 2, code, errOut)
			require.Contains(t, errOut, "flag provided but not defined")
			flags := flagLine.FindAllStringSubmatch(errOut, -1)
			require.NotEmpty(t, flags, errOut)
			help := commandHelp[c[0]]
			for _, f := range flags {
				require.Contains(t, help, "--"+f[1], "ica %s --help describes --%s", c[0], f[1])
			}
		})
	}
}

func TestMain_TokenHash(t *testing.T) {
	code, out, _ := icaCmd2(t, nil, "token", "hash", "s3cret")
	require.Equal(t, 0, code)
	require.Equal(t, "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0\n", out)
	code, _, errOut := icaCmd2(t, nil, "token", "hash", "a", "b")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "ica token --help")
	code, _, errOut = icaCmd2(t, nil, "token", "hash", "--", "--help")
	require.Equal(t, 0, code, "after --, --help is a token: %s", errOut)
}

func TestMain_Version(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := icaCmd2(t, nil, args...)
		require.Equal(t, 0, code)
		require.Regexp(t, `^ica \S+`, out)
	}
	code, _, errOut := icaCmd2(t, nil, "version", "extra")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "takes no arguments")

	defer func(v, r string) { version, revision = v, r }(version, revision)
	version, revision = "v1.2.3", "0123456789abcdef0123456789abcdef01234567"
	require.Regexp(t, `^ica v1\.2\.3 \(revision 0123456789abcdef0123456789abcdef01234567; go\d`, versionString())
	revision = "0123456789abcdef0123456789abcdef01234567-modified"
	require.Contains(t, versionString(), "0123456789abcdef0123456789abcdef01234567, modified;")
	version, revision = "v9.9.9-test", ""
	require.Equal(t, "ica v9.9.9-test", versionString(), "the container image's form (deploy tests)")

	mk, err := os.ReadFile("../../Makefile")
	require.NoError(t, err)
	require.Contains(t, string(mk), "-X main.revision=", "make build passes the revision: builds here use -buildvcs=false")
}

func TestMain_Key(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	want := hex.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))

	code, out, errOut := icaCmd2(t, map[string]string{"ICA_SIGNING_KEY": hex.EncodeToString(seed)}, "key", "--data-dir", t.TempDir())
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "public key:  "+want+"\nfingerprint: "+ica.KeyFingerprint(want)+"\n", out)

	// From the data directory, the way serve keeps it.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "signing.key"), []byte(hex.EncodeToString(seed)+"\n"), 0o600))
	code, out, _ = icaCmd2(t, map[string]string{"ICA_DATA_DIR": dir}, "key")
	require.Equal(t, 0, code)
	require.Contains(t, out, want)

	// Missing: says where it looked, creates nothing.
	empty := t.TempDir()
	code, _, errOut = icaCmd2(t, nil, "key", "--data-dir", empty)
	require.Equal(t, 1, code)
	abs, _ := filepath.Abs(filepath.Join(empty, "signing.key"))
	require.Contains(t, errOut, abs)
	require.Contains(t, errOut, "ICA_SIGNING_KEY")
	require.NoFileExists(t, filepath.Join(empty, "signing.key"))

	code, _, errOut = icaCmd2(t, map[string]string{"ICA_SIGNING_KEY": "not-hex"}, "key", "--data-dir", empty)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "ICA_SIGNING_KEY")
	require.NotContains(t, errOut, "signing.key:")
}

// TestMain_ToolsFindTheLedgerAsServeDoes runs check, export, backup and key
// from another directory: they find the ledger through ICA_DATA_DIR, the
// configuration's data_dir or --data-dir, and otherwise say where they looked.
func TestMain_ToolsFindTheLedgerAsServeDoes(t *testing.T) {
	dir := t.TempDir()
	seedLedger(t, dir)
	cfg := filepath.Join(t.TempDir(), "ica.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("data_dir: "+dir+"\n"), 0o600))
	elsewhere := t.TempDir()
	t.Chdir(elsewhere)

	for name, env := range map[string]map[string]string{
		"ICA_DATA_DIR": {"ICA_DATA_DIR": dir},
		"ICA_CONFIG":   {"ICA_CONFIG": cfg},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := icaCmd2(t, env, "check")
			require.Equal(t, 0, code, errOut)
			require.Contains(t, out, "ok: the hash chain")
			bk := filepath.Join(t.TempDir(), "b.db")
			code, _, errOut = icaCmd2(t, env, "backup", bk)
			require.Equal(t, 0, code, errOut)
			code, _, errOut = icaCmd2(t, env, "export", "--out", filepath.Join(t.TempDir(), "e.csv"))
			require.Equal(t, 0, code, errOut)
			code, _, errOut = icaCmd2(t, env, "key")
			require.Equal(t, 0, code, errOut)
		})
	}
	code, _, errOut := icaCmd2(t, nil, "check", "--config", cfg)
	require.Equal(t, 0, code, errOut)

	// Nothing points at it: each tool names the path it tried and why.
	looked := filepath.Join(elsewhere, "data", "ica.db")
	for _, args := range [][]string{{"check"}, {"backup", filepath.Join(t.TempDir(), "b.db")}, {"export", "--out", filepath.Join(t.TempDir(), "e.csv")}} {
		code, _, errOut := icaCmd2(t, nil, args...)
		require.NotEqual(t, 0, code)
		require.Contains(t, errOut, "no ledger at "+looked+" (data directory from the default ./data)", args)
		require.Contains(t, errOut, "ICA_DATA_DIR")
	}
	code, _, errOut = icaCmd2(t, map[string]string{"ICA_DATA_DIR": "nowhere"}, "check")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, filepath.Join(elsewhere, "nowhere", "ica.db")+" (data directory from ICA_DATA_DIR)")
	entries, _ := os.ReadDir(elsewhere)
	require.Empty(t, entries, "nothing was created where nothing was found")
}

func TestMain_ExportRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	seedLedger(t, dir)
	out := filepath.Join(t.TempDir(), "audit.csv")
	require.NoError(t, os.WriteFile(out, []byte("keep me"), 0o600))
	env := map[string]string{"ICA_DATA_DIR": dir}

	code, _, errOut := icaCmd2(t, env, "export", "--out", out)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, out+" exists: pass --force")
	raw, _ := os.ReadFile(out)
	require.Equal(t, "keep me", string(raw), "untouched")

	code, stdout, errOut := icaCmd2(t, env, "export", "--out", out, "--force")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, stdout, "export written to "+out)
	raw, _ = os.ReadFile(out)
	require.Contains(t, string(raw), "# ica-manifest")

	// A path that cannot be written is named as given, not as a temporary file.
	bad := filepath.Join(t.TempDir(), "no-such-dir", "audit.csv")
	code, _, errOut = icaCmd2(t, env, "export", "--out", bad)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "cannot write "+bad)
	require.NotContains(t, errOut, ".ica-export-")

	for _, c := range []struct{ args []string }{
		{[]string{"export"}}, {[]string{"export", "--out", out, "--format", "xml"}}, {[]string{"export", "--out", out, "--from", "May"}},
		{[]string{"export", "stray", "--out", out}},
	} {
		code, _, errOut := icaCmd2(t, env, c.args...)
		require.Equal(t, 2, code, errOut)
		require.Contains(t, errOut, "ica export --help")
	}
}

func TestMain_ServeBindsBeforeCreatingAnything(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	dir := filepath.Join(t.TempDir(), "data")
	code, _, errOut := icaCmd2(t, map[string]string{"ICA_ADDR": ln.Addr().String(), "ICA_DATA_DIR": dir}, "serve")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "listen on "+ln.Addr().String()+" (ICA_ADDR)")
	require.NoDirExists(t, dir, "no data directory, ledger or keys for a server that cannot serve")
}
