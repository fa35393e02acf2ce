package health

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metric reads one series from reg: a counter's or gauge's value, a
// histogram's count.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	began := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := newClock(began)
	tg := newTarget(t, http.StatusInternalServerError)
	h := start(t, WithRegisterer(reg), WithNow(clock.now))
	c := tg.check(t)
	c.GracePeriod = time.Minute
	c.MaxConsecutiveFailures = 2
	h.add(t, "t1", began, c)
	if n := metric(t, reg, "garrison_health_checks", nil); n != 1 {
		t.Fatalf("tracked checks = %v, want 1", n)
	}
	eventually(t, "failures in the grace period counted", func() bool {
		return metric(t, reg, "garrison_health_checks_total", map[string]string{"protocol": "HTTP", "result": "grace"}) >= 3
	})
	clock.set(began.Add(2 * time.Minute))
	recv(t, h.unhealthy, "unhealthy")
	if n := metric(t, reg, "garrison_health_unhealthy_total", nil); n != 1 {
		t.Fatalf("unhealthy_total = %v", n)
	}
	if n := metric(t, reg, "garrison_health_checks_total", map[string]string{"protocol": "HTTP", "result": "failure"}); n < 2 {
		t.Fatalf("failures = %v, want 2 or more", n)
	}
	if n := metric(t, reg, "garrison_health_check_seconds", map[string]string{"protocol": "HTTP"}); n < 5 {
		t.Fatalf("observed durations = %v", n)
	}
	h.m.Remove("t1")
	if n := metric(t, reg, "garrison_health_checks", nil); n != 0 {
		t.Fatalf("tracked checks after Remove = %v", n)
	}
}
