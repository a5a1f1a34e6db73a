package alerts

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ica-governance/ica/alerts/pdtest"
)

// BenchmarkAlertToPagerDuty measures one Azure Monitor body becoming a
// PagerDuty event received by the fake (parse, route, build, deliver), and
// reports the p99 from the fake's receive timestamps (target: < 100 ms).
func BenchmarkAlertToPagerDuty(b *testing.B) {
	srv := pdtest.NewServer(b)
	d, err := NewPagerDutyDeliverer(PagerDutyConfig{URL: srv.URL, RoutingKey: testKey, EventsPerMinute: 1 << 30, Burst: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	body := MustRead(b, "common/prometheus-fired.json")
	routing := &RoutingConfig{}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		a, err := Parse(body)
		if err != nil {
			b.Fatal(err)
		}
		if !routing.Route(a).PagerDuty {
			b.Fatal("Sev1 must page")
		}
		m, err := NewEventMessage(TriggerEvent("", a, ""), strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.Deliver(context.Background(), m); err != nil {
			b.Fatal(err)
		}
		last, _ := srv.Last()
		lat = append(lat, last.At.Sub(start))
	}
	b.StopTimer()
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
