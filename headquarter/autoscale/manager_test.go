package autoscale_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/scout/sample"
)

// scriptedSource returns the readings a test sets, or fails.
type scriptedSource struct {
	mu       sync.Mutex
	readings sample.Readings
	err      error
	requests []sample.Request
}

func (s *scriptedSource) Read(_ context.Context, req sample.Request) (sample.Readings, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
	return s.readings, s.err
}

// memTarget is an app count that becomes ready when the test says so.
type memTarget struct {
	mu     sync.Mutex
	status map[string]autoscale.AppStatus
	scales []int
	locked bool
}

func (t *memTarget) Status(_ context.Context, app string) (autoscale.AppStatus, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.status[app]
	return st, ok, nil
}

func (t *memTarget) Scale(_ context.Context, app string, n int, _ string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.locked {
		return autoscale.ErrNotNow
	}
	st := t.status[app]
	st.Instances = n
	st.Deployment, st.Autoscaled = true, true
	t.status[app] = st
	t.scales = append(t.scales, n)
	return nil
}

func (t *memTarget) ready(app string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.status[app]
	st.Ready, st.Deployment, st.Autoscaled = st.Instances, false, false
	t.status[app] = st
}

func parseRules(t *testing.T, y string) []rulefmt.Rule {
	t.Helper()
	rules, err := rulefmt.Parse([]byte(y), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

func TestManagerActsRecordsAndTimesTheScaleUp(t *testing.T) {
	srv := etcdtest.New(t)
	st := store.New(srv.Client(t))
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	src := &scriptedSource{readings: sample.Readings{"/shop/web": {
		sample.QPS: {Value: 400, OK: true, Instances: 1},
		sample.CPU: {Value: 0.9, OK: true, Instances: 1},
		sample.Mem: {Value: 0.2, OK: true, Instances: 1},
	}}}
	target := &memTarget{status: map[string]autoscale.AppStatus{"/shop/web": {Instances: 1, Ready: 1, CPUs: 0.5, MemMB: 64}}}
	m := autoscale.New(autoscale.Config{Target: target, Sources: map[string]sample.Source{"test": src}, DefaultSource: "test",
		Recorder: st, Now: func() time.Time { return now }})
	m.SetRules(parseRules(t, "rules:\n  - app: /shop/web\n    min: 1\n    max: 10\n    window: 10s\n    up: { qps: 100, cpu: 0.8, mem: 0.8 }\n    down: { qps: 20, cpu: 0.2, mem: 0.2 }\n"))

	recs := m.Evaluate(t.Context())
	if len(recs) != 1 || recs[0].Action != autoscale.Up || recs[0].To != 4 || !recs[0].Acted {
		t.Fatalf("first evaluation: %+v", recs)
	}
	if len(src.requests) != 1 || len(src.requests[0].Apps) != 1 || src.requests[0].Window != 10*time.Second || src.requests[0].Apps[0].CPUs != 0.5 {
		t.Fatalf("source asked %+v", src.requests)
	}
	// Until the new instances are ready nothing more happens; then the
	// record gets its ready time.
	now = now.Add(2 * time.Second)
	target.ready("/shop/web")
	src.readings["/shop/web"] = sample.Reading{sample.QPS: {Value: 400, OK: true, Instances: 4}, sample.CPU: {Value: 0.5, OK: true, Instances: 4}}
	m.Evaluate(t.Context())
	got, err := st.Decisions(t.Context(), "/shop/web", 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("decision log: %d records, %v", len(got), err)
	}
	var rec autoscale.Record
	if err := json.Unmarshal(got[0].Data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.ReadyAt == nil || rec.ReadySeconds != 2 || rec.From != 1 || rec.To != 4 || rec.Reason == "" {
		t.Fatalf("recorded %+v", rec)
	}
	if len(target.scales) != 1 {
		t.Fatalf("scaled %v times, want once", target.scales)
	}
}

func TestManagerSourceErrorMeansNoDataAndIsRecorded(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	src := &scriptedSource{err: errors.New("prometheus at 127.0.0.1:9 is down")}
	target := &memTarget{status: map[string]autoscale.AppStatus{"/a": {Instances: 4, Ready: 4}}}
	m := autoscale.New(autoscale.Config{Target: target, Sources: map[string]sample.Source{"p": src}, DefaultSource: "p",
		Now: func() time.Time { return now }})
	m.SetRules(parseRules(t, "rules:\n  - app: /a\n    min: 1\n    max: 10\n    scaleDownAfter: 1s\n    cooldown: 1s\n    up: { qps: 100, cpu: 0.8 }\n    down: { qps: 20, cpu: 0.2 }\n"))
	for range 5 {
		recs := m.Evaluate(t.Context())
		for _, r := range recs {
			if r.To < r.From {
				t.Fatalf("scaled down with the source failing: %+v", r)
			}
		}
		now = now.Add(10 * time.Second)
	}
	if len(target.scales) != 0 {
		t.Fatalf("acted with no data: %v", target.scales)
	}
}

func TestManagerHeldByAnotherDeploymentIsNoCooldown(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	// 980 req/s needs 9 of 110 (100 and the band), and 9 a tolerance lower
	// too: no confirmation.
	src := &scriptedSource{readings: sample.Readings{"/a": {sample.QPS: {Value: 980, OK: true, Instances: 2}, sample.CPU: {Value: 0.95, OK: true, Instances: 2}}}}
	target := &memTarget{status: map[string]autoscale.AppStatus{"/a": {Instances: 2, Ready: 2}}, locked: true}
	m := autoscale.New(autoscale.Config{Target: target, Sources: map[string]sample.Source{"p": src}, DefaultSource: "p",
		Now: func() time.Time { return now }})
	m.SetRules(parseRules(t, "rules:\n  - app: /a\n    min: 1\n    max: 20\n    up: { qps: 100, cpu: 0.8 }\n"))
	recs := m.Evaluate(t.Context())
	if len(recs) != 1 || !recs[0].NotNow || recs[0].ActError != "" {
		t.Fatalf("locked: %+v", recs)
	}
	target.locked = false
	now = now.Add(time.Second)
	recs = m.Evaluate(t.Context())
	if len(recs) != 1 || recs[0].NotNow || len(target.scales) != 1 || target.scales[0] != 9 {
		t.Fatalf("after the lock: %+v, scales %v", recs, target.scales)
	}
}

// countingRecorder counts the decision log's writes.
type countingRecorder struct {
	autoscale.Recorder
	mu     sync.Mutex
	writes int
}

func (c *countingRecorder) PutDecision(ctx context.Context, app, id string, data []byte) error {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Recorder.PutDecision(ctx, app, id, data)
}

func (c *countingRecorder) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// Issue 10: an app capped at max rewrote its record every evaluation
// (about 1 KB a time, kept in etcd's history): 100 such apps filled the
// quota in a day. A repeated outcome is counted in memory, never written.
func TestManagerNeverRewritesARepeatedOutcome(t *testing.T) {
	srv := etcdtest.New(t)
	rec := &countingRecorder{Recorder: store.New(srv.Client(t))}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	src := &scriptedSource{readings: sample.Readings{"/a": {sample.QPS: {Value: 900, OK: true, Instances: 3}, sample.CPU: {Value: 0.9, OK: true, Instances: 3}}}}
	target := &memTarget{status: map[string]autoscale.AppStatus{"/a": {Instances: 3, Ready: 3}}}
	m := autoscale.New(autoscale.Config{Target: target, Sources: map[string]sample.Source{"p": src}, DefaultSource: "p",
		Recorder: rec, Now: func() time.Time { return now }})
	m.SetRules(parseRules(t, "rules:\n  - app: /a\n    min: 1\n    max: 3\n    up: { qps: 100, cpu: 0.8 }\n"))
	for range 100 {
		m.Evaluate(t.Context())
		now = now.Add(time.Second)
	}
	if n := rec.count(); n != 1 {
		t.Fatalf("%d writes for one outcome held 100 evaluations, want 1", n)
	}
	evs := m.Evaluations("/a")
	if len(evs) != 1 || evs[0].Capped != autoscale.CapMax || evs[0].Why != autoscale.WhyBound || !evs[0].At.Equal(now.Add(-time.Second)) {
		t.Fatalf("last evaluation %+v", evs)
	}
	// Another outcome is written, with the first record's final count.
	src.readings["/a"] = sample.Reading{sample.QPS: {Value: 3000, OK: true, Instances: 3}, sample.CPU: {Value: 0.9, OK: true, Instances: 3}}
	target.status["/a"] = autoscale.AppStatus{Instances: 3, Ready: 3, Deployment: true}
	m.SetRules(parseRules(t, "rules:\n  - app: /a\n    min: 1\n    max: 20\n    up: { qps: 100, cpu: 0.8 }\n"))
	now = now.Add(2 * time.Minute)
	m.Evaluate(t.Context()) // the load rose: sized at the next evaluation
	now = now.Add(time.Second)
	// A new sample (the same one again would wait one more interval).
	src.readings["/a"] = sample.Reading{sample.QPS: {Value: 3010, OK: true, Instances: 3}, sample.CPU: {Value: 0.9, OK: true, Instances: 3}}
	m.Evaluate(t.Context())
	if n := rec.count(); n != 3 {
		t.Fatalf("%d writes after the outcome changed, want 3 (the first record's count, the new one)", n)
	}
	got, err := store.New(srv.Client(t)).Decisions(t.Context(), "/a", 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("%d records: %v", len(got), err)
	}
	var first autoscale.Record
	if err := json.Unmarshal(got[1].Data, &first); err != nil {
		t.Fatal(err)
	}
	if first.Repeats != 99 || first.Capped != autoscale.CapMax {
		t.Fatalf("first record %+v", first)
	}
}

// Issue 11: a QPS counter that matched nothing stopped scaling with no
// sign anywhere. The last evaluation says so, a gauge says so, and the log
// says so once.
func TestManagerShowsAMetricWithoutData(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	src := &scriptedSource{readings: sample.Readings{"/a": {sample.CPU: {Value: 0.1, OK: true, Instances: 2}}}}
	target := &memTarget{status: map[string]autoscale.AppStatus{"/a": {Instances: 2, Ready: 2}}}
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	m := autoscale.New(autoscale.Config{Target: target, Sources: map[string]sample.Source{"p": src}, DefaultSource: "p",
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now }})
	m.SetRules(parseRules(t, "rules:\n  - app: /a\n    max: 8\n    quorum: 1\n    up: { qps: 10, cpu: 0.8 }\n"))
	for range 5 {
		m.Evaluate(t.Context())
		now = now.Add(time.Second)
	}
	evs := m.Evaluations("")
	if len(evs) != 1 {
		t.Fatalf("evaluations %+v", evs)
	}
	q := evs[0].Inputs[0]
	if q.Metric != sample.QPS || !q.Used || q.HasData || !strings.Contains(evs[0].Reason, "no data: qps") || evs[0].Why != autoscale.WhyNoData {
		t.Fatalf("last evaluation %+v", evs[0])
	}
	if c := evs[0].Inputs[1]; !c.HasData || c.PerInstance != 0.1 || c.Up != 0.8 || c.Over {
		t.Fatalf("cpu input %+v", c)
	}
	if n := strings.Count(logs.String(), "has no data"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, logs.String())
	}
	if v := gaugeWith(t, reg, "garrison_autoscale_metric_has_data", "metric", "qps"); v != 0 {
		t.Fatalf("has_data{qps} = %v", v)
	}
	if v := gaugeWith(t, reg, "garrison_autoscale_metric_has_data", "metric", "cpu"); v != 1 {
		t.Fatalf("has_data{cpu} = %v", v)
	}
}

func gaugeWith(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// Issue 11: readySeconds was rounded to the evaluation interval. Between
// evaluations the manager watches the pending scale-up itself: with an
// interval of an hour, the record still gets its ready time.
func TestManagerRecordsReadyBetweenEvaluations(t *testing.T) {
	srv := etcdtest.New(t)
	st := store.New(srv.Client(t))
	src := &scriptedSource{readings: sample.Readings{"/a": {sample.QPS: {Value: 40, OK: true, Instances: 1}}}}
	target := &memTarget{status: map[string]autoscale.AppStatus{"/a": {Instances: 1, Ready: 1}}}
	m := autoscale.New(autoscale.Config{Target: target, Sources: map[string]sample.Source{"p": src}, DefaultSource: "p",
		Recorder: st, Interval: time.Hour})
	m.SetRules(parseRules(t, "rules:\n  - app: /a\n    max: 8\n    up: { qps: 10 }\n"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	recs := m.Evaluate(t.Context())
	if len(recs) != 1 || recs[0].To != 4 || !recs[0].Acted {
		t.Fatalf("evaluation %+v", recs)
	}
	readyAt := time.Now()
	target.ready("/a")
	var rec autoscale.Record
	poll.True(t, 30*time.Second, "the record gets its ready time", func() bool {
		got, err := st.Decisions(t.Context(), "/a", 1)
		if err != nil || len(got) != 1 || json.Unmarshal(got[0].Data, &rec) != nil {
			return false
		}
		return rec.ReadyAt != nil
	})
	if rec.ReadyAt.Before(readyAt) || rec.ReadySeconds <= 0 {
		t.Fatalf("ready at %v (marked ready at %v), %v s", rec.ReadyAt, readyAt, rec.ReadySeconds)
	}
}

// The write limit on records that change nothing never hides the first one
// after a change (a dry-run right after a scale-up).
func TestManagerRecordsADryRunRightAfterAScaleUp(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	src := &scriptedSource{readings: sample.Readings{"/a": {sample.QPS: {Value: 40, OK: true, Instances: 1}}}}
	target := &memTarget{status: map[string]autoscale.AppStatus{"/a": {Instances: 1, Ready: 1}}}
	m := autoscale.New(autoscale.Config{Target: target, Sources: map[string]sample.Source{"p": src}, DefaultSource: "p",
		Now: func() time.Time { return now }})
	m.SetRules(parseRules(t, "rules:\n  - app: /a\n    max: 10\n    up: { qps: 10 }\n"))
	if recs := m.Evaluate(t.Context()); len(recs) != 1 || !recs[0].Acted {
		t.Fatalf("scale-up: %+v", recs)
	}
	target.ready("/a")
	src.readings["/a"] = sample.Reading{sample.QPS: {Value: 85, OK: true, Instances: 4}}
	m.SetRules(parseRules(t, "rules:\n  - app: /a\n    max: 10\n    dryRun: true\n    up: { qps: 10 }\n"))
	var got []autoscale.Record
	for i := range 2 { // the first reading after the rise waits one interval
		now = now.Add(time.Second)
		src.readings["/a"] = sample.Reading{sample.QPS: {Value: 85 + float64(i), OK: true, Instances: 4}}
		got = append(got, m.Evaluate(t.Context())...)
	}
	if len(got) != 1 || !got[0].DryRun || got[0].To != 8 || got[0].Acted {
		t.Fatalf("dry-run records: %+v", got)
	}
}
