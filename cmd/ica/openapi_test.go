package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/bot/mmtest"
	"github.com/ica-governance/ica/webhooks"
)

// TestMain_OpenAPICoversEveryRoute runs the real main with every optional
// feature enabled and compares the router's route table (read through the
// serve seam) with the OpenAPI document the server serves: every registered
// route is documented, every documented route is registered and answers
// (not the router's 404/405).
func TestMain_OpenAPICoversEveryRoute(t *testing.T) {
	mm := mmtest.New(t)
	mm.AddTeam("eng")
	for _, c := range []string{"deployments", "incidents", "finance"} {
		mm.AddChannel("eng", c)
	}
	_, botToken := mm.AddBot("ica")
	for _, c := range []string{"deployments", "incidents", "finance"} {
		mm.Join(c, "ica")
	}
	pd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"success","dedup_key":"x"}`)
	}))
	defer pd.Close()

	addr := freeAddr(t)
	env := map[string]string{"ICA_ADDR": addr, "ICA_DATA_DIR": t.TempDir(), "ICA_PUBLIC_URL": "http://" + addr,
		"ICA_PIPELINE_TOKENS": "ado=" + testToken, "ICA_BREAKGLASS_TOKENS": "sre=breakglass-token-00000001",
		"ICA_ADMIN_TOKENS": "backup=" + testAdminToken, "ICA_INCIDENT_COMMANDER_TOKENS": "ic=commander-token-000000001",
		"ICA_ALERT_TOKEN": "alert-token-0000000000001", "ICA_METRICS_TOKEN": "metrics-token-00000000001", "ICA_MATTERMOST_URL": mm.URL, "ICA_MATTERMOST_TOKEN": botToken,
		"ICA_MATTERMOST_TEAM": "eng", "ICA_LOG_LEVEL": "debug", "ICA_SLASH_TOKENS": "slash-token-000000000001",
		"ICA_PAGERDUTY_ROUTING_KEY": "R0UTINGKEY0000000000000000000000", "ICA_PAGERDUTY_URL": pd.URL,
		"ICA_BLOB_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" +
			"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==" +
			";BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"}

	routes := make(chan []webhooks.Route, 1)
	hook := func(h *webhooks.Handler) { routes <- h.Routes() }
	serveRoutesHook.Store(&hook)
	base, stop, logs := startServe(t, env)
	serveRoutesHook.Store(nil)
	defer func() { require.Equal(t, 0, stop()) }()
	registered := map[string]bool{}
	for _, r := range <-routes {
		registered[r.Method+" "+r.Path] = true
	}

	res, err := http.Get(base + "/api/v1/openapi.json")
	require.NoError(t, err)
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, "application/json", res.Header.Get("Content-Type"))
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3.0."), doc.OpenAPI)
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			documented[strings.ToUpper(m)+" "+path] = true
		}
	}

	var missing, extra []string
	for r := range registered {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for r := range documented {
		if !registered[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	require.Empty(t, missing, "registered routes missing from webhooks/openapi.json")
	require.Empty(t, extra, "documented routes that are not registered")
	require.GreaterOrEqual(t, len(registered), 27, "every optional feature is enabled in this test")

	// Every documented route answers on the live server: its own handler
	// runs (any status but the router's "no such endpoint" and 405).
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	for r := range documented {
		method, path, _ := strings.Cut(r, " ")
		req, err := http.NewRequest(method, base+param.ReplaceAllString(path, "x1"), strings.NewReader("{}"))
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err, r)
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		require.NotEqual(t, http.StatusMethodNotAllowed, res.StatusCode, r)
		require.NotContains(t, string(b), "no such endpoint", "%s: %s", r, b)
	}
	// What the access log reports as routes (the metrics' route label too)
	// is documented.
	logged := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		var l struct{ Msg, Method, Route string }
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "http" || l.Route == "unmatched" {
			continue
		}
		logged++
		require.True(t, documented[l.Method+" "+l.Route], "logged route %s %s is documented", l.Method, l.Route)
	}
	require.GreaterOrEqual(t, logged, len(documented))
}

// TestOpenAPI_DocumentIsWellFormed checks the embedded document: unique
// operation ids, every $ref resolves, every path parameter is declared, and
// every operation has responses.
func TestOpenAPI_DocumentIsWellFormed(t *testing.T) {
	var doc map[string]any
	require.NoError(t, json.Unmarshal(webhooks.OpenAPI, &doc))
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					refs = append(refs, x.(string))
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	for _, ref := range refs {
		var cur any = doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := cur.(map[string]any)
			require.True(t, ok, ref)
			cur, ok = m[part]
			require.True(t, ok, "unresolved $ref %s", ref)
		}
	}
	ids := map[string]bool{}
	pathParam := regexp.MustCompile(`\{([a-z_]+)\}`)
	for path, ops := range doc["paths"].(map[string]any) {
		for method, o := range ops.(map[string]any) {
			op := o.(map[string]any)
			id, _ := op["operationId"].(string)
			require.NotEmpty(t, id, "%s %s has an operationId", method, path)
			require.False(t, ids[id], "operationId %s is unique", id)
			ids[id] = true
			require.NotEmpty(t, op["responses"], "%s %s has responses", method, path)
			declared := map[string]bool{}
			params, _ := op["parameters"].([]any)
			for _, p := range params {
				pm := p.(map[string]any)
				if pm["in"] == "path" {
					declared[pm["name"].(string)] = true
				}
			}
			for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
				require.True(t, declared[m[1]], "%s %s declares path parameter %s", method, path, m[1])
			}
			for name := range declared {
				require.Contains(t, path, fmt.Sprintf("{%s}", name))
			}
		}
	}
}
