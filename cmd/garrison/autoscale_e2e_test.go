package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/loadgen"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/promtest"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/discovery"
)

// autoscaleStack is a garrison up with the autoscaler on a short interval
// and one app of the example echo service.
type autoscaleStack struct {
	t     *testing.T
	base  string
	etcd  string
	app   string
	rules string
}

func startAutoscaleStack(t *testing.T, extraArgs ...string) *autoscaleStack {
	return startAutoscaleStackAt(t, freeAddrs(t, 2), extraArgs...)
}

// startAutoscaleStackAt starts on given addresses (API, etcd), for a
// Prometheus that must know garrison's address before garrison starts.
func startAutoscaleStackAt(t *testing.T, addrs []string, extraArgs ...string) *autoscaleStack {
	echo, cleanup, err := testbin.Build("github.com/garrisonhq/garrison/examples/echo", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return startAutoscaleStackWith(t, addrs, map[string]any{"cmd": echo + " -register=false"}, extraArgs...)
}

// startAutoscaleStackWith runs the echo app as given by how: a "cmd"
// (process driver) or a "container" with "args" (Docker).
func startAutoscaleStackWith(t *testing.T, addrs []string, how map[string]any, extraArgs ...string) *autoscaleStack {
	// An app id of its own: other worktrees' suites share the Docker daemon,
	// and removeAppContainers removes every container of an app id.
	s := &autoscaleStack{t: t, base: "http://" + addrs[0], etcd: "http://" + addrs[1], app: fmt.Sprintf("/e2e/auto-%d", os.Getpid()),
		rules: filepath.Join(t.TempDir(), "rules.yaml")}
	s.writeRules("rules: []\n")
	args := append([]string{"up", "--addr", addrs[0], "--etcd-listen", s.etcd, "--data-dir", t.TempDir(),
		"--task-ports", "19000-19199", "--drain-delay", "100ms", "--autoscale-interval", "500ms", "--rules", s.rules}, extraArgs...)
	startGarrison(t, args...)
	waitHTTP(t, s.base+"/ping", 30*time.Second)
	def := map[string]any{
		"id": s.app, "instances": 1, "cpus": 0.01, "mem": 32,
		"healthChecks": []map[string]any{{"protocol": "HTTP", "path": "/health", "intervalSeconds": 2, "timeoutSeconds": 1, "gracePeriodSeconds": 10}},
	}
	for k, v := range how {
		def[k] = v
	}
	code, _, body := marathonCall(t, "POST", s.base+"/v2/apps", def)
	if code != http.StatusCreated {
		t.Fatalf("POST app: %d %s", code, body)
	}
	s.waitInstances(1, 30*time.Second)
	return s
}

func (s *autoscaleStack) writeRules(doc string) {
	if err := os.WriteFile(s.rules, []byte(doc), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// putRules replaces the rules through the API.
func (s *autoscaleStack) putRules(doc string) {
	s.t.Helper()
	req, _ := http.NewRequest("PUT", s.base+"/api/v1/rules", strings.NewReader(doc))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("PUT /api/v1/rules: %d %s", resp.StatusCode, body)
	}
}

// instances is the app's desired count and its healthy tasks.
func (s *autoscaleStack) instances() (int, int) {
	st, ok := getApp(s.t, s.base, s.app)
	if !ok {
		return -1, -1
	}
	return st.App.Instances, st.App.TasksHealthy
}

func (s *autoscaleStack) waitInstances(n int, within time.Duration) {
	s.t.Helper()
	poll.Until(s.t, within, fmt.Sprintf("%d healthy instances", n), func() (bool, string) {
		want, healthy := s.instances()
		return want == n && healthy == n && deploymentCount(s.t, s.base) == 0, fmt.Sprintf("instances %d, healthy %d", want, healthy)
	})
}

// evaluations counts the autoscaler's evaluations so far, from /metrics.
func (s *autoscaleStack) evaluations() int {
	s.t.Helper()
	body := waitHTTP(s.t, s.base+"/metrics", 5*time.Second)
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, `garrison_autoscale_evaluation_seconds_count{phase="decide"} `); ok {
			var n int
			fmt.Sscan(rest, &n)
			return n
		}
	}
	return 0
}

// waitEvaluations waits for n more evaluations of the autoscaler.
func (s *autoscaleStack) waitEvaluations(n int, within time.Duration) {
	s.t.Helper()
	first := s.evaluations()
	poll.Until(s.t, within, fmt.Sprintf("%d evaluations", n), func() (bool, string) {
		got := s.evaluations()
		return got >= first+n, fmt.Sprint(got - first)
	})
}

// waitDecision waits for a recorded decision that matches.
func (s *autoscaleStack) waitDecision(what string, within time.Duration, match func(autoscale.Record) bool) autoscale.Record {
	s.t.Helper()
	var found autoscale.Record
	poll.Until(s.t, within, what, func() (bool, string) {
		for _, d := range s.decisions() {
			if match(d) {
				found = d
				return true, ""
			}
		}
		return false, ""
	})
	return found
}

func isDryRun(d autoscale.Record) bool { return d.DryRun && d.To > d.From && !d.Acted }

func (s *autoscaleStack) decisions() []autoscale.Record {
	s.t.Helper()
	code, _, body := marathonCall(s.t, "GET", s.base+"/api/v1/decisions?app="+s.app, nil)
	var out struct{ Decisions []autoscale.Record }
	if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
		s.t.Fatalf("GET /api/v1/decisions: %d %s", code, body)
	}
	return out.Decisions
}

// load sends a steady loopback load to the app's registered instances in
// the background until the returned stop is called (or 2 minutes pass).
func (s *autoscaleStack) load(rate float64) (stop func() loadgen.Result) {
	cli, err := registrar.NewClient([]string{s.etcd})
	if err != nil {
		s.t.Fatal(err)
	}
	svc, err := discovery.New(s.t.Context(), cli, app.ServiceName(s.app))
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var res loadgen.Result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res = loadgen.Run(ctx, loadgen.Config{Rate: rate, Duration: 2 * time.Minute, MaxRequests: int64(rate * 120),
			Target: func() (string, error) {
				inst, err := svc.Pick()
				if err != nil {
					return "", err
				}
				return "http://" + inst.Endpoint.Addr + "/", nil
			}})
	}()
	return func() loadgen.Result {
		cancel()
		wg.Wait()
		svc.Close()
		cli.Close()
		return res
	}
}

// ownTaskPorts is a task port range of this test process's own. Docker
// containers here share the host's network: two garrisons handing out the
// same range (this test run twice at once, or another worktree's suite)
// can each probe a port free and start a task on it, and one's health
// check, registration and Prometheus target then reach the other's task,
// whose requests it counts as its own (a run read 85 req/s of 40).
func ownTaskPorts() string {
	base := 20000 + os.Getpid()%100*40
	return fmt.Sprintf("%d-%d", base, base+39)
}

// traceEvaluations records every evaluation of the app's rule (polled from
// /api/v1/evaluations) until the test ends, and logs them if it failed:
// the readings that led to a wrong count.
func (s *autoscaleStack) traceEvaluations() {
	ctx, cancel := context.WithCancel(context.Background())
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last time.Time
		for ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
			resp, err := http.Get(s.base + "/api/v1/evaluations?app=" + s.app)
			if err != nil {
				continue
			}
			var out struct{ Evaluations []autoscale.Decision }
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if err != nil || len(out.Evaluations) != 1 || !out.Evaluations[0].At.After(last) {
				continue
			}
			d := out.Evaluations[0]
			last = d.At
			q := d.Inputs[0]
			lines = append(lines, fmt.Sprintf("%s qps %.2f over %d, %d ready of %d: %s %d (%s)",
				d.At.Format("15:04:05.000"), q.Value, q.Instances, d.Ready, d.From, d.Action, d.To, d.Why))
		}
	}()
	s.t.Cleanup(func() {
		cancel()
		<-done
		if s.t.Failed() {
			s.t.Logf("evaluations:\n%s", strings.Join(lines, "\n"))
		}
	})
}

// The local source (no Prometheus): one metric alone does not scale; two
// do, in one step; dry-run records without acting; the load gone, the app
// shrinks only after the scale-down window; a cron window raises the floor.
func TestAutoscaleOnOneMachine(t *testing.T) {
	s := startAutoscaleStack(t)
	// Memory is always over 5% of 32 MiB; QPS is not, without load.
	s.writeRules(fmt.Sprintf(`rules:
  - app: %s
    min: 1
    max: 3
    quorum: 2
    window: 2s
    up:   { qps: 10, mem: 0.05 }
    down: { qps: 1 }
`, s.app))
	poll.Until(t, 10*time.Second, "the rules file in force", func() (bool, string) {
		code, _, body := marathonCall(t, "GET", s.base+"/api/v1/rules", nil)
		return code == 200 && strings.Contains(string(body), s.app), string(body)
	})
	// Six evaluations with one metric over.
	s.waitEvaluations(6, 20*time.Second)
	if want, _ := s.instances(); want != 1 {
		t.Fatalf("one metric over its threshold scaled the app to %d", want)
	}
	for _, d := range s.decisions() {
		if d.Action == autoscale.Up {
			t.Fatalf("an up decision with one metric over: %+v", d)
		}
	}

	stopLoad := s.load(60)
	s.waitInstances(3, 60*time.Second)
	up := s.waitDecision("the scale-up recorded with its ready time", 10*time.Second, func(d autoscale.Record) bool {
		return d.Action == autoscale.Up && d.Acted && d.ReadyAt != nil
	})
	t.Logf("scale-up %d -> %d ready %.2fs after the decision: %s", up.From, up.To, up.ReadySeconds, up.Reason)

	// Dry-run: decided and recorded, not done.
	s.putRules(fmt.Sprintf(`rules:
  - app: %s
    min: 1
    max: 6
    window: 2s
    dryRun: true
    up:   { qps: 5, mem: 0.05 }
    down: { qps: 1 }
`, s.app))
	s.waitDecision("a dry-run decision", 20*time.Second, isDryRun)
	if want, _ := s.instances(); want != 3 {
		t.Fatalf("dry-run changed the count to %d", want)
	}

	// Load gone: down one step at a time, each only after the window.
	res := stopLoad()
	stopped := time.Now()
	t.Logf("load: %d requests, %d failed", res.Sent, res.Failed)
	s.putRules(fmt.Sprintf(`rules:
  - app: %s
    min: 1
    max: 3
    window: 2s
    scaleDownAfter: 3s
    cooldown: 1s
    up:   { qps: 10, cpu: 9 }
    down: { qps: 1, cpu: 8 }
`, s.app))
	s.waitInstances(1, 60*time.Second)
	var downs []autoscale.Record
	for _, d := range s.decisions() {
		if d.Action == autoscale.Down && d.Acted {
			downs = append(downs, d)
		}
		if d.Action == autoscale.Down && d.Acted && d.At.Sub(stopped) < 3*time.Second {
			t.Fatalf("scaled down %s after the load stopped, before the 3 s window: %+v", d.At.Sub(stopped), d)
		}
	}
	// The second step waited for the cooldown, not another window: the
	// window it came out of began before the first step (issue 11: each
	// step's instance change started the window over, so a cooldown
	// shorter than scaleDownAfter did nothing).
	slices.SortFunc(downs, func(a, b autoscale.Record) int { return a.At.Compare(b.At) })
	if len(downs) != 2 || downs[1].UnderSince.IsZero() || downs[1].UnderSince.After(downs[0].At) || downs[1].At.Sub(downs[0].At) < time.Second {
		t.Fatalf("scale-downs 3 -> 1: %+v", downs)
	}

	// A cron window raises the floor at once.
	s.putRules(fmt.Sprintf(`rules:
  - app: %s
    min: 1
    max: 3
    up:   { qps: 10, cpu: 9 }
    down: { qps: 1, cpu: 8 }
    schedules:
      - cron: "* * * * *"
        for: 1h
        min: 2
`, s.app))
	s.waitInstances(2, 60*time.Second)
}

// metric reads one sample of garrison's /metrics (the first line starting
// with prefix), -1 when absent.
func (s *autoscaleStack) metric(prefix string) float64 {
	s.t.Helper()
	body := waitHTTP(s.t, s.base+"/metrics", 5*time.Second)
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return -1
}

const echoImage = "garrison-test/echo:e2e"

// The echo app runs in Docker. With Debian's Prometheus scraping garrison's per-task exporter and the
// registered instances (found through garrison's http_sd endpoint): two of
// three metrics over scale the app up, one alone does not; the load gone,
// it scales down only after the window; dry-run records without acting;
// Prometheus stopped, nothing scales down and the source's failures show on
// /metrics; a cron window raises the floor all the same.
func TestAutoscaleWithPrometheus(t *testing.T) {
	addrs := freeAddrs(t, 2)
	prom := promtest.New(t, promtest.Config{Jobs: []promtest.Job{
		{Name: "garrison", Targets: []string{addrs[0]}, HonorLabels: true},
		{Name: "instances", HTTPSD: "http://" + addrs[0] + "/api/v1/prometheus/sd"},
	}})
	cli := dockertest.Client(t)
	dockertest.BuildGoImage(t, cli, echoImage, "github.com/garrisonhq/garrison/examples/echo")
	s := startAutoscaleStackWith(t, addrs, map[string]any{"args": []string{"-register=false"},
		"container": map[string]any{"type": "DOCKER", "docker": map[string]any{"image": echoImage}}}, "--prometheus", prom.URL)
	t.Cleanup(func() { removeAppContainers(cli, s.app) })
	s.putRules(fmt.Sprintf(`rules:
  - app: %s
    min: 1
    max: 3
    window: 5s
    up:   { qps: 10, mem: 0.05 }
`, s.app))
	// Prometheus sees the instance and garrison's exporter.
	prom.WaitTargetsUp(t, 2, 60*time.Second)
	// Six evaluations with one metric over.
	s.waitEvaluations(6, 30*time.Second)
	if want, _ := s.instances(); want != 1 {
		t.Fatalf("memory alone over its threshold scaled the app to %d", want)
	}

	stopLoad := s.load(60)
	s.waitInstances(3, 90*time.Second)
	var up *autoscale.Record
	for _, d := range s.decisions() {
		if d.Action == autoscale.Up && d.Acted {
			up = &d
			break
		}
	}
	if up == nil || up.Inputs[0].Metric != "qps" || !up.Inputs[0].HasData || !up.Inputs[2].HasData {
		t.Fatalf("scale-up decision without Prometheus data: %+v", up)
	}
	t.Logf("scale-up: %s", up.Reason)

	res := stopLoad()
	stopped := time.Now()
	t.Logf("load: %d requests, %d failed", res.Sent, res.Failed)
	// Now QPS and CPU, both near zero, decide; min 2 stops the shrinking
	// where the next phases need it.
	s.putRules(fmt.Sprintf(`rules:
  - app: %s
    min: 2
    max: 3
    window: 5s
    up:   { qps: 10, cpu: 5 }
    down: { qps: 1, cpu: 0.5 }
    scaleDownAfter: 3s
    cooldown: 1s
`, s.app))
	poll.Until(t, 90*time.Second, "one scale-down after the load stopped", func() (bool, string) {
		want, _ := s.instances()
		return want == 2, fmt.Sprint(want)
	})
	for _, d := range s.decisions() {
		if d.Action == autoscale.Down && d.Acted && d.At.Sub(stopped) < 3*time.Second {
			t.Fatalf("scaled down %s after the load stopped, before the 3 s window", d.At.Sub(stopped))
		}
	}

	// Dry-run: decided on Prometheus' data and recorded, not done.
	s.putRules(fmt.Sprintf(`rules:
  - app: %s
    min: 1
    max: 3
    window: 5s
    quorum: 1
    dryRun: true
    up: { mem: 0.05 }
`, s.app))
	s.waitDecision("a dry-run decision", 30*time.Second, isDryRun)
	if want, _ := s.instances(); want != 2 {
		t.Fatalf("dry-run changed the count to %d", want)
	}

	// Prometheus stopped: no data, so no scale-down; the failures show.
	s.putRules(fmt.Sprintf(`rules:
  - app: %s
    min: 1
    max: 3
    window: 5s
    up:   { qps: 10, cpu: 5 }
    down: { qps: 1, cpu: 0.5 }
    scaleDownAfter: 1s
    cooldown: 1s
`, s.app))
	prom.Stop()
	s.waitInstances(2, 30*time.Second)
	s.waitEvaluations(10, 30*time.Second)
	if want, _ := s.instances(); want != 2 {
		t.Fatalf("scaled to %d with Prometheus down", want)
	}
	if errs := s.metric(`garrison_autoscale_source_errors_total{source="prometheus"}`); errs < 10 {
		t.Fatalf("source errors on /metrics: %v, want at least 10", errs)
	}

	// A cron window raises the floor, metrics or not.
	s.putRules(fmt.Sprintf(`rules:
  - app: %s
    min: 1
    max: 3
    up:   { qps: 10, cpu: 5 }
    schedules:
      - cron: "* * * * *"
        for: 1h
        min: 3
`, s.app))
	s.waitInstances(3, 60*time.Second)
}

// Issue 11: the Prometheus source set up as the README said never scaled.
// Set up as the README says now (1 s scrape, 1 s http_sd refresh; promtest
// writes exactly that), with the README's rule shape and default window
// and the default 1 s evaluation: a step to four times one instance's
// up.qps scales up in one step to exactly the needed 4, never above, and
// holds there under the load. irate over one 1 s scrape once read 44.8 of
// 40 req/s (a scrape late by a tenth of a second) and stepped to 5: a
// reading within the tolerance of one instance fewer is now confirmed by
// the next one, sized from the mean of the two. A query that does not
// parse is refused by PUT and POST /api/v1/rules/check, offline.
func TestAutoscaleWithPrometheusAsDocumented(t *testing.T) {
	addrs := freeAddrs(t, 2)
	prom := promtest.New(t, promtest.Config{Interval: time.Second, Jobs: []promtest.Job{
		{Name: "garrison", Targets: []string{addrs[0]}, HonorLabels: true},
		{Name: "services", HTTPSD: "http://" + addrs[0] + "/api/v1/prometheus/sd"},
	}})
	cli := dockertest.Client(t)
	dockertest.BuildGoImage(t, cli, echoImage, "github.com/garrisonhq/garrison/examples/echo")
	// cpus 0.1 as the README's echo: at 0.01 (a Docker CPU quota of 10 ms
	// a second) one throttled instance served 17 of the 40 req/s sent.
	s := startAutoscaleStackWith(t, addrs, map[string]any{"args": []string{"-register=false"}, "cpus": 0.1,
		"container": map[string]any{"type": "DOCKER", "docker": map[string]any{"image": echoImage}}},
		"--prometheus", prom.URL, "--autoscale-interval", "1s", "--task-ports", ownTaskPorts())
	t.Cleanup(func() { removeAppContainers(cli, s.app) })
	for _, path := range []string{"/api/v1/rules/check", "/api/v1/rules"} {
		method := map[bool]string{true: "POST", false: "PUT"}[strings.HasSuffix(path, "check")]
		req, _ := http.NewRequest(method, s.base+path, strings.NewReader("rules:\n  - app: "+s.app+
			"\n    max: 8\n    up: { qps: 10 }\n    queries: { qps: 'sum(irate(x[{{.Window}}])' }\n"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), `"line":5`) ||
			!strings.Contains(string(body), "rules[0].queries.qps") || !strings.Contains(string(body), "unclosed left parenthesis") {
			t.Fatalf("%s %s with a query that does not parse: %d %s", method, path, resp.StatusCode, body)
		}
	}
	s.putRules(fmt.Sprintf(`rules:
  - app: %s
    min: 1
    max: 8
    quorum: 1
    up:   { qps: 10 }
    down: { qps: 3 }
`, s.app))
	prom.WaitTargetsUp(t, 2, 60*time.Second)
	var once sync.Once
	var res loadgen.Result
	s.traceEvaluations()
	stop := s.load(40)
	stopLoad := func() loadgen.Result { once.Do(func() { res = stop() }); return res }
	defer stopLoad()
	step := time.Now()
	poll.Until(t, 90*time.Second, "the needed 4 instances healthy", func() (bool, string) {
		want, healthy := s.instances()
		if want > 4 {
			t.Fatalf("scaled to %d instances, above the needed 4", want)
		}
		return want == 4 && healthy == 4 && deploymentCount(t, s.base) == 0, fmt.Sprintf("instances %d, healthy %d", want, healthy)
	})
	ready := time.Since(step)
	// It holds: ten more evaluations under the same load change nothing.
	s.waitEvaluations(10, 60*time.Second)
	if want, _ := s.instances(); want != 4 {
		t.Fatalf("after settling at the needed 4 the app has %d instances", want)
	}
	ups := 0
	for _, d := range s.decisions() {
		t.Logf("decision %s %d -> %d (acted %v): %s", d.Action, d.From, d.To, d.Acted, d.Reason)
		if d.Action == autoscale.Up && d.Acted {
			ups++
		}
	}
	if ups != 1 {
		t.Fatalf("%d scale-up steps, want one", ups)
	}
	res = stopLoad()
	t.Logf("4 instances healthy %.1fs after the step; load %d requests, %d failed %s", ready.Seconds(), res.Sent, res.Failed, res.FirstError)
}
