package main

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConfig_ValidateListsEveryProblem(t *testing.T) {
	code, out, errOut := icaCmd2(t, nil, "config", "validate")
	require.Equal(t, 0, code, out+errOut)
	require.Contains(t, out, "ok: the environment and the defaults make a valid configuration")

	// Each bad setting is named by its variable, all in one run.
	bad := map[string]string{
		"ICA_LOG_LEVEL":          "verbose",
		"ICA_RATE_LIMIT":         "-1",
		"ICA_APPROVAL_TIMEOUT":   "30m",
		"ICA_REMINDER_BEFORE":    "1h",
		"ICA_SIGNING_KEY":        "abc",
		"ICA_ACTION_SECRET":      "zz",
		"ICA_MONTHLY_BUDGET":     "lots",
		"ICA_BUDGET_THRESHOLD":   "1.5",
		"ICA_PIPELINE_TOKENS":    "justasecret",
		"ICA_BREAKGLASS_TOKENS":  "sre=short",
		"ICA_MATTERMOST_URL":     "ftp://mattermost",
		"ICA_ADDR":               "8080",
		"ICA_COST_SYNC_INTERVAL": "daily",
		"ICA_PAGERDUTY_BURST":    "-3",
		"ICA_ENTRA_TENANT_ID":    "contoso",
	}
	code, out, _ = icaCmd2(t, bad, "config", "validate")
	require.Equal(t, 1, code, out)
	problems := regexp.MustCompile(`(?m)^  - `).FindAllStringIndex(out, -1)
	for v := range bad {
		require.Contains(t, out, v, "the problem names %s", v)
	}
	// One problem per variable, but the timeout and the reminder make one
	// together, the Mattermost URL also lacks its token and public URL, and
	// the tenant its audience.
	require.Len(t, problems, len(bad)-1+3, "every problem is listed:\n%s", out)
	require.NotContains(t, out, "justasecret", "problems never repeat a secret")
	require.NotContains(t, out, "tiny-secret", "problems never repeat a secret")

	// The same configuration refuses to serve, naming the variables, and
	// creates nothing.
	dir := filepath.Join(t.TempDir(), "data")
	env := map[string]string{"ICA_DATA_DIR": dir}
	for k, v := range bad {
		env[k] = v
	}
	env["ICA_ADDR"] = "127.0.0.1:0"
	code, _, errOut = icaCmd2(t, env, "serve")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "ICA_LOG_LEVEL")
	require.Contains(t, errOut, "ICA_REMINDER_BEFORE")
	require.NoDirExists(t, dir)
}

func TestConfig_StartRefusesNonsense(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unknown log level", map[string]string{"ICA_LOG_LEVEL": "loud"}, "log_level (ICA_LOG_LEVEL)"},
		{"negative rate limit", map[string]string{"ICA_RATE_LIMIT": "-5"}, "rate_limit (ICA_RATE_LIMIT)"},
		{"negative source rate limit", map[string]string{"ICA_SOURCE_RATE_LIMIT": "-1"}, "source_rate_limit (ICA_SOURCE_RATE_LIMIT)"},
		{"a proxy that is not a CIDR", map[string]string{"ICA_TRUSTED_PROXIES": "10.0.0.0/8,ingress.local"}, `trusted_proxies (ICA_TRUSTED_PROXIES): "ingress.local"`},
		{"every address a proxy", map[string]string{"ICA_TRUSTED_PROXIES": "0.0.0.0/0"}, "would trust every client's X-Forwarded-For"},
		{"reminder as long as the timeout", map[string]string{"ICA_APPROVAL_TIMEOUT": "2h", "ICA_REMINDER_BEFORE": "2h"}, "ICA_REMINDER_BEFORE"},
		{"negative reminder", map[string]string{"ICA_REMINDER_BEFORE": "-1m"}, "ICA_REMINDER_BEFORE"},
		{"zero timeout", map[string]string{"ICA_APPROVAL_TIMEOUT": "0s"}, "ICA_APPROVAL_TIMEOUT"},
		{"signing key not hex", map[string]string{"ICA_SIGNING_KEY": "0xabc"}, "signing_key (ICA_SIGNING_KEY)"},
		{"Mattermost without public URL", map[string]string{"ICA_MATTERMOST_URL": "https://mm.example.com", "ICA_MATTERMOST_TOKEN": "t"}, "ICA_PUBLIC_URL"},
		{"bad token hash", map[string]string{}, ""},
	} {
		if c.want == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			_, err := loadConfig("", envFunc(c.env))
			require.ErrorContains(t, err, c.want)
		})
	}

	// A short timeout with the default reminder is fine: no reminder then.
	c, err := loadConfig("", envFunc(map[string]string{"ICA_APPROVAL_TIMEOUT": "30m"}))
	require.NoError(t, err)
	require.Zero(t, c.target("production").ReminderBefore)
	c, err = loadConfig("", envFunc(nil))
	require.NoError(t, err)
	require.Equal(t, time.Hour, c.target("production").ReminderBefore, "the default reminder")
	c, err = loadConfig("", envFunc(map[string]string{"ICA_REMINDER_BEFORE": "0s"}))
	require.NoError(t, err)
	require.Zero(t, c.target("staging").ReminderBefore, "0 turns the reminder off")
}

func TestConfig_ValidateFileProblems(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ica.yaml")
	require.NoError(t, os.WriteFile(p, []byte(`addr: 127.0.0.1:8080
log_levle: debug
rate_limit: -2
approval:
  timeout: 1h
  targets:
    staging:
      timeout: 20m
      reminder_before: 30m
    prod:
      timeout: 1h
pipeline_tokens:
  - name: ado
    sha256: nothex
`), 0o600))
	code, out, _ := icaCmd2(t, nil, "config", "validate", "--config", p)
	require.Equal(t, 1, code, out)
	for _, want := range []string{
		p + ": line 2: field log_levle not found",
		"rate_limit (ICA_RATE_LIMIT) -2",
		"approval.targets.staging.reminder_before 30m0s must be shorter than the staging timeout 20m0s",
		`approval.targets: unknown target "prod"`,
		`pipeline_tokens (ICA_PIPELINE_TOKENS) "ado": sha256 is not 64 hex digits`,
	} {
		require.Contains(t, out, want)
	}
	code, out, _ = icaCmd2(t, map[string]string{"ICA_CONFIG": p}, "config", "validate")
	require.Equal(t, 1, code, "ICA_CONFIG names the file too")
	require.Contains(t, out, "log_levle")

	code, out, _ = icaCmd2(t, nil, "config", "validate", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	require.Equal(t, 1, code)
	require.Contains(t, out, "missing.yaml")

	code, _, errOut := icaCmd2(t, nil, "config", "validate", p)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--config")
	code, _, _ = icaCmd2(t, nil, "config", "frobnicate")
	require.Equal(t, 2, code)
}

// TestConfig_ExampleStartsAsWritten writes `ica config example` to a file,
// validates it and serves it: only where to listen and where to keep the
// ledger come from the environment.
func TestConfig_ExampleStartsAsWritten(t *testing.T) {
	code, example, _ := icaCmd2(t, nil, "config", "example")
	require.Equal(t, 0, code)
	p := filepath.Join(t.TempDir(), "ica.yaml")
	require.NoError(t, os.WriteFile(p, []byte(example), 0o600))

	code, out, _ := icaCmd2(t, nil, "config", "validate", "--config", p)
	require.Equal(t, 0, code, out)

	base, stop, logs := startServe(t, map[string]string{"ICA_CONFIG": p, "ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": t.TempDir()})
	st, _ := call(t, "GET", base+"/healthz", "", "")
	require.Equal(t, 200, st)
	require.Equal(t, 0, stop())
	require.Contains(t, logs.String(), "Mattermost delivery disabled")
}

// TestREADME_ConfigTableNamesEveryVariable fails when the code reads an
// ICA_… variable that the README's configuration table does not describe.
func TestREADME_ConfigTableNamesEveryVariable(t *testing.T) {
	read := map[string]bool{}
	varRe := regexp.MustCompile(`"(ICA_[A-Z0-9_]+)"`)
	for _, dir := range []string{".", "../../pipelines"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		require.NoError(t, err)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			raw, err := os.ReadFile(f)
			require.NoError(t, err)
			for _, m := range varRe.FindAllStringSubmatch(string(raw), -1) {
				read[m[1]] = true
			}
		}
	}
	require.Greater(t, len(read), 40)

	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	section := string(readme)
	start := strings.Index(section, "\n## Configuration")
	require.Positive(t, start)
	section = section[start+1:]
	if end := strings.Index(section, "\n## "); end > 0 {
		section = section[:end]
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "| `ICA_") {
			cell := strings.SplitN(line, "|", 3)[1]
			for _, m := range regexp.MustCompile(`ICA_[A-Z0-9_]+`).FindAllString(cell, -1) {
				documented[m] = true
			}
		}
	}
	var missing []string
	for v := range read {
		if !documented[v] {
			missing = append(missing, v)
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "variables the code reads but the README's configuration table does not describe")
}
