package dashboard_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/dashboard"
)

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == dashboard.CookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", dashboard.CookieName, resp.Header.Values("Set-Cookie"))
	return nil
}

func TestDashboard_LinkSessionAndRefusals(t *testing.T) {
	st, clock := smallLedger(t)
	s := newServer(t, st, clock, 5000, 0.9)

	// No cookie, no data.
	resp, body := do(t, "GET", s.URL+"/dashboard", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "/ica dashboard")
	require.NotContains(t, body, "<svg")
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")

	link := s.issue(t, "tech1")
	// GET shows the continue page and does not use the link (previews, scanners).
	for range 2 {
		resp, body = do(t, "GET", link, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, body, `<form id="continue" method="post"`)
		require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))
	}
	// Another site cannot post it.
	resp, _ = do(t, "POST", link, map[string]string{"Origin": "https://evil.example"})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	// The first POST uses it: a cookie for 8 hours, and the dashboard.
	resp, _ = do(t, "POST", link, map[string]string{"Origin": s.URL})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/dashboard", resp.Header.Get("Location"))
	c := sessionCookie(t, resp)
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, c.SameSite)
	require.Equal(t, "/dashboard", c.Path)
	require.Equal(t, 8*3600, c.MaxAge)
	require.False(t, c.Secure, "plain http public URL")
	raw := resp.Header.Get("Set-Cookie")
	require.Contains(t, raw, "HttpOnly")
	require.Contains(t, raw, "SameSite=Strict")

	resp, body = do(t, "GET", s.URL+"/dashboard", nil, c)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "@tech1")
	require.Contains(t, body, `data-figure="month_to_date">$380.00`)
	require.Contains(t, body, `data-figure="forecast">$4,560.00`)
	require.Contains(t, body, `id="budget-chart-t"`)
	require.Contains(t, body, `id="sla-chart-t"`)
	require.Contains(t, body, `id="runs-chart-t"`)
	require.Contains(t, body, `id="incident-chart-t"`)
	require.Contains(t, body, `<td>@alice</td>`)
	require.Contains(t, body, `<td>A-6</td>`)
	require.Equal(t, 20, strings.Count(body, `<td class="hash">`))
	head, hash, err := st.Head()
	require.NoError(t, err)
	require.Contains(t, body, hash)

	// The pipeline filter.
	resp, body = do(t, "GET", s.URL+"/dashboard?pipeline=web", nil, c)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `<option value="web" selected>web</option>`)
	require.Contains(t, body, `data-figure="runs_total">3<`)

	// A second use is refused, and changes nothing.
	resp, body = do(t, "POST", link, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "already used")
	require.Empty(t, resp.Cookies())

	// The session and its use are in the ledger.
	var kinds []string
	require.NoError(t, st.ScanLedger(head-1, func(e *ica.LedgerEntry) error {
		kinds = append(kinds, e.Kind+" "+e.Subject)
		return nil
	}))
	require.Equal(t, []string{"session.created tech1", "session.link_used tech1"}, kinds)

	// Unknown and malformed links.
	resp, _ = do(t, "POST", s.URL+"/dashboard/link/"+strings.Repeat("A", 43), nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = do(t, "GET", s.URL+"/dashboard/link/short", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// An expired link: 5 minutes and a second later.
	late := s.issue(t, "biz1")
	clock.Advance(dashboard.LinkTTL + time.Second)
	resp, body = do(t, "POST", late, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "expired")

	// Forged cookies: another key, an edited payload, garbage.
	forged := &http.Cookie{Name: dashboard.CookieName, Value: dashboard.SignSession([]byte("not-the-secret-not-the-secret!!"),
		dashboard.Session{UserID: "x", Username: "mallory", Expires: clock.Now().Add(time.Hour).Unix()})}
	resp, body = do(t, "GET", s.URL+"/dashboard", nil, forged)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "not one ICA signed")
	p, sig, _ := strings.Cut(c.Value, ".")
	edited := dashboard.SignSession(s.secret, dashboard.Session{Username: "mallory", Expires: clock.Now().Add(time.Hour).Unix()})
	ep, _, _ := strings.Cut(edited, ".")
	require.NotEqual(t, p, ep)
	for _, v := range []string{ep + "." + sig, "garbage", "", p} {
		resp, _ = do(t, "GET", s.URL+"/dashboard", nil, &http.Cookie{Name: dashboard.CookieName, Value: v})
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "cookie %q", v)
	}
	// The real cookie still works, until 8 hours have passed.
	resp, _ = do(t, "GET", s.URL+"/dashboard", nil, c)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	clock.Advance(dashboard.SessionTTL)
	resp, body = do(t, "GET", s.URL+"/dashboard", nil, c)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "session expired")
	require.NotContains(t, s.logs.String(), strings.TrimPrefix(link, s.URL+"/dashboard/link/"), "the token is not logged")
}

func TestStatsAPI(t *testing.T) {
	st, clock := smallLedger(t)
	s := newServer(t, st, clock, 5000, 0.9)
	resp, body := do(t, "GET", s.URL+"/api/v1/stats", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, `"code":"unauthorized"`)

	auth := map[string]string{"Authorization": "Bearer " + apiToken}
	resp, body = do(t, "GET", s.URL+"/api/v1/stats", auth)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
	var got dashboard.Stats
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	in, err := dashboard.Load(context.Background(), storeSource{Store: st, monthly: 5000, threshold: 0.9}, clock.Now())
	require.NoError(t, err)
	want := dashboard.Compute(in, "")
	require.Equal(t, want.Budget.MonthToDate, got.Budget.MonthToDate)
	require.Equal(t, want.Approvals.All, got.Approvals.All)
	require.Equal(t, want.Runs.Totals, got.Runs.Totals)
	require.Equal(t, "https://dev.azure.com/contoso/web/_build/results?buildId=r3", got.Runs.Failed[0].URL, "failed runs carry their link")
	require.Len(t, got.Ledger, 20)
	// Same figures for the page and the API: the same JSON field names as the page's data-figure.
	var generic map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &generic))
	require.Contains(t, generic, "approvals")

	resp, body = do(t, "GET", s.URL+"/api/v1/stats?pipeline=api", auth)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Equal(t, "api", got.Pipeline)
	require.Equal(t, 3, got.Runs.Totals.Total())

	resp, _ = do(t, "GET", s.URL+"/api/v1/stats?pipeline="+strings.Repeat("x", 300), auth)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// countingSource counts index walks.
type countingSource struct {
	storeSource
	walks atomic.Int32
}

func (c *countingSource) RunIndex(ctx context.Context, from, to time.Time, fn func(time.Time, string, string, string) error) error {
	c.walks.Add(1)
	return c.storeSource.RunIndex(ctx, from, to, fn)
}

func TestStats_CacheTTL(t *testing.T) {
	st, clock := smallLedger(t)
	src := &countingSource{storeSource: storeSource{Store: st}}
	h := dashboard.New(dashboard.Deps{Source: src, Sessions: st, Secret: []byte("k"), Clock: clock})
	ctx := context.Background()
	for range 3 {
		_, err := h.Stats(ctx, "")
		require.NoError(t, err)
		_, err = h.Stats(ctx, "web")
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, src.walks.Load(), "one walk serves every filter within the TTL")
	first, err := h.Stats(ctx, "")
	require.NoError(t, err)

	// Past the TTL: the old figures answer at once while one background
	// load refreshes them.
	clock.Advance(dashboard.DefaultCacheTTL)
	stale, err := h.Stats(ctx, "")
	require.NoError(t, err)
	require.Equal(t, first.GeneratedAt, stale.GeneratedAt)
	h.Close()
	require.EqualValues(t, 2, src.walks.Load())
	fresh, err := h.Stats(ctx, "")
	require.NoError(t, err)
	require.Equal(t, clock.Now(), fresh.GeneratedAt)

	// Past MaxStale: the request waits for a load.
	clock.Advance(dashboard.MaxStale)
	again, err := h.Stats(ctx, "")
	require.NoError(t, err)
	require.EqualValues(t, 3, src.walks.Load())
	require.Equal(t, clock.Now(), again.GeneratedAt)

	// Without a cache, every call loads.
	nc := dashboard.New(dashboard.Deps{Source: src, Sessions: st, Secret: []byte("k"), Clock: clock, CacheTTL: -1})
	for range 2 {
		_, err := nc.Stats(ctx, "")
		require.NoError(t, err)
	}
	require.EqualValues(t, 5, src.walks.Load())

	// Warm loads once, in the background.
	w := dashboard.New(dashboard.Deps{Source: src, Sessions: st, Secret: []byte("k"), Clock: clock})
	w.Warm()
	w.Close()
	_, err = w.Stats(ctx, "")
	require.NoError(t, err)
	require.EqualValues(t, 6, src.walks.Load())
}

func TestHandleLinkUse_SecureCookieOnHTTPS(t *testing.T) {
	st, clock := smallLedger(t)
	h := dashboard.New(dashboard.Deps{Source: storeSource{Store: st}, Sessions: st, Secret: []byte("k"), Clock: clock,
		PublicURL: "https://ica.example.com/"})
	link, err := h.Issue(context.Background(), "u1", "tech1")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(link, "https://ica.example.com/dashboard/link/"))
	req := httptest.NewRequest("POST", strings.TrimPrefix(link, "https://ica.example.com"), nil)
	rec := httptest.NewRecorder()
	require.NoError(t, h.HandleLinkUse(rec, req))
	require.Equal(t, http.StatusSeeOther, rec.Code)
	require.Contains(t, rec.Header().Get("Set-Cookie"), "; Secure")

	noURL := dashboard.New(dashboard.Deps{Source: storeSource{Store: st}, Sessions: st, Secret: []byte("k"), Clock: clock})
	_, err = noURL.Issue(context.Background(), "u1", "tech1")
	require.Equal(t, ica.ENOTCONFIGURED, ica.ErrorCode(err))
}

func TestVerifySession(t *testing.T) {
	secret := []byte("secret")
	now := time.Unix(1_800_000_000, 0)
	v := dashboard.SignSession(secret, dashboard.Session{UserID: "u", Username: "n", Expires: now.Add(time.Hour).Unix()})
	s, err := dashboard.VerifySession(secret, v, now)
	require.NoError(t, err)
	require.Equal(t, "n", s.Username)
	_, err = dashboard.VerifySession(secret, v, now.Add(time.Hour))
	require.ErrorContains(t, err, "expired")
	_, err = dashboard.VerifySession([]byte("other"), v, now)
	require.ErrorContains(t, err, "not one ICA signed")
}
