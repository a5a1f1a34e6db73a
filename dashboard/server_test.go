package dashboard_test

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/dashboard"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

const apiToken = "stats-test-token-0123456789abcdef"

// server is ICA's router with the dashboard mounted as cmd/ica mounts it.
type server struct {
	*httptest.Server
	dash   *dashboard.Handler
	st     *store.Store
	clock  *ica.FakeClock
	secret []byte
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newServer(t testing.TB, st *store.Store, clock *ica.FakeClock, monthly, threshold float64) *server {
	t.Helper()
	return newServerWith(t, st, clock, storeSource{Store: st, monthly: monthly, threshold: threshold})
}

// newServerWith is newServer with the dashboard's figures from src.
func newServerWith(t testing.TB, st *store.Store, clock *ica.FakeClock, src dashboard.Source) *server {
	t.Helper()
	s := &server{st: st, clock: clock, secret: []byte("0123456789abcdef0123456789abcdef"), logs: &syncBuffer{}}
	var h http.Handler
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(s.Close)
	log := slog.New(slog.NewTextHandler(s.logs, nil))
	tokens, err := webhooks.NewStaticTokens(map[string]string{"grafana": webhooks.HashToken(apiToken)}, nil)
	require.NoError(t, err)
	wh := webhooks.NewHandler(webhooks.Deps{Ledger: st, Pipelines: tokens, Logger: log, Clock: clock})
	s.dash = dashboard.New(dashboard.Deps{Source: src,
		Sessions: st, Secret: s.secret, PublicURL: s.URL, Clock: clock, Log: log})
	r := wh.Router()
	r.Handle("/dashboard", wh.Route(nil, s.dash.HandlePage)).Methods(http.MethodGet)
	r.Handle("/dashboard/link/{token}", wh.Route(nil, s.dash.HandleLinkPage)).Methods(http.MethodGet)
	r.Handle("/dashboard/link/{token}", wh.Route(nil, s.dash.HandleLinkUse)).Methods(http.MethodPost)
	r.Handle("/dashboard/static/{file}", wh.Route(nil, s.dash.HandleStatic)).Methods(http.MethodGet)
	r.Handle("/api/v1/stats", wh.Route(tokens, s.dash.HandleStats)).Methods(http.MethodGet)
	h = wh
	return s
}

// issue asks for a link as "/ica dashboard" does.
func (s *server) issue(t testing.TB, user string) string {
	t.Helper()
	u, err := s.dash.Issue(context.Background(), "uid-"+user, user)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(u, s.URL+"/dashboard/link/"), u)
	return u
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout: 10 * time.Second}

func do(t testing.TB, method, url string, hdr map[string]string, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := noRedirect.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// demoLedger fills a store with two months of plausible activity ending at
// end, for the browser test and its screenshots. It is deterministic.
func demoLedger(tb testing.TB, end time.Time) (*store.Store, *ica.FakeClock) {
	end = end.UTC().Truncate(time.Minute)
	// Days start at midnight UTC, so each day of the end's month gets its
	// cost at 00:00 whatever time of day the ledger ends.
	begin := end.AddDate(0, 0, -58).Truncate(24 * time.Hour)
	st, clock := openStore(tb, begin)
	b := &ledgerBuilder{tb: tb, st: st, clock: clock, ctx: context.Background()}
	rng := rand.New(rand.NewPCG(7, 11))
	pipelines := []string{"payments-api", "web-frontend", "ledger-service", "mobile-bff"}
	techs := []string{"alice", "carol", "frank"}
	bizs := []string{"bob", "grace"}
	n := 0
	type event struct {
		at           time.Time
		id, act, who string
	}
	for day := begin; !day.Add(7 * time.Hour).After(end); day = day.Add(6 * time.Hour) {
		at := func(d time.Duration) string { return day.Add(d).Format(time.RFC3339) }
		var ids []string
		for i := range 2 + rng.IntN(5) {
			n++
			id := "2026." + strconv.Itoa(n)
			b.at(at(time.Duration(i) * 2 * time.Minute))
			b.start(id, pipelines[rng.IntN(len(pipelines))])
			ids = append(ids, id)
		}
		var toApprove []string
		for i, id := range ids {
			b.at(at(15*time.Minute + time.Duration(i)*time.Minute))
			switch x := rng.IntN(100); {
			case x < 78:
				if rng.IntN(3) == 0 {
					// Asks for approval before it finishes (a finished
					// run cannot be deployed).
					toApprove = append(toApprove, id)
				} else {
					b.finish(id, ica.RunSuccess)
				}
			case x < 92:
				b.finish(id, ica.RunFailed)
			default:
				b.finish(id, ica.RunCancelled)
			}
		}
		b.at(at(30 * time.Minute))
		created := clock.Now()
		var events []event
		for _, id := range toApprove {
			target := ica.TargetProduction
			if rng.IntN(2) == 0 {
				target = ica.TargetStaging
			}
			aid := b.request(id, target, float64(50+rng.IntN(400)))
			if rng.IntN(7) == 0 {
				continue // left to expire
			}
			tech := techs[rng.IntN(len(techs))]
			slow := time.Duration(20+rng.IntN(100)) * time.Minute
			if tech == "frank" {
				slow += 70 * time.Minute
			}
			events = append(events, event{created.Add(slow), aid, ica.ActApproveTechnical, tech})
			if biz := created.Add(slow + time.Duration(5+rng.IntN(90))*time.Minute); biz.Before(created.Add(4 * time.Hour)) {
				events = append(events, event{biz, aid, ica.ActApproveBusiness, bizs[rng.IntN(len(bizs))]})
			}
		}
		b.at(at(31 * time.Minute))
		for _, id := range toApprove {
			b.finish(id, ica.RunSuccess)
		}
		slices.SortStableFunc(events, func(a, b event) int { return a.at.Compare(b.at) })
		for _, e := range events {
			b.decide(e.id, e.act, e.who, e.at.Format(time.RFC3339))
		}
		b.at(at(5*time.Hour + 50*time.Minute))
		_, err := st.ExpireDue(b.ctx)
		require.NoError(tb, err)
		if day.Hour() == 0 && day.Month() == end.Month() {
			b.cost(day.Format(time.DateOnly), 180+float64(rng.IntN(160)))
		}
	}
	// Two waiting approvals, one incident of each kind.
	b.at(end.Add(-50 * time.Minute).Format(time.RFC3339))
	b.start("2026.9001", "payments-api")
	b.request("2026.9001", ica.TargetProduction, 780)
	b.finish("2026.9001", ica.RunSuccess)
	b.at(end.Add(-20 * time.Minute).Format(time.RFC3339))
	b.start("2026.9002", "web-frontend")
	b.request("2026.9002", ica.TargetStaging, 40)
	b.alert("aks-node-pressure", ica.Sev1)
	b.alert("blob-latency", ica.Sev2)
	inc := b.alert("acr-quota", ica.Sev3)
	_, err := st.IncidentTransition(b.ctx, inc.ID, ica.IncidentTransition{Action: ica.IncidentActAcknowledge,
		By: ica.Decider{Username: "oncall"}, Via: "mattermost"}, "mattermost:oncall", nil)
	require.NoError(tb, err)
	b.at(end.Format(time.RFC3339))
	return st, clock
}
