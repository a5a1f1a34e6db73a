package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/ica-governance/ica"
)

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyPrincipal
	keyInfo
)

// reqInfo lets inner middleware tell the access log who the caller was and
// which route matched.
type reqInfo struct{ actor, route string }

// RequestID returns the request id of a request context.
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(keyRequestID).(string)
	return s
}

// PrincipalOf returns who the request was authenticated as.
func PrincipalOf(ctx context.Context) *Principal {
	p, _ := ctx.Value(keyPrincipal).(*Principal)
	return p
}

// WithPrincipal returns ctx carrying p (for tests and other entry points).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, keyPrincipal, p)
}

var goodRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Metrics are the HTTP metrics of the API.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the HTTP metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ica_http_requests_total",
			Help: "HTTP requests by route and status."}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ica_http_request_duration_seconds",
			Help: "HTTP request latency by route.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}},
			[]string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
	w.ResponseWriter.WriteHeader(s)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe is the outermost middleware: request id, panic recovery, access
// log and metrics. It logs no header and no body, so secrets stay out of logs.
func (h *Handler) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := r.Header.Get("X-Request-Id")
		if !goodRequestID.MatchString(rid) {
			rid = newRequestID()
		}
		w.Header().Set("X-Request-Id", rid)
		info := &reqInfo{route: "unmatched"}
		ctx := context.WithValue(r.Context(), keyRequestID, rid)
		r = r.WithContext(context.WithValue(ctx, keyInfo, info))
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				h.log.Error("panic in handler", "request_id", rid, "path", r.URL.Path, "panic", p)
				if sw.status == 0 {
					WriteError(sw, r, h.log, ica.Errorf(ica.EINTERNAL, "internal error"))
				}
			}
			route := info.route
			d := time.Since(start)
			if h.metrics != nil {
				h.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
				h.metrics.latency.WithLabelValues(route, r.Method).Observe(d.Seconds())
			}
			actor := info.actor
			lvl := slog.LevelDebug
			if sw.status >= 500 {
				lvl = slog.LevelWarn
			} else if sw.status >= 400 && sw.status != http.StatusTooManyRequests {
				// 429s are counted in the metrics and summarised by the
				// limiter: a flood does not become a flood of log lines.
				lvl = slog.LevelInfo
			}
			h.log.Log(r.Context(), lvl, "http", "request_id", rid, "method", r.Method, "route", route,
				"status", sw.status, "duration_ms", float64(d.Microseconds())/1000, "actor", actor)
		}()
		next.ServeHTTP(sw, r)
	})
}

// matched records the matched route's path template for the access log and
// the metrics (the router runs it only when a route matched).
func (h *Handler) matched(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cr := mux.CurrentRoute(r); cr != nil {
			if t, err := cr.GetPathTemplate(); err == nil {
				if info, ok := r.Context().Value(keyInfo).(*reqInfo); ok {
					info.route = t
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody caps request bodies before anything reads them.
func (h *Handler) limitBody(n int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			WriteError(w, r, h.log, ica.Errorf(ica.ETOOLARGE, "request body is larger than %d bytes", n))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r)
	})
}

// RateLimiter hands out one token bucket per principal (or source address).
type RateLimiter struct {
	mu      sync.Mutex
	perSec  float64
	burst   int
	buckets map[string]*rate.Limiter
	swept   time.Time
}

// A RateLimiter forgets idle callers (see sweep) at most this often, or when
// it holds maxBuckets.
const (
	sweepEvery = time.Minute
	maxBuckets = 100_000
)

// NewRateLimiter allows perSec requests per second per principal (burst
// twice that); perSec <= 0 disables limiting.
func NewRateLimiter(perSec float64) *RateLimiter {
	return &RateLimiter{perSec: perSec, burst: max(1, int(math.Ceil(2*perSec))), buckets: map[string]*rate.Limiter{}}
}

// Allow reports whether name may make a request now, and if not, how long to wait.
func (l *RateLimiter) Allow(name string) (bool, time.Duration) {
	if l == nil || l.perSec <= 0 {
		return true, 0
	}
	l.mu.Lock()
	b, ok := l.buckets[name]
	if !ok {
		if now := time.Now(); len(l.buckets) >= maxBuckets || now.Sub(l.swept) >= sweepEvery {
			l.sweep(now)
		}
		b = rate.NewLimiter(rate.Limit(l.perSec), l.burst)
		l.buckets[name] = b
	}
	l.mu.Unlock()
	r := b.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}

// sweep forgets the callers whose bucket is full again (quiet long enough
// to have their whole burst back: forgetting them changes nothing), so the
// map holds recent callers only, whatever the number of addresses seen. If
// the recent callers alone fill it, it starts over.
func (l *RateLimiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxBuckets {
		clear(l.buckets)
	}
	l.swept = now
}

// authenticate runs auth before the body is read, then the rate limit.
func (h *Handler) authenticate(a Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			if ica.ErrorCode(err) == ica.EUNAUTHORIZED {
				w.Header().Set("WWW-Authenticate", `Bearer realm="ica"`)
			}
			WriteError(w, r, h.log, err)
			return
		}
		if info, ok := r.Context().Value(keyInfo).(*reqInfo); ok {
			info.actor = p.Name
		}
		if ok, wait := h.limiter.Allow(p.Name); !ok {
			h.Sources.hold(r)
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			WriteError(w, r, h.log, ica.Errorf(ica.ERATELIMIT, "too many requests for %s; retry after %s", p.Name, wait.Round(time.Millisecond)))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}
