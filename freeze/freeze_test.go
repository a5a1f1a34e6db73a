package freeze

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

type list []struct {
	inc        *ica.Incident
	overridden bool
}

func (l list) OpenIncidents(fn func(inc *ica.Incident, overridden bool) error) error {
	for _, e := range l {
		if err := fn(e.inc, e.overridden); err != nil {
			return err
		}
	}
	return nil
}

func inc(id, sev, status, rg, sub string, opened time.Time) *ica.Incident {
	return &ica.Incident{ID: id, Severity: sev, Status: status, Rule: "cpu", ResourceGroups: []string{rg},
		Subscriptions: []string{sub}, OpenedAt: opened}
}

func TestPolicy_Check(t *testing.T) {
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	p := New(Config{Targets: map[string]Scope{
		ica.TargetProduction: {ResourceGroups: []string{"rg-prod"}, Subscriptions: []string{"SUB-PROD"}},
		ica.TargetStaging:    {ResourceGroups: []string{"rg-stage"}}}})
	prod := &ica.Approval{ID: "A-1", Target: ica.TargetProduction, Status: ica.ApprovalPending}
	stage := &ica.Approval{ID: "A-2", Target: ica.TargetStaging, Status: ica.ApprovalPending}

	for name, c := range map[string]struct {
		l      list
		frozen string // incident id blocking production, "" none
	}{
		"none":            {nil, ""},
		"sev2 does not":   {list{{inc("inc-a", ica.Sev2, ica.IncidentOpen, "rg-prod", "x", t0), false}}, ""},
		"sev1 by rg":      {list{{inc("inc-b", ica.Sev1, ica.IncidentOpen, "RG-PROD", "x", t0), false}}, "inc-b"},
		"sev0 by sub":     {list{{inc("inc-c", ica.Sev0, ica.IncidentAcknowledged, "other", "sub-prod", t0), false}}, "inc-c"},
		"resolved":        {list{{inc("inc-d", ica.Sev0, ica.IncidentResolved, "rg-prod", "x", t0), false}}, ""},
		"overridden":      {list{{inc("inc-e", ica.Sev0, ica.IncidentOpen, "rg-prod", "x", t0), true}}, ""},
		"other target":    {list{{inc("inc-f", ica.Sev0, ica.IncidentOpen, "rg-stage", "x", t0), false}}, ""},
		"most severe one": {list{{inc("inc-g", ica.Sev1, ica.IncidentOpen, "rg-prod", "x", t0), false}, {inc("inc-h", ica.Sev0, ica.IncidentOpen, "rg-prod", "x", t0.Add(time.Hour)), false}}, "inc-h"},
	} {
		t.Run(name, func(t *testing.T) {
			err := p.Check(c.l, prod)
			if c.frozen == "" {
				require.NoError(t, err)
				require.Empty(t, p.Warning(c.l, prod))
				return
			}
			require.Equal(t, ica.EPOLICY, ica.ErrorCode(err))
			require.Contains(t, ica.ErrorMessage(err), c.frozen)
			require.Contains(t, p.Warning(c.l, prod), c.frozen)
		})
	}
	require.NoError(t, p.Check(list{{inc("inc-b", ica.Sev1, ica.IncidentOpen, "rg-prod", "x", t0), false}}, stage))
	require.NoError(t, (*Policy)(nil).Check(nil, prod), "no policy freezes nothing")
}

func TestConfig_Validate(t *testing.T) {
	require.NoError(t, (&Config{}).Validate())
	require.Error(t, (&Config{Targets: map[string]Scope{"qa": {ResourceGroups: []string{"x"}}}}).Validate())
	require.Error(t, (&Config{Targets: map[string]Scope{"production": {}}}).Validate())
	require.Error(t, (&Config{MinSeverity: "Sev9"}).Validate())
	p := New(Config{MinSeverity: "sev0", Targets: map[string]Scope{"production": {ResourceGroups: []string{"rg"}}}})
	require.False(t, p.Severe(&ica.Incident{Severity: ica.Sev1, Status: ica.IncidentOpen}))
}
