package pipelines_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/pipelines"
)

const commit = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"

// azureEnv is what a step's environment holds on an Azure Pipelines agent
// (values invented, names from the predefined-variables fixture).
func azureEnv(f *fakeICA) map[string]string { return azureEnvURL(f.srv.URL) }

func azureEnvURL(icaURL string) map[string]string {
	return map[string]string{
		"TF_BUILD":                "True",
		"BUILD_BUILDID":           "1234",
		"BUILD_DEFINITIONNAME":    "web service",
		"BUILD_SOURCEBRANCH":      "refs/heads/main",
		"BUILD_SOURCEVERSION":     commit,
		"BUILD_REQUESTEDFOR":      "Jane Doe",
		"BUILD_REQUESTEDFOREMAIL": "Jane.Doe@contoso.com",
		"BUILD_REQUESTEDFORID":    "6f1c9a1e-0b1d-4c53-9d2f-7d0c6a0c1b11",
		"SYSTEM_COLLECTIONURI":    "https://dev.azure.com/fabrikam/",
		"SYSTEM_TEAMPROJECT":      "Fabrikam Fiber",
		"SYSTEM_JOBID":            "12f1170f-54f2-53f3-20dd-22fc7dff55f9",
		"SYSTEM_JOBATTEMPT":       "1",
		"AGENT_JOBSTATUS":         "Succeeded",
		"ICA_URL":                 icaURL,
		"ICA_TOKEN":               testToken,
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// lines returns the stdout lines.
func (r result) lines() []string { return strings.Split(strings.TrimRight(r.stdout, "\n"), "\n") }

func runCLI(t *testing.T, clock *ica.FakeClock, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	cli := &pipelines.CLI{Clock: clock, Rand: func() float64 { return 0.5 }}
	var code int
	async(clock, time.Second, func() {
		code = cli.Main(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
	})
	return result{code, out.String(), errb.String()}
}

// fixtureVariables reads the variable names of the predefined-variables
// excerpt in their environment form (Build.BuildId → BUILD_BUILDID).
func fixtureVariables(t *testing.T) map[string]bool {
	t.Helper()
	fh, err := os.Open(filepath.Join("testdata", "predefined-variables-excerpt.txt"))
	require.NoError(t, err)
	defer fh.Close()
	names := map[string]bool{}
	row := regexp.MustCompile(`^([A-Z][A-Za-z]*(?:\.[A-Za-z]+)+|TF_BUILD) \|`)
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			names[strings.ToUpper(strings.ReplaceAll(m[1], ".", "_"))] = true
		}
	}
	require.NoError(t, sc.Err())
	require.True(t, names["BUILD_BUILDID"] && names["AGENT_JOBSTATUS"], "fixture parsed")
	return names
}

func TestEnv_VariablesExistInFixture(t *testing.T) {
	known := fixtureVariables(t)
	for _, name := range []string{pipelines.EnvBuildID, pipelines.EnvDefinitionName, pipelines.EnvSourceBranch,
		pipelines.EnvSourceVersion, pipelines.EnvRequestedForEmail, pipelines.EnvRequestedFor, pipelines.EnvRequestedForID,
		pipelines.EnvCollectionURI, pipelines.EnvTeamProject, pipelines.EnvJobID, pipelines.EnvJobAttempt,
		pipelines.EnvJobStatus} {
		require.True(t, known[name], "%s is not a documented predefined variable", name)
	}
	for name := range azureEnvURL("http://ica.test") {
		if !strings.HasPrefix(name, "ICA_") {
			require.True(t, known[name], "test env uses undocumented %s", name)
		}
	}
}

func TestRunStartFromEnv(t *testing.T) {
	env := azureEnvURL("http://ica.test")
	s := pipelines.RunStartFromEnv(func(k string) string { return env[k] })
	require.Equal(t, ica.RunStart{
		RunID:             "1234",
		PipelineName:      "web service",
		Branch:            "refs/heads/main",
		Commit:            commit,
		TriggeredBy:       "jane.doe",
		URL:               "https://dev.azure.com/fabrikam/Fabrikam%20Fiber/_build/results?buildId=1234",
		RequestedForEmail: "Jane.Doe@contoso.com",
		RequestedForID:    "6f1c9a1e-0b1d-4c53-9d2f-7d0c6a0c1b11",
	}, s)
	require.NoError(t, s.Validate())

	// A scheduled build has no email: the display name is made into a name
	// ICA accepts (it refuses a requester it cannot compare).
	delete(env, "BUILD_REQUESTEDFOREMAIL")
	env["BUILD_REQUESTEDFOR"] = "Project Collection Service Accounts"
	s = pipelines.RunStartFromEnv(func(k string) string { return env[k] })
	require.Equal(t, "project-collection-service-accounts", s.TriggeredBy)
	require.Empty(t, s.RequestedForEmail)
	require.NoError(t, s.Validate())

	// Values ICA would refuse are left out rather than failing the run.
	env["BUILD_REQUESTEDFOREMAIL"], env["BUILD_REQUESTEDFORID"] = "not an address", "white space"
	s = pipelines.RunStartFromEnv(func(k string) string { return env[k] })
	require.Empty(t, s.RequestedForEmail)
	require.Empty(t, s.RequestedForID)
	require.NoError(t, s.Validate())
}

func TestTriggeredBy(t *testing.T) {
	for _, tc := range []struct{ email, name, want string }{
		{"jane.doe@contoso.com", "Jane Doe", "jane.doe"},
		{"Jane.Doe@Contoso.com", "", "jane.doe"},
		{"jane+ci@contoso.com", "", "jane"},
		{"", "Jane Doe", "jane-doe"},
		{"not-an-email", " Jane ", "jane"},
		{"", "Project Collection Build Service (contoso)", "project-collection-build-service-contoso"},
		{"", "Microsoft.VisualStudio.Services.TFS", "microsoft.visualstudio.services.tfs"},
	} {
		require.Equal(t, tc.want, pipelines.TriggeredBy(tc.email, tc.name), "%q %q", tc.email, tc.name)
	}
}

func TestRunStatus_FromAgentJobStatus(t *testing.T) {
	for in, want := range map[string]string{
		"Succeeded": ica.RunSuccess, "SucceededWithIssues": ica.RunSuccess, "succeeded": ica.RunSuccess,
		"Failed": ica.RunFailed, "Canceled": ica.RunCancelled, "Cancelled": ica.RunCancelled,
	} {
		got, err := pipelines.RunStatus(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "Skipped", "Running"} {
		_, err := pipelines.RunStatus(in)
		require.Error(t, err, in)
	}
}

func TestCombineResults(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"Succeeded", "Succeeded", "SucceededWithIssues"}, ica.RunSuccess},
		{[]string{"Succeeded,Failed,Skipped"}, ica.RunFailed},
		{[]string{"Failed", "Skipped", "Skipped"}, ica.RunFailed},
		{[]string{"Succeeded", "Canceled", "Skipped"}, ica.RunCancelled},
		{[]string{"Failed", "Canceled"}, ica.RunCancelled},
		{[]string{"Succeeded,,"}, ica.RunSuccess},
	} {
		got, err := pipelines.CombineResults(tc.in...)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	_, err := pipelines.CombineResults("Skipped", "")
	require.Error(t, err)
}

func TestEventID_Deterministic(t *testing.T) {
	a := pipelines.EventID("job-1", "1", "Build", "build.completed")
	require.Equal(t, a, pipelines.EventID("job-1", "1", "Build", "build.completed"))
	require.NotEqual(t, a, pipelines.EventID("job-1", "1", "Test", "build.completed"))
	require.NotEqual(t, a, pipelines.EventID("job-1", "2", "Build", "build.completed"))
	require.NotEqual(t, a, pipelines.EventID("job-2", "1", "Build", "build.completed"))
	require.NotEqual(t, a, pipelines.EventID("job-1", "1", "Build", "build.failed"))
	require.Empty(t, pipelines.EventID("", "1", "Build", "x"))
	require.NoError(t, ica.ValidID("event_id", a))
}

func TestMain_RunLifecycle(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	env := azureEnv(f)

	r := runCLI(t, clock, env, "run", "start")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `ICA run 1234 started: pipeline "web service", branch refs/heads/main, commit 0a1b2c3d4e5f, triggered by jane.doe`)
	run := f.run("1234")
	require.Equal(t, "https://dev.azure.com/fabrikam/Fabrikam%20Fiber/_build/results?buildId=1234", run.URL)

	// Flags override the variables; an identical repeat is fine.
	r = runCLI(t, clock, env, "run", "start", "--triggered-by", "jdoe")
	require.Equal(t, 1, r.code, "a different start of the same run is a conflict")
	require.Contains(t, r.stdout, "##vso[task.logissue type=error]run start: ICA answered 409 conflict")

	env["TASK_DISPLAYNAME"] = "ICA: build completed"
	r = runCLI(t, clock, env, "run", "event", "--type", "build.completed", "--data", `{"image":"web:1.2"}`)
	require.Equal(t, 0, r.code, r.stderr)
	// The same step again (retryCountOnTaskFailure) is recorded once.
	r = runCLI(t, clock, env, "run", "event", "--type", "build.completed", "--data", `{"image":"web:1.2"}`)
	require.Equal(t, 0, r.code, r.stderr)
	// A new job attempt records it again.
	env["SYSTEM_JOBID"], env["SYSTEM_JOBATTEMPT"] = "8d1a0b02-0000-0000-0000-000000000002", "2"
	dataFile := filepath.Join(t.TempDir(), "event.json")
	require.NoError(t, os.WriteFile(dataFile, []byte(`{"tests":412,"failed":0}`), 0o600))
	r = runCLI(t, clock, env, "run", "event", "--type", "build.completed", "--data-file", dataFile)
	require.Equal(t, 0, r.code, r.stderr)
	evs := f.eventsOf("1234")
	require.Len(t, evs, 2)
	require.JSONEq(t, `{"image":"web:1.2"}`, string(evs[0].EventData))
	require.JSONEq(t, `{"tests":412,"failed":0}`, string(evs[1].EventData))
	require.Equal(t, pipelines.EventID("12f1170f-54f2-53f3-20dd-22fc7dff55f9", "1", "ICA: build completed", "build.completed"), evs[0].EventID)

	env["AGENT_JOBSTATUS"] = "Canceled"
	r = runCLI(t, clock, env, "run", "finish")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, ica.RunCancelled, f.run("1234").Status)
	require.Contains(t, r.stdout, "ICA run 1234 finished: cancelled; audit hash ")
	require.Contains(t, r.stdout, "##vso[task.setvariable variable=ICA_AUDIT_HASH]"+f.run("1234").AuditHash+"\n")
}

func TestMain_RunFinish_StatusSources(t *testing.T) {
	for _, tc := range []struct {
		jobStatus string
		args      []string
		want      string
	}{
		{"Succeeded", nil, ica.RunSuccess},
		{"SucceededWithIssues", nil, ica.RunSuccess},
		{"Failed", nil, ica.RunFailed},
		{"Canceled", nil, ica.RunCancelled},
		{"Succeeded", []string{"--azure-result", "Succeeded,Failed,Skipped"}, ica.RunFailed},
		{"Succeeded", []string{"--azure-result", "Succeeded", "--azure-result", "Canceled"}, ica.RunCancelled},
		{"Failed", []string{"--status", "success"}, ica.RunSuccess},
	} {
		t.Run(tc.jobStatus+strings.Join(tc.args, " "), func(t *testing.T) {
			clock := ica.NewFakeClock(t0)
			f := newFakeICA(t, clock)
			env := azureEnv(f)
			env["AGENT_JOBSTATUS"] = tc.jobStatus
			require.Equal(t, 0, runCLI(t, clock, env, "run", "start").code)
			r := runCLI(t, clock, env, append([]string{"run", "finish"}, tc.args...)...)
			require.Equal(t, 0, r.code, r.stderr)
			require.Equal(t, tc.want, f.run("1234").Status)
		})
	}
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	env := azureEnv(f)
	delete(env, "AGENT_JOBSTATUS")
	r := runCLI(t, clock, env, "run", "finish")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "AGENT_JOBSTATUS is not set; pass --status")
}

func TestMain_Configuration(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)

	env := azureEnv(f)
	delete(env, "ICA_URL")
	r := runCLI(t, clock, env, "run", "start")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "ICA_URL is not set")

	env = azureEnv(f)
	delete(env, "ICA_TOKEN")
	r = runCLI(t, clock, env, "run", "start")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "no token for ICA")
	require.Contains(t, r.stderr, "ICA_TOKEN: $(ICA_TOKEN)")

	// The step maps a secret variable that the pipeline does not define.
	env["ICA_TOKEN"] = "$(ICA_TOKEN)"
	r = runCLI(t, clock, env, "run", "start")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "unexpanded macro $(ICA_TOKEN)")

	env = azureEnv(f)
	delete(env, "BUILD_SOURCEVERSION")
	r = runCLI(t, clock, env, "run", "start")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "commit is required (from BUILD_SOURCEVERSION or --commit)")

	env["ICA_TOKEN"] = "wrong"
	r = runCLI(t, clock, env, "run", "start", "--commit", commit)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "401 unauthorized")
	require.NotContains(t, r.stdout+r.stderr, "wrong", "the token is never printed")

	require.Empty(t, f.runs)
}

func TestMain_ApprovalRequest(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	env := azureEnv(f)
	require.Equal(t, 0, runCLI(t, clock, env, "run", "start").code)

	r := runCLI(t, clock, env, "approval", "request", "--target", "production", "--cost", "1234.5")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, []string{
		"Approval A-1 requested: production deployment of run 1234, estimated cost $1234.50; status pending; expires at 2025-03-14T13:00:00Z",
		"##vso[task.setvariable variable=ICA_APPROVAL_ID]A-1",
		"##vso[task.setvariable variable=ICA_APPROVAL_ID;isOutput=true]A-1",
	}, r.lines())

	// Asking again while it is open gives the same approval.
	r = runCLI(t, clock, env, "approval", "request", "--target", "production", "--cost", "1234.5")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "variable=ICA_APPROVAL_ID;isOutput=true]A-1\n")

	f.refuse = "monthly budget exceeded: 9800 of 10000 USD spent, 1234.50 requested"
	r = runCLI(t, clock, env, "approval", "request", "--target", "staging", "--cost", "1234.5")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stdout, "##vso[task.logissue type=error]ICA refused the staging deployment of run 1234: monthly budget exceeded: 9800 of 10000 USD spent, 1234.50 requested\n")

	for _, args := range [][]string{
		{"--target", "prod", "--cost", "1"},
		{"--target", "production"},
		{"--target", "production", "--cost", "-5"},
		{"--cost", "12"},
	} {
		r = runCLI(t, clock, env, append([]string{"approval", "request"}, args...)...)
		require.Equal(t, 2, r.code, args)
	}
}

func TestMain_ApprovalWait_Approved(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.addApproval(pendingApproval(t0))
	f.onGetApproval = func(a *ica.Approval, n int) {
		switch n {
		case 2:
			decide(t, a, ica.ActApproveTechnical, "tech1", "", clock.Now())
		case 3:
			decide(t, a, ica.ActApproveBusiness, "biz1", "", clock.Now())
		}
	}
	env := azureEnv(f)
	env["ICA_APPROVAL_ID"] = "A-12"
	r := runCLI(t, clock, env, "approval", "wait")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, []string{
		"Waiting for approval A-12",
		"Approval A-12 is pending; waiting for the technical approval (production deployment of run 1234, expires at 2025-03-14T13:00:00Z)",
		"Approval A-12 has its technical approval by tech1; waiting for the business approval (production deployment of run 1234, expires at 2025-03-14T13:00:00Z)",
		"Approval A-12 was approved by tech1 (technical) and biz1 (business)",
	}, r.lines())
}

func TestMain_ApprovalWait_Rejected(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.addApproval(pendingApproval(t0))
	f.onGetApproval = func(a *ica.Approval, n int) {
		switch n {
		case 2:
			decide(t, a, ica.ActApproveTechnical, "tech1", "", clock.Now())
		case 4:
			decide(t, a, ica.ActReject, "biz1", "cost too high for a hotfix", clock.Now())
		}
	}
	r := runCLI(t, clock, azureEnv(f), "approval", "wait", "--id", "A-12")
	require.Equal(t, 1, r.code)
	lines := r.lines()
	require.Equal(t, []string{
		"##vso[task.logissue type=error]Approval A-12 was rejected by biz1: cost too high for a hotfix",
		"##vso[task.complete result=Failed;]Approval A-12 was rejected by biz1: cost too high for a hotfix",
	}, lines[len(lines)-2:])
	require.Contains(t, r.stderr, "ica: Approval A-12 was rejected by biz1: cost too high for a hotfix")
}

func TestMain_ApprovalWait_RejectionCannotInjectLoggingCommands(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.addApproval(pendingApproval(t0))
	evil := "no\n##vso[task.complete result=Succeeded;]done\r\n##[section]x %AZP25"
	f.onGetApproval = func(a *ica.Approval, n int) {
		if n == 2 {
			decide(t, a, ica.ActReject, "biz1##vso[task.setvariable variable=X]1", evil, clock.Now())
		}
	}
	r := runCLI(t, clock, azureEnv(f), "approval", "wait", "--id", "A-12")
	require.Equal(t, 1, r.code)
	for _, l := range r.lines() {
		// Only the commands ICA means to send, each at the start of its line.
		require.Equal(t, strings.Index(l, "##"), strings.LastIndex(l, "##"), l)
		if strings.HasPrefix(l, "##") {
			require.Regexp(t, `^##vso\[task\.(logissue type=error|complete result=Failed;)\]Approval A-12 was rejected by biz1# #vso`, l)
		}
	}
	require.NotContains(t, r.stdout, "##vso[task.complete result=Succeeded")
	require.NotContains(t, r.stdout, "##vso[task.setvariable variable=X")
	require.NotContains(t, r.stdout, "##[section]")
}

func TestMain_ApprovalWait_Expired(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	ap := pendingApproval(t0)
	ap.ExpiresAt = t0.Add(30 * time.Second)
	f.addApproval(ap)
	f.onGetApproval = func(a *ica.Approval, n int) {
		if !clock.Now().Before(a.ExpiresAt) && !a.Final() {
			decide(t, a, ica.ActExpire, "", "", clock.Now())
		}
	}
	r := runCLI(t, clock, azureEnv(f), "approval", "wait", "--id", "A-12")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stdout, "##vso[task.logissue type=error]Approval A-12 expired at 2025-03-14T09:00:30Z without a technical approval\n")
	require.Contains(t, r.stdout, "##vso[task.complete result=Failed;]")
}

func TestMain_ApprovalWait_Timeout(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.addApproval(pendingApproval(t0))
	r := runCLI(t, clock, azureEnv(f), "approval", "wait", "--id", "A-12", "--timeout", "20m")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stdout, "##vso[task.logissue type=error]Timed out: approval A-12 is still pending after waiting 20m0s")
	require.NotContains(t, r.stdout, "task.complete")
	require.Contains(t, r.stdout, "Approval A-12 still pending after 5m", "a heartbeat line while nothing changes")
}

func TestMain_ApprovalWait_FindsTheRunsLatestApproval(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	env := azureEnv(f)
	require.Equal(t, 0, runCLI(t, clock, env, "run", "start").code)
	require.Equal(t, 0, runCLI(t, clock, env, "approval", "request", "--target", "staging", "--cost", "3").code)
	f.onGetApproval = func(a *ica.Approval, n int) {
		if !a.Final() {
			decide(t, a, ica.ActBypass, "oncall", "incident 42", clock.Now())
		}
	}
	r := runCLI(t, clock, env, "approval", "wait") // no --id, no ICA_APPROVAL_ID
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "##vso[task.logissue type=warning]Approval A-1 was bypassed (break-glass) by oncall: incident 42\n")
	require.Equal(t, 1, f.callCount("GET", "/api/v1/runs/1234/approvals/latest"))

	// An unexpanded $(approval_id) counts as unset.
	env["ICA_APPROVAL_ID"] = "$(approval_id)"
	r = runCLI(t, clock, env, "approval", "wait")
	require.Equal(t, 0, r.code, r.stderr)

	f2 := newFakeICA(t, clock)
	r = runCLI(t, clock, azureEnv(f2), "approval", "wait")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "run 1234 has no approval")
}

func TestMain_Help(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	env := map[string]string{}
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"run", "--help"}, 0, []string{"Usage: ica run <subcommand>", "start", "event", "finish", "ICA_TOKEN"}},
		{[]string{"approval", "--help"}, 0, []string{"request", "wait"}},
		{[]string{"run", "start", "--help"}, 0, []string{"BUILD_REQUESTEDFOREMAIL", "-triggered-by", "Mattermost username"}},
		{[]string{"run", "event", "-h"}, 0, []string{"-data-file", "SYSTEM_JOBID"}},
		{[]string{"run", "finish", "--help"}, 0, []string{"AGENT_JOBSTATUS", "SucceededWithIssues", "-azure-result"}},
		{[]string{"approval", "request", "--help"}, 0, []string{"-target", "-cost", "isOutput"}},
		{[]string{"approval", "wait", "--help"}, 0, []string{"-timeout", "ICA_APPROVAL_ID", "exit 2"}},
		{[]string{"--help"}, 0, []string{"ica approval wait", "ica run start"}},
	} {
		r := runCLI(t, clock, env, tc.args...)
		require.Equal(t, tc.code, r.code, tc.args)
		for _, w := range tc.want {
			require.Contains(t, r.stdout, w, tc.args)
		}
	}
	for _, args := range [][]string{{}, {"run"}, {"deploy"}, {"run", "stop"}, {"run", "start", "--nope"}, {"run", "start", "extra"}} {
		r := runCLI(t, clock, env, args...)
		require.Equal(t, 2, r.code, args)
		require.NotEmpty(t, r.stderr, args)
	}
}

func TestCheckArgs(t *testing.T) {
	for _, ok := range [][]string{
		{"run", "start"},
		{"run", "event", "--type", "x", "--data", `{"a":1}`},
		{"run", "finish", "--azure-result", "$(build_result),Succeeded"},
		{"approval", "request", "--target", "staging", "--cost", "0"},
		{"approval", "wait", "--id", "$(ICA_APPROVAL_ID)", "--timeout", "240m"},
		{"run", "--help"},
	} {
		require.NoError(t, pipelines.CheckArgs(ok), ok)
	}
	for _, bad := range [][]string{
		{"run", "event"},
		{"run", "event", "--type", "x", "--data", `[1]`},
		{"run", "finish", "--status", "done"},
		{"run", "finish", "--azure-result", "Exploded"},
		{"approval", "request", "--target", "qa", "--cost", "1"},
		{"approval", "wait", "--timeout", "soon"},
		{"run", "start", "--colour", "red"},
	} {
		require.Error(t, pipelines.CheckArgs(bad), bad)
	}
}

func TestEventInputRoundTrip(t *testing.T) {
	// The CLI sends event_data as the object it was given, not a string.
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	env := azureEnv(f)
	require.Equal(t, 0, runCLI(t, clock, env, "run", "start").code)
	require.Equal(t, 0, runCLI(t, clock, env, "run", "event", "--type", "t").code)
	var obj map[string]any
	require.NoError(t, json.Unmarshal(f.eventsOf("1234")[0].EventData, &obj))
	require.Empty(t, obj)
}
