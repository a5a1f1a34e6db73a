package store

// Replay: the current-state records (runs, approvals, incidents and their
// freeze overrides, costs, pipeline checks) are what their ledger entries
// derive. The functions here are that derivation, one per kind of record;
// ica check applies them to the whole chain, and the generic write paths
// (UpdateApproval, UpdateIncident) apply them to their own entry before
// storing, so no change is ever stored that a replay would not make.
//
// Entries written before a field was recorded are derived leniently: an
// approval transition without "at" was decided at its entry's time; an
// alert entry without "alert" yields only the incident's status, severity,
// version and paging; a cost.synced change without "entry" only its amount;
// a check_linked entry without project_id/hub_name/timeline_id only what
// it names. The report says how many records were compared that way.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Ledger kinds the replay knows besides those of package ica.
const (
	KindApprovalCheckLinked = "approval.check_linked"
	KindCostCorrected       = "cost.corrected"
	KindCostSynced          = "cost.synced"
	// KindRollbackAccepted records that ica serve started on a ledger behind
	// its newest witnessed checkpoint because an operator said why.
	KindRollbackAccepted = "ledger.rollback_accepted"
)

// sameJSON reports whether two records encode alike.
func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func checkLinkedData(approvalID string, cb *ica.CheckCallback) map[string]any {
	return map[string]any{"approval_id": approvalID, "plan_id": cb.PlanID, "job_id": cb.JobID,
		"task_instance_id": cb.TaskInstanceID, "plan_url": cb.PlanURL,
		"project_id": cb.ProjectID, "hub_name": cb.HubName, "timeline_id": cb.TimelineID}
}

// --- runs ---

// runFromStart derives a run from its run.started entry.
func runFromStart(e *ica.LedgerEntry) (*ica.Run, error) {
	var r ica.Run
	if err := json.Unmarshal(e.Data, &r); err != nil {
		return nil, fmt.Errorf("entry %d: run.started data: %w", e.Seq, err)
	}
	if r.RunID != e.Subject {
		return nil, fmt.Errorf("entry %d: run.started of %s names run %s", e.Seq, e.Subject, r.RunID)
	}
	r.StartSeq, r.LastSeq, r.EventCount = e.Seq, e.Seq, 0
	return &r, nil
}

type runFinishedData struct {
	Status     string    `json:"status"`
	EndTime    time.Time `json:"end_time"`
	EventCount int       `json:"event_count"`
}

// applyRunFinish derives a finished run.
func applyRunFinish(r *ica.Run, e *ica.LedgerEntry) (*ica.Run, int, error) {
	var d runFinishedData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, 0, fmt.Errorf("entry %d: run.finished data: %w", e.Seq, err)
	}
	n := *r
	end := d.EndTime
	n.Status, n.EndTime, n.EventCount, n.AuditHash, n.LastSeq = d.Status, &end, d.EventCount, e.Hash, e.Seq
	return &n, d.EventCount, nil
}

// --- approvals ---

type approvalTransitionData struct {
	Action  string      `json:"action"`
	From    string      `json:"from"`
	To      string      `json:"to"`
	By      ica.Decider `json:"by"`
	Comment string      `json:"comment"`
	Via     string      `json:"via"`
	At      *time.Time  `json:"at"`
	// Under a deployment policy: the counts it asked for when they
	// changed, a deferral, a finance approver, the policy in force, the
	// run that superseded the approval.
	Requires     *[2]int    `json:"requires"`
	NotBefore    *time.Time `json:"not_before"`
	Finance      bool       `json:"finance"`
	PolicyHash   string     `json:"policy_hash"`
	SupersededBy string     `json:"superseded_by"`
}

type approvalUseData struct {
	Commit         string `json:"commit"`
	ArtifactDigest string `json:"artifact_digest"`
	Lock           string `json:"lock"`
	PolicyHash     string `json:"policy_hash"`
}

type cardData struct {
	PostID    string `json:"post_id"`
	ChannelID string `json:"channel_id"`
}

// isApprovalKind reports whether an entry of kind changes an approval record.
func isApprovalKind(kind string) bool {
	switch kind {
	case KindApprovalCheckLinked, KindCheckCompleted, KindApprovalRefused:
		return false // a pipeline check's record; a refusal, of a run
	}
	return strings.HasPrefix(kind, ica.KindApprovalTransition)
}

// applyApprovalEntry derives the approval after e from prev (nil for its
// request).
func applyApprovalEntry(prev *ica.Approval, e *ica.LedgerEntry) (*ica.Approval, error) {
	switch e.Kind {
	case ica.KindApprovalRequested:
		var a ica.Approval
		if err := json.Unmarshal(e.Data, &a); err != nil {
			return nil, fmt.Errorf("entry %d: approval data: %w", e.Seq, err)
		}
		if a.ID != e.Subject {
			return nil, fmt.Errorf("entry %d: the request of %s names approval %s", e.Seq, e.Subject, a.ID)
		}
		a.LastSeq, a.DecisionSeq, a.DecisionHash = e.Seq, e.Seq, e.Hash
		return &a, nil
	case ica.KindApprovalCard:
		if prev == nil {
			return nil, errNoRecord
		}
		var d cardData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return nil, fmt.Errorf("entry %d: card data: %w", e.Seq, err)
		}
		n := *prev
		n.Card = ica.CardRef{ChannelID: d.ChannelID, PostID: d.PostID}
		n.LastSeq = e.Seq
		return &n, nil
	case ica.KindApprovalReminder:
		if prev == nil {
			return nil, errNoRecord
		}
		n := *prev
		n.ReminderSent, n.LastSeq = true, e.Seq
		return &n, nil
	case KindApprovalUsed:
		if prev == nil {
			return nil, errNoRecord
		}
		if prev.Use != nil {
			return nil, fmt.Errorf("entry %d: approval %s is used again (it was used at %s)", e.Seq, prev.ID, prev.Use.At.Format(time.RFC3339))
		}
		var d approvalUseData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return nil, fmt.Errorf("entry %d: use data: %w", e.Seq, err)
		}
		n := *prev
		n.Use = &ica.ApprovalUse{RunID: prev.RunID, Commit: d.Commit, ArtifactDigest: d.ArtifactDigest, At: e.Time,
			Actor: e.Actor, Lock: d.Lock, PolicyHash: d.PolicyHash}
		n.PolicyHashes = append([]string(nil), prev.PolicyHashes...)
		n.AddPolicyHash(d.PolicyHash)
		n.UpdatedAt, n.LastSeq = e.Time, e.Seq
		n.Version++
		return &n, nil
	}
	if !isApprovalKind(e.Kind) {
		return nil, fmt.Errorf("entry %d: kind %s is not an approval change the replay knows", e.Seq, e.Kind)
	}
	if prev == nil {
		return nil, errNoRecord
	}
	var d approvalTransitionData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, fmt.Errorf("entry %d: transition data: %w", e.Seq, err)
	}
	at := e.Time
	if d.At != nil {
		at = *d.At
	}
	in := *prev
	if d.Requires != nil {
		in.TechnicalRequired, in.BusinessRequired = d.Requires[0], d.Requires[1]
	}
	t := ica.Transition{Action: d.Action, By: d.By, Comment: d.Comment, Via: d.Via, At: at, Finance: d.Finance}
	if d.NotBefore != nil {
		t.NotBefore = *d.NotBefore
	}
	n, err := in.Apply(t)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %s does not apply to approval %s (%s): %s", e.Seq, d.Action, prev.ID, prev.Status, ica.ErrorMessage(err))
	}
	kind := ica.KindApprovalTransition + n.Status
	if n.Status == prev.Status {
		kind = ica.KindApprovalTransition + "vote"
	}
	if e.Kind != kind || d.To != n.Status {
		return nil, fmt.Errorf("entry %d: %s of approval %s leads to %s, but the entry says %s", e.Seq, d.Action, prev.ID, n.Status, d.To)
	}
	n.PolicyHashes = append([]string(nil), prev.PolicyHashes...)
	n.AddPolicyHash(d.PolicyHash)
	if d.SupersededBy != "" {
		n.SupersededBy = d.SupersededBy
	}
	n.LastSeq, n.DecisionSeq, n.DecisionHash = e.Seq, e.Seq, e.Hash
	return n, nil
}

// errNoRecord: an entry changes a record the replay has not derived.
var errNoRecord = fmt.Errorf("no such record")

// --- incidents ---

type incidentEntryData struct {
	IncidentID string      `json:"incident_id"`
	Alert      *ica.Alert  `json:"alert"`
	Cond       string      `json:"monitor_condition"`
	Action     string      `json:"action"`
	To         string      `json:"to"`
	Paged      bool        `json:"paged"`
	Version    int         `json:"version"`
	Severity   string      `json:"severity"`
	Rule       string      `json:"rule"`
	FiredAt    time.Time   `json:"fired_at"`
	By         ica.Decider `json:"by"`
	Comment    string      `json:"comment"`
	Via        string      `json:"via"`
	At         *time.Time  `json:"at"`
	// freeze overrides
	Reason string `json:"reason"`
	Fired  *int   `json:"fired"`
}

// partialIncidentFields are what an alert entry written before "alert" was
// recorded derives.
var partialIncidentFields = []string{"incident_id", "alert_id", "status", "severity", "version", "paged"}

// isIncidentChange reports whether an entry of kind changes an incident record.
func isIncidentChange(kind string) bool {
	switch kind {
	case KindIncidentOpened, KindIncidentReopened, KindIncidentAcknowledged, KindIncidentResolved, KindIncidentCard:
		return true
	}
	return false
}

// applyIncidentEntry derives the incident after e from prev (nil when it
// opens). partial reports a derivation from an entry that lacks the alert.
func applyIncidentEntry(prev *ica.Incident, e *ica.LedgerEntry) (*ica.Incident, error) {
	n, _, err := applyIncidentEntryPartial(prev, e)
	return n, err
}

func applyIncidentEntryPartial(prev *ica.Incident, e *ica.LedgerEntry) (*ica.Incident, bool, error) {
	if e.Kind == KindIncidentCard {
		if prev == nil {
			return nil, false, errNoRecord
		}
		var d cardData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return nil, false, fmt.Errorf("entry %d: card data: %w", e.Seq, err)
		}
		n := *prev
		n.Card = ica.CardRef{ChannelID: d.ChannelID, PostID: d.PostID}
		n.LastSeq = e.Seq
		return &n, false, nil
	}
	var d incidentEntryData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, false, fmt.Errorf("entry %d: incident data: %w", e.Seq, err)
	}
	var n *ica.Incident
	partial := false
	var err error
	switch {
	case e.Kind == KindIncidentOpened && d.Alert != nil:
		if n, err = ica.NewIncident(e.Subject, d.Alert, e.Time); err != nil {
			return nil, false, fmt.Errorf("entry %d: %s", e.Seq, ica.ErrorMessage(err))
		}
		n.Paged = d.Paged
	case e.Kind == KindIncidentOpened:
		n = &ica.Incident{ID: e.Subject, Status: d.To, Severity: d.Severity, Rule: d.Rule, FiredAt: d.FiredAt, OpenedAt: e.Time,
			UpdatedAt: e.Time, Paged: d.Paged, Version: d.Version, Fired: 1}
		partial = true
	case prev == nil:
		return nil, false, errNoRecord
	case d.Cond != "" && d.Alert != nil: // reopened or resolved by the alert
		if n, err = prev.ApplyAlert(d.Alert, e.Time); err != nil {
			return nil, false, fmt.Errorf("entry %d: the alert does not apply to incident %s (%s): %s", e.Seq, prev.ID, prev.Status, ica.ErrorMessage(err))
		}
		if e.Kind == KindIncidentReopened {
			n.Paged = d.Paged
		}
	case d.Cond != "":
		c := *prev
		n = &c
		n.Status, n.Severity, n.Version, n.Paged, n.UpdatedAt = d.To, d.Severity, d.Version, d.Paged, e.Time
		partial = true
	default: // a person's transition
		at := e.Time
		if d.At != nil {
			at = *d.At
		}
		if n, err = prev.Apply(ica.IncidentTransition{Action: d.Action, By: d.By, Comment: d.Comment, Via: d.Via, At: at}); err != nil {
			return nil, false, fmt.Errorf("entry %d: %s does not apply to incident %s (%s): %s", e.Seq, d.Action, prev.ID, prev.Status, ica.ErrorMessage(err))
		}
	}
	if n.Status != d.To || n.Version != d.Version {
		return nil, partial, fmt.Errorf("entry %d: incident %s derives as %s version %d, but the entry says %s version %d", e.Seq, e.Subject, n.Status, n.Version, d.To, d.Version)
	}
	n.LastSeq = e.Seq
	return n, partial, nil
}

// overrideFromEntry derives the freeze override an incident.freeze_override
// entry records; inc is the incident as it was then (for old entries that
// do not name its firing).
func overrideFromEntry(e *ica.LedgerEntry, inc *ica.Incident) (*freezeOverride, error) {
	var d incidentEntryData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, fmt.Errorf("entry %d: freeze override data: %w", e.Seq, err)
	}
	at := e.Time
	if d.At != nil {
		at = *d.At
	}
	o := &freezeOverride{Decision: ica.Decision{Decider: d.By, At: at, Comment: d.Reason, Via: d.Via}}
	switch {
	case d.Fired != nil:
		o.Fired = *d.Fired
	case inc != nil:
		o.Fired = inc.Fired
	}
	return o, nil
}

// --- costs ---

type costChange struct {
	Key     string         `json:"key"`
	CostUSD float64        `json:"cost_usd"`
	Entry   *ica.CostEntry `json:"entry"`
}

// costsFromEntry derives the cost records an entry sets. A change without
// its entry (written before it was recorded) yields only key and amount,
// and partial is set for it.
func costsFromEntry(e *ica.LedgerEntry) (out []*ica.CostEntry, partial []bool, err error) {
	switch e.Kind {
	case ica.KindCost, KindCostCorrected:
		var d struct {
			Entry *ica.CostEntry `json:"entry"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil || d.Entry == nil {
			return nil, nil, fmt.Errorf("entry %d: cost data without its entry", e.Seq)
		}
		d.Entry.LastSeq = e.Seq
		return []*ica.CostEntry{d.Entry}, []bool{false}, nil
	case KindCostSynced:
		var d struct {
			Changes []costChange `json:"changes"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return nil, nil, fmt.Errorf("entry %d: cost.synced data: %w", e.Seq, err)
		}
		for _, c := range d.Changes {
			if c.Entry != nil {
				c.Entry.LastSeq = e.Seq
				out, partial = append(out, c.Entry), append(partial, false)
			} else {
				out, partial = append(out, &ica.CostEntry{Key: c.Key, CostUSD: c.CostUSD, LastSeq: e.Seq}), append(partial, true)
			}
		}
		return out, partial, nil
	}
	return nil, nil, nil
}

var partialCostFields = []string{"key", "cost_usd"}

// --- checks ---

type checkLinked struct {
	ApprovalID     string  `json:"approval_id"`
	PlanID         string  `json:"plan_id"`
	JobID          string  `json:"job_id"`
	TaskInstanceID string  `json:"task_instance_id"`
	PlanURL        string  `json:"plan_url"`
	ProjectID      *string `json:"project_id"`
	HubName        *string `json:"hub_name"`
	TimelineID     *string `json:"timeline_id"`
}

// checkFromEntry derives the stored callback (all but the job's token) and
// the fields to compare (fewer for entries written before the callback was
// recorded in full).
func checkFromEntry(e *ica.LedgerEntry) (key []byte, cb *ica.CheckCallback, fields []string, err error) {
	var d checkLinked
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return nil, nil, nil, fmt.Errorf("entry %d: check_linked data: %w", e.Seq, err)
	}
	cb = &ica.CheckCallback{PlanURL: d.PlanURL, PlanID: d.PlanID, JobID: d.JobID, TaskInstanceID: d.TaskInstanceID, LinkedSeq: e.Seq}
	fields = []string{"plan_url", "plan_id", "job_id", "task_instance_id"}
	if d.ProjectID != nil && d.HubName != nil {
		cb.ProjectID, cb.HubName = *d.ProjectID, *d.HubName
		if d.TimelineID != nil {
			cb.TimelineID = *d.TimelineID
		}
		fields = append(fields, "project_id", "hub_name", "timeline_id", "linked_seq")
	}
	return join([]byte(d.ApprovalID), sep, []byte(d.TaskInstanceID)), cb, fields, nil
}

// --- comparison ---

// fieldOrder puts the fields people look at first at the front of a
// mismatch report.
var fieldOrder = map[string]int{"status": 0, "approval_id": 1, "run_id": 1, "incident_id": 1, "cost_usd": 2, "version": 3}

// diffRecords compares a stored record with the derived one, field by field
// (top-level JSON fields; times compared as instants), restricted to only
// when it is not empty. It returns the differing fields in a stable order,
// each as field, stored value, derived value.
func diffRecords(stored, derived any, only []string) [][3]string {
	sm, dm := toMap(stored), toMap(derived)
	keys := map[string]bool{}
	if len(only) > 0 {
		for _, k := range only {
			keys[k] = true
		}
	} else {
		for k := range sm {
			keys[k] = true
		}
		for k := range dm {
			keys[k] = true
		}
	}
	var out [][3]string
	for k := range keys {
		sv, dv := sm[k], dm[k]
		if !sameValue(sv, dv) {
			out = append(out, [3]string{k, show(sv), show(dv)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		oi, ok := fieldOrder[out[i][0]]
		if !ok {
			oi = 9
		}
		oj, ok := fieldOrder[out[j][0]]
		if !ok {
			oj = 9
		}
		if oi != oj {
			return oi < oj
		}
		return out[i][0] < out[j][0]
	})
	return out
}

func toMap(v any) map[string]any {
	raw, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m
}

func sameValue(a, b any) bool {
	if as, ok := a.(string); ok {
		if bs, ok := b.(string); ok {
			ta, err1 := time.Parse(time.RFC3339Nano, as)
			tb, err2 := time.Parse(time.RFC3339Nano, bs)
			if err1 == nil && err2 == nil {
				return ta.Equal(tb)
			}
		}
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k := range av {
			if !sameValue(av[k], bv[k]) {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !sameValue(av[i], bv[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func show(v any) string {
	if v == nil {
		return "(none)"
	}
	if s, ok := v.(string); ok {
		return clipText(s, 80)
	}
	raw, _ := json.Marshal(v)
	return clipText(string(raw), 80)
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
