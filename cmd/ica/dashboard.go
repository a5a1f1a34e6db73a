package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/dashboard"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/webhooks"
)

// dashboardSource is the store as the dashboard reads it, with the
// configured budget.
type dashboardSource struct {
	*store.Store
	budget budgetSource
}

var _ dashboard.Source = dashboardSource{}

// Budget returns the month's figures with the configured budget.
func (d dashboardSource) Budget(ctx context.Context) (*ica.Budget, error) {
	return d.budget.Budget(ctx)
}

// mountDashboard registers the dashboard's routes: the page and its links
// (a session cookie set by a single-use link; no token), the embedded
// assets, and GET /api/v1/stats (pipeline tokens). The returned handler
// issues the links that "/ica dashboard" answers with.
func mountDashboard(h *webhooks.Handler, st *store.Store, costs budgetSource, secret []byte, publicURL string,
	pipelines webhooks.Authenticator, clock ica.Clock, log *slog.Logger) *dashboard.Handler {
	d := dashboard.New(dashboard.Deps{Source: dashboardSource{Store: st, budget: costs}, Sessions: st, Secret: secret,
		PublicURL: publicURL, Clock: clock, Log: log})
	r := h.Router()
	r.Handle("/dashboard", h.Route(nil, d.HandlePage)).Methods(http.MethodGet)
	r.Handle("/dashboard/link/{token}", h.Route(nil, d.HandleLinkPage)).Methods(http.MethodGet)
	r.Handle("/dashboard/link/{token}", h.Route(nil, d.HandleLinkUse)).Methods(http.MethodPost)
	r.Handle("/dashboard/static/{file}", h.Route(nil, d.HandleStatic)).Methods(http.MethodGet)
	// The figures span every pipeline (approvals, incidents, the ledger's
	// tail): not for a token limited to some.
	r.Handle("/api/v1/stats", h.Route(pipelines, func(w http.ResponseWriter, r *http.Request) error {
		if err := webhooks.RequireUnscoped(r.Context(), "the dashboard's figures"); err != nil {
			return err
		}
		return d.HandleStats(w, r)
	})).Methods(http.MethodGet)
	d.Warm() // the first page view does not wait for the index walks
	return d
}
