package main

import (
	"encoding/json"
	"net/http"

	"github.com/ica-governance/ica/webhooks"
)

// mattermostOff is what ICA answers on Mattermost's callback URLs when it has
// no Mattermost configured (a slash command or button pointed at it anyway).
// Mattermost turns any status but 200 into a generic error, so the answer is
// 200 with a message only the user sees, in the form each callback expects,
// naming the setting that is missing.
const mattermostOff = "ICA's Mattermost integration is not configured on this server: set ICA_MATTERMOST_URL (with ICA_MATTERMOST_TOKEN and ICA_PUBLIC_URL)."

// mountMattermostOff registers the Mattermost callbacks of a server without Mattermost.
func mountMattermostOff(h *webhooks.Handler) {
	reply := func(body any) http.Handler {
		return h.RouteUnlimited(func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			return json.NewEncoder(w).Encode(body)
		})
	}
	r := h.Router()
	r.Handle("/mattermost/actions", reply(map[string]string{"ephemeral_text": mattermostOff})).Methods(http.MethodPost)
	r.Handle("/mattermost/dialogs", reply(map[string]string{"error": mattermostOff})).Methods(http.MethodPost)
	r.Handle("/mattermost/slash", reply(map[string]string{"response_type": "ephemeral", "text": mattermostOff})).Methods(http.MethodPost)
}
