package store

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/ica-governance/ica"
)

// Incident buckets.
var (
	bucketIncidents       = []byte("incidents")
	bucketIncidentOpen    = []byte("idx_incident_open") // id → nil, for incidents not resolved
	bucketIncidentByPost  = []byte("idx_incident_post") // card post id → incident id
	bucketIncidentFreezes = []byte("incident_freeze_overrides")
)

// Ledger kinds of incidents (ica.KindIncident + …).
const (
	KindIncidentOpened         = ica.KindIncident + "opened"
	KindIncidentReopened       = ica.KindIncident + "reopened"
	KindIncidentAcknowledged   = ica.KindIncident + ica.IncidentAcknowledged
	KindIncidentResolved       = ica.KindIncident + ica.IncidentResolved
	KindIncidentAlertDropped   = ica.KindIncident + "alert_dropped"
	KindIncidentAlertUnmatched = ica.KindIncident + "alert_unmatched"
	KindIncidentFreezeOverride = ica.KindIncident + "freeze_override"
	KindIncidentCard           = ica.KindIncident + "card_posted"
)

// Outcomes of RecordAlert.
const (
	AlertOpened    = "opened"    // a new incident
	AlertReopened  = "reopened"  // a resolved incident fired again
	AlertResolved  = "resolved"  // Azure says the condition cleared
	AlertDuplicate = "duplicate" // a repeated delivery: nothing changed
	AlertDropped   = "dropped"   // routing drops it: recorded, nothing else
	AlertUnmatched = "unmatched" // Resolved for an alert ICA never saw fire: recorded
)

// Causes of an IncidentChange besides the outcomes above.
const (
	CauseAcknowledged   = ica.IncidentActAcknowledge // a person acknowledged
	CauseResolvedByUser = ica.IncidentActResolve     // a person resolved
	CauseFreezeOverride = "freeze_override"          // an incident commander lifted the freeze
)

// AlertRoute is what routing decided for an alert (cmd/ica adapts the
// alerts package's routing to it).
type AlertRoute struct {
	// Page sends the alert to PagerDuty (when PagerDuty is configured).
	Page bool `json:"page"`
	// Drop records the alert in the ledger and nothing else.
	Drop bool `json:"drop,omitempty"`
	// Channel is the Mattermost channel for the card ("" for the default).
	Channel string `json:"channel,omitempty"`
	// Quiet posts the card without notifying the channel.
	Quiet bool `json:"quiet,omitempty"`
}

// IncidentChange is one change of an incident, handed to the
// IncidentNotifier inside the transaction that makes it.
type IncidentChange struct {
	Cause string
	// Prev is nil for a new incident; for a freeze override Prev and Next
	// are the same incident.
	Prev, Next *ica.Incident
	// Alert is the delivery that caused the change (nil for people).
	Alert *ica.Alert
	// Route is the alert's route (zero for people).
	Route AlertRoute
	// PrevOverridden and Overridden say whether an incident commander had
	// lifted the incident's freeze before and after the change.
	PrevOverridden, Overridden bool
}

// IncidentNotifier turns incident changes into outbox messages (PagerDuty
// events, Mattermost cards, refreshed approval cards). It runs inside the
// store's transaction and must do no I/O; tx reads the state as of the
// change.
type IncidentNotifier interface {
	IncidentMessages(tx ReadTx, c *IncidentChange) ([]*ica.OutboxMessage, error)
}

// IncidentNotifierFunc adapts a function to IncidentNotifier.
type IncidentNotifierFunc func(tx ReadTx, c *IncidentChange) ([]*ica.OutboxMessage, error)

// IncidentMessages calls f.
func (f IncidentNotifierFunc) IncidentMessages(tx ReadTx, c *IncidentChange) ([]*ica.OutboxMessage, error) {
	return f(tx, c)
}

// IncidentNotifiers calls each notifier in turn and concatenates their messages.
type IncidentNotifiers []IncidentNotifier

// IncidentMessages implements IncidentNotifier.
func (ns IncidentNotifiers) IncidentMessages(tx ReadTx, c *IncidentChange) ([]*ica.OutboxMessage, error) {
	var out []*ica.OutboxMessage
	for _, n := range ns {
		if n == nil {
			continue
		}
		m, err := n.IncidentMessages(tx, c)
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

// IncidentReadTx is the ReadTx the store hands to gates and notifiers; it
// also lists open incidents (the freeze gate asserts to it).
type IncidentReadTx interface {
	ReadTx
	OpenIncidents(fn func(inc *ica.Incident, overridden bool) error) error
}

var _ IncidentReadTx = readTx{}

// OpenIncidents calls fn for every incident that is not resolved, with
// whether its freeze was overridden.
func (r readTx) OpenIncidents(fn func(inc *ica.Incident, overridden bool) error) error {
	return forOpenIncidents(r.tx, fn)
}

// freezeOverride is the stored override of one incident's freeze. Fired
// ties it to one firing: a reopened incident freezes again.
type freezeOverride struct {
	ica.Decision
	Fired int `json:"fired"`
}

func getIncident(tx Tx, id string) (*ica.Incident, error) {
	return getJSON[ica.Incident](tx.Bucket(bucketIncidents), []byte(id))
}

func mustIncident(tx Tx, id string) (*ica.Incident, error) {
	inc, err := getIncident(tx, id)
	if err != nil {
		return nil, err
	}
	if inc == nil {
		return nil, ica.Errorf(ica.ENOTFOUND, "incident %s not found", id)
	}
	return inc, nil
}

// putIncident stores inc and keeps the open index and the card index.
func putIncident(tx Tx, prev, inc *ica.Incident) error {
	open := tx.Bucket(bucketIncidentOpen)
	if inc.Final() {
		if err := open.Delete([]byte(inc.ID)); err != nil {
			return err
		}
	} else if err := open.Put([]byte(inc.ID), nil); err != nil {
		return err
	}
	if inc.Card.PostID != "" && (prev == nil || prev.Card.PostID != inc.Card.PostID) {
		if err := tx.Bucket(bucketIncidentByPost).Put([]byte(inc.Card.PostID), []byte(inc.ID)); err != nil {
			return err
		}
	}
	return putJSON(tx.Bucket(bucketIncidents), []byte(inc.ID), inc)
}

func getOverride(tx Tx, inc *ica.Incident) (*freezeOverride, error) {
	o, err := getJSON[freezeOverride](tx.Bucket(bucketIncidentFreezes), []byte(inc.ID))
	if err != nil || o == nil || o.Fired != inc.Fired {
		return nil, err
	}
	return o, nil
}

func forOpenIncidents(tx Tx, fn func(inc *ica.Incident, overridden bool) error) error {
	c := tx.Bucket(bucketIncidentOpen).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		inc, err := mustIncident(tx, string(k))
		if err != nil {
			return err
		}
		o, err := getOverride(tx, inc)
		if err != nil {
			return err
		}
		if err := fn(inc, o != nil); err != nil {
			return err
		}
	}
	return nil
}

// staleFire reports whether a Fired delivery repeats the firing the
// incident already knows (Azure retried it, possibly after the Resolved
// arrived) rather than a new firing of a reused alert id.
func staleFire(inc *ica.Incident, a *ica.Alert) bool {
	return !a.Resolved() && !a.FiredAt.After(inc.FiredAt)
}

// alertData is the ledger data of an alert delivery: what ICA understood,
// and the body exactly as Azure sent it.
func alertData(inc *ica.Incident, a *ica.Alert, raw []byte, from string, route AlertRoute) map[string]any {
	d := map[string]any{
		"alert_id": a.AlertID, "monitor_condition": a.MonitorCondition, "severity": a.Severity,
		"schema": a.Schema, "rule": a.Rule, "fired_at": a.FiredAt, "route": route,
	}
	if !a.ResolvedAt.IsZero() {
		d["resolved_at"] = a.ResolvedAt
	}
	if inc != nil {
		d["incident_id"] = inc.ID
		d["to"] = inc.Status
		d["paged"] = inc.Paged
		d["version"] = inc.Version
	}
	if from != "" {
		d["from"] = from
	}
	if len(raw) > 0 && json.Valid(raw) {
		d["payload"] = json.RawMessage(raw)
	}
	// The alert as ICA understood it, so the incident is derivable from the
	// entry (ica check) without parsing the payload again. Essentials is in
	// the payload already.
	na := *a
	na.Essentials = nil
	d["alert"] = &na
	return d
}

// RecordAlert applies one Azure Monitor delivery: it opens the alert's
// incident (one per alert id), resolves it, reopens it, or recognises a
// repeat (same alert id and monitor condition while nothing changed), in one
// transaction with the ledger entry (which keeps raw, the body as received)
// and the outbox messages the change causes. A repeat writes nothing.
func (s *Store) RecordAlert(ctx context.Context, a *ica.Alert, raw []byte, actor string) (inc *ica.Incident, outcome string, err error) {
	if err := a.Validate(); err != nil {
		return nil, "", err
	}
	id := ica.IncidentIDFor(a.AlertID)
	route := AlertRoute{}
	if s.opt.RouteAlert != nil {
		route = s.opt.RouteAlert(a)
	}
	err = s.update(func(tx Tx, st *txState) error {
		inc, outcome = nil, ""
		prev, err := getIncident(tx, id)
		if err != nil {
			return err
		}
		if prev == nil && (route.Drop || a.Resolved()) {
			kind, out := KindIncidentAlertDropped, AlertDropped
			if !route.Drop {
				// Nothing to resolve (ICA was not set up when it fired, or the
				// Fired delivery never arrived): keep the fact, change nothing.
				kind, out = KindIncidentAlertUnmatched, AlertUnmatched
			}
			if _, err := s.appendLedger(tx, st.now, kind, id, actor, alertData(nil, a, raw, "", route)); err != nil {
				return err
			}
			outcome = out
			return nil
		}
		var next *ica.Incident
		var prevOverridden bool
		cause, from := AlertOpened, ""
		if prev == nil {
			if next, err = ica.NewIncident(id, a, st.now); err != nil {
				return err
			}
			next.Paged = route.Page
		} else {
			from = prev.Status
			o, err := getOverride(tx, prev)
			if err != nil {
				return err
			}
			prevOverridden = o != nil
			if staleFire(prev, a) {
				inc, outcome = prev, AlertDuplicate
				return nil
			}
			next, err = prev.ApplyAlert(a, st.now)
			if ica.ErrorCode(err) == ica.ECONFLICT {
				inc, outcome = prev, AlertDuplicate
				return nil
			} else if err != nil {
				return err
			}
			if a.Resolved() {
				cause = AlertResolved
			} else {
				cause = AlertReopened
				next.Paged = route.Page
			}
		}
		kind := map[string]string{AlertOpened: KindIncidentOpened, AlertReopened: KindIncidentReopened, AlertResolved: KindIncidentResolved}[cause]
		e, err := s.appendLedger(tx, st.now, kind, id, actor, alertData(next, a, raw, from, route))
		if err != nil {
			return err
		}
		next.LastSeq = e.Seq
		if err := putIncident(tx, prev, next); err != nil {
			return err
		}
		overridden := prevOverridden
		if cause == AlertReopened {
			overridden = false // a new firing freezes again
		}
		if err := s.notifyIncident(tx, st, &IncidentChange{Cause: cause, Prev: prev, Next: next, Alert: a, Route: route,
			PrevOverridden: prevOverridden, Overridden: overridden}); err != nil {
			return err
		}
		inc, outcome = next, cause
		return nil
	})
	return inc, outcome, err
}

func (s *Store) notifyIncident(tx Tx, st *txState, c *IncidentChange) error {
	if s.opt.Incidents == nil {
		return nil
	}
	msgs, err := s.opt.Incidents.IncidentMessages(readTx{tx}, c)
	if err != nil {
		return err
	}
	return s.enqueue(tx, st, msgs)
}

// IncidentTransition applies a person's change (acknowledge, resolve) to an
// incident, with its ledger entry and the messages it causes (PagerDuty,
// card). check, when not nil, runs inside the transaction on the incident
// as it is then, so of two racing clicks exactly one is applied.
func (s *Store) IncidentTransition(ctx context.Context, id string, t ica.IncidentTransition, actor string, check func(inc *ica.Incident) error) (*ica.Incident, error) {
	if err := ica.ValidID("incident_id", id); err != nil {
		return nil, err
	}
	var out *ica.Incident
	err := s.update(func(tx Tx, st *txState) error {
		out = nil
		prev, err := mustIncident(tx, id)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(prev); err != nil {
				return err
			}
		}
		if t.At.IsZero() {
			t.At = st.now
		}
		next, err := prev.Apply(t)
		if err != nil {
			return err
		}
		data := map[string]any{"incident_id": id, "alert_id": prev.AlertID, "action": t.Action, "from": prev.Status,
			"to": next.Status, "by": t.By, "comment": t.Comment, "via": t.Via, "paged": next.Paged, "version": next.Version, "at": t.At}
		e, err := s.appendLedger(tx, st.now, ica.KindIncident+next.Status, id, actor, data)
		if err != nil {
			return err
		}
		next.LastSeq = e.Seq
		if err := putIncident(tx, prev, next); err != nil {
			return err
		}
		o, err := getOverride(tx, prev)
		if err != nil {
			return err
		}
		if err := s.notifyIncident(tx, st, &IncidentChange{Cause: t.Action, Prev: prev, Next: next,
			PrevOverridden: o != nil, Overridden: o != nil}); err != nil {
			return err
		}
		out = next
		return nil
	})
	return out, err
}

// OverrideFreeze lifts the deployment freeze of one unresolved incident: an
// incident commander's decision with a reason, recorded in the ledger. It
// holds until the incident resolves; if the alert fires again, the freeze
// is back.
func (s *Store) OverrideFreeze(ctx context.Context, id string, d ica.Decision, actor string) (*ica.Incident, error) {
	if err := ica.ValidID("incident_id", id); err != nil {
		return nil, err
	}
	d.Comment = strings.TrimSpace(d.Comment)
	if d.Comment == "" {
		return nil, ica.FieldErrorf(ica.EINVALID, "reason", "a freeze override needs a reason")
	}
	if len(d.Comment) > 2000 {
		return nil, ica.FieldErrorf(ica.EINVALID, "reason", "reason is longer than 2000 bytes")
	}
	if d.Username == "" && d.UserID == "" {
		return nil, ica.Errorf(ica.EFORBIDDEN, "a freeze override needs a named person")
	}
	var out *ica.Incident
	err := s.update(func(tx Tx, st *txState) error {
		out = nil
		inc, err := mustIncident(tx, id)
		if err != nil {
			return err
		}
		if inc.Final() {
			return ica.Errorf(ica.ECONFLICT, "incident %s is resolved: it freezes nothing", id)
		}
		if o, err := getOverride(tx, inc); err != nil {
			return err
		} else if o != nil {
			return ica.Errorf(ica.ECONFLICT, "the freeze of incident %s was already overridden by %s", id, o.Username)
		}
		dd := d
		if dd.At.IsZero() {
			dd.At = st.now
		}
		if err := putJSON(tx.Bucket(bucketIncidentFreezes), []byte(id), &freezeOverride{Decision: dd, Fired: inc.Fired}); err != nil {
			return err
		}
		data := map[string]any{"incident_id": id, "alert_id": inc.AlertID, "severity": inc.Severity, "status": inc.Status,
			"by": dd.Decider, "reason": dd.Comment, "via": dd.Via, "resource_groups": inc.ResourceGroups, "subscriptions": inc.Subscriptions,
			"at": dd.At, "fired": inc.Fired}
		if _, err := s.appendLedger(tx, st.now, KindIncidentFreezeOverride, id, actor, data); err != nil {
			return err
		}
		if err := s.notifyIncident(tx, st, &IncidentChange{Cause: CauseFreezeOverride, Prev: inc, Next: inc,
			PrevOverridden: false, Overridden: true}); err != nil {
			return err
		}
		out = inc
		return nil
	})
	return out, err
}

// IncidentOverride returns the freeze override of an incident's current
// firing, or nil.
func (s *Store) IncidentOverride(ctx context.Context, id string) (*ica.Decision, error) {
	var out *ica.Decision
	err := s.view(func(tx Tx) error {
		inc, err := mustIncident(tx, id)
		if err != nil {
			return err
		}
		o, err := getOverride(tx, inc)
		if o != nil {
			out = &o.Decision
		}
		return err
	})
	return out, err
}

// UpdateIncident changes fields of an incident that are not part of its
// state machine (the card reference) and records why in the ledger. fn
// returns the ledger kind and data ("" records nothing) and messages.
func (s *Store) UpdateIncident(ctx context.Context, id, actor string, fn func(inc *ica.Incident) (kind string, data any, msgs []*ica.OutboxMessage, err error)) (*ica.Incident, error) {
	var out *ica.Incident
	err := s.update(func(tx Tx, st *txState) error {
		out = nil
		prev, err := mustIncident(tx, id)
		if err != nil {
			return err
		}
		inc := *prev
		kind, data, msgs, err := fn(&inc)
		if err != nil {
			return err
		}
		if inc.ID != prev.ID || inc.Status != prev.Status || inc.Version != prev.Version {
			return ica.Errorf(ica.EINTERNAL, "UpdateIncident may not change the incident's state")
		}
		if kind == "" {
			if !sameJSON(prev, &inc) {
				return ica.Errorf(ica.EINTERNAL, "incident %s: a change without a ledger entry", id)
			}
			out = &inc
			return s.enqueue(tx, st, msgs)
		}
		e, err := s.appendLedger(tx, st.now, kind, id, actor, data)
		if err != nil {
			return err
		}
		inc.LastSeq = e.Seq
		// Every change must be what ica check derives from the entry.
		if d, err := applyIncidentEntry(prev, e); err != nil || !sameJSON(d, &inc) {
			return ica.Errorf(ica.EINTERNAL, "incident %s: the change is not derivable from its %s entry (%v)", id, kind, err)
		}
		if err := putIncident(tx, prev, &inc); err != nil {
			return err
		}
		if err := s.enqueue(tx, st, msgs); err != nil {
			return err
		}
		out = &inc
		return nil
	})
	return out, err
}

// Incident returns one incident.
func (s *Store) Incident(ctx context.Context, id string) (*ica.Incident, error) {
	if err := ica.ValidID("incident_id", id); err != nil {
		return nil, err
	}
	var inc *ica.Incident
	err := s.view(func(tx Tx) error {
		var err error
		inc, err = mustIncident(tx, id)
		return err
	})
	return inc, err
}

// IncidentByPost returns the incident whose card is the given post.
func (s *Store) IncidentByPost(ctx context.Context, postID string) (*ica.Incident, error) {
	var inc *ica.Incident
	err := s.view(func(tx Tx) error {
		id := tx.Bucket(bucketIncidentByPost).Get([]byte(postID))
		if id == nil {
			return ica.Errorf(ica.ENOTFOUND, "no incident card with post id %s", postID)
		}
		var err error
		inc, err = mustIncident(tx, string(id))
		return err
	})
	return inc, err
}

// Maximum and default page sizes of Incidents.
const (
	DefaultIncidentLimit = 100
	MaxIncidentLimit     = 500
)

// Incidents lists incidents, most recently opened first, filtered by status
// and severity.
func (s *Store) Incidents(ctx context.Context, f ica.IncidentFilter) ([]*ica.Incident, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultIncidentLimit
	}
	limit = min(limit, MaxIncidentLimit)
	var out []*ica.Incident
	err := s.view(func(tx Tx) error {
		b := tx.Bucket(bucketIncidents)
		if f.Status != "" && f.Status != ica.IncidentResolved {
			// Only unresolved incidents can match: walk the open index.
			return forOpenIncidents(tx, func(inc *ica.Incident, _ bool) error {
				if incidentMatches(inc, f) {
					out = append(out, inc)
				}
				return nil
			})
		}
		return b.ForEach(func(k, v []byte) error {
			var inc ica.Incident
			if err := json.Unmarshal(v, &inc); err != nil {
				return err
			}
			if incidentMatches(&inc, f) {
				out = append(out, &inc)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b *ica.Incident) int {
		if c := b.OpenedAt.Compare(a.OpenedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, err
}

func incidentMatches(inc *ica.Incident, f ica.IncidentFilter) bool {
	return (f.Status == "" || inc.Status == f.Status) && (f.Severity == "" || inc.Severity == f.Severity)
}

// OpenIncidents calls fn for every unresolved incident, in a read
// transaction of its own.
func (s *Store) OpenIncidents(fn func(inc *ica.Incident, overridden bool) error) error {
	return s.view(func(tx Tx) error { return forOpenIncidents(tx, fn) })
}

// ViewIncidents runs fn with a read-only view of the state (for policies
// that read incidents and approvals together, such as freeze warnings).
func (s *Store) ViewIncidents(fn func(tx IncidentReadTx) error) error {
	return s.view(func(tx Tx) error { return fn(readTx{tx}) })
}
