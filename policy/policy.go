// Package policy is ICA's deployment policy per target: which branches may
// deploy, change windows and blackouts, one deployment at a time, how many
// approvers each step needs, promotion from another target, and how long an
// approved approval may be used. It is pure: no I/O, time is passed in.
// The store gathers the facts (the approval, its run, the lock, incidents,
// staging evidence) and asks Evaluate for the verdict; the card, the API,
// the pipeline client and the REST-check callback all show that verdict.
//
// A Policy is recorded in the ledger: Compile gives it a canonical hash, and
// Diff lists what changed between two of them.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	// A container without zoneinfo still knows Europe/Berlin.
	_ "time/tzdata"

	"gopkg.in/yaml.v3"

	"github.com/ica-governance/ica"
)

// Defaults.
const (
	// DefaultUseWindow is how long an approved approval opens the gate
	// (ICA_APPROVAL_USE_WINDOW): gate-open time after the later of its last
	// decision and opens_at.
	DefaultUseWindow = 4 * time.Hour
	// DefaultLockTimeout is how long a deployment lock is held at most.
	DefaultLockTimeout = 2 * time.Hour
	// Horizon bounds every search for the next open time.
	Horizon = 400 * 24 * time.Hour
)

// Exclusive lock modes.
const (
	ExclusiveOff        = ""
	ExclusiveSequential = "sequential"
	ExclusiveLatest     = "latest"
)

// Lock scopes.
const (
	ScopePipeline = "pipeline"
	ScopeTarget   = "target"
)

// What a gate can wait for (waiting_for).
const (
	WaitApproval  = "approval"
	WaitWindow    = "window"
	WaitBlackout  = "blackout"
	WaitLock      = "lock"
	WaitNotBefore = "not_before"
	WaitPromotion = "promotion"
	WaitFreeze    = "freeze"
)

// Duration is a time.Duration written as "30m" or "2h" in YAML and JSON.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("not a duration: %s", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 30m or 2h", s)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30m or 2h", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Window is a recurring change window: on the listed days (the day the
// window starts), from one local time to another. A window whose "to" is
// not after its "from" crosses midnight (22:00 to 06:00).
type Window struct {
	Days []string `yaml:"days,omitempty" json:"days,omitempty"`
	From string   `yaml:"from" json:"from"`
	To   string   `yaml:"to" json:"to"`
	TZ   string   `yaml:"tz,omitempty" json:"tz,omitempty"`
}

// Blackout is a span of whole days (in its zone, "to" inclusive) when no
// deployment may start.
type Blackout struct {
	From   string `yaml:"from" json:"from"`
	To     string `yaml:"to" json:"to"`
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`
	TZ     string `yaml:"tz,omitempty" json:"tz,omitempty"`
}

// Requirement is promotion from another target: a deployment of the same
// commit there, reported and baked for a while.
type Requirement struct {
	Target string   `yaml:"target" json:"target"`
	Bake   Duration `yaml:"bake,omitempty" json:"bake,omitempty"`
}

// Rules are the deployment rules of one target, as written under
// approval.targets.<target> in ica.yaml.
type Rules struct {
	// Branches are globs on the run's branch ("refs/heads/main",
	// "refs/heads/release/*"); empty: any branch.
	Branches []string `yaml:"branches,omitempty" json:"branches,omitempty"`
	// TZ is the zone of windows and blackouts that name none (default UTC).
	TZ        string     `yaml:"tz,omitempty" json:"tz,omitempty"`
	Windows   []Window   `yaml:"windows,omitempty" json:"windows,omitempty"`
	Blackouts []Blackout `yaml:"blackouts,omitempty" json:"blackouts,omitempty"`
	// Exclusive is "", "sequential" or "latest".
	Exclusive   string   `yaml:"exclusive,omitempty" json:"exclusive,omitempty"`
	LockScope   string   `yaml:"lock_scope,omitempty" json:"lock_scope,omitempty"`
	LockTimeout Duration `yaml:"lock_timeout,omitempty" json:"lock_timeout,omitempty"`
	// TechnicalRequired and BusinessRequired are how many distinct people
	// each step needs (default 1).
	TechnicalRequired int          `yaml:"technical_required,omitempty" json:"technical_required,omitempty"`
	BusinessRequired  int          `yaml:"business_required,omitempty" json:"business_required,omitempty"`
	Requires          *Requirement `yaml:"requires,omitempty" json:"requires,omitempty"`
}

// Target is everything the policy says about one deployment target: who
// approves, how long an approval waits, and the rules.
type Target struct {
	Timeout            Duration `json:"timeout,omitempty"`
	TechnicalApprovers []string `json:"technical_approvers,omitempty"`
	BusinessApprovers  []string `json:"business_approvers,omitempty"`
	TechnicalChannel   string   `json:"technical_channel,omitempty"`
	BusinessChannel    string   `json:"business_channel,omitempty"`
	Rules
}

// Policy is the whole deployment policy, the document that is hashed and
// recorded in the ledger.
type Policy struct {
	UseWindow        Duration          `json:"use_window"`
	FinanceThreshold float64           `json:"finance_threshold,omitempty"`
	FinanceApprovers []string          `json:"finance_approvers,omitempty"`
	Targets          map[string]Target `json:"targets"`
}

// Targets are the deployment targets a policy may name.
var Targets = []string{ica.TargetStaging, ica.TargetProduction}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// key names a setting the way ica.yaml spells it.
func key(target string, rest ...string) string {
	return "approval.targets." + target + strings.Join(rest, "")
}

func bad(k, format string, args ...any) error {
	return ica.FieldErrorf(ica.EINVALID, k, "%s: %s", k, fmt.Sprintf(format, args...))
}

// parseClock reads "HH:MM" (00:00 to 24:00) as minutes after midnight.
func parseClock(s string) (int, bool) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, false
	}
	return hh*60 + mm, true
}

// loadZone loads an IANA zone name ("" is UTC).
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if strings.EqualFold(name, "local") {
		return nil, fmt.Errorf("the zone must be named (Local depends on the host)")
	}
	return time.LoadLocation(name)
}

// normalise fills in defaults so that equal policies hash equally.
func (p *Policy) normalise() {
	if p.UseWindow <= 0 {
		p.UseWindow = Duration(DefaultUseWindow)
	}
	if p.Targets == nil {
		p.Targets = map[string]Target{}
	}
	for name, t := range p.Targets {
		if t.TZ == "" {
			t.TZ = "UTC"
		}
		if t.TechnicalRequired == 0 {
			t.TechnicalRequired = 1
		}
		if t.BusinessRequired == 0 {
			t.BusinessRequired = 1
		}
		if t.Exclusive != ExclusiveOff {
			if t.LockScope == "" {
				t.LockScope = ScopePipeline
			}
			if t.LockTimeout == 0 {
				t.LockTimeout = Duration(DefaultLockTimeout)
			}
		}
		for i := range t.Windows {
			for j, d := range t.Windows[i].Days {
				t.Windows[i].Days[j] = strings.ToLower(strings.TrimSpace(d))
			}
		}
		p.Targets[name] = t
	}
}

// Validate checks a policy and names the first bad key the way ica.yaml
// spells it (approval.targets.production.windows[0].from).
func (p *Policy) Validate() error {
	if p.UseWindow < 0 {
		return bad("approval.use_window", "must not be negative")
	}
	names := make([]string, 0, len(p.Targets))
	for n := range p.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if !slices.Contains(Targets, name) {
			return bad(key(name), "unknown target %q (staging or production)", name)
		}
		if err := p.validateTarget(name, p.Targets[name]); err != nil {
			return err
		}
	}
	return nil
}

func (p *Policy) validateTarget(name string, t Target) error {
	if _, err := loadZone(t.TZ); err != nil {
		return bad(key(name, ".tz"), "unknown time zone %q", t.TZ)
	}
	for i, b := range t.Branches {
		if strings.TrimSpace(b) == "" {
			return bad(key(name, fmt.Sprintf(".branches[%d]", i)), "empty branch pattern")
		}
	}
	for i, w := range t.Windows {
		k := key(name, fmt.Sprintf(".windows[%d]", i))
		if len(w.Days) == 0 {
			return bad(k+".days", "list the days the window opens on (mon, tue, …)")
		}
		for _, d := range w.Days {
			if _, ok := dayNames[strings.ToLower(strings.TrimSpace(d))]; !ok {
				return bad(k+".days", "unknown day %q (mon, tue, wed, thu, fri, sat, sun)", d)
			}
		}
		from, ok := parseClock(w.From)
		if !ok {
			return bad(k+".from", "%q is not a time HH:MM", w.From)
		}
		to, ok := parseClock(w.To)
		if !ok {
			return bad(k+".to", "%q is not a time HH:MM", w.To)
		}
		if from == to {
			return bad(k+".to", "the window opens and closes at the same time")
		}
		if from == 24*60 {
			return bad(k+".from", "a window cannot open at 24:00")
		}
		if w.TZ != "" {
			if _, err := loadZone(w.TZ); err != nil {
				return bad(k+".tz", "unknown time zone %q", w.TZ)
			}
		}
	}
	for i, b := range t.Blackouts {
		k := key(name, fmt.Sprintf(".blackouts[%d]", i))
		f, err := time.Parse(time.DateOnly, strings.TrimSpace(b.From))
		if err != nil {
			return bad(k+".from", "%q is not a date YYYY-MM-DD", b.From)
		}
		to, err := time.Parse(time.DateOnly, strings.TrimSpace(b.To))
		if err != nil {
			return bad(k+".to", "%q is not a date YYYY-MM-DD", b.To)
		}
		if to.Before(f) {
			return bad(k+".to", "%s is before from %s", b.To, b.From)
		}
		if b.TZ != "" {
			if _, err := loadZone(b.TZ); err != nil {
				return bad(k+".tz", "unknown time zone %q", b.TZ)
			}
		}
	}
	switch t.Exclusive {
	case ExclusiveOff, ExclusiveSequential, ExclusiveLatest:
	default:
		return bad(key(name, ".exclusive"), "%q is not sequential or latest", t.Exclusive)
	}
	switch t.LockScope {
	case "", ScopePipeline, ScopeTarget:
	default:
		return bad(key(name, ".lock_scope"), "%q is not pipeline or target", t.LockScope)
	}
	if t.LockTimeout < 0 {
		return bad(key(name, ".lock_timeout"), "must not be negative")
	}
	if t.TechnicalRequired < 0 || t.TechnicalRequired > 20 {
		return bad(key(name, ".technical_required"), "must be from 1 to 20")
	}
	if t.BusinessRequired < 0 || t.BusinessRequired > 20 {
		return bad(key(name, ".business_required"), "must be from 1 to 20")
	}
	if r := t.Requires; r != nil {
		if !slices.Contains(Targets, r.Target) {
			return bad(key(name, ".requires.target"), "%q is not staging or production", r.Target)
		}
		if r.Target == name {
			return bad(key(name, ".requires.target"), "a target cannot require itself")
		}
		if r.Bake < 0 {
			return bad(key(name, ".requires.bake"), "must not be negative")
		}
	}
	return p.satisfiable(name, t)
}

// satisfiable refuses a required number that the configured username
// lists can never meet. A step whose approvers come from a channel is
// checked when a request arrives (its members change).
func (p *Policy) satisfiable(name string, t Target) error {
	tech := distinct(t.TechnicalApprovers)
	biz := distinct(t.BusinessApprovers)
	techN, bizN := max(t.TechnicalRequired, 1), max(t.BusinessRequired, 1)
	check := func(n, explicit int, have []string, channel, k, step string) error {
		if channel != "" || (len(have) == 0 && explicit <= 1) {
			return nil
		}
		if n > len(have) {
			return bad(key(name, k), "%d %s approvals are required but only %d %s approvers are listed (%s)",
				n, step, len(have), step, strings.Join(have, ", "))
		}
		return nil
	}
	if err := check(techN, t.TechnicalRequired, tech, t.TechnicalChannel, ".technical_required", "technical"); err != nil {
		return err
	}
	if err := check(bizN, t.BusinessRequired, biz, t.BusinessChannel, ".business_required", "business"); err != nil {
		return err
	}
	if t.TechnicalChannel == "" && t.BusinessChannel == "" && len(tech) > 0 && len(biz) > 0 {
		people := distinct(append(append([]string{}, tech...), biz...))
		if techN+bizN > len(people) {
			return bad(key(name, ".business_required"), "%d technical and %d business approvals need %d different people (one person never counts on both steps), but only %d are listed",
				techN, bizN, techN+bizN, len(people))
		}
	}
	return nil
}

func distinct(list []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, u := range list {
		l := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(u), "@"))
		if l != "" && !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// Compiled is a validated policy ready to evaluate, with its hash.
type Compiled struct {
	Policy  Policy
	Hash    string
	targets map[string]*TargetRules
}

// Compile validates p, fills in defaults and hashes the result.
func Compile(p Policy) (*Compiled, error) {
	p = p.clone()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p.normalise()
	c := &Compiled{Policy: p, targets: map[string]*TargetRules{}}
	canon, err := p.Canonical()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(canon)
	c.Hash = hex.EncodeToString(sum[:])
	for name, t := range p.Targets {
		tr, err := compileTarget(name, t)
		if err != nil {
			return nil, err
		}
		c.targets[name] = tr
	}
	return c, nil
}

// MustCompile is Compile for policies known to be valid (tests, defaults).
func MustCompile(p Policy) *Compiled {
	c, err := Compile(p)
	if err != nil {
		panic(err)
	}
	return c
}

var emptyPolicy = MustCompile(Policy{})

// Empty is the policy of a ledger that has none recorded: no rules.
func Empty() *Compiled { return emptyPolicy }

func (p Policy) clone() Policy {
	raw, _ := json.Marshal(p)
	var out Policy
	_ = json.Unmarshal(raw, &out)
	return out
}

// Canonical returns the canonical JSON of the policy (sorted keys, no
// insignificant space): what is hashed and recorded.
func (p Policy) Canonical() ([]byte, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return ica.CanonicalJSON(raw)
}

// Target returns the rules of a target; a target the policy does not name
// has none (any branch, any time, no lock, one approver per step).
func (c *Compiled) Target(name string) *TargetRules {
	if c != nil {
		if t := c.targets[name]; t != nil {
			return t
		}
	}
	t, _ := compileTarget(name, Target{Rules: Rules{TZ: "UTC", TechnicalRequired: 1, BusinessRequired: 1}})
	return t
}

// UseWindow is how long an approved approval may be used.
func (c *Compiled) UseWindow() time.Duration {
	if c == nil || c.Policy.UseWindow <= 0 {
		return DefaultUseWindow
	}
	return c.Policy.UseWindow.D()
}

// ShortHash is the hash as shown to people (12 hex digits).
func ShortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// TargetRules is one target's compiled rules.
type TargetRules struct {
	Name string
	Target
	loc       *time.Location
	branches  []*regexp.Regexp
	windows   []cwindow
	blackouts []cblackout
}

type cwindow struct {
	days     [7]bool
	from, to int // minutes after midnight; to <= from crosses midnight
	loc      *time.Location
	text     string
}

type cblackout struct {
	from, to civil // to inclusive
	loc      *time.Location
	reason   string
}

func compileTarget(name string, t Target) (*TargetRules, error) {
	loc, err := loadZone(t.TZ)
	if err != nil {
		return nil, bad(key(name, ".tz"), "unknown time zone %q", t.TZ)
	}
	tr := &TargetRules{Name: name, Target: t, loc: loc}
	for _, b := range t.Branches {
		tr.branches = append(tr.branches, globRegexp(strings.TrimSpace(b)))
	}
	for _, w := range t.Windows {
		cw := cwindow{loc: loc}
		if w.TZ != "" {
			cw.loc, _ = loadZone(w.TZ)
		}
		for _, d := range w.Days {
			cw.days[dayNames[strings.ToLower(strings.TrimSpace(d))]] = true
		}
		cw.from, _ = parseClock(w.From)
		cw.to, _ = parseClock(w.To)
		cw.text = fmt.Sprintf("%s %s–%s %s", strings.Join(w.Days, ","), w.From, w.To, cw.loc)
		tr.windows = append(tr.windows, cw)
	}
	for _, b := range t.Blackouts {
		cb := cblackout{loc: loc, reason: b.Reason}
		if b.TZ != "" {
			cb.loc, _ = loadZone(b.TZ)
		}
		f, _ := time.Parse(time.DateOnly, strings.TrimSpace(b.From))
		to, _ := time.Parse(time.DateOnly, strings.TrimSpace(b.To))
		cb.from, cb.to = civilOf(f), civilOf(to)
		tr.blackouts = append(tr.blackouts, cb)
	}
	return tr, nil
}

// globRegexp turns a branch glob into a regular expression: "*" matches
// any run of characters (slashes included, as Azure Pipelines' branch
// control does), "?" one character.
func globRegexp(g string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range g {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// BranchAllowed reports whether a run's branch may deploy to the target. A
// pattern that does not start with "refs/" also matches refs/heads/<pattern>.
func (t *TargetRules) BranchAllowed(branch string) bool {
	if len(t.branches) == 0 {
		return true
	}
	for i, re := range t.branches {
		if re.MatchString(branch) {
			return true
		}
		if !strings.HasPrefix(t.Branches[i], "refs/") && re.MatchString(strings.TrimPrefix(branch, "refs/heads/")) {
			return true
		}
	}
	return false
}

// BranchRefusal is the message for a run whose branch may not deploy.
func (t *TargetRules) BranchRefusal(runID, branch string) string {
	return fmt.Sprintf("%s accepts deployments only from %s; run %s is from %s",
		t.Name, strings.Join(t.Branches, ", "), runID, branch)
}

// Exclusive reports whether deployments to the target take a lock.
func (t *TargetRules) Exclusive() bool { return t.Target.Exclusive != ExclusiveOff }

// LockKey names the lock a deployment of pipeline to the target takes.
func (t *TargetRules) LockKey(pipeline string) string {
	if t.LockScope == ScopeTarget {
		return t.Name
	}
	return t.Name + "/" + pipeline
}

// Location is the target's time zone.
func (t *TargetRules) Location() *time.Location { return t.loc }

// NextLocal returns the next time at or after now when the target's clock
// shows hh:mm ("22:00"), for "approve, effective at 22:00".
func (t *TargetRules) NextLocal(now time.Time, hhmm string) (time.Time, error) {
	m, ok := parseClock(hhmm)
	if !ok || m == 24*60 {
		return time.Time{}, ica.FieldErrorf(ica.EINVALID, "not_before", "%q is not a time HH:MM", hhmm)
	}
	day := civilOf(now.In(t.loc))
	for i := 0; i < 3; i++ {
		at := localTime(day.add(i), m, t.loc)
		if !at.Before(now) {
			return at, nil
		}
	}
	return time.Time{}, ica.FieldErrorf(ica.EINVALID, "not_before", "no %s follows %s", hhmm, now.Format(time.RFC3339))
}
