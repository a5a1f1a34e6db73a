package slashcmds

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// How many rows each view asks for. Replies are cut to MaxReplyBytes anyway.
const (
	listLimit     = 50
	recentLimit   = 10
	pipelineLimit = 15
	queryTimeout  = 10 * time.Second
)

// status answers "/ica status", "/ica status RUN_ID" and "/ica status PIPELINE".
func (h *Handler) status(ctx context.Context, c *call) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if len(c.Args) == 0 {
		return h.overview(ctx, c)
	}
	var words []string
	for _, a := range c.Args {
		if a.Key != "" {
			return "", ica.FieldErrorf(ica.EINVALID, a.Key, "status takes a run id or a pipeline name, not %s=", a.Key)
		}
		words = append(words, a.Value)
	}
	name := strings.Join(words, " ")
	if text, ok, err := h.approvalStatus(ctx, c, name); ok || err != nil { // proof.go
		return text, err
	}
	// A run id is tried first: ids are unique, pipeline names are not ids.
	if ica.ValidID("run_id", name) == nil {
		run, err := h.d.Queries.Run(ctx, name)
		switch {
		case err == nil:
			return h.runView(ctx, c, run)
		case ica.ErrorCode(err) != ica.ENOTFOUND:
			return "", err
		}
	}
	runs, err := h.d.Queries.PipelineRuns(ctx, name, pipelineLimit)
	if err != nil {
		return "", err
	}
	if len(runs) == 0 {
		return fmt.Sprintf("No run with id %s and no runs of a pipeline named %s.", mdCode(clip(name, 80)), mdCode(clip(name, 80))), nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#### Recent runs of pipeline %s\n\n", mdCode(clip(name, 80)))
	h.runsTable(&b, runs, c.At, true)
	return b.String(), nil
}

// overview is "/ica status" with no arguments.
func (h *Handler) overview(ctx context.Context, c *call) (string, error) {
	q := h.d.Queries
	pending, err := q.PendingApprovals(ctx, listLimit+1)
	if err != nil {
		return "", err
	}
	running, err := q.RunningRuns(ctx, listLimit+1)
	if err != nil {
		return "", err
	}
	recent, err := q.RecentRuns(ctx, recentLimit)
	if err != nil {
		return "", err
	}
	incidents, err := q.OpenIncidents(ctx, listLimit+1)
	if err != nil {
		return "", err
	}
	bud, err := q.Budget(ctx)
	if err != nil {
		return "", err
	}
	// Shrink the long lists until the reply fits.
	for rows := 25; ; rows /= 2 {
		var b strings.Builder
		b.WriteString("#### ICA status")
		if h.d.InstanceName != "" {
			b.WriteString(" · " + mdCode(clip(h.d.InstanceName, 40)))
		}
		b.WriteString("\n\n")
		fmt.Fprintf(&b, "**Pending approvals (%s)**\n", count(pending))
		approvalsTable(&b, limit(pending, rows), len(pending), c.At)
		fmt.Fprintf(&b, "\n**Runs in progress (%s)**\n", count(running))
		h.runsTable(&b, limit(running, rows), c.At, false, len(running))
		fmt.Fprintf(&b, "\n**Last finished runs (%d)**\n", min(len(recent), recentLimit))
		h.runsTable(&b, limit(recent, recentLimit), c.At, true)
		fmt.Fprintf(&b, "\n**Open incidents (%s)**\n", count(incidents))
		incidentsTable(&b, limit(incidents, rows), len(incidents), c.At)
		b.WriteString("\n**Budget:** " + budgetLine(bud) + "\n")
		if b.Len() <= MaxReplyBytes || rows <= 1 {
			return b.String(), nil
		}
	}
}

// approvals answers "/ica approvals".
func (h *Handler) approvals(ctx context.Context, c *call) (string, error) {
	if err := noArgs(c); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	pending, err := h.d.Queries.PendingApprovals(ctx, listLimit+1)
	if err != nil {
		return "", err
	}
	return fit(func(rows int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "#### Approvals waiting for a decision (%s)\n\n", count(pending))
		approvalsTable(&b, limit(pending, rows), len(pending), c.At)
		return b.String()
	}), nil
}

// incidents answers "/ica incidents".
func (h *Handler) incidents(ctx context.Context, c *call) (string, error) {
	if err := noArgs(c); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	list, err := h.d.Queries.OpenIncidents(ctx, listLimit+1)
	if err != nil {
		return "", err
	}
	return fit(func(rows int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "#### Open incidents (%s)\n\n", count(list))
		incidentsTable(&b, limit(list, rows), len(list), c.At)
		return b.String()
	}), nil
}

// budget answers "/ica budget".
func (h *Handler) budget(ctx context.Context, c *call) (string, error) {
	if err := noArgs(c); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	s, err := h.d.Queries.Budget(ctx)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("#### Budget")
	if !s.Month.IsZero() {
		b.WriteString(" — " + s.Month.UTC().Format("January 2006"))
	}
	b.WriteString("\n\n| | |\n|:--|--:|\n")
	fmt.Fprintf(&b, "| Spent this month | %s |\n", money(s.MonthToDate))
	if s.Budget > 0 {
		fmt.Fprintf(&b, "| Monthly budget | %s |\n", money(s.Budget))
		fmt.Fprintf(&b, "| Used | %s |\n", pct(s.MonthToDate/s.Budget))
		fmt.Fprintf(&b, "| Remaining | %s |\n", money(s.Budget-s.MonthToDate))
		if s.Threshold > 0 {
			fmt.Fprintf(&b, "| Approval gate at | %s (%s) |\n", pct(s.Threshold), money(s.Threshold*s.Budget))
		}
	} else {
		b.WriteString("| Monthly budget | not set |\n")
	}
	if s.Forecast > 0 {
		fmt.Fprintf(&b, "| Forecast for the month | %s |\n", money(s.Forecast))
	}
	if !s.AsOf.IsZero() {
		fmt.Fprintf(&b, "| As of | %s |\n", stamp(s.AsOf))
	}
	if s.GateMonthToDate > s.MonthToDate {
		fmt.Fprintf(&b, "| The gate counts | %s (Azure's budget actuals) |\n", money(s.GateMonthToDate))
	}
	if w := budgetWarning(s); w != "" {
		b.WriteString("\n" + w + "\n")
	}
	azureBudgets(&b, s.Azure, c.At)
	return b.String(), nil
}

// azureBudgets lists each Azure budget's latest report and its age; a
// currency other than ICA's is shown, not summed.
func azureBudgets(b *strings.Builder, list []*ica.AzureBudgetView, now time.Time) {
	if len(list) == 0 {
		return
	}
	b.WriteString("\n**Azure budgets** (the latest notification of each)\n\n| Budget | Spent | Budget | Forecast | Age | Gate |\n|:--|--:|--:|--:|--:|:--|\n")
	for _, v := range list {
		amt := func(x float64) string {
			if v.SameCurrency() {
				return money(x)
			}
			return ica.ShowText(v.Currency) + " " + strings.TrimPrefix(money(x), "$")
		}
		forecast := "–"
		if v.Forecast != nil {
			forecast = amt(*v.Forecast)
		}
		gate := ica.ShowText(v.Note)
		if v.Gated {
			gate = "counted"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", cell(ica.ShowText(v.Name), 60), amt(v.Spent), amt(v.Amount), forecast,
			dur(now.Sub(v.AsOf)), cell(gate, 80))
	}
}

func noArgs(c *call) error {
	if len(c.Args) > 0 {
		return ica.FieldErrorf(ica.EINVALID, "text", "%s takes no arguments (got %q)", c.Sub, clip(c.Args[0].String(), 40))
	}
	return nil
}

// runView shows one run.
func (h *Handler) runView(ctx context.Context, c *call, r *ica.Run) (string, error) {
	a, err := h.d.Queries.LatestApproval(ctx, r.RunID)
	if err != nil && ica.ErrorCode(err) != ica.ENOTFOUND {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#### Run %s — %s\n\n| | |\n|:--|:--|\n", mdCode(r.RunID), cell(r.PipelineName, 80))
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	row("Status", statusIcon(r.Status)+" "+cell(r.Status, 20))
	row("Branch", cell(r.Branch, 80))
	row("Commit", mdCode(clip(r.Commit, 64)))
	if r.ArtifactDigest != "" {
		row("Artifact", mdCode(clip(r.ArtifactDigest, 80)))
	}
	row("Triggered by", cell(r.TriggeredBy, 60))
	row("Started", stamp(r.StartTime)+" ("+ago(c.At, r.StartTime)+")")
	if r.EndTime != nil {
		row("Finished", stamp(*r.EndTime)+" (took "+dur(r.EndTime.Sub(r.StartTime))+")")
	}
	row("Events", fmt.Sprint(r.EventCount))
	if r.AuditHash != "" {
		row("Audit hash", mdCode(r.AuditHash))
	} else {
		row("Audit hash", "not yet (the run has not finished)")
	}
	if a != nil {
		row("Approval", mdCode(a.ID)+" "+cell(a.Target, 20)+": "+approvalState(a, c.At))
		if g := h.gateRow(ctx, a); g != "" {
			row("Gate", g) // deployment policy (policy.go)
		}
	} else {
		row("Approval", "none requested")
	}
	if link := safeURL(r.URL); link != "" {
		row("Pipeline run", "[open in Azure Pipelines]("+link+")")
	}
	return b.String(), nil
}

// ---- tables ------------------------------------------------------------------

func approvalsTable(b *strings.Builder, list []*ica.Approval, total int, now time.Time) {
	if total == 0 {
		b.WriteString("_None._\n")
		return
	}
	b.WriteString("| Approval | Pipeline | Run | Target | Age | Expires | Waiting for |\n|:--|:--|:--|:--|--:|:--|:--|\n")
	for _, a := range list {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n",
			mdCode(a.ID), cell(a.PipelineName, 40), mdCode(clip(a.RunID, 40)), cell(a.Target, 20),
			dur(now.Sub(a.CreatedAt)), expiry(a.ExpiresAt, now), waitingFor(a))
	}
	more(b, total, len(list), 7)
}

func (h *Handler) runsTable(b *strings.Builder, list []*ica.Run, now time.Time, finished bool, total ...int) {
	n := len(list)
	if len(total) > 0 {
		n = total[0]
	}
	if n == 0 {
		b.WriteString("_None._\n")
		return
	}
	if finished {
		b.WriteString("| Run | Pipeline | Branch | Status | Finished | Took |\n|:--|:--|:--|:--|:--|--:|\n")
	} else {
		b.WriteString("| Run | Pipeline | Branch | Started | Running for | By |\n|:--|:--|:--|:--|--:|:--|\n")
	}
	for _, r := range list {
		if finished {
			end, took := "—", "—"
			if r.EndTime != nil {
				end, took = ago(now, *r.EndTime), dur(r.EndTime.Sub(r.StartTime))
			} else {
				end = "running"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s %s | %s | %s |\n", mdCode(clip(r.RunID, 40)), cell(r.PipelineName, 40),
				cell(r.Branch, 40), statusIcon(r.Status), cell(r.Status, 20), end, took)
		} else {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", mdCode(clip(r.RunID, 40)), cell(r.PipelineName, 40),
				cell(r.Branch, 40), stamp(r.StartTime), dur(now.Sub(r.StartTime)), cell(r.TriggeredBy, 40))
		}
	}
	more(b, n, len(list), 6)
}

func incidentsTable(b *strings.Builder, list []*ica.Incident, total int, now time.Time) {
	if total == 0 {
		b.WriteString("_None._\n")
		return
	}
	b.WriteString("| Incident | Severity | Rule | Status | Opened | Resources |\n|:--|:--|:--|:--|--:|:--|\n")
	for _, i := range list {
		status := cell(i.Status, 20)
		if i.Acknowledged != nil && i.Acknowledged.Username != "" {
			status += " by " + cell(i.Acknowledged.Username, 30)
		}
		res := ""
		if len(i.Resources) > 0 {
			res = cell(lastSegment(i.Resources[0]), 40)
			if len(i.Resources) > 1 {
				res += fmt.Sprintf(" +%d", len(i.Resources)-1)
			}
		}
		fmt.Fprintf(b, "| %s | %s %s | %s | %s | %s | %s |\n", mdCode(i.ID), sevIcon(i.Severity), cell(i.Severity, 10),
			cell(i.Rule, 50), status, ago(now, i.OpenedAt), res)
	}
	more(b, total, len(list), 6)
}

// more adds the "…and N more" row of a truncated table; hidden counts the
// rows fetched but not shown, and when the query itself was capped (it
// returned more than listLimit) there are more than that.
func more(b *strings.Builder, total, shown, cols int) {
	hidden := total - shown
	if hidden <= 0 {
		return
	}
	plus := ""
	if total > listLimit {
		hidden, plus = listLimit-shown, "+"
		if hidden <= 0 {
			hidden = 1
		}
	}
	fmt.Fprintf(b, "| …and %d%s more |%s\n", hidden, plus, strings.Repeat(" |", cols-1))
}

// count shows the length of a list fetched with listLimit+1: "50+" when
// there are more than listLimit.
func count[T any](l []T) string {
	if len(l) > listLimit {
		return fmt.Sprintf("%d+", listLimit)
	}
	return fmt.Sprint(len(l))
}

func limit[T any](l []T, n int) []T {
	if len(l) > n {
		return l[:n]
	}
	return l
}

// fit renders with fewer rows until the reply is short enough.
func fit(render func(rows int) string) string {
	for rows := listLimit; ; rows /= 2 {
		s := render(rows)
		if len(s) <= MaxReplyBytes || rows <= 1 {
			return s
		}
	}
}

// truncateText cuts text at a line boundary below max bytes.
func truncateText(s string, max int) string {
	const tail = "\n…(truncated)"
	if len(s) <= max {
		return s
	}
	cut := s[:max-len(tail)]
	if i := strings.LastIndexByte(cut, '\n'); i > 0 {
		cut = cut[:i]
	}
	return cut + tail
}

// ---- formatting --------------------------------------------------------------

func waitingFor(a *ica.Approval) string {
	switch a.Step() {
	case ica.StepTechnical:
		return "technical approval"
	case ica.StepBusiness:
		s := "business approval"
		if a.FinanceRequired {
			s += " (finance)"
		}
		if a.Technical != nil && a.Technical.Username != "" {
			s += "; technical by " + cell(a.Technical.Username, 30)
		}
		return s
	}
	return cell(a.Status, 20)
}

func approvalState(a *ica.Approval, now time.Time) string {
	if !a.Final() {
		return cell(a.Status, 20) + ", waiting for " + waitingFor(a) + ", " + expiry(a.ExpiresAt, now)
	}
	var who []string
	for _, d := range []*ica.Decision{a.Technical, a.Business, a.Rejection, a.Bypass} {
		if d != nil && d.Username != "" {
			who = append(who, cell(d.Username, 30))
		}
	}
	s := cell(a.Status, 20)
	if len(who) > 0 {
		s += " by " + strings.Join(who, ", ")
	}
	return s
}

func expiry(at, now time.Time) string {
	if !at.After(now) {
		return "expired " + dur(now.Sub(at)) + " ago"
	}
	return "in " + dur(at.Sub(now)) + " (" + at.UTC().Format("15:04") + " UTC)"
}

func budgetLine(s *BudgetSummary) string {
	if s == nil {
		return "unknown"
	}
	line := money(s.MonthToDate) + " spent this month"
	if s.Budget > 0 {
		line += " of " + money(s.Budget) + " (" + pct(s.MonthToDate/s.Budget) + ")"
	} else {
		line += " (no monthly budget set)"
	}
	if s.Forecast > 0 {
		line += " · forecast " + money(s.Forecast)
	}
	if !s.AsOf.IsZero() {
		line += " · as of " + stamp(s.AsOf)
	}
	if w := budgetWarning(s); w != "" {
		line += "\n" + w
	}
	return line
}

func budgetWarning(s *BudgetSummary) string {
	if s.Budget <= 0 {
		return ""
	}
	mtd := max(s.MonthToDate, s.GateMonthToDate)
	switch {
	case mtd >= s.Budget:
		return ":rotating_light: The monthly budget is spent."
	case s.Threshold > 0 && mtd >= s.Threshold*s.Budget:
		return ":warning: Spend is past the " + pct(s.Threshold) + " gate: new approvals are refused."
	case s.Forecast > s.Budget:
		return ":warning: The forecast exceeds the budget."
	}
	return ""
}

func money(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "?"
	}
	neg := v < 0
	s := fmt.Sprintf("%.2f", math.Abs(v))
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	out := "$" + b.String() + "." + frac
	if neg {
		out = "-" + out
	}
	return out
}

func pct(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", f*100)
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

func ago(now, t time.Time) string {
	if t.After(now) {
		return stamp(t)
	}
	return dur(now.Sub(t)) + " ago"
}

// dur formats a duration for people: "45s", "12m", "2h 5m", "3d 4h".
func dur(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func statusIcon(s string) string {
	switch s {
	case ica.RunSuccess:
		return ":white_check_mark:"
	case ica.RunFailed:
		return ":x:"
	case ica.RunCancelled:
		return ":no_entry_sign:"
	case ica.RunRunning:
		return ":hourglass_flowing_sand:"
	}
	return ""
}

func sevIcon(s string) string {
	switch ica.SeverityRank(s) {
	case 0:
		return ":red_circle:"
	case 1:
		return ":large_orange_diamond:"
	case 2:
		return ":large_yellow_circle:"
	}
	return ":white_circle:"
}

// cell makes untrusted text safe in a Markdown table cell: one line, no
// table or formatting characters that would change the layout, clipped.
func cell(s string, n int) string {
	s = clip(oneLine(s), n)
	if s == "" {
		return "—"
	}
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '|', '\\', '*', '_', '`', '~', '[', ']', '<', '>', '#', '!':
			b.WriteByte('\\')
		case '@':
			// Keep "@channel" in a pipeline name from looking like a mention.
			b.WriteString("@\u200b")
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// mdCode returns s as an inline code span (backticks cannot occur inside).
func mdCode(s string) string {
	s = strings.ReplaceAll(oneLine(s), "`", "'")
	if s == "" {
		return "—"
	}
	return "`" + s + "`"
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// clip shortens s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

func lastSegment(id string) string {
	id = strings.TrimRight(id, "/")
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// safeURL returns an http(s) URL fit for a Markdown link, or "".
func safeURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return strings.NewReplacer("(", "%28", ")", "%29", " ", "%20").Replace(u.String())
}
