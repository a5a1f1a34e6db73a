package webhooks

import (
	"net/http"

	"github.com/ica-governance/ica"
)

// NotConfigured is the endpoint of a documented feature this server has not
// been configured for: 503 with code not_configured, no Retry-After (a retry
// cannot help until an operator acts), and a message naming the setting
// that would enable it. A documented path then never answers "no such
// endpoint", and the route table is the same whatever is configured.
func (h *Handler) NotConfigured(feature, setting string) http.Handler {
	return h.Route(nil, func(w http.ResponseWriter, r *http.Request) error {
		return ica.NotConfigured(feature, setting)
	})
}
