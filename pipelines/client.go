package pipelines

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Defaults for RetryPolicy.
const (
	DefaultMaxAttempts   = 6
	DefaultInitialDelay  = time.Second
	DefaultMaxDelay      = 30 * time.Second
	DefaultMaxRetryAfter = 2 * time.Minute
	// DefaultRequestTimeout bounds one attempt, so a hung connection turns
	// into a retry instead of a stuck pipeline step.
	DefaultRequestTimeout = 30 * time.Second
)

// maxResponse bounds how much of a response body is read.
const maxResponse = 1 << 20

// RetryPolicy says how often and how patiently a call is retried. Only
// transient failures are retried: network errors, 429 (honouring
// Retry-After), 502, 503 and 504. Other statuses, 500 included, are answers.
type RetryPolicy struct {
	// MaxAttempts counts the first try; 1 disables retries.
	MaxAttempts int
	// Initial is the delay before the second attempt; it doubles per
	// attempt up to Max. Each delay is jittered into [d/2, d].
	Initial, Max time.Duration
	// MaxRetryAfter caps a server's Retry-After.
	MaxRetryAfter time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.Initial <= 0 {
		p.Initial = DefaultInitialDelay
	}
	if p.Max <= 0 {
		p.Max = DefaultMaxDelay
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = DefaultMaxRetryAfter
	}
	return p
}

// Config configures a Client. URL and Tokens are required.
type Config struct {
	// URL is ICA's base URL (ICA_URL), e.g. https://ica.example.com.
	URL string
	// Tokens supplies the bearer token.
	Tokens TokenSource
	// HTTPClient defaults to a client with DefaultRequestTimeout.
	HTTPClient *http.Client
	// Clock times backoff sleeps and approval waits; defaults to ica.SystemClock.
	Clock ica.Clock
	// Retry defaults to DefaultMaxAttempts attempts, 1 s doubling to 30 s.
	Retry RetryPolicy
	// Rand returns a number in [0, 1) for jitter; defaults to math/rand/v2.
	Rand func() float64
	// Logf receives one line per retry; nil discards them.
	Logf func(format string, args ...any)
	// UserAgent defaults to "ica-pipelines".
	UserAgent string
}

// Client calls ICA's pipeline API. Its methods are safe for concurrent use.
type Client struct {
	base   *url.URL
	tokens TokenSource
	hc     *http.Client
	clock  ica.Clock
	retry  RetryPolicy
	rand   func() float64
	logf   func(format string, args ...any)
	ua     string
}

// NewClient checks cfg and returns a Client.
func NewClient(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.URL) == "" {
		return nil, errors.New("no ICA URL")
	}
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ICA URL %q is not an http(s) URL", cfg.URL)
	}
	if u.User != nil {
		return nil, errors.New("ICA URL must not carry credentials; use ICA_TOKEN")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	if cfg.Tokens == nil {
		return nil, errors.New("no token source")
	}
	c := &Client{base: u, tokens: cfg.Tokens, hc: cfg.HTTPClient, clock: cfg.Clock,
		retry: cfg.Retry.withDefaults(), rand: cfg.Rand, logf: cfg.Logf, ua: cfg.UserAgent}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: DefaultRequestTimeout}
	}
	if c.clock == nil {
		c.clock = ica.SystemClock{}
	}
	if c.rand == nil {
		c.rand = mrand.Float64
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if c.ua == "" {
		c.ua = "ica-pipelines"
	}
	return c, nil
}

// APIError is an answer from ICA that is not a success. It unwraps to the
// *ica.Error the server described, so ica.ErrorCode and errors.As work.
type APIError struct {
	Method, Path string
	Status       int
	Code         string
	Message      string
	Field        string
	// RetryAfter is the server's Retry-After, when it sent one.
	RetryAfter time.Duration
	// Body is the answer as sent (a refusal may carry the gate's verdict).
	Body json.RawMessage
}

// Error implements error.
func (e *APIError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, e.Code, e.Message)
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	return s
}

// Unwrap returns the error as the server's *ica.Error.
func (e *APIError) Unwrap() error {
	return &ica.Error{Code: e.Code, Message: e.Message, Field: e.Field}
}

// Transient reports whether retrying the same request later may succeed.
// A feature the server is not configured for (503 not_configured) stays
// missing until an operator acts, so it is not retried.
func (e *APIError) Transient() bool {
	return retryableStatus(e.Status) && e.Code != ica.ENOTCONFIGURED
}

func retryableStatus(s int) bool {
	switch s {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// codeForStatus names an ica error code for a status whose body did not.
func codeForStatus(s int) string {
	switch s {
	case 400:
		return ica.EINVALID
	case 401:
		return ica.EUNAUTHORIZED
	case 403:
		return ica.EFORBIDDEN
	case 404:
		return ica.ENOTFOUND
	case 409:
		return ica.ECONFLICT
	case 413:
		return ica.ETOOLARGE
	case 422:
		return ica.EPOLICY
	case 429:
		return ica.ERATELIMIT
	case 502, 503, 504:
		return ica.EUNAVAILABLE
	}
	return ica.EINTERNAL
}

// IsTransient reports whether err is a failure that a later retry may cure:
// a network error or a retryable status. Context cancellation is not.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Transient()
	}
	var ne *netError
	return errors.As(err, &ne)
}

// netError marks a failure to get any answer from ICA.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// StartRun records the start of a run. Repeating the same start returns the
// stored run; the same run_id with other content is an EConflict error.
func (c *Client) StartRun(ctx context.Context, s ica.RunStart) (*ica.Run, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var r ica.Run
	if err := c.do(ctx, http.MethodPost, "/api/v1/runs", &s, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// AddEvent records one event of a run. An event without an EventID gets a
// random one before the first attempt, so retries of this call are recorded
// once; give a deterministic EventID (see EventID) to make re-runs of the
// same step idempotent too. The returned event carries the id used.
func (c *Client) AddEvent(ctx context.Context, runID string, e ica.EventInput) (*ica.Event, error) {
	if err := ica.ValidID("run_id", runID); err != nil {
		return nil, err
	}
	if e.EventID == "" {
		e.EventID = randomEventID()
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	var ev ica.Event
	if err := c.do(ctx, http.MethodPost, "/api/v1/runs/"+url.PathEscape(runID)+"/events", &e, &ev); err != nil {
		return nil, err
	}
	if ev.EventID == "" {
		ev.EventID = e.EventID
	}
	if ev.RunID == "" {
		ev.RunID = runID
	}
	if ev.EventType == "" {
		ev.EventType = e.EventType
	}
	return &ev, nil
}

// FinishRun records the end of a run and returns it with its audit_hash.
func (c *Client) FinishRun(ctx context.Context, runID string, f ica.RunFinish) (*ica.Run, error) {
	if err := ica.ValidID("run_id", runID); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	var r ica.Run
	if err := c.do(ctx, http.MethodPost, "/api/v1/runs/"+url.PathEscape(runID)+"/finish", &f, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RequestApproval asks for a deployment approval. Asking again while the
// same approval is open returns it. A refusal by policy (budget gate,
// incident freeze) is an error with code ica.EPOLICY and the reason.
func (c *Client) RequestApproval(ctx context.Context, r ica.ApprovalRequest) (*ica.Approval, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var a ica.Approval
	if err := c.do(ctx, http.MethodPost, "/api/v1/approvals", &r, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// GetApproval returns an approval's current state.
func (c *Client) GetApproval(ctx context.Context, id string) (*ica.Approval, error) {
	if err := ica.ValidID("approval_id", id); err != nil {
		return nil, err
	}
	var a ica.Approval
	if err := c.do(ctx, http.MethodGet, "/api/v1/approvals/"+url.PathEscape(id), nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// LatestApproval returns the newest approval requested for a run.
func (c *Client) LatestApproval(ctx context.Context, runID string) (*ica.Approval, error) {
	if err := ica.ValidID("run_id", runID); err != nil {
		return nil, err
	}
	var a ica.Approval
	if err := c.do(ctx, http.MethodGet, "/api/v1/runs/"+url.PathEscape(runID)+"/approvals/latest", nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// do sends one API request, retrying transient failures, and decodes a
// successful answer into out.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
	}
	var last error
	for attempt := 1; ; attempt++ {
		retryAfter, err := c.once(ctx, method, path, body, out)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		last = err
		if !IsTransient(err) {
			return err
		}
		if attempt >= c.retry.MaxAttempts {
			return fmt.Errorf("%s %s: giving up after %d attempts: %w", method, path, attempt, last)
		}
		d := c.backoff(attempt)
		if retryAfter > 0 {
			d = min(retryAfter, c.retry.MaxRetryAfter)
		}
		c.logf("ICA %s %s: %v; retrying in %s (attempt %d of %d)", method, path, shortErr(err), d.Round(100*time.Millisecond), attempt+1, c.retry.MaxAttempts)
		if err := sleep(ctx, c.clock, d); err != nil {
			return fmt.Errorf("%s %s: %w (after: %v)", method, path, err, last)
		}
	}
}

// shortErr drops the method and path an APIError repeats.
func shortErr(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return fmt.Sprintf("%d %s", ae.Status, ae.Message)
	}
	return err.Error()
}

// once makes one attempt. It returns, for 429/503, the server's
// Retry-After, and the error.
func (c *Client) once(ctx context.Context, method, path string, body []byte, out any) (time.Duration, error) {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s %s: bearer token: %w", method, path, err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, &netError{fmt.Errorf("%s %s: %w", method, path, err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	_, _ = io.Copy(io.Discard, resp.Body)
	if err != nil {
		return 0, &netError{fmt.Errorf("%s %s: read response: %w", method, path, err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil || len(bytes.TrimSpace(data)) == 0 {
			return 0, nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return 0, fmt.Errorf("%s %s: decode %d response: %w", method, path, resp.StatusCode, err)
		}
		return 0, nil
	}
	ae := &APIError{Method: method, Path: path, Status: resp.StatusCode, Body: data}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
		ae.Code, ae.Message, ae.Field = eb.Error.Code, eb.Error.Message, eb.Error.Field
	} else {
		ae.Code = codeForStatus(resp.StatusCode)
		ae.Message = strings.ToLower(http.StatusText(resp.StatusCode))
		if ae.Message == "" {
			ae.Message = "unexpected status"
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		ae.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), c.clock.Now())
	}
	return ae.RetryAfter, ae
}

// backoff returns the jittered delay after the given failed attempt.
func (c *Client) backoff(attempt int) time.Duration {
	d := float64(c.retry.Initial) * math.Pow(2, float64(attempt-1))
	d = math.Min(d, float64(c.retry.Max))
	return time.Duration(d/2 + c.rand()*d/2)
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 means absent or
// unusable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// sleep waits d on clock, or until ctx ends.
func sleep(ctx context.Context, clock ica.Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-clock.After(d):
		return nil
	}
}

func randomEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "ev-" + hex.EncodeToString(b[:])
}
