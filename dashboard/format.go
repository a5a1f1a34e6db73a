package dashboard

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// money formats US dollars with thousands separators: $12,345.67.
func money(v float64) string {
	neg := v < 0
	cents := int64(math.Round(math.Abs(v) * 100))
	whole, frac := cents/100, cents%100
	s := fmt.Sprint(whole)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	out := fmt.Sprintf("$%s.%02d", b.String(), frac)
	if neg {
		return "-" + out
	}
	return out
}

// amountIn formats an amount in its currency: money for ICA's (USD), "EUR
// 1,234.00" for another, which is shown, never summed with ICA's figures.
func amountIn(v float64, currency string) string {
	c := strings.TrimSpace(currency)
	if c == "" || strings.EqualFold(c, ica.Currency) || c == "$" {
		return money(v)
	}
	return ica.ShowText(c) + " " + strings.TrimPrefix(money(v), "$")
}

// pct formats a fraction as a percentage: 0.953 → 95%, 0.0042 → 0.4%.
func pct(v float64) string {
	p := v * 100
	if p != 0 && math.Abs(p) < 10 && p != math.Trunc(p) {
		return fmt.Sprintf("%.1f%%", p)
	}
	return fmt.Sprintf("%.0f%%", p)
}

// dur formats seconds for people, compactly: "45s", "12m", "1h 05m", "2d 3h".
func dur(sec float64) string {
	d := time.Duration(math.Round(sec)) * time.Second
	switch {
	case d < 0:
		return "-" + dur(-sec)
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		h := int(d.Hours())
		return fmt.Sprintf("%dh %02dm", h, int(d.Minutes())-60*h)
	}
	days := int(d.Hours()) / 24
	return fmt.Sprintf("%dd %dh", days, int(d.Hours())-24*days)
}

// distCell formats a Dist as "median / p90" or "–".
func distCell(d Dist) string {
	if d.N == 0 {
		return "–"
	}
	return dur(d.MedianSeconds) + " / " + dur(d.P90Seconds)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// when formats a time in a table: "27 Nov 06:38" (UTC, said in the header).
func when(t time.Time) string { return t.UTC().Format("2 Jan 15:04") }

// weekOf formats a week's Monday (YYYY-MM-DD): "5 Oct".
func weekOf(day string) string {
	t, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return day
	}
	return t.Format("2 Jan")
}

func shortHash(h string) string {
	if len(h) <= 16 {
		return h
	}
	return h[:16] + "…"
}

// budgetState says a budget state in words.
func budgetState(s string) string {
	switch s {
	case BudgetOnTrack:
		return "On track"
	case BudgetForecastOverThreshold:
		return "Forecast passes the approval gate"
	case BudgetOverThreshold:
		return "Past the approval gate: new approvals are refused"
	case BudgetOverBudget:
		return "Over budget"
	}
	return "No monthly budget is set"
}
