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
	"sync/atomic"
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
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(*configPath, getenv)
	if err != nil {
		return err
	}
	log := newLogger(stdout, cfg.LogLevel)
	// Bind first: with the port taken, nothing is created (data directory,
	// ledger, keys) by a server that cannot serve.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (ICA_ADDR): %w", cfg.Addr, err)
	}
	defer ln.Close() // after Serve it is closed already; this covers the early returns
	var cbLn net.Listener
	if cfg.Callbacks.Addr != "" {
		if cbLn, err = net.Listen("tcp", cfg.Callbacks.Addr); err != nil {
			return fmt.Errorf("listen on %s (ICA_CALLBACK_ADDR): %w", cfg.Callbacks.Addr, err)
		}
		defer cbLn.Close()
	}
	if cfg.Database.URL != "" {
		// Replicas share the ledger: each must sign and verify with the
		// same keys, so they come from the environment (a Secret), never
		// generated into one replica's data directory.
		for _, k := range []struct{ v, name string }{{cfg.SigningKey, "ICA_SIGNING_KEY"}, {cfg.ActionSecret, "ICA_ACTION_SECRET"}} {
			if k.v == "" {
				return fmt.Errorf("%s is required with ICA_DATABASE_URL: every replica needs the same one (openssl rand -hex 32, kept in a Secret)", k.name)
			}
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory %s (ICA_DATA_DIR): %w", cfg.DataDir, err)
	}
	warnKeyBesideLedger(cfg, log) // witness.go
	key, err := loadSigningKey(cfg)
	if err != nil {
		return err
	}
	var clock ica.Clock = ica.SystemClock{}
	if c := serveClockHook.Load(); c != nil { // test seam (seams.go)
		clock = c
	}
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

	actionSecret, err := loadSecret(cfg.ActionSecret, "ICA_ACTION_SECRET (action_secret)", cfg.DataDir, "action.secret", 32)
	if err != nil {
		return err
	}
	// Azure DevOps job tokens are kept sealed with a key derived from the
	// action secret, never in the ledger (pipelines/jobtoken.go).
	jobTokens, err := icapipelines.NewJobTokenKey(actionSecret)
	if err != nil {
		return err
	}
	mmEnabled := cfg.Mattermost.URL != "" // validate made sure ICA_PUBLIC_URL is set too
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
	if cfg.Database.URL == "" {
		if _, err := os.Stat(ledgerPath(cfg.DataDir)); err == nil {
			if err := store.CheckSize(ledgerPath(cfg.DataDir)); err != nil {
				return err
			}
		}
	}
	// With a database, answer at once (alive, not ready) while it is
	// reached; the embedded ledger opens before anything is served.
	front := &swapHandler{}
	srv := &http.Server{Handler: front, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 2)
	var status atomic.Value
	if cfg.Database.URL != "" {
		desc, _ := store.ParsePostgres(cfg.Database.URL)
		status.Store("connecting to the database " + desc)
		front.set(startingHandler(&status))
		go func() { serveErr <- srv.Serve(ln) }()
		defer srv.Close()
	}
	st, err := openLedgerRetrying(ctx, cfg, store.Options{
		Clock: clock, Key: key, Logger: log, Notifier: notifier,
		ApprovalTimeout:    func(target string) time.Duration { return cfg.target(target).Timeout },
		FinanceThreshold:   cfg.Budget.FinanceThreshold,
		OnEnqueue:          func() { disp.Notify(); sched.Notify() },
		ObserveCommit:      func(d time.Duration) { commitLatency.Observe(d.Seconds()) },
		ReleaseMappedEvery: time.Second,
		Gates:              []store.ApprovalGate{store.AzureBudgetGate(cfg.Budget.Monthly, cfg.Budget.Threshold, cfg.budgetScopes()), freezeGate(fz)},
		Freeze:             freezeFacts(fz),
		RouteAlert:         alertRouter(&cfg.Alerts.Routing, pdEnabled),
		Incidents:          incNotifier,
		TokenSealer:        jobTokens,
		PublicHost:         cfg.PublicURL,
		CheckpointMessages: checkpointMessages(cfg, blobs != nil, mmEnabled),
	}, log, &status)
	if err != nil {
		return err
	}
	if err := witnessAtStart(ctx, blobs, st, *acceptRollback, log); err != nil {
		st.Close()
		return err
	}
	if n, err := st.SealLegacyJobTokens(); err != nil {
		log.Warn("could not seal the job tokens an earlier version kept in clear; retried at the next start", "err", err)
	} else if n > 0 {
		log.Info("sealed or erased the job tokens an earlier version kept in clear", "records", n)
	}
	if st.Shared() {
		// Every replica must sign checkpoints and button contexts alike.
		fps, settings := keyFingerprints(key, actionSecret)
		if err := st.CheckKeys(ctx, fps, settings); err != nil {
			st.Close()
			return fmt.Errorf("%s", ica.ErrorMessage(err))
		}
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ica_ledger_entries", Help: "Entries in the ledger hash chain."},
			func() float64 { return float64(st.LedgerEntries()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ica_outbox_depth", Help: "Undelivered outbox messages."},
			func() float64 { return float64(st.OutboxDepth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ica_scheduler_leader",
			Help: "1 while this process runs the scheduled work (expiry, reminders, cost sync, checkpoints); replicas on one database: exactly one."},
			func() float64 {
				if st.Leading() {
					return 1
				}
				return 0
			}),
	)
	disp = outbox.New(st, clock, log, outbox.Policy{}, func(dest, outcome string, _ time.Duration) {
		deliveries.WithLabelValues(dest, outcome).Inc()
	})
	disp.Register(ica.CheckDestination, &icapipelines.CheckDeliverer{Tokens: jobTokens})
	registerWitness(disp, blobs, st, log)

	// The deployment policy in force (policy.go).
	pol, err := startPolicy(ctx, st, cfg, orDefault(*configPath, "the environment")+" at start", log)
	if err != nil {
		st.Close()
		return fmt.Errorf("deployment policy: %w", err)
	}
	pipelineTokens, err := hashedTokens("pipeline token", append(append([]Token{}, cfg.PipelineTokens...), cfg.CheckTokens...))
	if err != nil {
		st.Close()
		return err
	}
	if len(pipelineTokens) == 0 {
		log.Warn("no pipeline tokens configured: the pipeline API refuses every request (set ICA_PIPELINE_TOKENS)")
	}
	// One Entra ID policy per surface (entra.go): the pipeline API, the
	// alert intake and people never accept each other's tokens.
	entra, err := entraWiring(cfg, clock, log)
	if err != nil {
		st.Close()
		return err
	}
	pipelines, err := webhooks.NewStaticTokens(pipelineTokens, entra.Pipeline)
	if err != nil {
		st.Close()
		return err
	}
	pipelines.WithScopes(cfg.tokenScopes())
	costs := budgetSource{st: st, monthly: cfg.Budget.Monthly, threshold: cfg.Budget.Threshold, scopes: cfg.budgetScopes()}
	// The API's approval requests wake the scheduler (wake.go).
	api := deadlineLedger{Store: st, wake: func() { sched.Notify() }}
	proxies, _ := webhooks.ParseTrustedProxies(cfg.TrustedProxies) // validated with the configuration
	sources := webhooks.NewSourceLimiter(cfg.SourceRateLimit, proxies)
	deps := webhooks.Deps{Ledger: api, Costs: costs, Checks: api, CheckHosts: icapipelines.AzureDevOpsHosts(cfg.ADOHosts), Pipelines: pipelines, Limiter: webhooks.NewRateLimiter(cfg.RateLimit),
		Sources: sources,
		Metrics: webhooks.NewMetrics(reg), Logger: log, Clock: clock, Degraded: map[string]webhooks.ReadinessCheck{"policy": pol.ready}}
	if entra.User != nil {
		deps.Users = webhooks.NewUserAuth(entra.User)
		deps.Approvers = apiApprovers(st, cfg)
	}
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
		log.Warn("Mattermost delivery disabled: ICA_MATTERMOST_URL is not set; approvals are recorded, and approvers named as entra:<object id> " +
			"decide through POST /api/v1/approvals/{id}/decisions with their own Entra ID token (ica approve); otherwise an approval expires " +
			"at its deadline, or a break-glass token (ICA_BREAKGLASS_TOKENS) bypasses it")
		deps.Degraded["mattermost"] = func(context.Context) error { return errors.New("not configured") }
	} else {
		mm = bot.New(botConfig(cfg, actionSecret), bot.NewClient(cfg.Mattermost.URL, cfg.Mattermost.Token, nil), st, clock, log)
		mm.SetBudget(costs)
		mm.LimitUsers(sources) // per user Mattermost proved, never per address
		mm.EnableIncidents(bot.IncidentConfig{Channel: cfg.Mattermost.IncidentChannel,
			OnCall:     bot.StepPolicy{Usernames: cfg.Alerts.OnCallUsers, Channel: cfg.Alerts.OnCallChannel},
			Commanders: cfg.Alerts.IncidentCommanders}, st, freezeInfo{policy: fz, st: st})
		disp.Register(bot.Destination, mm)
		deps.Degraded["mattermost"] = mm.Ready
		deps.Degraded["mattermost_approvers"] = mm.Approvers   // names that approve nothing
		deps.Degraded["mattermost_email"] = mm.EmailVisibility // the requester check without e-mail
	}
	schedOpt := scheduler.Options{Tasks: []func(context.Context) (time.Time, error){st.PolicyTick}}
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
	alertDeps, err := alertWiring(cfg, deps, mm, fz, st, entra.Alert)
	if err != nil {
		st.Close()
		return err
	}
	h.RegisterAlerts(alertDeps)
	metrics, err := metricsHandler(cfg, h, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if err != nil {
		st.Close()
		return err
	}
	// --- dashboard (cmd/ica/dashboard.go) ---
	dash := mountDashboard(h, st, costs, actionSecret, cfg.PublicURL, pipelines, clock, log)
	// Its background load must not outlive serve, whichever way serve
	// returns (it logs; a failed start returns early).
	defer dash.Close()
	// --- end dashboard ---
	if mm != nil {
		// Each click proves its user by the signed trigger_id (bot/trigger.go), each
		// button by its HMAC context, each dialog by its signed, stored state.
		// One source (the Mattermost server): no per-address limit (webhooks/ratelimit.go).
		h.Router().Handle("/mattermost/actions", h.RouteUnlimited(mm.HandleAction)).Methods(http.MethodPost)
		h.Router().Handle("/mattermost/dialogs", h.RouteUnlimited(mm.HandleDialog)).Methods(http.MethodPost)
	} else {
		mountMattermostOff(h) // notconfigured.go
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
		if len(cfg.Mattermost.ExportUsers) == 0 && len(cfg.Mattermost.ExportChannels) == 0 {
			log.Warn("nobody may run /ica export: name who may in ICA_EXPORT_USERS (usernames) or ICA_EXPORT_CHANNELS (channels whose members may)")
		}
		slash = slashcmds.New(slashcmds.Deps{Tokens: cfg.Mattermost.SlashTokens,
			Callers: slashCallers{mm}, InstanceName: cfg.InstanceName,
			Queries:  slashQueries{st: st, budget: costs},
			Exporter: ledgerExporter{st: st, key: key, clock: clock}, Poster: mm, Archiver: arch,
			ExportUsers: cfg.Mattermost.ExportUsers, ExportChannels: cfg.Mattermost.ExportChannels,
			MattermostURL: cfg.Mattermost.URL, Clock: clock, Log: log,
			Dashboard: dash}) // dashboard: /ica dashboard
		h.Router().Handle("/mattermost/slash", h.RouteUnlimited(slash.HandleSlash)).Methods(http.MethodPost)
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
	} else {
		h.Router().Handle("/api/v1/admin/backup", h.NotConfigured("the remote backup", "ICA_ADMIN_TOKENS")).Methods(http.MethodGet)
	}
	if err := registerProofRoute(h, st, pipelines, cfg); err != nil { // proof.go
		st.Close()
		return err
	}

	if hook := serveRoutesHook.Load(); hook != nil { // test seam (seams.go)
		(*hook)(h)
	}
	// Mattermost's callbacks: limited to ICA_CALLBACK_ALLOWED_CIDRS, and on
	// their own listener when ICA_CALLBACK_ADDR is set (callbacks.go).
	allowed, _ := webhooks.ParseCIDRs(cfg.Callbacks.AllowedCIDRs) // checked by loadConfig
	var handler http.Handler = webhooks.CallbackSources(allowed, log, h)
	var cbHandler http.Handler
	if cbLn != nil {
		handler, cbHandler = webhooks.SplitCallbacks(handler)
	}
	if mm != nil && len(allowed) == 0 && cbLn == nil {
		log.Info("Mattermost callbacks are open to every source address (clicks and commands are still verified by their signed trigger_id); set ICA_CALLBACK_ALLOWED_CIDRS or ICA_CALLBACK_ADDR to narrow them")
	}
	front.set(handler)
	metricsSrv, err := serveMetrics(cfg, metrics, log)
	if err != nil {
		srv.Close()
		st.Close()
		return err
	}
	var cbSrv *http.Server
	if cbHandler != nil {
		cbSrv = &http.Server{Handler: cbHandler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}
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
	}
	disp.Start(bgCtx)
	go pol.watchReload(bgCtx, *configPath, getenv, log)
	if mm != nil {
		mm.Start(bgCtx)
	}
	// Scheduled work (expiry, reminders, cost sync, checkpoints) runs on
	// one process at a time: always this one on the embedded ledger; on a
	// shared database, the replica that holds the scheduler lock.
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Lead(bgCtx, func(lctx context.Context) {
			log.Info("running the scheduled work", "shared_ledger", st.Shared())
			sched.Start(lctx)
			if syncer != nil {
				syncer.Start(lctx)
			}
			checkpointLoop(lctx, st, clock, cfg.Ledger.CheckpointInterval, log)
			sched.Stop()
			if syncer != nil {
				syncer.Stop()
			}
		})
	}()
	// Other replicas' commits wake this one's dispatcher and scheduler.
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		st.Watch(bgCtx, func() { disp.Notify(); sched.Notify() })
	}()
	if cfg.Database.URL == "" {
		go func() { serveErr <- srv.Serve(ln) }()
	} // with a database, srv serves already (the starting handler until now)
	if cbSrv != nil {
		go func() { serveErr <- cbSrv.Serve(cbLn) }()
		log.Info("listening for Mattermost callbacks", "callback_addr", cbLn.Addr().String())
	}
	log.Info("listening", "addr", ln.Addr().String(), "ledger", st.Describe(), "ledger_id", st.LedgerID(), "ledger_entries", st.LedgerEntries(), "version", strings.TrimPrefix(versionString(), "ica "))

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
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(shutdownCtx)
	}
	if cbSrv != nil {
		if e := cbSrv.Shutdown(shutdownCtx); e != nil {
			log.Warn("callback listener shutdown", "err", e)
		}
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
	<-done // the scheduled work has stopped with the lead
	<-watched
	if mm != nil {
		mm.Stop()
	}
	dispCtx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if e := disp.Stop(dispCtx); e != nil {
		log.Warn("dispatcher did not stop in time", "err", e)
	}
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
		FinanceApprovers: cfg.Approval.FinanceApprovers, Secret: secret, Targets: map[string]bot.TargetPolicy{},
		InstanceName: cfg.InstanceName, SigningKey: cfg.Callbacks.MattermostSigningKey, ApproverRefresh: cfg.Callbacks.ApproverRefresh}
	for _, t := range []string{ica.TargetStaging, ica.TargetProduction} {
		p := cfg.target(t)
		bc.Targets[t] = bot.TargetPolicy{Channel: p.Channel, CommentOnApprove: p.CommentOnApprove,
			Technical: bot.StepPolicy{Usernames: p.TechnicalApprovers, Channel: p.TechnicalChannel},
			Business:  bot.StepPolicy{Usernames: p.BusinessApprovers, Channel: p.BusinessChannel}}
	}
	return bc
}

// budgetSource gives the month's budget figures with the configured budget
// and each Azure budget's latest report.
type budgetSource struct {
	st                 *store.Store
	monthly, threshold float64
	scopes             []string
}

func (b budgetSource) Budget(ctx context.Context) (*ica.Budget, error) {
	return b.st.BudgetWithAzure(ctx, b.monthly, b.threshold, b.scopes)
}

// azureBudgets records Azure budget notifications, with the finance
// channel's notice when Mattermost is configured.
type azureBudgets struct {
	st     *store.Store
	notify bool
	clock  ica.Clock
}

func (a azureBudgets) RecordAzureBudget(ctx context.Context, r *ica.AzureBudgetReport, raw []byte, actor string) (bool, error) {
	if r.AsOf.IsZero() {
		r.AsOf = a.clock.Now() // the legacy schema carries no time
	}
	var msgs []*ica.OutboxMessage
	if a.notify {
		msgs = bot.AzureBudgetNotice(r)
	}
	return a.st.RecordAzureBudget(ctx, r, raw, actor, msgs...)
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
// jwt (may be nil) validates Secure Webhook tokens with the alert surface's
// own policy (entra.go).
func alertWiring(cfg *Config, deps webhooks.Deps, mm *bot.Bot, fz *freeze.Policy, st *store.Store, jwt webhooks.TokenValidator) (webhooks.AlertDeps, error) {
	d := webhooks.AlertDeps{Ledger: st, Parse: alerts.Parse, Auth: webhooks.NewAlertAuth(cfg.Alerts.Token, jwt),
		ParseBudget: alerts.ParseBudget, Budgets: azureBudgets{st: st, notify: mm != nil, clock: deps.Clock},
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

// metricsHandler returns /metrics as the metrics listener serves it: with
// ICA_METRICS_TOKEN, behind that bearer token, and then also on the main
// listener; without, on the metrics listener only (loopback by default),
// never on the public one.
func metricsHandler(cfg *Config, h *webhooks.Handler, prom http.Handler) (http.Handler, error) {
	if cfg.MetricsToken == "" {
		return prom, nil
	}
	auth, err := webhooks.NewStaticTokens(map[string]string{"metrics": webhooks.HashToken(cfg.MetricsToken)}, nil)
	if err != nil {
		return nil, err
	}
	serve := func(w http.ResponseWriter, r *http.Request) error { prom.ServeHTTP(w, r); return nil }
	h.Router().Handle("/metrics", h.Route(auth, serve)).Methods(http.MethodGet)
	return h.Route(auth, serve), nil
}

// serveMetrics starts the metrics listener (ICA_METRICS_ADDR), which serves
// GET /metrics and nothing else. An address the operator chose must be
// free; the default (loopback) is best effort, so two ICAs on one machine
// still start.
func serveMetrics(cfg *Config, metrics http.Handler, log *slog.Logger) (*http.Server, error) {
	if strings.EqualFold(cfg.MetricsAddr, "off") {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		if cfg.MetricsAddr == defaultMetricsAddr {
			log.Warn("metrics listener unavailable; /metrics is not served (set ICA_METRICS_ADDR)", "addr", cfg.MetricsAddr, "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("metrics listener (ICA_METRICS_ADDR) on %s: %w", cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String(), "token", cfg.MetricsToken != "")
	return srv, nil
}
