package ica_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

const commit40 = "0123456789abcdef0123456789abcdef01234567"

func goodStart() ica.RunStart {
	return ica.RunStart{PipelineName: "web-app", RunID: "20261127.3", Branch: "refs/heads/main",
		Commit: commit40, TriggeredBy: "alice@example.com",
		ArtifactDigest: "sha256:" + strings.Repeat("ab", 32), URL: "https://dev.azure.com/org/proj/_build/results?buildId=3"}
}

// checkInvalid asserts err is EINVALID naming field, or nil when field is "".
func checkInvalid(t *testing.T, err error, field string) {
	t.Helper()
	if field == "" {
		require.NoError(t, err)
		return
	}
	require.Error(t, err)
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err), "err: %v", err)
	require.Equal(t, field, ica.ErrorField(err), "err: %v", err)
	require.NotEmpty(t, ica.ErrorMessage(err))
}

func TestRunStart_Validate(t *testing.T) {
	// "é" is two bytes: 128 of them are 256 bytes, which is the limit.
	name256multibyte := strings.Repeat("é", 128)
	cases := []struct {
		name  string
		edit  func(s *ica.RunStart)
		field string
	}{
		{"valid", func(s *ica.RunStart) {}, ""},
		{"valid_minimal", func(s *ica.RunStart) { s.ArtifactDigest, s.URL = "", "" }, ""},

		{"pipeline_name_256", func(s *ica.RunStart) { s.PipelineName = strings.Repeat("p", 256) }, ""},
		{"pipeline_name_256_multibyte", func(s *ica.RunStart) { s.PipelineName = name256multibyte }, ""},
		{"pipeline_name_257", func(s *ica.RunStart) { s.PipelineName = strings.Repeat("p", 257) }, "pipeline_name"},
		{"pipeline_name_257_multibyte", func(s *ica.RunStart) { s.PipelineName = name256multibyte + "x" }, "pipeline_name"},
		{"pipeline_name_empty", func(s *ica.RunStart) { s.PipelineName = "" }, "pipeline_name"},
		{"pipeline_name_blank", func(s *ica.RunStart) { s.PipelineName = "   " }, "pipeline_name"},
		{"pipeline_name_newline", func(s *ica.RunStart) { s.PipelineName = "web\napp" }, "pipeline_name"},
		{"pipeline_name_tab", func(s *ica.RunStart) { s.PipelineName = "web\tapp" }, "pipeline_name"},
		{"pipeline_name_nul", func(s *ica.RunStart) { s.PipelineName = "web\x00" }, "pipeline_name"},
		{"pipeline_name_del", func(s *ica.RunStart) { s.PipelineName = "web\x7f" }, "pipeline_name"},
		{"pipeline_name_escape", func(s *ica.RunStart) { s.PipelineName = "\x1b[31mred" }, "pipeline_name"},
		{"pipeline_name_bad_utf8", func(s *ica.RunStart) { s.PipelineName = "web\xff" }, "pipeline_name"},
		{"pipeline_name_unicode", func(s *ica.RunStart) { s.PipelineName = "Bereitstellung – Prod ✓" }, ""},

		{"run_id_empty", func(s *ica.RunStart) { s.RunID = "" }, "run_id"},
		{"run_id_128", func(s *ica.RunStart) { s.RunID = strings.Repeat("r", 128) }, ""},
		{"run_id_129", func(s *ica.RunStart) { s.RunID = strings.Repeat("r", 129) }, "run_id"},
		{"run_id_punctuation", func(s *ica.RunStart) { s.RunID = "a.b_c:d-e" }, ""},
		{"run_id_leading_dot", func(s *ica.RunStart) { s.RunID = ".hidden" }, "run_id"},
		{"run_id_leading_dash", func(s *ica.RunStart) { s.RunID = "-x" }, "run_id"},
		{"run_id_slash", func(s *ica.RunStart) { s.RunID = "a/b" }, "run_id"},
		{"run_id_space", func(s *ica.RunStart) { s.RunID = "a b" }, "run_id"},
		{"run_id_nul", func(s *ica.RunStart) { s.RunID = "a\x00b" }, "run_id"},
		{"run_id_trailing_newline", func(s *ica.RunStart) { s.RunID = "abc\n" }, "run_id"},
		{"run_id_unicode", func(s *ica.RunStart) { s.RunID = "rün" }, "run_id"},

		{"branch_1024", func(s *ica.RunStart) { s.Branch = strings.Repeat("b", 1024) }, ""},
		{"branch_1025", func(s *ica.RunStart) { s.Branch = strings.Repeat("b", 1025) }, "branch"},
		{"branch_empty", func(s *ica.RunStart) { s.Branch = "" }, "branch"},
		{"branch_control", func(s *ica.RunStart) { s.Branch = "main\r" }, "branch"},

		{"commit_7", func(s *ica.RunStart) { s.Commit = "abcdef0" }, ""},
		{"commit_6", func(s *ica.RunStart) { s.Commit = "abcdef" }, "commit"},
		{"commit_64", func(s *ica.RunStart) { s.Commit = strings.Repeat("a", 64) }, ""},
		{"commit_65", func(s *ica.RunStart) { s.Commit = strings.Repeat("a", 65) }, "commit"},
		{"commit_upper", func(s *ica.RunStart) { s.Commit = strings.ToUpper(commit40) }, ""},
		{"commit_not_hex", func(s *ica.RunStart) { s.Commit = "0123456789abcdeg" }, "commit"},
		{"commit_empty", func(s *ica.RunStart) { s.Commit = "" }, "commit"},
		{"commit_trailing_newline", func(s *ica.RunStart) { s.Commit = commit40 + "\n" }, "commit"},

		{"triggered_by_256", func(s *ica.RunStart) { s.TriggeredBy = strings.Repeat("t", 256) }, ""},
		{"triggered_by_257", func(s *ica.RunStart) { s.TriggeredBy = strings.Repeat("t", 257) }, "triggered_by"},
		{"triggered_by_empty", func(s *ica.RunStart) { s.TriggeredBy = "" }, "triggered_by"},
		{"triggered_by_control", func(s *ica.RunStart) { s.TriggeredBy = "al\x07ice" }, "triggered_by"},

		{"digest_sha512", func(s *ica.RunStart) { s.ArtifactDigest = "sha512:" + strings.Repeat("0f", 64) }, ""},
		{"digest_no_algorithm", func(s *ica.RunStart) { s.ArtifactDigest = strings.Repeat("ab", 32) }, "artifact_digest"},
		{"digest_short", func(s *ica.RunStart) { s.ArtifactDigest = "sha256:abc" }, "artifact_digest"},
		{"digest_upper_algorithm", func(s *ica.RunStart) { s.ArtifactDigest = "SHA256:" + strings.Repeat("ab", 32) }, "artifact_digest"},
		{"digest_not_hex", func(s *ica.RunStart) { s.ArtifactDigest = "sha256:" + strings.Repeat("zz", 32) }, "artifact_digest"},

		{"url_http", func(s *ica.RunStart) { s.URL = "http://ado.local/x" }, ""},
		{"url_2048", func(s *ica.RunStart) { s.URL = "https://x/" + strings.Repeat("u", 2048-len("https://x/")) }, ""},
		{"url_2049", func(s *ica.RunStart) { s.URL = "https://x/" + strings.Repeat("u", 2049-len("https://x/")) }, "url"},
		{"url_javascript", func(s *ica.RunStart) { s.URL = "javascript:alert(1)" }, "url"},
		{"url_ftp", func(s *ica.RunStart) { s.URL = "ftp://x/y" }, "url"},
		{"url_relative", func(s *ica.RunStart) { s.URL = "/builds/3" }, "url"},
		{"url_newline", func(s *ica.RunStart) { s.URL = "https://x/\nSet-Cookie: a" }, "url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := goodStart()
			c.edit(&s)
			checkInvalid(t, s.Validate(), c.field)
		})
	}
}

func TestRunStart_Validate_FirstBadFieldNamed(t *testing.T) {
	s := ica.RunStart{}
	checkInvalid(t, s.Validate(), "pipeline_name")
	s.PipelineName = "p"
	checkInvalid(t, s.Validate(), "run_id")
	s.RunID = "r"
	checkInvalid(t, s.Validate(), "branch")
	s.Branch = "main"
	checkInvalid(t, s.Validate(), "commit")
	s.Commit = "abcdef0"
	checkInvalid(t, s.Validate(), "triggered_by")
	s.TriggeredBy = "me"
	checkInvalid(t, s.Validate(), "")
}

func TestRunStart_Diff(t *testing.T) {
	s := goodStart()
	stored := &ica.Run{RunID: s.RunID, PipelineName: s.PipelineName, Branch: s.Branch, Commit: s.Commit,
		TriggeredBy: s.TriggeredBy, ArtifactDigest: s.ArtifactDigest, URL: s.URL,
		// Server-side fields do not take part in the comparison.
		Status: ica.RunSuccess, StartTime: t0, EventCount: 9, Actor: "bench", AuditHash: "h", StartSeq: 7}
	require.Empty(t, s.Diff(stored))

	cases := []struct {
		field string
		edit  func(s *ica.RunStart)
	}{
		{"pipeline_name", func(s *ica.RunStart) { s.PipelineName += "x" }},
		{"branch", func(s *ica.RunStart) { s.Branch += "x" }},
		{"commit", func(s *ica.RunStart) { s.Commit = "abcdef0" }},
		{"triggered_by", func(s *ica.RunStart) { s.TriggeredBy = "bob" }},
		{"artifact_digest", func(s *ica.RunStart) { s.ArtifactDigest = "" }},
		{"url", func(s *ica.RunStart) { s.URL = "" }},
	}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
			s := goodStart()
			c.edit(&s)
			require.Equal(t, []string{c.field}, s.Diff(stored))
		})
	}
	t.Run("several_in_declared_order", func(t *testing.T) {
		s := goodStart()
		s.URL, s.PipelineName, s.Commit = "", "other", "abcdef0"
		require.Equal(t, []string{"pipeline_name", "commit", "url"}, s.Diff(stored))
	})
	t.Run("comparison_is_exact", func(t *testing.T) {
		s := goodStart()
		s.Commit = strings.ToUpper(s.Commit)
		require.Equal(t, []string{"commit"}, s.Diff(stored))
	})
}

func TestEventInput_Validate(t *testing.T) {
	// objectOfSize returns a JSON object of exactly n bytes.
	objectOfSize := func(n int) json.RawMessage {
		const head, tail = `{"k":"`, `"}`
		return json.RawMessage(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	require.Len(t, objectOfSize(ica.MaxEventDataLen), 64<<10)
	good := func() ica.EventInput {
		return ica.EventInput{EventType: "build.step", EventData: json.RawMessage(`{"step":"compile","ok":true}`), EventID: "evt-1"}
	}
	cases := []struct {
		name  string
		edit  func(e *ica.EventInput)
		field string
	}{
		{"valid", func(e *ica.EventInput) {}, ""},
		{"no_event_id", func(e *ica.EventInput) { e.EventID = "" }, ""},
		{"empty_object", func(e *ica.EventInput) { e.EventData = json.RawMessage(`{}`) }, ""},
		{"nested", func(e *ica.EventInput) { e.EventData = json.RawMessage(`{"a":{"b":[1,2,{"c":null}]}}`) }, ""},
		{"data_64KiB", func(e *ica.EventInput) { e.EventData = objectOfSize(ica.MaxEventDataLen) }, ""},
		{"data_64KiB_plus_1", func(e *ica.EventInput) { e.EventData = objectOfSize(ica.MaxEventDataLen + 1) }, "event_data"},

		{"type_empty", func(e *ica.EventInput) { e.EventType = "" }, "event_type"},
		{"type_blank", func(e *ica.EventInput) { e.EventType = "   " }, "event_type"},
		{"type_128", func(e *ica.EventInput) { e.EventType = strings.Repeat("t", 128) }, ""},
		{"type_129", func(e *ica.EventInput) { e.EventType = strings.Repeat("t", 129) }, "event_type"},
		{"type_control", func(e *ica.EventInput) { e.EventType = "a\x1fb" }, "event_type"},
		{"type_bad_utf8", func(e *ica.EventInput) { e.EventType = "\xc3\x28" }, "event_type"},

		{"event_id_128", func(e *ica.EventInput) { e.EventID = strings.Repeat("e", 128) }, ""},
		{"event_id_129", func(e *ica.EventInput) { e.EventID = strings.Repeat("e", 129) }, "event_id"},
		{"event_id_slash", func(e *ica.EventInput) { e.EventID = "a/b" }, "event_id"},

		{"data_missing", func(e *ica.EventInput) { e.EventData = nil }, "event_data"},
		{"data_null", func(e *ica.EventInput) { e.EventData = json.RawMessage(`null`) }, "event_data"},
		{"data_array", func(e *ica.EventInput) { e.EventData = json.RawMessage(`[1]`) }, "event_data"},
		{"data_string", func(e *ica.EventInput) { e.EventData = json.RawMessage(`"x"`) }, "event_data"},
		{"data_number", func(e *ica.EventInput) { e.EventData = json.RawMessage(`1`) }, "event_data"},
		{"data_bool", func(e *ica.EventInput) { e.EventData = json.RawMessage(`true`) }, "event_data"},
		{"data_malformed", func(e *ica.EventInput) { e.EventData = json.RawMessage(`{"a":`) }, "event_data"},
		{"data_trailing_garbage", func(e *ica.EventInput) { e.EventData = json.RawMessage(`{"a":1} x`) }, "event_data"},
		{"data_two_objects", func(e *ica.EventInput) { e.EventData = json.RawMessage(`{}{}`) }, "event_data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := good()
			c.edit(&e)
			checkInvalid(t, e.Validate(), c.field)
		})
	}
}

// TestEventInput_Validate_PaddedNull: a JSON null with surrounding
// whitespace is still no object (json.Unmarshal of null into a map succeeds,
// so Validate must look at the trimmed value).
func TestEventInput_Validate_PaddedNull(t *testing.T) {
	e := ica.EventInput{EventType: "x", EventData: json.RawMessage(" null ")}
	require.Equal(t, "event_data", ica.ErrorField(e.Validate()))
}

func TestEventInput_Validate_DuplicateKeysAndBadUTF8(t *testing.T) {
	for _, raw := range []string{`{"a":1,"a":2}`, `{"o":{"k":1,"k":1}}`, "{\"a\":\"\xff\"}"} {
		e := ica.EventInput{EventType: "x", EventData: json.RawMessage(raw)}
		require.Equal(t, "event_data", ica.ErrorField(e.Validate()), raw)
	}
	ok := ica.EventInput{EventType: "x", EventData: json.RawMessage(`{"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":1}]}`)}
	require.NoError(t, ok.Validate(), "the same key in different objects is fine")
}

func TestRunFinish_Validate(t *testing.T) {
	end := t0
	for _, c := range []struct {
		status string
		ok     bool
	}{
		{ica.RunSuccess, true}, {ica.RunFailed, true}, {ica.RunCancelled, true},
		{"", false}, {ica.RunRunning, false}, {"SUCCESS", false}, {"succeeded", false}, {" success", false},
	} {
		t.Run(c.status, func(t *testing.T) {
			f := ica.RunFinish{Status: c.status, EndTime: &end}
			if c.ok {
				checkInvalid(t, f.Validate(), "")
			} else {
				checkInvalid(t, f.Validate(), "status")
			}
		})
	}
	require.Contains(t, ica.ErrorMessage((&ica.RunFinish{}).Validate()), "required")
}

func TestRun_Final(t *testing.T) {
	require.False(t, (&ica.Run{Status: ica.RunRunning}).Final())
	for _, s := range []string{ica.RunSuccess, ica.RunFailed, ica.RunCancelled} {
		require.True(t, (&ica.Run{Status: s}).Final(), s)
	}
}

func TestValidID(t *testing.T) {
	checkInvalid(t, ica.ValidID("approval_id", "appr-01"), "")
	checkInvalid(t, ica.ValidID("approval_id", ""), "approval_id")
	checkInvalid(t, ica.ValidID("approval_id", "%2e%2e"), "approval_id")
	require.Contains(t, ica.ErrorMessage(ica.ValidID("x", strings.Repeat("a", 200))), "longer than 128")
}
