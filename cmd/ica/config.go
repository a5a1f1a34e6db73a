package main

import (
	_ "embed"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/alerts"
	"github.com/ica-governance/ica/freeze"
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
}

// Config is the whole configuration: the YAML file, then the environment.
type Config struct {
	Addr             string  `yaml:"addr"`
	DataDir          string  `yaml:"data_dir"`
	PublicURL        string  `yaml:"public_url"`
	LogLevel         string  `yaml:"log_level"`
	PipelineTokens   []Token `yaml:"pipeline_tokens"`
	BreakGlassTokens []Token `yaml:"breakglass_tokens"`
	AdminTokens      []Token `yaml:"admin_tokens"`
	RateLimit        float64 `yaml:"rate_limit"`
	SigningKey       string  `yaml:"signing_key"`
	ActionSecret     string  `yaml:"action_secret"`

	Approval struct {
		Timeout          time.Duration           `yaml:"timeout"`
		ReminderBefore   time.Duration           `yaml:"reminder_before"`
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
		// empty: everyone in the team) (ICA_EXPORT_USERS, ICA_EXPORT_CHANNELS).
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

	Entra struct {
		TenantID      string   `yaml:"tenant_id"`
		Audiences     []string `yaml:"audiences"`
		AllowedAppIDs []string `yaml:"allowed_app_ids"`
		AllowedOIDs   []string `yaml:"allowed_object_ids"`
		AllowedRoles  []string `yaml:"allowed_roles"`
		MetadataURL   string   `yaml:"metadata_url"`
	} `yaml:"entra"`
}

func defaultConfig() *Config {
	c := &Config{Addr: "127.0.0.1:8080", DataDir: "./data", LogLevel: "info", RateLimit: 50}
	c.Approval.Timeout = 4 * time.Hour
	c.Approval.ReminderBefore = time.Hour
	c.Budget.Threshold = 0.95
	c.Budget.FinanceThreshold = 5000
	c.Mattermost.ApprovalChannel = "deployments"
	c.Mattermost.IncidentChannel = "incidents"
	c.Mattermost.FinanceChannel = "finance"
	c.Blob.Container = "ica-exports"
	c.ADOHosts = []string{"dev.azure.com", "*.visualstudio.com"}
	c.Cost.Interval = 6 * time.Hour
	c.Ledger.CheckpointInterval = time.Minute
	return c
}

// loadConfig reads the YAML file (if any), then applies ICA_… variables.
func loadConfig(path string, getenv func(string) string) (*Config, error) {
	c := defaultConfig()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := c.applyEnv(getenv); err != nil {
		return nil, err
	}
	return c, c.validate()
}

func (c *Config) applyEnv(getenv func(string) string) error {
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
	str("ICA_ADDR", &c.Addr)
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
	str("ICA_ALERT_TOKEN", &c.Alerts.Token)
	list("ICA_INCIDENT_COMMANDERS", &c.Alerts.IncidentCommanders)
	list("ICA_ONCALL_USERS", &c.Alerts.OnCallUsers)
	str("ICA_ONCALL_CHANNEL", &c.Alerts.OnCallChannel)
	str("ICA_PAGERDUTY_ROUTING_KEY", &c.PagerDuty.RoutingKey)
	str("ICA_PAGERDUTY_URL", &c.PagerDuty.URL)
	for env, dst := range map[string]*int{"ICA_PAGERDUTY_EVENTS_PER_MINUTE": &c.PagerDuty.EventsPerMinute, "ICA_PAGERDUTY_BURST": &c.PagerDuty.Burst} {
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("%s=%q is not a whole number", env, v)
			}
			*dst = n
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
	str("ICA_COST_ENDPOINT", &c.Cost.Endpoint)
	list("ICA_ENTRA_ALLOWED_APP_IDS", &c.Entra.AllowedAppIDs)
	list("ICA_ENTRA_ALLOWED_OBJECT_IDS", &c.Entra.AllowedOIDs)
	list("ICA_ENTRA_ALLOWED_ROLES", &c.Entra.AllowedRoles)
	for env, dst := range map[string]*[]Token{"ICA_PIPELINE_TOKENS": &c.PipelineTokens,
		"ICA_BREAKGLASS_TOKENS": &c.BreakGlassTokens, "ICA_ADMIN_TOKENS": &c.AdminTokens,
		"ICA_INCIDENT_COMMANDER_TOKENS": &c.Alerts.CommanderTokens} {
		if v := getenv(env); v != "" {
			toks, err := parseTokenList(env, v)
			if err != nil {
				return err
			}
			*dst = toks
		}
	}
	// Approver lists from the environment apply to every target.
	for env, set := range map[string]func(p *TargetPolicy, v []string){
		"ICA_TECH_APPROVERS":     func(p *TargetPolicy, v []string) { p.TechnicalApprovers = v },
		"ICA_BUSINESS_APPROVERS": func(p *TargetPolicy, v []string) { p.BusinessApprovers = v },
	} {
		if v := getenv(env); v != "" {
			if c.Approval.Targets == nil {
				c.Approval.Targets = map[string]TargetPolicy{}
			}
			for _, t := range []string{"staging", "production"} {
				p := c.Approval.Targets[t]
				set(&p, splitList(v))
				c.Approval.Targets[t] = p
			}
		}
	}
	for env, dst := range map[string]*float64{"ICA_MONTHLY_BUDGET": &c.Budget.Monthly,
		"ICA_BUDGET_THRESHOLD": &c.Budget.Threshold, "ICA_FINANCE_THRESHOLD": &c.Budget.FinanceThreshold,
		"ICA_RATE_LIMIT": &c.RateLimit} {
		if v := getenv(env); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("%s=%q is not a number", env, v)
			}
			*dst = f
		}
	}
	for env, dst := range map[string]*time.Duration{"ICA_APPROVAL_TIMEOUT": &c.Approval.Timeout,
		"ICA_COST_SYNC_INTERVAL":  &c.Cost.Interval,
		"ICA_CHECKPOINT_INTERVAL": &c.Ledger.CheckpointInterval,
		"ICA_REMINDER_BEFORE":     &c.Approval.ReminderBefore} {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s=%q is not a duration such as 4h or 90m", env, v)
			}
			*dst = d
		}
	}
	return nil
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

// parseTokenList reads "name=secret,name2=secret2". The error never repeats a secret.
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
		out = append(out, Token{Name: strings.TrimSpace(name), Token: secret})
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
			out[t.Name] = strings.ToLower(strings.TrimPrefix(t.SHA256, "sha256:"))
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

func (c *Config) validate() error {
	if c.Approval.Timeout <= 0 {
		return fmt.Errorf("approval timeout must be positive")
	}
	if c.Ledger.CheckpointInterval < time.Second {
		return fmt.Errorf("ledger.checkpoint_interval (ICA_CHECKPOINT_INTERVAL) %s is shorter than a second", c.Ledger.CheckpointInterval)
	}
	if c.Budget.Threshold <= 0 || c.Budget.Threshold > 1 {
		return fmt.Errorf("budget threshold %v must be in (0, 1]", c.Budget.Threshold)
	}
	if c.Budget.Monthly < 0 || c.Budget.FinanceThreshold < 0 {
		return fmt.Errorf("budget figures must not be negative")
	}
	for name, u := range map[string]string{"public_url": c.PublicURL, "mattermost.url": c.Mattermost.URL} {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("%s %q is not an http(s) URL", name, u)
		}
	}
	if c.Mattermost.URL != "" && c.Mattermost.Token == "" {
		return fmt.Errorf("mattermost.url is set but the bot token (ICA_MATTERMOST_TOKEN) is not")
	}
	if err := c.Alerts.Routing.Validate(); err != nil {
		return fmt.Errorf("alerts.routing: %s", ica.ErrorMessage(err))
	}
	if err := c.Freeze.Validate(); err != nil {
		return fmt.Errorf("freeze: %s", ica.ErrorMessage(err))
	}
	for t := range c.Approval.Targets {
		if t != "staging" && t != "production" {
			return fmt.Errorf("approval.targets: unknown target %q (staging or production)", t)
		}
	}
	return nil
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
	if p.Channel == "" {
		p.Channel = c.Mattermost.ApprovalChannel
	}
	return p
}
