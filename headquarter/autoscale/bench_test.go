package autoscale_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/scout/sample"
)

// fleet builds n apps with three metrics each and a mix of loads: a
// quarter over their up thresholds, a quarter quiet (the down path), a
// quarter in between, a quarter with a metric missing; half have a
// schedule, so the cron look-up is in the cost.
func fleet(b *testing.B, n int) ([]rulefmt.Rule, []autoscale.Input) {
	b.Helper()
	var doc strings.Builder
	doc.WriteString("rules:\n")
	for i := range n {
		fmt.Fprintf(&doc, "  - app: /bench/app-%d\n    max: 50\n    up: {qps: 400, cpu: 0.75, mem: 0.80}\n    down: {qps: 100, cpu: 0.25, mem: 0.40}\n", i)
		if i%2 == 0 {
			doc.WriteString("    timezone: Asia/Shanghai\n    schedules: [{cron: \"30 11 * * *\", for: 2h, min: 8}]\n")
		}
	}
	rules, err := rulefmt.Parse([]byte(doc.String()), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	inputs := make([]autoscale.Input, n)
	for i := range inputs {
		cur := 2 + i%10
		switch i % 4 {
		case 0:
			inputs[i] = in(cur, qps(600*float64(cur), cur), cpu(0.9, cur), mem(0.5, cur))
		case 1:
			inputs[i] = quiet(cur)
		case 2:
			inputs[i] = in(cur, qps(250*float64(cur), cur), cpu(0.5, cur), mem(0.6, cur))
		case 3:
			inputs[i] = in(cur, qps(250*float64(cur), cur), cpu(0.5, cur), none(sample.Mem))
		}
	}
	return rules, inputs
}

var sink int

// readAll is the baseline: the same inputs read, nothing decided.
func readAll(rules []rulefmt.Rule, inputs []autoscale.Input) int {
	n := 0
	for i := range rules {
		for _, m := range sample.Metrics {
			if v, ok := inputs[i].Reading[m]; ok && v.OK && v.Value > rules[i].Up.Of(m) {
				n++
			}
		}
		n += inputs[i].Current
	}
	return n
}

// BenchmarkDecide10k is the decide phase of one evaluation of 10,000 apps
// (one op: Decide for every app, inputs already read; not the sources'
// reads, the status look-ups or the decision log, which
// garrison_autoscale_evaluation_seconds{phase="read"} shows in production),
// reported as ms per evaluation, as a fraction of the default 1 s
// interval, and as a multiple of only reading the same inputs.
func BenchmarkDecide10k(b *testing.B) {
	const apps = 10_000
	const interval = autoscale.DefaultInterval
	rules, inputs := fleet(b, apps)

	baseline := time.Duration(1<<63 - 1)
	for range 20 {
		start := time.Now()
		sink += readAll(rules, inputs)
		baseline = min(baseline, time.Since(start))
	}

	states := make([]autoscale.State, apps)
	now := t0.Add(3*time.Hour + 30*time.Minute) // 11:30 in Shanghai: the schedules are open
	b.ReportAllocs()
	for b.Loop() {
		for i := range rules {
			d := autoscale.Decide(rules[i], inputs[i], &states[i], now)
			sink += d.To
		}
		now = now.Add(interval)
	}
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(time.Millisecond), "ms/eval")
	b.ReportMetric(float64(per)/float64(interval), "fraction-of-interval")
	b.ReportMetric(float64(per)/float64(baseline), "x-baseline")
}

// BenchmarkReadInputs10k is the baseline alone, for comparison in the
// same run.
func BenchmarkReadInputs10k(b *testing.B) {
	rules, inputs := fleet(b, 10_000)
	for b.Loop() {
		sink += readAll(rules, inputs)
	}
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(time.Millisecond), "ms/eval")
}
