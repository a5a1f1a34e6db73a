package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond,
		100: 100 * time.Millisecond, 0: time.Millisecond, 99.9: 100 * time.Millisecond} {
		if got := Percentile(s, p); got != want {
			t.Errorf("Percentile(1..100ms, %v) = %v, want %v", p, got, want)
		}
	}
	if Percentile(nil, 99) != 0 {
		t.Error("Percentile of no samples is not 0")
	}
}

func TestMedian(t *testing.T) {
	if m := Median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("Median = %v", m)
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("Median = %v", m)
	}
	in := []float64{3, 1, 2}
	Median(in)
	if in[0] != 3 {
		t.Error("Median sorted its input")
	}
}

func TestProcStatusBytes(t *testing.T) {
	hwm, err := ProcStatusBytes(os.Getpid(), "VmHWM")
	if err != nil || hwm <= 0 {
		t.Fatalf("VmHWM = %d, %v", hwm, err)
	}
	if _, err := ProcStatusBytes(os.Getpid(), "NoSuchField"); err == nil {
		t.Error("missing field not reported")
	}
}

func TestPrintFigures(t *testing.T) {
	var b strings.Builder
	ok := PrintFigures(&b, "t", []Figure{
		{Name: "rate", Value: 3100, Unit: "/s", Target: ">= 3,000", Pass: AtLeast(3000)},
		{Name: "p99", Value: 30, Unit: "ms", Target: "< 25 ms", Pass: Below(25)},
		{Name: "info", Value: 0.5},
	})
	out := b.String()
	if ok || !strings.Contains(out, "3100/s") || !strings.Contains(out, "PASS") || !strings.Contains(out, "MISS") {
		t.Errorf("ok=%v, output:\n%s", ok, out)
	}
}
