package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Exit codes of the commands.
const (
	ExitOK = 0
	// ExitFailed: ICA answered no (rejected, expired, refused by policy,
	// conflict) or could not be reached after retries.
	ExitFailed = 1
	// ExitUsage: bad flags, missing configuration (ICA_URL, a token, a
	// predefined variable), or a wait that reached its own timeout.
	ExitUsage = 2
)

// heartbeat is how often a wait with no news prints that it is still waiting.
const heartbeat = 5 * time.Minute

// CLI runs the pipeline commands with injectable dependencies; the zero
// value uses the system clock, ICA_TOKEN or ICA_AUDIENCE for tokens and the
// default retry policy.
type CLI struct {
	Clock      ica.Clock
	HTTPClient *http.Client
	// Tokens, when set, replaces ICA_TOKEN and ICA_AUDIENCE.
	Tokens TokenSource
	Retry  RetryPolicy
	Rand   func() float64
}

// Main runs one command; args start after the program name, e.g.
// ["run", "start"] or ["approval", "wait", "--timeout", "2h"]. It returns the
// process exit code (ExitOK, ExitFailed, ExitUsage).
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return (&CLI{}).Main(ctx, args, getenv, stdout, stderr)
}

// CheckArgs parses a command line the way Main would, checks the flag
// values that do not depend on the environment or on ICA, and runs nothing.
// Lints of pipeline YAML use it.
func CheckArgs(args []string) error {
	var out strings.Builder
	x := &inv{getenv: func(string) string { return "" }, stdout: &out, stderr: &out, dry: true}
	if code := x.dispatch(context.Background(), args); code != ExitOK {
		return errors.New(strings.TrimSpace(out.String()))
	}
	return nil
}

// Main runs one command with c's dependencies.
func (c *CLI) Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if getenv == nil {
		getenv = os.Getenv
	}
	x := &inv{cli: c, getenv: getenv, stdout: stdout, stderr: stderr}
	return x.dispatch(ctx, args)
}

// inv is one invocation of a command.
type inv struct {
	cli            *CLI
	getenv         func(string) string
	stdout, stderr io.Writer
	dry            bool // parse and check only
}

// command is one `ica <group> <name>` command.
type command struct {
	summary string
	usage   string // synopsis after "ica <group> <name>"
	details string
	// define registers the flags and returns the static check and the action.
	define func(fs *flag.FlagSet, x *inv) (check func() error, run func(ctx context.Context) int)
}

type group struct {
	summary  string
	commands map[string]*command
}

func groups() map[string]*group {
	return map[string]*group{
		"run": {summary: "record a pipeline run in ICA's ledger", commands: map[string]*command{
			"start":    cmdRunStart,
			"event":    cmdRunEvent,
			"deployed": cmdRunDeployed,
			"finish":   cmdRunFinish,
		}},
		"approval": {summary: "ask for and wait on a deployment approval", commands: map[string]*command{
			"request": cmdApprovalRequest,
			"wait":    cmdApprovalWait,
			"void":    cmdApprovalVoid,
		}},
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" || a == "help" }

func (x *inv) dispatch(ctx context.Context, args []string) int {
	gs := groups()
	if len(args) == 0 {
		x.topUsage(x.stderr)
		return ExitUsage
	}
	if isHelp(args[0]) {
		x.topUsage(x.stdout)
		return ExitOK
	}
	g, ok := gs[args[0]]
	if !ok {
		fmt.Fprintf(x.stderr, "ica: unknown command %q\n\n", args[0])
		x.topUsage(x.stderr)
		return ExitUsage
	}
	if len(args) == 1 || isHelp(args[1]) {
		w, code := x.stdout, ExitOK
		if len(args) == 1 {
			w, code = x.stderr, ExitUsage
		}
		x.groupUsage(w, args[0], g)
		return code
	}
	cmd, ok := g.commands[args[1]]
	if !ok {
		fmt.Fprintf(x.stderr, "ica %s: unknown command %q\n\n", args[0], args[1])
		x.groupUsage(x.stderr, args[0], g)
		return ExitUsage
	}
	name := args[0] + " " + args[1]
	fs := flag.NewFlagSet("ica "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	check, run := cmd.define(fs, x)
	if err := fs.Parse(args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			commandUsage(x.stdout, name, cmd, fs)
			return ExitOK
		}
		fmt.Fprintf(x.stderr, "ica %s: %v\nRun 'ica %s --help' for usage.\n", name, err, name)
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(x.stderr, "ica %s: unexpected argument %q\nRun 'ica %s --help' for usage.\n", name, fs.Arg(0), name)
		return ExitUsage
	}
	if check != nil {
		if err := check(); err != nil {
			fmt.Fprintf(x.stderr, "ica %s: %v\nRun 'ica %s --help' for usage.\n", name, err, name)
			return ExitUsage
		}
	}
	if x.dry {
		return ExitOK
	}
	return run(ctx)
}

func (x *inv) topUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: ica <command> <subcommand> [flags]\n\nPipeline commands (run inside an Azure Pipelines step):\n")
	gs := groups()
	for _, gn := range sortedKeys(gs) {
		for _, cn := range sortedKeys(gs[gn].commands) {
			fmt.Fprintf(w, "  ica %-18s %s\n", gn+" "+cn, gs[gn].commands[cn].summary)
		}
	}
	fmt.Fprint(w, envHelp)
}

func (x *inv) groupUsage(w io.Writer, gn string, g *group) {
	fmt.Fprintf(w, "Usage: ica %s <subcommand> [flags]\n\nica %s: %s.\n\nSubcommands:\n", gn, gn, g.summary)
	for _, cn := range sortedKeys(g.commands) {
		c := g.commands[cn]
		fmt.Fprintf(w, "  %-8s %s\n           ica %s %s %s\n", cn, c.summary, gn, cn, c.usage)
	}
	fmt.Fprintf(w, "\nRun 'ica %s <subcommand> --help' for its flags.\n", gn)
	fmt.Fprint(w, envHelp)
}

func commandUsage(w io.Writer, name string, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: ica %s %s\n\n%s.\n", name, c.usage, upperFirst(c.summary))
	if c.details != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.details))
	}
	fmt.Fprint(w, "\nFlags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprint(w, envHelp)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

const envHelp = `
Environment:
  ICA_URL        ICA's base URL (or --ica-url)
  ICA_TOKEN      bearer token; a secret variable, so map it into the step:
                   env:
                     ICA_TOKEN: $(ICA_TOKEN)
  ICA_AUDIENCE   without ICA_TOKEN: get an Entra ID token for "<audience>/.default"
                 from Managed Identity / DefaultAzureCredential (AZURE_CLIENT_ID
                 picks a user-assigned identity)
Exit status: 0 done, 1 refused or failed, 2 usage or configuration error, or timeout.
`

// fail reports an error on stderr and as an Azure Pipelines issue.
func (x *inv) fail(code int, format string, args ...any) int {
	msg := safeText(fmt.Sprintf(format, args...))
	fmt.Fprintln(x.stderr, "ica: "+msg)
	logIssue(x.stdout, "error", msg)
	return code
}

// say prints a progress line built from possibly untrusted values.
func (x *inv) say(format string, args ...any) {
	fmt.Fprintln(x.stdout, safeText(fmt.Sprintf(format, args...)))
}

// apiFail reports a failed call and picks the exit code.
func (x *inv) apiFail(what string, err error) int {
	var ie *ica.Error
	var ae *APIError
	switch {
	case errors.As(err, &ae):
		msg := ae.Message
		if ae.Field != "" {
			msg += " (field " + ae.Field + ")"
		}
		if ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden {
			return x.fail(ExitFailed, "%s: ICA answered %d %s: %s; check ICA_TOKEN (or ICA_AUDIENCE)", what, ae.Status, ae.Code, msg)
		}
		if IsTransient(err) {
			return x.fail(ExitFailed, "%s: ICA is unavailable: %v", what, err)
		}
		return x.fail(ExitFailed, "%s: ICA answered %d %s: %s", what, ae.Status, ae.Code, msg)
	case errors.As(err, &ie) && ie.Code == ica.EINVALID:
		return x.fail(ExitUsage, "%s: %s", what, ie.Message)
	case errors.Is(err, context.Canceled):
		return x.fail(ExitFailed, "%s: cancelled", what)
	}
	return x.fail(ExitFailed, "%s: %v", what, err)
}

// client builds the API client from flags and environment.
func (x *inv) client(icaURL string) (*Client, int) {
	if icaURL == "" {
		icaURL = lookup(x.getenv, EnvURL)
	}
	if icaURL == "" {
		hint := ""
		if isMacro(strings.TrimSpace(x.getenv(EnvURL))) {
			hint = " (it is the unexpanded macro " + strings.TrimSpace(x.getenv(EnvURL)) + ": define the pipeline variable)"
		}
		return nil, x.fail(ExitUsage, "ICA_URL is not set%s: set it to ICA's base URL, e.g. https://ica.example.com, or pass --ica-url", hint)
	}
	ts := x.cli.Tokens
	if ts == nil {
		raw := strings.TrimSpace(x.getenv(EnvToken))
		switch {
		case raw != "" && !isMacro(raw):
			ts = StaticToken(raw)
		case lookup(x.getenv, EnvAudience) != "":
			var err error
			if ts, err = NewAzureTokenSource(lookup(x.getenv, EnvAudience)); err != nil {
				return nil, x.fail(ExitUsage, "%v", err)
			}
		default:
			hint := ""
			if raw != "" {
				hint = " (ICA_TOKEN is the unexpanded macro " + raw + ": the secret variable is not defined for this pipeline)"
			}
			return nil, x.fail(ExitUsage, "no token for ICA%s: set the secret variable ICA_TOKEN and map it into the step's env (ICA_TOKEN: $(ICA_TOKEN)), or set ICA_AUDIENCE to use Managed Identity", hint)
		}
	}
	c, err := NewClient(Config{
		URL: icaURL, Tokens: ts, HTTPClient: x.cli.HTTPClient, Clock: x.cli.Clock,
		Retry: x.cli.Retry, Rand: x.cli.Rand, UserAgent: "ica-pipelines-cli",
		Logf: func(format string, args ...any) { x.say(format, args...) },
	})
	if err != nil {
		return nil, x.fail(ExitUsage, "%v", err)
	}
	return c, ExitOK
}

func (x *inv) clock() ica.Clock {
	if x.cli.Clock != nil {
		return x.cli.Clock
	}
	return ica.SystemClock{}
}

// runID returns --run-id or BUILD_BUILDID.
func (x *inv) runID(flagVal string) (string, bool) {
	if flagVal != "" {
		return flagVal, true
	}
	id := lookup(x.getenv, EnvBuildID)
	return id, id != ""
}

func (x *inv) noRunID() int {
	return x.fail(ExitUsage, "no run id: BUILD_BUILDID is not set; pass --run-id")
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// fieldSource tells which variable or flag supplies a run start field.
var fieldSource = map[string]string{
	"run_id":          "BUILD_BUILDID or --run-id",
	"pipeline_name":   "BUILD_DEFINITIONNAME or --pipeline",
	"branch":          "BUILD_SOURCEBRANCH or --branch",
	"commit":          "BUILD_SOURCEVERSION or --commit",
	"triggered_by":    "BUILD_REQUESTEDFOREMAIL / BUILD_REQUESTEDFOR or --triggered-by",
	"artifact_digest": "ICA_ARTIFACT_DIGEST or --artifact-digest",
	"url":             "SYSTEM_COLLECTIONURI + SYSTEM_TEAMPROJECT or --url",
}

var cmdRunStart = &command{
	summary: "record the start of this pipeline run",
	usage:   "[--run-id ID] [--pipeline NAME] [--branch REF] [--commit SHA] [--triggered-by USER] [--artifact-digest sha256:HEX] [--url URL]",
	details: `
Every field defaults to an Azure Pipelines predefined variable, so in a
pipeline the command needs no flags:
  run_id        BUILD_BUILDID
  pipeline_name BUILD_DEFINITIONNAME
  branch        BUILD_SOURCEBRANCH (the full ref, refs/heads/main)
  commit        BUILD_SOURCEVERSION
  triggered_by  the part before "@" of BUILD_REQUESTEDFOREMAIL, lower-cased
                (jane.doe@contoso.com -> jane.doe), assumed to be the person's
                Mattermost username; BUILD_REQUESTEDFOR when there is no email
  url           SYSTEM_COLLECTIONURI + SYSTEM_TEAMPROJECT + /_build/results?buildId=BUILD_BUILDID
Starting the same run again is harmless (ICA answers with the stored run);
the same run id with different fields is refused (409).`,
	define: func(fs *flag.FlagSet, x *inv) (func() error, func(context.Context) int) {
		var s ica.RunStart
		icaURL := fs.String("ica-url", "", "ICA base URL (default $ICA_URL)")
		fs.StringVar(&s.RunID, "run-id", "", "run id (default $BUILD_BUILDID)")
		fs.StringVar(&s.PipelineName, "pipeline", "", "pipeline name (default $BUILD_DEFINITIONNAME)")
		fs.StringVar(&s.Branch, "branch", "", "branch ref (default $BUILD_SOURCEBRANCH)")
		fs.StringVar(&s.Commit, "commit", "", "commit id (default $BUILD_SOURCEVERSION)")
		fs.StringVar(&s.TriggeredBy, "triggered-by", "", "Mattermost username of the person the run is for (default from $BUILD_REQUESTEDFOREMAIL)")
		fs.StringVar(&s.ArtifactDigest, "artifact-digest", "", "digest of the artifact the run produces, sha256:<hex> (default $ICA_ARTIFACT_DIGEST)")
		fs.StringVar(&s.URL, "url", "", "link to the run (default built from $SYSTEM_COLLECTIONURI, $SYSTEM_TEAMPROJECT, $BUILD_BUILDID)")
		return nil, func(ctx context.Context) int {
			env := RunStartFromEnv(x.getenv)
			fill := func(dst *string, v string) {
				if *dst == "" {
					*dst = v
				}
			}
			fill(&s.RunID, env.RunID)
			fill(&s.PipelineName, env.PipelineName)
			fill(&s.Branch, env.Branch)
			fill(&s.Commit, env.Commit)
			fill(&s.TriggeredBy, env.TriggeredBy)
			fill(&s.URL, env.URL)
			fill(&s.ArtifactDigest, lookup(x.getenv, EnvArtifactDigest))
			if err := s.Validate(); err != nil {
				f := ica.ErrorField(err)
				return x.fail(ExitUsage, "run start: %s (from %s)", ica.ErrorMessage(err), fieldSource[f])
			}
			c, code := x.client(*icaURL)
			if c == nil {
				return code
			}
			r, err := c.StartRun(ctx, s)
			if err != nil {
				return x.apiFail("run start", err)
			}
			x.say("ICA run %s started: pipeline %q, branch %s, commit %s, triggered by %s", r.RunID, r.PipelineName, r.Branch, shortCommit(r.Commit), r.TriggeredBy)
			return ExitOK
		}
	},
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

var cmdRunEvent = &command{
	summary: "record an event of this run",
	usage:   "--type TYPE [--data JSON | --data-file FILE] [--event-id ID] [--step NAME] [--run-id ID]",
	details: `
The event data is a JSON object (default {}). Each event gets an event_id
derived from SYSTEM_JOBID, SYSTEM_JOBATTEMPT, the step (--step, default
TASK_DISPLAYNAME) and the type, so a retried or re-run step is recorded once.
To record the same type twice in one step, give each a distinct --step or
--event-id. Outside a pipeline (no SYSTEM_JOBID) a random id is used.`,
	define: func(fs *flag.FlagSet, x *inv) (func() error, func(context.Context) int) {
		icaURL := fs.String("ica-url", "", "ICA base URL (default $ICA_URL)")
		runID := fs.String("run-id", "", "run id (default $BUILD_BUILDID)")
		typ := fs.String("type", "", "event type, e.g. build.completed (required)")
		data := fs.String("data", "", "event data, a JSON object")
		dataFile := fs.String("data-file", "", "read the event data from this file")
		eventID := fs.String("event-id", "", "event id (default derived from the job, step and type)")
		step := fs.String("step", "", "step name for the derived event id (default $TASK_DISPLAYNAME)")
		check := func() error {
			if strings.TrimSpace(*typ) == "" {
				return errors.New("--type is required")
			}
			if *data != "" && *dataFile != "" {
				return errors.New("give --data or --data-file, not both")
			}
			if *data != "" && !isJSONObject([]byte(*data)) {
				return errors.New("--data must be a JSON object, e.g. '{\"image\":\"web:1.2\"}'")
			}
			if *eventID != "" {
				if err := ica.ValidID("event_id", *eventID); err != nil {
					return errors.New("--event-id: " + ica.ErrorMessage(err))
				}
			}
			return nil
		}
		return check, func(ctx context.Context) int {
			id, ok := x.runID(*runID)
			if !ok {
				return x.noRunID()
			}
			raw := []byte(*data)
			if *dataFile != "" {
				b, err := os.ReadFile(*dataFile)
				if err != nil {
					return x.fail(ExitUsage, "run event: %v", err)
				}
				if !isJSONObject(b) {
					return x.fail(ExitUsage, "run event: %s does not hold a JSON object", *dataFile)
				}
				raw = b
			}
			if len(raw) == 0 {
				raw = []byte("{}")
			}
			in := ica.EventInput{EventType: *typ, EventData: json.RawMessage(raw), EventID: *eventID}
			if in.EventID == "" {
				s := *step
				if s == "" {
					s = lookup(x.getenv, EnvTaskDisplayName)
				}
				in.EventID = EventID(lookup(x.getenv, EnvJobID), lookup(x.getenv, EnvJobAttempt), s, *typ)
			}
			c, code := x.client(*icaURL)
			if c == nil {
				return code
			}
			ev, err := c.AddEvent(ctx, id, in)
			if err != nil {
				return x.apiFail("run event", err)
			}
			x.say("ICA event %s recorded for run %s (event_id %s)", ev.EventType, id, ev.EventID)
			return ExitOK
		}
	},
}

func isJSONObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
}

var cmdRunFinish = &command{
	summary: "record the end of this run and print its audit hash",
	usage:   "[--status success|failed|cancelled] [--azure-result RESULT]... [--end-time RFC3339] [--run-id ID]",
	details: `
The status is --status, else the combination of the --azure-result values
(stage or job results such as $(dependencies.Deploy.result): any Canceled
-> cancelled, else any Failed -> failed, else success; Skipped is ignored),
else AGENT_JOBSTATUS: Succeeded and SucceededWithIssues -> success,
Failed -> failed, Canceled -> cancelled.
Run it in a step with condition: always(). AGENT_JOBSTATUS describes only
the current job; in a multi-stage pipeline pass the other stages' results.
Sets ICA_AUDIT_HASH for later steps.`,
	define: func(fs *flag.FlagSet, x *inv) (func() error, func(context.Context) int) {
		icaURL := fs.String("ica-url", "", "ICA base URL (default $ICA_URL)")
		runID := fs.String("run-id", "", "run id (default $BUILD_BUILDID)")
		status := fs.String("status", "", "success, failed or cancelled (default from --azure-result or $AGENT_JOBSTATUS)")
		var results listFlag
		fs.Var(&results, "azure-result", "an Azure Pipelines stage or job result (repeatable, or comma-separated)")
		endTime := fs.String("end-time", "", "end time, RFC 3339 (default: ICA's clock)")
		check := func() error {
			if *status != "" {
				f := ica.RunFinish{Status: *status}
				if err := f.Validate(); err != nil {
					return errors.New("--status: " + ica.ErrorMessage(err))
				}
			}
			if *endTime != "" {
				if _, err := time.Parse(time.RFC3339, *endTime); err != nil {
					return fmt.Errorf("--end-time: %v", err)
				}
			}
			for _, r := range results {
				for _, p := range strings.Split(r, ",") {
					if p = strings.TrimSpace(p); p != "" && !isMacro(p) && !strings.EqualFold(p, "Skipped") {
						if _, err := RunStatus(p); err != nil {
							return fmt.Errorf("--azure-result: %v", err)
						}
					}
				}
			}
			return nil
		}
		return check, func(ctx context.Context) int {
			id, ok := x.runID(*runID)
			if !ok {
				return x.noRunID()
			}
			f := ica.RunFinish{Status: *status}
			if f.Status == "" && len(results) > 0 {
				st, err := CombineResults(results...)
				if err == nil {
					f.Status = st
				}
			}
			if f.Status == "" {
				st, err := RunStatus(x.getenv(EnvJobStatus))
				if err != nil {
					return x.fail(ExitUsage, "run finish: no status: %v; pass --status", err)
				}
				f.Status = st
			}
			if *endTime != "" {
				t, _ := time.Parse(time.RFC3339, *endTime)
				f.EndTime = &t
			}
			c, code := x.client(*icaURL)
			if c == nil {
				return code
			}
			r, err := c.FinishRun(ctx, id, f)
			if err != nil {
				return x.apiFail("run finish", err)
			}
			x.say("ICA run %s finished: %s; audit hash %s", r.RunID, r.Status, r.AuditHash)
			if r.AuditHash != "" {
				setVariable(x.stdout, "ICA_AUDIT_HASH", r.AuditHash)
			}
			return ExitOK
		}
	},
}

var cmdApprovalRequest = &command{
	summary: "ask for approval to deploy this run",
	usage:   "--target staging|production --cost USD [--run-id ID]",
	details: `
Prints the approval and sets ICA_APPROVAL_ID both for later steps of the job
($(ICA_APPROVAL_ID)) and as an output variable (isOutput=true; name the
step, then use dependencies.<job>.outputs['<step>.ICA_APPROVAL_ID']). Asking again while the
approval is open returns the same approval. A refusal by policy (budget,
incident freeze) fails the step with ICA's reason.`,
	define: func(fs *flag.FlagSet, x *inv) (func() error, func(context.Context) int) {
		icaURL := fs.String("ica-url", "", "ICA base URL (default $ICA_URL)")
		runID := fs.String("run-id", "", "run id (default $BUILD_BUILDID)")
		target := fs.String("target", "", "deployment target: staging or production (required)")
		costStr := fs.String("cost", "", "estimated cost in US dollars (required)")
		var cost float64
		check := func() error {
			switch *target {
			case ica.TargetStaging, ica.TargetProduction:
			case "":
				return errors.New("--target is required (staging or production)")
			default:
				return fmt.Errorf("--target %q is not staging or production", *target)
			}
			if *costStr == "" {
				return errors.New("--cost is required (estimated cost in US dollars)")
			}
			c, err := strconv.ParseFloat(strings.TrimPrefix(strings.TrimSpace(*costStr), "$"), 64)
			if err != nil || math.IsNaN(c) || math.IsInf(c, 0) || c < 0 || c > ica.MaxEstimatedCost {
				return fmt.Errorf("--cost %q is not a non-negative number of dollars", *costStr)
			}
			cost = c
			return nil
		}
		return check, func(ctx context.Context) int {
			id, ok := x.runID(*runID)
			if !ok {
				return x.noRunID()
			}
			c, code := x.client(*icaURL)
			if c == nil {
				return code
			}
			a, err := c.RequestApproval(ctx, ica.ApprovalRequest{RunID: id, DeploymentTarget: *target, EstimatedCost: &cost})
			if err != nil {
				var ae *APIError
				if errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity {
					return x.fail(ExitFailed, "ICA refused the %s deployment of run %s: %s", *target, id, ae.Message)
				}
				return x.apiFail("approval request", err)
			}
			x.say("Approval %s requested: %s deployment of run %s, estimated cost $%.2f; status %s; expires at %s",
				a.ID, a.Target, id, a.EstimatedCost, a.Status, a.ExpiresAt.UTC().Format(time.RFC3339))
			if a.FinanceRequired {
				x.say("The estimated cost needs a finance approver for the business approval.")
			}
			setVariable(x.stdout, EnvApprovalID, a.ID)
			return ExitOK
		}
	},
}

var cmdApprovalWait = &command{
	summary: "wait until the gate opens, then use the approval; fail the step unless it opened",
	usage:   "[--id APPROVAL_ID] [--run-id ID] [--commit SHA] [--artifact-digest sha256:HEX] [--no-use] [--timeout DURATION] [--min-interval 5s] [--max-interval 60s]",
	details: `
The approval is --id, else $ICA_APPROVAL_ID (set by 'ica approval request'
earlier in the job), else the newest approval of the run. Every poll names
this build (BUILD_BUILDID or --run-id), its commit (BUILD_SOURCEVERSION or
--commit) and, when known, its artifact digest (--artifact-digest or
$ICA_ARTIFACT_DIGEST): an approval for another run, commit or artifact is
refused (exit 1). Polls with exponential backoff and jitter between
--min-interval and --max-interval, and looks again when the gate's time
rules open (change window, blackout, deferred approval, promotion bake).
Once approved and every rule of the deployment policy passes (window,
lock, incident freeze …), it uses the approval (POST …/use): that records
the deployment in ICA's ledger and takes the deployment lock; nothing else
opens the gate. Used: exit 0. Rejected, expired, superseded, or no longer
usable: logs who and why as an error, marks the task failed, exit 1.
--no-use only waits for the decision and does not open the gate. Without
--timeout the wait lasts until the approval's expiry, then until its use
window ends (plus a grace period); on timeout: exit 2. Give the job a
timeoutInMinutes longer than the wait.`,
	define: func(fs *flag.FlagSet, x *inv) (func() error, func(context.Context) int) {
		icaURL := fs.String("ica-url", "", "ICA base URL (default $ICA_URL)")
		runID := fs.String("run-id", "", "run id (default $BUILD_BUILDID)")
		id := fs.String("id", "", "approval id (default $ICA_APPROVAL_ID, else the run's latest approval)")
		commitFlag := fs.String("commit", "", "the commit about to be deployed (default $BUILD_SOURCEVERSION)")
		digestFlag := fs.String("artifact-digest", "", "the artifact about to be deployed, sha256:<hex> (default $ICA_ARTIFACT_DIGEST)")
		noUse := fs.Bool("no-use", false, "wait for the decision only; do not open the gate")
		timeout := fs.Duration("timeout", 0, "give up after this long (default: the approval's expiry, then its use window)")
		minI := fs.Duration("min-interval", DefaultMinInterval, "shortest time between polls")
		maxI := fs.Duration("max-interval", DefaultMaxInterval, "longest time between polls")
		check := func() error {
			if *timeout < 0 || *minI <= 0 || *maxI <= 0 {
				return errors.New("durations must be positive")
			}
			if *maxI < *minI {
				return errors.New("--max-interval is shorter than --min-interval")
			}
			if *id != "" && !isMacro(*id) {
				if err := ica.ValidID("approval_id", *id); err != nil {
					return errors.New("--id: " + ica.ErrorMessage(err))
				}
			}
			if *commitFlag != "" && !isMacro(*commitFlag) {
				if err := ica.ValidCommitParam("commit", *commitFlag); err != nil {
					return errors.New("--commit: " + ica.ErrorMessage(err))
				}
			}
			if *digestFlag != "" && !isMacro(*digestFlag) {
				if err := ica.ValidDigestParam("artifact_digest", *digestFlag); err != nil {
					return errors.New("--artifact-digest: " + ica.ErrorMessage(err))
				}
			}
			return nil
		}
		return check, func(ctx context.Context) int {
			rid, ok := x.runID(*runID)
			if !ok {
				return x.fail(ExitUsage, "approval wait: no run id: BUILD_BUILDID is not set; pass --run-id (the approval must belong to this build)")
			}
			bind := Binding{RunID: rid, Commit: *commitFlag, ArtifactDigest: *digestFlag}
			if isMacro(bind.Commit) {
				bind.Commit = ""
			}
			if bind.Commit == "" {
				bind.Commit = lookup(x.getenv, EnvSourceVersion)
			}
			if bind.Commit == "" {
				return x.fail(ExitUsage, "approval wait: no commit: BUILD_SOURCEVERSION is not set; pass --commit (the approval must cover what is deployed)")
			}
			if err := ica.ValidCommitParam("commit", bind.Commit); err != nil {
				return x.fail(ExitUsage, "approval wait: %s (from BUILD_SOURCEVERSION or --commit)", ica.ErrorMessage(err))
			}
			if isMacro(bind.ArtifactDigest) {
				bind.ArtifactDigest = ""
			}
			if bind.ArtifactDigest == "" {
				bind.ArtifactDigest = lookup(x.getenv, EnvArtifactDigest)
			}
			if bind.ArtifactDigest != "" {
				if err := ica.ValidDigestParam("artifact_digest", bind.ArtifactDigest); err != nil {
					return x.fail(ExitUsage, "approval wait: %s (from ICA_ARTIFACT_DIGEST or --artifact-digest)", ica.ErrorMessage(err))
				}
			}
			c, code := x.client(*icaURL)
			if c == nil {
				return code
			}
			aid := *id
			if isMacro(aid) {
				aid = ""
			}
			if aid == "" {
				aid = lookup(x.getenv, EnvApprovalID)
			}
			if aid == "" {
				a, err := c.LatestApproval(ctx, rid)
				if err != nil {
					return x.apiFail("approval wait: latest approval of run "+rid, err)
				}
				aid = a.ID
			}
			clock := x.clock()
			started := clock.Now()
			lastSaid := started
			var lastStatus, lastGate string
			x.say("Waiting for approval %s", aid)
			a, err := c.WaitApproval(ctx, aid, WaitOptions{
				MinInterval: *minI, MaxInterval: *maxI, Timeout: *timeout, Bind: &bind, Use: !*noUse,
				Progress: func(a *ica.Approval, next time.Duration) {
					now := clock.Now()
					if a.Status != lastStatus {
						lastStatus, lastSaid = a.Status, now
						x.say("%s (%s deployment of run %s, expires at %s)", DescribeOutcome(a), a.Target, a.RunID, a.ExpiresAt.UTC().Format(time.RFC3339))
						return
					}
					if now.Sub(lastSaid) >= heartbeat {
						lastSaid = now
						x.say("Approval %s still %s after %s; next check in %s", a.ID, a.Status, now.Sub(started).Round(time.Second), next.Round(time.Second))
					}
				},
				Gate: func(g *ApprovalGate, next time.Duration) {
					now := clock.Now()
					if w := g.Status + "|" + g.Waiting(); w != lastGate {
						lastGate, lastStatus, lastSaid = w, g.Status, now
						x.say("%s; the deployment is %s", DescribeOutcome(&g.Approval), g.Waiting())
						return
					}
					if now.Sub(lastSaid) >= heartbeat {
						lastSaid = now
						x.say("Approval %s still %s after %s; next check in %s", g.ID, strings.Join(g.WaitingFor, ", "), now.Sub(started).Round(time.Second), next.Round(time.Second))
					}
				},
				PollError: func(err error, next time.Duration) {
					x.say("Could not read approval %s (%v); trying again in %s", aid, err, next.Round(time.Second))
				},
			})
			var de *DecisionError
			var ue *UnusableError
			switch {
			case err == nil && a.RunID != "" && a.RunID != rid:
				// An older server that does not check run_id itself.
				return x.fail(ExitFailed, "approval %s is for run %s, not this build (%s)", a.ID, a.RunID, rid)
			case err == nil && a.Status == ica.ApprovalBypassed:
				msg := DescribeOutcome(a)
				logIssue(x.stdout, "warning", msg)
				x.say("%s", msg)
				x.sayUsed(a)
				return ExitOK
			case err == nil:
				x.say("%s", DescribeOutcome(a))
				x.sayUsed(a)
				return ExitOK
			case errors.As(err, &de):
				msg := DescribeOutcome(de.Approval)
				fmt.Fprintln(x.stderr, "ica: "+safeText(msg))
				logIssue(x.stdout, "error", msg)
				completeFailed(x.stdout, msg)
				return ExitFailed
			case errors.As(err, &ue):
				msg := ue.Error()
				fmt.Fprintln(x.stderr, "ica: "+safeText(msg))
				logIssue(x.stdout, "error", msg)
				completeFailed(x.stdout, msg)
				return ExitFailed
			case errors.Is(err, ErrWaitTimeout):
				return x.fail(ExitUsage, "Timed out: %v", err)
			}
			return x.apiFail("approval wait", err)
		}
	},
}

// sayUsed reports that ICA recorded the use (the gate opened).
func (x *inv) sayUsed(a *ica.Approval) {
	if a.Use == nil {
		return
	}
	lock := ""
	if a.Use.Lock != "" {
		lock = "; deployment lock " + a.Use.Lock + " held until the run reports its deployment or finishes"
	}
	x.say("ICA opened the gate: approval %s used by run %s for commit %s at %s%s", a.ID, a.Use.RunID, shortCommit(a.Use.Commit), a.Use.At.UTC().Format(time.RFC3339), lock)
}

var cmdApprovalVoid = &command{
	summary: "void an approval of this run so it never opens the gate",
	usage:   "--reason TEXT [--id APPROVAL_ID]",
	details: `
Only the credential that started the run may void its approvals. A used
approval cannot be voided.`,
	define: func(fs *flag.FlagSet, x *inv) (func() error, func(context.Context) int) {
		icaURL := fs.String("ica-url", "", "ICA base URL (default $ICA_URL)")
		id := fs.String("id", "", "approval id (default $ICA_APPROVAL_ID)")
		reason := fs.String("reason", "", "why (required; recorded in the ledger)")
		check := func() error {
			if strings.TrimSpace(*reason) == "" {
				return errors.New("--reason is required")
			}
			return nil
		}
		return check, func(ctx context.Context) int {
			aid := *id
			if aid == "" || isMacro(aid) {
				aid = lookup(x.getenv, EnvApprovalID)
			}
			if aid == "" {
				return x.fail(ExitUsage, "approval void: no approval id: pass --id or set ICA_APPROVAL_ID")
			}
			c, code := x.client(*icaURL)
			if c == nil {
				return code
			}
			a, err := c.VoidApproval(ctx, aid, *reason)
			if err != nil {
				return x.apiFail("approval void", err)
			}
			x.say("Approval %s voided: %s", a.ID, *reason)
			return ExitOK
		}
	},
}

var cmdRunDeployed = &command{
	summary: "report that this run deployed to a target (promotion evidence; releases the deployment lock)",
	usage:   "--target staging|production [--result succeeded|failed] [--run-id ID]",
	details: `
Records {"event_type": "deployment", "event_data": {"target": …, "result": …}}.
A successful staging deployment through a used approval is the evidence a
production policy with requires: {target: staging} relies on; the report
also releases the deployment lock the run holds for that target. The
template sends it after each deploy step. Re-running the step records it
once (the event id is derived from the job and the target).`,
	define: func(fs *flag.FlagSet, x *inv) (func() error, func(context.Context) int) {
		icaURL := fs.String("ica-url", "", "ICA base URL (default $ICA_URL)")
		runID := fs.String("run-id", "", "run id (default $BUILD_BUILDID)")
		target := fs.String("target", "", "staging or production (required)")
		result := fs.String("result", ica.DeploySucceeded, "succeeded or failed")
		check := func() error {
			raw, _ := json.Marshal(ica.DeploymentReport{Target: *target, Result: *result})
			if _, err := ica.ParseDeploymentReport(raw); err != nil {
				f := strings.TrimPrefix(ica.ErrorField(err), "event_data.")
				return fmt.Errorf("--%s: %s", f, ica.ErrorMessage(err))
			}
			return nil
		}
		return check, func(ctx context.Context) int {
			id, ok := x.runID(*runID)
			if !ok {
				return x.noRunID()
			}
			c, code := x.client(*icaURL)
			if c == nil {
				return code
			}
			data, _ := json.Marshal(ica.DeploymentReport{Target: *target, Result: *result})
			in := ica.EventInput{EventType: ica.EventDeployment, EventData: data,
				EventID: EventID(lookup(x.getenv, EnvJobID), lookup(x.getenv, EnvJobAttempt), "deployed-"+*target, ica.EventDeployment)}
			if _, err := c.AddEvent(ctx, id, in); err != nil {
				return x.apiFail("run deployed", err)
			}
			x.say("ICA recorded the %s deployment of run %s: %s", *target, id, *result)
			return ExitOK
		}
	},
}
