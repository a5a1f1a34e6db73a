// Package freeze is the deployment freeze: while an open Sev0 or Sev1
// incident touches a deployment target (its resource groups or subscriptions,
// mapped to targets in ica.yaml), new approvals for that target are refused
// with a reason that names the incident, and the cards of pending approvals
// for it carry a warning. An incident commander can lift the freeze of one
// incident (the override is a ledger entry kept by the store).
//
// The package is pure policy: it reads incidents through Incidents, which
// the store satisfies both inside a transaction (the approval gate) and
// outside one (card warnings).
package freeze

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ica-governance/ica"
)

// Scope lists what belongs to one deployment target in Azure.
type Scope struct {
	ResourceGroups []string `yaml:"resource_groups,omitempty" json:"resource_groups,omitempty"`
	Subscriptions  []string `yaml:"subscriptions,omitempty" json:"subscriptions,omitempty"`
}

// Config is the "freeze" part of ica.yaml:
//
//	freeze:
//	  min_severity: Sev1          # Sev0 and Sev1 freeze (the default)
//	  targets:
//	    production:
//	      resource_groups: [rg-payments-prod]
//	      subscriptions: [00000000-0000-0000-0000-000000000000]
//
// An empty Config freezes nothing.
type Config struct {
	MinSeverity string           `yaml:"min_severity,omitempty" json:"min_severity,omitempty"`
	Targets     map[string]Scope `yaml:"targets,omitempty" json:"targets,omitempty"`
}

// Validate checks the configuration and names the first problem.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	if c.MinSeverity != "" {
		if _, err := ica.ParseSeverity("freeze.min_severity", c.MinSeverity); err != nil {
			return err
		}
	}
	for t, s := range c.Targets {
		switch t {
		case ica.TargetStaging, ica.TargetProduction:
		default:
			return ica.FieldErrorf(ica.EINVALID, "freeze.targets", "freeze target %q is not staging or production", t)
		}
		if len(s.ResourceGroups) == 0 && len(s.Subscriptions) == 0 {
			return ica.FieldErrorf(ica.EINVALID, "freeze.targets."+t, "freeze target %s lists no resource_groups and no subscriptions", t)
		}
	}
	return nil
}

// Incidents is what the policy reads: the incidents that are not resolved,
// each with whether an incident commander overrode its freeze.
type Incidents interface {
	OpenIncidents(fn func(inc *ica.Incident, overridden bool) error) error
}

// Policy decides which incidents freeze which targets. A nil *Policy
// freezes nothing.
type Policy struct {
	min     string
	targets map[string]Scope
	names   []string // sorted target names, for stable messages
}

// New returns the policy of cfg (which must be valid).
func New(cfg Config) *Policy {
	p := &Policy{min: ica.Sev1, targets: map[string]Scope{}}
	if cfg.MinSeverity != "" {
		if s, err := ica.ParseSeverity("", cfg.MinSeverity); err == nil {
			p.min = s
		}
	}
	for t, s := range cfg.Targets {
		p.targets[t] = s
		p.names = append(p.names, t)
	}
	slices.Sort(p.names)
	return p
}

// Enabled reports whether any target is mapped.
func (p *Policy) Enabled() bool { return p != nil && len(p.targets) > 0 }

// Targets returns the deployment targets an incident touches (by resource
// group or subscription, case-insensitively), whatever its severity or state.
func (p *Policy) Targets(inc *ica.Incident) []string {
	if p == nil || inc == nil {
		return nil
	}
	var out []string
	for _, t := range p.names {
		s := p.targets[t]
		if overlaps(s.ResourceGroups, inc.ResourceGroups) || overlaps(s.Subscriptions, inc.Subscriptions) {
			out = append(out, t)
		}
	}
	return out
}

// Severe reports whether an incident is severe and unresolved enough to
// freeze the targets it touches (overrides aside).
func (p *Policy) Severe(inc *ica.Incident) bool {
	return p != nil && inc != nil && !inc.Final() && ica.SeverityAtLeast(inc.Severity, p.min)
}

// Freezes reports whether the incident freezes target right now.
func (p *Policy) Freezes(inc *ica.Incident, overridden bool, target string) bool {
	return !overridden && p.Severe(inc) && slices.Contains(p.Targets(inc), target)
}

// Blocking returns the first incident that freezes target (most severe,
// then oldest), or nil.
func (p *Policy) Blocking(src Incidents, target string) (*ica.Incident, error) {
	if !p.Enabled() || src == nil {
		return nil, nil
	}
	var best *ica.Incident
	err := src.OpenIncidents(func(inc *ica.Incident, overridden bool) error {
		if !p.Freezes(inc, overridden, target) {
			return nil
		}
		if best == nil || ica.SeverityRank(inc.Severity) < ica.SeverityRank(best.Severity) ||
			(inc.Severity == best.Severity && inc.OpenedAt.Before(best.OpenedAt)) {
			best = inc
		}
		return nil
	})
	return best, err
}

// Check is the approval gate: it refuses an approval for a frozen target
// with EPOLICY naming the incident.
func (p *Policy) Check(src Incidents, a *ica.Approval) error {
	inc, err := p.Blocking(src, a.Target)
	if err != nil || inc == nil {
		return err
	}
	return ica.Errorf(ica.EPOLICY, "deployments to %s are frozen: %s", a.Target, Describe(inc))
}

// Warning returns the warning line for the card of a pending approval whose
// target is frozen, or "".
func (p *Policy) Warning(src Incidents, a *ica.Approval) string {
	if a.Final() {
		return ""
	}
	inc, err := p.Blocking(src, a.Target)
	if err != nil || inc == nil {
		return ""
	}
	return fmt.Sprintf(":warning: %s is frozen by %s. Deploying now needs an incident commander's freeze override.", a.Target, Describe(inc))
}

// Describe names an incident for refusal messages and warnings:
// "Sev1 incident inc-… (rule, open since 2026-11-02 09:00 UTC)".
func Describe(inc *ica.Incident) string {
	what := inc.Rule
	if what == "" {
		what = inc.MonitoringService
	}
	s := fmt.Sprintf("%s incident %s", inc.Severity, inc.ID)
	var parts []string
	if what != "" {
		parts = append(parts, what)
	}
	parts = append(parts, inc.Status+" since "+inc.OpenedAt.UTC().Format("2006-01-02 15:04 UTC"))
	return s + " (" + strings.Join(parts, ", ") + ")"
}

func overlaps(want, have []string) bool {
	for _, w := range want {
		w = strings.TrimSpace(w)
		for _, h := range have {
			if w != "" && strings.EqualFold(w, h) {
				return true
			}
		}
	}
	return false
}
