package alerts

// Tests of the root package's incident state machine (incident.go) live here
// because this package produces the alerts it consumes.

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

var t0 = time.Date(2025, 4, 15, 18, 20, 0, 0, time.UTC)

func mustIncident(tb testing.TB, a *ica.Alert) *ica.Incident {
	tb.Helper()
	i, err := ica.NewIncident(ica.IncidentIDFor(a.AlertID), a, t0)
	require.NoError(tb, err)
	return i
}

func requireConflict(tb testing.TB, err error) {
	tb.Helper()
	require.Error(tb, err)
	require.Equal(tb, ica.ECONFLICT, ica.ErrorCode(err), err.Error())
}

func TestNewIncident(t *testing.T) {
	a := MustParse(t, "common/metric-static-threshold-fired.json")
	i := mustIncident(t, a)
	require.Equal(t, ica.IncidentOpen, i.Status)
	require.Equal(t, a.AlertID, i.AlertID)
	require.Equal(t, a.AlertID, i.PagerDutyKey)
	require.Equal(t, ica.Sev4, i.Severity)
	require.Equal(t, "test-metricAlertRule", i.Rule)
	require.Equal(t, a.TargetResources, i.Resources)
	require.Equal(t, a.FiredAt, i.FiredAt)
	require.Equal(t, t0, i.OpenedAt)
	require.Equal(t, 1, i.Fired)
	require.Equal(t, 1, i.Version)
	require.NoError(t, ica.ValidID("incident_id", i.ID))
	require.Equal(t, ica.IncidentIDFor(a.AlertID), i.ID, "stable per alert")

	i.Resources[0] = "changed"
	require.NotEqual(t, "changed", a.TargetResources[0], "the incident does not alias the alert")

	_, err := ica.NewIncident(i.ID, MustParse(t, "common/metric-static-threshold-resolved.json"), t0)
	requireConflict(t, err)

	_, err = ica.NewIncident("bad id!", a, t0)
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))

	_, err = ica.NewIncident(i.ID, &ica.Alert{AlertID: "x", Severity: "Sev9", MonitorCondition: ica.AlertFired, FiredAt: t0}, t0)
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
	require.Equal(t, "severity", ica.ErrorField(err))
}

func TestIncident_ApplyAlert(t *testing.T) {
	fired := MustParse(t, "common/metric-static-threshold-fired.json")
	resolved := MustParse(t, "common/metric-static-threshold-resolved.json")
	i := mustIncident(t, fired)

	_, err := i.ApplyAlert(fired, t0.Add(time.Minute))
	requireConflict(t, err) // a repeat of Fired changes nothing

	r, err := i.ApplyAlert(resolved, t0.Add(10*time.Minute))
	require.NoError(t, err)
	require.Equal(t, ica.IncidentResolved, r.Status)
	require.Equal(t, resolved.ResolvedAt, *r.ResolvedAt, "Azure's resolve time wins")
	require.Equal(t, ica.ViaAzureMonitor, r.Resolution.Via)
	require.Equal(t, 2, r.Version)
	require.Equal(t, ica.IncidentOpen, i.Status, "the receiver is not modified")
	require.True(t, r.Final())

	_, err = r.ApplyAlert(resolved, t0.Add(11*time.Minute))
	requireConflict(t, err)
	require.Contains(t, err.Error(), "by azure-monitor")

	// A legacy alert reuses its id: firing again reopens the incident.
	re, err := r.ApplyAlert(fired, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, ica.IncidentOpen, re.Status)
	require.Nil(t, re.ResolvedAt)
	require.Nil(t, re.Resolution)
	require.Equal(t, 2, re.Fired)
	require.Equal(t, 3, re.Version)
	require.Equal(t, t0.Add(time.Hour), re.OpenedAt)

	other := *fired
	other.AlertID = "/subscriptions/x/providers/Microsoft.AlertsManagement/alerts/other"
	_, err = i.ApplyAlert(&other, t0)
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))

	// A Resolved without resolvedDateTime takes the caller's time.
	noTime := *resolved
	noTime.ResolvedAt = time.Time{}
	r2, err := i.ApplyAlert(&noTime, t0.Add(5*time.Minute))
	require.NoError(t, err)
	require.Equal(t, t0.Add(5*time.Minute), *r2.ResolvedAt)
}

func TestIncident_Apply(t *testing.T) {
	i := mustIncident(t, MustParse(t, "common/prometheus-fired.json"))
	alice := ica.Decider{UserID: "u1", Username: "alice"}
	bob := ica.Decider{UserID: "u2", Username: "bob"}

	ack, err := i.Apply(ica.IncidentTransition{Action: ica.IncidentActAcknowledge, By: alice, Via: "mattermost", At: t0.Add(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, ica.IncidentAcknowledged, ack.Status)
	require.Equal(t, "alice", ack.Acknowledged.Username)
	require.Equal(t, t0.Add(time.Minute), ack.UpdatedAt)
	require.Equal(t, 2, ack.Version)

	_, err = ack.Apply(ica.IncidentTransition{Action: ica.IncidentActAcknowledge, By: bob, At: t0.Add(2 * time.Minute)})
	requireConflict(t, err)
	require.Contains(t, err.Error(), "by alice")

	res, err := ack.Apply(ica.IncidentTransition{Action: ica.IncidentActResolve, By: bob, Comment: "rolled back", Via: "mattermost", At: t0.Add(3 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, ica.IncidentResolved, res.Status)
	require.Equal(t, "bob", res.Resolution.Username)
	require.Equal(t, "alice", res.Acknowledged.Username, "who acknowledged is kept")
	require.Equal(t, t0.Add(3*time.Minute), *res.ResolvedAt)

	for _, act := range []string{ica.IncidentActAcknowledge, ica.IncidentActResolve} {
		_, err = res.Apply(ica.IncidentTransition{Action: act, By: alice, At: t0.Add(4 * time.Minute)})
		requireConflict(t, err)
		require.Contains(t, err.Error(), "by bob")
	}

	// Resolving straight from open is allowed.
	direct, err := i.Apply(ica.IncidentTransition{Action: ica.IncidentActResolve, By: alice, At: t0.Add(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, ica.IncidentResolved, direct.Status)

	_, err = i.Apply(ica.IncidentTransition{Action: ica.IncidentActAcknowledge, At: t0})
	require.Equal(t, ica.EFORBIDDEN, ica.ErrorCode(err))
	_, err = i.Apply(ica.IncidentTransition{Action: "snooze", By: alice, At: t0})
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
	require.Equal(t, ica.IncidentOpen, i.Status)
}

func TestSeverityHelpers(t *testing.T) {
	for i, s := range ica.Severities {
		require.Equal(t, i, ica.SeverityRank(s))
		require.True(t, ica.ValidSeverity(s))
	}
	require.Equal(t, -1, ica.SeverityRank("sev1"))
	require.Equal(t, -1, ica.SeverityRank("Sev5"))
	require.True(t, ica.SeverityAtLeast(ica.Sev0, ica.Sev1))
	require.True(t, ica.SeverityAtLeast(ica.Sev1, ica.Sev1))
	require.False(t, ica.SeverityAtLeast(ica.Sev2, ica.Sev1))
	require.False(t, ica.SeverityAtLeast("x", ica.Sev4))
	require.Equal(t, ica.Sev0, ica.MoreSevere(ica.Sev3, ica.Sev0))
	require.Equal(t, ica.Sev3, ica.MoreSevere(ica.Sev3, "x"))
	require.Equal(t, ica.Sev3, ica.MoreSevere("x", ica.Sev3))

	for in, want := range map[string]string{"Sev2": "Sev2", "sev2": "Sev2", "SEV 2": "Sev2", "2": "Sev2", " 0 ": "Sev0"} {
		got, err := ica.ParseSeverity("severity", in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"", "5", "Sev", "Sev10", "critical", "-1"} {
		_, err := ica.ParseSeverity("x.severity", in)
		require.Error(t, err, in)
		require.Equal(t, "x.severity", ica.ErrorField(err))
	}
	_, err := ica.ParseSeverity("s", strings.Repeat("é", 100))
	require.Less(t, len(err.Error()), 200, "untrusted input is clipped")
}

func TestPagerDutyDedupKey(t *testing.T) {
	id := MustParse(t, "common/service-health-fired.json").AlertID
	require.Equal(t, id, ica.PagerDutyDedupKey(id))
	long := "/subscriptions/" + strings.Repeat("x", 300)
	k := ica.PagerDutyDedupKey(long)
	require.LessOrEqual(t, len(k), ica.MaxPagerDutyDedupKey)
	require.Equal(t, k, ica.PagerDutyDedupKey(long))
	require.True(t, strings.HasPrefix(k, "sha256:"))
}
