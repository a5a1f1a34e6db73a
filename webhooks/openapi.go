package webhooks

import (
	_ "embed"
	"net/http"
	"sort"

	"github.com/gorilla/mux"
)

// OpenAPI is the OpenAPI 3.0 document of the whole HTTP API: the routes
// registered here, by RegisterAlerts and by cmd/ica (Mattermost callbacks,
// metrics, admin backup). cmd/ica's tests check that it names every
// registered route and that every route it names is registered.
//
//go:embed openapi.json
var OpenAPI []byte

// handleOpenAPI handles "GET /api/v1/openapi.json".
func (h *Handler) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err := w.Write(OpenAPI)
	return err
}

// Route is one registered endpoint: a method and a path template
// ("/api/v1/runs/{run_id}").
type Route struct {
	Method string
	Path   string
}

// Routes lists the endpoints registered on the router, sorted.
func (h *Handler) Routes() []Route {
	var out []Route
	_ = h.router.Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := rt.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, err := rt.GetMethods()
		if err != nil {
			methods = []string{"*"}
		}
		for _, m := range methods {
			out = append(out, Route{Method: m, Path: path})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}
