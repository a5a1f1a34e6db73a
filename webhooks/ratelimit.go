package webhooks

// Rate limits of the routes that carry no credential. Authenticated routes
// are limited per token (RateLimiter in middleware.go); a route anyone can
// call (a dashboard link, the OpenAPI document, an unknown path) is limited
// per source address, so one client flooding it cannot take the server's
// time from the pipelines. Two kinds of unauthenticated route are exempt:
//   - /healthz and /readyz: the kubelet probes them from the node's address,
//     and a refused probe restarts or unlists the pod; they write nothing.
//   - /mattermost/*: every request comes from the Mattermost server, so a
//     per-address limit would throttle every user at once. Those are limited
//     per Mattermost user (AllowUser) once the bot has verified who clicked:
//     the user_id of the body proves nothing, and limiting by it would let
//     anyone lock a real approver out by sending requests in their name.
// The Azure Monitor intake is authenticated, and not limited at all: Azure
// resends what is answered 429, and stops calling for 15 minutes after five
// tries, while its addresses are shared by every tenant's action groups, so
// a limit per address would let anyone with an action group silence ICA's
// alerts.

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ica-governance/ica"
)

// SourceLimiter limits requests per source address: the TCP peer, or, when
// the peer is a trusted proxy (ICA_TRUSTED_PROXIES), the address its
// X-Forwarded-For names. IPv6 sources are limited per /64, the block one
// host usually has.
type SourceLimiter struct {
	perAddr *RateLimiter
	perUser *RateLimiter
	trusted []netip.Prefix

	refused    atomic.Int64
	lastLogged atomic.Int64 // unix nanoseconds
	// holding bounds the refused requests held at once, maxHold how long
	// each is held (see hold).
	holding chan struct{}
	maxHold time.Duration
}

// A refused request is held before it is answered (hold): DefaultMaxHold,
// and at most maxHeld requests at once.
const (
	DefaultMaxHold = time.Second
	maxHeld        = 256
)

// NewSourceLimiter allows perSec requests per second per source address
// (burst twice that; <= 0 disables the limit), believing X-Forwarded-For
// only from peers in trusted.
func NewSourceLimiter(perSec float64, trusted []netip.Prefix) *SourceLimiter {
	return &SourceLimiter{perAddr: NewRateLimiter(perSec), perUser: NewRateLimiter(perSec), trusted: trusted,
		holding: make(chan struct{}, maxHeld), maxHold: DefaultMaxHold}
}

// ParseTrustedProxies reads ICA_TRUSTED_PROXIES: CIDRs (or single
// addresses) of the proxies whose X-Forwarded-For is believed. A prefix of
// length 0 is refused: it would believe every client's own header.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is neither a CIDR (10.0.0.0/8) nor an address", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("%q would trust every client's X-Forwarded-For; name the proxies' own addresses", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (l *SourceLimiter) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads one address of X-Forwarded-For or RemoteAddr: "1.2.3.4",
// "1.2.3.4:80", "2001:db8::1" or "[2001:db8::1]:443".
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// ClientAddr returns the address a request comes from: the TCP peer, unless
// it is a trusted proxy; then X-Forwarded-For is read from the right (the
// hop the nearest proxy added) and the first address that is not a trusted
// proxy is the client. The hops left of it were written by the client and
// are never believed. ok is false when the peer's address is unreadable.
func (l *SourceLimiter) ClientAddr(r *http.Request) (addr netip.Addr, ok bool) {
	peer, ok := parseHop(r.RemoteAddr)
	if !ok || !l.isTrusted(peer) {
		return peer, ok
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	addr = peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			return addr, true // a trusted proxy wrote something unreadable: limit that proxy's hop
		}
		addr = a
		if !l.isTrusted(a) {
			return a, true
		}
	}
	return addr, true
}

// sourceKey is what a source address is limited as.
func sourceKey(a netip.Addr, ok bool) string {
	switch {
	case !ok:
		return "unknown"
	case a.Is6():
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// Allow reports whether the request's source may make a request now, and
// if not, how long it should wait.
func (l *SourceLimiter) Allow(r *http.Request) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	return l.perAddr.Allow(sourceKey(l.ClientAddr(r)))
}

// AllowUser is the limit of one Mattermost user on /mattermost/* (the same
// rate as an address). Call it only with a user id that was verified (the
// trigger_id Mattermost signed), never with the body's claim.
func (l *SourceLimiter) AllowUser(userID string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	return l.perUser.Allow(userID)
}

// noteRefusal counts a refused request and logs a summary at most once a
// minute: a flood must not turn into a flood of log lines.
func (l *SourceLimiter) noteRefusal(log *slog.Logger, r *http.Request) {
	n := l.refused.Add(1)
	now := time.Now().UnixNano()
	last := l.lastLogged.Load()
	if now-last < int64(time.Minute) || !l.lastLogged.CompareAndSwap(last, now) {
		return
	}
	l.refused.Add(-n)
	addr, ok := l.ClientAddr(r)
	log.Warn("rate limit: requests refused per source address since the last report", "refused", n,
		"latest_source", sourceKey(addr, ok), "latest_path", r.URL.Path)
}

// SetMaxHold changes how long a refused request is held (0: not at all;
// tests).
func (l *SourceLimiter) SetMaxHold(d time.Duration) { l.maxHold = d }

// hold delays the answer to a refused request by maxHold (a second by
// default: the shortest Retry-After there is) instead of answering at once:
// a client that ignores Retry-After and asks again as soon as it is
// answered then slows itself down to one request a second per connection,
// where an immediate refusal would let a handful of connections keep the
// server busy refusing. At most maxHeld requests are held at once (a
// goroutine and a connection each); beyond that the answer is immediate.
func (l *SourceLimiter) hold(r *http.Request) {
	if l == nil || l.maxHold <= 0 {
		return
	}
	select {
	case l.holding <- struct{}{}:
		defer func() { <-l.holding }()
	default:
		return
	}
	t := time.NewTimer(l.maxHold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// FailuresPerSecond is how many requests a principal may have refused (4xx)
// per second (burst twice that) before its further refusals are held like
// a rate-limited request: a pipeline never gets there, a client that
// retries what fails as fast as it is answered does.
const FailuresPerSecond = 10

// holdFailure holds the answer to an authenticated request that failed
// (4xx) when its principal is over FailuresPerSecond.
func (h *Handler) holdFailure(r *http.Request, err error) {
	p := PrincipalOf(r.Context())
	if h.failures == nil || p == nil {
		return
	}
	if s := StatusOf(ica.ErrorCode(err)); s < 400 || s >= 500 || s == http.StatusTooManyRequests {
		return
	}
	if ok, _ := h.failures.Allow(p.Name); !ok {
		h.Sources.hold(r)
	}
}

// limitSource refuses, with 429 and Retry-After, requests whose source
// address is over its limit.
func (h *Handler) limitSource(next http.Handler) http.Handler {
	if h.Sources == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := h.Sources.Allow(r); !ok {
			h.Sources.noteRefusal(h.log, r)
			h.Sources.hold(r)
			tooMany(w, r, h.log, wait, "from this address")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tooMany answers 429 with Retry-After in whole seconds (at least 1).
func tooMany(w http.ResponseWriter, r *http.Request, log *slog.Logger, wait time.Duration, who string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
	WriteError(w, r, log, ica.Errorf(ica.ERATELIMIT, "too many requests %s; retry after %s", who, wait.Round(time.Millisecond)))
}
