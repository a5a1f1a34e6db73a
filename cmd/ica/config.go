package main

import (
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/alerts"
	"github.com/ica-governance/ica/entraid"
	"github.com/ica-governance/ica/freeze"
	"github.com/ica-governance/ica/policy"
	"github.com/ica-governance/ica/webhooks"
)

//go:embed ica.example.yaml
var exampleConfig string

// Token is a named credential; the YAML should carry only its SHA-256
// (`ica token hash`), the environment may carry the secret itself.
type Token struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256,omitempty"`
	Token  string `yaml:"token,omitempty"`
	// Pipelines limits the token to these pipelines (empty: any; a check
	// token must name some) (policy.go).
	Pipelines []string `yaml:"pipelines,omitempty"`
}

// TargetPolicy is the approval policy of one deployment target.
type TargetPolicy struct {
	Timeout            time.Duration `yaml:"timeout"`
	ReminderBefore     time.Duration `yaml:"reminder_before"`
	Channel            string        `yaml:"channel"`
	TechnicalApprovers []string      `yaml:"technical_approvers"`
	BusinessApprovers  []string      `yaml:"business_approvers"`
	TechnicalChannel   string        `yaml:"technical_channel"`
	BusinessChannel    string        `yaml:"business_channel"`
	CommentOnApprove   bool          `yaml:"comment_on_approve"`
	// The deployment rules: branches, windows, blackouts, the lock, N of M,
	// promotion (policy.Rules).
	policy.Rules `yaml:",inline"`
}

// Config is the whole configuration: the YAML file, then the environment.
type Config struct {
	Addr string `yaml:"addr"`
	// MetricsAddr is the listener of /metrics alone (ICA_METRICS_ADDR);
	// "off" serves no separate listener. MetricsToken, when set, is
	// required as a bearer token on /metrics, which is then also served on
	// Addr (ICA_METRICS_TOKEN).
	MetricsAddr    string  `yaml:"metrics_addr"`
	MetricsToken   string  `yaml:"metrics_token"`
	DataDir        string  `yaml:"data_dir"`
	PublicURL      string  `yaml:"public_url"`
	LogLevel       string  `yaml:"log_level"`
	PipelineTokens []Token `yaml:"pipeline_tokens"`
	// CheckTokens are REST-check tokens: they request and read approvals of
	// their pipelines, nothing else (ICA_CHECK_TOKENS).
	CheckTokens      []Token `yaml:"check_tokens"`
	BreakGlassTokens []Token `yaml:"breakglass_tokens"`
	AdminTokens      []Token `yaml:"admin_tokens"`
	RateLimit        float64 `yaml:"rate_limit"`
	// SourceRateLimit limits the routes without a credential per source
	// address, and /mattermost/* per verified Mattermost user
	// (ICA_SOURCE_RATE_LIMIT); TrustedProxies are the proxies whose
	// X-Forwarded-For names that address (ICA_TRUSTED_PROXIES).
	SourceRateLimit float64  `yaml:"source_rate_limit"`
	TrustedProxies  []string `yaml:"trusted_proxies"`
	SigningKey      string   `yaml:"signing_key"`
	ActionSecret    string   `yaml:"action_secret"`

	Approval struct {
		Timeout          time.Duration           `yaml:"timeout"`
		ReminderBefore   time.Duration           `yaml:"reminder_before"`
		UseWindow        time.Duration           `yaml:"use_window"`
		FinanceApprovers []string                `yaml:"finance_approvers"`
		Targets          map[string]TargetPolicy `yaml:"targets"`
	} `yaml:"approval"`

	Mattermost struct {
		URL             string   `yaml:"url"`
		Token           string   `yaml:"token"`
		Team            string   `yaml:"team"`
		ApprovalChannel string   `yaml:"approval_channel"`
		IncidentChannel string   `yaml:"incident_channel"`
		FinanceChannel  string   `yaml:"finance_channel"`
		SlashTokens     []string `yaml:"slash_tokens"`
		// ExportUsers and ExportChannels say who may run /ica export (both
		// empty: nobody) (ICA_EXPORT_USERS, ICA_EXPORT_CHANNELS).
		ExportUsers    []string `yaml:"export_users"`
		ExportChannels []string `yaml:"export_channels"`
	} `yaml:"mattermost"`

	Alerts struct {
		Token string `yaml:"token"`
		// --- incidents ---
		// Routing decides paging and the card channel per severity (alerts.RoutingConfig).
		Routing alerts.RoutingConfig `yaml:"routing"`
		// OnCallUsers and OnCallChannel may acknowledge and resolve from the
		// card (ICA_ONCALL_USERS, ICA_ONCALL_CHANNEL); neither: the members of
		// the card's channel.
		OnCallUsers   []string `yaml:"oncall_users"`
		OnCallChannel string   `yaml:"oncall_channel"`
		// IncidentCommanders (Mattermost usernames) may override a deployment
		// freeze from the card (ICA_INCIDENT_COMMANDERS); CommanderTokens from
		// the API (ICA_INCIDENT_COMMANDER_TOKENS), as may break-glass tokens.
		IncidentCommanders []string `yaml:"incident_commanders"`
		CommanderTokens    []Token  `yaml:"incident_commander_tokens"`
		// --- end incidents ---
	} `yaml:"alerts"`

	// Freeze maps deployment targets to Azure resource groups and
	// subscriptions: an open Sev0/Sev1 incident there freezes the target.
	Freeze freeze.Config `yaml:"freeze"`

	PagerDuty struct {
		RoutingKey string `yaml:"routing_key"`
		URL        string `yaml:"url"`
		// EventsPerMinute and Burst bound the events sent per routing key
		// (default 100/min, burst 20: under PagerDuty's 120/min)
		// (ICA_PAGERDUTY_EVENTS_PER_MINUTE, ICA_PAGERDUTY_BURST).
		EventsPerMinute int `yaml:"events_per_minute"`
		Burst           int `yaml:"burst"`
	} `yaml:"pagerduty"`

	Budget struct {
		Monthly          float64 `yaml:"monthly"`
		Threshold        float64 `yaml:"threshold"`
		FinanceThreshold float64 `yaml:"finance_threshold"`
		// Scopes are the Azure scopes ICA's budget covers, where an Azure
		// budget's fresh, higher actual counts in the gate
		// (ICA_BUDGET_SCOPES; default: the cost sync's scopes).
		Scopes []string `yaml:"scopes"`
	} `yaml:"budget"`

	Blob struct {
		ConnectionString string `yaml:"connection_string"`
		AccountURL       string `yaml:"account_url"`
		Container        string `yaml:"container"`
	} `yaml:"blob"`

	// Ledger: signed checkpoints and where they are witnessed (the blob
	// container above, and optionally a Mattermost channel)
	// (ICA_CHECKPOINT_INTERVAL, ICA_CHECKPOINT_CHANNEL).
	Ledger struct {
		CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
		CheckpointChannel  string        `yaml:"checkpoint_channel"`
	} `yaml:"ledger"`

	// ADOHosts are the Azure DevOps hosts a check callback may be posted to (ICA_ADO_HOSTS).
	ADOHosts []string `yaml:"ado_hosts"`

	// Cost is the Azure Cost Management sync (ICA_COST_SCOPES, ICA_COST_SYNC_INTERVAL).
	Cost struct {
		Scopes   []string      `yaml:"scopes"`
		Interval time.Duration `yaml:"interval"`
		Endpoint string        `yaml:"endpoint"`
	} `yaml:"cost"`

	// --- Mattermost callbacks and who may click (cmd/ica/callbacks.go) ---
	// InstanceName says which ICA this is (ICA_INSTANCE_NAME), on cards and
	// in /ica status.
	InstanceName string `yaml:"instance_name"`
	// Callbacks guards Mattermost's callbacks (buttons, dialogs, /ica).
	Callbacks CallbackConfig `yaml:"callbacks"`
	// --- end Mattermost callbacks ---

	// Database selects PostgreSQL instead of the embedded ledger (database.go).
	Database DatabaseConfig `yaml:"database"`

	// Entra is Entra ID: one tenant and key set, and one policy per
	// surface (entra.go).
	Entra entraConfig `yaml:"entra"`
}

// entraConfig is Entra ID: one tenant and key set, and one policy per
// surface (entra.go).
type entraConfig struct {
	TenantID    string   `yaml:"tenant_id"`
	Audiences   []string `yaml:"audiences"`
	MetadataURL string   `yaml:"metadata_url"`
	// Pipeline: application and managed identity tokens of the
	// pipelines (ICA_ENTRA_PIPELINE_*). All three lists empty: no
	// Entra token is accepted on the pipeline API.
	Pipeline struct {
		Audiences []string `yaml:"audiences"`
		AppIDs    []string `yaml:"app_ids"`
		ObjectIDs []string `yaml:"object_ids"`
		Roles     []string `yaml:"roles"`
	} `yaml:"pipeline"`
	// Alert: Azure Monitor's Secure Webhook (ICA_ENTRA_ALERT_*): the
	// action groups' application, carrying the Secure Webhook role.
	Alert struct {
		Audiences []string `yaml:"audiences"`
		AppIDs    []string `yaml:"app_ids"`
		Roles     []string `yaml:"roles"`
	} `yaml:"alert"`
	// User: people's delegated tokens for ICA's audience (ICA_ENTRA_USER_*).
	User struct {
		Audiences []string `yaml:"audiences"`
		Scopes    []string `yaml:"scopes"`
	} `yaml:"user"`

	// Replaced settings: read only to fail with their replacement's name.
	AllowedAppIDs []string `yaml:"allowed_app_ids"`
	AllowedOIDs   []string `yaml:"allowed_object_ids"`
	AllowedRoles  []string `yaml:"allowed_roles"`
}

// renamedEnv maps environment variables whose meaning changed to what
// replaces them: a renamed setting fails at start and names its
// replacement (DESIGN "Identities").
var renamedEnv = map[string]string{
	"ICA_ENTRA_ALLOWED_APP_IDS": "ICA_ENTRA_PIPELINE_APP_IDS (pipelines' applications and managed identities; " +
		"Azure Monitor's Secure Webhook has its own ICA_ENTRA_ALERT_APP_IDS)",
	"ICA_ENTRA_ALLOWED_OBJECT_IDS": "ICA_ENTRA_PIPELINE_OBJECT_IDS (pipelines' managed identities)",
	"ICA_ENTRA_ALLOWED_ROLES": "ICA_ENTRA_PIPELINE_ROLES (pipelines) and ICA_ENTRA_ALERT_ROLES (the Secure Webhook role, " +
		"default ActionGroupsSecureWebhook): one Entra ID policy per surface",
}

// reminderUnset marks approval.reminder_before as not configured: the
// default then depends on the timeout (see Config.target).
const reminderUnset = time.Duration(math.MinInt64)

// defaultReminder is the reminder of an approval that lasts longer than it.
const defaultReminder = time.Hour

func defaultConfig() *Config {
	c := &Config{Addr: "127.0.0.1:8080", MetricsAddr: defaultMetricsAddr, DataDir: "./data", LogLevel: "info", RateLimit: 50,
		SourceRateLimit: 5}
	c.Entra.Alert.AppIDs = []string{entraid.ActionGroupsAppID}
	c.Entra.Alert.Roles = []string{entraid.ActionGroupsRole}
	c.Approval.Timeout = 4 * time.Hour
	c.Approval.ReminderBefore = reminderUnset
	c.Approval.UseWindow = policy.DefaultUseWindow
	c.Budget.Threshold = 0.95
	c.Budget.FinanceThreshold = 5000
	c.Mattermost.ApprovalChannel = "deployments"
	c.Mattermost.IncidentChannel = "incidents"
	c.Mattermost.FinanceChannel = "finance"
	c.Blob.Container = "ica-exports"
	c.ADOHosts = []string{"dev.azure.com", "*.visualstudio.com"}
	c.Cost.Interval = 6 * time.Hour
	c.Callbacks.ApproverRefresh = 10 * time.Minute
	c.Ledger.CheckpointInterval = time.Minute
	return c
}

// ConfigError lists every problem found in a configuration, each naming the
// YAML key and the environment variable it comes from.
type ConfigError struct {
	Problems []string
}

// Error implements error.
func (e *ConfigError) Error() string {
	if len(e.Problems) == 1 {
		return "configuration: " + e.Problems[0]
	}
	return fmt.Sprintf("configuration has %d problems:\n  - %s", len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

// problems collects configuration problems.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// loadConfig reads the YAML file (if any), then applies ICA_… variables, and
// checks the result. Every problem is reported at once (*ConfigError); a
// file that cannot be read or parsed is reported alone.
func loadConfig(path string, getenv func(string) string) (*Config, error) {
	c := defaultConfig()
	var p problems
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read the configuration file (--config or ICA_CONFIG): %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return nil, fmt.Errorf("configuration file %s: %w", path, err)
			}
			// Type errors do not stop the decoder: report each, go on.
			for _, e := range te.Errors {
				p.addf("%s: %s", path, strings.Replace(e, " in type main.Config", "", 1))
			}
		}
	}
	c.applyEnv(getenv, &p)
	if err := c.applyCallbackEnv(getenv); err != nil {
		p.addf("%v", err)
	}
	c.validate(&p)
	if err := c.validateCallbacks(); err != nil {
		p.addf("%v", err)
	}
	if len(p) > 0 {
		return c, &ConfigError{Problems: p}
	}
	return c, nil
}

func (c *Config) applyEnv(getenv func(string) string, p *problems) {
	if err := c.Database.applyEnv(getenv); err != nil {
		p.addf("%v", err)
	}
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	list := func(name string, dst *[]string) {
		if v := getenv(name); v != "" {
			*dst = splitList(v)
		}
	}
	for old, repl := range renamedEnv {
		if getenv(old) != "" {
			p.addf("%s is no longer read: it was replaced by %s", old, repl)
		}
	}
	str("ICA_ADDR", &c.Addr)
	str("ICA_METRICS_ADDR", &c.MetricsAddr)
	str("ICA_METRICS_TOKEN", &c.MetricsToken)
	str("ICA_DATA_DIR", &c.DataDir)
	str("ICA_PUBLIC_URL", &c.PublicURL)
	str("ICA_LOG_LEVEL", &c.LogLevel)
	str("ICA_SIGNING_KEY", &c.SigningKey)
	str("ICA_ACTION_SECRET", &c.ActionSecret)
	str("ICA_MATTERMOST_URL", &c.Mattermost.URL)
	str("ICA_MATTERMOST_TOKEN", &c.Mattermost.Token)
	str("ICA_MATTERMOST_TEAM", &c.Mattermost.Team)
	str("ICA_APPROVAL_CHANNEL", &c.Mattermost.ApprovalChannel)
	str("ICA_INCIDENT_CHANNEL", &c.Mattermost.IncidentChannel)
	str("ICA_FINANCE_CHANNEL", &c.Mattermost.FinanceChannel)
	list("ICA_SLASH_TOKENS", &c.Mattermost.SlashTokens)
	list("ICA_EXPORT_USERS", &c.Mattermost.ExportUsers)
	list("ICA_EXPORT_CHANNELS", &c.Mattermost.ExportChannels)
	list("ICA_TRUSTED_PROXIES", &c.TrustedProxies)
	str("ICA_ALERT_TOKEN", &c.Alerts.Token)
	list("ICA_INCIDENT_COMMANDERS", &c.Alerts.IncidentCommanders)
	list("ICA_ONCALL_USERS", &c.Alerts.OnCallUsers)
	str("ICA_ONCALL_CHANNEL", &c.Alerts.OnCallChannel)
	str("ICA_PAGERDUTY_ROUTING_KEY", &c.PagerDuty.RoutingKey)
	str("ICA_PAGERDUTY_URL", &c.PagerDuty.URL)
	for _, v := range []struct {
		env string
		dst *int
	}{{"ICA_PAGERDUTY_EVENTS_PER_MINUTE", &c.PagerDuty.EventsPerMinute}, {"ICA_PAGERDUTY_BURST", &c.PagerDuty.Burst}} {
		if s := getenv(v.env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				p.addf("%s=%q is not a whole number", v.env, s)
				continue
			}
			*v.dst = n
		}
	}
	str("ICA_BLOB_CONNECTION_STRING", &c.Blob.ConnectionString)
	str("ICA_BLOB_ACCOUNT_URL", &c.Blob.AccountURL)
	str("ICA_BLOB_CONTAINER", &c.Blob.Container)
	str("ICA_CHECKPOINT_CHANNEL", &c.Ledger.CheckpointChannel)
	str("ICA_ENTRA_TENANT_ID", &c.Entra.TenantID)
	list("ICA_ENTRA_AUDIENCES", &c.Entra.Audiences)
	list("ICA_FINANCE_APPROVERS", &c.Approval.FinanceApprovers)
	list("ICA_ADO_HOSTS", &c.ADOHosts)
	list("ICA_COST_SCOPES", &c.Cost.Scopes)
	list("ICA_BUDGET_SCOPES", &c.Budget.Scopes)
	str("ICA_COST_ENDPOINT", &c.Cost.Endpoint)
	str("ICA_ENTRA_METADATA_URL", &c.Entra.MetadataURL)
	list("ICA_ENTRA_PIPELINE_AUDIENCES", &c.Entra.Pipeline.Audiences)
	list("ICA_ENTRA_PIPELINE_APP_IDS", &c.Entra.Pipeline.AppIDs)
	list("ICA_ENTRA_PIPELINE_OBJECT_IDS", &c.Entra.Pipeline.ObjectIDs)
	list("ICA_ENTRA_PIPELINE_ROLES", &c.Entra.Pipeline.Roles)
	list("ICA_ENTRA_ALERT_AUDIENCES", &c.Entra.Alert.Audiences)
	list("ICA_ENTRA_ALERT_APP_IDS", &c.Entra.Alert.AppIDs)
	list("ICA_ENTRA_ALERT_ROLES", &c.Entra.Alert.Roles)
	list("ICA_ENTRA_USER_AUDIENCES", &c.Entra.User.Audiences)
	list("ICA_ENTRA_USER_SCOPES", &c.Entra.User.Scopes)
	for _, v := range []struct {
		env string
		dst *[]Token
	}{{"ICA_PIPELINE_TOKENS", &c.PipelineTokens}, {"ICA_CHECK_TOKENS", &c.CheckTokens}, {"ICA_BREAKGLASS_TOKENS", &c.BreakGlassTokens},
		{"ICA_ADMIN_TOKENS", &c.AdminTokens}, {"ICA_INCIDENT_COMMANDER_TOKENS", &c.Alerts.CommanderTokens}} {
		if s := getenv(v.env); s != "" {
			toks, err := parseTokenList(v.env, s)
			if err != nil {
				p.addf("%v", err)
				continue
			}
			*v.dst = toks
		}
	}
	// Approver lists from the environment apply to every target.
	for _, v := range []struct {
		env string
		set func(p *TargetPolicy, v []string)
	}{
		{"ICA_TECH_APPROVERS", func(p *TargetPolicy, v []string) { p.TechnicalApprovers = v }},
		{"ICA_BUSINESS_APPROVERS", func(p *TargetPolicy, v []string) { p.BusinessApprovers = v }},
	} {
		if s := getenv(v.env); s != "" {
			if c.Approval.Targets == nil {
				c.Approval.Targets = map[string]TargetPolicy{}
			}
			for _, t := range []string{"staging", "production"} {
				tp := c.Approval.Targets[t]
				v.set(&tp, splitList(s))
				c.Approval.Targets[t] = tp
			}
		}
	}
	for _, v := range []struct {
		env string
		dst *float64
	}{{"ICA_MONTHLY_BUDGET", &c.Budget.Monthly}, {"ICA_BUDGET_THRESHOLD", &c.Budget.Threshold},
		{"ICA_FINANCE_THRESHOLD", &c.Budget.FinanceThreshold}, {"ICA_RATE_LIMIT", &c.RateLimit},
		{"ICA_SOURCE_RATE_LIMIT", &c.SourceRateLimit}} {
		if s := getenv(v.env); s != "" {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				p.addf("%s=%q is not a number", v.env, s)
				continue
			}
			*v.dst = f
		}
	}
	for _, v := range []struct {
		env string
		dst *time.Duration
	}{{"ICA_APPROVAL_TIMEOUT", &c.Approval.Timeout}, {"ICA_COST_SYNC_INTERVAL", &c.Cost.Interval},
		{"ICA_REMINDER_BEFORE", &c.Approval.ReminderBefore}, {"ICA_APPROVAL_USE_WINDOW", &c.Approval.UseWindow},
		{"ICA_CHECKPOINT_INTERVAL", &c.Ledger.CheckpointInterval}} {
		if s := getenv(v.env); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				p.addf("%s=%q is not a duration such as 4h or 90m", v.env, s)
				continue
			}
			*v.dst = d
		}
	}
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, strings.TrimPrefix(s, "@"))
		}
	}
	return out
}

// parseTokenList reads "name=secret,name2=secret2"; in ICA_PIPELINE_TOKENS
// and ICA_CHECK_TOKENS "name=secret@p1|p2" limits a token to pipelines p1
// and p2 (the last "@" separates them). The error never repeats a secret.
func parseTokenList(env, v string) ([]Token, error) {
	var out []Token
	for i, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, secret, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(name) == "" || secret == "" {
			return nil, fmt.Errorf("%s: entry %d is not name=secret", env, i+1)
		}
		t := Token{Name: strings.TrimSpace(name), Token: secret}
		if env == "ICA_PIPELINE_TOKENS" || env == "ICA_CHECK_TOKENS" {
			if t.Token, t.Pipelines = splitSecretScope(secret); t.Token == "" {
				return nil, fmt.Errorf("%s: entry %d has no secret before \"@\"", env, i+1)
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// hashedTokens returns name → SHA-256 hex for an authenticator.
func hashedTokens(what string, toks []Token) (map[string]string, error) {
	out := map[string]string{}
	for i, t := range toks {
		if t.Name == "" {
			return nil, fmt.Errorf("%s entry %d has no name", what, i+1)
		}
		if _, dup := out[t.Name]; dup {
			return nil, fmt.Errorf("%s: name %q appears twice", what, t.Name)
		}
		switch {
		case t.SHA256 != "":
			h := strings.ToLower(strings.TrimPrefix(t.SHA256, "sha256:"))
			if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
				return nil, fmt.Errorf("%s %q: sha256 is not 64 hex digits (ica token hash prints it)", what, t.Name)
			}
			out[t.Name] = h
		case t.Token != "":
			if len(t.Token) < 16 {
				return nil, fmt.Errorf("%s %q: the token is shorter than 16 characters", what, t.Name)
			}
			out[t.Name] = webhooks.HashToken(t.Token)
		default:
			return nil, fmt.Errorf("%s %q has neither sha256 nor token", what, t.Name)
		}
	}
	return out, nil
}

// validate adds every problem of the configuration to p, each naming the
// YAML key and its environment variable.
func (c *Config) validate(p *problems) {
	if err := c.Database.validate(); err != nil {
		p.addf("%v", err)
	}
	if c.Ledger.CheckpointInterval < time.Second {
		p.addf("ledger.checkpoint_interval (ICA_CHECKPOINT_INTERVAL) %s is shorter than a second", c.Ledger.CheckpointInterval)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		p.addf("addr (ICA_ADDR) %q is not host:port, e.g. 127.0.0.1:8080 or :8080", c.Addr)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		p.addf("data_dir (ICA_DATA_DIR) is empty")
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		p.addf("log_level (ICA_LOG_LEVEL) %q is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.RateLimit < 0 || math.IsNaN(c.RateLimit) {
		p.addf("rate_limit (ICA_RATE_LIMIT) %v must not be negative (0 disables the limit)", c.RateLimit)
	}
	if c.SourceRateLimit < 0 || math.IsNaN(c.SourceRateLimit) {
		p.addf("source_rate_limit (ICA_SOURCE_RATE_LIMIT) %v must not be negative (0 disables the limit)", c.SourceRateLimit)
	}
	if _, err := webhooks.ParseTrustedProxies(c.TrustedProxies); err != nil {
		p.addf("trusted_proxies (ICA_TRUSTED_PROXIES): %v", err)
	}
	for _, k := range []struct{ key, env, value string }{
		{"signing_key", "ICA_SIGNING_KEY", c.SigningKey}, {"action_secret", "ICA_ACTION_SECRET", c.ActionSecret}} {
		if k.value == "" {
			continue
		}
		if b, err := hex.DecodeString(strings.TrimSpace(k.value)); err != nil || len(b) != 32 {
			p.addf("%s (%s) must be 32 bytes in hex (64 hex digits, e.g. from openssl rand -hex 32)", k.key, k.env)
		}
	}
	for _, t := range []struct {
		key, env string
		toks     []Token
	}{{"pipeline_tokens", "ICA_PIPELINE_TOKENS", c.PipelineTokens}, {"breakglass_tokens", "ICA_BREAKGLASS_TOKENS", c.BreakGlassTokens},
		{"admin_tokens", "ICA_ADMIN_TOKENS", c.AdminTokens}, {"alerts.incident_commander_tokens", "ICA_INCIDENT_COMMANDER_TOKENS", c.Alerts.CommanderTokens}} {
		if _, err := hashedTokens(t.key+" ("+t.env+")", t.toks); err != nil {
			p.addf("%v", err)
		}
	}

	// Approvals: timeouts, and reminders that come before the deadline.
	if c.Approval.Timeout <= 0 {
		p.addf("approval.timeout (ICA_APPROVAL_TIMEOUT) %s must be positive", c.Approval.Timeout)
	}
	rem := c.Approval.ReminderBefore
	if rem != reminderUnset && rem < 0 {
		p.addf("approval.reminder_before (ICA_REMINDER_BEFORE) %s must not be negative (0: no reminder)", rem)
	} else if rem > 0 && c.Approval.Timeout > 0 && rem >= c.Approval.Timeout {
		p.addf("approval.reminder_before (ICA_REMINDER_BEFORE) %s must be shorter than approval.timeout (ICA_APPROVAL_TIMEOUT) %s", rem, c.Approval.Timeout)
	}
	for _, name := range sortedTargets(c.Approval.Targets) {
		tp := c.Approval.Targets[name]
		key := "approval.targets." + name
		if name != ica.TargetStaging && name != ica.TargetProduction {
			p.addf("approval.targets: unknown target %q (staging or production)", name)
			continue
		}
		if tp.Timeout < 0 {
			p.addf("%s.timeout %s must be positive", key, tp.Timeout)
		}
		if tp.ReminderBefore < 0 {
			p.addf("%s.reminder_before %s must not be negative", key, tp.ReminderBefore)
		}
		eff := c.target(name)
		if eff.Timeout <= 0 || eff.ReminderBefore <= 0 || eff.ReminderBefore < eff.Timeout {
			continue
		}
		from := key + ".reminder_before"
		if tp.ReminderBefore == 0 {
			from = "approval.reminder_before (ICA_REMINDER_BEFORE), which " + name + " inherits,"
		}
		p.addf("%s %s must be shorter than the %s timeout %s", from, eff.ReminderBefore, name, eff.Timeout)
	}

	if c.Budget.Threshold <= 0 || c.Budget.Threshold > 1 {
		p.addf("budget.threshold (ICA_BUDGET_THRESHOLD) %v must be more than 0 and at most 1", c.Budget.Threshold)
	}
	if c.Budget.Monthly < 0 {
		p.addf("budget.monthly (ICA_MONTHLY_BUDGET) %v must not be negative (0: no budget gate)", c.Budget.Monthly)
	}
	if c.Budget.FinanceThreshold < 0 {
		p.addf("budget.finance_threshold (ICA_FINANCE_THRESHOLD) %v must not be negative", c.Budget.FinanceThreshold)
	}
	for _, u := range []struct{ key, env, value string }{
		{"public_url", "ICA_PUBLIC_URL", c.PublicURL}, {"mattermost.url", "ICA_MATTERMOST_URL", c.Mattermost.URL},
		{"pagerduty.url", "ICA_PAGERDUTY_URL", c.PagerDuty.URL}, {"cost.endpoint", "ICA_COST_ENDPOINT", c.Cost.Endpoint},
		{"blob.account_url", "ICA_BLOB_ACCOUNT_URL", c.Blob.AccountURL}} {
		if u.value == "" {
			continue
		}
		if pu, err := url.Parse(u.value); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			p.addf("%s (%s) %q is not an http(s) URL", u.key, u.env, u.value)
		}
	}
	if c.Mattermost.URL != "" {
		if c.Mattermost.Token == "" {
			p.addf("mattermost.url (ICA_MATTERMOST_URL) is set but mattermost.token (ICA_MATTERMOST_TOKEN), the bot's access token, is not")
		}
		if c.PublicURL == "" {
			p.addf("mattermost.url (ICA_MATTERMOST_URL) is set but public_url (ICA_PUBLIC_URL) is not: buttons call ICA back there")
		}
	}
	if c.PagerDuty.EventsPerMinute < 0 {
		p.addf("pagerduty.events_per_minute (ICA_PAGERDUTY_EVENTS_PER_MINUTE) %d must not be negative", c.PagerDuty.EventsPerMinute)
	}
	if c.PagerDuty.Burst < 0 {
		p.addf("pagerduty.burst (ICA_PAGERDUTY_BURST) %d must not be negative", c.PagerDuty.Burst)
	}
	if len(c.Cost.Scopes) > 0 && c.Cost.Interval <= 0 {
		p.addf("cost.interval (ICA_COST_SYNC_INTERVAL) %s must be positive", c.Cost.Interval)
	}
	if c.Entra.TenantID != "" {
		if _, err := entraWiring(c, ica.SystemClock{}, nil); err != nil {
			p.addf("entra (ICA_ENTRA_TENANT_ID, ICA_ENTRA_AUDIENCES): %s", strings.TrimPrefix(ica.ErrorMessage(err), "entraid: "))
		}
	}
	if err := c.validateEntra(); err != nil {
		p.addf("%v", err)
	}
	if c.MetricsAddr == "" {
		p.addf("metrics_addr (ICA_METRICS_ADDR) is empty: set it to host:port, or off")
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 16 {
		p.addf("metrics_token (ICA_METRICS_TOKEN) is shorter than 16 characters")
	}
	if err := c.Alerts.Routing.Validate(); err != nil {
		p.addf("alerts.routing: %s", ica.ErrorMessage(err))
	}
	if err := c.Freeze.Validate(); err != nil {
		p.addf("freeze: %s", ica.ErrorMessage(err))
	}
	if err := c.validatePolicy(); err != nil {
		p.addf("%v", err)
	}
}

func sortedTargets(m map[string]TargetPolicy) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// target returns the effective policy of a deployment target.
func (c *Config) target(name string) TargetPolicy {
	p := c.Approval.Targets[name]
	if p.Timeout == 0 {
		p.Timeout = c.Approval.Timeout
	}
	if p.ReminderBefore == 0 {
		p.ReminderBefore = c.Approval.ReminderBefore
	}
	if p.ReminderBefore == reminderUnset {
		// The default reminder, for approvals that last longer than it.
		p.ReminderBefore = 0
		if p.Timeout > defaultReminder {
			p.ReminderBefore = defaultReminder
		}
	}
	if p.Channel == "" {
		p.Channel = c.Mattermost.ApprovalChannel
	}
	return p
}

// defaultMetricsAddr keeps /metrics on loopback unless the operator says
// otherwise (the Helm chart: the pod's metrics port).
const defaultMetricsAddr = "127.0.0.1:9090"

// validateEntra checks the per-surface Entra ID settings: the replaced
// allow-lists name their replacements, surface settings need a tenant, and
// the pipeline policy may not admit the Secure Webhook's caller.
func (c *Config) validateEntra() error {
	e := &c.Entra
	for key, list := range map[string][]string{"allowed_app_ids": e.AllowedAppIDs, "allowed_object_ids": e.AllowedOIDs, "allowed_roles": e.AllowedRoles} {
		if len(list) > 0 {
			repl := map[string]string{"allowed_app_ids": "entra.pipeline.app_ids", "allowed_object_ids": "entra.pipeline.object_ids",
				"allowed_roles": "entra.pipeline.roles (pipelines) and entra.alert.roles (the Secure Webhook)"}[key]
			return fmt.Errorf("entra.%s is no longer read: it was replaced by %s, one Entra ID policy per surface", key, repl)
		}
	}
	if e.TenantID == "" {
		return nil // no Entra ID: every surface refuses JWTs
	}
	if len(e.audiences()) == 0 {
		return fmt.Errorf("ICA_ENTRA_TENANT_ID is set but no audience is: set ICA_ENTRA_AUDIENCES to ICA's application id and/or App ID URI")
	}
	for _, r := range e.Pipeline.Roles {
		for _, ar := range e.Alert.Roles {
			if r == ar {
				return fmt.Errorf("ICA_ENTRA_PIPELINE_ROLES names %s, the alert intake's role: a Secure Webhook token must not start runs", r)
			}
		}
	}
	for _, id := range e.Pipeline.AppIDs {
		for _, aid := range e.Alert.AppIDs {
			if strings.EqualFold(id, aid) {
				return fmt.Errorf("ICA_ENTRA_PIPELINE_APP_IDS names %s, the alert intake's caller (Azure Monitor action groups): it must not start runs", id)
			}
		}
	}
	return nil
}

// audiences is every audience any surface accepts: the validator checks
// them before fetching keys; each surface then checks its own.
func (e *entraConfig) audiences() []string {
	seen := map[string]bool{}
	var out []string
	for _, list := range [][]string{e.Audiences, e.Pipeline.Audiences, e.Alert.Audiences, e.User.Audiences} {
		for _, a := range list {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// budgetScopes are the Azure scopes ICA's budget covers.
func (c *Config) budgetScopes() []string {
	if len(c.Budget.Scopes) > 0 {
		return c.Budget.Scopes
	}
	return c.Cost.Scopes
}
