package prometheus

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/garrisonhq/garrison/scout/sample"
)

func TestRenderDefaults(t *testing.T) {
	s, err := New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		metric sample.Metric
		window time.Duration
		value  string
		count  string
	}{
		{"qps 30s", sample.QPS, 30 * time.Second,
			`sum by (app) (irate({__name__=~"(.+_)?requests_total",__name__!~"promhttp_.+",app!=""}[30s]))`,
			`count by (app) (sum by (app, instance) (irate({__name__=~"(.+_)?requests_total",__name__!~"promhttp_.+",app!=""}[30s])))`},
		{"cpu 1m30s", sample.CPU, 90 * time.Second,
			`avg by (app) (irate(garrison_task_cpu_seconds_total[1m30s]) / garrison_task_cpus)`,
			`count by (app) (irate(garrison_task_cpu_seconds_total[1m30s]) / garrison_task_cpus)`},
		{"mem has no window", sample.Mem, time.Minute,
			`avg by (app) (garrison_task_memory_bytes / garrison_task_memory_limit_bytes)`,
			`count by (app) (garrison_task_memory_bytes / garrison_task_memory_limit_bytes)`},
		{"sub-second window", sample.CPU, 1500 * time.Millisecond,
			`avg by (app) (irate(garrison_task_cpu_seconds_total[1s500ms]) / garrison_task_cpus)`,
			`count by (app) (irate(garrison_task_cpu_seconds_total[1s500ms]) / garrison_task_cpus)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := s.queries[tc.metric]
			d := Data{Window: Window(tc.window)}
			if got, err := Render(c.value, d); err != nil || got != tc.value {
				t.Errorf("value: %q, %v\nwant %q", got, err, tc.value)
			}
			if got, err := Render(c.instances, d); err != nil || got != tc.count {
				t.Errorf("instances: %q, %v\nwant %q", got, err, tc.count)
			}
		})
	}
}

func TestNewRejectsBadTemplates(t *testing.T) {
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"unclosed action", Query{Value: `rate(x[{{.Window]`}, "query cpu"},
		{"empty value", Query{}, "query cpu: empty"},
		{"bad instances", Query{Value: "x", Instances: "{{"}, "query cpu instances"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New("http://127.0.0.1:1", WithQuery(sample.CPU, tc.q))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// An unknown field fails at render time, naming the query.
	s, err := New("http://127.0.0.1:1", WithQuery(sample.CPU, Query{Value: `x[{{.Range}}]`}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.plan(sample.Request{Apps: []sample.App{{ID: "/a"}}, Window: time.Second}); err == nil || !strings.Contains(err.Error(), "Range") {
		t.Fatalf("plan with {{.Range}}: %v", err)
	}
}

func TestPlanIsConstantInApps(t *testing.T) {
	s, err := New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	apps := make([]sample.App, 1000)
	for i := range apps {
		apps[i] = sample.App{ID: fmt.Sprintf("/app/%d", i)}
	}
	jobs, err := s.plan(sample.Request{Apps: apps, Window: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 6 {
		t.Fatalf("%d queries for 1000 apps, want 6 (3 metrics, each with its count)", len(jobs))
	}
	for _, j := range jobs {
		if len(j.apps) != 1000 {
			t.Errorf("%s (count %v) serves %d apps, want 1000", j.metric, j.count, len(j.apps))
		}
	}

	// Overrides add one query per distinct rendered text; apps sharing an
	// override that does not name the app share its query.
	apps[0].Query = map[sample.Metric]string{sample.QPS: `sum(rate(foo_total{app="{{.App}}"}[{{.Window}}]))`}
	apps[1].Query = map[sample.Metric]string{sample.QPS: `sum(rate(bar_total[{{.Window}}]))`}
	apps[2].Query = map[sample.Metric]string{sample.QPS: `sum(rate(bar_total[{{.Window}}]))`}
	jobs, err = s.plan(sample.Request{Apps: apps, Window: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, j := range jobs {
		if j.override {
			texts = append(texts, fmt.Sprintf("%s %v", j.text, j.apps))
		}
	}
	want := []string{
		`sum(rate(foo_total{app="/app/0"}[30s])) [/app/0]`,
		`sum(rate(bar_total[30s])) [/app/1 /app/2]`,
	}
	if len(jobs) != 8 || !reflect.DeepEqual(texts, want) {
		t.Fatalf("%d jobs; overrides %q, want 8 jobs and %q", len(jobs), texts, want)
	}

	if _, err := s.plan(sample.Request{Apps: apps, Window: 0}); err == nil {
		t.Error("plan with a zero window: no error")
	}
}

func vec(pairs ...any) model.Vector {
	var v model.Vector
	for i := 0; i < len(pairs); i += 2 {
		m := model.Metric{}
		if app := pairs[i].(string); app != "" {
			m[LabelApp] = model.LabelValue(app)
		}
		v = append(v, &model.Sample{Metric: m, Value: model.SampleValue(pairs[i+1].(float64))})
	}
	return v
}

func TestGrouping(t *testing.T) {
	apps := []sample.App{{ID: "/a"}, {ID: "/b"}, {ID: "/c"}, {ID: "/d"}}
	mk := func(m sample.Metric, count, override bool, apps []string, val model.Value) *job {
		j := &job{metric: m, count: count, override: override, apps: apps}
		if err := j.take(val); err != nil {
			t.Fatal(err)
		}
		return j
	}
	all := []string{"/a", "/b", "/c"}
	jobs := []*job{
		// /b has no QPS series; a stray series of an app nobody asked about is ignored.
		mk(sample.QPS, false, false, all, vec("/a", 12.5, "/c", 0.0, "/zz", 9.0)),
		mk(sample.QPS, true, false, all, vec("/a", 3.0, "/c", 1.0)),
		// /c's cpu is NaN (0/0): no data. A lone unlabelled sample in a
		// grouped query is nobody's.
		mk(sample.CPU, false, false, all, vec("/a", 0.4, "/b", 0.9, "/c", math.NaN())),
		mk(sample.CPU, true, false, all, vec("/a", 3.0, "/b", 2.0, "/c", 1.0)),
		// /b's memory limit was 0: +Inf, no data; a count alone is no reading.
		mk(sample.Mem, false, false, all, vec("/a", 0.25, "/b", math.Inf(1))),
		mk(sample.Mem, true, false, all, vec("/a", 3.0, "/b", 2.0, "/c", 2.0)),
		// /d's own query: an unlabelled scalar result is its.
		mk(sample.QPS, false, true, []string{"/d"}, &model.Scalar{Value: 7}),
		mk(sample.CPU, false, true, []string{"/d"}, vec("", 0.5)),
		mk(sample.Mem, false, false, []string{"/d"}, vec("", 0.5)),
	}
	got := assemble(apps, jobs)
	want := sample.Readings{
		"/a": {sample.QPS: {Value: 12.5, OK: true, Instances: 3}, sample.CPU: {Value: 0.4, OK: true, Instances: 3}, sample.Mem: {Value: 0.25, OK: true, Instances: 3}},
		"/b": {sample.CPU: {Value: 0.9, OK: true, Instances: 2}, sample.Mem: {}},
		"/c": {sample.QPS: {Value: 0, OK: true, Instances: 1}, sample.CPU: {}, sample.Mem: {}},
		"/d": {sample.QPS: {Value: 7, OK: true}, sample.CPU: {Value: 0.5, OK: true}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("readings:\n got %v\nwant %v", got, want)
	}
	for _, app := range []string{"/b", "/c"} {
		for _, m := range sample.Metrics {
			if v := got[app][m]; !v.OK && (v.Value != 0 || v.Instances != 0) {
				t.Errorf("%s %s: no data but %+v", app, m, v)
			}
		}
	}

	if err := (&job{}).take(model.Matrix{}); err == nil {
		t.Error("a range result: no error")
	}
}

// Issue 11: a query that does not parse was accepted and failed every
// evaluation. CheckSyntax parses the rendered query offline.
func TestCheckSyntax(t *testing.T) {
	for _, q := range []string{DefaultQPS, DefaultQPSInstances, DefaultCPU, DefaultCPUInstances, DefaultMem, DefaultMemInstances,
		`sum(irate(http_requests_total{app="{{.App}}"}[{{.Window}}]))`} {
		if err := CheckSyntax(q, "/a/b", 90*time.Second); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
	for q, want := range map[string]string{
		`count(irate(x{app="{{.App}}"}[{{.Window}}])`: "unclosed left parenthesis",
		`sum(rate(x[{{.Window}}])) by`:                "parse error",
		`sum(rate(x[{{.Windo}}]))`:                    "Windo",
		`sum(rate(x[{{.Window}]))`:                    "query",
	} {
		err := CheckSyntax(q, "/a", time.Minute)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", q, err, want)
		}
	}
}
