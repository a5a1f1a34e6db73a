package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/ica-governance/ica"
)

var berlin = mustZone("Europe/Berlin")

func mustZone(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func rules(t *testing.T, r Rules) *TargetRules {
	t.Helper()
	c, err := Compile(Policy{Targets: map[string]Target{"production": {Rules: r}}})
	require.NoError(t, err)
	return c.Target("production")
}

func TestLocalTime_DST(t *testing.T) {
	cases := []struct {
		name   string
		day    civil
		minute int
		want   string
	}{
		{"ordinary winter", civil{2026, 1, 15}, 9 * 60, "2026-01-15T08:00:00Z"},
		{"ordinary summer", civil{2026, 7, 15}, 9 * 60, "2026-07-15T07:00:00Z"},
		// 2026-03-29 02:00 CET the clocks jump to 03:00 CEST: 02:30 does not exist.
		{"gap moves forward to the end of the jump", civil{2026, 3, 29}, 2*60 + 30, "2026-03-29T01:00:00Z"},
		{"gap start", civil{2026, 3, 29}, 2 * 60, "2026-03-29T01:00:00Z"},
		{"after the gap", civil{2026, 3, 29}, 3 * 60, "2026-03-29T01:00:00Z"},
		// 2026-10-25 03:00 CEST the clocks fall back to 02:00 CET: 02:30 happens twice.
		{"ambiguous takes the first", civil{2026, 10, 25}, 2*60 + 30, "2026-10-25T00:30:00Z"},
		{"midnight is the next day's", civil{2026, 1, 15}, 24 * 60, "2026-01-15T23:00:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, at(c.want), localTime(c.day, c.minute, berlin))
		})
	}
}

func TestTargetRules_Windows(t *testing.T) {
	office := rules(t, Rules{TZ: "Europe/Berlin", Windows: []Window{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "09:00", To: "17:00"}}})
	night := rules(t, Rules{TZ: "Europe/Berlin", Windows: []Window{{Days: []string{"sat"}, From: "22:00", To: "04:00"}}})
	early := rules(t, Rules{TZ: "Europe/Berlin", Windows: []Window{{Days: []string{"sun"}, From: "02:30", To: "04:00"}}})
	utcOther := rules(t, Rules{TZ: "Europe/Berlin", Windows: []Window{{Days: []string{"mon"}, From: "09:00", To: "10:00", TZ: "UTC"}}})
	cases := []struct {
		name   string
		r      *TargetRules
		now    string
		in     bool
		opens  string
		reason string
	}{
		{"office hours, winter", office, "2026-01-14T10:00:00Z", true, "2026-01-14T10:00:00Z", ""},
		{"just before opening", office, "2026-01-14T07:59:00Z", false, "2026-01-14T08:00:00Z", ""},
		{"closing is exclusive", office, "2026-01-14T16:00:00Z", false, "2026-01-15T08:00:00Z", ""},
		{"friday evening waits for monday", office, "2026-01-16T17:00:00Z", false, "2026-01-19T08:00:00Z", ""},
		{"office hours in summer are an hour earlier in UTC", office, "2026-07-15T07:00:00Z", true, "2026-07-15T07:00:00Z", ""},
		// The week of the change to summer time: Friday opens at 08:00 UTC, Monday at 07:00 UTC.
		{"across the spring change", office, "2026-03-27T16:30:00Z", false, "2026-03-30T07:00:00Z", ""},
		{"across the autumn change", office, "2026-10-23T15:30:00Z", false, "2026-10-26T08:00:00Z", ""},
		{"a window across midnight, before midnight", night, "2026-01-17T22:30:00Z", true, "2026-01-17T22:30:00Z", ""},
		{"a window across midnight, after midnight (a Sunday)", night, "2026-01-18T02:00:00Z", true, "2026-01-18T02:00:00Z", ""},
		{"a window across midnight ends on the next day", night, "2026-01-18T03:00:00Z", false, "2026-01-24T21:00:00Z", ""},
		{"a window across midnight on the night of the spring change", night, "2026-03-29T01:30:00Z", true, "2026-03-29T01:30:00Z", ""},
		{"a window across midnight ends at 04:00 summer time", night, "2026-03-29T02:00:00Z", false, "2026-04-04T20:00:00Z", ""},
		{"a window from a time that does not exist opens at the jump", early, "2026-03-29T00:30:00Z", false, "2026-03-29T01:00:00Z", ""},
		{"a window with its own zone", utcOther, "2026-01-19T08:30:00Z", false, "2026-01-19T09:00:00Z", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			now := at(c.now)
			require.Equal(t, c.in, c.r.InWindow(now))
			open, ok := c.r.NextOpen(now)
			require.True(t, ok)
			require.Equal(t, at(c.opens), open)
		})
	}
}

func TestTargetRules_Blackouts(t *testing.T) {
	r := rules(t, Rules{TZ: "Europe/Berlin",
		Windows:   []Window{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "09:00", To: "17:00"}},
		Blackouts: []Blackout{{From: "2026-12-20", To: "2027-01-04", Reason: "year-end freeze"}}})
	reason, until, in := r.Blackout(at("2026-12-19T23:30:00Z"))
	require.True(t, in, "00:30 in Berlin is already the 20th")
	require.Equal(t, "year-end freeze", reason)
	require.Equal(t, at("2027-01-04T23:00:00Z"), until, "to is inclusive: the blackout ends at the end of 4 January, Berlin time")
	_, _, in = r.Blackout(at("2026-12-19T22:59:00Z"))
	require.False(t, in)
	open, ok := r.NextOpen(at("2026-12-18T16:30:00Z"))
	require.True(t, ok)
	require.Equal(t, at("2027-01-05T08:00:00Z"), open, "the first window after the blackout")
}

func TestTargetRules_UseWindow(t *testing.T) {
	office := rules(t, Rules{TZ: "Europe/Berlin", Windows: []Window{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "09:00", To: "17:00"}}})
	// Approved at 16:50 Berlin on a Wednesday: 10 minutes of open time that
	// day, the rest of the 4 hours the next morning.
	decided := at("2026-01-14T15:50:00Z")
	until, ok := office.OpenUntil(decided, 4*time.Hour)
	require.True(t, ok)
	require.Equal(t, at("2026-01-15T11:50:00Z"), until)
	v := office.Evaluate(Facts{Now: at("2026-01-15T08:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, UseWindow: 4 * time.Hour})
	require.True(t, v.CanDeploy, v.Reasons)
	require.Equal(t, until, *v.UsableUntil)
	v = office.Evaluate(Facts{Now: at("2026-01-15T12:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, UseWindow: 4 * time.Hour})
	require.False(t, v.CanDeploy)
	require.False(t, v.Usable)
	require.Contains(t, strings.Join(v.Reasons, " "), "request a new approval")
	v = office.Evaluate(Facts{Now: at("2026-01-15T12:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, UseWindow: 4 * time.Hour, Used: true})
	require.True(t, v.CanDeploy, "a repeat by the run that used it is harmless")

	none := rules(t, Rules{})
	v = none.Evaluate(Facts{Now: decided.Add(4*time.Hour - time.Second), Status: ica.ApprovalApproved, Decided: decided})
	require.True(t, v.CanDeploy)
	v = none.Evaluate(Facts{Now: decided.Add(4 * time.Hour), Status: ica.ApprovalApproved, Decided: decided})
	require.False(t, v.Usable)
}

func TestTargetRules_Evaluate(t *testing.T) {
	office := Rules{TZ: "Europe/Berlin", Windows: []Window{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "09:00", To: "17:00"}},
		Blackouts: []Blackout{{From: "2026-01-20", To: "2026-01-20", Reason: "release party"}}}
	promo := office
	promo.Requires = &Requirement{Target: "staging", Bake: Duration(30 * time.Minute)}
	decided := at("2026-01-14T09:00:00Z")
	ev := &Evidence{Target: "staging", RunID: "r0", ApprovalID: "A-1", DeployedAt: at("2026-01-14T09:10:00Z")}
	cases := []struct {
		name    string
		r       Rules
		f       Facts
		can     bool
		waiting []string
		opens   string
		usable  bool
	}{
		{"approved inside the window", office, Facts{Now: at("2026-01-14T10:00:00Z"), Status: ica.ApprovalApproved, Decided: decided}, true, []string{}, "2026-01-14T10:00:00Z", true},
		{"pending shows when it could open", office, Facts{Now: at("2026-01-14T18:00:00Z"), Status: ica.ApprovalPending}, false, []string{WaitApproval, WaitWindow}, "2026-01-15T08:00:00Z", true},
		{"blackout ending mid-wait", office, Facts{Now: at("2026-01-20T10:00:00Z"), Status: ica.ApprovalApproved, Decided: at("2026-01-20T09:00:00Z")}, false, []string{WaitBlackout}, "2026-01-21T08:00:00Z", true},
		{"deferred approval", office, Facts{Now: at("2026-01-14T10:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, NotBefore: at("2026-01-14T13:00:00Z")}, false, []string{WaitNotBefore}, "2026-01-14T13:00:00Z", true},
		{"deferred into the night waits for the morning", office, Facts{Now: at("2026-01-14T10:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, NotBefore: at("2026-01-14T21:00:00Z")}, false, []string{WaitNotBefore}, "2026-01-15T08:00:00Z", true},
		{"promotion baking", promo, Facts{Now: at("2026-01-14T09:20:00Z"), Status: ica.ApprovalApproved, Decided: decided, Promotion: ev}, false, []string{WaitPromotion}, "2026-01-14T09:40:00Z", true},
		{"promotion baked", promo, Facts{Now: at("2026-01-14T09:40:00Z"), Status: ica.ApprovalApproved, Decided: decided, Promotion: ev}, true, []string{}, "2026-01-14T09:40:00Z", true},
		{"no promotion evidence", promo, Facts{Now: at("2026-01-14T10:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, PromotionMissing: "no staging deployment"}, false, []string{WaitPromotion}, "2026-01-14T10:00:00Z", true},
		{"freeze", office, Facts{Now: at("2026-01-14T10:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, Freeze: "Sev0 incident inc-1"}, false, []string{WaitFreeze}, "2026-01-14T10:00:00Z", true},
		{"lock", office, Facts{Now: at("2026-01-14T10:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, LockHolder: "r9"}, false, []string{WaitLock}, "2026-01-14T10:00:00Z", true},
		{"queued", office, Facts{Now: at("2026-01-14T10:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, QueuedBehind: "r8"}, false, []string{WaitLock}, "2026-01-14T10:00:00Z", true},
		{"run finished", office, Facts{Now: at("2026-01-14T10:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, RunFinished: true}, false, []string{}, "2026-01-14T10:00:00Z", false},
		{"rejected", office, Facts{Now: at("2026-01-14T10:00:00Z"), Status: ica.ApprovalRejected}, false, []string{}, "2026-01-14T10:00:00Z", false},
		{"other branch after a policy change", Rules{Branches: []string{"refs/heads/main"}}, Facts{Now: at("2026-01-14T10:00:00Z"), Status: ica.ApprovalApproved, Decided: decided, Branch: "refs/heads/dev"}, false, []string{}, "2026-01-14T10:00:00Z", false},
		{"break-glass overrides every rule", promo, Facts{Now: at("2026-01-20T10:00:00Z"), Status: ica.ApprovalBypassed, Decided: at("2026-01-20T09:30:00Z"), Freeze: "Sev1", LockHolder: "r9"}, true, []string{}, "2026-01-21T08:00:00Z", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := rules(t, c.r).Evaluate(c.f)
			require.Equal(t, c.can, v.CanDeploy, v.Reasons)
			require.Equal(t, c.waiting, v.WaitingFor)
			require.NotNil(t, v.OpensAt)
			require.Equal(t, at(c.opens), *v.OpensAt)
			require.Equal(t, c.usable, v.Usable)
		})
	}
	v := rules(t, promo).Evaluate(Facts{Now: at("2026-01-20T10:00:00Z"), Status: ica.ApprovalBypassed, Decided: at("2026-01-20T09:30:00Z"), Freeze: "Sev1", LockHolder: "r9"})
	require.Equal(t, []string{WaitBlackout, WaitPromotion, WaitFreeze, WaitLock}, v.Overrode)
}

func TestTargetRules_Branches(t *testing.T) {
	r := rules(t, Rules{Branches: []string{"refs/heads/main", "refs/heads/release/*", "hotfix-?"}})
	for branch, ok := range map[string]bool{
		"refs/heads/main": true, "refs/heads/main2": false, "refs/heads/release/1.2": true,
		"refs/heads/release/2026/q1": true, "refs/heads/releases": false, "refs/heads/hotfix-1": true,
		"refs/pull/1/merge": false, "refs/heads/feature/x": false,
	} {
		require.Equal(t, ok, r.BranchAllowed(branch), branch)
	}
	require.True(t, rules(t, Rules{}).BranchAllowed("anything"))
	require.Equal(t, "production accepts deployments only from refs/heads/main, refs/heads/release/*, hotfix-?; run r1 is from refs/heads/dev",
		r.BranchRefusal("r1", "refs/heads/dev"))
}

func TestTargetRules_NextLocal(t *testing.T) {
	r := rules(t, Rules{TZ: "Europe/Berlin"})
	got, err := r.NextLocal(at("2026-01-14T10:00:00Z"), "22:00")
	require.NoError(t, err)
	require.Equal(t, at("2026-01-14T21:00:00Z"), got)
	got, err = r.NextLocal(at("2026-01-14T22:00:00Z"), "22:00")
	require.NoError(t, err)
	require.Equal(t, at("2026-01-15T21:00:00Z"), got, "the next such time")
	got, err = r.NextLocal(at("2026-03-28T22:00:00Z"), "02:30")
	require.NoError(t, err)
	require.Equal(t, at("2026-03-29T01:00:00Z"), got, "a time that does not exist moves forward")
	_, err = r.NextLocal(at("2026-01-14T10:00:00Z"), "25:00")
	require.Equal(t, "not_before", ica.ErrorField(err))
}

func TestPolicy_Validate(t *testing.T) {
	cases := []struct {
		name, yaml, key, msg string
	}{
		{"unknown day", "windows: [{days: [mon, funday], from: '09:00', to: '17:00'}]", "approval.targets.production.windows[0].days", `unknown day "funday"`},
		{"no days", "windows: [{from: '09:00', to: '17:00'}]", "approval.targets.production.windows[0].days", "list the days"},
		{"bad from", "windows: [{days: [mon], from: '9am', to: '17:00'}]", "approval.targets.production.windows[0].from", "not a time"},
		{"bad to", "windows: [{days: [mon], from: '09:00', to: '17:60'}]", "approval.targets.production.windows[0].to", "not a time"},
		{"empty window", "windows: [{days: [mon], from: '09:00', to: '09:00'}]", "approval.targets.production.windows[0].to", "same time"},
		{"bad zone", "tz: Mars/Olympus", "approval.targets.production.tz", "unknown time zone"},
		{"bad window zone", "windows: [{days: [mon], from: '09:00', to: '17:00', tz: Nowhere}]", "approval.targets.production.windows[0].tz", "unknown time zone"},
		{"bad blackout", "blackouts: [{from: 2026-12-20, to: 2026-13-01}]", "approval.targets.production.blackouts[0].to", "not a date"},
		{"reversed blackout", "blackouts: [{from: 2026-12-20, to: 2026-12-01}]", "approval.targets.production.blackouts[0].to", "before from"},
		{"bad exclusive", "exclusive: always", "approval.targets.production.exclusive", "sequential or latest"},
		{"bad scope", "exclusive: latest\nlock_scope: world", "approval.targets.production.lock_scope", "pipeline or target"},
		{"self promotion", "requires: {target: production}", "approval.targets.production.requires.target", "itself"},
		{"unknown promotion", "requires: {target: qa}", "approval.targets.production.requires.target", "staging or production"},
		{"too few technical approvers", "technical_required: 3\ntechnical: [a, b]", "approval.targets.production.technical_required", "3 technical approvals are required but only 2"},
		{"too few people for both steps", "technical_required: 2\nbusiness_required: 1\ntechnical: [a, b]\nbusiness: [b]", "approval.targets.production.business_required", "3 different people"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var in struct {
				Rules     `yaml:",inline"`
				Technical []string `yaml:"technical"`
				Business  []string `yaml:"business"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(c.yaml), &in))
			_, err := Compile(Policy{Targets: map[string]Target{"production": {Rules: in.Rules, TechnicalApprovers: in.Technical, BusinessApprovers: in.Business}}})
			require.Error(t, err)
			require.Equal(t, c.key, ica.ErrorField(err))
			require.Contains(t, ica.ErrorMessage(err), c.key)
			require.Contains(t, ica.ErrorMessage(err), c.msg)
		})
	}
	_, err := Compile(Policy{Targets: map[string]Target{"qa": {}}})
	require.Equal(t, "approval.targets.qa", ica.ErrorField(err))
	// A channel's members are checked when a request arrives.
	_, err = Compile(Policy{Targets: map[string]Target{"production": {TechnicalChannel: "tech", Rules: Rules{TechnicalRequired: 5}}}})
	require.NoError(t, err)
}

func TestCompile_HashAndDiff(t *testing.T) {
	p := Policy{Targets: map[string]Target{"production": {TechnicalApprovers: []string{"tech1"}, Rules: Rules{Branches: []string{"refs/heads/main"}}}}}
	a := MustCompile(p)
	b := MustCompile(p)
	require.Equal(t, a.Hash, b.Hash)
	require.Len(t, a.Hash, 64)
	explicit := p.clone()
	pt := explicit.Targets["production"]
	pt.TechnicalRequired, pt.TZ = 1, "UTC"
	explicit.Targets["production"] = pt
	explicit.UseWindow = Duration(DefaultUseWindow)
	require.Equal(t, a.Hash, MustCompile(explicit).Hash, "defaults written out hash the same")
	q := p.clone()
	qt := q.Targets["production"]
	qt.Windows = []Window{{Days: []string{"mon"}, From: "09:00", To: "17:00"}}
	qt.TechnicalRequired = 1
	q.Targets["production"] = qt
	c := MustCompile(q)
	require.NotEqual(t, a.Hash, c.Hash)
	require.Equal(t, []string{`approval.targets.production.windows: added [{"days":["mon"],"from":"09:00","to":"17:00"}]`}, Diff(a.Policy, c.Policy))
	require.Empty(t, Diff(a.Policy, b.Policy))
}

func TestDuration_YAMLAndJSON(t *testing.T) {
	var r Rules
	require.NoError(t, yaml.Unmarshal([]byte("lock_timeout: 90m\nrequires: {target: staging, bake: 30m}"), &r))
	require.Equal(t, 90*time.Minute, r.LockTimeout.D())
	require.Equal(t, 30*time.Minute, r.Requires.Bake.D())
	require.Error(t, yaml.Unmarshal([]byte("lock_timeout: soon"), &r))
}
