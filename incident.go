package ica

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Alert severities, as Azure Monitor names them. Sev0 is the most severe.
const (
	Sev0 = "Sev0" // critical
	Sev1 = "Sev1" // error
	Sev2 = "Sev2" // warning
	Sev3 = "Sev3" // informational
	Sev4 = "Sev4" // verbose
)

// Severities lists the valid severities, most severe first.
var Severities = []string{Sev0, Sev1, Sev2, Sev3, Sev4}

// Monitor conditions of an alert.
const (
	AlertFired    = "Fired"
	AlertResolved = "Resolved"
)

// Signal types. Azure spells the activity log both "Activity Log" and
// "ActivityLog"; parsers normalise to SignalActivityLog. SignalCost is ICA's
// name for budget alerts, which Azure sends with no signal type at all.
const (
	SignalMetric      = "Metric"
	SignalLog         = "Log"
	SignalActivityLog = "Activity Log"
	SignalCost        = "Cost"
)

// Alert payload schemas ICA understands.
const (
	SchemaCommon         = "common"
	SchemaLegacyMetric   = "legacy-metric"
	SchemaLegacyLog      = "legacy-log"
	SchemaLegacyActivity = "legacy-activity"
)

// SeverityRank returns 0 for Sev0 … 4 for Sev4 and -1 for anything else.
func SeverityRank(s string) int {
	if len(s) == 4 && s[:3] == "Sev" && s[3] >= '0' && s[3] <= '4' {
		return int(s[3] - '0')
	}
	return -1
}

// ValidSeverity reports whether s is one of Sev0 … Sev4 (exact spelling).
func ValidSeverity(s string) bool { return SeverityRank(s) >= 0 }

// ParseSeverity accepts "Sev2", "sev2", "SEV 2" and "2" and returns the
// canonical spelling ("Sev2"). It names the field in its error.
func ParseSeverity(field, s string) (string, error) {
	t := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
	t = strings.TrimPrefix(t, "sev")
	if len(t) == 1 && t[0] >= '0' && t[0] <= '4' {
		return "Sev" + t, nil
	}
	if s == "" {
		return "", FieldErrorf(EINVALID, field, "%s is required (Sev0 to Sev4)", field)
	}
	return "", FieldErrorf(EINVALID, field, "%s %q is not one of Sev0, Sev1, Sev2, Sev3, Sev4", field, clip(s, 40))
}

// SeverityAtLeast reports whether s is as severe as min or more (Sev0 is at
// least Sev1). Invalid severities are never at least anything.
func SeverityAtLeast(s, min string) bool {
	r, m := SeverityRank(s), SeverityRank(min)
	return r >= 0 && m >= 0 && r <= m
}

// MoreSevere returns the more severe of two severities; an invalid one loses.
func MoreSevere(a, b string) string {
	ra, rb := SeverityRank(a), SeverityRank(b)
	if ra < 0 || (rb >= 0 && rb < ra) {
		return b
	}
	return a
}

// Alert is one Azure Monitor webhook delivery in normalised form, whichever
// schema it arrived in. The raw body is stored by the caller; Essentials keeps
// the schema's essentials object (for the legacy schemas, an object of the
// same shape built from the legacy fields) for display and PagerDuty details.
type Alert struct {
	// AlertID identifies the alert instance; a Resolved delivery carries the
	// AlertID of the Fired one. Legacy metric alerts use the rule id.
	AlertID string `json:"alert_id"`
	Rule    string `json:"rule,omitempty"`
	// RuleID is the alert rule's resource id, when the payload has one.
	RuleID            string   `json:"rule_id,omitempty"`
	Severity          string   `json:"severity"`
	MonitorCondition  string   `json:"monitor_condition"`
	SignalType        string   `json:"signal_type,omitempty"`
	MonitoringService string   `json:"monitoring_service,omitempty"`
	TargetResources   []string `json:"target_resources,omitempty"`
	// ConfigurationItems are Azure's short names for the targets (a VM name, "budgets").
	ConfigurationItems []string        `json:"configuration_items,omitempty"`
	Subscriptions      []string        `json:"subscriptions,omitempty"`
	ResourceGroups     []string        `json:"resource_groups,omitempty"`
	Description        string          `json:"description,omitempty"`
	FiredAt            time.Time       `json:"fired_at"`
	ResolvedAt         time.Time       `json:"resolved_at,omitzero"`
	Essentials         json.RawMessage `json:"essentials,omitempty"`
	PortalLink         string          `json:"portal_link,omitempty"`
	Schema             string          `json:"schema"`
	// SeverityInferred is set when the payload had no severity (budget
	// alerts) and the parser chose one.
	SeverityInferred bool `json:"severity_inferred,omitempty"`
}

// Resolved reports whether the alert says its condition has cleared.
func (a *Alert) Resolved() bool { return a.MonitorCondition == AlertResolved }

// DeliveryKey identifies one state of one alert: Azure Monitor retries a
// webhook and fires the same state more than once, and repeats with the same
// key are duplicates (docs/design.md "Talking to the outside").
func (a *Alert) DeliveryKey() string { return a.AlertID + "|" + a.MonitorCondition }

// Validate checks the fields every consumer relies on.
func (a *Alert) Validate() error {
	if strings.TrimSpace(a.AlertID) == "" {
		return FieldErrorf(EINVALID, "alert_id", "alert_id is required")
	}
	if !ValidSeverity(a.Severity) {
		return FieldErrorf(EINVALID, "severity", "severity %q is not one of Sev0 to Sev4", clip(a.Severity, 40))
	}
	if a.MonitorCondition != AlertFired && a.MonitorCondition != AlertResolved {
		return FieldErrorf(EINVALID, "monitor_condition", "monitor_condition %q is not Fired or Resolved", clip(a.MonitorCondition, 40))
	}
	if a.FiredAt.IsZero() {
		return FieldErrorf(EINVALID, "fired_at", "fired_at is required")
	}
	return nil
}

// Incident statuses.
const (
	IncidentOpen         = "open"
	IncidentAcknowledged = "acknowledged"
	IncidentResolved     = "resolved"
)

// Incident actions a person (or the PagerDuty/Mattermost side) can take.
const (
	IncidentActAcknowledge = "acknowledge"
	IncidentActResolve     = "resolve"
)

// ViaAzureMonitor is the Decision.Via (and Username) of changes made by an
// alert itself rather than a person.
const ViaAzureMonitor = "azure-monitor"

// MaxPagerDutyDedupKey is PagerDuty's limit on dedup_key.
const MaxPagerDutyDedupKey = 255

// Incident is what ICA tracks for an alert: open until someone acknowledges
// it or Azure (or someone) resolves it. One incident per AlertID; a legacy
// alert that fires again after it resolved reopens the same incident.
type Incident struct {
	ID                string   `json:"incident_id"`
	AlertID           string   `json:"alert_id"`
	Status            string   `json:"status"`
	Severity          string   `json:"severity"`
	Rule              string   `json:"rule,omitempty"`
	SignalType        string   `json:"signal_type,omitempty"`
	MonitoringService string   `json:"monitoring_service,omitempty"`
	Resources         []string `json:"resources,omitempty"`
	Subscriptions     []string `json:"subscriptions,omitempty"`
	ResourceGroups    []string `json:"resource_groups,omitempty"`
	Description       string   `json:"description,omitempty"`
	// FiredAt is when Azure says the alert fired; OpenedAt when ICA opened
	// (or last reopened) the incident.
	FiredAt    time.Time  `json:"fired_at"`
	OpenedAt   time.Time  `json:"opened_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	PortalLink string     `json:"portal_link,omitempty"`
	// Card is the Mattermost post that shows the incident.
	Card CardRef `json:"card,omitzero"`
	// PagerDutyKey is the dedup_key used for every PagerDuty event about
	// this incident, so a resolve matches its trigger.
	PagerDutyKey string `json:"pagerduty_dedup_key"`
	// Paged records that a trigger was sent to PagerDuty; acknowledge and
	// resolve events are only sent for paged incidents. The caller sets it.
	Paged        bool      `json:"paged,omitempty"`
	Acknowledged *Decision `json:"acknowledged,omitempty"`
	Resolution   *Decision `json:"resolution,omitempty"`
	// Fired counts Fired deliveries applied (1 when opened, +1 per reopen).
	Fired int `json:"fired"`
	// Version counts applied transitions; it lets callers detect stale views
	// and gives outbox keys a per-transition suffix.
	Version int `json:"version"`
	// LastSeq is the ledger entry that last changed this record.
	LastSeq uint64 `json:"last_seq,omitempty"`
}

// IncidentTransition is one requested change of an incident by a person.
type IncidentTransition struct {
	Action  string
	By      Decider
	Comment string
	Via     string
	At      time.Time
}

// IncidentIDFor returns the incident id ICA uses for an alert id: stable, so
// repeats and resolutions find the incident, and safe in URLs and keys.
func IncidentIDFor(alertID string) string {
	sum := sha256.Sum256([]byte(alertID))
	return "inc-" + hex.EncodeToString(sum[:10])
}

// PagerDutyDedupKey returns the dedup_key for an alert id: the id itself,
// which is what operators see in Azure, unless it exceeds PagerDuty's limit.
func PagerDutyDedupKey(alertID string) string {
	if len(alertID) <= MaxPagerDutyDedupKey {
		return alertID
	}
	sum := sha256.Sum256([]byte(alertID))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NewIncident opens an incident for a Fired alert. A Resolved alert for which
// no incident exists is a conflict: there is nothing to resolve.
func NewIncident(id string, a *Alert, at time.Time) (*Incident, error) {
	if err := ValidID("incident_id", id); err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	if a.Resolved() {
		return nil, Errorf(ECONFLICT, "alert %s resolved but no incident is open for it", a.AlertID)
	}
	i := &Incident{
		ID:           id,
		AlertID:      a.AlertID,
		PagerDutyKey: PagerDutyDedupKey(a.AlertID),
		OpenedAt:     at,
		Version:      1,
	}
	i.fire(a, at)
	return i, nil
}

// fire copies an alert's descriptive fields into i and marks it open.
func (i *Incident) fire(a *Alert, at time.Time) {
	i.Status = IncidentOpen
	i.Severity = a.Severity
	i.Rule = a.Rule
	i.SignalType = a.SignalType
	i.MonitoringService = a.MonitoringService
	i.Resources = slices.Clone(a.TargetResources)
	i.Subscriptions = slices.Clone(a.Subscriptions)
	i.ResourceGroups = slices.Clone(a.ResourceGroups)
	i.Description = a.Description
	i.FiredAt = a.FiredAt
	i.PortalLink = a.PortalLink
	i.UpdatedAt = at
	i.Fired++
}

// Final reports whether the incident is resolved. A resolved incident can
// still be reopened by its alert firing again.
func (i *Incident) Final() bool { return i.Status == IncidentResolved }

// ApplyAlert applies a later delivery of the incident's alert and returns the
// incident after it; i is never modified. A Fired alert reopens a resolved
// incident; a Resolved alert resolves an open or acknowledged one. Repeats
// (Fired while open, Resolved while resolved) are conflicts the caller
// treats as "nothing to do".
func (i *Incident) ApplyAlert(a *Alert, at time.Time) (*Incident, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	if a.AlertID != i.AlertID {
		return nil, Errorf(EINVALID, "alert %s does not belong to incident %s", a.AlertID, i.ID)
	}
	n := i.clone()
	if a.Resolved() {
		if i.Status == IncidentResolved {
			return nil, Errorf(ECONFLICT, "incident %s is already resolved%s", i.ID, i.resolvedBy())
		}
		when := a.ResolvedAt
		if when.IsZero() {
			when = at
		}
		n.Status = IncidentResolved
		n.ResolvedAt = &when
		n.Resolution = &Decision{Decider: Decider{Username: ViaAzureMonitor}, At: when, Via: ViaAzureMonitor,
			Comment: "the alert condition cleared"}
	} else {
		if i.Status != IncidentResolved {
			return nil, Errorf(ECONFLICT, "incident %s is already %s", i.ID, i.Status)
		}
		n.fire(a, at)
		n.OpenedAt = at
		n.ResolvedAt = nil
		n.Resolution = nil
		n.Acknowledged = nil
	}
	n.UpdatedAt = at
	n.Version++
	return n, nil
}

// Apply is the incident state machine for people: open → acknowledged,
// open | acknowledged → resolved. It returns the incident after t, or an
// error that says why t is not allowed; i is never modified.
func (i *Incident) Apply(t IncidentTransition) (*Incident, error) {
	if t.By.Username == "" && t.By.UserID == "" {
		return nil, Errorf(EFORBIDDEN, "an incident change needs a named user")
	}
	d := &Decision{Decider: t.By, At: t.At, Comment: t.Comment, Via: t.Via}
	n := i.clone()
	switch t.Action {
	case IncidentActAcknowledge:
		switch i.Status {
		case IncidentOpen:
		case IncidentAcknowledged:
			return nil, Errorf(ECONFLICT, "incident %s is already acknowledged%s", i.ID, by(i.Acknowledged))
		default:
			return nil, Errorf(ECONFLICT, "incident %s is already resolved%s", i.ID, i.resolvedBy())
		}
		n.Status = IncidentAcknowledged
		n.Acknowledged = d
	case IncidentActResolve:
		if i.Status == IncidentResolved {
			return nil, Errorf(ECONFLICT, "incident %s is already resolved%s", i.ID, i.resolvedBy())
		}
		at := t.At
		n.Status = IncidentResolved
		n.ResolvedAt = &at
		n.Resolution = d
	default:
		return nil, Errorf(EINVALID, "unknown incident action %q", clip(t.Action, 40))
	}
	n.UpdatedAt = t.At
	n.Version++
	return n, nil
}

func (i *Incident) clone() *Incident {
	n := *i
	n.Resources = slices.Clone(i.Resources)
	n.Subscriptions = slices.Clone(i.Subscriptions)
	n.ResourceGroups = slices.Clone(i.ResourceGroups)
	return &n
}

func (i *Incident) resolvedBy() string { return by(i.Resolution) }

func by(d *Decision) string {
	if d == nil || d.Username == "" {
		return ""
	}
	return " by " + d.Username
}

// clip shortens untrusted text quoted back in error messages.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// IncidentFilter selects incidents for listings.
type IncidentFilter struct {
	Status   string
	Severity string
	Limit    int
}
