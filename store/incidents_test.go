package store_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/freeze"
	"github.com/ica-governance/ica/store"
)

func testAlert(id, cond string, firedAt time.Time) *ica.Alert {
	return &ica.Alert{AlertID: id, Rule: "cpu-high", Severity: ica.Sev1, MonitorCondition: cond,
		SignalType: ica.SignalMetric, MonitoringService: "Platform", FiredAt: firedAt,
		TargetResources: []string{"/subscriptions/sub-1/resourceGroups/rg-prod/providers/Microsoft.Compute/virtualMachines/vm1"},
		Subscriptions:   []string{"sub-1"}, ResourceGroups: []string{"rg-prod"}, Schema: ica.SchemaCommon}
}

// changeLog records the incident changes the store reports, and answers each
// with one outbox message so enqueueing is exercised too.
type changeLog struct {
	mu      sync.Mutex
	changes []store.IncidentChange
}

func (l *changeLog) IncidentMessages(tx store.ReadTx, c *store.IncidentChange) ([]*ica.OutboxMessage, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changes = append(l.changes, *c)
	return []*ica.OutboxMessage{{Destination: "test", Kind: c.Cause, Key: c.Next.ID + ":" + c.Cause + ":" + time.Now().String(),
		Payload: json.RawMessage(`{}`)}}, nil
}

func (l *changeLog) causes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, c := range l.changes {
		out = append(out, c.Cause)
	}
	// A write may run again when another write of its group commit fails,
	// so the notifier can see the same change more than once.
	return slices.Compact(out)
}

func TestStore_RecordAlert_Lifecycle(t *testing.T) {
	log := &changeLog{}
	s, clock := MustOpen(t, func(o *store.Options) {
		o.Incidents = log
		o.RouteAlert = func(a *ica.Alert) store.AlertRoute {
			return store.AlertRoute{Page: a.Severity == ica.Sev1, Channel: "incidents"}
		}
	})
	ctx := context.Background()
	raw := []byte(`{"schemaId":"azureMonitorCommonAlertSchema","data":{"essentials":{"alertId":"a-1","n":1.50e3}}}`)
	fired := testAlert("a-1", ica.AlertFired, t0)

	inc, outcome, err := s.RecordAlert(ctx, fired, raw, "azure-monitor")
	require.NoError(t, err)
	require.Equal(t, store.AlertOpened, outcome)
	require.Equal(t, ica.IncidentOpen, inc.Status)
	require.Equal(t, ica.IncidentIDFor("a-1"), inc.ID)
	require.True(t, inc.Paged)
	e, err := s.Entry(s.LedgerEntries())
	require.NoError(t, err)
	require.Equal(t, store.KindIncidentOpened, e.Kind)
	var data map[string]any
	require.NoError(t, json.Unmarshal(e.Data, &data))
	require.Equal(t, "azureMonitorCommonAlertSchema", data["payload"].(map[string]any)["schemaId"], "the raw payload is in the ledger")
	require.Equal(t, int64(1), s.OutboxDepth())

	// Azure retries the same delivery: nothing is written.
	entries := s.LedgerEntries()
	_, outcome, err = s.RecordAlert(ctx, fired, raw, "azure-monitor")
	require.NoError(t, err)
	require.Equal(t, store.AlertDuplicate, outcome)
	require.Equal(t, entries, s.LedgerEntries())

	clock.Advance(10 * time.Minute)
	resolved := testAlert("a-1", ica.AlertResolved, t0)
	resolved.ResolvedAt = t0.Add(9 * time.Minute)
	inc, outcome, err = s.RecordAlert(ctx, resolved, nil, "azure-monitor")
	require.NoError(t, err)
	require.Equal(t, store.AlertResolved, outcome)
	require.Equal(t, ica.IncidentResolved, inc.Status)
	require.Equal(t, resolved.ResolvedAt, *inc.ResolvedAt)

	for _, a := range []*ica.Alert{resolved, fired} {
		_, outcome, err = s.RecordAlert(ctx, a, nil, "azure-monitor")
		require.NoError(t, err)
		require.Equal(t, store.AlertDuplicate, outcome, "a late retry of %s changes nothing", a.MonitorCondition)
	}

	// A legacy alert fires again with the same id: the incident reopens.
	clock.Advance(time.Hour)
	again := testAlert("a-1", ica.AlertFired, t0.Add(time.Hour))
	inc, outcome, err = s.RecordAlert(ctx, again, nil, "azure-monitor")
	require.NoError(t, err)
	require.Equal(t, store.AlertReopened, outcome)
	require.Equal(t, 2, inc.Fired)
	require.Equal(t, []string{store.AlertOpened, store.AlertResolved, store.AlertReopened}, log.causes())

	got, err := s.Incident(ctx, inc.ID)
	require.NoError(t, err)
	require.Equal(t, inc, got)
	list, err := s.Incidents(ctx, ica.IncidentFilter{Status: ica.IncidentOpen})
	require.NoError(t, err)
	require.Len(t, list, 1)
}

func TestStore_RecordAlert_DroppedAndUnmatched(t *testing.T) {
	s, _ := MustOpen(t, func(o *store.Options) {
		o.RouteAlert = func(a *ica.Alert) store.AlertRoute { return store.AlertRoute{Drop: a.AlertID == "noise"} }
	})
	ctx := context.Background()
	_, outcome, err := s.RecordAlert(ctx, testAlert("noise", ica.AlertFired, t0), []byte(`{"x":1}`), "azure-monitor")
	require.NoError(t, err)
	require.Equal(t, store.AlertDropped, outcome)
	e, _ := s.Entry(s.LedgerEntries())
	require.Equal(t, store.KindIncidentAlertDropped, e.Kind)
	require.Contains(t, string(e.Data), `"payload":{"x":1}`)

	_, outcome, err = s.RecordAlert(ctx, testAlert("never-fired", ica.AlertResolved, t0), nil, "azure-monitor")
	require.NoError(t, err)
	require.Equal(t, store.AlertUnmatched, outcome)
	list, err := s.Incidents(ctx, ica.IncidentFilter{})
	require.NoError(t, err)
	require.Empty(t, list)
	_, err = s.Incident(ctx, ica.IncidentIDFor("noise"))
	require.Equal(t, ica.ENOTFOUND, code(err))
}

func TestStore_RecordAlert_ConcurrentRepeatsOpenOnce(t *testing.T) {
	log := &changeLog{}
	s, _ := MustOpen(t, func(o *store.Options) { o.Incidents = log })
	var wg sync.WaitGroup
	outcomes := make(chan string, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, o, err := s.RecordAlert(context.Background(), testAlert("a-race", ica.AlertFired, t0), nil, "azure-monitor")
			require.NoError(t, err)
			outcomes <- o
		}()
	}
	wg.Wait()
	close(outcomes)
	n := map[string]int{}
	for o := range outcomes {
		n[o]++
	}
	require.Equal(t, map[string]int{store.AlertOpened: 1, store.AlertDuplicate: 19}, n)
	require.Equal(t, uint64(1), s.LedgerEntries())
}

func TestStore_IncidentTransition(t *testing.T) {
	log := &changeLog{}
	s, _ := MustOpen(t, func(o *store.Options) { o.Incidents = log })
	ctx := context.Background()
	inc, _, err := s.RecordAlert(ctx, testAlert("a-2", ica.AlertFired, t0), nil, "azure-monitor")
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, u := range []string{"oncall1", "oncall2", "oncall3", "oncall4"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.IncidentTransition(ctx, inc.ID, ica.IncidentTransition{Action: ica.IncidentActAcknowledge,
				By: ica.Decider{Username: u}, Via: "mattermost"}, "mattermost:"+u, nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		if err == nil {
			ok++
		} else {
			require.Equal(t, ica.ECONFLICT, code(err))
		}
	}
	require.Equal(t, 1, ok, "of racing clicks exactly one acknowledges")

	n, err := s.IncidentTransition(ctx, inc.ID, ica.IncidentTransition{Action: ica.IncidentActResolve,
		By: ica.Decider{Username: "oncall1"}, Via: "mattermost"}, "mattermost:oncall1", nil)
	require.NoError(t, err)
	require.Equal(t, ica.IncidentResolved, n.Status)
	e, _ := s.Entry(s.LedgerEntries())
	require.Equal(t, store.KindIncidentResolved, e.Kind)
	require.Equal(t, []string{store.AlertOpened, store.CauseAcknowledged, store.CauseResolvedByUser}, log.causes())

	// Azure's Resolved after a person resolved it is a repeat.
	_, outcome, err := s.RecordAlert(ctx, testAlert("a-2", ica.AlertResolved, t0), nil, "azure-monitor")
	require.NoError(t, err)
	require.Equal(t, store.AlertDuplicate, outcome)
}

func TestStore_FreezeGateAndOverride(t *testing.T) {
	pol := freeze.New(freeze.Config{Targets: map[string]freeze.Scope{
		ica.TargetProduction: {ResourceGroups: []string{"RG-PROD"}}}})
	s, clock := MustOpen(t, func(o *store.Options) {
		o.Gates = append(o.Gates, func(tx store.ReadTx, a *ica.Approval) error {
			v, ok := tx.(store.IncidentReadTx)
			require.True(t, ok)
			return pol.Check(v, a)
		})
	})
	ctx := context.Background()
	for _, id := range []string{"r1", "r2", "r3"} {
		_, _, err := s.StartRun(ctx, start(id), "ado")
		require.NoError(t, err)
	}
	req := func(run, target string) (*ica.Approval, error) {
		a, _, err := s.RequestApproval(ctx, &ica.ApprovalRequest{RunID: run, DeploymentTarget: target, EstimatedCost: ptr(1.0)}, "ado")
		return a, err
	}
	inc, _, err := s.RecordAlert(ctx, testAlert("a-3", ica.AlertFired, t0), nil, "azure-monitor")
	require.NoError(t, err)

	_, err = req("r1", ica.TargetProduction)
	require.Equal(t, ica.EPOLICY, code(err))
	require.Contains(t, ica.ErrorMessage(err), inc.ID, "the refusal names the incident")
	_, err = req("r1", ica.TargetStaging)
	require.NoError(t, err, "staging is not mapped to rg-prod")

	_, err = s.OverrideFreeze(ctx, inc.ID, ica.Decision{Decider: ica.Decider{Username: "ic"}, Via: "api"}, "ic")
	require.Equal(t, ica.EINVALID, code(err), "an override needs a reason")
	_, err = s.OverrideFreeze(ctx, inc.ID, ica.Decision{Decider: ica.Decider{Username: "ic"}, Comment: "hotfix for the incident", Via: "api"}, "ic")
	require.NoError(t, err)
	e, _ := s.Entry(s.LedgerEntries())
	require.Equal(t, store.KindIncidentFreezeOverride, e.Kind)
	require.Contains(t, string(e.Data), "hotfix for the incident")
	_, err = s.OverrideFreeze(ctx, inc.ID, ica.Decision{Decider: ica.Decider{Username: "ic2"}, Comment: "again", Via: "api"}, "ic2")
	require.Equal(t, ica.ECONFLICT, code(err))
	d, err := s.IncidentOverride(ctx, inc.ID)
	require.NoError(t, err)
	require.Equal(t, "ic", d.Username)

	_, err = req("r2", ica.TargetProduction)
	require.NoError(t, err, "the override lifts the freeze")

	// Resolved, then fired again: the freeze is back.
	_, _, err = s.RecordAlert(ctx, testAlert("a-3", ica.AlertResolved, t0), nil, "azure-monitor")
	require.NoError(t, err)
	clock.Advance(time.Hour)
	_, outcome, err := s.RecordAlert(ctx, testAlert("a-3", ica.AlertFired, t0.Add(time.Hour)), nil, "azure-monitor")
	require.NoError(t, err)
	require.Equal(t, store.AlertReopened, outcome)
	_, err = req("r3", ica.TargetProduction)
	require.Equal(t, ica.EPOLICY, code(err))
	d, err = s.IncidentOverride(ctx, inc.ID)
	require.NoError(t, err)
	require.Nil(t, d)
}

func TestStore_UpdateIncident_Card(t *testing.T) {
	s, _ := MustOpen(t)
	ctx := context.Background()
	inc, _, err := s.RecordAlert(ctx, testAlert("a-4", ica.AlertFired, t0), nil, "azure-monitor")
	require.NoError(t, err)
	_, err = s.UpdateIncident(ctx, inc.ID, "mattermost", func(i *ica.Incident) (string, any, []*ica.OutboxMessage, error) {
		i.Card = ica.CardRef{ChannelID: "ch", PostID: "post-1"}
		return store.KindIncidentCard, map[string]string{"post_id": "post-1", "channel_id": "ch"}, nil, nil
	})
	require.NoError(t, err)
	got, err := s.IncidentByPost(ctx, "post-1")
	require.NoError(t, err)
	require.Equal(t, inc.ID, got.ID)
	_, err = s.UpdateIncident(ctx, inc.ID, "x", func(i *ica.Incident) (string, any, []*ica.OutboxMessage, error) {
		i.Status = ica.IncidentResolved
		return "", nil, nil, nil
	})
	require.Error(t, err, "the state machine is not bypassed")
	rep, err := s.Check()
	require.NoError(t, err)
	require.Equal(t, 1, rep.Incidents)
}
