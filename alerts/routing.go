package alerts

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ica-governance/ica"
)

// Route says where one alert goes.
type Route struct {
	// PagerDuty pages on-call through PagerDuty Events v2.
	PagerDuty bool `yaml:"pagerduty" json:"pagerduty"`
	// Channel is the Mattermost channel for the incident card; "" means the
	// configured incident channel (ICA_INCIDENT_CHANNEL).
	Channel string `yaml:"channel,omitempty" json:"channel,omitempty"`
	// Quiet posts the card without notifying channel members.
	Quiet bool `yaml:"quiet,omitempty" json:"quiet,omitempty"`
	// Drop records the alert in the ledger and does nothing else.
	Drop bool `yaml:"drop,omitempty" json:"drop,omitempty"`
}

// Override actions.
const (
	ActionRoute = "route" // the default: change the fields the override sets
	ActionDrop  = "drop"
)

// RouteOverride changes the route of alerts that match it. Every criterion
// it sets must match (subscription id and resource group case-insensitively,
// rule names case-insensitively with '*' matching any text); an override with
// no criterion is invalid. Fields left unset keep the severity default.
type RouteOverride struct {
	// Name is shown in logs and config errors.
	Name          string `yaml:"name,omitempty" json:"name,omitempty"`
	Subscription  string `yaml:"subscription,omitempty" json:"subscription,omitempty"`
	ResourceGroup string `yaml:"resource_group,omitempty" json:"resource_group,omitempty"`
	Rule          string `yaml:"rule,omitempty" json:"rule,omitempty"`
	// Action is "route" (default) or "drop".
	Action    string `yaml:"action,omitempty" json:"action,omitempty"`
	PagerDuty *bool  `yaml:"pagerduty,omitempty" json:"pagerduty,omitempty"`
	Channel   string `yaml:"channel,omitempty" json:"channel,omitempty"`
	Quiet     *bool  `yaml:"quiet,omitempty" json:"quiet,omitempty"`
}

// RoutingConfig is the "alerts.routing" part of ica.yaml:
//
//	incident_channel: incidents
//	severity:                 # an entry replaces the default for its severity
//	  Sev2: {channel: ops-warnings}
//	overrides:                # first match wins
//	  - name: sandbox is noise
//	    resource_group: rg-sandbox
//	    action: drop
//	  - name: payments always pages
//	    rule: "payments-*"
//	    pagerduty: true
//
// The zero value (and a nil *RoutingConfig) routes by DefaultRoutes.
type RoutingConfig struct {
	IncidentChannel string           `yaml:"incident_channel,omitempty" json:"incident_channel,omitempty"`
	Severity        map[string]Route `yaml:"severity,omitempty" json:"severity,omitempty"`
	Overrides       []RouteOverride  `yaml:"overrides,omitempty" json:"overrides,omitempty"`
}

// DefaultRoutes is the routing by severity when the configuration says
// nothing: Sev0 and Sev1 page and post to the incident channel, Sev2 posts,
// Sev3 and Sev4 post quietly.
func DefaultRoutes() map[string]Route {
	return map[string]Route{
		ica.Sev0: {PagerDuty: true},
		ica.Sev1: {PagerDuty: true},
		ica.Sev2: {},
		ica.Sev3: {Quiet: true},
		ica.Sev4: {Quiet: true},
	}
}

// Validate checks the configuration and names the first problem.
func (c *RoutingConfig) Validate() error {
	if c == nil {
		return nil
	}
	for k := range c.Severity {
		if _, err := ica.ParseSeverity("alerts.routing.severity", k); err != nil {
			return ica.FieldErrorf(ica.EINVALID, "alerts.routing.severity", "routing severity %q is not one of Sev0 to Sev4", k)
		}
	}
	for i, o := range c.Overrides {
		field := fmt.Sprintf("alerts.routing.overrides[%d]", i)
		if o.Subscription == "" && o.ResourceGroup == "" && o.Rule == "" {
			return ica.FieldErrorf(ica.EINVALID, field, "routing override %s matches nothing: set subscription, resource_group or rule", o.label(i))
		}
		switch strings.ToLower(o.Action) {
		case "", ActionRoute, ActionDrop:
		default:
			return ica.FieldErrorf(ica.EINVALID, field+".action", "routing override %s has action %q (use route or drop)", o.label(i), o.Action)
		}
	}
	return nil
}

func (o *RouteOverride) label(i int) string {
	if o.Name != "" {
		return fmt.Sprintf("%q", o.Name)
	}
	return fmt.Sprintf("#%d", i+1)
}

// Route decides where a parsed alert goes: the severity's route, changed by
// the first override that matches. An alert with an unknown severity is
// routed as Sev2: visible, not paging.
func (c *RoutingConfig) Route(a *ica.Alert) Route {
	r := c.severityRoute(a.Severity)
	if o := c.Match(a); o != nil {
		if strings.EqualFold(o.Action, ActionDrop) {
			return Route{Drop: true}
		}
		if o.PagerDuty != nil {
			r.PagerDuty = *o.PagerDuty
		}
		if o.Quiet != nil {
			r.Quiet = *o.Quiet
		}
		if o.Channel != "" {
			r.Channel = o.Channel
		}
	}
	if r.Drop {
		return Route{Drop: true}
	}
	if r.Channel == "" && c != nil {
		r.Channel = c.IncidentChannel
	}
	return r
}

// Match returns the first override that matches a, or nil.
func (c *RoutingConfig) Match(a *ica.Alert) *RouteOverride {
	if c == nil {
		return nil
	}
	for i := range c.Overrides {
		if c.Overrides[i].matches(a) {
			return &c.Overrides[i]
		}
	}
	return nil
}

func (c *RoutingConfig) severityRoute(sev string) Route {
	if !ica.ValidSeverity(sev) {
		sev = ica.Sev2
	}
	if c != nil {
		for k, r := range c.Severity {
			if s, err := ica.ParseSeverity("", k); err == nil && s == sev {
				return r
			}
		}
	}
	return DefaultRoutes()[sev]
}

func (o *RouteOverride) matches(a *ica.Alert) bool {
	if o.Subscription == "" && o.ResourceGroup == "" && o.Rule == "" {
		return false
	}
	fold := func(want string) func(string) bool {
		return func(s string) bool { return strings.EqualFold(strings.TrimSpace(want), s) }
	}
	if o.Subscription != "" && !slices.ContainsFunc(a.Subscriptions, fold(o.Subscription)) {
		return false
	}
	if o.ResourceGroup != "" && !slices.ContainsFunc(a.ResourceGroups, fold(o.ResourceGroup)) {
		return false
	}
	if o.Rule != "" && !globFold(strings.TrimSpace(o.Rule), a.Rule) {
		return false
	}
	return true
}

// globFold matches s against pattern case-insensitively; '*' matches any
// text (including '/', which Prometheus rule names contain).
func globFold(pattern, s string) bool {
	p, t := strings.ToLower(pattern), strings.ToLower(s)
	parts := strings.Split(p, "*")
	if len(parts) == 1 {
		return p == t
	}
	if !strings.HasPrefix(t, parts[0]) {
		return false
	}
	t = t[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(t, mid)
		if i < 0 {
			return false
		}
		t = t[i+len(mid):]
	}
	return strings.HasSuffix(t, last)
}
