package dashboard_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// TestDashboard_HiddenCharactersShown checks that text from outside (an
// Azure alert rule, which the intake keeps exactly as sent) is shown with
// its bidi override and zero-width characters escaped visibly.
func TestDashboard_HiddenCharactersShown(t *testing.T) {
	st, clock := smallLedger(t)
	_, _, err := st.RecordAlert(context.Background(), &ica.Alert{AlertID: "spoof", Rule: "cpu\u202eno-ssecca\u200b", Severity: ica.Sev2,
		MonitorCondition: ica.AlertFired, FiredAt: clock.Now(), Schema: ica.SchemaCommon}, []byte(`{}`), "azure-monitor")
	require.NoError(t, err)
	s := newServer(t, st, clock, 5000, 0.9)
	resp, _ := do(t, "POST", s.issue(t, "tech1"), map[string]string{"Origin": s.URL})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, body := do(t, "GET", s.URL+"/dashboard", nil, sessionCookie(t, resp))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "cpu&lt;U&#43;202E&gt;no-ssecca&lt;U&#43;200B&gt;")
	require.NotContains(t, body, "\u202e")
	require.NotContains(t, body, "\u200b")
}
