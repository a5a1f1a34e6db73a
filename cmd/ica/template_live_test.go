package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/bot/mmtest"
	"github.com/ica-governance/ica/pipelines"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildICA builds the ica binary once per test process.
func buildICA(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ica-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "ica")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return builtBin
}

var (
	macroRef  = regexp.MustCompile(`\$\(([A-Za-z0-9_.]+)\)`)
	setVarCmd = regexp.MustCompile(`^##vso\[task\.setvariable variable=([^;\]]+)(;isOutput=true)?\](.*)$`)
)

// expand replaces $(Name) macros the way the agent does; unknown names stay.
func expand(s string, vars map[string]string) string {
	return macroRef.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.ToUpper(strings.ReplaceAll(macroRef.FindStringSubmatch(m)[1], ".", "_"))
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}

// TestTemplate_StepsAgainstLiveICA runs the example pipeline's steps for real:
// each step's script, through bash, with the predefined variables set, the
// ica binary of this tree on PATH, against the real server; approvers click
// the card in the fake Mattermost while the wait step polls. The install
// steps (go install of a released version) are the only ones not run.
func TestTemplate_StepsAgainstLiveICA(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and waits for a real poll")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	bin := buildICA(t)
	mm := mmtest.New(t)
	mm.AddTeam("eng")
	mm.AddChannel("eng", "deployments")
	mm.AddUser("tech1")
	mm.AddUser("biz1")
	_, botToken := mm.AddBot("ica")
	mm.Join("deployments", "tech1", "biz1", "ica")
	addr := freeAddr(t)
	base, stop, _ := startServe(t, map[string]string{"ICA_ADDR": addr, "ICA_DATA_DIR": t.TempDir(),
		"ICA_PIPELINE_TOKENS": "ado=" + testToken, "ICA_PUBLIC_URL": "http://" + addr,
		"ICA_MATTERMOST_URL": mm.URL, "ICA_MATTERMOST_TOKEN": botToken, "ICA_MATTERMOST_TEAM": "eng",
		"ICA_TECH_APPROVERS": "tech1", "ICA_BUSINESS_APPROVERS": "biz1"})
	defer func() { require.Equal(t, 0, stop()) }()

	// Approvers click as soon as the card is there.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, p := range mm.Posts("deployments") {
				if p.GetProp("ica_approval_id") == nil || !hasAction(p, "approvetechnical") {
					continue
				}
				_, _ = mm.Click(p.Id, "approvetechnical", "tech1")
				_, _ = mm.Click(p.Id, "approvebusiness", "biz1")
			}
		}
	}()

	steps, err := pipelines.TemplateSteps(filepath.Join("..", "..", "pipelines", "example-pipeline.yml"))
	require.NoError(t, err)
	vars := map[string]string{
		"TF_BUILD": "True", "BUILD_BUILDID": "4711", "BUILD_DEFINITIONNAME": "web service",
		"BUILD_SOURCEBRANCH": "refs/heads/main", "BUILD_SOURCEVERSION": "9fceb02d0ae598e95dc970b74767f19372d61af8",
		"BUILD_REQUESTEDFOR": "Jane Doe", "BUILD_REQUESTEDFOREMAIL": "Jane.Doe@contoso.com",
		"SYSTEM_COLLECTIONURI": "https://dev.azure.com/fabrikam/", "SYSTEM_TEAMPROJECT": "Fabrikam",
		"SYSTEM_JOBATTEMPT": "1", "AGENT_JOBSTATUS": "Succeeded",
		"ICA_URL": base, "ICA_TOKEN": testToken,
		// What the stage dependencies the YAML reads would give.
		"BUILD_RESULT": "Succeeded", "APPROVAL_RESULT": "Succeeded", "DEPLOY_RESULT": "Succeeded",
	}
	secret := map[string]bool{"ICA_TOKEN": true}
	outputs := map[string]string{}
	job, ran := "", 0
	var jobVars map[string]string
	for i, s := range steps {
		if s.Stage+"/"+s.Job != job {
			job, jobVars = s.Stage+"/"+s.Job, map[string]string{"SYSTEM_JOBID": fmt.Sprintf("00000000-0000-4000-8000-%012d", i)}
			if s.Stage == "Deploy" {
				jobVars["APPROVAL_ID"] = outputs["request.ICA_APPROVAL_ID"]
			}
		}
		if strings.Contains(s.Condition, "failed()") || !strings.Contains(s.Script, "ica ") ||
			strings.Contains(s.Script, "go install") {
			continue
		}
		all := map[string]string{}
		for k, v := range vars {
			all[k] = v
		}
		for k, v := range jobVars {
			all[k] = v
		}
		env := []string{"PATH=" + filepath.Dir(bin) + ":" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		for k, v := range all {
			if !secret[k] { // secret variables reach a step only through env:
				env = append(env, k+"="+v)
			}
		}
		for k, v := range s.Env {
			env = append(env, k+"="+expand(v, all))
		}
		cmd := exec.Command("bash", "-e", "-c", expand(s.Script, all))
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Run(), "%s %q:\n%s\n%s", job, s.Name, s.Script, out.String())
		ran++
		for _, l := range strings.Split(out.String(), "\n") {
			if m := setVarCmd.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
				if m[2] != "" {
					outputs[s.Name+"."+m[1]] = m[3]
				} else {
					jobVars[strings.ToUpper(m[1])] = m[3]
				}
			}
		}
	}
	require.GreaterOrEqual(t, ran, 8, "the example's ica steps ran")

	st, body := call(t, "GET", base+"/api/v1/runs/4711", testToken, "")
	require.Equal(t, 200, st)
	require.Equal(t, "success", body["status"])
	require.Equal(t, "jane.doe", body["triggered_by"])
	require.NotEmpty(t, body["audit_hash"])
	_, body = call(t, "GET", base+"/api/v1/runs/4711/events", testToken, "")
	var types []string
	for _, e := range body["events"].([]any) {
		types = append(types, e.(map[string]any)["event_type"].(string))
	}
	require.Equal(t, []string{"build.started", "build.completed", "deploy.started", "deployment"}, types)
	id := outputs["request.ICA_APPROVAL_ID"]
	require.NotEmpty(t, id)
	_, body = call(t, "GET", base+"/api/v1/approvals/"+id, testToken, "")
	require.Equal(t, "approved", body["status"])
}

func hasAction(p *model.Post, id string) bool {
	for _, a := range p.Attachments() {
		for _, act := range a.Actions {
			if act.Id == id {
				return true
			}
		}
	}
	return false
}
