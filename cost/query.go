// Package cost is ICA's cost side: the budget and the actual costs behind it.
//
// The Azure Cost Management part (query.go, parse.go, servicemap.go,
// sync.go) asks the Query API for the actual cost per day and service of
// each configured scope, folds services into ICA's resource types (aks, acr, blob,
// other) and hands the result to a Sink (the store), which replaces the
// amount it held for each (scope, day, resource type).
//
// Currency: ICA assumes the billing currency is USD. Cost Management answers
// in the billing account's currency; a non-USD answer is recorded with its
// Currency and stored as is, without conversion, and the Syncer logs a
// warning once.
package cost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/ica-governance/ica"
)

// Defaults of Config.
const (
	DefaultEndpoint     = "https://management.azure.com"
	DefaultTokenScope   = "https://management.azure.com/.default"
	DefaultInterval     = 6 * time.Hour
	DefaultMaxPages     = 50
	DefaultMaxRetries   = 5
	DefaultMaxRetryWait = 10 * time.Minute

	// APIVersion is the Cost Management Query API version ICA speaks.
	APIVersion = "2023-03-01"

	// maxLookback is Cost Management's limit on a custom time period (one year).
	maxLookback = 365
	// maxResponseBytes bounds one page of answer; a real page is a few hundred KB.
	maxResponseBytes = 32 << 20
)

// Rate-limit headers of Cost Management, in the order ICA reads them. Each
// gives the seconds to wait before the named quota (query processing units,
// the scope, the tenant) allows another query; Retry-After is the generic one.
var retryAfterHeaders = []string{
	"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
	"x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
	"x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
	"Retry-After",
}

// DailyCost is the actual cost of one resource type in one scope on one day.
type DailyCost struct {
	Scope        string    // as configured, without a leading slash
	Date         time.Time // UTC midnight of the day the cost accrued
	ResourceType string    // ica.ResourceAKS, ResourceACR, ResourceBlob or ResourceOther
	// Service is Azure's ServiceName; when several services fold into one
	// resource type on a day, their names sorted and joined with "; ".
	Service  string
	CostUSD  float64 // in Currency; ICA assumes USD and converts nothing
	Currency string  // as Azure reports it ("USD"); "" when the answer has no currency column
}

// Sink receives synced costs; the store implements it. It must be
// idempotent per (scope, day, resource type): a repeat replaces the amount.
type Sink interface {
	UpsertDailyCosts(ctx context.Context, scope string, costs []DailyCost, syncedAt time.Time) error
}

// Querier asks Cost Management for daily costs; *Client is the real one.
type Querier interface {
	Query(ctx context.Context, scope string, from, to time.Time) ([]DailyCost, error)
}

var _ Querier = (*Client)(nil)

// Config configures the Cost Management client and the sync.
type Config struct {
	// Scopes to sync, e.g. "subscriptions/<id>" or
	// "subscriptions/<id>/resourceGroups/<rg>" (a leading "/" is accepted).
	Scopes []string
	// Endpoint is the Azure Resource Manager endpoint (default
	// DefaultEndpoint). It must be https, except on a loopback host (tests).
	Endpoint string
	// TokenScope is the Entra ID scope of the token (default
	// DefaultTokenScope; sovereign clouds use their own ARM endpoint's).
	TokenScope string
	// Interval between syncs (default 6h; Cost Management refreshes its data
	// a few times a day, more often buys nothing).
	Interval time.Duration
	// Lookback is how many days before today each sync re-fetches (today
	// included as well). 0 means month to date plus the last 3 days of the
	// previous month, so late-arriving charges of the month's end are caught.
	Lookback int
	// HTTPClient (default: one with a 2 minute timeout).
	HTTPClient *http.Client
	// MaxPages bounds the nextLink pages of one query (default 50). A query
	// with more pages fails rather than report a partial month.
	MaxPages int
	// MaxRetries bounds the retries of one request after 429, 408, 5xx or a
	// network error (default 5).
	MaxRetries int
	// MaxRetryWait: when Azure asks to wait longer than this (default 10m),
	// the query fails and the next scheduled sync tries again.
	MaxRetryWait time.Duration
}

func (cfg Config) withDefaults() Config {
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	if cfg.TokenScope == "" {
		cfg.TokenScope = DefaultTokenScope
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 2 * time.Minute}
	}
	if cfg.MaxPages == 0 {
		cfg.MaxPages = DefaultMaxPages
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.MaxRetryWait == 0 {
		cfg.MaxRetryWait = DefaultMaxRetryWait
	}
	return cfg
}

// validate checks a Config that has its defaults.
func (cfg Config) validate() error {
	for i, s := range cfg.Scopes {
		if _, err := cleanScope(s); err != nil {
			return fmt.Errorf("cost scopes[%d]: %w", i, err)
		}
	}
	if cfg.Interval < time.Minute {
		return ica.FieldErrorf(ica.EINVALID, "interval", "cost sync interval %s is shorter than a minute", cfg.Interval)
	}
	if cfg.Lookback < 0 || cfg.Lookback > maxLookback {
		return ica.FieldErrorf(ica.EINVALID, "lookback", "cost lookback must be 0 to %d days, not %d", maxLookback, cfg.Lookback)
	}
	if cfg.MaxPages < 0 || cfg.MaxRetries < 0 || cfg.MaxRetryWait < 0 {
		return ica.Errorf(ica.EINVALID, "cost MaxPages, MaxRetries and MaxRetryWait must not be negative")
	}
	return nil
}

// Client calls the Cost Management Query API. It is safe for concurrent use.
type Client struct {
	cfg      Config
	endpoint *url.URL
	base     string // endpoint without a trailing slash
	cred     azcore.TokenCredential
	clock    ica.Clock
}

// NewClient returns a client for cfg.Endpoint. cred supplies tokens for
// cfg.TokenScope; nil means azidentity.DefaultAzureCredential (environment,
// workload identity, Managed Identity, Azure CLI). The identity needs the
// Cost Management Reader role on each scope. clock paces retries.
func NewClient(cfg Config, cred azcore.TokenCredential, clock ica.Clock) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, ica.FieldErrorf(ica.EINVALID, "endpoint", "cost management endpoint %q is not a base URL", cfg.Endpoint)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
		return nil, ica.FieldErrorf(ica.EINVALID, "endpoint", "cost management endpoint %q must use https", cfg.Endpoint)
	}
	if clock == nil {
		clock = ica.SystemClock{}
	}
	if cred == nil {
		cred, err = azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("set up Azure credential for Cost Management: %w", err)
		}
	}
	return &Client{cfg: cfg, endpoint: u, base: strings.TrimRight(u.String(), "/"), cred: cred, clock: clock}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// cleanScope trims the slashes around an ARM scope and checks that every
// segment is a plausible ARM name, so a scope can never turn the request
// into another path or query.
func cleanScope(scope string) (string, error) {
	s := strings.Trim(strings.TrimSpace(scope), "/")
	if s == "" {
		return "", ica.FieldErrorf(ica.EINVALID, "scope", "empty cost management scope")
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", ica.FieldErrorf(ica.EINVALID, "scope", "cost management scope %q has an empty or relative segment", scope)
		}
		for _, r := range seg {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("._-():", r) {
				return "", ica.FieldErrorf(ica.EINVALID, "scope", "cost management scope %q contains %q", scope, r)
			}
		}
	}
	return s, nil
}

// queryRequest is the body POSTed to the Query API (and to every nextLink).
type queryRequest struct {
	Type       string       `json:"type"`
	Timeframe  string       `json:"timeframe"`
	TimePeriod queryPeriod  `json:"timePeriod"`
	Dataset    queryDataset `json:"dataset"`
}

type queryPeriod struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type queryDataset struct {
	Granularity string                      `json:"granularity"`
	Aggregation map[string]queryAggregation `json:"aggregation"`
	Grouping    []queryGrouping             `json:"grouping"`
}

type queryAggregation struct {
	Name     string `json:"name"`
	Function string `json:"function"`
}

type queryGrouping struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

func newQueryRequest(from, to time.Time) queryRequest {
	return queryRequest{
		Type:      "ActualCost",
		Timeframe: "Custom",
		TimePeriod: queryPeriod{
			From: from.Format("2006-01-02") + "T00:00:00Z",
			To:   to.Format("2006-01-02") + "T23:59:59Z",
		},
		Dataset: queryDataset{
			Granularity: "Daily",
			Aggregation: map[string]queryAggregation{"totalCost": {Name: "Cost", Function: "Sum"}},
			Grouping:    []queryGrouping{{Type: "Dimension", Name: "ServiceName"}},
		},
	}
}

// day returns the UTC midnight of t's UTC day.
func day(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// Query returns the actual cost of scope per day and resource type for the
// days from and to (inclusive, UTC), following nextLink pages. Rows for the
// same day and resource type are summed. The result is sorted by day, then
// resource type. Errors are *APIError for answers Azure refused, or name
// what was wrong with the answer.
func (c *Client) Query(ctx context.Context, scope string, from, to time.Time) ([]DailyCost, error) {
	s, err := cleanScope(scope)
	if err != nil {
		return nil, err
	}
	from, to = day(from), day(to)
	if to.Before(from) {
		return nil, ica.Errorf(ica.EINVALID, "cost query for %s: %s is after %s", s, from.Format(time.DateOnly), to.Format(time.DateOnly))
	}
	body, err := json.Marshal(newQueryRequest(from, to))
	if err != nil {
		return nil, fmt.Errorf("encode cost query: %w", err)
	}
	segs := strings.Split(s, "/")
	for i := range segs {
		segs[i] = url.PathEscape(segs[i])
	}
	target := c.base + "/" + strings.Join(segs, "/") + "/providers/Microsoft.CostManagement/query?api-version=" + APIVersion

	var rows []queryRow
	for page := 1; ; page++ {
		if page > c.cfg.MaxPages {
			return nil, fmt.Errorf("cost query for %s: more than %d pages; raise MaxPages or shorten the lookback", s, c.cfg.MaxPages)
		}
		data, err := c.post(ctx, s, target, body)
		if err != nil {
			return nil, err
		}
		p, err := parseQueryResponse(data)
		if err != nil {
			return nil, fmt.Errorf("cost query for %s, page %d: %w", s, page, err)
		}
		rows = append(rows, p.rows...)
		if p.nextLink == "" {
			break
		}
		if target, err = c.checkNextLink(p.nextLink); err != nil {
			return nil, fmt.Errorf("cost query for %s, page %d: %w", s, page, err)
		}
	}
	return aggregate(s, rows)
}

// checkNextLink makes sure a nextLink points at the configured endpoint:
// the bearer token goes wherever the link says.
func (c *Client) checkNextLink(link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil || !u.IsAbs() {
		return "", fmt.Errorf("nextLink %q is not an absolute URL", truncate(link, 200))
	}
	if !strings.EqualFold(u.Scheme, c.endpoint.Scheme) || !strings.EqualFold(u.Host, c.endpoint.Host) {
		return "", fmt.Errorf("nextLink points at %s://%s, not the configured endpoint %s", u.Scheme, u.Host, c.base)
	}
	if u.Query().Get("api-version") == "" {
		q := u.Query()
		q.Set("api-version", APIVersion)
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// APIError is an answer of Cost Management that is not a success. It names
// Azure's error code and message, never the request's credentials.
type APIError struct {
	Scope      string
	StatusCode int
	Code       string // Azure's error.code, e.g. "BadRequest", "429"
	Message    string // Azure's error.message, truncated
	RequestID  string // x-ms-request-id, for Azure support
	RetryAfter time.Duration
}

// Error implements the error interface.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cost management query for %s: HTTP %d", e.Scope, e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (asked to retry after %s)", e.RetryAfter)
	}
	if e.RequestID != "" {
		b.WriteString(" (x-ms-request-id " + e.RequestID + ")")
	}
	return b.String()
}

// Temporary reports whether trying later may succeed (429, 408, 5xx).
func (e *APIError) Temporary() bool { return retryableStatus(e.StatusCode) }

func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500
}

// post sends body to target, retrying 429, 408, 5xx and network errors up
// to MaxRetries times, sleeping on the injected clock. It returns the body
// of a 200 (nil for a 204).
func (c *Client) post(ctx context.Context, scope, target string, body []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.cfg.TokenScope}})
		if err != nil {
			return nil, fmt.Errorf("get Azure token for Cost Management (%s): %w", c.cfg.TokenScope, err)
		}
		data, wait, err := c.once(ctx, scope, target, body, tok.Token)
		if err == nil {
			return data, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ae *APIError
		if errors.As(err, &ae) && !ae.Temporary() {
			return nil, err
		}
		if attempt >= c.cfg.MaxRetries {
			return nil, fmt.Errorf("after %d attempts: %w", attempt+1, err)
		}
		if wait < 0 {
			wait = backoff(attempt)
		}
		if wait > c.cfg.MaxRetryWait {
			return nil, fmt.Errorf("not waiting %s (more than %s) for Cost Management: %w", wait, c.cfg.MaxRetryWait, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.clock.After(wait):
		}
	}
}

// backoff is the wait before retry attempt+1 when Azure names none: 1s,
// 2s, 4s … capped at one minute.
func backoff(attempt int) time.Duration {
	d := time.Second << min(attempt, 6)
	return min(d, time.Minute)
}

// once makes one request. wait is what Azure asked for (-1: nothing).
func (c *Client) once(ctx context.Context, scope, target string, body []byte, token string) (data []byte, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, -1, fmt.Errorf("cost query for %s: %w", scope, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "ica-cost-sync")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, -1, fmt.Errorf("cost query for %s: %w", scope, err)
	}
	defer resp.Body.Close()
	data, err = io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, -1, fmt.Errorf("cost query for %s: read answer: %w", scope, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if len(data) > maxResponseBytes {
			return nil, -1, &APIError{Scope: scope, StatusCode: resp.StatusCode, Message: fmt.Sprintf("answer larger than %d bytes", maxResponseBytes)}
		}
		return data, 0, nil
	case resp.StatusCode == http.StatusNoContent:
		return nil, 0, nil
	}
	wait = retryAfter(resp.Header, c.clock.Now())
	ae := &APIError{Scope: scope, StatusCode: resp.StatusCode, RequestID: resp.Header.Get("x-ms-request-id")}
	if wait >= 0 {
		ae.RetryAfter = wait
	}
	ae.Code, ae.Message = azureError(data)
	if ae.Code == "" && ae.Message == "" {
		ae.Message = http.StatusText(resp.StatusCode)
	}
	// Belt and braces: an error page that echoes the request must not
	// carry the token into logs.
	if token != "" {
		ae.Code = strings.ReplaceAll(ae.Code, token, "[redacted]")
		ae.Message = strings.ReplaceAll(ae.Message, token, "[redacted]")
	}
	return nil, wait, ae
}

// retryAfter reads Cost Management's rate-limit headers and Retry-After
// (seconds or an HTTP date) and returns the longest wait named, or -1.
func retryAfter(h http.Header, now time.Time) time.Duration {
	wait := time.Duration(-1)
	for _, name := range retryAfterHeaders {
		v := strings.TrimSpace(h.Get(name))
		if v == "" {
			continue
		}
		var d time.Duration
		if secs, err := strconv.ParseFloat(v, 64); err == nil {
			if math.IsNaN(secs) || secs < 0 || secs > 24*3600 {
				continue
			}
			d = time.Duration(secs * float64(time.Second))
		} else if t, err := http.ParseTime(v); err == nil {
			d = max(t.Sub(now), 0)
		} else {
			continue
		}
		wait = max(wait, d)
	}
	return wait
}

// azureError extracts code and message from an ARM error body
// ({"error":{"code","message"}}, or the same fields at the top level);
// other bodies yield a printable prefix as the message.
func azureError(body []byte) (code, msg string) {
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Error != nil && (e.Error.Code != "" || e.Error.Message != "") {
			return truncate(e.Error.Code, 100), truncate(e.Error.Message, 500)
		}
		if e.Code != "" || e.Message != "" {
			return truncate(e.Code, 100), truncate(e.Message, 500)
		}
	}
	return "", truncate(strings.TrimSpace(string(body)), 200)
}

// truncate shortens s to n bytes on a rune boundary and drops control
// characters, so a hostile answer cannot forge log lines.
func truncate(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
