package bot_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBot_ReasonWithHiddenCharactersShownEscaped: a rejection reason is free
// text, kept as sent in the ledger, and shown on the card with its bidi
// override and zero-width space made visible.
func TestBot_ReasonWithHiddenCharactersShownEscaped(t *testing.T) {
	h := newHarness(t, nil)
	id := h.request("1003", 10)
	h.settle()
	h.click(id, "reject", "tech2")
	resp, err := h.mm.SubmitOpenDialog("tech2", map[string]any{"reason": "looks fine \u202edevorppa\u200b"})
	require.NoError(t, err)
	require.Empty(t, resp.Errors)
	st := h.status(id)
	require.Equal(t, "looks fine \u202edevorppa\u200b", st["rejection"].(map[string]any)["comment"], "the ledger keeps what was sent")
	h.settle()
	text := cardText(h.card(id))
	require.Contains(t, text, "looks fine <U+202E>devorppa<U+200B>")
	require.NotContains(t, text, "\u202e")
	require.NotContains(t, text, "\u200b")
}

// TestIncident_HiddenCharactersShownEscaped: the alert intake keeps Azure's
// bytes (a 4xx would lose the alert) and the incident card escapes them.
func TestIncident_HiddenCharactersShownEscaped(t *testing.T) {
	h := newIncidentHarness(t)
	var m map[string]any
	require.NoError(t, json.Unmarshal(alertBody(t, "metric-static-threshold-fired.json", "alert-bidi-1"), &m))
	ess := m["data"].(map[string]any)["essentials"].(map[string]any)
	ess["alertRule"] = "cpu-high\u2067 on prod\u2069"
	ess["description"] = "ignore\u2028this"
	raw, _ := json.Marshal(m)
	st, body := h.sendAlert(raw)
	require.Equal(t, 202, st, body)
	h.settle()
	text := cardText(h.incidentCard(body["incident_id"].(string)))
	require.Contains(t, text, "cpu-high<U+2067> on prod<U+2069>")
	require.Contains(t, text, "ignore<U+2028>this")
	for _, r := range []string{"\u2067", "\u2069", "\u2028"} {
		require.NotContains(t, text, r)
	}
}
