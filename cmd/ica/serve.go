package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/alerts"
	"github.com/ica-governance/ica/archive"
	"github.com/ica-governance/ica/bot"
	"github.com/ica-governance/ica/cost"
	"github.com/ica-governance/ica/freeze"
	"github.com/ica-governance/ica/incidents"
	"github.com/ica-governance/ica/outbox"
	icapipelines "github.com/ica-governance/ica/pipelines"
	"github.com/ica-governance/ica/scheduler"
	"github.com/ica-governance/ica/slashcmds"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func ledgerPath(dataDir string) string { return filepath.Join(dataDir, "ica.db") }

func socketPath(dataDir string) string { return filepath.Join(dataDir, "ica.sock") }

// cmdServe runs the service until ctx is cancelled, then shuts down in
// order (HTTP, dispatcher, store), each step bounded.
func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("ICA_CONFIG"), "YAML configuration file (ICA_CONFIG)")
	acceptRollback := fs.String("accept-rollback", "", "serve a ledger behind its newest witnessed checkpoint; the `reason` is recorded in the ledger")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath, getenv)
	if err != nil {
		return err
	}
	log := newLogger(stdout, cfg.LogLevel)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	warnKeyBesideLedger(cfg, log) // witness.go
	key, err := loadSigningKey(cfg)
	if err != nil {
		return err
	}
	clock := ica.SystemClock{}
	blobs, err := witnessBlobs(cfg) // the checkpoint witness (witness.go)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	commitLatency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ica_ledger_commit_seconds",
		Help: "Duration of ledger write transactions including fsync.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ica_outbox_deliveries_total",
		Help: "Outbox delivery attempts by destination and outcome."}, []string{"destination", "outcome"})
	reg.MustRegister(commitLatency, deliveries)

	actionSecret, err := loadSecret(cfg.ActionSecret, cfg.DataDir, "action.secret", 32)
	if err != nil {
		return err
	}
	mmEnabled := cfg.Mattermost.URL != ""
	if mmEnabled && cfg.PublicURL == "" {
		return fmt.Errorf("ICA_PUBLIC_URL is required with Mattermost: buttons call back to it")
	}
	var notifier ica.Notifier = ica.NopNotifier{}
	if mmEnabled {
		notifier = bot.Notifier{}
	}

	// Alerts and incidents: routing, paging, cards, deployment freeze.
	fz := freeze.New(cfg.Freeze)
	pdEnabled := cfg.PagerDuty.RoutingKey != ""
	incNotifier := incidents.Notifier{Mattermost: mmEnabled, PagerDuty: pdEnabled, Freeze: fz, PublicURL: strings.TrimRight(cfg.PublicURL, "/")}

	var disp *outbox.Dispatcher
	var sched *scheduler.Scheduler
	st, err := store.Open(ledgerPath(cfg.DataDir), store.Options{
		Clock: clock, Key: key, Logger: log, Notifier: notifier,
		ApprovalTimeout:    func(target string) time.Duration { return cfg.target(target).Timeout },
		FinanceThreshold:   cfg.Budget.FinanceThreshold,
		OnEnqueue:          func() { disp.Notify(); sched.Notify() },
		ObserveCommit:      func(d time.Duration) { commitLatency.Observe(d.Seconds()) },
		ReleaseMappedEvery: time.Second,
		Gates:              []store.ApprovalGate{store.BudgetGate(cfg.Budget.Monthly, cfg.Budget.Threshold), freezeGate(fz)},
		RouteAlert:         alertRouter(&cfg.Alerts.Routing, pdEnabled),
		Incidents:          incNotifier,
		PublicHost:         cfg.PublicURL,
		CheckpointMessages: checkpointMessages(cfg, blobs != nil, mmEnabled),
	})
	if err != nil {
		return err
	}
	if err := witnessAtStart(ctx, blobs, st, *acceptRollback, log); err != nil {
		st.Close()
		return err
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ica_ledger_entries", Help: "Entries in the ledger hash chain."},
			func() float64 { return float64(st.LedgerEntries()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ica_outbox_depth", Help: "Undelivered outbox messages."},
			func() float64 { return float64(st.OutboxDepth()) }),
	)
	disp = outbox.New(st, clock, log, outbox.Policy{}, func(dest, outcome string, _ time.Duration) {
		deliveries.WithLabelValues(dest, outcome).Inc()
	})
	disp.Register(ica.CheckDestination, &icapipelines.CheckDeliverer{})
	registerWitness(disp, blobs, st, log)

	pipelineTokens, err := hashedTokens("pipeline token", cfg.PipelineTokens)
	if err != nil {
		st.Close()
		return err
	}
	if len(pipelineTokens) == 0 {
		log.Warn("no pipeline tokens configured: the pipeline API refuses every request (set ICA_PIPELINE_TOKENS)")
	}
	jwt, err := entraValidator(cfg, clock)
	if err != nil {
		st.Close()
		return err
	}
	pipelines, err := webhooks.NewStaticTokens(pipelineTokens, jwt)
	if err != nil {
		st.Close()
		return err
	}
	costs := budgetSource{st: st, monthly: cfg.Budget.Monthly, threshold: cfg.Budget.Threshold}
	deps := webhooks.Deps{Ledger: st, Costs: costs, Checks: st, CheckHosts: icapipelines.AzureDevOpsHosts(cfg.ADOHosts), Pipelines: pipelines, Limiter: webhooks.NewRateLimiter(cfg.RateLimit),
		Metrics: webhooks.NewMetrics(reg), Logger: log, Clock: clock, Degraded: map[string]webhooks.ReadinessCheck{}}
	if bg, err := hashedTokens("break-glass token", cfg.BreakGlassTokens); err != nil {
		st.Close()
		return err
	} else if len(bg) > 0 {
		if deps.BreakGlass, err = webhooks.NewStaticTokens(bg, nil); err != nil {
			st.Close()
			return err
		}
	}
	var mm *bot.Bot
	if !mmEnabled {
		log.Warn("Mattermost delivery disabled: ICA_MATTERMOST_URL is not set; approvals are recorded and can be decided through the API only")
		deps.Degraded["mattermost"] = func(context.Context) error { return errors.New("not configured") }
	} else {
		mm = bot.New(botConfig(cfg, actionSecret), bot.NewClient(cfg.Mattermost.URL, cfg.Mattermost.Token, nil), st, clock, log)
		mm.SetBudget(costs)
		mm.EnableIncidents(bot.IncidentConfig{Channel: cfg.Mattermost.IncidentChannel,
			OnCall:     bot.StepPolicy{Usernames: cfg.Alerts.OnCallUsers, Channel: cfg.Alerts.OnCallChannel},
			Commanders: cfg.Alerts.IncidentCommanders}, st, freezeInfo{policy: fz, st: st})
		disp.Register(bot.Destination, mm)
		deps.Degraded["mattermost"] = mm.Ready
	}
	schedOpt := scheduler.Options{}
	if mm != nil {
		schedOpt.ReminderBefore = func(target string) time.Duration { return cfg.target(target).ReminderBefore }
		schedOpt.Reminder = bot.Notifier{}.ReminderMessages
	}
	sched = scheduler.New(st, clock, log, schedOpt)
	if cfg.PagerDuty.RoutingKey == "" {
		log.Warn("PagerDuty delivery disabled: ICA_PAGERDUTY_ROUTING_KEY is not set")
		deps.Degraded["pagerduty"] = func(context.Context) error { return errors.New("not configured") }
	} else {
		pd, err := alerts.NewPagerDutyDeliverer(alerts.PagerDutyConfig{URL: cfg.PagerDuty.URL, RoutingKey: cfg.PagerDuty.RoutingKey, Clock: clock,
			EventsPerMinute: cfg.PagerDuty.EventsPerMinute, Burst: cfg.PagerDuty.Burst})
		if err != nil {
			st.Close()
			return fmt.Errorf("pagerduty: %s", ica.ErrorMessage(err))
		}
		disp.Register(alerts.DestinationPagerDuty, pd)
	}
	h := webhooks.NewHandler(deps)
	alertDeps, err := alertWiring(cfg, deps, mm, fz, st, jwt)
	if err != nil {
		st.Close()
		return err
	}
	h.RegisterAlerts(alertDeps)
	h.Router().Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	// --- dashboard (cmd/ica/dashboard.go) ---
	dash := mountDashboard(h, st, costs, actionSecret, cfg.PublicURL, pipelines, clock, log)
	// --- end dashboard ---
	if mm != nil {
		// Mattermost signs nothing: these authenticate by the signed context and state.
		h.Router().Handle("/mattermost/actions", h.Route(nil, mm.HandleAction)).Methods(http.MethodPost)
		h.Router().Handle("/mattermost/dialogs", h.Route(nil, mm.HandleDialog)).Methods(http.MethodPost)
	}
	var slash *slashcmds.Handler
	if mm != nil {
		var arch slashcmds.Archiver
		if cfg.Blob.ConnectionString != "" || cfg.Blob.AccountURL != "" {
			a, err := archive.New(archive.Config{ConnectionString: cfg.Blob.ConnectionString, AccountURL: cfg.Blob.AccountURL,
				Container: cfg.Blob.Container}, nil)
			if err != nil {
				st.Close()
				return fmt.Errorf("export archive: %w", err)
			}
			arch = a
			deps.Degraded["archive"] = a.Ping
		} else {
			log.Warn("export archive disabled: neither ICA_BLOB_CONNECTION_STRING nor ICA_BLOB_ACCOUNT_URL is set")
		}
		if len(cfg.Mattermost.SlashTokens) == 0 {
			log.Warn("the /ica command is not configured: ICA_SLASH_TOKENS is empty, so every /ica call is refused")
		}
		slash = slashcmds.New(slashcmds.Deps{Tokens: cfg.Mattermost.SlashTokens,
			Queries:  slashQueries{st: st, budget: costs},
			Exporter: ledgerExporter{st: st, key: key, clock: clock}, Poster: mm, Archiver: arch,
			ExportUsers: cfg.Mattermost.ExportUsers, ExportChannels: cfg.Mattermost.ExportChannels,
			MattermostURL: cfg.Mattermost.URL, Clock: clock, Log: log,
			Dashboard: dash}) // dashboard: /ica dashboard
		h.Router().Handle("/mattermost/slash", h.Route(nil, slash.HandleSlash)).Methods(http.MethodPost)
	}
	admin := &adminHandler{store: st, exporter: ledgerExporter{st: st, key: key, clock: clock}, log: log, witness: blobs}
	if at, err := hashedTokens("admin token", cfg.AdminTokens); err != nil {
		st.Close()
		return err
	} else if len(at) > 0 {
		auth, err := webhooks.NewStaticTokens(at, nil)
		if err != nil {
			st.Close()
			return err
		}
		h.Router().Handle("/api/v1/admin/backup", h.Route(auth, admin.backup)).Methods(http.MethodGet)
	}
	if err := registerProofRoute(h, st, pipelines, cfg); err != nil { // proof.go
		st.Close()
		return err
	}

	if hook := serveRoutesHook.Load(); hook != nil { // test seam (seams.go)
		(*hook)(h)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		st.Close()
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	sock, err := admin.listen(socketPath(cfg.DataDir))
	if err != nil {
		log.Warn("admin socket unavailable; ica backup/check will not reach this server", "err", err)
	}

	bgCtx, cancelBG := context.WithCancel(ctx)
	var syncer *cost.Syncer
	if len(cfg.Cost.Scopes) > 0 {
		if syncer, err = newCostSyncer(cfg, st, clock, log); err != nil {
			cancelBG()
			srv.Close()
			st.Close()
			return err
		}
		syncer.Start(bgCtx)
	}
	disp.Start(bgCtx)
	sched.Start(bgCtx)
	if mm != nil {
		mm.Start(bgCtx)
	}
	done := make(chan struct{})
	go func() { defer close(done); runCheckpoints(bgCtx, st, clock, cfg.Ledger.CheckpointInterval, log) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "data_dir", cfg.DataDir, "ledger_entries", st.LedgerEntries(), "version", version)

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		log.Error("http server stopped", "err", err)
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e := srv.Shutdown(shutdownCtx); e != nil {
		log.Warn("http shutdown", "err", e)
	}
	if sock != nil {
		sock.Shutdown(shutdownCtx)
	}
	if slash != nil {
		if e := slash.Close(shutdownCtx); e != nil {
			log.Warn("exports still running at shutdown were cancelled", "err", e)
		}
	}
	cancelBG()
	sched.Stop()
	if syncer != nil {
		syncer.Stop()
	}
	if mm != nil {
		mm.Stop()
	}
	dispCtx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if e := disp.Stop(dispCtx); e != nil {
		log.Warn("dispatcher did not stop in time", "err", e)
	}
	<-done
	if e := st.Close(); e != nil {
		log.Error("close ledger", "err", e)
		return e
	}
	log.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// botConfig maps the configuration onto the bot's policy.
func botConfig(cfg *Config, secret []byte) bot.Config {
	bc := bot.Config{PublicURL: cfg.PublicURL, Team: cfg.Mattermost.Team, DefaultChannel: cfg.Mattermost.ApprovalChannel,
		FinanceChannel:   cfg.Mattermost.FinanceChannel,
		FinanceApprovers: cfg.Approval.FinanceApprovers, Secret: secret, Targets: map[string]bot.TargetPolicy{}}
	for _, t := range []string{ica.TargetStaging, ica.TargetProduction} {
		p := cfg.target(t)
		bc.Targets[t] = bot.TargetPolicy{Channel: p.Channel, CommentOnApprove: p.CommentOnApprove,
			Technical: bot.StepPolicy{Usernames: p.TechnicalApprovers, Channel: p.TechnicalChannel},
			Business:  bot.StepPolicy{Usernames: p.BusinessApprovers, Channel: p.BusinessChannel}}
	}
	return bc
}

// budgetSource gives the month's budget figures with the configured budget.
type budgetSource struct {
	st                 *store.Store
	monthly, threshold float64
}

func (b budgetSource) Budget(ctx context.Context) (*ica.Budget, error) {
	return b.st.Budget(ctx, b.monthly, b.threshold)
}

func (b budgetSource) RecordCost(ctx context.Context, in *ica.CostInput, actor string) (*ica.CostEntry, bool, error) {
	return b.st.RecordCost(ctx, in, actor)
}

// --- alerts and incidents wiring ---

// alertRouter adapts the YAML routing to the store: paging only when
// PagerDuty is configured, so nothing waits in the outbox for a deliverer
// that does not exist.
func alertRouter(rc *alerts.RoutingConfig, pdEnabled bool) func(a *ica.Alert) store.AlertRoute {
	return func(a *ica.Alert) store.AlertRoute {
		r := rc.Route(a)
		return store.AlertRoute{Page: r.PagerDuty && pdEnabled, Drop: r.Drop, Channel: r.Channel, Quiet: r.Quiet}
	}
}

// freezeGate is the deployment freeze as an approval gate.
func freezeGate(p *freeze.Policy) store.ApprovalGate {
	return func(tx store.ReadTx, a *ica.Approval) error {
		if !p.Enabled() {
			return nil
		}
		v, ok := tx.(store.IncidentReadTx)
		if !ok {
			return ica.Errorf(ica.EINTERNAL, "the freeze gate cannot read incidents")
		}
		return p.Check(v, a)
	}
}

// freezeInfo gives the bot the freeze lines of its cards.
type freezeInfo struct {
	policy *freeze.Policy
	st     *store.Store
}

func (f freezeInfo) ApprovalWarning(a *ica.Approval) string { return f.policy.Warning(f.st, a) }

func (f freezeInfo) IncidentFreezes(inc *ica.Incident) []string {
	if !f.policy.Severe(inc) {
		return nil
	}
	return f.policy.Targets(inc)
}

// alertWiring builds the alert endpoints' dependencies.
// jwt (may be nil) validates Secure Webhook tokens (entra.go).
func alertWiring(cfg *Config, deps webhooks.Deps, mm *bot.Bot, fz *freeze.Policy, st *store.Store, jwt webhooks.TokenValidator) (webhooks.AlertDeps, error) {
	d := webhooks.AlertDeps{Ledger: st, Parse: alerts.Parse, Auth: webhooks.NewAlertAuth(cfg.Alerts.Token, jwt),
		FreezeTargets: func(inc *ica.Incident) []string {
			if !fz.Severe(inc) {
				return nil
			}
			return fz.Targets(inc)
		}}
	ic, err := hashedTokens("incident commander token", cfg.Alerts.CommanderTokens)
	if err != nil {
		return d, err
	}
	commanders := webhooks.AnyOf{}
	if deps.BreakGlass != nil {
		commanders = append(commanders, deps.BreakGlass)
	}
	if len(ic) > 0 {
		a, err := webhooks.NewStaticTokens(ic, nil)
		if err != nil {
			return d, err
		}
		commanders = append(commanders, a)
	}
	if len(commanders) > 0 {
		d.Commanders = commanders
	}
	if mm != nil {
		d.CardLink = mm.IncidentCardLink
	}
	return d, nil
}

// costSink stores synced daily costs, one entry per scope, day and resource type.
type costSink struct{ st *store.Store }

func (c costSink) UpsertDailyCosts(ctx context.Context, scope string, costs []cost.DailyCost, syncedAt time.Time) error {
	entries := make([]*ica.CostEntry, 0, len(costs))
	for _, d := range costs {
		day := d.Date.UTC().Format(time.DateOnly)
		entries = append(entries, &ica.CostEntry{Key: "cm:" + scope + ":" + day + ":" + d.ResourceType,
			ResourceType: d.ResourceType, CostUSD: d.CostUSD, BillingPeriod: day, Source: "cost-management", Scope: scope})
	}
	_, err := c.st.UpsertCosts(ctx, entries, "cost-management")
	return err
}

func newCostSyncer(cfg *Config, st *store.Store, clock ica.Clock, log *slog.Logger) (*cost.Syncer, error) {
	cc := cost.Config{Scopes: cfg.Cost.Scopes, Endpoint: cfg.Cost.Endpoint, Interval: cfg.Cost.Interval}
	client, err := cost.NewClient(cc, nil, clock)
	if err != nil {
		return nil, fmt.Errorf("cost sync: %w", err)
	}
	return cost.NewSyncer(client, costSink{st}, cc, clock, log)
}
