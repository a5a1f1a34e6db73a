package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/alerts/pdtest"
)

const (
	testKey  = "e93facc04764012d7bfb002500d5d1a6" // 32 characters, like a real integration key
	otherKey = "0123456789abcdef0123456789abcdef"
	cardURL  = "https://mattermost.example.test/ica/pl/abc123"
)

func TestPagerDutySeverity(t *testing.T) {
	want := map[string]string{ica.Sev0: PDCritical, ica.Sev1: PDError, ica.Sev2: PDWarning, ica.Sev3: PDInfo, ica.Sev4: PDInfo, "": PDInfo}
	for sev, pd := range want {
		require.Equal(t, pd, PagerDutySeverity(sev), sev)
	}
}

func TestTriggerEvent(t *testing.T) {
	a := MustParse(t, "common/metric-static-threshold-fired.json")
	ev := TriggerEvent(testKey, a, cardURL)
	require.Equal(t, PDTrigger, ev.Action)
	require.Equal(t, a.AlertID, ev.DedupKey)
	require.Equal(t, a.TargetResources[0], ev.Source)
	require.Equal(t, PDInfo, ev.Severity)
	require.Equal(t, "test-storageAccount", ev.Component)
	require.Equal(t, "test-RG", ev.Group)
	require.Equal(t, "Platform", ev.Class)
	require.Equal(t, "ICA", ev.Client)
	require.Equal(t, "[Sev4] test-metricAlertRule on test-storageAccount: Alertruledescription", ev.Summary)
	require.Equal(t, "2025-04-15T18:17:12.851Z", ev.Timestamp)
	require.JSONEq(t, string(a.Essentials), string(ev.CustomDetails))
	require.Equal(t, []PagerDutyLink{
		{Href: a.PortalLink, Text: "Alert in the Azure portal"},
		{Href: cardURL, Text: "Incident card in Mattermost"},
	}, ev.Links)
	require.NoError(t, ev.Validate())

	budget := TriggerEvent("", MustParse(t, "common/budget-fired.json"), "")
	require.Equal(t, "budgets", budget.Source)
	require.Equal(t, testSub, budget.Group)
	require.NoError(t, budget.Validate())

	long := *a
	long.Description = strings.Repeat("ünïcode ", 400)
	ev = TriggerEvent(testKey, &long, "")
	require.LessOrEqual(t, len(ev.Summary), MaxSummaryLen)
	require.True(t, strings.HasSuffix(ev.Summary, "…"))
	require.True(t, json.Valid([]byte(`"`+ev.Summary+`"`)))
	require.Len(t, ev.Links, 1)
}

func TestNewEventMessage(t *testing.T) {
	a := MustParse(t, "common/prometheus-fired.json")
	ev := TriggerEvent(testKey, a, cardURL)
	m, err := NewEventMessage(ev, "v1")
	require.NoError(t, err)
	require.Equal(t, "pagerduty", m.Destination)
	require.Equal(t, "pagerduty.trigger", m.Kind)
	require.Equal(t, a.AlertID+":trigger:v1", m.Key)
	require.Equal(t, "pd:"+a.AlertID, m.OrderKey)
	var back PagerDutyEvent
	require.NoError(t, json.Unmarshal(m.Payload, &back))
	require.JSONEq(t, string(ev.CustomDetails), string(back.CustomDetails))
	want := ev
	want.CustomDetails, back.CustomDetails = nil, nil // compacted by Marshal
	require.Equal(t, want, back)

	ack, err := NewEventMessage(AcknowledgeEvent(testKey, a.AlertID), "v2")
	require.NoError(t, err)
	res, err := NewEventMessage(ResolveEvent(testKey, a.AlertID))
	require.NoError(t, err)
	require.Equal(t, m.OrderKey, ack.OrderKey, "one order key per alert keeps trigger, ack and resolve in order")
	require.Equal(t, m.OrderKey, res.OrderKey)
	require.Equal(t, a.AlertID+":resolve", res.Key)

	long := ev
	long.Summary = strings.Repeat("x", 3000)
	lm, err := NewEventMessage(long)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(lm.Payload, &back))
	require.Len(t, back.Summary, MaxSummaryLen)

	bad := []struct {
		name  string
		ev    PagerDutyEvent
		field string
	}{
		{"unknown action", PagerDutyEvent{Action: "page", DedupKey: "k"}, "event_action"},
		{"no dedup key", PagerDutyEvent{Action: PDResolve}, "dedup_key"},
		{"dedup key too long", PagerDutyEvent{Action: PDResolve, DedupKey: strings.Repeat("k", 256)}, "dedup_key"},
		{"short routing key", PagerDutyEvent{RoutingKey: "routingkeyhere", Action: PDResolve, DedupKey: "k"}, "routing_key"},
		{"trigger without summary", PagerDutyEvent{Action: PDTrigger, DedupKey: "k", Source: "s", Severity: PDInfo}, "summary"},
		{"trigger without source", PagerDutyEvent{Action: PDTrigger, DedupKey: "k", Summary: "s", Severity: PDInfo}, "source"},
		{"trigger with odd severity", PagerDutyEvent{Action: PDTrigger, DedupKey: "k", Summary: "s", Source: "s", Severity: "Sev0"}, "severity"},
	}
	for _, b := range bad {
		_, err := NewEventMessage(b.ev)
		require.Error(t, err, b.name)
		require.Equal(t, ica.EINVALID, ica.ErrorCode(err), b.name)
		require.Equal(t, b.field, ica.ErrorField(err), b.name)
		require.NotContains(t, err.Error(), "routingkeyhere")
	}
	_, err = NewEventMessage(ev, "a", "b")
	require.Error(t, err)
}

func TestPagerDutyEvent_String(t *testing.T) {
	s := TriggerEvent(testKey, MustParse(t, "common/log-v2-fired.json"), "").String()
	require.NotContains(t, s, testKey)
	require.Contains(t, s, redacted)
}

// newDeliverer returns a deliverer aimed at a fresh fake PagerDuty.
func newDeliverer(t *testing.T, cfg PagerDutyConfig) (*PagerDutyDeliverer, *pdtest.Server) {
	t.Helper()
	srv := pdtest.NewServer(t)
	cfg.URL = srv.URL
	if cfg.RoutingKey == "" {
		cfg.RoutingKey = testKey
	}
	d, err := NewPagerDutyDeliverer(cfg)
	require.NoError(t, err)
	return d, srv
}

func mustMessage(tb testing.TB, ev PagerDutyEvent) *ica.OutboxMessage {
	tb.Helper()
	m, err := NewEventMessage(ev, "1")
	require.NoError(tb, err)
	m.ID = 7
	return m
}

func requireNoKey(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		require.NotContains(tb, err.Error(), testKey)
		require.NotContains(tb, ica.ErrorMessage(err), testKey)
		require.NotContains(tb, err.Error(), otherKey)
	}
}

func TestPagerDutyDeliverer_Deliver_Accepted(t *testing.T) {
	d, srv := newDeliverer(t, PagerDutyConfig{})
	a := MustParse(t, "common/metric-static-threshold-fired.json")
	ctx := context.Background()

	for _, ev := range []PagerDutyEvent{
		TriggerEvent("", a, cardURL), // the configured key
		AcknowledgeEvent(testKey, a.AlertID),
		ResolveEvent(testKey, a.AlertID),
	} {
		retry, err := d.Deliver(ctx, mustMessage(t, ev))
		require.NoError(t, err)
		require.False(t, retry)
	}
	got := srv.Events()
	require.Len(t, got, 3)
	for i, action := range []string{"trigger", "acknowledge", "resolve"} {
		require.Equal(t, action, got[i].Event.Action)
		require.Equal(t, a.AlertID, got[i].Event.DedupKey)
		require.Equal(t, testKey, got[i].Event.RoutingKey)
		require.Equal(t, "application/json", got[i].Header.Get("Content-Type"))
		if i > 0 {
			require.False(t, got[i].At.Before(got[i-1].At), "receive times are in order")
		}
	}
	require.Nil(t, got[1].Event.Payload, "acknowledge carries no payload")
	p := got[0].Event.Payload
	require.Equal(t, PDInfo, p.Severity)
	require.Equal(t, a.TargetResources[0], p.Source)
	require.JSONEq(t, string(a.Essentials), string(p.CustomDetails))
}

// TestPagerDutyDeliverer_Deliver_WireShape checks that what reaches PagerDuty
// uses the field names of PagerDuty's own example (fixture request-trigger.json).
func TestPagerDutyDeliverer_Deliver_WireShape(t *testing.T) {
	d, srv := newDeliverer(t, PagerDutyConfig{})
	a := MustParse(t, "common/metric-static-threshold-fired.json")
	_, err := d.Deliver(context.Background(), mustMessage(t, TriggerEvent(testKey, a, cardURL)))
	require.NoError(t, err)
	got := srv.Events()
	require.Len(t, got, 1)

	var sent, want map[string]any
	require.NoError(t, json.Unmarshal(got[0].Raw, &sent))
	require.NoError(t, json.Unmarshal(pdtest.Fixture("request-trigger.json"), &want))
	delete(want, "images") // ICA sends no images
	require.Equal(t, keys(want), keys(sent))
	require.Equal(t, keys(want["payload"]), keys(sent["payload"]))
	require.Equal(t, keys(want["links"].([]any)[0]), keys(sent["links"].([]any)[0]))
	require.Empty(t, pdtest.Validate(got[0].Raw))
}

func keys(v any) []string {
	var out []string
	for k := range v.(map[string]any) {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestPagerDutyDeliverer_Deliver_Rejected(t *testing.T) {
	d, srv := newDeliverer(t, PagerDutyConfig{})
	// A payload written by hand: NewEventMessage would refuse this key.
	ev := ResolveEvent("routingkeyhere", "some-alert")
	payload, _ := json.Marshal(ev)
	retry, err := d.Deliver(context.Background(), &ica.OutboxMessage{ID: 3, Destination: "pagerduty", Payload: payload})
	require.False(t, retry, "400 is permanent")
	require.Error(t, err)
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
	require.Contains(t, err.Error(), "PagerDuty rejected the event")
	require.Contains(t, err.Error(), "Event object is invalid")
	require.Contains(t, err.Error(), "Length of 'routing_key' is incorrect")
	require.NotContains(t, err.Error(), "routingkeyhere")
	require.Len(t, srv.Requests(), 1)
	require.Empty(t, srv.Events())
}

func TestPagerDutyDeliverer_Deliver_Retries(t *testing.T) {
	a := MustParse(t, "common/log-v2-fired.json")
	msg := mustMessage(t, TriggerEvent(testKey, a, ""))

	t.Run("429 without Retry-After waits 30s", func(t *testing.T) {
		d, srv := newDeliverer(t, PagerDutyConfig{})
		srv.FailNext(1, http.StatusTooManyRequests)
		retry, err := d.Deliver(context.Background(), msg)
		require.True(t, retry)
		after, ok := ica.RetryAfter(err)
		require.True(t, ok, "%v", err)
		require.Equal(t, 30*time.Second, after)
		require.Equal(t, ica.ERATELIMIT, ica.ErrorCode(err))
		requireNoKey(t, err)

		retry, err = d.Deliver(context.Background(), msg)
		require.NoError(t, err)
		require.False(t, retry)
		require.Len(t, srv.Events(), 1)
	})
	t.Run("429 honours Retry-After", func(t *testing.T) {
		d, srv := newDeliverer(t, PagerDutyConfig{})
		srv.SetRetryAfter("7")
		srv.FailNext(1, http.StatusTooManyRequests)
		retry, err := d.Deliver(context.Background(), msg)
		require.True(t, retry)
		after, ok := ica.RetryAfter(err)
		require.True(t, ok)
		require.Equal(t, 7*time.Second, after)
	})
	for _, status := range []int{500, 502, 503, 504, 408} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			d, srv := newDeliverer(t, PagerDutyConfig{})
			srv.FailNext(1, status)
			retry, err := d.Deliver(context.Background(), msg)
			require.True(t, retry)
			require.Error(t, err)
			require.Equal(t, ica.EUNAVAILABLE, ica.ErrorCode(err))
			_, ok := ica.RetryAfter(err)
			require.False(t, ok)
			requireNoKey(t, err)
		})
	}
	t.Run("503 with Retry-After", func(t *testing.T) {
		d, srv := newDeliverer(t, PagerDutyConfig{})
		srv.SetRetryAfter("12")
		srv.FailNext(1, http.StatusServiceUnavailable)
		retry, err := d.Deliver(context.Background(), msg)
		require.True(t, retry)
		after, ok := ica.RetryAfter(err)
		require.True(t, ok)
		require.Equal(t, 12*time.Second, after)
	})
	t.Run("down", func(t *testing.T) {
		d, srv := newDeliverer(t, PagerDutyConfig{})
		srv.SetDown(true)
		retry, err := d.Deliver(context.Background(), msg)
		require.True(t, retry)
		require.Equal(t, ica.EUNAVAILABLE, ica.ErrorCode(err))
		requireNoKey(t, err)
		srv.SetDown(false)
		retry, err = d.Deliver(context.Background(), msg)
		require.NoError(t, err)
		require.False(t, retry)
	})
	t.Run("closed server", func(t *testing.T) {
		d, srv := newDeliverer(t, PagerDutyConfig{})
		srv.Close()
		retry, err := d.Deliver(context.Background(), msg)
		require.True(t, retry)
		require.Equal(t, ica.EUNAVAILABLE, ica.ErrorCode(err))
	})
	t.Run("slow PagerDuty and a context deadline", func(t *testing.T) {
		d, srv := newDeliverer(t, PagerDutyConfig{})
		srv.SetLatency(2 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		retry, err := d.Deliver(ctx, msg)
		require.Less(t, time.Since(start), time.Second)
		require.True(t, retry)
		require.Equal(t, ica.EUNAVAILABLE, ica.ErrorCode(err))
		require.Contains(t, err.Error(), "in time")
	})
	t.Run("slow PagerDuty and the configured timeout", func(t *testing.T) {
		d, srv := newDeliverer(t, PagerDutyConfig{Timeout: 50 * time.Millisecond})
		srv.SetLatency(2 * time.Second)
		retry, err := d.Deliver(context.Background(), msg)
		require.True(t, retry)
		require.Error(t, err)
	})
}

func TestPagerDutyDeliverer_Deliver_Permanent(t *testing.T) {
	d, srv := newDeliverer(t, PagerDutyConfig{})
	cases := []struct {
		name string
		msg  *ica.OutboxMessage
	}{
		{"wrong destination", &ica.OutboxMessage{Destination: "mattermost", Payload: []byte(`{}`)}},
		{"payload not an event", &ica.OutboxMessage{Destination: "pagerduty", Payload: []byte(`[1]`)}},
	}
	for _, c := range cases {
		retry, err := d.Deliver(context.Background(), c.msg)
		require.False(t, retry, c.name)
		require.Equal(t, ica.EINVALID, ica.ErrorCode(err), c.name)
	}
	srv.FailNext(1, http.StatusForbidden)
	retry, err := d.Deliver(context.Background(), mustMessage(t, ResolveEvent(testKey, "k")))
	require.False(t, retry)
	require.Contains(t, err.Error(), "HTTP 403")

	noKey, err := NewPagerDutyDeliverer(PagerDutyConfig{URL: srv.URL})
	require.NoError(t, err)
	retry, err = noKey.Deliver(context.Background(), mustMessage(t, ResolveEvent("", "k")))
	require.False(t, retry)
	require.Contains(t, err.Error(), "ICA_PAGERDUTY_ROUTING_KEY")
}

func TestPagerDutyDeliverer_RateLimit(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	d, srv := newDeliverer(t, PagerDutyConfig{Clock: clock, EventsPerMinute: 60, Burst: 2})
	msg := mustMessage(t, ResolveEvent(testKey, "k"))
	for range 2 {
		_, err := d.Deliver(context.Background(), msg)
		require.NoError(t, err)
	}
	retry, err := d.Deliver(context.Background(), msg)
	require.True(t, retry)
	after, ok := ica.RetryAfter(err)
	require.True(t, ok)
	require.Equal(t, time.Second, after)
	require.Equal(t, ica.ERATELIMIT, ica.ErrorCode(err))
	requireNoKey(t, err)
	require.Len(t, srv.Requests(), 2, "an over-limit event is not sent")

	// Another routing key has its own bucket.
	_, err = d.Deliver(context.Background(), mustMessage(t, ResolveEvent(otherKey, "k")))
	require.NoError(t, err)

	clock.Advance(time.Second)
	_, err = d.Deliver(context.Background(), msg)
	require.NoError(t, err)
	require.Len(t, srv.Events(), 4)
}

func TestRateLimiter_Defaults(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	l := NewRateLimiter(0, 0, clock)
	allowed := 0
	// Sixty seconds at one attempt every 100 ms: at most 120 get through.
	for range 600 {
		if l.Allow(testKey) == nil {
			allowed++
		}
		clock.Advance(100 * time.Millisecond)
	}
	require.LessOrEqual(t, allowed, 120)
	require.GreaterOrEqual(t, allowed, 110)
	var ra *ica.RetryAfterError
	for l.Allow(testKey) == nil {
	}
	require.True(t, errors.As(l.Allow(testKey), &ra))
	require.NotContains(t, ra.Error(), testKey)
}

func TestEventsBaseURL(t *testing.T) {
	ok := map[string]string{
		"": "https://events.pagerduty.com",
		"https://events.pagerduty.com/v2/enqueue":     "https://events.pagerduty.com",
		"https://events.eu.pagerduty.com/v2/enqueue/": "https://events.eu.pagerduty.com",
		"http://127.0.0.1:9999":                       "http://127.0.0.1:9999",
		"http://proxy.internal/pd/v2/enqueue":         "http://proxy.internal/pd",
	}
	for in, want := range ok {
		got, err := eventsBaseURL(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"events.pagerduty.com", "ftp://x/v2/enqueue", "https://x/other", "https://x/v2/enqueue?k=1", "http://"} {
		_, err := eventsBaseURL(in)
		require.Error(t, err, in)
		require.Equal(t, "ICA_PAGERDUTY_URL", ica.ErrorField(err))
	}
	_, err := NewPagerDutyDeliverer(PagerDutyConfig{RoutingKey: "short"})
	require.Equal(t, "ICA_PAGERDUTY_ROUTING_KEY", ica.ErrorField(err))
	require.NotContains(t, err.Error(), "short")
}

func TestRetryAfter(t *testing.T) {
	now := t0
	h := func(v string) http.Header { return http.Header{"Retry-After": {v}} }
	d, ok := retryAfter(h("120"), now)
	require.True(t, ok)
	require.Equal(t, 2*time.Minute, d)
	d, ok = retryAfter(h(now.Add(90*time.Second).Format(http.TimeFormat)), now)
	require.True(t, ok)
	require.Equal(t, 90*time.Second, d)
	d, ok = retryAfter(h("0"), now)
	require.True(t, ok)
	require.Equal(t, time.Second, d, "at least a second")
	d, ok = retryAfter(h("999999"), now)
	require.True(t, ok)
	require.Equal(t, time.Hour, d, "at most an hour")
	for _, v := range []string{"", "soon", "-5"} {
		_, ok = retryAfter(h(v), now)
		require.False(t, ok, v)
	}
}
