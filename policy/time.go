package policy

import (
	"sort"
	"time"
)

// civil is a calendar date without a zone.
type civil struct {
	y int
	m time.Month
	d int
}

func civilOf(t time.Time) civil {
	y, m, d := t.Date()
	return civil{y, m, d}
}

func (c civil) noon() time.Time { return time.Date(c.y, c.m, c.d, 12, 0, 0, 0, time.UTC) }

func (c civil) add(days int) civil { return civilOf(c.noon().AddDate(0, 0, days)) }

func (c civil) weekday() time.Weekday { return c.noon().Weekday() }

func (c civil) before(o civil) bool { return c.noon().Before(o.noon()) }

func (c civil) String() string { return c.noon().Format(time.DateOnly) }

// localTime returns the instant at which loc's clock shows day at minute
// (after midnight; 1440 is the next midnight). A local time that does not
// exist (the clocks jump forward over it) moves forward to the end of the
// jump; an ambiguous one (the clocks fall back over it) is its first
// occurrence.
func localTime(day civil, minute int, loc *time.Location) time.Time {
	if minute >= 24*60 {
		day, minute = day.add(minute/(24*60)), minute%(24*60)
	}
	naive := time.Date(day.y, day.m, day.d, minute/60, minute%60, 0, 0, time.UTC).Unix()
	_, before := time.Unix(naive-86400, 0).In(loc).Zone()
	_, after := time.Unix(naive+86400, 0).In(loc).Zone()
	var best time.Time
	found := false
	for _, off := range []int{before, after} {
		t := time.Unix(naive-int64(off), 0).In(loc)
		if _, o := t.Zone(); o == off && (!found || t.Before(best)) {
			best, found = t, true
		}
	}
	if found {
		return best.UTC()
	}
	// In the gap: under the old offset the wall time lies just past the
	// jump, whose zone starts at the jump.
	t := time.Unix(naive-int64(before), 0).In(loc)
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return t.UTC()
	}
	return start.UTC()
}

type interval struct{ from, to time.Time }

func (iv interval) contains(t time.Time) bool { return !t.Before(iv.from) && t.Before(iv.to) }

func clip(ivs []interval, s, e, from, to time.Time) []interval {
	if s.Before(from) {
		s = from
	}
	if e.After(to) {
		e = to
	}
	if s.Before(e) {
		ivs = append(ivs, interval{s, e})
	}
	return ivs
}

func merge(ivs []interval) []interval {
	if len(ivs) < 2 {
		return ivs
	}
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].from.Before(ivs[j].from) })
	out := ivs[:1]
	for _, iv := range ivs[1:] {
		last := &out[len(out)-1]
		if !iv.from.After(last.to) {
			if iv.to.After(last.to) {
				last.to = iv.to
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

func subtract(ivs []interval, s, e time.Time) []interval {
	var out []interval
	for _, iv := range ivs {
		if !iv.to.After(s) || !iv.from.Before(e) {
			out = append(out, iv)
			continue
		}
		if iv.from.Before(s) {
			out = append(out, interval{iv.from, s})
		}
		if iv.to.After(e) {
			out = append(out, interval{e, iv.to})
		}
	}
	return out
}

// windowIntervals returns the change windows' open intervals overlapping
// [from, to), merged; no windows means always open.
func (t *TargetRules) windowIntervals(from, to time.Time) []interval {
	if !from.Before(to) {
		return nil
	}
	if len(t.windows) == 0 {
		return []interval{{from, to}}
	}
	var ivs []interval
	for _, w := range t.windows {
		last := civilOf(to.In(w.loc))
		for d := civilOf(from.In(w.loc)).add(-1); !last.before(d); d = d.add(1) {
			if !w.days[d.weekday()] {
				continue
			}
			s := localTime(d, w.from, w.loc)
			var e time.Time
			if w.to > w.from {
				e = localTime(d, w.to, w.loc)
			} else {
				e = localTime(d.add(1), w.to, w.loc)
			}
			ivs = clip(ivs, s, e, from, to)
		}
	}
	return merge(ivs)
}

func (b cblackout) span() interval {
	return interval{localTime(b.from, 0, b.loc), localTime(b.to.add(1), 0, b.loc)}
}

// allowed returns the intervals in [from, to) when the time rules let a
// deployment start: inside a window and outside every blackout.
func (t *TargetRules) allowed(from, to time.Time) []interval {
	ivs := t.windowIntervals(from, to)
	for _, b := range t.blackouts {
		sp := b.span()
		ivs = subtract(ivs, sp.from, sp.to)
	}
	return ivs
}

// InWindow reports whether a change window is open at t (true without windows).
func (t *TargetRules) InWindow(at time.Time) bool {
	return len(t.windowIntervals(at, at.Add(time.Nanosecond))) > 0
}

// Blackout returns the blackout in force at t, if any.
func (t *TargetRules) Blackout(at time.Time) (reason string, until time.Time, ok bool) {
	for _, b := range t.blackouts {
		if sp := b.span(); sp.contains(at) {
			r := b.reason
			if r == "" {
				r = "blackout " + b.from.String() + " to " + b.to.String()
			}
			return r, sp.to, true
		}
	}
	return "", time.Time{}, false
}

const chunk = 31 * 24 * time.Hour

// NextOpen returns the first instant at or after at when the time rules
// (windows, blackouts) allow a deployment to start; false when none comes
// within Horizon.
func (t *TargetRules) NextOpen(at time.Time) (time.Time, bool) {
	for start := at; start.Sub(at) < Horizon; start = start.Add(chunk) {
		if ivs := t.allowed(start, start.Add(chunk)); len(ivs) > 0 {
			return ivs[0].from, true
		}
	}
	return time.Time{}, false
}

// OpenTime returns how much of [from, to) the time rules allow.
func (t *TargetRules) OpenTime(from, to time.Time) time.Duration {
	var sum time.Duration
	if to.Sub(from) > Horizon {
		from = to.Add(-Horizon)
	}
	for start := from; start.Before(to); start = start.Add(chunk) {
		end := start.Add(chunk)
		if end.After(to) {
			end = to
		}
		for _, iv := range t.allowed(start, end) {
			sum += iv.to.Sub(iv.from)
		}
	}
	return sum
}

// OpenUntil returns the instant at which d of allowed time has passed
// since from; false when that does not happen within Horizon.
func (t *TargetRules) OpenUntil(from time.Time, d time.Duration) (time.Time, bool) {
	left := d
	for start := from; start.Sub(from) < Horizon; start = start.Add(chunk) {
		for _, iv := range t.allowed(start, start.Add(chunk)) {
			if l := iv.to.Sub(iv.from); l >= left {
				return iv.from.Add(left), true
			} else {
				left -= l
			}
		}
	}
	return time.Time{}, false
}
