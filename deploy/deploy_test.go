package deploy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/ica-governance/ica/bench"
)

// helmModule is the Helm the chart is tested with; it is built from the Go
// module proxy, so CI needs nothing but Go.
const helmModule = "helm.sh/helm/v3/cmd/helm@v3.22.0"

// kubeVersion is what `helm template` renders for (offline it would assume
// an old cluster); AKS supports 1.29 and later.
const kubeVersion = "1.31.0"

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helm returns a Helm v3.22.0 binary: $ICA_TEST_HELM, or one built once per
// machine with `go install` into the user cache (GOCACHE keeps the compile
// cheap afterwards). It skips, loudly, only when the module cannot be fetched.
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		if p := os.Getenv("ICA_TEST_HELM"); p != "" {
			helmPath = p
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "ica-test", "helm-v3.22.0")
		bin := filepath.Join(dir, "helm")
		if _, err := os.Stat(bin); err == nil {
			helmPath = bin
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "install", helmModule)
		cmd.Dir = os.TempDir() // outside the module: go.mod is not consulted or changed
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "GOFLAGS=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			helmErr = fmt.Errorf("go install %s: %w\n%s", helmModule, err, out)
			return
		}
		helmPath = bin
	})
	if helmErr != nil {
		if bytes.Contains([]byte(helmErr.Error()), []byte("proxy")) || bytes.Contains([]byte(helmErr.Error()), []byte("dial tcp")) {
			t.Skipf("SKIPPING THE HELM CHART TESTS: the Go module proxy refused %s (set ICA_TEST_HELM to a helm v3.22 binary):\n%v", helmModule, helmErr)
		}
		t.Fatal(helmErr)
	}
	return helmPath
}

func chartDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("helm", "ica"))
	require.NoError(t, err)
	return d
}

// runHelm runs helm with args and returns stdout; it fails the test on error
// unless wantErr, in which case it returns the error output.
func runHelm(t *testing.T, wantErr bool, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Keep helm away from the developer's kube config and repositories.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home, "KUBECONFIG="+filepath.Join(home, "none"))
	err := cmd.Run()
	if wantErr {
		require.Error(t, err, "helm %v should fail", args)
		return stderr.String()
	}
	require.NoError(t, err, "helm %v:\n%s%s", args, stdout.String(), stderr.String())
	return stdout.String()
}

func writeValues(t *testing.T, values string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	require.NoError(t, os.WriteFile(p, []byte(values), 0o600))
	return p
}

// production is what an operator sets: an existing Secret, the Ingress with
// TLS, the ServiceMonitor and the backup CronJob.
const production = `
publicURL: https://ica.example.com
existingSecret: ica-prod
ingress:
  enabled: true
  host: ica.example.com
  annotations:
    cert-manager.io/cluster-issuer: letsencrypt
serviceMonitor:
  enabled: true
backup:
  enabled: true
persistence:
  storageClassName: managed-csi-premium
env:
  ICA_TECH_APPROVERS: tech1,tech2
config:
  log_level: info
  approval:
    timeout: 4h
    targets:
      production:
        technical_channel: sre
        business_approvers: [biz1]
  mattermost:
    url: https://mattermost.example.com
    team: engineering
  budget:
    monthly: 10000
`

// manifests are rendered objects by kind, then name.
type manifests map[string]map[string]map[string]any

func render(t *testing.T, values string, extra ...string) (manifests, string) {
	t.Helper()
	args := append([]string{"template", "ica", chartDir(t), "--namespace", "governance", "--kube-version", kubeVersion,
		"--values", writeValues(t, values)}, extra...)
	out := runHelm(t, false, args...)
	m := manifests{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "rendered YAML parses")
		if doc == nil {
			continue
		}
		kind, _ := doc["kind"].(string)
		name, _ := get(doc, "metadata", "name").(string)
		require.NotEmpty(t, kind)
		require.NotEmpty(t, name)
		if m[kind] == nil {
			m[kind] = map[string]map[string]any{}
		}
		require.NotContains(t, m[kind], name, "duplicate %s %s", kind, name)
		m[kind][name] = doc
	}
	return m, out
}

// get walks maps by key and lists by index ("0").
func get(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func list(v any) []any { l, _ := v.([]any); return l }

// byName finds the element of a list whose "name" is name.
func byName(l any, name string) map[string]any {
	for _, e := range list(l) {
		if m, ok := e.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	return nil
}

var secretEnv = []string{"ICA_PIPELINE_TOKENS", "ICA_BREAKGLASS_TOKENS", "ICA_ADMIN_TOKENS", "ICA_MATTERMOST_TOKEN",
	"ICA_SLASH_TOKENS", "ICA_ALERT_TOKEN", "ICA_PAGERDUTY_ROUTING_KEY", "ICA_ACTION_SECRET", "ICA_SIGNING_KEY", "ICA_BLOB_CONNECTION_STRING"}

func TestChart_Lint(t *testing.T) {
	dir := chartDir(t)
	runHelm(t, false, "lint", dir, "--strict", "--kube-version", kubeVersion)
	runHelm(t, false, "lint", dir, "--strict", "--kube-version", kubeVersion, "--values", writeValues(t, production))
	runHelm(t, false, "lint", dir, "--strict", "--kube-version", kubeVersion, "--values", writeValues(t, onDatabase))
	runHelm(t, false, "lint", dir, "--strict", "--kube-version", kubeVersion, "--values", writeValues(t, onDatabaseEntra))
}

// TestChart_Production renders the chart as production runs it and checks
// what keeps the ledger safe: one pod, its disk, probes, the security
// context, secrets only by reference.
func TestChart_Production(t *testing.T) {
	m, out := render(t, production)

	sts := m["StatefulSet"]["ica"]
	require.NotNil(t, sts, "a StatefulSet named ica")
	spec := get(sts, "spec").(map[string]any)
	require.Equal(t, 1, spec["replicas"], "bbolt has one writer")
	require.Equal(t, "OrderedReady", spec["podManagementPolicy"])
	require.Equal(t, "RollingUpdate", get(spec, "updateStrategy", "type"), "a StatefulSet deletes the old pod before starting the new one")
	require.Equal(t, "ica-headless", spec["serviceName"])
	require.NotNil(t, m["Service"]["ica-headless"])
	require.Equal(t, "None", get(m["Service"]["ica-headless"], "spec", "clusterIP"), "headless")

	vct := list(spec["volumeClaimTemplates"])
	require.Len(t, vct, 1)
	require.Equal(t, "data", get(vct[0], "metadata", "name"))
	require.Equal(t, []any{"ReadWriteOnce"}, get(vct[0], "spec", "accessModes"))
	require.Equal(t, "managed-csi-premium", get(vct[0], "spec", "storageClassName"))
	require.Equal(t, "20Gi", get(vct[0], "spec", "resources", "requests", "storage"))

	pod := get(spec, "template", "spec").(map[string]any)
	psc := pod["securityContext"].(map[string]any)
	require.Equal(t, true, psc["runAsNonRoot"])
	require.Equal(t, 65532, psc["runAsUser"])
	require.Equal(t, 65532, psc["fsGroup"], "the volume is writable by the non-root user")
	require.Equal(t, "RuntimeDefault", get(psc, "seccompProfile", "type"))

	containers := list(pod["containers"])
	require.Len(t, containers, 1)
	c := containers[0].(map[string]any)
	require.Equal(t, "ghcr.io/ica-governance/ica:0.1.0", c["image"])
	require.Equal(t, []any{"serve", "--config", "/etc/ica/ica.yaml"}, c["args"])
	csc := c["securityContext"].(map[string]any)
	require.Equal(t, true, csc["readOnlyRootFilesystem"])
	require.Equal(t, false, csc["allowPrivilegeEscalation"])
	require.Equal(t, []any{"ALL"}, get(csc, "capabilities", "drop"))

	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		require.Equal(t, path, get(c, probe, "httpGet", "path"), probe)
		require.Equal(t, "http", get(c, probe, "httpGet", "port"), probe)
	}
	require.Equal(t, 8080, get(byName(c["ports"], "http"), "containerPort"))
	require.Equal(t, 9090, get(byName(c["ports"], "metrics"), "containerPort"))
	require.NotNil(t, get(c, "resources", "requests", "memory"))
	require.NotNil(t, get(c, "resources", "limits", "memory"))

	mounts := map[string]string{}
	for _, v := range list(c["volumeMounts"]) {
		mounts[get(v, "name").(string)] = get(v, "mountPath").(string)
	}
	require.Equal(t, map[string]string{"data": "/data", "config": "/etc/ica", "tmp": "/tmp"}, mounts)
	require.Equal(t, "ica-config", get(byName(pod["volumes"], "config"), "configMap", "name"))
	require.Nil(t, byName(pod["volumes"], "data"), "data comes from the claim template, not a pod volume")

	env := c["env"]
	require.Equal(t, "/data", get(byName(env, "ICA_DATA_DIR"), "value"))
	require.Equal(t, "0.0.0.0:8080", get(byName(env, "ICA_ADDR"), "value"))
	// /metrics listens on the pod IP's metrics port, apart from the public listener.
	require.Equal(t, "status.podIP", get(byName(env, "POD_IP"), "valueFrom", "fieldRef", "fieldPath"))
	require.Equal(t, "$(POD_IP):9090", get(byName(env, "ICA_METRICS_ADDR"), "value"))
	envNames := []string{}
	for _, e := range list(env) {
		envNames = append(envNames, get(e, "name").(string))
	}
	require.Less(t, slices.Index(envNames, "POD_IP"), slices.Index(envNames, "ICA_METRICS_ADDR"), "POD_IP is defined before it is used")
	require.Equal(t, "https://ica.example.com", get(byName(env, "ICA_PUBLIC_URL"), "value"))
	require.Equal(t, "tech1,tech2", get(byName(env, "ICA_TECH_APPROVERS"), "value"))
	for _, k := range secretEnv {
		e := byName(env, k)
		require.NotNil(t, e, "%s comes from the Secret", k)
		require.NotContains(t, e, "value", "%s is not inlined", k)
		require.Equal(t, "ica-prod", get(e, "valueFrom", "secretKeyRef", "name"), k)
		require.Equal(t, k, get(e, "valueFrom", "secretKeyRef", "key"), k)
		require.Equal(t, k != "ICA_SIGNING_KEY", get(e, "valueFrom", "secretKeyRef", "optional"), "%s: only the signing key is required", k)
	}
	require.Empty(t, m["Secret"], "with existingSecret the chart creates no Secret")

	// The configuration is a ConfigMap, and ICA accepts it.
	cfg := get(m["ConfigMap"]["ica-config"], "data", "ica.yaml").(string)
	require.Contains(t, cfg, "technical_channel: sre")
	serveWithConfig(t, cfg)

	// Service and Ingress with TLS; /metrics is not published.
	svc := m["Service"]["ica"]
	require.Equal(t, get(spec, "selector", "matchLabels"), get(svc, "spec", "selector"))
	require.Equal(t, "http", get(svc, "spec", "ports", "0", "targetPort"))
	ing := m["Ingress"]["ica"]
	require.NotNil(t, ing)
	require.Equal(t, []any{"ica.example.com"}, get(ing, "spec", "tls", "0", "hosts"))
	require.Equal(t, "ica-tls", get(ing, "spec", "tls", "0", "secretName"))
	require.Equal(t, "letsencrypt", get(ing, "metadata", "annotations", "cert-manager.io/cluster-issuer"))
	var paths []string
	for _, p := range list(get(ing, "spec", "rules", "0", "http", "paths")) {
		paths = append(paths, get(p, "path").(string))
		require.Equal(t, "ica", get(p, "backend", "service", "name"))
	}
	require.Contains(t, paths, "/mattermost")
	require.Contains(t, paths, "/api/v1")
	require.Contains(t, paths, "/dashboard")
	require.NotContains(t, paths, "/metrics")
	require.NotContains(t, paths, "/")

	// The ServiceMonitor scrapes /metrics from the one Service (not also the headless one).
	sm := m["ServiceMonitor"]["ica"]
	require.NotNil(t, sm)
	require.Equal(t, "/metrics", get(sm, "spec", "endpoints", "0", "path"))
	require.Equal(t, "metrics", get(sm, "spec", "endpoints", "0", "port"))
	require.Equal(t, "metrics", get(byName(get(svc, "spec", "ports"), "metrics"), "targetPort"))
	for _, p := range list(get(ing, "spec", "rules", "0", "http", "paths")) {
		port := get(p, "backend", "service", "port", "name")
		require.NotEqual(t, "metrics", port, "the Ingress never routes to the metrics port")
		if get(p, "path") == "/mattermost" {
			require.Equal(t, "callbacks", port, "Mattermost's callbacks go to their own port")
		} else {
			require.Equal(t, "http", port)
		}
	}
	matched := 0
	for _, s := range m["Service"] {
		labels := get(s, "metadata", "labels").(map[string]any)
		all := true
		for k, v := range get(sm, "spec", "selector", "matchLabels").(map[string]any) {
			all = all && labels[k] == v
		}
		if all {
			matched++
		}
	}
	require.Equal(t, 1, matched, "the ServiceMonitor selects exactly one Service")

	// The backup CronJob: ica backup over HTTP into Blob, never two at once.
	cj := m["CronJob"]["ica-backup"]
	require.NotNil(t, cj)
	require.Equal(t, "Forbid", get(cj, "spec", "concurrencyPolicy"))
	job := get(cj, "spec", "jobTemplate", "spec", "template", "spec")
	bc := get(job, "containers", "0")
	require.Equal(t, []any{"backup", "--url", "http://ica.governance.svc:80", "--blob", "--blob-container", "ica-backups"}, get(bc, "args"))
	require.Equal(t, "ica-prod", get(byName(get(bc, "env"), "ICA_ADMIN_TOKENS"), "valueFrom", "secretKeyRef", "name"))
	require.NotContains(t, byName(get(bc, "env"), "ICA_ADMIN_TOKENS"), "value")
	require.Equal(t, true, get(bc, "securityContext", "readOnlyRootFilesystem"))
	require.Equal(t, true, get(job, "securityContext", "runAsNonRoot"))
	require.Equal(t, "/tmp", get(bc, "volumeMounts", "0", "mountPath"), "the download is written to an emptyDir")

	require.NotContains(t, out, "ICA_PIPELINE_TOKENS: ", "no secret value anywhere")
}

// TestChart_Defaults renders the chart without values: it still runs one
// ICA with its disk, and creates nothing optional.
func TestChart_Defaults(t *testing.T) {
	m, _ := render(t, "{}")
	require.Equal(t, 1, get(m["StatefulSet"]["ica"], "spec", "replicas"))
	require.Empty(t, m["Ingress"])
	require.Empty(t, m["ServiceMonitor"])
	require.Empty(t, m["CronJob"])
	serveWithConfig(t, get(m["ConfigMap"]["ica-config"], "data", "ica.yaml").(string))
}

// TestChart_ChartSecrets: without existingSecret the chart's Secret holds the
// values, and only the Secret does.
func TestChart_ChartSecrets(t *testing.T) {
	const tok = "ci=0123456789abcdef-pipeline-secret"
	m, _ := render(t, "secrets:\n  ICA_PIPELINE_TOKENS: \""+tok+"\"\n  ICA_ADMIN_TOKENS: backup=0123456789abcdef-admin\n  ICA_BLOB_CONNECTION_STRING: UseDevelopmentStorage=true\nbackup:\n  enabled: true\n")
	sec := m["Secret"]["ica-secrets"]
	require.NotNil(t, sec)
	require.Equal(t, tok, get(sec, "stringData", "ICA_PIPELINE_TOKENS"))
	require.NotContains(t, get(sec, "stringData"), "ICA_BREAKGLASS_TOKENS", "empty values are left out")
	require.Regexp(t, "^[0-9a-f]{64}$", get(sec, "stringData", "ICA_SIGNING_KEY"), "the signing key is generated into the Secret, never onto the volume")
	for kind, objs := range m {
		for name, o := range objs {
			if kind == "Secret" {
				continue
			}
			b, err := yaml.Marshal(o)
			require.NoError(t, err)
			require.NotContains(t, string(b), "pipeline-secret", "%s %s inlines a secret", kind, name)
		}
	}
	env := get(m["StatefulSet"]["ica"], "spec", "template", "spec", "containers", "0", "env")
	require.Equal(t, "ica-secrets", get(byName(env, "ICA_PIPELINE_TOKENS"), "valueFrom", "secretKeyRef", "name"))
	require.NotEmpty(t, get(m["StatefulSet"]["ica"], "spec", "template", "metadata", "annotations", "checksum/secret"),
		"a secret change rolls the pod")
}

func TestChart_Refuses(t *testing.T) {
	for name, c := range map[string]struct{ values, want string }{
		"ingress without host":        {"ingress: {enabled: true}", "ingress.host is required"},
		"backup without admin token":  {"backup: {enabled: true}", "needs an admin token"},
		"backup without blob storage": {"backup: {enabled: true}\nsecrets: {ICA_ADMIN_TOKENS: a=b}", "needs Blob Storage"},
		"database without keys":       {"database: {existingSecret: ica-db}", "needs ICA_SIGNING_KEY and ICA_ACTION_SECRET"},
		"database with one key":       {"database: {existingSecret: ica-db}\nsecrets: {ICA_SIGNING_KEY: " + strings.Repeat("ab", 32) + "}", "needs ICA_SIGNING_KEY and ICA_ACTION_SECRET"},
		"one replica with the PDB":    {"database: {existingSecret: ica-db}\nexistingSecret: ica\nreplicaCount: 1", "replicaCount must be at least 2"},
	} {
		t.Run(name, func(t *testing.T) {
			out := runHelm(t, true, "template", "ica", chartDir(t), "--kube-version", kubeVersion, "--values", writeValues(t, c.values))
			require.Contains(t, out, c.want)
		})
	}
}

var (
	icaOnce sync.Once
	icaBin  string
	icaErr  error
)

func icaBinary(t *testing.T) string {
	t.Helper()
	icaOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			icaErr = err
			return
		}
		dir, err := os.MkdirTemp("", "ica-deploy-test-")
		if err != nil {
			icaErr = err
			return
		}
		icaBin, icaErr = bench.BuildICA(context.Background(), root, dir)
	})
	require.NoError(t, icaErr)
	return icaBin
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return bench.RepoRoot(wd)
}

// serveWithConfig starts the real ica with the chart's configuration file
// (as the pod does) and checks it comes up.
func serveWithConfig(t *testing.T, cfg string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ica.yaml")
	require.NoError(t, os.WriteFile(p, []byte(cfg), 0o600))
	s, err := bench.StartServer(context.Background(), bench.ServerOptions{Bin: icaBinary(t), DataDir: t.TempDir(),
		Env: []string{"ICA_CONFIG=" + p, "ICA_MATTERMOST_TOKEN=x", "ICA_PUBLIC_URL=http://127.0.0.1:1"}})
	require.NoError(t, err, "ica serve accepts the chart's configuration")
	require.NoError(t, s.Stop(15*time.Second))
}

// dockerfile is the parsed deploy/Dockerfile: instructions with their
// arguments (continuation lines joined), grouped by stage.
type instr struct{ op, args string }

func parseDockerfile(t *testing.T) [][]instr {
	t.Helper()
	raw, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	var stages [][]instr
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		op, args, _ := strings.Cut(line, " ")
		op = strings.ToUpper(op)
		if op == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			return // ARG before the first FROM
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], instr{op, strings.TrimSpace(args)})
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(l, " \t"), "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		flush()
	}
	flush()
	return stages
}

func find(st []instr, op string) []string {
	var out []string
	for _, i := range st {
		if i.op == op {
			out = append(out, i.args)
		}
	}
	return out
}

// TestDockerfile checks the image's properties (Docker cannot run here):
// multi-stage, static binary, non-root, /data volume, health check.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage")
	build, final := stages[0], stages[len(stages)-1]
	require.Regexp(t, `^golang:\$\{GO_VERSION\} AS build$`, find(build, "FROM")[0])
	buildText := fmt.Sprint(build)
	require.Contains(t, buildText, "CGO_ENABLED=0")
	require.Contains(t, buildText, "-trimpath")
	require.Contains(t, buildText, "-X main.version=${VERSION}")
	require.Contains(t, buildText, "-buildid=")
	require.Contains(t, buildText, "./cmd/ica")

	from := find(final, "FROM")[0]
	require.True(t, strings.HasPrefix(from, "gcr.io/distroless/static") || from == "scratch", from)
	users := find(final, "USER")
	require.NotEmpty(t, users)
	u := users[len(users)-1]
	require.NotRegexp(t, `^(root|0)(:|$)`, u, "runs as non-root")
	require.Equal(t, "65532:65532", u)
	require.Contains(t, find(final, "VOLUME"), `["/data"]`)
	require.Contains(t, fmt.Sprint(find(final, "ENV")), "ICA_DATA_DIR=/data")
	hc := find(final, "HEALTHCHECK")
	require.Len(t, hc, 1)
	require.Contains(t, hc[0], `CMD ["/usr/local/bin/ica", "health"]`)
	require.Equal(t, []string{`["/usr/local/bin/ica"]`}, find(final, "ENTRYPOINT"))
	require.Equal(t, []string{`["serve"]`}, find(final, "CMD"))
	require.Contains(t, fmt.Sprint(find(final, "COPY")), "--from=build /out/ica /usr/local/bin/ica")
	require.Contains(t, fmt.Sprint(find(final, "COPY")), "--chown=65532:65532")
	require.Equal(t, []string{"8080"}, find(final, "EXPOSE"))
}

// TestDockerfile_BuildIsStaticAndReproducible builds ./cmd/ica the way the
// Dockerfile does, twice, and checks the binary is static (no ELF
// interpreter) and byte-identical.
func TestDockerfile_BuildIsStaticAndReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux")
	}
	stages := parseDockerfile(t)
	var ldflags string
	re := regexp.MustCompile(`-ldflags "([^"]+)"`)
	for _, run := range find(stages[0], "RUN") {
		if m := re.FindStringSubmatch(run); m != nil {
			ldflags = strings.ReplaceAll(m[1], "${VERSION}", "v9.9.9-test")
		}
	}
	require.NotEmpty(t, ldflags)
	root, err := repoRoot()
	require.NoError(t, err)
	var sums [][32]byte
	for i := range 2 {
		bin := filepath.Join(t.TempDir(), fmt.Sprintf("ica-%d", i))
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, "./cmd/ica")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-buildvcs=false")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		raw, err := os.ReadFile(bin)
		require.NoError(t, err)
		sums = append(sums, sha256.Sum256(raw))
		f, err := elf.Open(bin)
		require.NoError(t, err)
		for _, p := range f.Progs {
			require.NotEqual(t, elf.PT_INTERP, p.Type, "statically linked")
		}
		f.Close()
		v, err := exec.Command(bin, "version").CombinedOutput()
		require.NoError(t, err)
		require.Equal(t, "ica v9.9.9-test\n", string(v))
	}
	require.Equal(t, sums[0], sums[1], "the build is reproducible")
}
