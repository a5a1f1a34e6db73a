// Package dashboard is ICA's read-only web view (GET /dashboard) and its JSON
// twin (GET /api/v1/stats): month-to-date spend against the budget, approval
// SLAs, runs per day by status, open incidents and the ledger's last entries.
//
// The figures come from Compute, a pure function over an Input that Load
// reads through the store's indexes (Source), bounded by time windows so the
// cost does not grow with the size of the ledger. Pages are rendered on the
// server as HTML with inline SVG charts; CSS and the one small script are
// embedded, so the binary needs nothing from the network.
//
// Access: "/ica dashboard" issues a single-use link (5 minutes); opening it
// sets a signed session cookie (8 hours) for that Mattermost user.
package dashboard

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Windows and targets of the figures.
const (
	// RunDays is how many UTC days (today included) the runs chart covers.
	RunDays = 30
	// SLAWeeks is how many weeks (Monday to Sunday, UTC, this one included)
	// the approval SLA figures cover.
	SLAWeeks = 8
	// FailedWindow is "this week" for the failed-runs table: the last 7 days.
	FailedWindow = 7 * 24 * time.Hour
	// TechnicalTarget and BusinessTarget are the SLA target lines: the
	// technical decision within 2 h of the request, the business decision
	// (the approval complete) within 4 h, the default approval lifetime.
	TechnicalTarget = 2 * time.Hour
	BusinessTarget  = 4 * time.Hour
	// LedgerRows is how many of the newest ledger entries are shown.
	LedgerRows = 20
	// FailedRows bounds the failed-runs table; the count covers them all.
	FailedRows = 20
	// IncidentRows bounds the incident list; the counts cover them all.
	IncidentRows = 20
)

// RunRow is one run as the runs index knows it.
type RunRow struct {
	Start    time.Time
	RunID    string
	Pipeline string
	Status   string
}

// ApprovalRow is the part of an approval the SLA figures need.
type ApprovalRow struct {
	ID          string
	RunID       string
	Pipeline    string
	Target      string
	Status      string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	TechnicalAt time.Time // zero: no technical decision
	TechnicalBy string
	BusinessAt  time.Time // zero: no business decision
	BusinessBy  string
	// Used: the pipeline called use (the gate opened for it).
	Used bool
}

// NewApprovalRow keeps what the figures need of a.
func NewApprovalRow(a *ica.Approval) ApprovalRow {
	r := ApprovalRow{ID: a.ID, RunID: a.RunID, Pipeline: a.PipelineName, Target: a.Target, Status: a.Status,
		CreatedAt: a.CreatedAt.UTC(), ExpiresAt: a.ExpiresAt.UTC(), Used: a.Use != nil}
	if a.Technical != nil {
		r.TechnicalAt, r.TechnicalBy = a.Technical.At.UTC(), a.Technical.Username
	}
	if a.Business != nil {
		r.BusinessAt, r.BusinessBy = a.Business.At.UTC(), a.Business.Username
	}
	return r
}

// Final reports whether the approval can no longer change.
func (r *ApprovalRow) Final() bool {
	switch r.Status {
	case ica.ApprovalApproved, ica.ApprovalRejected, ica.ApprovalExpired, ica.ApprovalBypassed:
		return true
	}
	return false
}

// CostRow is one cost entry: the day it accrued and its amount.
type CostRow struct {
	Day     string // YYYY-MM-DD
	CostUSD float64
}

// Input is everything the figures are computed from, read at Now.
type Input struct {
	Now time.Time
	// Runs started in [RunsFrom(Now), the end of Now's day).
	Runs []RunRow
	// Approvals created in [SLAFrom(Now), Now].
	Approvals []ApprovalRow
	// Pending are the approvals that are not final, whatever their age.
	Pending []ApprovalRow
	// Budget is the store's view of the month (configured budget,
	// threshold, pending estimates); nil when unknown.
	Budget *ica.Budget
	// Costs are the cost entries of Now's month.
	Costs []CostRow
	// Incidents are the incidents that are not resolved.
	Incidents []*ica.Incident
	// Ledger is the newest entries, newest first.
	Ledger []*ica.LedgerEntry
}

// Stats are the dashboard's figures (also GET /api/v1/stats).
type Stats struct {
	GeneratedAt time.Time `json:"generated_at"`
	// Pipeline is the runs filter ("" for all pipelines).
	Pipeline string `json:"pipeline,omitempty"`
	// Pipelines that ran in the runs window, for the filter.
	Pipelines []string      `json:"pipelines"`
	Budget    BudgetStats   `json:"budget"`
	Approvals ApprovalStats `json:"approvals"`
	Runs      RunStats      `json:"runs"`
	Incidents IncidentStats `json:"incidents"`
	Ledger    []LedgerRow   `json:"ledger"`
}

// BudgetStats is the month's spend against the budget.
type BudgetStats struct {
	Month string `json:"month"` // YYYY-MM, UTC
	// MonthlyBudget is 0 when no budget is configured.
	MonthlyBudget float64 `json:"monthly_budget"`
	Threshold     float64 `json:"threshold"` // fraction, e.g. 0.95
	// ThresholdUSD is the approval gate's limit: budget × threshold.
	ThresholdUSD     float64 `json:"threshold_usd"`
	MonthToDate      float64 `json:"month_to_date"`
	Forecast         float64 `json:"forecast"` // linear month-end forecast
	PendingEstimates float64 `json:"pending_estimates"`
	// UsedShare is month-to-date / budget (0 without a budget).
	UsedShare   float64 `json:"used_share"`
	DayOfMonth  int     `json:"day_of_month"`
	DaysInMonth int     `json:"days_in_month"`
	// Days holds every day of the month up to today (or the last day with
	// cost data, if later): the day's spend and the running total.
	Days  []DaySpend `json:"days"`
	AsOf  *time.Time `json:"as_of,omitempty"`
	State string     `json:"state"` // no_budget, on_track, forecast_over_threshold, over_threshold, over_budget
	// GateMonthToDate is what the approval gate counts: MonthToDate, or
	// more where a fresh Azure actual for ICA's scope is higher.
	GateMonthToDate float64 `json:"gate_month_to_date"`
	// Azure is each Azure budget's latest report, with its age.
	Azure []*ica.AzureBudgetView `json:"azure_budgets"`
}

// DaySpend is one day of the month.
type DaySpend struct {
	Day        string  `json:"day"`
	Spend      float64 `json:"spend"`
	Cumulative float64 `json:"cumulative"`
}

// Budget states.
const (
	BudgetNone                  = "no_budget"
	BudgetOnTrack               = "on_track"
	BudgetForecastOverThreshold = "forecast_over_threshold"
	BudgetOverThreshold         = "over_threshold"
	BudgetOverBudget            = "over_budget"
)

// Dist summarises durations: how many, the median and the 90th percentile,
// in seconds. The median of an even count is the mean of the middle two; the
// 90th percentile is the nearest rank (the ⌈0.9·n⌉-th smallest).
type Dist struct {
	N             int     `json:"n"`
	MedianSeconds float64 `json:"median_seconds"`
	P90Seconds    float64 `json:"p90_seconds"`
}

// TargetSLA are the figures of one deployment target (or of all, Target "").
type TargetSLA struct {
	Target string `json:"target,omitempty"`
	// Requests are the approvals created; Final the ones decided or
	// expired; Expired the ones that ran out of time.
	Requests int `json:"requests"`
	Final    int `json:"final"`
	Expired  int `json:"expired"`
	// ExpiredShare is Expired / Final (0 when nothing is final).
	ExpiredShare float64 `json:"expired_share"`
	// Technical: request → technical decision. Business: request →
	// business decision (the approval complete).
	Technical Dist `json:"technical"`
	Business  Dist `json:"business"`
}

// WeekSLA are one week's figures, by week of the request.
type WeekSLA struct {
	Week    string      `json:"week"` // the Monday, YYYY-MM-DD
	All     TargetSLA   `json:"all"`
	Targets []TargetSLA `json:"targets"`
}

// ApproverSLA is how long one approver takes on one step: for the technical
// step from the request, for the business step from the technical decision
// (when the approval reached them).
type ApproverSLA struct {
	Username string `json:"username"`
	Step     string `json:"step"`
	Dist
}

// PendingApproval is an approval waiting for a decision.
type PendingApproval struct {
	ID         string    `json:"approval_id"`
	RunID      string    `json:"run_id"`
	Pipeline   string    `json:"pipeline_name"`
	Target     string    `json:"deployment_target"`
	Status     string    `json:"status"`
	Step       string    `json:"step"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	AgeSeconds float64   `json:"age_seconds"`
	// Overdue: past its deadline, not yet expired by the scheduler.
	Overdue bool `json:"overdue,omitempty"`
}

// ApprovalStats are the approval SLA figures.
type ApprovalStats struct {
	From                   time.Time         `json:"from"`
	TechnicalTargetSeconds float64           `json:"technical_target_seconds"`
	BusinessTargetSeconds  float64           `json:"business_target_seconds"`
	All                    TargetSLA         `json:"all"`
	ByTarget               []TargetSLA       `json:"by_target"`
	Weeks                  []WeekSLA         `json:"weeks"` // oldest first
	Approvers              []ApproverSLA     `json:"approvers"`
	Pending                []PendingApproval `json:"pending"` // oldest first
	// UnusedApprovals counts runs that finished after an approval (approved
	// or bypassed, since From) that was never used: a pipeline that never
	// calls use bypasses every rule judged at deploy time (windows, the
	// lock, a freeze).
	UnusedApprovals int `json:"unused_approvals"`
}

// RunDay counts one UTC day's runs by status (runs are counted on the day
// they started).
type RunDay struct {
	Day       string `json:"day"`
	Success   int    `json:"success"`
	Failed    int    `json:"failed"`
	Cancelled int    `json:"cancelled"`
	Running   int    `json:"running"`
}

// Total is the number of runs of the day.
func (d RunDay) Total() int { return d.Success + d.Failed + d.Cancelled + d.Running }

// FailedRun is a run that failed this week.
type FailedRun struct {
	RunID       string    `json:"run_id"`
	Pipeline    string    `json:"pipeline_name"`
	Start       time.Time `json:"start_time"`
	Branch      string    `json:"branch,omitempty"`
	URL         string    `json:"url,omitempty"`
	TriggeredBy string    `json:"triggered_by,omitempty"`
}

// RunStats are the runs of the last RunDays days.
type RunStats struct {
	From   time.Time `json:"from"`
	Days   []RunDay  `json:"days"` // oldest first
	Totals RunDay    `json:"totals"`
	// SuccessShare is success / finished runs.
	SuccessShare float64 `json:"success_share"`
	// FailedThisWeek counts failed runs started in the last 7 days;
	// Failed lists the newest of them.
	FailedThisWeek int         `json:"failed_this_week"`
	Failed         []FailedRun `json:"failed"`
}

// SeverityCount counts open and acknowledged incidents of one severity.
type SeverityCount struct {
	Severity     string `json:"severity"`
	Open         int    `json:"open"`
	Acknowledged int    `json:"acknowledged"`
}

// IncidentRow is an unresolved incident.
type IncidentRow struct {
	ID       string    `json:"incident_id"`
	Severity string    `json:"severity"`
	Status   string    `json:"status"`
	Rule     string    `json:"rule,omitempty"`
	OpenedAt time.Time `json:"opened_at"`
	Link     string    `json:"portal_link,omitempty"`
}

// IncidentStats are the unresolved incidents.
type IncidentStats struct {
	Total      int             `json:"total"`
	BySeverity []SeverityCount `json:"by_severity"` // Sev0 … Sev4
	List       []IncidentRow   `json:"list"`        // most severe, then oldest, first
}

// LedgerRow is one ledger entry, without its data.
type LedgerRow struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Subject  string    `json:"subject"`
	Actor    string    `json:"actor"`
	Hash     string    `json:"hash"`
	PrevHash string    `json:"prev_hash"`
}

// Day starts are UTC midnights.
func dayStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// weekStart returns the Monday 00:00 UTC of t's week.
func weekStart(t time.Time) time.Time {
	d := dayStart(t)
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

// RunsFrom is the start of the runs window at now: midnight UTC RunDays-1
// days before today.
func RunsFrom(now time.Time) time.Time { return dayStart(now).AddDate(0, 0, -(RunDays - 1)) }

// RunsTo is the end of the runs window: the end of now's UTC day.
func RunsTo(now time.Time) time.Time { return dayStart(now).AddDate(0, 0, 1) }

// SLAFrom is the start of the approval SLA window at now: the Monday of the
// week SLAWeeks-1 weeks before this one.
func SLAFrom(now time.Time) time.Time { return weekStart(now).AddDate(0, 0, -7*(SLAWeeks-1)) }

// Compute turns an Input into the dashboard's figures. pipeline, when not
// empty, filters the runs (chart, totals, failed runs); everything else is
// for all pipelines. It is pure: same Input, same Stats.
func Compute(in *Input, pipeline string) *Stats {
	now := in.Now.UTC()
	s := &Stats{GeneratedAt: now, Pipeline: pipeline}
	s.Budget = computeBudget(in, now)
	s.Approvals = computeApprovals(in, now)
	s.Runs, s.Pipelines = computeRuns(in, now, pipeline)
	s.Incidents = computeIncidents(in.Incidents)
	s.Ledger = make([]LedgerRow, 0, len(in.Ledger))
	for _, e := range in.Ledger {
		s.Ledger = append(s.Ledger, LedgerRow{Seq: e.Seq, Time: e.Time.UTC(), Kind: e.Kind, Subject: e.Subject,
			Actor: e.Actor, Hash: e.Hash, PrevHash: e.PrevHash})
	}
	return s
}

func computeBudget(in *Input, now time.Time) BudgetStats {
	start := ica.MonthStart(now)
	days := start.AddDate(0, 1, 0).Sub(start).Hours() / 24
	b := BudgetStats{Month: start.Format("2006-01"), DaysInMonth: int(math.Round(days)), DayOfMonth: now.Day()}
	if in.Budget != nil {
		b.MonthlyBudget, b.Threshold = in.Budget.MonthlyBudget, in.Budget.Threshold
		b.PendingEstimates = in.Budget.PendingEstimates
		if in.Budget.AsOf != nil {
			t := in.Budget.AsOf.UTC()
			b.AsOf = &t
		}
	}
	b.ThresholdUSD = b.MonthlyBudget * b.Threshold
	spend := make([]float64, b.DaysInMonth)
	last := b.DayOfMonth
	for _, c := range in.Costs {
		if !strings.HasPrefix(c.Day, b.Month+"-") {
			continue // another month's entry: the month is UTC, by billing day
		}
		d, err := ica.ParseDay(c.Day)
		if err != nil {
			continue
		}
		spend[d.Day()-1] += c.CostUSD
		b.MonthToDate += c.CostUSD
		last = max(last, d.Day())
	}
	cum := 0.0
	for i := range last {
		cum += spend[i]
		b.Days = append(b.Days, DaySpend{Day: start.AddDate(0, 0, i).Format(time.DateOnly), Spend: round2(spend[i]), Cumulative: round2(cum)})
	}
	b.MonthToDate = round2(b.MonthToDate)
	b.Forecast = round2(ica.Forecast(b.MonthToDate, now))
	b.GateMonthToDate, b.Azure = b.MonthToDate, []*ica.AzureBudgetView{}
	if in.Budget != nil {
		if extra := in.Budget.GateMonthToDate - in.Budget.MonthToDate; extra > 0 {
			b.GateMonthToDate = round2(b.MonthToDate + extra)
		}
		if in.Budget.Azure != nil {
			b.Azure = in.Budget.Azure
		}
	}
	switch {
	case b.MonthlyBudget <= 0:
		b.State = BudgetNone
	case b.MonthToDate > b.MonthlyBudget:
		b.State = BudgetOverBudget
		b.UsedShare = b.MonthToDate / b.MonthlyBudget
	default:
		b.UsedShare = b.MonthToDate / b.MonthlyBudget
		switch {
		case b.ThresholdUSD > 0 && b.MonthToDate > b.ThresholdUSD:
			b.State = BudgetOverThreshold
		case b.ThresholdUSD > 0 && b.Forecast > b.ThresholdUSD:
			b.State = BudgetForecastOverThreshold
		default:
			b.State = BudgetOnTrack
		}
	}
	return b
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// slaAcc accumulates one group's approvals.
type slaAcc struct {
	requests, final, expired int
	tech, biz                []time.Duration
}

func (a *slaAcc) add(r *ApprovalRow) {
	a.requests++
	if r.Final() {
		a.final++
	}
	if r.Status == ica.ApprovalExpired {
		a.expired++
	}
	if !r.TechnicalAt.IsZero() {
		a.tech = append(a.tech, r.TechnicalAt.Sub(r.CreatedAt))
	}
	if !r.BusinessAt.IsZero() {
		a.biz = append(a.biz, r.BusinessAt.Sub(r.CreatedAt))
	}
}

func (a *slaAcc) result(target string) TargetSLA {
	t := TargetSLA{Target: target, Requests: a.requests, Final: a.final, Expired: a.expired,
		Technical: dist(a.tech), Business: dist(a.biz)}
	if a.final > 0 {
		t.ExpiredShare = float64(a.expired) / float64(a.final)
	}
	return t
}

// dist sorts ds and summarises it (see Dist).
func dist(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	slices.Sort(ds)
	n := len(ds)
	var med time.Duration
	if n%2 == 1 {
		med = ds[n/2]
	} else {
		med = (ds[n/2-1] + ds[n/2]) / 2
	}
	p90 := ds[int(math.Ceil(0.9*float64(n)))-1]
	return Dist{N: n, MedianSeconds: med.Seconds(), P90Seconds: p90.Seconds()}
}

var targets = []string{ica.TargetStaging, ica.TargetProduction}

func computeApprovals(in *Input, now time.Time) ApprovalStats {
	from := SLAFrom(now)
	st := ApprovalStats{From: from, TechnicalTargetSeconds: TechnicalTarget.Seconds(), BusinessTargetSeconds: BusinessTarget.Seconds()}
	all := &slaAcc{}
	byTarget := map[string]*slaAcc{}
	weeks := make([]*slaAcc, SLAWeeks)
	weekTargets := make([]map[string]*slaAcc, SLAWeeks)
	for i := range weeks {
		weeks[i], weekTargets[i] = &slaAcc{}, map[string]*slaAcc{}
	}
	type key struct{ user, step string }
	approvers := map[key][]time.Duration{}
	get := func(m map[string]*slaAcc, k string) *slaAcc {
		if m[k] == nil {
			m[k] = &slaAcc{}
		}
		return m[k]
	}
	for i := range in.Approvals {
		r := &in.Approvals[i]
		if r.CreatedAt.Before(from) || r.CreatedAt.After(now) {
			continue
		}
		w := int(r.CreatedAt.Sub(from) / (7 * 24 * time.Hour))
		if w >= SLAWeeks {
			continue
		}
		all.add(r)
		get(byTarget, r.Target).add(r)
		weeks[w].add(r)
		get(weekTargets[w], r.Target).add(r)
		if !r.TechnicalAt.IsZero() && r.TechnicalBy != "" {
			k := key{r.TechnicalBy, ica.StepTechnical}
			approvers[k] = append(approvers[k], r.TechnicalAt.Sub(r.CreatedAt))
		}
		if !r.BusinessAt.IsZero() && r.BusinessBy != "" && !r.TechnicalAt.IsZero() {
			k := key{r.BusinessBy, ica.StepBusiness}
			approvers[k] = append(approvers[k], r.BusinessAt.Sub(r.TechnicalAt))
		}
	}
	finished := map[string]bool{}
	for _, r := range in.Runs {
		if r.Status != ica.RunRunning {
			finished[r.RunID] = true
		}
	}
	for i := range in.Approvals {
		r := &in.Approvals[i]
		if (r.Status == ica.ApprovalApproved || r.Status == ica.ApprovalBypassed) && !r.Used && finished[r.RunID] &&
			!r.CreatedAt.Before(from) && !r.CreatedAt.After(now) {
			st.UnusedApprovals++
		}
	}
	st.All = all.result("")
	for _, t := range sortedTargets(byTarget) {
		st.ByTarget = append(st.ByTarget, byTarget[t].result(t))
	}
	for i := range weeks {
		ws := WeekSLA{Week: from.AddDate(0, 0, 7*i).Format(time.DateOnly), All: weeks[i].result("")}
		for _, t := range sortedTargets(weekTargets[i]) {
			ws.Targets = append(ws.Targets, weekTargets[i][t].result(t))
		}
		st.Weeks = append(st.Weeks, ws)
	}
	for k, ds := range approvers {
		st.Approvers = append(st.Approvers, ApproverSLA{Username: k.user, Step: k.step, Dist: dist(ds)})
	}
	// Slowest first: by median, then p90, then name.
	sort.Slice(st.Approvers, func(i, j int) bool {
		a, b := st.Approvers[i], st.Approvers[j]
		if a.MedianSeconds != b.MedianSeconds {
			return a.MedianSeconds > b.MedianSeconds
		}
		if a.P90Seconds != b.P90Seconds {
			return a.P90Seconds > b.P90Seconds
		}
		return a.Username+a.Step < b.Username+b.Step
	})
	st.Pending = []PendingApproval{}
	for i := range in.Pending {
		r := &in.Pending[i]
		if r.Final() {
			continue
		}
		step := ica.StepTechnical
		if r.Status == ica.ApprovalTechnical {
			step = ica.StepBusiness
		}
		st.Pending = append(st.Pending, PendingApproval{ID: r.ID, RunID: r.RunID, Pipeline: r.Pipeline, Target: r.Target,
			Status: r.Status, Step: step, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
			AgeSeconds: now.Sub(r.CreatedAt).Seconds(), Overdue: !now.Before(r.ExpiresAt)})
	}
	sort.SliceStable(st.Pending, func(i, j int) bool { return st.Pending[i].CreatedAt.Before(st.Pending[j].CreatedAt) })
	return st
}

// sortedTargets lists the known targets first, then any other.
func sortedTargets(m map[string]*slaAcc) []string {
	var out []string
	for _, t := range targets {
		if m[t] != nil {
			out = append(out, t)
		}
	}
	var other []string
	for t := range m {
		if !slices.Contains(targets, t) {
			other = append(other, t)
		}
	}
	slices.Sort(other)
	return append(out, other...)
}

func computeRuns(in *Input, now time.Time, pipeline string) (RunStats, []string) {
	from := RunsFrom(now)
	to := RunsTo(now)
	rs := RunStats{From: from, Days: make([]RunDay, RunDays), Failed: []FailedRun{}}
	for i := range rs.Days {
		rs.Days[i].Day = from.AddDate(0, 0, i).Format(time.DateOnly)
	}
	weekAgo := now.Add(-FailedWindow)
	seen := map[string]bool{}
	var failed []RunRow
	for i := range in.Runs {
		r := &in.Runs[i]
		if r.Start.Before(from) || !r.Start.Before(to) {
			continue
		}
		seen[r.Pipeline] = true
		if pipeline != "" && r.Pipeline != pipeline {
			continue
		}
		d := &rs.Days[int(r.Start.Sub(from)/(24*time.Hour))]
		switch r.Status {
		case ica.RunSuccess:
			d.Success++
		case ica.RunFailed:
			d.Failed++
			if !r.Start.Before(weekAgo) {
				rs.FailedThisWeek++
				failed = append(failed, *r)
			}
		case ica.RunCancelled:
			d.Cancelled++
		case ica.RunRunning:
			d.Running++
		}
	}
	for _, d := range rs.Days {
		rs.Totals.Success += d.Success
		rs.Totals.Failed += d.Failed
		rs.Totals.Cancelled += d.Cancelled
		rs.Totals.Running += d.Running
	}
	if fin := rs.Totals.Success + rs.Totals.Failed + rs.Totals.Cancelled; fin > 0 {
		rs.SuccessShare = float64(rs.Totals.Success) / float64(fin)
	}
	slices.SortFunc(failed, func(a, b RunRow) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.RunID, b.RunID)
	})
	for _, r := range failed[:min(len(failed), FailedRows)] {
		rs.Failed = append(rs.Failed, FailedRun{RunID: r.RunID, Pipeline: r.Pipeline, Start: r.Start})
	}
	pipes := make([]string, 0, len(seen))
	for p := range seen {
		pipes = append(pipes, p)
	}
	slices.Sort(pipes)
	return rs, pipes
}

func computeIncidents(incs []*ica.Incident) IncidentStats {
	st := IncidentStats{List: []IncidentRow{}}
	counts := map[string]*SeverityCount{}
	for _, s := range ica.Severities {
		st.BySeverity = append(st.BySeverity, SeverityCount{Severity: s})
	}
	for i := range st.BySeverity {
		counts[st.BySeverity[i].Severity] = &st.BySeverity[i]
	}
	var open []*ica.Incident
	for _, inc := range incs {
		if inc.Final() {
			continue
		}
		c := counts[inc.Severity]
		if c == nil {
			continue
		}
		st.Total++
		if inc.Status == ica.IncidentAcknowledged {
			c.Acknowledged++
		} else {
			c.Open++
		}
		open = append(open, inc)
	}
	slices.SortFunc(open, func(a, b *ica.Incident) int {
		if c := cmp.Compare(ica.SeverityRank(a.Severity), ica.SeverityRank(b.Severity)); c != 0 {
			return c
		}
		if c := a.OpenedAt.Compare(b.OpenedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	for _, inc := range open[:min(len(open), IncidentRows)] {
		st.List = append(st.List, IncidentRow{ID: inc.ID, Severity: inc.Severity, Status: inc.Status, Rule: inc.Rule,
			OpenedAt: inc.OpenedAt.UTC(), Link: inc.PortalLink})
	}
	return st
}
