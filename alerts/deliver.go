package alerts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/PagerDuty/go-pagerduty"
	"golang.org/x/time/rate"

	"github.com/ica-governance/ica"
)

// Delivery defaults.
const (
	// DefaultRateLimitRetry is how long to wait after a 429 without
	// Retry-After; PagerDuty suggests retrying 30 seconds apart.
	DefaultRateLimitRetry = 30 * time.Second
	// DefaultPagerDutyTimeout bounds one request.
	DefaultPagerDutyTimeout = 10 * time.Second
	// DefaultEventsPerMinute and DefaultEventsBurst keep ICA under
	// PagerDuty's "approximately 120 calls/minute per integration key",
	// counted over a sliding 60 s window: a token bucket lets through at
	// most burst + rate×60 s in any minute, here 20 + 100 = 120.
	DefaultEventsPerMinute = 100
	DefaultEventsBurst     = 20

	maxRetryAfter    = time.Hour
	maxResponseBytes = 64 << 10
	redacted         = "[redacted]"
)

// PagerDutyConfig configures a PagerDutyDeliverer. The zero value delivers to
// PagerDuty's public endpoint with the defaults above, but has no routing key:
// events must then carry their own.
type PagerDutyConfig struct {
	// URL is the Events v2 enqueue URL (ICA_PAGERDUTY_URL); default
	// DefaultPagerDutyURL. It must end in /v2/enqueue or have no path.
	URL string
	// RoutingKey is used for events that carry none (ICA_PAGERDUTY_ROUTING_KEY).
	RoutingKey string
	// HTTPClient sends the requests; default: a keep-alive client.
	HTTPClient *http.Client
	// Timeout bounds one request (default DefaultPagerDutyTimeout).
	Timeout time.Duration
	// EventsPerMinute and Burst set the per-routing-key limit (defaults above).
	EventsPerMinute int
	Burst           int
	// RateLimitRetry is the delay after a 429 without Retry-After.
	RateLimitRetry time.Duration
	// Clock reads "now" for the rate limiter and Retry-After dates.
	Clock ica.Clock
}

// PagerDutyDeliverer delivers outbox messages with Destination "pagerduty"
// to the PagerDuty Events API v2 with go-pagerduty. It classifies results the
// way PagerDuty documents them: 2xx done; 400 and other 4xx permanent; 429
// retried after Retry-After (default 30 s); 408, 5xx, network errors and
// timeouts retried. Routing keys never appear in its errors.
type PagerDutyDeliverer struct {
	client     *pagerduty.Client
	routingKey string
	limiter    *RateLimiter
	clock      ica.Clock
	timeout    time.Duration
	retry429   time.Duration
}

var _ ica.Deliverer = (*PagerDutyDeliverer)(nil)

// NewPagerDutyDeliverer checks cfg and returns a deliverer.
func NewPagerDutyDeliverer(cfg PagerDutyConfig) (*PagerDutyDeliverer, error) {
	base, err := eventsBaseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.RoutingKey != "" && len(cfg.RoutingKey) != RoutingKeyLen {
		return nil, ica.FieldErrorf(ica.EINVALID, "ICA_PAGERDUTY_ROUTING_KEY", "the PagerDuty routing key must be %d characters", RoutingKeyLen)
	}
	d := &PagerDutyDeliverer{
		routingKey: cfg.RoutingKey,
		clock:      cfg.Clock,
		timeout:    cfg.Timeout,
		retry429:   cfg.RateLimitRetry,
	}
	if d.clock == nil {
		d.clock = ica.SystemClock{}
	}
	if d.timeout <= 0 {
		d.timeout = DefaultPagerDutyTimeout
	}
	if d.retry429 <= 0 {
		d.retry429 = DefaultRateLimitRetry
	}
	d.limiter = NewRateLimiter(cfg.EventsPerMinute, cfg.Burst, d.clock)
	hc := cfg.HTTPClient
	if hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 16
		hc = &http.Client{Transport: t}
	}
	d.client = pagerduty.NewClient("", pagerduty.WithV2EventsAPIEndpoint(base))
	d.client.HTTPClient = capturingDoer{hc}
	return d, nil
}

// eventsBaseURL turns the configured enqueue URL into the base go-pagerduty
// wants (it appends /v2/enqueue itself).
func eventsBaseURL(raw string) (string, error) {
	if raw == "" {
		raw = DefaultPagerDutyURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", ica.FieldErrorf(ica.EINVALID, "ICA_PAGERDUTY_URL", "ICA_PAGERDUTY_URL must be an http(s) URL like %s", DefaultPagerDutyURL)
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case p == "":
	case strings.HasSuffix(p, "/v2/enqueue"):
		p = strings.TrimSuffix(p, "/v2/enqueue")
	default:
		return "", ica.FieldErrorf(ica.EINVALID, "ICA_PAGERDUTY_URL", "ICA_PAGERDUTY_URL must end in /v2/enqueue (like %s)", DefaultPagerDutyURL)
	}
	u.Path, u.RawPath = p, ""
	return u.String(), nil
}

// Deliver sends one PagerDuty event. retry reports whether trying again later
// may succeed; a *ica.RetryAfterError asks for a particular delay.
func (d *PagerDutyDeliverer) Deliver(ctx context.Context, msg *ica.OutboxMessage) (retry bool, err error) {
	if msg.Destination != DestinationPagerDuty {
		return false, ica.Errorf(ica.EINVALID, "outbox message %d is for %q, not pagerduty", msg.ID, clip(msg.Destination, 40))
	}
	var ev PagerDutyEvent
	if err := json.Unmarshal(msg.Payload, &ev); err != nil {
		return false, ica.Errorf(ica.EINVALID, "outbox message %d: payload is not a PagerDuty event", msg.ID)
	}
	key := ev.RoutingKey
	if key == "" {
		key = d.routingKey
	}
	if key == "" {
		return false, ica.Errorf(ica.EINVALID, "outbox message %d: no PagerDuty routing key (set ICA_PAGERDUTY_ROUTING_KEY)", msg.ID)
	}
	if err := d.limiter.Allow(key); err != nil {
		return true, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c := &capture{}
	_, cerr := d.client.ManageEventWithContext(context.WithValue(ctx, captureKey{}, c), ev.v2(key))
	return d.classify(c, cerr, key)
}

// v2 converts the outbox payload to go-pagerduty's wire type.
func (e *PagerDutyEvent) v2(key string) *pagerduty.V2Event {
	v := &pagerduty.V2Event{
		RoutingKey: key,
		Action:     e.Action,
		DedupKey:   e.DedupKey,
		Client:     e.Client,
		ClientURL:  e.ClientURL,
	}
	for _, l := range e.Links {
		v.Links = append(v.Links, l)
	}
	if e.Action == PDTrigger {
		v.Payload = &pagerduty.V2Payload{
			Summary:   e.Summary,
			Source:    e.Source,
			Severity:  e.Severity,
			Timestamp: e.Timestamp,
			Component: e.Component,
			Group:     e.Group,
			Class:     e.Class,
		}
		if len(e.CustomDetails) > 0 {
			v.Payload.Details = e.CustomDetails
		}
	}
	return v
}

// classify turns what PagerDuty answered into (retry, err).
func (d *PagerDutyDeliverer) classify(c *capture, clientErr error, key string) (bool, error) {
	if c.status == 0 {
		cause := c.err
		if cause == nil {
			cause = clientErr
		}
		msg := "PagerDuty did not answer"
		var ne net.Error
		if errors.Is(cause, context.DeadlineExceeded) || (errors.As(cause, &ne) && ne.Timeout()) {
			msg = "PagerDuty did not answer in time"
		}
		return true, ica.Unavailable(msg, redactErr(cause, key))
	}
	detail := redact(responseDetail(c.body), key)
	switch s := c.status; {
	case s >= 200 && s < 300:
		return false, nil
	case s == http.StatusTooManyRequests:
		after, ok := retryAfter(c.header, d.clock.Now())
		if !ok {
			after = d.retry429
		}
		return true, &ica.RetryAfterError{After: after,
			Err: ica.Errorf(ica.ERATELIMIT, "PagerDuty rate-limited the event (HTTP 429)%s", prefixed(detail))}
	case s == http.StatusRequestTimeout || s >= 500:
		err := error(ica.Unavailable(fmt.Sprintf("PagerDuty answered HTTP %d", s), errors.New(firstNonEmpty(detail, http.StatusText(s)))))
		if after, ok := retryAfter(c.header, d.clock.Now()); ok {
			err = &ica.RetryAfterError{After: after, Err: err}
		}
		return true, err
	case s == http.StatusBadRequest:
		return false, ica.Errorf(ica.EINVALID, "PagerDuty rejected the event (HTTP 400)%s", prefixed(detail))
	default:
		return false, ica.Errorf(ica.EINVALID, "PagerDuty refused the event (HTTP %d)%s", s, prefixed(detail))
	}
}

func prefixed(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// responseDetail summarises PagerDuty's error body: message and errors.
func responseDetail(body []byte) string {
	var r struct {
		Status  string   `json:"status"`
		Message string   `json:"message"`
		Errors  []string `json:"errors"`
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return ""
	}
	if json.Unmarshal(body, &r) != nil {
		return clip(strings.Join(strings.Fields(string(body)), " "), 200)
	}
	parts := []string{firstNonEmpty(r.Message, r.Status)}
	parts = append(parts, r.Errors...)
	return clip(strings.Trim(strings.Join(parts, "; "), "; "), 500)
}

// retryAfter reads Retry-After (seconds or an HTTP date), bounded to an hour.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0, false
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, time.Second), maxRetryAfter), true
}

func redact(s, key string) string {
	if key == "" {
		return s
	}
	return strings.ReplaceAll(s, key, redacted)
}

// redactErr keeps err's message minus the key. The chain is not kept: a
// wrapped error could print the key through another path.
func redactErr(err error, key string) error {
	if err == nil {
		return nil
	}
	return errors.New(redact(err.Error(), key))
}

// capture records the HTTP exchange of one Deliver call. go-pagerduty hides
// the response (status, Retry-After, body) behind its own error types, so
// the transport wrapper below copies it here through the request context.
type capture struct {
	status int
	header http.Header
	body   []byte
	err    error
}

type captureKey struct{}

// capturingDoer wraps the HTTP client given to go-pagerduty.
type capturingDoer struct{ c *http.Client }

// Do sends req and, when the request carries a capture, records the answer.
// It reads (a bounded part of) the body, drains and closes the original so
// the connection is reused, and hands go-pagerduty a copy.
func (d capturingDoer) Do(req *http.Request) (*http.Response, error) {
	resp, err := d.c.Do(req)
	c, _ := req.Context().Value(captureKey{}).(*capture)
	if c == nil {
		return resp, err
	}
	if err != nil {
		c.err = err
		return resp, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4*maxResponseBytes))
	_ = resp.Body.Close()
	c.status, c.header, c.body = resp.StatusCode, resp.Header.Clone(), body
	if rerr != nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		// A broken error body is a broken answer: retry.
		c.status, c.err = 0, rerr
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// RateLimiter keeps events per routing key under PagerDuty's limit with a
// token bucket per key. When a key is over, it answers with the wait instead
// of blocking, so the outbox can schedule the retry.
type RateLimiter struct {
	mu     sync.Mutex
	every  rate.Limit
	burst  int
	clock  ica.Clock
	bucket map[string]*rate.Limiter
}

// NewRateLimiter allows perMinute events per key with the given burst;
// zero values take DefaultEventsPerMinute and DefaultEventsBurst.
func NewRateLimiter(perMinute, burst int, clock ica.Clock) *RateLimiter {
	if perMinute <= 0 {
		perMinute = DefaultEventsPerMinute
	}
	if burst <= 0 {
		burst = DefaultEventsBurst
	}
	if clock == nil {
		clock = ica.SystemClock{}
	}
	return &RateLimiter{every: rate.Limit(float64(perMinute) / 60), burst: burst, clock: clock, bucket: map[string]*rate.Limiter{}}
}

// Allow takes one event for key now, or returns a *ica.RetryAfterError with
// the wait until one is available (taking nothing).
func (l *RateLimiter) Allow(key string) error {
	// Buckets are keyed by a hash so the limiter never holds a routing key.
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:8])
	now := l.clock.Now()
	l.mu.Lock()
	b := l.bucket[h]
	if b == nil {
		b = rate.NewLimiter(l.every, l.burst)
		l.bucket[h] = b
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return &ica.RetryAfterError{After: time.Minute, Err: ica.Errorf(ica.ERATELIMIT, "PagerDuty events for this routing key are over ICA's rate limit")}
	}
	wait := r.DelayFrom(now)
	if wait == 0 {
		return nil
	}
	r.CancelAt(now)
	return &ica.RetryAfterError{After: wait, Err: ica.Errorf(ica.ERATELIMIT, "PagerDuty events for this routing key are over ICA's rate limit (%d a minute)", int(float64(l.every)*60+0.5))}
}
