// Package pdtest is a fake PagerDuty Events API v2 for tests and benchmarks.
// It validates events the way PagerDuty does, answers with the bodies of the
// vendor fixtures in fixtures/, records what it received with receive times,
// and fails on demand (FailNext, SetLatency, SetDown). It is safe for
// concurrent use.
package pdtest

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

//go:embed fixtures/*.json
var fixtures embed.FS

// Fixture returns one of the PagerDuty fixture files (see fixtures/SOURCES.md),
// e.g. "request-trigger.json".
func Fixture(name string) []byte {
	b, err := fixtures.ReadFile("fixtures/" + name)
	if err != nil {
		panic("pdtest: no fixture " + name)
	}
	return b
}

// Limits PagerDuty enforces.
const (
	RoutingKeyLen  = 32
	MaxSummaryLen  = 1024
	MaxDedupKeyLen = 255
	MaxPayloadSize = 512 << 10
	EnqueuePath    = "/v2/enqueue"
)

// Event is an Events v2 request as PagerDuty reads it.
type Event struct {
	RoutingKey string          `json:"routing_key"`
	Action     string          `json:"event_action"`
	DedupKey   string          `json:"dedup_key,omitempty"`
	Payload    *Payload        `json:"payload,omitempty"`
	Links      json.RawMessage `json:"links,omitempty"`
	Images     json.RawMessage `json:"images,omitempty"`
	Client     string          `json:"client,omitempty"`
	ClientURL  string          `json:"client_url,omitempty"`
}

// Payload is the trigger's payload.
type Payload struct {
	Summary       string          `json:"summary"`
	Source        string          `json:"source"`
	Severity      string          `json:"severity"`
	Timestamp     string          `json:"timestamp,omitempty"`
	Component     string          `json:"component,omitempty"`
	Group         string          `json:"group,omitempty"`
	Class         string          `json:"class,omitempty"`
	CustomDetails json.RawMessage `json:"custom_details,omitempty"`
}

// Request is one request the server received, in arrival order.
type Request struct {
	// At is when the request arrived (before any injected latency).
	At time.Time
	// Status is what the server answered (0: the connection was dropped).
	Status int
	Header http.Header
	// Raw is the body as received; Event is it decoded (zero if it did not decode).
	Raw   []byte
	Event Event
}

// Server is the fake. Its URL (Server.URL) is the enqueue URL to configure
// as ICA_PAGERDUTY_URL.
type Server struct {
	URL string
	srv *httptest.Server

	mu         sync.Mutex
	requests   []Request
	failStatus []int
	latency    time.Duration
	down       bool
	retryAfter string
	arrived    chan struct{}
}

// NewServer starts a fake PagerDuty and closes it when tb ends.
func NewServer(tb testing.TB) *Server {
	tb.Helper()
	s := Start()
	tb.Cleanup(s.Close)
	return s
}

// Start starts a fake PagerDuty; the caller closes it.
func Start() *Server {
	s := &Server{arrived: make(chan struct{}, 1)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	s.URL = s.srv.URL + EnqueuePath
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// FailNext makes the next n requests fail with status (429, 500, 502, 503,
// or any other), before they are validated.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failStatus = append(s.failStatus, status)
	}
}

// SetRetryAfter sets the Retry-After header sent with injected 429 and 503
// answers ("" sends none, which is what PagerDuty usually does).
func (s *Server) SetRetryAfter(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryAfter = v
}

// SetLatency delays every answer by d (a client deadline shorter than d
// sees a timeout).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetDown makes the server drop every connection without answering, as an
// unreachable PagerDuty would look to a client.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Reset forgets received requests and injected failures.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests, s.failStatus, s.latency, s.down, s.retryAfter = nil, nil, 0, false, ""
}

// Requests returns every request received, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Last returns the most recent request, if any.
func (s *Server) Last() (Request, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return Request{}, false
	}
	return s.requests[len(s.requests)-1], true
}

// Events returns the events PagerDuty would have accepted (answered 202), in order.
func (s *Server) Events() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Status == http.StatusAccepted {
			out = append(out, r)
		}
	}
	return out
}

// WaitForEvents waits until n events were accepted or timeout passes, and
// returns the accepted events.
func (s *Server) WaitForEvents(n int, timeout time.Duration) []Request {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ev := s.Events()
		if len(ev) >= n {
			return ev
		}
		select {
		case <-s.arrived:
		case <-deadline.C:
			return s.Events()
		}
	}
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r)
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	s.mu.Lock()
	down, latency, retryAfter := s.down, s.latency, s.retryAfter
	fail := 0
	if !down && len(s.failStatus) > 0 {
		fail, s.failStatus = s.failStatus[0], s.failStatus[1:]
	}
	s.mu.Unlock()

	raw, _ := io.ReadAll(io.LimitReader(r.Body, MaxPayloadSize+1))
	req := Request{At: at, Header: r.Header.Clone(), Raw: raw}
	_ = json.Unmarshal(raw, &req.Event)

	if down {
		s.record(req)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}

	status, body, header := s.answer(r, raw, &req.Event, fail)
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		if retryAfter != "" {
			header.Set("Retry-After", retryAfter)
		}
	}
	req.Status = status
	s.record(req)
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// answer decides the status and body for one request.
func (s *Server) answer(r *http.Request, raw []byte, ev *Event, fail int) (int, []byte, http.Header) {
	h := http.Header{"Content-Type": {"application/json"}}
	switch {
	case fail == http.StatusTooManyRequests:
		// PagerDuty publishes no 429 body; go-pagerduty's tests use this one.
		return fail, []byte(`{"status":"throttle exceeded","message":"Requests for this service are arriving too quickly.  Please retry later.","errors":["Enhance Your Calm."]}`), h
	case fail >= 500:
		return fail, Fixture("response-5xx-error-openapi-example.json"), h
	case fail != 0:
		return fail, nil, h
	}
	if r.Method != http.MethodPost {
		h.Set("Allow", http.MethodPost)
		return http.StatusMethodNotAllowed, nil, h
	}
	if r.URL.Path != EnqueuePath {
		return http.StatusNotFound, nil, h
	}
	if len(raw) > MaxPayloadSize {
		return http.StatusBadRequest, invalid("Payload exceeds 512 KB"), h
	}
	if problems := Validate(raw); len(problems) > 0 {
		return http.StatusBadRequest, invalid(problems...), h
	}
	dedup := ev.DedupKey
	if dedup == "" {
		dedup = fmt.Sprintf("pdtest-%d", time.Now().UnixNano())
	}
	var ok map[string]any
	_ = json.Unmarshal(Fixture("response-202-success.json"), &ok)
	ok["dedup_key"] = dedup
	body, _ := json.Marshal(ok)
	return http.StatusAccepted, body, h
}

// invalid is the 400 body PagerDuty sends (fixture response-400-invalid-event.json).
func invalid(errs ...string) []byte {
	var b struct {
		Status  string   `json:"status"`
		Message string   `json:"message"`
		Errors  []string `json:"errors"`
	}
	_ = json.Unmarshal(Fixture("response-400-invalid-event.json"), &b)
	b.Errors = errs
	out, _ := json.Marshal(b)
	return out
}

// Validate checks an Events v2 request body as PagerDuty does and returns
// its problems (none: PagerDuty would accept it).
func Validate(raw []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		return []string{"JSON parse error"}
	}
	var p []string
	if len(ev.RoutingKey) != RoutingKeyLen {
		p = append(p, "Length of 'routing_key' is incorrect (should be 32 characters)")
	}
	if len(ev.DedupKey) > MaxDedupKeyLen {
		p = append(p, "'dedup_key' is too long (maximum is 255 characters)")
	}
	switch ev.Action {
	case "trigger":
		if ev.Payload == nil {
			return append(p, "'payload' is missing or blank")
		}
		if strings.TrimSpace(ev.Payload.Summary) == "" {
			p = append(p, "'payload.summary' is missing or blank")
		} else if utf8.RuneCountInString(ev.Payload.Summary) > MaxSummaryLen {
			p = append(p, "'payload.summary' is too long (maximum is 1024 characters)")
		}
		if strings.TrimSpace(ev.Payload.Source) == "" {
			p = append(p, "'payload.source' is missing or blank")
		}
		switch ev.Payload.Severity {
		case "critical", "error", "warning", "info":
		case "":
			p = append(p, "'payload.severity' is missing or blank")
		default:
			p = append(p, "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')")
		}
		if ev.Payload.Timestamp != "" {
			if _, err := time.Parse(time.RFC3339Nano, ev.Payload.Timestamp); err != nil {
				if _, err := time.Parse("2006-01-02T15:04:05.000-0700", ev.Payload.Timestamp); err != nil {
					p = append(p, "'payload.timestamp' is invalid (must be ISO 8601)")
				}
			}
		}
		if len(ev.Payload.CustomDetails) > 0 && ev.Payload.CustomDetails[0] != '{' {
			p = append(p, "'payload.custom_details' must be an object")
		}
	case "acknowledge", "resolve":
		if ev.DedupKey == "" {
			p = append(p, "'dedup_key' is missing or blank")
		}
	case "":
		p = append(p, "'event_action' is missing or blank")
	default:
		p = append(p, "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')")
	}
	if len(ev.Links) > 0 && ev.Links[0] != '[' {
		p = append(p, "'links' must be an array")
	}
	return p
}
