package dashboard_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/dashboard"
	"github.com/ica-governance/ica/internal/chromium"
	"github.com/ica-governance/ica/internal/testclock"
)

// artifactDir is where screenshots are kept: ICA_ARTIFACTS, or the
// repository's artifacts/ (git-ignored).
func artifactDir(t *testing.T) string {
	dir := os.Getenv("ICA_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	dir = filepath.Join(dir, "dashboard")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// pageFacts is what the browser reports about the rendered dashboard.
type pageFacts struct {
	Path        string   `json:"path"`
	Title       string   `json:"title"`
	Charts      []string `json:"charts"` // titles of the visible charts
	RunBars     int      `json:"runBars"`
	BudgetPts   int      `json:"budgetPts"`
	LedgerRows  int      `json:"ledgerRows"`
	HashLen     int      `json:"hashLen"`
	Pending     int      `json:"pending"`
	Approvers   int      `json:"approvers"`
	Failed      int      `json:"failed"`
	Incidents   int      `json:"incidents"`
	MTD         string   `json:"mtd"`
	Background  string   `json:"background"`
	Overflow    bool     `json:"overflow"`
	ChartWidths []int    `json:"chartWidths"`
	Pipelines   int      `json:"pipelines"`
}

const factsJS = `(() => {
  const vis = e => e.getBoundingClientRect().width > 0;
  const charts = [...document.querySelectorAll("svg.chart")].filter(vis);
  const q = s => document.querySelector(s);
  return {
    path: location.pathname,
    title: document.title,
    charts: charts.map(e => e.querySelector("title").textContent),
    chartWidths: charts.map(e => Math.round(e.getBoundingClientRect().width)),
    runBars: [...document.querySelectorAll("#runs svg.chart rect")].filter(e => vis(e.ownerSVGElement)).length,
    budgetPts: [...document.querySelectorAll("#budget svg.chart circle")].filter(e => vis(e.ownerSVGElement)).length,
    ledgerRows: document.querySelectorAll("#ledger-table tbody tr").length,
    hashLen: (q("#ledger-table td.hash code") || {textContent: ""}).textContent.length,
    pending: document.querySelectorAll("#pending-table tbody tr").length,
    approvers: document.querySelectorAll("#approver-table tbody tr").length,
    failed: document.querySelectorAll("#failed-table tbody tr").length,
    incidents: document.querySelectorAll("#incident-table tbody tr").length,
    mtd: (q("[data-figure=month_to_date]") || {textContent: ""}).textContent,
    background: getComputedStyle(document.body).backgroundColor,
    overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth,
    pipelines: document.querySelectorAll("#pipeline option").length,
  };
})()`

// TestBrowser_Dashboard opens a single-use link in headless Chromium the way
// a Mattermost user does (a click on a link in another site's page), checks
// that the charts and tables are rendered with no console error, keeps
// laptop and phone screenshots, and checks that a second use of the link, an
// expired link, a forged cookie and no cookie are refused.
func TestBrowser_Dashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	b := chromium.Start(t)
	began := time.Now()
	// The ledger's "now" is a named date (or ICA_TEST_NOW), never the real
	// one: what the page shows depends on the day of the month.
	end := testclock.Start(t, time.Date(2026, 11, 27, 15, 4, 0, 0, time.UTC))
	st, clock := demoLedger(t, end)
	t.Logf("demo ledger: %d entries in %s", st.LedgerEntries(), time.Since(began).Round(time.Millisecond))
	s := newServer(t, st, clock, 10000, 0.95)
	art := artifactDir(t)

	// "Mattermost": another site (localhost, not 127.0.0.1) with the link.
	var link string
	mm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			w.Header().Set("Content-Type", "image/x-icon")
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>Mattermost</title><link rel="icon" href="data:,"></head><body><a id="open" href="%s">Open the ICA dashboard</a></body></html>`, link)
	}))
	defer mm.Close()
	mmURL := strings.Replace(mm.URL, "127.0.0.1", "localhost", 1)

	open := func(l string) {
		t.Helper()
		link = l
		b.Navigate(mmURL + "/")
		b.WaitFor(`document.title === "Mattermost" && document.getElementById("open")`, 10*time.Second)
		b.Eval(`document.getElementById("open").click(), true`, nil)
	}

	// Sign in through the link.
	link1 := s.issue(t, "tech1")
	b.TakeProblems()
	open(link1)
	b.WaitFor(`location.pathname === "/dashboard" && document.readyState === "complete" && document.getElementById("ledger-table")`, 15*time.Second)

	// The session cookie is HttpOnly, SameSite=Strict, for /dashboard.
	var cookies struct {
		Cookies []struct {
			Name     string `json:"name"`
			Path     string `json:"path"`
			HTTPOnly bool   `json:"httpOnly"`
			SameSite string `json:"sameSite"`
		} `json:"cookies"`
	}
	require.NoError(t, json.Unmarshal(b.Call("Network.getCookies", map[string]any{"urls": []string{s.URL + "/dashboard"}}), &cookies))
	require.Len(t, cookies.Cookies, 1)
	require.Equal(t, dashboard.CookieName, cookies.Cookies[0].Name)
	require.True(t, cookies.Cookies[0].HTTPOnly)
	require.Equal(t, "Strict", cookies.Cookies[0].SameSite)
	require.Equal(t, "/dashboard", cookies.Cookies[0].Path)
	var jsCookie string
	b.Eval(`document.cookie`, &jsCookie)
	require.Empty(t, jsCookie, "the session cookie is not readable by scripts")

	for _, v := range []struct {
		name          string
		width, height int
		mobile        bool
	}{{"laptop", 1280, 900, false}, {"phone", 390, 844, true}} {
		b.Viewport(v.width, v.height, v.mobile)
		b.Navigate(s.URL + "/dashboard")
		b.WaitFor(`location.pathname === "/dashboard" && document.readyState === "complete" && document.getElementById("ledger-table")`, 15*time.Second)
		var f pageFacts
		b.Eval(factsJS, &f)
		t.Logf("%s: %+v", v.name, f)
		require.Equal(t, "ICA dashboard", f.Title)
		require.Equal(t, []string{"Spend this month against the budget", "Unresolved incidents by severity",
			"Time to decision per week", "Runs per day by status"}, f.Charts, "each chart drawn once, at this width")
		require.Greater(t, f.RunBars, 60, "30 days of stacked bars")
		require.Equal(t, end.Day(), f.BudgetPts, "a point per elapsed day of the month")
		require.Equal(t, 20, f.LedgerRows)
		require.Equal(t, 64, f.HashLen, "full SHA-256 hashes")
		require.Equal(t, 2, f.Pending)
		require.GreaterOrEqual(t, f.Approvers, 4)
		require.Greater(t, f.Failed, 0)
		require.Equal(t, 3, f.Incidents)
		require.Regexp(t, `^\$\d{1,3}(,\d{3})*\.\d\d$`, f.MTD)
		require.Equal(t, "rgb(246, 248, 250)", f.Background, "the embedded stylesheet is applied")
		require.False(t, f.Overflow, "no horizontal scrolling of the page at %d px", v.width)
		require.Equal(t, 5, f.Pipelines)
		for _, w := range f.ChartWidths {
			require.Greater(t, w, v.width*4/10, "charts use the width")
		}
		require.Empty(t, b.TakeProblems(), "no console errors on the %s dashboard", v.name)
		b.Screenshot(filepath.Join(art, "dashboard-"+v.name+".png"))
		for _, sec := range []string{"budget", "approvals", "runs", "incidents", "ledger"} {
			b.ScreenshotOf("#"+sec, filepath.Join(art, v.name+"-"+sec+".png"))
		}
	}
	b.Viewport(1280, 900, false)

	// The pipeline filter (the select submits by itself).
	b.Eval(`(() => { const s = document.getElementById("pipeline"); s.value = "payments-api"; s.dispatchEvent(new Event("change")); return true })()`, nil)
	b.WaitFor(`location.search === "?pipeline=payments-api" && document.readyState === "complete"`, 10*time.Second)
	var total string
	b.Eval(`document.querySelector("[data-figure=runs_total]").nextElementSibling.textContent`, &total)
	require.Equal(t, "payments-api", total)
	require.Empty(t, b.TakeProblems())

	refused := func(what, text string) {
		t.Helper()
		// Past the link's own "continue" page: the answer to its POST.
		// Wait for the refusal itself: the link's page posts on its own, so
		// an earlier page can match the shape while it navigates away.
		textJS, _ := json.Marshal(text)
		b.WaitFor(`document.readyState === "complete" && document.querySelector("main.message h1") && !document.getElementById("continue") && document.body.innerText.includes(`+string(textJS)+`)`, 10*time.Second)
		var body string
		b.Eval(`document.body.innerText`, &body)
		require.Contains(t, body, text, what)
		require.NotContains(t, body, "Ledger", what+": no data")
		b.TakeProblems() // the 401 itself is logged by the browser
	}

	// A second use of the same link.
	open(link1)
	refused("second use", "already used")

	// An expired link.
	late := s.issue(t, "tech1")
	clock.Advance(dashboard.LinkTTL + time.Second)
	open(late)
	refused("expired link", "expired")

	// A forged cookie.
	b.Call("Network.clearBrowserCookies", nil)
	forged := dashboard.SignSession([]byte("guessed-secret-guessed-secret!!!"), dashboard.Session{UserID: "x", Username: "mallory",
		Expires: clock.Now().Add(time.Hour).Unix()})
	b.Call("Network.setCookie", map[string]any{"name": dashboard.CookieName, "value": forged, "url": s.URL + "/dashboard", "path": "/dashboard", "httpOnly": true})
	b.Navigate(s.URL + "/dashboard")
	refused("forged cookie", "not one ICA signed")

	// No cookie.
	b.Call("Network.clearBrowserCookies", nil)
	b.Navigate(s.URL + "/dashboard")
	refused("no cookie", "Type /ica dashboard in Mattermost")
	b.Screenshot(filepath.Join(art, "refused.png"))
}
