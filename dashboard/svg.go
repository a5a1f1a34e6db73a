package dashboard

// Server-side SVG charts. Each chart is drawn twice, wide (laptop) and narrow
// (phone), and CSS shows the one that fits, so text stays readable without
// scaling a wide drawing down to a phone. Colours are the Okabe–Ito palette
// (distinguishable with the common colour-vision deficiencies); every series
// also has a legend, a tooltip (<title>) per mark and a data table.

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"
)

// Colours (Okabe–Ito).
const (
	colBlue       = "#0072B2"
	colOrange     = "#E69F00"
	colGreen      = "#009E73"
	colVermillion = "#D55E00"
	colSky        = "#56B4E9"
	colGrey       = "#8C8C8C"
	colInk        = "#1F2328"
	colMuted      = "#57606A"
	colGrid       = "#D8DEE4"
)

// size is one drawing of a chart.
type size struct {
	W, H       float64
	L, R, T, B float64 // margins
	Font       float64
	narrow     bool
}

var (
	wide   = size{W: 640, H: 280, L: 58, R: 16, T: 14, B: 34, Font: 13}
	narrow = size{W: 360, H: 260, L: 46, R: 10, T: 12, B: 32, Font: 12, narrow: true}
	// sla leaves room on the right for the target lines' labels.
	slaWide   = size{W: 640, H: 280, L: 46, R: 76, T: 14, B: 34, Font: 13}
	slaNarrow = size{W: 360, H: 260, L: 40, R: 44, T: 12, B: 32, Font: 12, narrow: true}
)

func (s size) plotW() float64 { return s.W - s.L - s.R }
func (s size) plotH() float64 { return s.H - s.T - s.B }

// svgDoc accumulates one SVG element.
type svgDoc struct {
	b strings.Builder
	s size
}

func newSVG(s size, id, title, desc string) *svgDoc {
	d := &svgDoc{s: s}
	cls := "chart chart-wide"
	if s.narrow {
		cls = "chart chart-narrow"
		id += "-n"
	}
	fmt.Fprintf(&d.b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" class="%s" role="img" aria-labelledby="%s-t %s-d" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" font-size="%g">`,
		s.W, s.H, cls, id, id, s.Font)
	fmt.Fprintf(&d.b, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, id, esc(title), id, esc(desc))
	return d
}

func (d *svgDoc) done() string { d.b.WriteString("</svg>"); return d.b.String() }

func esc(s string) string { return html.EscapeString(s) }

func (d *svgDoc) printf(format string, args ...any) { fmt.Fprintf(&d.b, format, args...) }

// rect draws a bar with a tooltip.
func (d *svgDoc) rect(x, y, w, h float64, fill, tip string) {
	if h <= 0 || w <= 0 {
		return
	}
	d.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`, x, y, w, h, fill, esc(tip))
}

func (d *svgDoc) text(x, y float64, anchor, fill, s string) {
	d.printf(`<text x="%.1f" y="%.1f" text-anchor="%s" fill="%s">%s</text>`, x, y, anchor, fill, esc(s))
}

func (d *svgDoc) hline(y float64, stroke, dash string, width float64) {
	extra := ""
	if dash != "" {
		extra = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
	}
	d.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%g"%s/>`, d.s.L, y, d.s.W-d.s.R, y, stroke, width, extra)
}

// yAxis draws grid lines and labels for 0..ymax and returns the scale.
func (d *svgDoc) yAxis(ymax float64, label func(float64) string) func(float64) float64 {
	step := niceStep(ymax / 5)
	top := math.Ceil(ymax/step) * step
	if top <= 0 {
		top, step = 1, 1
	}
	y := func(v float64) float64 { return d.s.T + d.s.plotH()*(1-v/top) }
	for v := 0.0; v <= top+step/2; v += step {
		d.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>`, d.s.L, y(v), d.s.W-d.s.R, y(v), colGrid)
		d.text(d.s.L-6, y(v)+d.s.Font*0.35, "end", colMuted, label(v))
	}
	return y
}

// niceStep rounds a raw step up to 1, 2, 2.5 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func moneyShort(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("$%gM", math.Round(v/1e5)/10)
	case v >= 1e3:
		return fmt.Sprintf("$%gk", math.Round(v/1e2)/10)
	}
	return fmt.Sprintf("$%g", math.Round(v))
}

func shortDay(day string, narrow bool) string {
	t, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return day
	}
	if narrow {
		return t.Format("2 Jan")
	}
	return t.Format("Jan 2")
}

// both draws a chart wide and narrow.
func both(draw func(s size) string) template.HTML { return bothOf(wide, narrow, draw) }

func bothOf(w, n size, draw func(s size) string) template.HTML {
	return template.HTML(draw(w) + draw(n)) // #nosec: built from escaped parts
}

// budgetChart: cumulative spend this month, the forecast to the month's end,
// the budget and the approval gate's threshold.
func budgetChart(b *BudgetStats) template.HTML {
	return both(func(s size) string {
		desc := fmt.Sprintf("Month-to-date spend %s of budget %s; threshold %s; month-end forecast %s.",
			money(b.MonthToDate), money(b.MonthlyBudget), money(b.ThresholdUSD), money(b.Forecast))
		d := newSVG(s, "budget-chart", "Spend this month against the budget", desc)
		ymax := max(b.MonthlyBudget, b.Forecast, b.MonthToDate, 1) * 1.08
		y := d.yAxis(ymax, moneyShort)
		n := float64(max(b.DaysInMonth, 1))
		// x(day) is the end of that day (day 0 is the month's start).
		x := func(day float64) float64 { return s.L + s.plotW()*day/n }
		for _, day := range []int{1, 5, 10, 15, 20, 25, b.DaysInMonth} {
			if s.narrow && (day == 5 || day == 15 || day == 25) {
				continue
			}
			if day > b.DaysInMonth || (day == 25 && b.DaysInMonth-day < 3) {
				continue
			}
			d.text(x(float64(day)-0.5), s.H-s.B+s.Font+6, "middle", colMuted, fmt.Sprint(day))
		}
		// Area and line of the running total.
		if len(b.Days) > 0 {
			var pts strings.Builder
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(0), y(0))
			for i, ds := range b.Days {
				fmt.Fprintf(&pts, "%.1f,%.1f ", x(float64(i+1)), y(ds.Cumulative))
			}
			line := strings.TrimSpace(pts.String())
			area := line + fmt.Sprintf(" %.1f,%.1f", x(float64(len(b.Days))), y(0))
			d.printf(`<polygon points="%s" fill="%s" fill-opacity="0.18"/>`, area, colBlue)
			d.printf(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2.5" stroke-linejoin="round"/>`, line, colBlue)
			for i, ds := range b.Days {
				d.printf(`<circle cx="%.1f" cy="%.1f" r="%g" fill="%s"><title>%s</title></circle>`, x(float64(i+1)), y(ds.Cumulative), 3.5, colBlue,
					esc(fmt.Sprintf("%s: %s that day, %s month to date", ds.Day, money(ds.Spend), money(ds.Cumulative))))
			}
			// Forecast: from today's total to the month's end.
			today := float64(len(b.Days))
			if today < n {
				d.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2.5" stroke-dasharray="3 5" stroke-linecap="round"><title>%s</title></line>`,
					x(today), y(b.MonthToDate), x(n), y(b.Forecast), colBlue, esc("Forecast at month end: "+money(b.Forecast)))
			}
		}
		if b.MonthlyBudget > 0 {
			d.hline(y(b.MonthlyBudget), colInk, "", 2)
			d.text(s.W-s.R-4, y(b.MonthlyBudget)-6, "end", colInk, "Budget "+moneyShort(b.MonthlyBudget))
			if b.ThresholdUSD > 0 && b.ThresholdUSD < b.MonthlyBudget {
				d.hline(y(b.ThresholdUSD), colVermillion, "8 5", 2)
				d.text(s.L+6, y(b.ThresholdUSD)+s.Font+4, "start", colVermillion,
					fmt.Sprintf("Gate %s (%s)", pct(b.Threshold), moneyShort(b.ThresholdUSD)))
			}
		}
		d.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, s.L, y(0), s.W-s.R, y(0), colMuted)
		return d.done()
	})
}

// slaChart: median time to the technical and the business decision per
// week, the 90th percentile as a whisker, and the 2 h and 4 h targets.
func slaChart(a *ApprovalStats) template.HTML {
	return bothOf(slaWide, slaNarrow, func(s size) string {
		d := newSVG(s, "sla-chart", "Time to decision per week",
			"Median and 90th percentile hours from request to technical and to business decision, per week, with the 2 hour and 4 hour targets.")
		peak := a.BusinessTargetSeconds
		for _, w := range a.Weeks {
			peak = max(peak, w.All.Technical.P90Seconds, w.All.Business.P90Seconds)
		}
		y := d.yAxis(peak/3600*1.1, func(v float64) string { return fmt.Sprintf("%g h", v) })
		n := float64(len(a.Weeks))
		gw := s.plotW() / max(n, 1)
		bw := gw * 0.32
		for i, w := range a.Weeks {
			gx := s.L + gw*float64(i)
			label := shortDay(w.Week, s.narrow)
			if s.narrow && i%2 == 1 {
				label = ""
			}
			d.text(gx+gw/2, s.H-s.B+s.Font+6, "middle", colMuted, label)
			for j, part := range []struct {
				name  string
				dist  Dist
				color string
			}{{"technical", w.All.Technical, colBlue}, {"business", w.All.Business, colOrange}} {
				if part.dist.N == 0 {
					continue
				}
				bx := gx + gw*0.16 + float64(j)*bw
				med, p90 := part.dist.MedianSeconds/3600, part.dist.P90Seconds/3600
				d.rect(bx, y(med), bw-2, y(0)-y(med), part.color,
					fmt.Sprintf("Week of %s, %s: median %s, 90th percentile %s (%d decisions)", w.Week, part.name,
						dur(part.dist.MedianSeconds), dur(part.dist.P90Seconds), part.dist.N))
				cx := bx + (bw-2)/2
				d.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`, cx, y(med), cx, y(p90), colInk)
				d.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`, cx-bw*0.3, y(p90), cx+bw*0.3, y(p90), colInk)
			}
		}
		for _, t := range []struct {
			sec   float64
			label string
		}{{a.TechnicalTargetSeconds, "technical"}, {a.BusinessTargetSeconds, "business"}} {
			yt := y(t.sec / 3600)
			d.hline(yt, colInk, "6 4", 1.5)
			d.text(s.W-s.R+4, yt+s.Font*0.35-func() float64 {
				if s.narrow {
					return 0
				}
				return s.Font * 0.55
			}(), "start", colInk, fmt.Sprintf("%g h", t.sec/3600))
			if !s.narrow {
				d.text(s.W-s.R+4, yt+s.Font*0.9, "start", colMuted, t.label)
			}
		}
		d.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, s.L, y(0), s.W-s.R, y(0), colMuted)
		return d.done()
	})
}

// runsChart: runs per day, stacked by status.
func runsChart(r *RunStats) template.HTML {
	return both(func(s size) string {
		d := newSVG(s, "runs-chart", "Runs per day by status",
			fmt.Sprintf("Runs started per day over %d days: %d succeeded, %d failed, %d cancelled, %d running.",
				len(r.Days), r.Totals.Success, r.Totals.Failed, r.Totals.Cancelled, r.Totals.Running))
		peak := 1
		for _, day := range r.Days {
			peak = max(peak, day.Total())
		}
		y := d.yAxis(float64(peak)*1.05, func(v float64) string { return fmt.Sprintf("%g", v) })
		bw := s.plotW() / float64(max(len(r.Days), 1))
		for i, day := range r.Days {
			x := s.L + bw*float64(i)
			base := 0.0
			for _, part := range []struct {
				n     int
				name  string
				color string
			}{{day.Success, "succeeded", colGreen}, {day.Failed, "failed", colVermillion},
				{day.Cancelled, "cancelled", colGrey}, {day.Running, "running", colSky}} {
				if part.n == 0 {
					continue
				}
				top := base + float64(part.n)
				d.rect(x+bw*0.12, y(top), bw*0.76, y(base)-y(top), part.color,
					fmt.Sprintf("%s: %d %s (%d runs)", day.Day, part.n, part.name, day.Total()))
				base = top
			}
			every := 5
			if s.narrow {
				every = 10
			}
			if (len(r.Days)-1-i)%every == 0 {
				lx, anchor := x+bw/2, "middle"
				if i == len(r.Days)-1 {
					lx, anchor = x+bw, "end" // the last label stays inside the drawing
				}
				d.text(lx, s.H-s.B+s.Font+6, anchor, colMuted, shortDay(day.Day, s.narrow))
			}
		}
		d.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, s.L, y(0), s.W-s.R, y(0), colMuted)
		return d.done()
	})
}

// incidentChart: unresolved incidents per severity, open and acknowledged.
func incidentChart(st *IncidentStats) template.HTML {
	return both(func(s size) string {
		s.H = 40 + float64(len(st.BySeverity))*30
		s.T, s.B = 8, 8
		d := newSVG(s, "incident-chart", "Unresolved incidents by severity",
			fmt.Sprintf("%d unresolved incidents.", st.Total))
		peak := 1
		for _, c := range st.BySeverity {
			peak = max(peak, c.Open+c.Acknowledged)
		}
		left := 56.0
		width := s.W - left - 60
		for i, c := range st.BySeverity {
			y := s.T + 6 + float64(i)*30
			d.text(left-8, y+16, "end", colInk, c.Severity)
			wOpen := width * float64(c.Open) / float64(peak)
			wAck := width * float64(c.Acknowledged) / float64(peak)
			d.rect(left, y, wOpen, 22, colVermillion, fmt.Sprintf("%s: %d open", c.Severity, c.Open))
			d.rect(left+wOpen, y, wAck, 22, colOrange, fmt.Sprintf("%s: %d acknowledged", c.Severity, c.Acknowledged))
			d.text(left+wOpen+wAck+6, y+16, "start", colInk, fmt.Sprint(c.Open+c.Acknowledged))
		}
		return d.done()
	})
}
