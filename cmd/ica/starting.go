package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
)

// swapHandler serves through whichever handler is current: the starting
// one while the database is not reachable yet, the whole API after.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// startingHandler answers while the ledger's database cannot be reached at
// start: the process is alive (/healthz 200), not ready (/readyz 503 says
// why), and every other request is told to come back (503 with
// Retry-After: pipelines and Azure retry). Nothing is recorded meanwhile.
func startingHandler(status *atomic.Value) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id [8]byte
		_, _ = rand.Read(id[:])
		rid := hex.EncodeToString(id[:])
		w.Header().Set("X-Request-Id", rid)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		why, _ := status.Load().(string)
		var body any
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusOK)
			body = map[string]string{"status": "ok"}
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			body = map[string]any{"status": "not ready", "checks": map[string]string{"ledger": why}}
		default:
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			body = map[string]any{"error": map[string]string{"code": ica.EUNAVAILABLE,
				"message": "ICA is starting (" + why + "); nothing was recorded, retry", "request_id": rid}}
		}
		_ = json.NewEncoder(w).Encode(body)
	})
}

// openLedgerRetrying opens the configured ledger. A database that cannot be
// reached is retried with backoff (the process keeps answering through the
// starting handler, and recovers without a restart); a setting that cannot
// work (wrong password, missing database, an old server, a newer schema)
// ends the start with a one-line error.
func openLedgerRetrying(ctx context.Context, cfg *Config, opt store.Options, log *slog.Logger, status *atomic.Value) (*store.Store, error) {
	delay := time.Second
	for attempt := 1; ; attempt++ {
		st, err := openLedger(ctx, cfg, opt, log)
		if err == nil {
			return st, nil
		}
		if connConfigError(err) || cfg.Database.URL == "" || ctx.Err() != nil {
			return nil, err
		}
		status.Store("connecting to the database: " + err.Error())
		log.Warn("the ledger database cannot be reached; retrying", "attempt", attempt, "retry_in", delay.String(), "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}
