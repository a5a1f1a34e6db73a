package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Percentile returns the p-th percentile (0..100) of sorted durations by
// the nearest-rank method; zero for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Median returns the median of vs (the mean of the middle two for an even count).
func Median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Window is a measuring interval: work that completes inside [Start, End]
// is counted. Load runs before it (warm-up) and stops at End.
type Window struct {
	Start, End time.Time
}

// NewWindow returns the window that opens after warmup and lasts d.
func NewWindow(warmup, d time.Duration) Window {
	s := time.Now().Add(warmup)
	return Window{Start: s, End: s.Add(d)}
}

// Contains reports whether an operation from begin to end is counted.
func (w Window) Contains(begin, end time.Time) bool {
	return !begin.Before(w.Start) && !end.After(w.End)
}

// Open reports whether new work may begin at t.
func (w Window) Open(t time.Time) bool { return t.Before(w.End) }

// Duration is the length of the window.
func (w Window) Duration() time.Duration { return w.End.Sub(w.Start) }

// Latencies collects samples from many goroutines, each with its own
// shard so recording does not contend.
type Latencies struct {
	mu     sync.Mutex
	shards [][]time.Duration
}

// Shard returns a recorder for one goroutine; call Done when it finishes.
func (l *Latencies) Shard() *Shard { return &Shard{l: l} }

// Shard is one goroutine's samples.
type Shard struct {
	l *Latencies
	s []time.Duration
}

// Add records one sample.
func (s *Shard) Add(d time.Duration) { s.s = append(s.s, d) }

// Done hands the samples to the collection.
func (s *Shard) Done() {
	s.l.mu.Lock()
	s.l.shards = append(s.l.shards, s.s)
	s.l.mu.Unlock()
}

// Sorted returns all samples, sorted.
func (l *Latencies) Sorted() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var all []time.Duration
	for _, s := range l.shards {
		all = append(all, s...)
	}
	slices.Sort(all)
	return all
}

// Figure is one measured number with its target and baseline.
type Figure struct {
	Name     string
	Value    float64
	Unit     string // printed after the value: "/s", "ms", "MB", ""
	Target   string // e.g. ">= 3000", "< 25"; empty when there is none
	Baseline string // what it is compared with, if anything
	// Pass decides PASS/MISS; nil prints "-".
	Pass func(v float64) bool
	Note string
}

// AtLeast returns a pass function for v >= x.
func AtLeast(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }

// Below returns a pass function for v < x.
func Below(x float64) func(float64) bool { return func(v float64) bool { return v < x } }

// Verdict returns "PASS", "MISS" or "-".
func (f Figure) Verdict() string {
	if f.Pass == nil {
		return "-"
	}
	if f.Pass(f.Value) {
		return "PASS"
	}
	return "MISS"
}

func formatValue(v float64, unit string) string {
	var s string
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		s = fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		s = fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if unit == "" {
		return s
	}
	if strings.HasPrefix(unit, "/") {
		return s + unit
	}
	return s + " " + unit
}

// PrintFigures writes a table of figures and returns whether every figure
// with a target passed.
func PrintFigures(w io.Writer, title string, figs []Figure) bool {
	rows := [][]string{{"figure", "value", "target", "baseline", "result"}}
	ok := true
	for _, f := range figs {
		v := f.Verdict()
		if v == "MISS" {
			ok = false
		}
		target := f.Target
		if target == "" {
			target = "-"
		}
		base := f.Baseline
		if base == "" {
			base = "-"
		}
		rows = append(rows, []string{f.Name, formatValue(f.Value, f.Unit), target, base, v})
	}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	fmt.Fprintf(w, "\n%s\n", title)
	for i, r := range rows {
		var b strings.Builder
		for j, c := range r {
			pad := width[j] - len([]rune(c))
			if j == 1 { // numbers right-aligned
				b.WriteString(strings.Repeat(" ", pad) + c)
			} else {
				b.WriteString(c + strings.Repeat(" ", pad))
			}
			if j < len(r)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if i == 0 {
			fmt.Fprintln(w, strings.Repeat("-", b.Len()))
		}
	}
	for _, f := range figs {
		if f.Note != "" {
			fmt.Fprintf(w, "  * %s: %s\n", f.Name, f.Note)
		}
	}
	return ok
}

// Ms converts a duration to float milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// MB converts bytes to MiB.
func MB(b int64) float64 { return float64(b) / (1 << 20) }

// MedianOf is the median of f over reps.
func MedianOf[T any](reps []T, f func(T) float64) float64 {
	vs := make([]float64, 0, len(reps))
	for _, r := range reps {
		vs = append(vs, f(r))
	}
	return Median(vs)
}
