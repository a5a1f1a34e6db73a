package pipelines_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/pipelines"
)

const (
	templateFile = "azure-pipelines-ica-template.yml"
	exampleFile  = "example-pipeline.yml"
)

// shellCommands splits a step's script into commands (words), joining
// backslash continuations, honouring quotes, dropping comments and stopping
// each command at a pipe, redirection or separator.
func shellCommands(script string) ([][]string, error) {
	script = strings.ReplaceAll(script, "\\\n", " ")
	var cmds [][]string
	for _, line := range strings.Split(script, "\n") {
		var words []string
		var cur strings.Builder
		inWord, quote := false, rune(0)
	scan:
		for _, r := range line {
			switch {
			case quote != 0:
				if r == quote {
					quote = 0
				} else {
					cur.WriteRune(r)
				}
			case r == '\'' || r == '"':
				quote, inWord = r, true
			case r == ' ' || r == '\t':
				if inWord {
					words = append(words, cur.String())
					cur.Reset()
					inWord = false
				}
			case strings.ContainsRune("|><;&", r), r == '#' && !inWord:
				break scan
			default:
				cur.WriteRune(r)
				inWord = true
			}
		}
		if quote != 0 {
			return nil, errors.New("unterminated quote in: " + line)
		}
		if inWord {
			words = append(words, cur.String())
		}
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
	}
	return cmds, nil
}

// icaCommands returns the ica invocations of a step (args after "ica").
func icaCommands(t *testing.T, s pipelines.Step) [][]string {
	t.Helper()
	cmds, err := shellCommands(s.Script)
	require.NoError(t, err, "%s/%s %q", s.Stage, s.Job, s.Name)
	var out [][]string
	for _, c := range cmds {
		if c[0] == "ica" {
			out = append(out, c[1:])
		}
		for _, w := range c[1:] {
			require.NotEqual(t, "ica", w, "ica must start its line so the lint sees it: %q", s.Script)
		}
	}
	return out
}

// writeWrapper puts the template next to a pipeline that uses it with the
// given parameters (a YAML mapping body) and returns the pipeline's path.
func writeWrapper(t *testing.T, params string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(templateFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, templateFile), b, 0o600))
	p := filepath.Join(dir, "pipeline.yml")
	require.NoError(t, os.WriteFile(p, []byte("stages:\n- template: "+templateFile+"\n  parameters:\n"+params), 0o600))
	return p
}

var forbidden = regexp.MustCompile(`(^|[^\w-])(curl|wget|jq|Invoke-RestMethod|Invoke-WebRequest)([^\w-]|$)`)

// lintSteps checks every script step: known ica subcommands and flags, the
// token mapped explicitly, no hand-written HTTP. It returns the subcommands
// used.
func lintSteps(t *testing.T, steps []pipelines.Step, templateOnly bool) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	for _, s := range steps {
		where := s.Stage + "/" + s.Job + " step " + s.Name
		require.NotRegexp(t, forbidden, s.Script, "%s: call ICA through the ica client", where)
		calls := icaCommands(t, s)
		if templateOnly {
			require.NotEmpty(t, calls, "%s does not call ica", where)
		}
		needsToken := false
		for _, args := range calls {
			require.NoError(t, pipelines.CheckArgs(args), "%s: ica %s", where, strings.Join(args, " "))
			if len(args) >= 2 && !strings.HasPrefix(args[1], "-") {
				used[args[0]+" "+args[1]] = true
				needsToken = true
			}
		}
		if needsToken {
			require.Equal(t, "$(ICA_TOKEN)", s.Env["ICA_TOKEN"], "%s: map the secret ICA_TOKEN into env", where)
			require.Equal(t, "$(ICA_URL)", s.Env["ICA_URL"], where)
		}
		if strings.Contains(s.Script, "ica run finish") {
			require.Equal(t, "always()", s.Condition, "%s: the finish step must run whatever happened", where)
		}
	}
	return used
}

var allCommands = map[string]bool{"run start": true, "run event": true, "run deployed": true, "run finish": true, "approval request": true, "approval wait": true}

func TestTemplateSteps_ExamplePipeline(t *testing.T) {
	steps, err := pipelines.TemplateSteps(exampleFile)
	require.NoError(t, err)
	var stages []string
	for _, s := range steps {
		if len(stages) == 0 || stages[len(stages)-1] != s.Stage {
			stages = append(stages, s.Stage)
		}
	}
	require.Equal(t, []string{"Build", "Approval", "Deploy", "Finish"}, stages)
	require.Equal(t, allCommands, lintSteps(t, steps, false))

	// The caller's steps land inside the template's Build and Deploy jobs.
	names := func(stage string) []string {
		var n []string
		for _, s := range steps {
			if s.Stage == stage {
				n = append(n, s.Name)
			}
		}
		return n
	}
	require.Equal(t, []string{"Install the ICA client", "ICA: record the run", "ICA: build started", "Build", "Test",
		"ICA: build completed", "ICA: build failed"}, names("Build"))
	require.Contains(t, names("Deploy"), "Deploy")

	var request, wait pipelines.Step
	for _, s := range steps {
		switch s.Name {
		case "request":
			request = s
		case "wait":
			wait = s
		}
	}
	require.Equal(t, "ica approval request --target production --cost 1234.5", request.Script)
	require.Equal(t, "ica approval wait --timeout 240m", wait.Script)
}

func TestTemplateSteps_TemplateAlone(t *testing.T) {
	for _, target := range []string{ica.TargetStaging, ica.TargetProduction} {
		steps, err := pipelines.TemplateSteps(writeWrapper(t, "    deployment_target: "+target+"\n    estimated_cost: 99\n    ica_version: v1.2.3\n"))
		require.NoError(t, err, target)
		require.Equal(t, allCommands, lintSteps(t, steps, true))
		for _, s := range steps {
			require.NotContains(t, s.Script, "${{", s.Name)
			if strings.Contains(s.Script, "go install") {
				require.Contains(t, s.Script, "github.com/ica-governance/ica/cmd/ica@v1.2.3")
			}
			if strings.Contains(s.Script, "approval request") {
				require.Contains(t, s.Script, "--target "+target+" --cost 99")
			}
		}
	}
}

func TestTemplateSteps_RefusesBadParameters(t *testing.T) {
	for params, want := range map[string]string{
		"    deployment_target: prod\n    estimated_cost: 1\n":              `"prod" is not one of staging, production`,
		"    deployment_target: staging\n":                                  "estimated_cost has no value",
		"    deployment_target: staging\n    estimated_cost: lots\n":        "is not a number",
		"    deployment_target: staging\n    estimated_cost: 1\n    x: 1\n": "unknown parameter x",
	} {
		_, err := pipelines.TemplateSteps(writeWrapper(t, params))
		require.ErrorContains(t, err, want, params)
	}
}

func TestTemplateSteps_RefusesUnsupportedExpressions(t *testing.T) {
	p := filepath.Join(t.TempDir(), "p.yml")
	require.NoError(t, os.WriteFile(p, []byte("steps:\n- ${{ if eq(variables.x, 'y') }}:\n  - script: ica run start\n"), 0o600))
	_, err := pipelines.TemplateSteps(p)
	require.ErrorContains(t, err, "not supported")
	require.NoError(t, os.WriteFile(p, []byte("steps:\n- script: ica run start ${{ variables.x }}\n"), 0o600))
	_, err = pipelines.TemplateSteps(p)
	require.ErrorContains(t, err, "unsupported template expression")
}

var macro = regexp.MustCompile(`\$\(([A-Za-z0-9_.]+)\)`)

// expandMacros replaces $(Name) the way the agent does; unknown names stay.
func expandMacros(s string, vars map[string]string) string {
	return macro.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.ToUpper(strings.ReplaceAll(macro.FindStringSubmatch(m)[1], ".", "_"))
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}

var setVar = regexp.MustCompile(`^##vso\[task\.setvariable variable=([^;\]]+)(;isOutput=true)?\](.*)$`)

// TestExamplePipeline_AgainstFakeICA runs the ica lines of the example
// pipeline, stage by stage, the way an agent would (macros expanded,
// secrets only through env:, output variables passed on), against the fake.
func TestExamplePipeline_AgainstFakeICA(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	f.onGetApproval = func(a *ica.Approval, n int) {
		switch {
		case a.Status == ica.ApprovalPending && n >= 2:
			decide(t, a, ica.ActApproveTechnical, "tech1", "", clock.Now())
		case a.Status == ica.ApprovalTechnical && n >= 3:
			decide(t, a, ica.ActApproveBusiness, "biz1", "", clock.Now())
		}
	}
	steps, err := pipelines.TemplateSteps(exampleFile)
	require.NoError(t, err)

	// Variables: predefined ones, the "ica" group (ICA_TOKEN secret) and, as
	// the stage dependencies the YAML reads would give them, the results.
	vars := azureEnv(f)
	secret := map[string]bool{"ICA_TOKEN": true}
	vars["BUILD_RESULT"], vars["APPROVAL_RESULT"], vars["DEPLOY_RESULT"] = "Succeeded", "Succeeded", "Succeeded"
	outputs := map[string]string{}
	job := ""
	var jobVars map[string]string
	ran := 0
	for _, s := range steps {
		if s.Stage+"/"+s.Job != job {
			job, jobVars = s.Stage+"/"+s.Job, map[string]string{}
			if s.Stage == "Deploy" {
				jobVars["APPROVAL_ID"] = outputs["request.ICA_APPROVAL_ID"]
			}
		}
		if strings.Contains(s.Condition, "failed()") {
			continue
		}
		all := map[string]string{}
		for k, v := range vars {
			all[k] = v
		}
		for k, v := range jobVars {
			all[k] = v
		}
		env := map[string]string{}
		for k, v := range all {
			if !secret[k] {
				env[k] = v
			}
		}
		for k, v := range s.Env {
			env[k] = expandMacros(v, all)
		}
		cmds, err := shellCommands(expandMacros(s.Script, all))
		require.NoError(t, err)
		for _, c := range cmds {
			if c[0] != "ica" {
				continue
			}
			r := runCLI(t, clock, env, c[1:]...)
			require.Equal(t, 0, r.code, "%s %s: %s\n%s", job, s.Name, strings.Join(c, " "), r.stdout+r.stderr)
			ran++
			for _, l := range r.lines() {
				if m := setVar.FindStringSubmatch(l); m != nil {
					if m[2] != "" {
						outputs[s.Name+"."+m[1]] = m[3]
					} else {
						jobVars[strings.ToUpper(m[1])] = m[3]
					}
				}
			}
		}
	}
	require.Greater(t, ran, 8)

	run := f.run("1234")
	require.NotNil(t, run)
	require.Equal(t, "jane.doe", run.TriggeredBy)
	require.Equal(t, ica.RunSuccess, run.Status)
	require.NotEmpty(t, run.AuditHash)
	var types []string
	for _, e := range f.eventsOf("1234") {
		types = append(types, e.EventType)
	}
	require.Equal(t, []string{"build.started", "build.completed", "deploy.started", "deployment"}, types)
	require.Equal(t, "A-1", outputs["request.ICA_APPROVAL_ID"])
	f.mu.Lock()
	require.Equal(t, ica.ApprovalApproved, f.approvals["A-1"].Status)
	require.Len(t, f.approvals, 1)
	f.mu.Unlock()
	require.True(t, slices.ContainsFunc(steps, func(s pipelines.Step) bool { return s.Stage == "Finish" }))
}
