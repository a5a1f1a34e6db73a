package cost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

const (
	cmTestToken = "test-token-3f9a1c" // the fake credential's token
	cmSub       = "subscriptions/00000000-0000-0000-0000-000000000000"
)

var cmT0 = time.Date(2023, 3, 2, 10, 0, 0, 0, time.UTC)

// cmCred is a fake azcore.TokenCredential that records the scopes asked for.
type cmCred struct {
	mu     sync.Mutex
	scopes []string
	err    error
}

func (c *cmCred) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes = append(c.scopes, strings.Join(opts.Scopes, " "))
	if c.err != nil {
		return azcore.AccessToken{}, c.err
	}
	return azcore.AccessToken{Token: cmTestToken, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// cmCall is one request the fake Cost Management endpoint received.
type cmCall struct {
	Scope string // from the path
	Query string // raw query
	Body  string
}

// cmReply is what the fake answers: a status, headers and a body; hangUp
// drops the connection instead (a network error).
type cmReply struct {
	Status int
	Header map[string]string
	Body   string
	HangUp bool
}

var cmPath = regexp.MustCompile(`^/((?:subscriptions/[^/]+)(?:/resourceGroups/[^/]+)?)/providers/Microsoft\.CostManagement/query$`)

// fakeCM is an httptest Cost Management endpoint. It checks what Azure
// would (bearer token, path, api-version, a JSON query body) and answers
// with reply(n, call), n counting from 0.
type fakeCM struct {
	srv   *httptest.Server
	reply func(n int, c cmCall) cmReply

	mu    sync.Mutex
	calls []cmCall
}

func newFakeCM(t *testing.T, reply func(n int, c cmCall) cmReply) *fakeCM {
	t.Helper()
	f := &fakeCM{reply: reply}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func cmErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (f *fakeCM) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		cmErr(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+cmTestToken {
		cmErr(w, http.StatusUnauthorized, "AuthenticationFailed", "bad bearer token")
		return
	}
	m := cmPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		cmErr(w, http.StatusNotFound, "PathNotFound", r.URL.Path)
		return
	}
	if v := r.URL.Query().Get("api-version"); v != "2023-03-01" {
		cmErr(w, http.StatusBadRequest, "InvalidApiVersion", "api-version "+v)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		cmErr(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", r.Header.Get("Content-Type"))
		return
	}
	body, _ := io.ReadAll(r.Body)
	var q map[string]any
	if json.Unmarshal(body, &q) != nil {
		cmErr(w, http.StatusBadRequest, "BadRequest", "body is not JSON")
		return
	}
	c := cmCall{Scope: m[1], Query: r.URL.RawQuery, Body: string(body)}
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, c)
	f.mu.Unlock()

	rep := f.reply(n, c)
	if rep.HangUp {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	}
	for k, v := range rep.Header {
		w.Header().Set(k, v)
	}
	if rep.Status == 0 {
		rep.Status = http.StatusOK
	}
	if rep.Body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(rep.Status)
	_, _ = io.WriteString(w, rep.Body)
}

func (f *fakeCM) Calls() []cmCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]cmCall(nil), f.calls...)
}

// cmStepClock is a fake clock whose After records the wait and moves the
// time at once, so retries run without real sleeping and tests can read
// exactly how long the client chose to wait.
type cmStepClock struct {
	*ica.FakeClock
	mu    sync.Mutex
	waits []time.Duration
}

func (c *cmStepClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.mu.Unlock()
	ch := c.FakeClock.After(d)
	c.FakeClock.Advance(d)
	return ch
}

func (c *cmStepClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

func mustClient(t *testing.T, f *fakeCM, clock ica.Clock, mod func(*Config)) (*Client, *cmCred) {
	t.Helper()
	cred := &cmCred{}
	cfg := Config{Endpoint: f.srv.URL, HTTPClient: f.srv.Client()}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg, cred, clock)
	require.NoError(t, err)
	return c, cred
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return string(b)
}

// cmAnswer builds an answer in the fixtures' shape: columns Cost,
// UsageDate (Number), ServiceName, Currency.
func cmAnswer(nextLink string, rows ...[]any) string {
	p := map[string]any{
		"nextLink": nil,
		"columns": []map[string]string{
			{"name": "Cost", "type": "Number"}, {"name": "UsageDate", "type": "Number"},
			{"name": "ServiceName", "type": "String"}, {"name": "Currency", "type": "String"},
		},
		"rows": rows,
	}
	if nextLink != "" {
		p["nextLink"] = nextLink
	}
	if rows == nil {
		p["rows"] = [][]any{}
	}
	b, _ := json.Marshal(map[string]any{
		"id":         cmSub + "/providers/Microsoft.CostManagement/Query/00000000-0000-0000-0000-000000000000",
		"name":       "55312978-ba1b-415c-9304-cfd9c43c0481",
		"type":       "microsoft.costmanagement/Query",
		"properties": p,
	})
	return string(b)
}

func cmDay(y int, m time.Month, dd int) time.Time { return time.Date(y, m, dd, 0, 0, 0, 0, time.UTC) }

const cmWantBody = `{"type":"ActualCost","timeframe":"Custom",
	"timePeriod":{"from":"2023-03-01T00:00:00Z","to":"2023-03-02T23:59:59Z"},
	"dataset":{"granularity":"Daily","aggregation":{"totalCost":{"name":"Cost","function":"Sum"}},
	"grouping":[{"type":"Dimension","name":"ServiceName"}]}}`

func TestClient_Query_DailyByService(t *testing.T) {
	answer := mustRead(t, "azure-query-daily-servicename.json")
	f := newFakeCM(t, func(int, cmCall) cmReply { return cmReply{Body: answer} })
	c, cred := mustClient(t, f, ica.NewFakeClock(cmT0), nil)

	// Times inside the days, and a leading slash on the scope, are normalised.
	got, err := c.Query(context.Background(), "/"+cmSub, cmDay(2023, 3, 1).Add(13*time.Hour), cmDay(2023, 3, 2).Add(time.Minute))
	require.NoError(t, err)

	calls := f.Calls()
	require.Len(t, calls, 1)
	require.Equal(t, cmSub, calls[0].Scope)
	require.Equal(t, "api-version=2023-03-01", calls[0].Query)
	require.JSONEq(t, cmWantBody, calls[0].Body)
	require.Equal(t, []string{"https://management.azure.com/.default"}, cred.scopes)

	want := []DailyCost{
		{cmSub, cmDay(2023, 3, 1), "acr", "Container Registry", 3.25, "USD"},
		{cmSub, cmDay(2023, 3, 1), "aks", "Azure Kubernetes Service", 12.5, "USD"},
		{cmSub, cmDay(2023, 3, 1), "blob", "Storage", 2.10333307059661, "USD"},
		{cmSub, cmDay(2023, 3, 1), "other", "Bandwidth; Virtual Machines", 218.68795741935486 + 0.14384913581657052, "USD"},
		{cmSub, cmDay(2023, 3, 2), "aks", "Azure Kubernetes Service; Kubernetes", 13, "USD"},
		{cmSub, cmDay(2023, 3, 2), "blob", "Storage", 0.009865586851323632, "USD"},
	}
	require.Equal(t, want, got)
}

func TestClient_Query_ResourceGroupScope(t *testing.T) {
	f := newFakeCM(t, func(int, cmCall) cmReply { return cmReply{Body: cmAnswer("", []any{1.5, 20230301, "Storage", "USD"})} })
	c, _ := mustClient(t, f, ica.NewFakeClock(cmT0), nil)
	scope := cmSub + "/resourceGroups/rg-ica_prod.(eu)"
	got, err := c.Query(context.Background(), scope, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
	require.NoError(t, err)
	require.Equal(t, scope, f.Calls()[0].Scope)
	require.Equal(t, []DailyCost{{scope, cmDay(2023, 3, 1), "blob", "Storage", 1.5, "USD"}}, got)
}

func TestClient_Query_Paging(t *testing.T) {
	var f *fakeCM
	f = newFakeCM(t, func(n int, c cmCall) cmReply {
		link := func(tok string) string {
			return f.srv.URL + "/" + cmSub + "/providers/Microsoft.CostManagement/query?api-version=2023-03-01&$skiptoken=" + tok
		}
		switch n {
		case 0:
			return cmReply{Body: cmAnswer(link("p2"), []any{1.0, 20230301, "Azure Kubernetes Service", "USD"}, []any{2.0, 20230301, "Storage", "USD"})}
		case 1:
			if !strings.Contains(c.Query, "skiptoken=p2") {
				return cmReply{Status: 400, Body: `{"error":{"code":"BadRequest","message":"wrong skiptoken"}}`}
			}
			// The same day and type again on another page: summed.
			return cmReply{Body: cmAnswer(link("p3"), []any{10.0, 20230301, "Azure Kubernetes Service", "USD"})}
		default:
			if !strings.Contains(c.Query, "skiptoken=p3") {
				return cmReply{Status: 400, Body: `{"error":{"code":"BadRequest","message":"wrong skiptoken"}}`}
			}
			return cmReply{Body: cmAnswer("", []any{4.0, 20230302, "Container Registry", "USD"})}
		}
	})
	c, _ := mustClient(t, f, ica.NewFakeClock(cmT0), nil)
	got, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 2))
	require.NoError(t, err)
	require.Equal(t, []DailyCost{
		{cmSub, cmDay(2023, 3, 1), "aks", "Azure Kubernetes Service", 11, "USD"},
		{cmSub, cmDay(2023, 3, 1), "blob", "Storage", 2, "USD"},
		{cmSub, cmDay(2023, 3, 2), "acr", "Container Registry", 4, "USD"},
	}, got)
	calls := f.Calls()
	require.Len(t, calls, 3)
	for _, c := range calls {
		require.JSONEq(t, cmWantBody, c.Body, "every page is POSTed the same query")
	}

	t.Run("MaxPages", func(t *testing.T) {
		c, _ := mustClient(t, f, ica.NewFakeClock(cmT0), func(cfg *Config) { cfg.MaxPages = 2 })
		f.mu.Lock()
		f.calls = nil
		f.mu.Unlock()
		_, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 2))
		require.ErrorContains(t, err, "more than 2 pages")
	})
}

func TestClient_Query_NextLinkElsewhere(t *testing.T) {
	thief := newFakeCM(t, func(int, cmCall) cmReply { return cmReply{Body: cmAnswer("")} })
	f := newFakeCM(t, func(int, cmCall) cmReply {
		return cmReply{Body: cmAnswer(thief.srv.URL+"/"+cmSub+"/providers/Microsoft.CostManagement/query?api-version=2023-03-01",
			[]any{1.0, 20230301, "Storage", "USD"})}
	})
	c, _ := mustClient(t, f, ica.NewFakeClock(cmT0), nil)
	_, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
	require.ErrorContains(t, err, "not the configured endpoint")
	require.Empty(t, thief.Calls(), "the token must not go to another host")
}

func TestClient_Query_RateLimited(t *testing.T) {
	for _, h := range []string{
		"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
		"x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
		"x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
		"Retry-After",
	} {
		t.Run(h, func(t *testing.T) {
			f := newFakeCM(t, func(n int, _ cmCall) cmReply {
				if n == 0 {
					return cmReply{Status: 429, Header: map[string]string{h: "37"},
						Body: `{"error":{"code":"429","message":"Too many requests. Please retry."}}`}
				}
				return cmReply{Body: cmAnswer("", []any{1.0, 20230301, "Storage", "USD"})}
			})
			clock := &cmStepClock{FakeClock: ica.NewFakeClock(cmT0)}
			c, _ := mustClient(t, f, clock, nil)
			got, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.Equal(t, []time.Duration{37 * time.Second}, clock.Waits())
			require.Equal(t, cmT0.Add(37*time.Second), clock.Now())
			require.Len(t, f.Calls(), 2)
		})
	}

	t.Run("LongestHeaderWins", func(t *testing.T) {
		h := http.Header{}
		h.Set("x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after", "5")
		h.Set("x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after", "20")
		h.Set("Retry-After", cmT0.Add(12*time.Second).Format(http.TimeFormat))
		require.Equal(t, 20*time.Second, retryAfter(h, cmT0))
		h.Set("Retry-After", cmT0.Add(90*time.Second).Format(http.TimeFormat))
		require.Equal(t, 90*time.Second, retryAfter(h, cmT0))
		require.Equal(t, time.Duration(-1), retryAfter(http.Header{"Retry-After": {"soon"}}, cmT0))
	})

	t.Run("SleepsOnTheInjectedClock", func(t *testing.T) {
		f := newFakeCM(t, func(n int, _ cmCall) cmReply {
			if n == 0 {
				return cmReply{Status: 429, Header: map[string]string{"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "7"}}
			}
			return cmReply{Body: cmAnswer("", []any{1.0, 20230301, "Storage", "USD"})}
		})
		clock := ica.NewFakeClock(cmT0)
		c, _ := mustClient(t, f, clock, nil)
		done := make(chan error, 1)
		go func() {
			_, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
			done <- err
		}()
		require.Eventually(t, func() bool { return clock.Waiters() == 1 }, 5*time.Second, time.Millisecond)
		clock.Advance(7*time.Second - time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		require.Len(t, f.Calls(), 1, "retried before the 7 s Azure asked for")
		clock.Advance(time.Millisecond)
		require.NoError(t, <-done)
		require.Len(t, f.Calls(), 2)
	})

	t.Run("RetriesBounded", func(t *testing.T) {
		f := newFakeCM(t, func(int, cmCall) cmReply {
			return cmReply{Status: 429, Header: map[string]string{"Retry-After": "3"}, Body: `{"error":{"code":"429","message":"Too many requests."}}`}
		})
		clock := &cmStepClock{FakeClock: ica.NewFakeClock(cmT0)}
		c, _ := mustClient(t, f, clock, func(cfg *Config) { cfg.MaxRetries = 2 })
		_, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
		var ae *APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, 429, ae.StatusCode)
		require.True(t, ae.Temporary())
		require.Len(t, f.Calls(), 3)
		require.Equal(t, []time.Duration{3 * time.Second, 3 * time.Second}, clock.Waits())
	})

	t.Run("WaitTooLong", func(t *testing.T) {
		f := newFakeCM(t, func(int, cmCall) cmReply {
			return cmReply{Status: 429, Header: map[string]string{"x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after": "3600"}}
		})
		clock := &cmStepClock{FakeClock: ica.NewFakeClock(cmT0)}
		c, _ := mustClient(t, f, clock, nil)
		_, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
		require.ErrorContains(t, err, "not waiting 1h0m0s")
		require.Empty(t, clock.Waits())
	})
}

func TestClient_Query_ServerErrorsRetried(t *testing.T) {
	for name, first := range map[string]cmReply{
		"500":     {Status: 500, Body: `{"error":{"code":"InternalServerError","message":"oops"}}`},
		"503":     {Status: 503},
		"network": {HangUp: true},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeCM(t, func(n int, _ cmCall) cmReply {
				if n < 2 {
					return first
				}
				return cmReply{Body: cmAnswer("", []any{1.0, 20230301, "Storage", "USD"})}
			})
			clock := &cmStepClock{FakeClock: ica.NewFakeClock(cmT0)}
			c, _ := mustClient(t, f, clock, nil)
			got, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.Len(t, f.Calls(), 3)
			require.Equal(t, []time.Duration{time.Second, 2 * time.Second}, clock.Waits(), "exponential backoff")
		})
	}
}

func TestClient_Query_PermanentError(t *testing.T) {
	const msg = "Invalid query definition: The time period for pulling the data cannot exceed 1 year(s)"
	f := newFakeCM(t, func(int, cmCall) cmReply {
		return cmReply{Status: 400, Header: map[string]string{"x-ms-request-id": "req-42"},
			Body: `{"error":{"code":"BadRequest","message":"` + msg + `"}}`}
	})
	clock := &cmStepClock{FakeClock: ica.NewFakeClock(cmT0)}
	c, _ := mustClient(t, f, clock, nil)
	_, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, &APIError{Scope: cmSub, StatusCode: 400, Code: "BadRequest", Message: msg, RequestID: "req-42"}, ae)
	require.False(t, ae.Temporary())
	require.Contains(t, err.Error(), "HTTP 400 BadRequest: "+msg)
	require.Len(t, f.Calls(), 1, "a 400 is not retried")
	require.Empty(t, clock.Waits())
}

func TestClient_Query_ErrorNeverCarriesToken(t *testing.T) {
	// An error page that echoes the request headers.
	f := newFakeCM(t, func(int, cmCall) cmReply {
		return cmReply{Status: 403, Body: `{"error":{"code":"AuthorizationFailed","message":"client with Authorization 'Bearer ` +
			cmTestToken + `' does not have Microsoft.CostManagement/query/action"}}`}
	})
	c, _ := mustClient(t, f, ica.NewFakeClock(cmT0), nil)
	_, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
	require.ErrorContains(t, err, "HTTP 403 AuthorizationFailed")
	require.NotContains(t, err.Error(), cmTestToken)

	// A non-JSON body still names the status.
	g := newFakeCM(t, func(int, cmCall) cmReply { return cmReply{Status: 404} })
	c, _ = mustClient(t, g, ica.NewFakeClock(cmT0), nil)
	_, err = c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
	require.ErrorContains(t, err, "HTTP 404: Not Found")
}

func TestClient_Query_TokenError(t *testing.T) {
	f := newFakeCM(t, func(int, cmCall) cmReply { return cmReply{Body: cmAnswer("")} })
	c, cred := mustClient(t, f, ica.NewFakeClock(cmT0), nil)
	cred.err = errors.New("managed identity unavailable")
	_, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
	require.ErrorContains(t, err, "managed identity unavailable")
	require.Empty(t, f.Calls())
}

func TestClient_Query_UsageDateString(t *testing.T) {
	f := newFakeCM(t, func(int, cmCall) cmReply {
		return cmReply{Body: `{"properties":{"nextLink":null,
			"columns":[{"name":"ServiceName","type":"String"},{"name":"UsageDate","type":"String"},
			           {"name":"Currency","type":"String"},{"name":"PreTaxCost","type":"Number"}],
			"rows":[["Storage","20230301","USD",1.25],["Storage","2023-03-01T00:00:00","USD",2],
			        ["Container Registry","2023-03-02","USD",0.5],["Storage","2023-03-02T00:00:00Z","USD",3]]}}`}
	})
	c, _ := mustClient(t, f, ica.NewFakeClock(cmT0), nil)
	got, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 2))
	require.NoError(t, err)
	require.Equal(t, []DailyCost{
		{cmSub, cmDay(2023, 3, 1), "blob", "Storage", 3.25, "USD"},
		{cmSub, cmDay(2023, 3, 2), "acr", "Container Registry", 0.5, "USD"},
		{cmSub, cmDay(2023, 3, 2), "blob", "Storage", 3, "USD"},
	}, got)
}

func TestClient_Query_NoContent(t *testing.T) {
	f := newFakeCM(t, func(int, cmCall) cmReply { return cmReply{Status: 204} })
	c, _ := mustClient(t, f, ica.NewFakeClock(cmT0), nil)
	got, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestClient_Query_MissingColumns(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		// The vendor samples, verbatim: grouped by ResourceGroup.
		"DailyByResourceGroup": {mustRead(t, "azure-query-daily-resourcegroup.json"), "lacks ServiceName"},
		"NoGranularity":        {mustRead(t, "azure-query-grouping-resourcegroup.json"), "lacks UsageDate (is the granularity Daily?) and ServiceName"},
		"NoCost": {`{"properties":{"columns":[{"name":"UsageDate","type":"Number"},{"name":"ServiceName","type":"String"}],"rows":[]}}`,
			"lacks a cost column (Cost, PreTaxCost, CostUSD, totalCost); columns are [UsageDate, ServiceName]"},
		"ShortRow": {`{"properties":{"columns":[{"name":"Cost"},{"name":"UsageDate"},{"name":"ServiceName"}],"rows":[[1,20230301]]}}`,
			"row 0 has 2 cells for 3 columns"},
		"BadDate": {`{"properties":{"columns":[{"name":"Cost"},{"name":"UsageDate"},{"name":"ServiceName"}],"rows":[[1,20231301,"Storage"]]}}`,
			"row 0: UsageDate"},
		"BadCost": {`{"properties":{"columns":[{"name":"Cost"},{"name":"UsageDate"},{"name":"ServiceName"}],"rows":[[null,20230301,"Storage"]]}}`,
			"row 0: Cost: null is not a number"},
		"NotJSON":      {`<html>gateway</html>`, "decode cost management answer"},
		"NoProperties": {`{"error":null}`, "no properties"},
		"MixedCurrency": {cmAnswer("", []any{1.0, 20230301, "Storage", "USD"}, []any{1.0, 20230301, "Storage", "EUR"}),
			"mixes currencies USD and EUR on 2023-03-01"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeCM(t, func(int, cmCall) cmReply { return cmReply{Body: tc.body} })
			c, _ := mustClient(t, f, ica.NewFakeClock(cmT0), nil)
			_, err := c.Query(context.Background(), cmSub, cmDay(2023, 3, 1), cmDay(2023, 3, 1))
			require.ErrorContains(t, err, tc.want)
			require.Len(t, f.Calls(), 1, "a malformed answer is not retried")
		})
	}
}

func TestClient_Query_CostUSDColumnIsUSD(t *testing.T) {
	p, err := parseQueryResponse([]byte(`{"properties":{"columns":[{"name":"CostUSD"},{"name":"UsageDate"},{"name":"ServiceName"},{"name":"Currency"}],
		"rows":[[2.5,20230301,"Storage","EUR"]]}}`))
	require.NoError(t, err)
	require.Equal(t, []queryRow{{date: cmDay(2023, 3, 1), service: "Storage", cost: 2.5, currency: "USD"}}, p.rows)
}

func TestNewClient_Validates(t *testing.T) {
	cred := &cmCred{}
	for name, cfg := range map[string]Config{
		"HTTPEndpoint":   {Endpoint: "http://management.azure.com"},
		"EndpointQuery":  {Endpoint: "https://management.azure.com/?x=1"},
		"NotURL":         {Endpoint: "management.azure.com"},
		"ScopeTraversal": {Scopes: []string{"subscriptions/x/../../providers"}},
		"ScopeQuery":     {Scopes: []string{"subscriptions/x?api-version=1"}},
		"EmptyScope":     {Scopes: []string{"/"}},
		"Lookback":       {Lookback: 400},
		"Interval":       {Interval: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewClient(cfg, cred, nil)
			require.Error(t, err)
			require.Equal(t, ica.EINVALID, ica.ErrorCode(err), err.Error())
		})
	}
	c, err := NewClient(Config{Scopes: []string{"/" + cmSub + "/"}}, cred, nil)
	require.NoError(t, err)
	require.Equal(t, DefaultEndpoint, c.base)

	_, err = c.Query(context.Background(), cmSub, cmDay(2023, 3, 2), cmDay(2023, 3, 1))
	require.ErrorContains(t, err, "2023-03-02 is after 2023-03-01")
	_, err = c.Query(context.Background(), "subscriptions/a b", cmDay(2023, 3, 1), cmDay(2023, 3, 1))
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
}

func TestResourceTypeOf(t *testing.T) {
	for service, want := range map[string]string{
		"Azure Kubernetes Service": "aks",
		"azure kubernetes service": "aks",
		"Kubernetes":               "aks",
		" Container Registry ":     "acr",
		"CONTAINER REGISTRY":       "acr",
		"Storage":                  "blob",
		"storage":                  "blob",
		"Azure Blob Storage":       "blob",
		"Azure Data Lake Storage":  "other",
		"Virtual Machines":         "other",
		"Bandwidth":                "other",
		"":                         "other",
	} {
		require.Equal(t, want, ResourceTypeOf(service), fmt.Sprintf("%q", service))
	}
}
