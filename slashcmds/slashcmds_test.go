package slashcmds

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/export"
)

func slog0() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fixtureForm returns the raw form body of a capture copied from the vendor
// fixtures (shared/fixtures/mattermost) into testdata.
func fixtureForm(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "channel_id=") {
			return strings.TrimSpace(line)
		}
	}
	t.Fatalf("no form body in %s", name)
	return ""
}

const fixtureToken = "ymyha7gt8fnm9y8xuuordsuizh"

// post sends a raw slash request to the handler.
func post(t *testing.T, h *Handler, body string, header http.Header) (*httptest.ResponseRecorder, *model.CommandResponse) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/mattermost/slash", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	require.NoError(t, h.HandleSlash(rec, req))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var resp model.CommandResponse
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &resp))
	require.Equal(t, model.CommandResponseTypeEphemeral, resp.ResponseType)
	return rec, &resp
}

func TestHandleSlash_BadToken(t *testing.T) {
	w := newWorld(t, func(d *Deps) { d.Tokens = []string{"not-the-command-token"} })
	for _, text := range []string{"/ica status", "/ica export", "/ica help"} {
		reply := w.slash("tech1", "deployments", text)
		require.Contains(t, reply, "not configured with a valid token for this ICA")
	}
	w.wait()
	require.Zero(t, w.q.Calls(), "no query ran")
	require.Zero(t, w.ex.Counts(), "no export ran")
	require.Zero(t, w.poster.Calls())
	require.Empty(t, w.mm.HookCalls())
	require.Contains(t, w.logs.String(), "invalid token refused")
	require.NotContains(t, w.logs.String(), w.token, "the token is not logged")
	require.Contains(t, w.logs.String(), "tech1", "the log says who tried")
}

func TestHandleSlash_TokenSources(t *testing.T) {
	q := &fakeQueries{bud: &BudgetSummary{}}
	body := fixtureForm(t, "slash-status.txt")
	fc := fixtureCallers(t, body)
	h := New(Deps{Tokens: []string{"a-token", fixtureToken}, Queries: q, Exporter: &fakeExporter{}, Poster: &mmPoster{}, Callers: fc})

	// As captured: header and form field.
	_, resp := post(t, h, body, http.Header{"Authorization": {"Token " + fixtureToken}})
	require.Contains(t, resp.Text, "#### ICA status")

	// Form field only (the captured trigger again: forget that it was used).
	fc.forget()
	_, resp = post(t, h, body, nil)
	require.Contains(t, resp.Text, "#### ICA status")
	calls := q.Calls()

	// A wrong header token is refused even with a right form token.
	_, resp = post(t, h, body, http.Header{"Authorization": {"Token wrong"}})
	require.Contains(t, resp.Text, "not configured with a valid token")
	// A wrong form token, no header.
	_, resp = post(t, h, strings.Replace(body, fixtureToken, "ymyha7gt8fnm9y8xuuordsuizX", 1), nil)
	require.Contains(t, resp.Text, "not configured with a valid token")
	// No token at all.
	_, resp = post(t, h, strings.Replace(body, "token="+fixtureToken, "", 1), nil)
	require.Contains(t, resp.Text, "not configured with a valid token")
	require.Equal(t, calls, q.Calls(), "refused requests ran nothing")

	// No tokens configured: everything is refused.
	h2 := New(Deps{Queries: q, Exporter: &fakeExporter{}, Poster: &mmPoster{}})
	_, resp = post(t, h2, body, http.Header{"Authorization": {"Token " + fixtureToken}})
	require.Contains(t, resp.Text, "not configured with a valid token")
	require.Equal(t, calls, q.Calls())
}

func TestHandleSlash_BodyTooLarge(t *testing.T) {
	h := New(Deps{Tokens: []string{fixtureToken}, Queries: &fakeQueries{}, Exporter: &fakeExporter{}, Poster: &mmPoster{}})
	req := httptest.NewRequest(http.MethodPost, "/mattermost/slash", strings.NewReader("text="+strings.Repeat("a", 2<<20)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	req.Body = http.MaxBytesReader(rec, req.Body, 1<<20)
	err := h.HandleSlash(rec, req)
	require.Equal(t, ica.ETOOLARGE, ica.ErrorCode(err))
}

func TestHandleSlash_Help(t *testing.T) {
	w := newWorld(t)
	for _, text := range []string{"/ica", "/ica help", "/ica HELP"} {
		reply := w.slash("tech1", "deployments", text)
		require.Contains(t, reply, "`/ica export [from=YYYY-MM-DD] [to=YYYY-MM-DD] [format=csv|json|pdf] [pipeline=NAME]`")
		require.Contains(t, reply, "`/ica status [RUN_ID|PIPELINE|APPROVAL_ID]`")
		require.Contains(t, reply, "Examples:")
		require.NotContains(t, reply, "did not understand")
	}
}

func TestHandleSlash_Unknown(t *testing.T) {
	w := newWorld(t)
	reply := w.slash("tech1", "deployments", "/ica frobnicate now")
	require.Contains(t, reply, "I did not understand `frobnicate`")
	require.Contains(t, reply, "/ica status")
	reply = w.slash("tech1", "deployments", "/ica status from=2026-01-01")
	require.Contains(t, reply, "status takes a run id or a pipeline name")
	reply = w.slash("tech1", "deployments", `/ica export pipeline="unterminated`)
	require.Contains(t, reply, "double quote is not closed")
	require.Zero(t, w.ex.Counts())
}

func sampleData(q *fakeQueries) {
	end := t0.Add(-30 * time.Minute)
	q.pending = []*ica.Approval{
		{ID: "A-1", RunID: "r-100", PipelineName: "payments", Target: ica.TargetProduction, Status: ica.ApprovalPending,
			CreatedAt: t0.Add(-2*time.Hour - 5*time.Minute), ExpiresAt: t0.Add(time.Hour + 55*time.Minute)},
		{ID: "A-2", RunID: "r-101", PipelineName: "web|shop", Target: ica.TargetStaging, Status: ica.ApprovalTechnical,
			FinanceRequired: true, Technical: &ica.Decision{Decider: ica.Decider{Username: "tech1"}},
			CreatedAt: t0.Add(-10 * time.Minute), ExpiresAt: t0.Add(-time.Minute)},
	}
	q.running = []*ica.Run{{RunID: "r-102", PipelineName: "payments", Branch: "main", Status: ica.RunRunning,
		TriggeredBy: "alice@example.com", StartTime: t0.Add(-7 * time.Minute)}}
	q.recent = []*ica.Run{{RunID: "r-99", PipelineName: "payments", Branch: "release/1.2", Status: ica.RunFailed,
		StartTime: end.Add(-90 * time.Second), EndTime: &end}}
	q.runs = map[string]*ica.Run{
		"r-99": {RunID: "r-99", PipelineName: "payments", Branch: "main", Commit: "abcdef1234567", Status: ica.RunSuccess,
			TriggeredBy: "alice", StartTime: end.Add(-5 * time.Minute), EndTime: &end, EventCount: 12,
			AuditHash: "9f2c0011", URL: "https://dev.azure.com/org/proj/_build/results?buildId=99"},
		"r-98": {RunID: "r-98", PipelineName: "payments", Branch: "main", Status: ica.RunSuccess,
			StartTime: end.Add(-48 * time.Hour), EndTime: &end},
	}
	q.approvals = map[string]*ica.Approval{"r-99": {ID: "A-0", RunID: "r-99", Target: ica.TargetProduction, Status: ica.ApprovalApproved,
		Technical: &ica.Decision{Decider: ica.Decider{Username: "tech1"}}, Business: &ica.Decision{Decider: ica.Decider{Username: "biz1"}}}}
	q.incidents = []*ica.Incident{{ID: "inc-1", Severity: ica.Sev1, Rule: "High CPU", Status: ica.IncidentAcknowledged,
		Acknowledged: &ica.Decision{Decider: ica.Decider{Username: "tech1"}}, OpenedAt: t0.Add(-3 * time.Hour),
		Resources: []string{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-1", "/x/vm-2"}}}
	q.bud = &BudgetSummary{Month: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), MonthToDate: 9600, Budget: 10000,
		Threshold: 0.95, Forecast: 11000, AsOf: t0.Add(-time.Hour)}
}

func TestStatus_Overview(t *testing.T) {
	w := newWorld(t)
	sampleData(w.q)
	reply := w.slash("tech1", "deployments", "/ica status")
	for _, want := range []string{
		"**Pending approvals (2)**",
		"| Approval | Pipeline | Run | Target | Age | Expires | Waiting for |",
		"| `A-1` | payments | `r-100` | production | 2h 5m | in 1h 55m (13:55 UTC) | technical approval |",
		"| `A-2` | web\\|shop | `r-101` | staging | 10m | expired 1m ago | business approval (finance); technical by tech1 |",
		"**Runs in progress (1)**",
		"| `r-102` | payments | main | 2026-11-27 11:53 UTC | 7m | alice@\u200bexample.com |",
		"**Last finished runs (1)**",
		"| `r-99` | payments | release/1.2 | :x: failed | 30m ago | 1m |",
		"**Open incidents (1)**",
		"| `inc-1` | :large_orange_diamond: Sev1 | High CPU | acknowledged by tech1 | 3h 0m ago | vm-1 +1 |",
		"**Budget:** $9,600.00 spent this month of $10,000.00 (96%) · forecast $11,000.00",
		"past the 95% gate",
	} {
		require.Contains(t, reply, want)
	}
	require.Equal(t, "tech1", w.mm.Ephemerals("tech1")[0].Username, "the reply is ephemeral")
}

func TestStatus_Truncated(t *testing.T) {
	w := newWorld(t)
	sampleData(w.q)
	for i := range 500 {
		w.q.pending = append(w.q.pending, &ica.Approval{ID: fmt.Sprintf("A-%03d", i), RunID: "r", PipelineName: strings.Repeat("p", 200),
			Target: ica.TargetProduction, Status: ica.ApprovalPending, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	}
	reply := w.slash("tech1", "deployments", "/ica status")
	require.LessOrEqual(t, len(reply), MaxReplyBytes)
	require.Regexp(t, `\| …and \d+\+? more \|`, reply)
	require.Contains(t, reply, "**Budget:**", "the budget still shows")

	reply = w.slash("tech1", "deployments", "/ica approvals")
	require.LessOrEqual(t, len(reply), MaxReplyBytes)
	require.Contains(t, reply, "#### Approvals waiting for a decision (50+)")
}

func TestStatus_RunAndPipeline(t *testing.T) {
	w := newWorld(t)
	sampleData(w.q)
	reply := w.slash("tech1", "deployments", "/ica status r-99")
	for _, want := range []string{
		"#### Run `r-99` — payments",
		"| Status | :white_check_mark: success |",
		"| Events | 12 |",
		"| Audit hash | `9f2c0011` |",
		"| Approval | `A-0` production: approved by tech1, biz1 |",
		"| Finished | 2026-11-27 11:30 UTC (took 5m) |",
		"[open in Azure Pipelines](https://dev.azure.com/org/proj/_build/results?buildId=99)",
	} {
		require.Contains(t, reply, want)
	}

	reply = w.slash("tech1", "deployments", "/ica status payments")
	require.Contains(t, reply, "#### Recent runs of pipeline `payments`")
	require.Regexp(t, "(?s)`r-99`.*`r-98`", reply, "newest first")

	// A pipeline name with spaces (Azure allows them) is not a run id.
	w.q.runs["x"] = &ica.Run{RunID: "x", PipelineName: "payments api", Status: ica.RunRunning, StartTime: t0}
	reply = w.slash("tech1", "deployments", "/ica status payments api")
	require.Contains(t, reply, "#### Recent runs of pipeline `payments api`")

	reply = w.slash("tech1", "deployments", "/ica status nothing-here")
	require.Contains(t, reply, "No run with id `nothing-here` and no runs of a pipeline named `nothing-here`.")
}

func TestStatus_FocusedViews(t *testing.T) {
	w := newWorld(t)
	sampleData(w.q)
	reply := w.slash("tech1", "deployments", "/ica approvals")
	require.Contains(t, reply, "#### Approvals waiting for a decision (2)")
	require.Contains(t, reply, "| `A-1` | payments |")

	reply = w.slash("tech1", "deployments", "/ica incidents")
	require.Contains(t, reply, "#### Open incidents (1)")
	require.Contains(t, reply, "High CPU")

	reply = w.slash("tech1", "deployments", "/ica budget")
	for _, want := range []string{"#### Budget — November 2026", "| Spent this month | $9,600.00 |", "| Used | 96% |",
		"| Remaining | $400.00 |", "| Approval gate at | 95% ($9,500.00) |", "| Forecast for the month | $11,000.00 |"} {
		require.Contains(t, reply, want)
	}

	w.q.pending, w.q.incidents = nil, nil
	require.Contains(t, w.slash("tech1", "deployments", "/ica approvals"), "_None._")
	require.Contains(t, w.slash("tech1", "deployments", "/ica incidents"), "_None._")
	require.Contains(t, w.slash("tech1", "deployments", "/ica budget extra"), "budget takes no arguments")

	// A failing store is an error the user can read, and is logged.
	w.q.err = ica.Unavailable("the ledger is busy", fmt.Errorf("bolt timeout"))
	require.Contains(t, w.slash("tech1", "deployments", "/ica status"), "the ledger is busy")
	w.q.err = fmt.Errorf("secret detail")
	reply = w.slash("tech1", "deployments", "/ica status")
	require.Contains(t, reply, "internal error")
	require.NotContains(t, reply, "secret detail")
	require.Contains(t, w.logs.String(), "secret detail")
}

func TestExport_Validation(t *testing.T) {
	w := newWorld(t)
	for text, want := range map[string]string{
		"/ica export from=2026-13-01":                 "from=2026-13-01 is not a valid date: there is no month 13",
		"/ica export to=2026-02-30":                   "to=2026-02-30 is not a valid date: February 2026 has 28 days",
		"/ica export from=01/02/2026":                 "from=01/02/2026 is not a date: write it as YYYY-MM-DD",
		"/ica export from=2026-03-01 to=2026-02-01":   "to=2026-02-01 is before from=2026-03-01",
		"/ica export from=2016-01-01 to=2026-01-01":   "is more than 10 years",
		"/ica export format=xml":                      "format=xml is not one of csv, json, pdf",
		"/ica export since=2026-01-01":                `unknown parameter "since"`,
		"/ica export 2026-01-01":                      "export takes only key=value parameters",
		"/ica export from=2026-01-01 from=2026-02-01": "from is given more than once",
	} {
		reply := w.slash("tech1", "deployments", text)
		require.Contains(t, reply, want, text)
		require.Contains(t, reply, "Usage: `/ica export", text)
	}
	// Exactly ten years is allowed.
	reply := w.slash("tech1", "deployments", "/ica export from=2016-01-01 to=2025-12-31")
	require.Contains(t, reply, "Exporting 3 ledger records from 2016-01-01 to 2025-12-31 as CSV")
	w.wait()
	require.Equal(t, 1, w.ex.Counts(), "only the valid request counted")
}

func TestExport_HappyPath(t *testing.T) {
	w := newWorld(t)
	reply := w.slash("tech1", "deployments", "/ica export from=2026-01-01 to=2026-12-31 format=csv")
	require.Equal(t, "Exporting 3 ledger records from 2026-01-01 to 2026-12-31 as CSV; the file will be posted here.", reply)
	w.wait()

	q := w.ex.Exports()[0]
	require.Equal(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), q.From)
	require.Equal(t, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), q.To, "to is inclusive: the query ends the next midnight")
	require.Equal(t, "csv", q.Format)
	require.Equal(t, "tech1", q.RequestedBy)

	posts := w.filePosts("deployments")
	require.Len(t, posts, 1)
	p := posts[0]
	require.Equal(t, w.mm.UserID("ica-bot"), p.UserId, "posted by the bot, not as the user")
	name := "ica-export_2026-01-01_2026-12-31_20261127T120000Z.csv"
	for _, want := range []string{
		"**ICA audit export** `" + name + "`, requested by @tech1",
		"| Period | 2026-01-01 to 2026-12-31 (UTC, inclusive) |",
		"| Records | 3 (seq 1–3) |",
		"| Chain head | seq 5678, hash `9f2c",
		"| Signing key | `3f1a:0b2c:d4e5:f607:1829:3a4b:5c6d:7e8f` |",
		"| Archive | https://acct.blob.core.windows.net/ica-exports/" + name + " |",
		"ica verify " + name,
	} {
		require.Contains(t, p.Message, want)
	}
	info, data := w.mm.File(p.FileIds[0])
	require.Equal(t, name, info.Name)
	require.Contains(t, string(data), "# ica-export v1: 3 records")
	require.Equal(t, data, w.arch.blobs[name], "the archive has the same bytes")
	require.Equal(t, "3", w.arch.meta[name]["records"])
	require.Equal(t, "3f1a:0b2c:d4e5:f607:1829:3a4b:5c6d:7e8f", w.arch.meta[name]["fingerprint"])
	require.Empty(t, w.mm.HookCalls(), "no follow-up needed")

	entries, _ := os.ReadDir(w.h.d.TempDir)
	require.Empty(t, entries, "the temporary file is removed")
}

func TestExport_FixtureForm(t *testing.T) {
	ex := &fakeExporter{count: 7}
	body := fixtureForm(t, "slash-export.txt")
	h := New(Deps{Tokens: []string{fixtureToken}, Queries: &fakeQueries{}, Exporter: ex, Poster: &mmPoster{fail: fmt.Errorf("x")},
		Clock: ica.NewFakeClock(t0), PostAttempts: 1, Log: slog0(), TempDir: t.TempDir(), Callers: fixtureCallers(t, body), ExportChannels: []string{"deployments"}})
	_, resp := post(t, h, body, nil)
	require.Equal(t, "Exporting 7 ledger records from 2026-01-01 to 2026-12-31 as CSV; the file will be posted here.", resp.Text)
	require.NoError(t, h.Close(context.Background()))
}

func TestExport_Defaults(t *testing.T) {
	w := newWorld(t, func(d *Deps) { d.Archiver = nil })
	reply := w.slash("tech1", "deployments", "/ica export format=PDF pipeline=\"payments api\"")
	require.Equal(t, "Exporting 3 ledger records of pipeline `payments api` from 2026-11-01 to 2026-11-27 as PDF; the file will be posted here.", reply)
	w.wait()
	q := w.ex.Exports()[0]
	require.Equal(t, "payments api", q.Pipeline)
	require.Equal(t, time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC), q.To)
	p := w.filePosts("deployments")[0]
	require.Contains(t, p.Message, "| Archive | not configured")
	require.Contains(t, p.Message, "| Pipeline | `payments api` |")
	info, _ := w.mm.File(p.FileIds[0])
	require.Equal(t, "ica-export_2026-11-01_2026-11-27_payments-api_20261127T120000Z.pdf", info.Name)
}

func TestExport_EmptyRange(t *testing.T) {
	w := newWorld(t)
	w.ex.count = 0
	reply := w.slash("tech1", "deployments", "/ica export from=2020-01-01 to=2020-01-31 format=json")
	require.Contains(t, reply, "Exporting 0 ledger records (there are none in this period, so the file will hold only the signed manifest)")
	w.wait()
	posts := w.filePosts("deployments")
	require.Len(t, posts, 1, "an empty export still posts a file")
	require.Contains(t, posts[0].Message, "| Records | none in this period: the file holds only the signed manifest |")
	info, data := w.mm.File(posts[0].FileIds[0])
	require.True(t, strings.HasSuffix(info.Name, ".jsonl"))
	require.Contains(t, string(data), "0 records")
}

func TestExport_ArchiveDown(t *testing.T) {
	w := newWorld(t)
	w.arch.fails, w.arch.err = 100, ica.Unavailable("could not upload x to the blob archive: the service is unreachable", fmt.Errorf("dial tcp: refused"))
	w.slash("tech1", "deployments", "/ica export from=2026-01-01 to=2026-01-31")
	w.wait()
	require.Equal(t, DefaultArchiveAttempts, w.arch.Calls(), "retried, bounded")
	posts := w.filePosts("deployments")
	require.Len(t, posts, 1, "the file is still posted")
	require.Contains(t, posts[0].Message, "| Archive | :warning: failed after 3 attempts: could not upload x to the blob archive: the service is unreachable |")
	hooks := w.hookTexts()
	require.Len(t, hooks, 1)
	require.Contains(t, hooks[0], "The export file is posted, but archiving it failed after 3 attempts")
	require.NotContains(t, hooks[0], "dial tcp", "the private cause is not shown")
}

func TestExport_ArchiveRecovers(t *testing.T) {
	w := newWorld(t)
	w.arch.fails, w.arch.err = 1, ica.Unavailable("busy", nil)
	w.slash("tech1", "deployments", "/ica export from=2026-01-01 to=2026-01-31")
	w.wait()
	require.Equal(t, 2, w.arch.Calls())
	require.Contains(t, w.filePosts("deployments")[0].Message, "| Archive | https://acct.blob.core.windows.net/")
	require.Empty(t, w.mm.HookCalls())
}

func TestExport_ArchiveConflictNotRetried(t *testing.T) {
	w := newWorld(t)
	w.arch.fails, w.arch.err = 100, ica.Errorf(ica.ECONFLICT, "archive ica-exports/x already exists; exports are never overwritten")
	w.slash("tech1", "deployments", "/ica export from=2026-01-01 to=2026-01-31")
	w.wait()
	require.Equal(t, 1, w.arch.Calls())
	require.Contains(t, w.filePosts("deployments")[0].Message, "already exists; exports are never overwritten")
}

func TestExport_PosterDown(t *testing.T) {
	w := newWorld(t)
	w.poster.fail = ica.Unavailable("Mattermost is unreachable", fmt.Errorf("EOF"))
	w.slash("tech1", "deployments", "/ica export from=2026-01-01 to=2026-01-31")
	w.wait()
	require.Equal(t, DefaultPostAttempts, w.poster.Calls(), "retried, bounded")
	require.Empty(t, w.filePosts("deployments"))
	hooks := w.hookTexts()
	require.Len(t, hooks, 1)
	require.Contains(t, hooks[0], "could not be posted in this channel (Mattermost is unreachable)")
	require.Contains(t, hooks[0], "It is archived at https://acct.blob.core.windows.net/ica-exports/")
	require.Contains(t, hooks[0], "| Signing key |", "the summary is in the follow-up")
}

func TestExport_PosterDownReal(t *testing.T) {
	// The fake Mattermost answers 500 to the upload: the real poster's error path.
	w := newWorld(t, func(d *Deps) { d.PostAttempts = 2 })
	w.mm.FailNext(2, http.StatusInternalServerError, 0, "/api/v4/files")
	w.slash("tech1", "deployments", "/ica export from=2026-01-01 to=2026-01-31")
	w.wait()
	require.Equal(t, 2, w.poster.Calls())
	require.Contains(t, w.hookTexts()[0], "could not be posted in this channel")
}

func TestExport_ExporterFails(t *testing.T) {
	w := newWorld(t)
	w.ex.exportFn = func(context.Context, ExportQuery, io.Writer) (*export.Manifest, error) {
		return nil, fmt.Errorf("disk on fire")
	}
	w.slash("tech1", "deployments", "/ica export from=2026-01-01 to=2026-01-31")
	w.wait()
	hooks := w.hookTexts()
	require.Len(t, hooks, 1)
	require.Equal(t, "The export from 2026-01-01 to 2026-01-31 failed: internal error", hooks[0])
	require.Contains(t, w.logs.String(), "disk on fire")
	require.Zero(t, w.poster.Calls())
	require.Zero(t, w.arch.Calls())
}

// TestExport_NobodyByDefault: with no export user and no export channel,
// nobody may export (issue 18 item 6), and the reply says what to set.
func TestExport_NobodyByDefault(t *testing.T) {
	w := newWorld(t, func(d *Deps) { d.ExportUsers, d.ExportChannels = nil, nil })
	for _, who := range []string{"tech1", "biz1"} {
		reply := w.slash(who, "deployments", "/ica export")
		require.Contains(t, reply, "Nobody may export the ledger from Mattermost yet")
		require.Contains(t, reply, "ICA_EXPORT_USERS or ICA_EXPORT_CHANNELS")
	}
	require.Zero(t, w.ex.Counts(), "nothing ran")
	require.Contains(t, w.slash("tech1", "deployments", "/ica budget"), "#### Budget", "views stay open")
}

func TestExport_NotAllowed(t *testing.T) {
	w := newWorld(t, func(d *Deps) { d.ExportUsers = []string{"@biz1"}; d.ExportChannels = []string{"~finance"} })
	reply := w.slash("tech1", "deployments", "/ica export")
	require.Contains(t, reply, "You are not allowed to export the ledger here")
	require.Zero(t, w.ex.Counts(), "nothing ran")

	require.Contains(t, w.slash("biz1", "deployments", "/ica export"), "Exporting 3 ledger records")
	require.Contains(t, w.slash("tech1", "finance", "/ica export"), "Exporting 3 ledger records", "anyone in an export channel")
	w.wait()
	require.Len(t, w.filePosts("finance"), 1)
	// Views stay open to everyone.
	require.Contains(t, w.slash("tech1", "deployments", "/ica budget"), "#### Budget")
}

func TestExport_ConcurrencyLimit(t *testing.T) {
	w := newWorld(t)
	w.ex.gate, w.ex.started = make(chan struct{}), make(chan struct{}, 10)
	for range 2 {
		require.Contains(t, w.slash("tech1", "deployments", "/ica export"), "Exporting 3 ledger records")
	}
	<-w.ex.started
	<-w.ex.started
	reply := w.slash("biz1", "deployments", "/ica export")
	require.Equal(t, "2 exports are already running; please wait for them to finish and try again.", reply)
	require.Equal(t, 2, w.ex.Counts(), "the refused one did not even count")

	close(w.ex.gate)
	w.wait()
	require.Len(t, w.filePosts("deployments"), 2)
	require.Contains(t, w.slash("biz1", "deployments", "/ica export"), "Exporting 3 ledger records", "slots are released")
	w.wait()
	require.Len(t, w.filePosts("deployments"), 3)
}

func TestHandler_Close(t *testing.T) {
	w := newWorld(t)
	w.ex.gate, w.ex.started = make(chan struct{}), make(chan struct{}, 1)
	w.slash("tech1", "deployments", "/ica export")
	<-w.ex.started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.ErrorIs(t, w.h.Close(ctx), context.DeadlineExceeded)
	require.Less(t, time.Since(start), 3*time.Second, "bounded")
	hooks := w.hookTexts()
	require.Len(t, hooks, 1, "the cancelled export is reported")
	require.Contains(t, hooks[0], "ICA stopped")
	require.Contains(t, w.slash("tech1", "deployments", "/ica export"), "shutting down")
}

func TestFollowUp_Limit(t *testing.T) {
	w := newWorld(t)
	w.slash("tech1", "deployments", "/ica help")
	c := &call{UserName: "tech1", ResponseURL: w.mm.SlashCalls()[0].ResponseURL, At: w.clock.Now()}
	for i := range 7 {
		w.h.followUp(c, fmt.Sprintf("message %d", i))
	}
	calls := w.mm.HookCalls()
	require.Len(t, calls, MaxResponseURLUses, "ICA never makes the 6th call")
	for _, hc := range calls {
		require.Equal(t, http.StatusOK, hc.Status)
	}
	require.Equal(t, 2, strings.Count(w.logs.String(), "response_url used up or expired"), "the rest is logged")
	require.Contains(t, w.logs.String(), "message 6")

	// A fresh response_url, 31 minutes later: expired, logged, not called.
	w.slash("tech1", "deployments", "/ica help")
	c2 := &call{UserName: "tech1", ResponseURL: w.mm.SlashCalls()[1].ResponseURL, At: w.clock.Now()}
	w.clock.Advance(31 * time.Minute)
	w.h.followUp(c2, "too late")
	require.Len(t, w.mm.HookCalls(), MaxResponseURLUses)
	require.Contains(t, w.logs.String(), "too late")

	// Not a Mattermost hook on the configured server: refused, logged.
	w.h.followUp(&call{ResponseURL: "http://169.254.169.254/hooks/commands/x", At: w.clock.Now()}, "ssrf")
	w.h.followUp(&call{ResponseURL: w.mm.URL + "/api/v4/users", At: w.clock.Now()}, "wrong path")
	require.Len(t, w.mm.HookCalls(), MaxResponseURLUses)
	require.Contains(t, w.logs.String(), "not on the configured Mattermost server")
	require.Contains(t, w.logs.String(), "not a Mattermost command hook")
}

func TestAutocompleteData(t *testing.T) {
	h := New(Deps{Queries: &fakeQueries{}, Exporter: &fakeExporter{}, Poster: &mmPoster{}})
	ad := h.AutocompleteData()
	require.NoError(t, ad.IsValid())
	require.Equal(t, "ica", ad.Trigger)
	require.Equal(t, "[status|approvals|incidents|budget|export|help]", ad.Hint)
	var subs []string
	for _, s := range ad.SubCommands {
		subs = append(subs, s.Trigger)
	}
	require.Equal(t, []string{"status", "approvals", "incidents", "budget", "export", "help"}, subs)
	cmd := &model.Command{Trigger: "ica", AutocompleteData: ad}
	_, err := json.Marshal(cmd)
	require.NoError(t, err)
}

func TestCell_Escapes(t *testing.T) {
	require.Equal(t, `a\|b \*c\* @`+"\u200b"+`channel`, cell("a|b *c* @channel", 80))
	require.Equal(t, "x y", cell("x\ny", 80))
	require.Equal(t, "`a'b`", mdCode("a`b"))
	require.Regexp(t, regexp.MustCompile(`^\$1,234,567\.89$`), money(1234567.891))
}
