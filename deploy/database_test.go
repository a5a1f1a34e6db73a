package deploy_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/bench"
	"github.com/ica-governance/ica/internal/pgtest"
)

// onDatabase is production on PostgreSQL: the database settings in a Secret
// of their own, the tokens and keys in the usual one.
const onDatabase = `
publicURL: https://ica.example.com
existingSecret: ica-prod
database:
  existingSecret: ica-db
ingress:
  enabled: true
  host: ica.example.com
serviceMonitor:
  enabled: true
backup:
  enabled: true
env:
  ICA_TECH_APPROVERS: tech1,tech2
`

// onDatabaseEntra reaches Azure Database for PostgreSQL with the pods'
// workload identity: no password anywhere.
const onDatabaseEntra = `
existingSecret: ica-prod
database:
  existingSecret: ica-db
  entra: true
workloadIdentity: true
serviceAccount:
  annotations:
    azure.workload.identity/client-id: 00000000-0000-0000-0000-000000000001
`

// TestChart_Database renders the chart on PostgreSQL and checks what keeps
// ICA available: replicas in a Deployment that never goes below its size
// during a rollout, a disruption budget, spreading over zones and nodes, the
// probes, the keys every replica must share, and the migration before an
// upgrade.
func TestChart_Database(t *testing.T) {
	m, out := render(t, onDatabase)

	require.Empty(t, m["StatefulSet"], "no StatefulSet: the ledger is in the database")
	require.Nil(t, m["Service"]["ica-headless"], "no governing Service without a StatefulSet")
	require.Empty(t, m["PersistentVolumeClaim"])

	dep := m["Deployment"]["ica"]
	require.NotNil(t, dep, "a Deployment named ica")
	spec := get(dep, "spec").(map[string]any)
	require.Equal(t, 2, spec["replicas"])
	require.Equal(t, "RollingUpdate", get(spec, "strategy", "type"))
	require.Equal(t, 0, get(spec, "strategy", "rollingUpdate", "maxUnavailable"), "a replica stops only once its successor is ready")
	require.Equal(t, 1, get(spec, "strategy", "rollingUpdate", "maxSurge"))
	selector := get(spec, "selector", "matchLabels").(map[string]any)
	podLabels := get(spec, "template", "metadata", "labels").(map[string]any)
	for k, v := range selector {
		require.Equal(t, v, podLabels[k], "the pods carry the selector's labels")
	}

	pdb := m["PodDisruptionBudget"]["ica"]
	require.NotNil(t, pdb, "a PodDisruptionBudget")
	require.Equal(t, 1, get(pdb, "spec", "minAvailable"))
	require.Equal(t, selector, get(pdb, "spec", "selector", "matchLabels"), "the budget covers the replicas")

	pod := get(spec, "template", "spec").(map[string]any)
	spread := map[string]map[string]any{}
	for _, c := range list(pod["topologySpreadConstraints"]) {
		spread[get(c, "topologyKey").(string)] = c.(map[string]any)
	}
	require.Len(t, spread, 2)
	for key, when := range map[string]string{"topology.kubernetes.io/zone": "ScheduleAnyway", "kubernetes.io/hostname": "DoNotSchedule"} {
		c := spread[key]
		require.NotNil(t, c, "spread over %s", key)
		require.Equal(t, 1, c["maxSkew"], key)
		require.Equal(t, when, c["whenUnsatisfiable"], key)
		require.Equal(t, selector, get(c, "labelSelector", "matchLabels"), key)
		require.Equal(t, []any{"pod-template-hash"}, c["matchLabelKeys"], "%s: each revision spreads on its own", key)
		require.Equal(t, "Honor", c["nodeTaintsPolicy"], "%s: a cordoned node is not a domain", key)
	}

	c := get(pod, "containers", "0").(map[string]any)
	require.Equal(t, []any{"serve", "--config", "/etc/ica/ica.yaml"}, c["args"])
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		require.Equal(t, path, get(c, probe, "httpGet", "path"), probe)
		require.Equal(t, "http", get(c, probe, "httpGet", "port"), probe)
	}
	require.Equal(t, 5, get(c, "lifecycle", "preStop", "sleep", "seconds"), "a stopping replica serves while the Service drops it")
	require.Equal(t, true, get(c, "securityContext", "readOnlyRootFilesystem"))
	require.Equal(t, true, get(pod, "securityContext", "runAsNonRoot"))

	// /data is the replica's own (the admin socket); the ledger is not there.
	require.NotNil(t, get(byName(pod["volumes"], "data"), "emptyDir"), "data is an emptyDir")
	require.Equal(t, "ica-config", get(byName(pod["volumes"], "config"), "configMap", "name"))

	env := c["env"]
	url := byName(env, "ICA_DATABASE_URL")
	require.NotContains(t, url, "value")
	require.Equal(t, "ica-db", get(url, "valueFrom", "secretKeyRef", "name"))
	require.Equal(t, "ICA_DATABASE_URL", get(url, "valueFrom", "secretKeyRef", "key"))
	require.NotEqual(t, true, get(url, "valueFrom", "secretKeyRef", "optional"), "the URL is required")
	for _, k := range []string{"ICA_DATABASE_PASSWORD", "ICA_DATABASE_ENTRA", "ICA_DATABASE_ENTRA_CLIENT_ID"} {
		require.Equal(t, "ica-db", get(byName(env, k), "valueFrom", "secretKeyRef", "name"), k)
		require.Equal(t, true, get(byName(env, k), "valueFrom", "secretKeyRef", "optional"), k)
	}
	require.Equal(t, "16", get(byName(env, "ICA_DATABASE_MAX_CONNS"), "value"))
	for _, k := range secretEnv {
		e := byName(env, k)
		require.NotNil(t, e, "%s comes from the Secret", k)
		require.NotContains(t, e, "value", "%s is not inlined", k)
		require.Equal(t, "ica-prod", get(e, "valueFrom", "secretKeyRef", "name"), k)
		required := k == "ICA_SIGNING_KEY" || k == "ICA_ACTION_SECRET"
		require.Equal(t, !required, get(e, "valueFrom", "secretKeyRef", "optional"),
			"%s: every replica signs with the same keys, so they are required", k)
	}
	require.Equal(t, "/data", get(byName(env, "ICA_DATA_DIR"), "value"))
	require.Equal(t, "$(POD_IP):9090", get(byName(env, "ICA_METRICS_ADDR"), "value"))

	// The migration runs before the new replicas, as a hook of the upgrade.
	job := m["Job"]["ica-migrate"]
	require.NotNil(t, job, "the migration Job")
	require.Equal(t, "pre-upgrade", get(job, "metadata", "annotations", "helm.sh/hook"))
	require.Contains(t, get(job, "metadata", "annotations", "helm.sh/hook-delete-policy"), "before-hook-creation")
	jpod := get(job, "spec", "template", "spec")
	require.Equal(t, "Never", get(jpod, "restartPolicy"))
	jc := get(jpod, "containers", "0")
	require.Equal(t, []any{"migrate"}, get(jc, "args"))
	require.Equal(t, get(c, "image"), get(jc, "image"), "the new version migrates")
	require.Equal(t, "ica-db", get(byName(get(jc, "env"), "ICA_DATABASE_URL"), "valueFrom", "secretKeyRef", "name"))
	require.Nil(t, byName(get(jc, "env"), "ICA_SIGNING_KEY"), "migrating needs no key")
	require.Equal(t, true, get(jc, "securityContext", "readOnlyRootFilesystem"))
	require.Equal(t, true, get(jpod, "securityContext", "runAsNonRoot"))

	// Backups and metrics work the same on replicas: any replica answers.
	require.NotNil(t, m["CronJob"]["ica-backup"])
	svc := m["Service"]["ica"]
	require.Equal(t, selector, get(svc, "spec", "selector"))
	require.Equal(t, "metrics", get(m["ServiceMonitor"]["ica"], "spec", "endpoints", "0", "port"))

	// The configuration is the same ConfigMap, and ICA accepts it.
	serveWithConfig(t, get(m["ConfigMap"]["ica-config"], "data", "ica.yaml").(string))
	require.NotContains(t, out, "ICA_DATABASE_URL: ", "no secret value anywhere")

	// Without the migration Job, and with more replicas.
	m, _ = render(t, onDatabase, "--set", "replicaCount=3", "--set", "database.migrationJob.enabled=false")
	require.Equal(t, 3, get(m["Deployment"]["ica"], "spec", "replicas"))
	require.Empty(t, m["Job"])

	// Before Kubernetes 1.30 there is no preStop sleep (and no shell in the image).
	m, _ = render(t, onDatabase, "--kube-version", "1.29.0")
	require.Nil(t, get(m["Deployment"]["ica"], "spec", "template", "spec", "containers", "0", "lifecycle"))
}

// TestChart_DatabaseEntra: Microsoft Entra authentication with the pods'
// workload identity, for the replicas and the migration Job alike.
func TestChart_DatabaseEntra(t *testing.T) {
	m, _ := render(t, onDatabaseEntra)
	for what, pod := range map[string]any{
		"replicas":  get(m["Deployment"]["ica"], "spec", "template"),
		"migration": get(m["Job"]["ica-migrate"], "spec", "template"),
	} {
		require.Equal(t, "true", get(pod, "metadata", "labels", "azure.workload.identity/use"), what)
		require.Equal(t, true, get(pod, "spec", "automountServiceAccountToken"), what)
		require.Equal(t, "ica", get(pod, "spec", "serviceAccountName"), what)
		env := get(pod, "spec", "containers", "0", "env")
		require.Equal(t, "true", get(byName(env, "ICA_DATABASE_ENTRA"), "value"), what)
		require.Equal(t, "ica-db", get(byName(env, "ICA_DATABASE_ENTRA_CLIENT_ID"), "valueFrom", "secretKeyRef", "name"),
			"%s: no client id in the values: the workload identity's comes from the webhook", what)
	}
	require.Equal(t, "00000000-0000-0000-0000-000000000001", get(m["ServiceAccount"]["ica"], "metadata", "annotations", "azure.workload.identity/client-id"))

	m, _ = render(t, onDatabaseEntra, "--set", "database.entraClientID=11111111-2222-3333-4444-555555555555")
	env := get(m["Deployment"]["ica"], "spec", "template", "spec", "containers", "0", "env")
	require.Equal(t, "11111111-2222-3333-4444-555555555555", get(byName(env, "ICA_DATABASE_ENTRA_CLIENT_ID"), "value"))
}

// TestChart_DatabaseServes runs what the chart renders: the migration Job's
// command with its environment, then two replicas with the Deployment's
// environment and configuration (Secret references resolved from a fake
// Secret) on one real PostgreSQL database, and a run recorded through one
// replica read through the other.
func TestChart_DatabaseServes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary")
	}
	dsn := pgtest.DSN(t)
	m, _ := render(t, onDatabase)
	secrets := map[string]map[string]string{
		"ica-db":   {"ICA_DATABASE_URL": dsn},
		"ica-prod": {"ICA_SIGNING_KEY": strings.Repeat("ab", 32), "ICA_ACTION_SECRET": strings.Repeat("cd", 32)},
	}
	bin := icaBinary(t)

	job := get(m["Job"]["ica-migrate"], "spec", "template", "spec", "containers", "0")
	cmd := exec.Command(bin, stringList(t, get(job, "args"))...)
	cmd.Env = append(baseEnv(), resolveEnv(t, get(job, "env"), secrets)...)
	cmd.Dir = t.TempDir() // the Job's working directory holds nothing
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "ica migrate as the Job runs it:\n%s", out)
	require.Contains(t, string(out), "is at schema version")

	c := get(m["Deployment"]["ica"], "spec", "template", "spec", "containers", "0")
	cfg := filepath.Join(t.TempDir(), "ica.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(get(m["ConfigMap"]["ica-config"], "data", "ica.yaml").(string)), 0o600))
	var env []string
	for _, kv := range resolveEnv(t, get(c, "env"), secrets) {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "ICA_ADDR", "ICA_METRICS_ADDR", "ICA_DATA_DIR", "POD_IP": // the pod's network and volume: StartServer's own
		case "ICA_CALLBACK_ADDR":
			env = append(env, "ICA_CALLBACK_ADDR=127.0.0.2:0") // each replica its own callback port
		default:
			env = append(env, kv)
		}
	}
	env = append(env, "ICA_CONFIG="+cfg)
	var replicas []*bench.Server
	for range 2 {
		s, err := bench.StartServer(context.Background(), bench.ServerOptions{Bin: bin, DataDir: t.TempDir(), Env: env, Wait: time.Minute})
		require.NoError(t, err, "a replica starts with the chart's environment")
		t.Cleanup(func() { _ = s.Stop(15 * time.Second) })
		replicas = append(replicas, s)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, s := range replicas {
		st, body, _, err := bench.DoJSON(context.Background(), client, http.MethodGet, s.URL()+"/readyz", "", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, st, "the readiness probe's path answers ready: %s", body)
	}
	// Replicas share the ledger: a run recorded through one is read
	// through the other (each has its own token from StartServer, with the
	// same actor name).
	start := `{"pipeline_name":"chart","run_id":"chart-1","branch":"main","commit":"0123456789abcdef0123456789abcdef01234567","triggered_by":"ci"}`
	st, body, _, err := bench.DoJSON(context.Background(), client, http.MethodPost, replicas[0].URL()+"/api/v1/runs", "Bearer "+replicas[0].Token, []byte(start))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, st, "%s", body)
	st, body, _, err = bench.DoJSON(context.Background(), client, http.MethodGet, replicas[1].URL()+"/api/v1/runs/chart-1", "Bearer "+replicas[1].Token, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, st, "the other replica reads the run: %s", body)
}

// baseEnv is the test's environment without ICA settings.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ICA_") {
			env = append(env, kv)
		}
	}
	return env
}

func stringList(t *testing.T, v any) []string {
	t.Helper()
	var out []string
	for _, x := range list(v) {
		s, ok := x.(string)
		require.True(t, ok, "%v is not a string", x)
		out = append(out, s)
	}
	return out
}

// resolveEnv turns a container's env list into KEY=value as the kubelet
// would: values, $(VAR) references to earlier entries, the pod IP, and
// Secret references (a missing required key fails the test, as the pod
// would not start; a missing optional one is left out).
func resolveEnv(t *testing.T, env any, secrets map[string]map[string]string) []string {
	t.Helper()
	seen := map[string]string{}
	var out []string
	for _, e := range list(env) {
		name := get(e, "name").(string)
		var val string
		switch {
		case get(e, "value") != nil:
			val = fmt.Sprint(get(e, "value"))
			for k, v := range seen {
				val = strings.ReplaceAll(val, "$("+k+")", v)
			}
		case get(e, "valueFrom", "fieldRef", "fieldPath") == "status.podIP":
			val = "127.0.0.1"
		case get(e, "valueFrom", "secretKeyRef") != nil:
			ref := get(e, "valueFrom", "secretKeyRef")
			v, ok := secrets[get(ref, "name").(string)][get(ref, "key").(string)]
			if !ok {
				require.Equal(t, true, get(ref, "optional"), "%s: the Secret %s has no key %s and the pod would not start", name, get(ref, "name"), get(ref, "key"))
				continue
			}
			val = v
		default:
			t.Fatalf("env %s: unsupported source %v", name, e)
		}
		seen[name] = val
		out = append(out, name+"="+val)
	}
	return out
}
