package webhooks_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAPI_TextThatMisleads checks that the pipeline API refuses, with 400
// naming the field and without writing anything, what encoding/json would
// silently rewrite (lone surrogates, invalid UTF-8) and hidden characters
// in identifiers; free text keeps what was sent.
func TestAPI_TextThatMisleads(t *testing.T) {
	e := newEnv(t, 0)
	e.startRun("2001")
	base := e.store.LedgerEntries()

	run := func(field, value string) string {
		b := map[string]string{"pipeline_name": "payments", "run_id": "2002", "branch": "refs/heads/main",
			"commit": commitA, "triggered_by": "alice"}
		var parts []string
		for _, k := range []string{"pipeline_name", "run_id", "branch", "commit", "triggered_by"} {
			v := fmt.Sprintf("%q", b[k])
			if k == field {
				v = `"` + value + `"`
			}
			parts = append(parts, fmt.Sprintf("%q:%s", k, v))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	tests := []struct {
		name, path, body, field, msg string
	}{
		{"lone high surrogate in pipeline_name", "/api/v1/runs", run("pipeline_name", `pay\ud800ments`), "pipeline_name", "lone surrogate"},
		{"lone low surrogate in branch", "/api/v1/runs", run("branch", `refs/heads/\udc00main`), "branch", "lone surrogate"},
		{"high surrogate then a non-surrogate escape", "/api/v1/runs", run("triggered_by", `al\ud83d\u0041ice`), "triggered_by", "lone surrogate"},
		{"surrogate at the end of the string", "/api/v1/runs", run("pipeline_name", `payments\uD800`), "pipeline_name", "lone surrogate"},
		{"invalid UTF-8 in pipeline_name", "/api/v1/runs", run("pipeline_name", "pay\xffments"), "pipeline_name", "not UTF-8"},
		{"right-to-left override in pipeline_name", "/api/v1/runs", run("pipeline_name", `pay\u202eStnemyap`), "pipeline_name", "U+202E"},
		{"raw right-to-left override in pipeline_name", "/api/v1/runs", run("pipeline_name", "pay\u202estnem"), "pipeline_name", "U+202E"},
		{"isolate in branch", "/api/v1/runs", run("branch", `refs/heads/\u2066main\u2069`), "branch", "U+2066"},
		{"zero-width space in triggered_by", "/api/v1/runs", run("triggered_by", "ali\u200bce"), "triggered_by", "U+200B"},
		{"line separator in pipeline_name", "/api/v1/runs", run("pipeline_name", `pay\u2028ments`), "pipeline_name", "U+2028"},
		{"byte order mark in triggered_by", "/api/v1/runs", run("triggered_by", "\ufeffalice"), "triggered_by", "U+FEFF"},
		{"C1 control in branch", "/api/v1/runs", run("branch", `main\u0085`), "branch", "U+0085"},
		{"bidi in run_id", "/api/v1/runs", run("run_id", `20\u202e01`), "run_id", "only letters"},
		{"bidi in event_type", "/api/v1/runs/2001/events", `{"event_type":"build\u200d.done","event_data":{}}`, "event_type", "U+200D"},
		{"lone surrogate in an event_data value", "/api/v1/runs/2001/events", `{"event_type":"note","event_data":{"text":"a\udfffb"}}`, "event_data.text", "lone surrogate"},
		{"lone surrogate deep in event_data", "/api/v1/runs/2001/events", `{"event_type":"note","event_data":{"list":[1,{"x":"\ud800"}]}}`, "event_data.list[1].x", "lone surrogate"},
		{"lone surrogate in an event_data key", "/api/v1/runs/2001/events", `{"event_type":"note","event_data":{"k\ud800":1}}`, "event_data", "a key of event_data"},
		{"bidi in deployment_target", "/api/v1/approvals", `{"run_id":"2001","deployment_target":"produc\u200btion","estimated_cost":1}`, "deployment_target", "not one of"},
		{"lone surrogate in a bypass reason", "/api/v1/approvals/A-1/bypass", `{"reason":"\udc00"}`, "reason", "lone surrogate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := pipelineToken
			if strings.HasSuffix(tt.path, "/bypass") {
				tok = breakGlassTok
			}
			r := e.do("POST", tt.path, tok, []byte(tt.body))
			require.Equal(t, 400, r.status, r.raw)
			require.Equal(t, tt.field, r.errField(), r.raw)
			require.Contains(t, r.errMessage(), tt.msg)
			require.Contains(t, r.errMessage(), strings.SplitN(tt.field, ".", 2)[0], "the message names the field")
			require.Equal(t, base, e.store.LedgerEntries(), "nothing was written")
		})
	}

	t.Run("a valid surrogate pair is kept", func(t *testing.T) {
		r := e.do("POST", "/api/v1/runs/2001/events", pipelineToken, []byte(`{"event_type":"note","event_data":{"text":"ship it \ud83d\ude80"}}`))
		require.Equal(t, 201, r.status, r.raw)
		require.JSONEq(t, `{"text":"ship it 🚀"}`, mustJSON(t, r.body["event_data"]))
	})
	t.Run("free text keeps format characters as sent", func(t *testing.T) {
		r := e.do("POST", "/api/v1/runs/2001/events", pipelineToken, []byte(`{"event_type":"note","event_data":{"text":"a\u202eb"}}`))
		require.Equal(t, 201, r.status, r.raw)
		require.Equal(t, "a\u202eb", r.body["event_data"].(map[string]any)["text"])
	})
	t.Run("the runs filter refuses hidden characters", func(t *testing.T) {
		r := e.do("GET", "/api/v1/runs?pipeline=pay%E2%80%AEments", pipelineToken, nil)
		require.Equal(t, 400, r.status, r.raw)
		require.Equal(t, "pipeline", r.errField())
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
