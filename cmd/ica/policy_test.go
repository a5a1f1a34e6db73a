package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/policy"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

func TestConfig_DeploymentPolicy(t *testing.T) {
	dir := t.TempDir()
	load := func(yaml string, env map[string]string) (*Config, error) {
		p := filepath.Join(dir, "ica.yaml")
		require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
		return loadConfig(p, envFunc(env))
	}
	// The example configuration's policy is valid and complete.
	cfg, err := load(exampleConfig, map[string]string{"ICA_MATTERMOST_TOKEN": "bot-token"})
	require.NoError(t, err)
	prod := cfg.deploymentPolicy().Targets["production"]
	require.Equal(t, []string{"refs/heads/main", "refs/heads/release/*"}, prod.Branches)
	require.Equal(t, "Europe/Berlin", prod.TZ)
	require.Len(t, prod.Windows, 2)
	require.Equal(t, policy.ExclusiveSequential, prod.Exclusive)
	require.Equal(t, 2, prod.TechnicalRequired)
	require.Equal(t, 30*time.Minute, prod.Requires.Bake.D())
	require.Equal(t, 4*time.Hour, cfg.deploymentPolicy().UseWindow.D())
	require.Equal(t, webhooks.Scope{Role: webhooks.RolePipeline, Pipelines: []string{"payments", "payments-worker"}}, cfg.tokenScopes()["payments-team"])

	for yaml, key := range map[string]string{
		"approval:\n  targets:\n    production:\n      windows: [{days: [mon, someday], from: '09:00', to: '17:00'}]\n": "approval.targets.production.windows[0].days",
		"approval:\n  targets:\n    production:\n      tz: Atlantis/Capital\n":                                          "approval.targets.production.tz",
		"approval:\n  targets:\n    production:\n      windows: [{days: [mon], from: '9', to: '17:00'}]\n":              "approval.targets.production.windows[0].from",
		"approval:\n  targets:\n    staging:\n      blackouts: [{from: 2026-12-24, to: 2026-12-01}]\n":                  "approval.targets.staging.blackouts[0].to",
		"approval:\n  targets:\n    production:\n      technical_required: 3\n      technical_approvers: [a, b]\n":      "approval.targets.production.technical_required",
		"approval:\n  targets:\n    production:\n      exclusive: yes-please\n":                                         "approval.targets.production.exclusive",
		"approval:\n  targets:\n    production:\n      requires: {target: production}\n":                                "approval.targets.production.requires.target",
		"approval:\n  targets:\n    production:\n      lock_timeout: forever\n":                                         `line 4: "forever" is not a duration`,
	} {
		_, err := load(yaml, nil)
		require.Error(t, err, yaml)
		require.Contains(t, err.Error(), key, yaml)
	}

	cfg, err = load("approval:\n  timeout: 4h\n", map[string]string{
		"ICA_PIPELINE_TOKENS":     "ado=secret-token-0000000001,pay=secret-token-0000000002@payments|payments-worker",
		"ICA_CHECK_TOKENS":        "check=secret-token-0000000003@payments",
		"ICA_APPROVAL_USE_WINDOW": "90m",
	})
	require.NoError(t, err)
	require.Equal(t, 90*time.Minute, cfg.Approval.UseWindow)
	require.Equal(t, "secret-token-0000000002", cfg.PipelineTokens[1].Token)
	require.Equal(t, map[string]webhooks.Scope{
		"pay":   {Role: webhooks.RolePipeline, Pipelines: []string{"payments", "payments-worker"}},
		"check": {Role: webhooks.RoleCheck, Pipelines: []string{"payments"}},
	}, cfg.tokenScopes())
	_, err = load("log_level: info\n", map[string]string{"ICA_CHECK_TOKENS": "check=secret-token-0000000003"})
	require.ErrorContains(t, err, `token "check" must name the pipelines`)
	_, err = load("log_level: info\n", map[string]string{"ICA_PIPELINE_TOKENS": "x=secret-token-0000000001", "ICA_CHECK_TOKENS": "x=secret-token-0000000003@p"})
	require.ErrorContains(t, err, "names must differ")
	_, err = load("log_level: info\n", map[string]string{"ICA_APPROVAL_USE_WINDOW": "0s"})
	require.ErrorContains(t, err, "ICA_APPROVAL_USE_WINDOW")
	_, err = load("log_level: info\n", map[string]string{"ICA_BREAKGLASS_TOKENS": "sre=secret@with-at-sign-0001"})
	require.NoError(t, err, "only pipeline and check tokens take a scope")
}

func TestMain_PolicyRecordedApplyExplain(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "ica.yaml")
	write := func(windows string) {
		require.NoError(t, os.WriteFile(conf, []byte("approval:\n  targets:\n    production:\n      branches: [refs/heads/main]\n      tz: Europe/Berlin\n"+windows), 0o600))
	}
	write("")
	addr := freeAddr(t)
	env := map[string]string{"ICA_ADDR": addr, "ICA_DATA_DIR": dir, "ICA_PIPELINE_TOKENS": "ado=" + testToken, "ICA_CONFIG": conf}
	base, stop, logs := startServe(t, env)
	defer func() { require.Equal(t, 0, stop()) }()
	require.Contains(t, logs.String(), "deployment policy recorded")

	code, out := icaCmd(t, nil, "policy", "show", "--data-dir", dir)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, `"branches": [`)
	st, body := call(t, "GET", base+"/readyz", "", "")
	require.Equal(t, 200, st)
	require.Equal(t, "ok", body["checks"].(map[string]any)["policy"])

	// A run from another branch is refused and the refusal is recorded.
	st, _ = call(t, "POST", base+"/api/v1/runs", testToken, `{"pipeline_name":"web","run_id":"7","branch":"refs/heads/dev","commit":"9fceb02d0ae598e95dc970b74767f19372d61af8","triggered_by":"jane"}`)
	require.Equal(t, 201, st)
	st, body = call(t, "POST", base+"/api/v1/approvals", testToken, `{"run_id":"7","deployment_target":"production","estimated_cost":1}`)
	require.Equal(t, 422, st)
	require.Equal(t, "branch", body["error"].(map[string]any)["field"])

	code, out = icaCmd(t, nil, "policy", "explain", "--run", "7", "--target", "production", "--data-dir", dir)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "Run 7 → production: no approval requested yet")
	require.Regexp(t, `NO\s+branch\s+production accepts deployments only from refs/heads/main; run 7 is from refs/heads/dev`, out)

	// ica policy apply records a change, listing it; the server's own file
	// now differs, and /readyz says so (degraded, still 200).
	write("      windows: [{days: [mon, tue, wed, thu, fri], from: '09:00', to: '17:00'}]\n")
	code, out = icaCmd(t, nil, "policy", "apply", conf, "--data-dir", dir)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "approval.targets.production.windows: added")
	code, out = icaCmd(t, nil, "policy", "apply", conf, "--data-dir", dir)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "nothing recorded")
	st, body = call(t, "GET", base+"/readyz", "", "")
	require.Equal(t, 200, st)
	require.Contains(t, body["checks"].(map[string]any)["policy"], "is not this replica's configuration")

	// A bad policy file is refused with the key named.
	require.NoError(t, os.WriteFile(conf, []byte("approval:\n  targets:\n    production:\n      windows: [{days: [mon], from: '09:00', to: '09:00'}]\n"), 0o600))
	code, out = icaCmd(t, nil, "policy", "apply", conf, "--data-dir", dir)
	require.Equal(t, 1, code)
	require.Contains(t, out, "approval.targets.production.windows[0].to")
	require.False(t, strings.Contains(out, "Recorded"))
}

// TestPolicyState_ReloadAndReadiness: a reload records the changed policy
// (one process on its own ledger); a policy recorded by someone else (ica
// policy apply, another replica) makes /readyz say so.
func TestPolicyState_ReloadAndReadiness(t *testing.T) {
	dir := t.TempDir()
	cfg := defaultConfig()
	cfg.DataDir = dir
	key, err := loadSigningKey(cfg)
	require.NoError(t, err)
	st, err := store.Open(ledgerPath(dir), store.Options{Key: key})
	require.NoError(t, err)
	defer st.Close()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ps, err := startPolicy(ctx, st, cfg, "test", log)
	require.NoError(t, err)
	require.NoError(t, ps.ready(ctx))
	first, err := st.CurrentPolicy(ctx)
	require.NoError(t, err)

	tp := cfg.Approval.Targets["production"]
	tp.Branches = []string{"refs/heads/main"}
	cfg.Approval.Targets = map[string]TargetPolicy{"production": tp}
	require.NoError(t, ps.apply(ctx, cfg, "reload (SIGHUP)", log))
	cur, err := st.CurrentPolicy(ctx)
	require.NoError(t, err)
	require.Equal(t, first.Hash, cur.Previous)
	require.Equal(t, "reload (SIGHUP)", cur.Source)
	require.NoError(t, ps.ready(ctx))

	other := cfg.deploymentPolicy()
	pt := other.Targets["production"]
	pt.TechnicalRequired = 1
	pt.Exclusive = policy.ExclusiveLatest
	other.Targets["production"] = pt
	_, _, err = st.RecordPolicy(ctx, other, "ica policy apply other.yaml", "ica policy apply")
	require.NoError(t, err)
	require.ErrorContains(t, ps.ready(ctx), "is not this replica's configuration")
}

// TestMain_ScopedTokenAndWholeLedgerReads: the dashboard's figures and
// proofs span every pipeline, so a token limited to some is refused them.
func TestMain_ScopedTokenAndWholeLedgerReads(t *testing.T) {
	const scoped = "secret-token-0000000002"
	env := map[string]string{"ICA_ADDR": "127.0.0.1:0", "ICA_DATA_DIR": t.TempDir(),
		"ICA_PIPELINE_TOKENS": "ado=" + testToken + ",pay=" + scoped + "@payments"}
	base, stop, logs := startServe(t, env)
	defer func() { require.Equal(t, 0, stop(), logs.String()) }()
	st, body := call(t, "GET", base+"/api/v1/stats", scoped, "")
	require.Equal(t, 403, st, body)
	require.Contains(t, body["error"].(map[string]any)["message"], "covers every pipeline")
	st, body = call(t, "GET", base+"/api/v1/stats", testToken, "")
	require.Equal(t, 200, st, body)
	st, body = call(t, "GET", base+"/api/v1/ledger/proof?seq=1", scoped, "")
	require.Equal(t, 403, st, body)
}
