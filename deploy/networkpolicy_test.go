package deploy_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// mattermostPeers names an in-cluster Mattermost as the only caller of the
// callback port.
const mattermostPeers = `
networkPolicy:
  mattermost:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: mattermost
      podSelector:
        matchLabels:
          app: mattermost
callbacks:
  allowedCIDRs: [10.244.0.0/16, 10.1.2.3]
`

// TestChart_CallbackPortAndNetworkPolicy: by default Mattermost's callbacks
// get their own port (ICA_CALLBACK_ADDR), the Ingress routes /mattermost
// there, and the NetworkPolicy lets only the named Mattermost server reach
// it while the main port stays open to the API's callers.
func TestChart_CallbackPortAndNetworkPolicy(t *testing.T) {
	m, _ := render(t, production+mattermostPeers)
	c := get(m["StatefulSet"]["ica"], "spec", "template", "spec", "containers", "0")
	require.Equal(t, 8081, get(byName(get(c, "ports"), "callbacks"), "containerPort"))
	env := get(c, "env")
	require.Equal(t, "0.0.0.0:8081", get(byName(env, "ICA_CALLBACK_ADDR"), "value"))
	require.Equal(t, "10.244.0.0/16,10.1.2.3", get(byName(env, "ICA_CALLBACK_ALLOWED_CIDRS"), "value"))
	require.Equal(t, "http", get(c, "readinessProbe", "httpGet", "port"), "probes use the main port")

	svc := m["Service"]["ica"]
	require.Equal(t, 8081, get(byName(get(svc, "spec", "ports"), "callbacks"), "port"))
	require.Equal(t, "callbacks", get(byName(get(svc, "spec", "ports"), "callbacks"), "targetPort"))

	for _, p := range list(get(m["Ingress"]["ica"], "spec", "rules", "0", "http", "paths")) {
		want := "http"
		if get(p, "path") == "/mattermost" {
			want = "callbacks"
		}
		require.Equal(t, want, get(p, "backend", "service", "port", "name"), get(p, "path"))
	}

	np := m["NetworkPolicy"]["ica"]
	require.NotNil(t, np, "on by default")
	require.Equal(t, get(m["StatefulSet"]["ica"], "spec", "selector", "matchLabels"), get(np, "spec", "podSelector", "matchLabels"))
	require.Equal(t, []any{"Ingress"}, get(np, "spec", "policyTypes"))
	rules := list(get(np, "spec", "ingress"))
	require.Len(t, rules, 2)
	require.Equal(t, "http", get(rules[0], "ports", "0", "port"))
	require.Nil(t, get(rules[0], "from"), "the main port: any source unless networkPolicy.api says otherwise")
	require.Equal(t, "callbacks", get(rules[1], "ports", "0", "port"))
	require.Equal(t, "mattermost", get(rules[1], "from", "0", "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"))
	require.Equal(t, "mattermost", get(rules[1], "from", "0", "podSelector", "matchLabels", "app"))
	require.Len(t, list(get(rules[1], "from")), 1, "only the Mattermost server")
}

// TestChart_NetworkPolicyDefaults: without naming the Mattermost server the
// policy admits nothing on the callback port; with networkPolicy.api the
// main port admits those peers and the chart's backup job.
func TestChart_NetworkPolicyDefaults(t *testing.T) {
	m, _ := render(t, "{}")
	np := m["NetworkPolicy"]["ica"]
	require.NotNil(t, np)
	rules := list(get(np, "spec", "ingress"))
	require.Len(t, rules, 1, "no rule for the callback port: nothing reaches it")
	require.Equal(t, "http", get(rules[0], "ports", "0", "port"))
	c := get(m["StatefulSet"]["ica"], "spec", "template", "spec", "containers", "0")
	require.NotNil(t, byName(get(c, "ports"), "callbacks"))
	require.Nil(t, byName(get(c, "env"), "ICA_CALLBACK_ALLOWED_CIDRS"))

	m, _ = render(t, "networkPolicy:\n  api:\n    - ipBlock: {cidr: 10.0.0.0/8}\n")
	rules = list(get(m["NetworkPolicy"]["ica"], "spec", "ingress"))
	from := list(get(rules[0], "from"))
	require.Len(t, from, 2)
	require.Equal(t, "10.0.0.0/8", get(from[0], "ipBlock", "cidr"))
	require.Equal(t, "ica-backup", get(from[1], "podSelector", "matchLabels", "app.kubernetes.io/name"))

	// Off, and callbacks on the main port: no policy, no second port.
	m, out := render(t, "networkPolicy: {enabled: false}\ncallbacks: {separatePort: false}\n")
	require.Empty(t, m["NetworkPolicy"])
	c = get(m["StatefulSet"]["ica"], "spec", "template", "spec", "containers", "0")
	require.Nil(t, byName(get(c, "ports"), "callbacks"))
	require.Nil(t, byName(get(c, "env"), "ICA_CALLBACK_ADDR"))
	require.NotContains(t, out, "callbacks")
}
