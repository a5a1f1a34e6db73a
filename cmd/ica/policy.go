package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/freeze"
	"github.com/ica-governance/ica/policy"
	"github.com/ica-governance/ica/slashcmds"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

// The deployment policy's wiring: the policy document built from the
// configuration, recorded at start and on SIGHUP, compared with the
// recorded one for /readyz, and the `ica policy` commands.

// deploymentPolicy builds the deployment policy from the configuration:
// approvers, timeouts and the rules of approval.targets, the finance
// approvers and threshold, and the use window.
func (c *Config) deploymentPolicy() policy.Policy {
	p := policy.Policy{UseWindow: policy.Duration(c.Approval.UseWindow), FinanceThreshold: c.Budget.FinanceThreshold,
		FinanceApprovers: c.Approval.FinanceApprovers, Targets: map[string]policy.Target{}}
	for _, name := range policy.Targets {
		t := c.target(name)
		p.Targets[name] = policy.Target{Timeout: policy.Duration(t.Timeout), TechnicalApprovers: t.TechnicalApprovers,
			BusinessApprovers: t.BusinessApprovers, TechnicalChannel: t.TechnicalChannel, BusinessChannel: t.BusinessChannel, Rules: t.Rules}
	}
	return p
}

// validatePolicy checks the deployment policy and the token scopes,
// naming the key at fault.
func (c *Config) validatePolicy() error {
	if c.Approval.UseWindow <= 0 {
		return fmt.Errorf("approval.use_window (ICA_APPROVAL_USE_WINDOW) must be positive")
	}
	if _, err := policy.Compile(c.deploymentPolicy()); err != nil {
		return errors.New(ica.ErrorMessage(err))
	}
	if err := c.validateEntraApprovers(); err != nil {
		return err
	}
	names := map[string]bool{}
	for _, t := range c.PipelineTokens {
		names[t.Name] = true
		for _, p := range t.Pipelines {
			if strings.TrimSpace(p) == "" {
				return fmt.Errorf("pipeline_tokens: token %q names an empty pipeline", t.Name)
			}
		}
	}
	for _, t := range c.CheckTokens {
		if names[t.Name] {
			return fmt.Errorf("check_tokens: %q is also the name of a pipeline token; names must differ", t.Name)
		}
		if len(t.Pipelines) == 0 {
			return fmt.Errorf("check_tokens: token %q must name the pipelines whose approvals it may request (name=secret@pipeline1|pipeline2, or pipelines: [...])", t.Name)
		}
	}
	return nil
}

// tokenScopes limits the pipeline and REST-check tokens that name pipelines.
func (c *Config) tokenScopes() map[string]webhooks.Scope {
	out := map[string]webhooks.Scope{}
	for _, t := range c.PipelineTokens {
		if len(t.Pipelines) > 0 {
			out[t.Name] = webhooks.Scope{Role: webhooks.RolePipeline, Pipelines: t.Pipelines}
		}
	}
	for _, t := range c.CheckTokens {
		out[t.Name] = webhooks.Scope{Role: webhooks.RoleCheck, Pipelines: t.Pipelines}
	}
	return out
}

// splitSecretScope reads the scope part of an ICA_PIPELINE_TOKENS entry:
// "secret@pipeline1|pipeline2" (the last "@" separates them).
func splitSecretScope(secret string) (string, []string) {
	i := strings.LastIndex(secret, "@")
	if i < 0 {
		return secret, nil
	}
	var pipes []string
	for _, p := range strings.Split(secret[i+1:], "|") {
		if p = strings.TrimSpace(p); p != "" {
			pipes = append(pipes, p)
		}
	}
	return secret[:i], pipes
}

// freezeFacts names the incident that freezes a target, for the gate.
func freezeFacts(p *freeze.Policy) func(tx store.ReadTx, target string) (string, error) {
	return func(tx store.ReadTx, target string) (string, error) {
		if !p.Enabled() {
			return "", nil
		}
		v, ok := tx.(store.IncidentReadTx)
		if !ok {
			return "", ica.Errorf(ica.EINTERNAL, "the freeze gate cannot read incidents")
		}
		inc, err := p.Blocking(v, target)
		if err != nil || inc == nil {
			return "", err
		}
		return freeze.Describe(inc) + "; deploying needs an incident commander's freeze override", nil
	}
}

// ValidateTokenObject implements webhooks.ObjectIDValidator: runs started
// by a managed identity are bound to its object id.
func (e appTokens) ValidateTokenObject(ctx context.Context, raw string) (string, string, error) {
	p, err := e.s.Validate(ctx, raw)
	if err != nil {
		return "", "", err
	}
	actor := "entra:" + p.Subject
	switch {
	case p.AppID != "":
		actor = "entra:" + p.AppID
	case p.ObjectID != "":
		actor = "entra:" + p.ObjectID
	}
	return actor, p.ObjectID, nil
}

var _ webhooks.ObjectIDValidator = appTokens{}

// policyState is what this process knows of its own policy file.
type policyState struct {
	mu       sync.Mutex
	fileHash string
	st       *store.Store
}

// startPolicy records the configuration's policy when it differs from the
// recorded one. With a shared database, a replica whose file differs from
// a policy already recorded does not record it (replicas would record
// changes back and forth): it evaluates the recorded policy and says so in
// /readyz and its log; `ica policy apply` records a change.
func startPolicy(ctx context.Context, st *store.Store, cfg *Config, source string, log *slog.Logger) (*policyState, error) {
	ps := &policyState{st: st}
	return ps, ps.apply(ctx, cfg, source, log)
}

func (ps *policyState) apply(ctx context.Context, cfg *Config, source string, log *slog.Logger) error {
	p := cfg.deploymentPolicy()
	c, err := policy.Compile(p)
	if err != nil {
		return errors.New(ica.ErrorMessage(err))
	}
	ps.mu.Lock()
	ps.fileHash = c.Hash
	ps.mu.Unlock()
	cur, err := ps.st.CurrentPolicy(ctx)
	if err != nil {
		return err
	}
	if ps.st.Shared() && cur != nil && cur.Hash != c.Hash {
		log.Warn("this replica's configuration differs from the recorded deployment policy; it evaluates the recorded one (record a change with ica policy apply)",
			"file_policy", policy.ShortHash(c.Hash), "recorded_policy", policy.ShortHash(cur.Hash), "recorded_at", cur.RecordedAt, "changes", policy.Diff(cur.Policy, c.Policy))
		return nil
	}
	rec, changed, err := ps.st.RecordPolicy(ctx, p, source, "ica serve")
	if err != nil {
		return err
	}
	if changed {
		log.Info("deployment policy recorded", "policy", policy.ShortHash(rec.Hash), "previous", policy.ShortHash(rec.Previous), "changes", rec.Changes, "source", source)
	} else {
		log.Info("deployment policy unchanged", "policy", policy.ShortHash(rec.Hash))
	}
	return nil
}

// ready reports (for /readyz, degraded) when the recorded policy is not
// this process's file.
func (ps *policyState) ready(ctx context.Context) error {
	ps.mu.Lock()
	file := ps.fileHash
	ps.mu.Unlock()
	cur, err := ps.st.CurrentPolicy(ctx)
	if err != nil {
		return err
	}
	if cur == nil || cur.Hash == file {
		return nil
	}
	return fmt.Errorf("the recorded deployment policy %s (%s, %s) is not this replica's configuration (%s); ICA evaluates the recorded one",
		policy.ShortHash(cur.Hash), cur.Source, cur.RecordedAt.UTC().Format(time.RFC3339), policy.ShortHash(file))
}

// watchReload re-reads the configuration on SIGHUP and records its
// deployment policy (the other settings need a restart).
func (ps *policyState) watchReload(ctx context.Context, path string, getenv func(string) string, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := loadConfig(path, getenv)
		if err != nil {
			log.Error("reload: the configuration is not valid; the deployment policy in force is unchanged", "err", err)
			continue
		}
		if err := ps.apply(ctx, cfg, "reload (SIGHUP) of "+orDefault(path, "the environment"), log); err != nil {
			log.Error("reload: deployment policy", "err", err)
		}
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// --- the admin socket ---

type applyBody struct {
	Policy policy.Policy `json:"policy"`
	Source string        `json:"source"`
}

type applyAnswer struct {
	Changed bool                `json:"changed"`
	Record  *store.PolicyRecord `json:"record"`
}

// policyApply handles "POST /policy" on the admin socket.
func (a *adminHandler) policyApply(w http.ResponseWriter, r *http.Request) error {
	var b applyBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&b); err != nil {
		return ica.Errorf(ica.EINVALID, "policy: %v", err)
	}
	rec, changed, err := a.store.RecordPolicy(r.Context(), b.Policy, b.Source, "ica policy apply")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(applyAnswer{Changed: changed, Record: rec})
}

// policyShow handles "GET /policy" on the admin socket.
func (a *adminHandler) policyShow(w http.ResponseWriter, r *http.Request) error {
	rec, err := a.store.CurrentPolicy(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(rec)
}

// policyExplain handles "GET /policy/explain" on the admin socket.
func (a *adminHandler) policyExplain(w http.ResponseWriter, r *http.Request) error {
	ex, err := a.store.Explain(r.Context(), r.URL.Query().Get("run_id"), r.URL.Query().Get("target"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(ex)
}

// --- ica policy ---

const policyUsage = `usage:
  ica policy apply FILE [--data-dir DIR]    record FILE's deployment policy (a change is a policy.changed ledger entry)
  ica policy show [--data-dir DIR]          print the recorded policy
  ica policy explain --run ID [--target production] [--data-dir DIR]
                                            print each rule's verdict for the run's deployment
Through the running server's admin socket when there is one, else on the ledger file.`

// cmdPolicy runs `ica policy …`.
func cmdPolicy(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, policyUsage)
		return errors.New("a subcommand is required")
	}
	if slices.Contains([]string{"-h", "--help", "help"}, args[0]) {
		fmt.Fprintln(stdout, policyUsage)
		return nil
	}
	fs := flag.NewFlagSet("policy "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	locate := locationFlags(fs, getenv)
	runID := fs.String("run", "", "run id (explain)")
	target := fs.String("target", ica.TargetProduction, "staging or production (explain)")
	if err := fs.Parse(reorder(args[1:])); err != nil {
		return err
	}
	loc, err := locate()
	if err != nil {
		return err
	}
	switch args[0] {
	case "apply":
		if fs.NArg() != 1 {
			return errors.New("usage: ica policy apply FILE [--data-dir DIR]")
		}
		cfg, err := loadConfig(fs.Arg(0), getenv)
		if err != nil {
			return err
		}
		var ans applyAnswer
		body, _ := json.Marshal(applyBody{Policy: cfg.deploymentPolicy(), Source: "ica policy apply " + fs.Arg(0)})
		err = viaLedger(ctx, loc, http.MethodPost, "/policy", body, &ans, func(st *store.Store) (any, error) {
			rec, changed, err := st.RecordPolicy(ctx, cfg.deploymentPolicy(), "ica policy apply "+fs.Arg(0), "ica policy apply")
			return applyAnswer{Changed: changed, Record: rec}, err
		})
		if err != nil {
			return err
		}
		if !ans.Changed {
			fmt.Fprintf(stdout, "The deployment policy is already %s; nothing recorded.\n", policy.ShortHash(ans.Record.Hash))
			return nil
		}
		fmt.Fprintf(stdout, "Recorded deployment policy %s (ledger entry %d, previous %s):\n", policy.ShortHash(ans.Record.Hash), ans.Record.LedgerSeq, orDefault(policy.ShortHash(ans.Record.Previous), "none"))
		for _, c := range ans.Record.Changes {
			fmt.Fprintln(stdout, "  "+c)
		}
		return nil
	case "show":
		var rec *store.PolicyRecord
		if err := viaLedger(ctx, loc, http.MethodGet, "/policy", nil, &rec, func(st *store.Store) (any, error) {
			return st.CurrentPolicy(ctx)
		}); err != nil {
			return err
		}
		if rec == nil {
			fmt.Fprintln(stdout, "No deployment policy is recorded: no rules apply.")
			return nil
		}
		fmt.Fprintf(stdout, "Deployment policy %s, recorded %s (%s, ledger entry %d)\n", rec.Hash, rec.RecordedAt.UTC().Format(time.RFC3339), rec.Source, rec.LedgerSeq)
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rec.Policy)
	case "explain":
		if *runID == "" {
			return errors.New("usage: ica policy explain --run ID [--target production]")
		}
		var ex policy.Explanation
		q := "/policy/explain?run_id=" + url.QueryEscape(*runID) + "&target=" + url.QueryEscape(*target)
		if err := viaLedger(ctx, loc, http.MethodGet, q, nil, &ex, func(st *store.Store) (any, error) {
			return st.Explain(ctx, *runID, *target)
		}); err != nil {
			return err
		}
		printExplanation(stdout, &ex)
		return nil
	}
	fmt.Fprintln(stderr, policyUsage)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

// printExplanation prints each rule's verdict.
func printExplanation(w io.Writer, ex *policy.Explanation) {
	what := "approval " + ex.ApprovalID + " (" + ex.Status + ")"
	if ex.ApprovalID == "" {
		what = "no approval requested yet"
	}
	fmt.Fprintf(w, "Run %s → %s: %s; policy %s\n", ex.RunID, ex.Target, what, orDefault(policy.ShortHash(ex.PolicyHash), "none recorded"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range ex.Checks {
		verdict := "ok"
		if !c.OK {
			verdict = "NO"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", verdict, c.Rule, c.Detail)
	}
	tw.Flush()
	v := ex.Verdict
	switch {
	case v.CanDeploy:
		fmt.Fprintln(w, "Gate: open (can_deploy)")
	case !v.Usable:
		fmt.Fprintln(w, "Gate: closed for good; request a new approval")
	default:
		line := "Gate: closed; waiting for " + strings.Join(v.WaitingFor, ", ")
		if v.OpensAt != nil {
			line += "; the time rules allow it from " + v.OpensAt.UTC().Format(time.RFC3339)
		}
		if v.QueuedBehind != "" {
			line += "; queued behind run " + v.QueuedBehind
		}
		fmt.Fprintln(w, line)
	}
}

// viaLedger asks the running server over its admin socket, or opens the
// ledger file itself when no server runs.
func viaLedger(ctx context.Context, loc ledgerLocation, method, path string, body []byte, out any, direct func(st *store.Store) (any, error)) error {
	if c := socketClient(socketPath(loc.Dir)); c != nil && !loc.shared() {
		req, _ := http.NewRequestWithContext(ctx, method, "http://ica"+path, bytes.NewReader(body))
		res, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("running server: %w", err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(res.Body, 8<<20))
		if res.StatusCode != http.StatusOK {
			var eb struct {
				Error struct{ Message string } `json:"error"`
			}
			if json.Unmarshal(raw, &eb) == nil && eb.Error.Message != "" {
				return errors.New(eb.Error.Message)
			}
			return fmt.Errorf("running server answered %d", res.StatusCode)
		}
		return json.Unmarshal(raw, out)
	}
	st, _, err := loc.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := direct(st)
	if err != nil {
		return errors.New(ica.ErrorMessage(err))
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// --- /ica policy and the gate in /ica status ---

var _ slashcmds.PolicyQueries = slashQueries{}

// RecordedPolicy implements slashcmds.PolicyQueries.
func (q slashQueries) RecordedPolicy(ctx context.Context) (*slashcmds.RecordedPolicy, error) {
	rec, err := q.st.CurrentPolicy(ctx)
	if err != nil || rec == nil {
		return nil, err
	}
	return &slashcmds.RecordedPolicy{Hash: rec.Hash, RecordedAt: rec.RecordedAt, Source: rec.Source, Policy: rec.Policy}, nil
}

// ApprovalGate implements slashcmds.PolicyQueries.
func (q slashQueries) ApprovalGate(ctx context.Context, id string) (*ica.Approval, *policy.Verdict, error) {
	return q.st.ApprovalGate(ctx, id)
}

// validateEntraApprovers checks the approver-list entries that name people
// deciding through the API ("entra:<object id>"), naming the key.
func (c *Config) validateEntraApprovers() error {
	check := func(key string, list []string) error {
		for _, e := range list {
			if !ica.IsEntraApprover(e) {
				continue
			}
			tenant, _, err := ica.ParseEntraApprover(e)
			if err != nil {
				return fmt.Errorf("%s: %v", key, err)
			}
			if tenant == "" && c.Entra.TenantID == "" {
				return fmt.Errorf("%s: %q names a user of ICA's Entra tenant, but ICA_ENTRA_TENANT_ID is not set (or write entra:<tenant id>/<object id>)", key, e)
			}
		}
		return nil
	}
	if err := check("approval.finance_approvers (ICA_FINANCE_APPROVERS)", c.Approval.FinanceApprovers); err != nil {
		return err
	}
	for _, name := range policy.Targets {
		t := c.target(name)
		if err := check("approval.targets."+name+".technical_approvers (ICA_TECH_APPROVERS)", t.TechnicalApprovers); err != nil {
			return err
		}
		if err := check("approval.targets."+name+".business_approvers (ICA_BUSINESS_APPROVERS)", t.BusinessApprovers); err != nil {
			return err
		}
	}
	return nil
}

// apiApprovers gives the decisions API the approver lists of the policy in
// force (recorded in the store, so every replica agrees), or of this
// configuration while none is recorded.
func apiApprovers(st *store.Store, cfg *Config) webhooks.Approvers {
	return func(ctx context.Context, target string) (webhooks.StepApprovers, error) {
		p := cfg.deploymentPolicy()
		rec, err := st.CurrentPolicy(ctx)
		if err != nil {
			return webhooks.StepApprovers{}, err
		}
		if rec != nil {
			p = rec.Policy
		}
		t := p.Targets[target]
		return webhooks.StepApprovers{Technical: t.TechnicalApprovers, Business: t.BusinessApprovers,
			Finance: p.FinanceApprovers, HomeTenant: cfg.Entra.TenantID}, nil
	}
}
