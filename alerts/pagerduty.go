package alerts

import (
	"encoding/json"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/ica-governance/ica"
)

// PagerDuty Events API v2 constants.
const (
	// DestinationPagerDuty is the outbox destination PagerDutyDeliverer handles.
	DestinationPagerDuty = "pagerduty"
	// DefaultPagerDutyURL is the Events API v2 endpoint (ICA_PAGERDUTY_URL overrides it).
	DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"
	// PagerDutyClientName is the "client" of every event ICA sends.
	PagerDutyClientName = "ICA"
	// MaxSummaryLen is PagerDuty's limit on payload.summary.
	MaxSummaryLen = 1024
	// RoutingKeyLen is the length of a PagerDuty integration (routing) key.
	RoutingKeyLen = 32
)

// Event actions.
const (
	PDTrigger     = "trigger"
	PDAcknowledge = "acknowledge"
	PDResolve     = "resolve"
)

// PagerDuty severities.
const (
	PDCritical = "critical"
	PDError    = "error"
	PDWarning  = "warning"
	PDInfo     = "info"
)

// PagerDutyLink is a link shown on the PagerDuty alert.
type PagerDutyLink struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

// PagerDutyEvent is the outbox payload of a PagerDuty message: one Events v2
// event, flattened. The routing key is stored with the event because
// acknowledge and resolve must use the trigger's key even if the configured
// key changes in between; it is never printed (see String) nor put in errors.
// An empty RoutingKey means the deliverer's configured key.
type PagerDutyEvent struct {
	RoutingKey string `json:"routing_key,omitempty"`
	Action     string `json:"event_action"`
	// DedupKey is the Azure alertId (ica.PagerDutyDedupKey), so every event
	// about one alert lands on the same PagerDuty alert.
	DedupKey string `json:"dedup_key"`
	// The fields below are the trigger's payload; acknowledge and resolve
	// need none of them.
	Summary       string          `json:"summary,omitempty"`
	Source        string          `json:"source,omitempty"`
	Severity      string          `json:"severity,omitempty"`
	Timestamp     string          `json:"timestamp,omitempty"`
	Component     string          `json:"component,omitempty"`
	Group         string          `json:"group,omitempty"`
	Class         string          `json:"class,omitempty"`
	CustomDetails json.RawMessage `json:"custom_details,omitempty"`
	Links         []PagerDutyLink `json:"links,omitempty"`
	Client        string          `json:"client,omitempty"`
	ClientURL     string          `json:"client_url,omitempty"`
}

// String describes the event without its routing key.
func (e PagerDutyEvent) String() string {
	if e.RoutingKey != "" {
		e.RoutingKey = redacted
	}
	b, _ := json.Marshal(e)
	return string(b)
}

// Validate checks what PagerDuty checks, so a bad event fails when it is
// enqueued instead of when it is delivered. It never quotes the routing key.
func (e *PagerDutyEvent) Validate() error {
	if e.RoutingKey != "" && len(e.RoutingKey) != RoutingKeyLen {
		return ica.FieldErrorf(ica.EINVALID, "routing_key", "the PagerDuty routing key must be %d characters", RoutingKeyLen)
	}
	if e.DedupKey == "" {
		return ica.FieldErrorf(ica.EINVALID, "dedup_key", "dedup_key is required")
	}
	if len(e.DedupKey) > ica.MaxPagerDutyDedupKey {
		return ica.FieldErrorf(ica.EINVALID, "dedup_key", "dedup_key is longer than %d characters", ica.MaxPagerDutyDedupKey)
	}
	switch e.Action {
	case PDAcknowledge, PDResolve:
		return nil
	case PDTrigger:
	default:
		return ica.FieldErrorf(ica.EINVALID, "event_action", "event_action %q is not trigger, acknowledge or resolve", clip(e.Action, 40))
	}
	if strings.TrimSpace(e.Summary) == "" {
		return ica.FieldErrorf(ica.EINVALID, "summary", "a trigger needs a summary")
	}
	if len(e.Summary) > MaxSummaryLen {
		return ica.FieldErrorf(ica.EINVALID, "summary", "summary is longer than %d characters", MaxSummaryLen)
	}
	if strings.TrimSpace(e.Source) == "" {
		return ica.FieldErrorf(ica.EINVALID, "source", "a trigger needs a source")
	}
	switch e.Severity {
	case PDCritical, PDError, PDWarning, PDInfo:
	default:
		return ica.FieldErrorf(ica.EINVALID, "severity", "severity %q is not critical, error, warning or info", clip(e.Severity, 40))
	}
	return nil
}

// PagerDutySeverity maps an Azure severity to PagerDuty's: Sev0 critical,
// Sev1 error, Sev2 warning, Sev3 and Sev4 info (and anything unknown info).
func PagerDutySeverity(sev string) string {
	switch sev {
	case ica.Sev0:
		return PDCritical
	case ica.Sev1:
		return PDError
	case ica.Sev2:
		return PDWarning
	}
	return PDInfo
}

// TriggerEvent builds the trigger for an alert. routingKey may be "" for the
// deliverer's configured key; cardURL (the Mattermost card) may be "".
func TriggerEvent(routingKey string, a *ica.Alert, cardURL string) PagerDutyEvent {
	ev := PagerDutyEvent{
		RoutingKey: routingKey,
		Action:     PDTrigger,
		DedupKey:   ica.PagerDutyDedupKey(a.AlertID),
		Source:     alertSource(a),
		Severity:   PagerDutySeverity(a.Severity),
		Component:  alertComponent(a),
		Class:      firstNonEmpty(a.MonitoringService, a.SignalType),
		Client:     PagerDutyClientName,
		ClientURL:  firstNonEmpty(cardURL, a.PortalLink),
	}
	if len(a.ResourceGroups) > 0 {
		ev.Group = a.ResourceGroups[0]
	} else if len(a.Subscriptions) > 0 {
		ev.Group = a.Subscriptions[0]
	}
	if !a.FiredAt.IsZero() {
		ev.Timestamp = a.FiredAt.Format("2006-01-02T15:04:05.000Z07:00")
	}
	ev.Summary = Summary(a, ev.Component)
	if json.Valid(a.Essentials) && strings.HasPrefix(strings.TrimSpace(string(a.Essentials)), "{") {
		ev.CustomDetails = append(json.RawMessage(nil), a.Essentials...)
	}
	if a.PortalLink != "" {
		ev.Links = append(ev.Links, PagerDutyLink{Href: a.PortalLink, Text: "Alert in the Azure portal"})
	}
	if cardURL != "" {
		ev.Links = append(ev.Links, PagerDutyLink{Href: cardURL, Text: "Incident card in Mattermost"})
	}
	return ev
}

// AcknowledgeEvent builds an acknowledge for the alert with dedupKey.
func AcknowledgeEvent(routingKey, dedupKey string) PagerDutyEvent {
	return PagerDutyEvent{RoutingKey: routingKey, Action: PDAcknowledge, DedupKey: dedupKey, Client: PagerDutyClientName}
}

// ResolveEvent builds a resolve for the alert with dedupKey.
func ResolveEvent(routingKey, dedupKey string) PagerDutyEvent {
	return PagerDutyEvent{RoutingKey: routingKey, Action: PDResolve, DedupKey: dedupKey, Client: PagerDutyClientName}
}

// Summary is the one-line text on-call reads: "[Sev1] rule on component:
// description", cut to PagerDuty's 1024 characters.
func Summary(a *ica.Alert, component string) string {
	var b strings.Builder
	b.WriteString("[" + a.Severity + "] ")
	b.WriteString(firstNonEmpty(a.Rule, a.MonitoringService, "Azure Monitor alert"))
	if component != "" && !strings.EqualFold(component, a.Rule) {
		b.WriteString(" on " + component)
	}
	if d := strings.Join(strings.Fields(a.Description), " "); d != "" {
		b.WriteString(": " + d)
	}
	return truncate(b.String(), MaxSummaryLen)
}

// truncate cuts s to at most n bytes on a rune boundary, ending in "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := n - len(ell)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

func alertSource(a *ica.Alert) string {
	if len(a.TargetResources) > 0 {
		return a.TargetResources[0]
	}
	return firstNonEmpty(first(a.ConfigurationItems), first(a.Subscriptions), a.MonitoringService, "azure-monitor")
}

func alertComponent(a *ica.Alert) string {
	if len(a.TargetResources) > 0 {
		if name := path.Base(strings.TrimRight(a.TargetResources[0], "/")); name != "." && name != "/" {
			return name
		}
	}
	return first(a.ConfigurationItems)
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// NewEventMessage builds the outbox message for ev: Destination "pagerduty",
// Kind "pagerduty.<action>", Key dedup_key:action:suffix and OrderKey
// "pd:"+dedup_key, so trigger, acknowledge and resolve for one alert are
// delivered in the order they were enqueued. suffix (at most one) tells
// repeated cycles apart, e.g. the incident's Version: without it a trigger
// after a reopen would be dropped as a duplicate of the first trigger.
// A summary longer than PagerDuty allows is cut, not refused.
func NewEventMessage(ev PagerDutyEvent, suffix ...string) (*ica.OutboxMessage, error) {
	if len(suffix) > 1 {
		return nil, ica.Errorf(ica.EINVALID, "NewEventMessage takes at most one key suffix")
	}
	ev.Summary = truncate(ev.Summary, MaxSummaryLen)
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return nil, &ica.Error{Code: ica.EINTERNAL, Message: "encode PagerDuty event", Cause: err}
	}
	key := ev.DedupKey + ":" + ev.Action
	if len(suffix) == 1 && suffix[0] != "" {
		key += ":" + suffix[0]
	}
	return &ica.OutboxMessage{
		Destination: DestinationPagerDuty,
		Kind:        DestinationPagerDuty + "." + ev.Action,
		Key:         key,
		OrderKey:    "pd:" + ev.DedupKey,
		Payload:     payload,
	}, nil
}
