package local_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/scout/local"
	"github.com/garrisonhq/garrison/scout/sample"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/process"
	"github.com/garrisonhq/garrison/signalman/task"
)

// echoBin is garrison's example service (echo_requests_total, registers
// itself under MESOS_TASK_ID); plainBin serves HTTP without /metrics.
var echoBin, plainBin string

func TestMain(m *testing.M) {
	var cleanups []func()
	for _, b := range []struct {
		pkg string
		out *string
	}{{"github.com/garrisonhq/garrison/examples/echo", &echoBin}, {"github.com/garrisonhq/garrison/internal/dockertest/testserver", &plainBin}} {
		path, cleanup, err := testbin.Build(b.pkg, false)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		*b.out = path
		cleanups = append(cleanups, cleanup)
	}
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	os.Exit(code)
}

// env is a real etcd and a real process driver, torn down with the test.
type env struct {
	t    *testing.T
	etcd *etcdtest.Server
	cli  *clientv3.Client
	proc *process.Driver
}

func newEnv(t *testing.T) *env {
	t.Helper()
	etcd := etcdtest.New(t)
	proc, err := process.New(filepath.Join(t.TempDir(), "tasks"),
		process.WithCgroupParent(""), process.WithPollInterval(50*time.Millisecond), process.WithDefaultGrace(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		list, err := proc.List(context.Background())
		if err == nil {
			for _, st := range list {
				if !st.State.Terminal() {
					if err := proc.Kill(context.Background(), st.ID, 0); err != nil {
						t.Logf("kill task %s: %v", st.ID, err)
					}
				}
			}
		}
		proc.Close()
	})
	return &env{t: t, etcd: etcd, cli: etcd.Client(t), proc: proc}
}

func freePort(t *testing.T) int { return testport.Take(t, 1)[0] }

// launch starts a task on the process driver.
func (e *env) launch(spec task.Spec) {
	e.t.Helper()
	if _, err := e.proc.Launch(e.t.Context(), spec); err != nil {
		e.t.Fatalf("launch %s: %v", spec.ID, err)
	}
}

// echo starts the example service as task id of app, on a port of its own;
// it registers itself as /service/echo/<id> (no appId). It returns the
// address once the instance is registered, that is serving.
func (e *env) echo(appID, id string) string {
	e.t.Helper()
	port := freePort(e.t)
	e.launch(task.Spec{
		ID: id, AppID: appID, Args: []string{echoBin, "-drain", "0s", "-ttl", "5s"},
		Env:   map[string]string{"GARRISON_ETCD": e.etcd.Endpoints[0], "SERVICE_NAME": "echo"},
		Ports: []task.Port{{Host: port}}, Host: "127.0.0.1", CPUs: 0.5, MemMB: 64,
	})
	e.waitKey(registrar.Key("echo", id))
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func (e *env) waitKey(key string) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := e.cli.Get(e.t.Context(), key)
		if err == nil && len(resp.Kvs) == 1 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s not registered within 20s (err %v)", key, err)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// register puts an instance in the registry as garrison's scheduler does
// for the tasks it starts: metadata appId and taskId.
func (e *env) register(service, appID, taskID, addr string) {
	e.t.Helper()
	reg, err := registrar.Register(e.t.Context(), e.cli, service, taskID,
		registrar.Endpoint{Addr: addr, Metadata: map[string]string{"appId": appID, "taskId": taskID, "registeredBy": "garrison"}},
		registrar.WithTTL(5*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { reg.Close(context.Background()) })
}

// load sends n GET / requests round-robin over addrs, paced at rate per
// second, and bounded by 30s; every request must succeed.
func load(t *testing.T, addrs []string, n int, rate float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := range n {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("load: %d of %d requests sent: %v", i, n, ctx.Err())
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addrs[i%len(addrs)]+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("load request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("load request %d: %s", i, resp.Status)
		}
	}
}

// timedRead is one Read with the times around it.
type timedRead struct {
	start, end time.Time
	out        sample.Readings
}

func read(t *testing.T, src *local.Source, apps ...sample.App) timedRead {
	t.Helper()
	r := timedRead{start: time.Now()}
	out, err := src.Read(t.Context(), sample.Request{Apps: apps, Window: time.Minute, At: r.start})
	r.end = time.Now()
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	for _, a := range apps {
		if _, ok := out[a.ID]; !ok {
			t.Fatalf("Read: no reading for %s", a.ID)
		}
	}
	r.out = out
	return r
}

// between checks that a rate of count events between two Reads lies within
// what the Reads' start and end times allow, with 5% slack.
func between(t *testing.T, what string, got float64, count int, first, second timedRead) {
	t.Helper()
	lo := float64(count) / second.end.Sub(first.start).Seconds() * 0.95
	hi := float64(count) / second.start.Sub(first.end).Seconds() * 1.05
	if got < lo || got > hi {
		t.Errorf("%s = %.2f/s, want %d requests over the window: within [%.2f, %.2f]", what, got, count, lo, hi)
	} else {
		t.Logf("%s = %.2f/s (bounds [%.2f, %.2f])", what, got, lo, hi)
	}
}

func TestQPSFromInstancesMetrics(t *testing.T) {
	e := newEnv(t)
	// /ktv/web: two echo tasks, registered by "garrison" (appId) and by
	// themselves (the same address twice: one instance each), plus a
	// registered instance that does not answer.
	web1 := e.echo("/ktv/web", "ktv_web.1")
	web2 := e.echo("/ktv/web", "ktv_web.2")
	e.register("ktv_web", "/ktv/web", "ktv_web.1", web1)
	e.register("ktv_web", "/ktv/web", "ktv_web.2", web2)
	e.register("ktv_web", "/ktv/web", "ktv_web.dead", net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))))
	// /ktv/self: registered only by itself, found by its task id.
	self := e.echo("/ktv/self", "ktv_self.1")
	// /ktv/plain: answers HTTP but has no /metrics.
	plainPort := freePort(t)
	e.launch(task.Spec{ID: "ktv_plain.1", AppID: "/ktv/plain", Args: []string{plainBin},
		Ports: []task.Port{{Host: plainPort}}, Host: "127.0.0.1", CPUs: 0.5, MemMB: 64})
	plain := net.JoinHostPort("127.0.0.1", strconv.Itoa(plainPort))
	e.register("ktv_plain", "/ktv/plain", "ktv_plain.1", plain)
	waitHTTP(t, plain)

	src, err := local.New(local.FromDriver(e.proc), e.cli, local.WithTimeout(500*time.Millisecond),
		local.WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	apps := []sample.App{
		{ID: "/ktv/web", CPUs: 0.5, MemMB: 64, Tasks: []string{"ktv_web.1", "ktv_web.2"}},
		{ID: "/ktv/self", CPUs: 0.5, MemMB: 64, Tasks: []string{"ktv_self.1"}},
		{ID: "/ktv/plain", CPUs: 0.5, MemMB: 64, Tasks: []string{"ktv_plain.1"}},
	}

	first := read(t, src, apps...)
	for _, a := range apps {
		if v := first.out[a.ID][sample.QPS]; v.OK || v.Instances != 0 {
			t.Errorf("first cycle %s QPS = %+v, want no data (no rate yet)", a.ID, v)
		}
		if v := first.out[a.ID][sample.CPU]; v.OK || v.Instances != 0 {
			t.Errorf("first cycle %s CPU = %+v, want no data (no rate yet)", a.ID, v)
		}
	}

	// The window: 300 requests at 300/s, 100 to each echo instance.
	load(t, []string{web1, web2, self}, 300, 300)
	second := read(t, src, apps...)

	web := second.out["/ktv/web"][sample.QPS]
	if !web.OK || web.Instances != 2 {
		t.Fatalf("/ktv/web QPS = %+v, want data from 2 instances (the dead one left out)", web)
	}
	between(t, "/ktv/web QPS", web.Value, 200, first, second)
	s := second.out["/ktv/self"][sample.QPS]
	if !s.OK || s.Instances != 1 {
		t.Fatalf("/ktv/self QPS = %+v, want data from its 1 instance", s)
	}
	between(t, "/ktv/self QPS", s.Value, 100, first, second)
	if p := second.out["/ktv/plain"][sample.QPS]; p.OK || p.Instances != 0 {
		t.Errorf("/ktv/plain QPS = %+v, want no data (no /metrics)", p)
	}
	// The same tasks have CPU and memory from the process driver.
	for _, a := range apps {
		r := second.out[a.ID]
		if c := r[sample.CPU]; !c.OK || c.Instances != len(a.Tasks) || c.Value < 0 {
			t.Errorf("%s CPU = %+v, want data from %d tasks", a.ID, c, len(a.Tasks))
		}
		if m := r[sample.Mem]; !m.OK || m.Instances != len(a.Tasks) || m.Value <= 0 || m.Value >= 1 {
			t.Errorf("%s Mem = %+v, want a fraction in (0,1) from %d tasks", a.ID, m, len(a.Tasks))
		}
	}

	// An idle window: the rate falls to zero, still from both instances.
	third := read(t, src, apps...)
	if v := third.out["/ktv/web"][sample.QPS]; !v.OK || v.Instances != 2 || v.Value > 5 {
		t.Errorf("idle /ktv/web QPS = %+v, want ≈0 from 2 instances", v)
	}
}

func waitHTTP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not serving within 20s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

func TestCPUAndMemoryFromProcessStats(t *testing.T) {
	e := newEnv(t)
	e.launch(task.Spec{ID: "busy.1", AppID: "/busy", Cmd: "while :; do :; done", CPUs: 1, MemMB: 64})
	e.launch(task.Spec{ID: "idle.1", AppID: "/idle", Cmd: "exec sleep 600", CPUs: 1, MemMB: 64})
	src, err := local.New(local.FromDriver(e.proc), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	apps := []sample.App{
		{ID: "/busy", CPUs: 1, MemMB: 64, Tasks: []string{"busy.1"}},
		{ID: "/idle", CPUs: 1, MemMB: 64, Tasks: []string{"idle.1"}},
		{ID: "/gone", CPUs: 1, MemMB: 64, Tasks: []string{"no.such.task"}},
	}
	first := read(t, src, apps...)
	for _, a := range apps[:2] {
		r := first.out[a.ID]
		if c := r[sample.CPU]; c.OK || c.Instances != 0 {
			t.Errorf("first cycle %s CPU = %+v, want no data (no rate yet)", a.ID, c)
		}
		if m := r[sample.Mem]; !m.OK || m.Instances != 1 {
			t.Errorf("first cycle %s Mem = %+v, want a level from the first sight", a.ID, m)
		}
		if q := r[sample.QPS]; q.OK {
			t.Errorf("%s QPS = %+v without a registry, want no data", a.ID, q)
		}
	}

	<-time.After(700 * time.Millisecond) // the measured window
	second := read(t, src, apps...)

	busy, idle := second.out["/busy"], second.out["/idle"]
	// A spinning process gets a whole CPU on an idle machine and much less
	// on a busy one (0.17 was seen at load 20 on 2 cores), so the lower
	// bound only catches a unit error, and busy must beat idle.
	if c := busy[sample.CPU]; !c.OK || c.Instances != 1 || c.Value < 0.01 || c.Value > 1.2 || c.Value <= idle[sample.CPU].Value {
		t.Errorf("/busy CPU = %+v (idle %+v), want a spinning process's fraction of 1 cpu (0.01..1.2), above the idle one's", c, idle[sample.CPU])
	} else {
		t.Logf("/busy CPU = %.3f", c.Value)
	}
	if c := idle[sample.CPU]; !c.OK || c.Instances != 1 || c.Value > 0.05 {
		t.Errorf("/idle CPU = %+v, want ≈0", c)
	}
	for id, r := range map[string]sample.Reading{"/busy": busy, "/idle": idle} {
		if m := r[sample.Mem]; !m.OK || m.Value <= 0 || m.Value > 0.5 {
			t.Errorf("%s Mem = %+v, want a small fraction of 64 MiB", id, m)
		}
	}
	gone := second.out["/gone"]
	for _, m := range sample.Metrics {
		if v := gone[m]; v.OK || v.Instances != 0 {
			t.Errorf("/gone %s = %+v, want no data (the task has no stats)", m, v)
		}
	}

	// A task that ends is left out of the next cycle.
	if err := e.proc.Kill(t.Context(), "busy.1", 0); err != nil {
		t.Fatal(err)
	}
	third := read(t, src, apps...)
	if c := third.out["/busy"][sample.CPU]; c.OK || c.Instances != 0 {
		t.Errorf("/busy CPU after kill = %+v, want no data", c)
	}
}

// exposition is a /metrics answer the test controls.
type exposition struct {
	mu   sync.Mutex
	body string
}

func (x *exposition) set(format string, args ...any) {
	x.mu.Lock()
	x.body = fmt.Sprintf(format, args...)
	x.mu.Unlock()
}

func (x *exposition) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	io.WriteString(w, x.body)
}

const textFormat = `# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",method="get"} %d
http_requests_total{code="500",method="get"} %d
# TYPE api_requests_total untyped
api_requests_total %d
# TYPE inflight_requests_total gauge
inflight_requests_total 1e6
# TYPE promhttp_metric_handler_requests_total counter
promhttp_metric_handler_requests_total{code="200"} %d
# TYPE custom_hits counter
custom_hits %d
`

// TestCountersAndRates checks which series count and the rate arithmetic,
// with an injected clock against a real HTTP /metrics on 127.0.0.1.
func TestCountersAndRates(t *testing.T) {
	etcd := etcdtest.New(t)
	cli := etcd.Client(t)
	x := &exposition{}
	srv := httptest.NewServer(x)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	for _, app := range []string{"/a", "/b"} {
		reg, err := registrar.Register(t.Context(), cli, app[1:], app[1:]+".1",
			registrar.Endpoint{Addr: addr, Metadata: map[string]string{"appId": app, "taskId": app[1:] + ".1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close(context.Background())
	}
	var now atomic.Pointer[time.Time]
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	setNow := func(d time.Duration) { ts := t0.Add(d); now.Store(&ts) }
	setNow(0)
	src, err := local.New(nil, cli, local.WithClock(func() time.Time { return *now.Load() }))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	apps := []sample.App{
		{ID: "/a"},
		{ID: "/b", Query: map[sample.Metric]string{sample.QPS: "custom_hits"}},
	}
	steps := []struct {
		name               string
		at                 time.Duration
		ok200, err500, api int
		scrapes, custom    int
		wantA, wantB       float64
		ok                 bool
	}{
		{name: "first sight", at: 0, ok200: 100, err500: 10, api: 5, scrapes: 1, custom: 7},
		// a: (150-100)+(20-10)+(15-5) = 70 over 2s; b: 20 over 2s.
		{name: "rate", at: 2 * time.Second, ok200: 150, err500: 20, api: 15, scrapes: 1000, custom: 27, wantA: 35, wantB: 10, ok: true},
		// The process restarted: counters begin again; the new value is the delta.
		{name: "reset", at: 4 * time.Second, ok200: 8, err500: 0, api: 0, scrapes: 0, custom: 4, wantA: 4, wantB: 2, ok: true},
	}
	for _, st := range steps {
		x.set(textFormat, st.ok200, st.err500, st.api, st.scrapes, st.custom)
		setNow(st.at)
		out, err := src.Read(t.Context(), sample.Request{Apps: apps})
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		a, b := out["/a"][sample.QPS], out["/b"][sample.QPS]
		if a.OK != st.ok || b.OK != st.ok || a.Value != st.wantA || b.Value != st.wantB {
			t.Errorf("%s: /a %+v /b %+v, want %v/%v ok=%v", st.name, a, b, st.wantA, st.wantB, st.ok)
		}
		if m := out["/a"][sample.CPU]; m.OK {
			t.Errorf("%s: CPU %+v without stats, want no data", st.name, m)
		}
	}

	// Once the app has shown its counter, an exposition without it is an
	// instance that served nothing (a CounterVec before its first request).
	x.set("# TYPE other_total counter\nother_total 5\n")
	setNow(6 * time.Second)
	out, err := src.Read(t.Context(), sample.Request{Apps: apps[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if v := out["/a"][sample.QPS]; !v.OK || v.Instances != 1 || v.Value != 0 {
		t.Errorf("counter gone: %+v, want 0 from 1 instance", v)
	}
	// An app that never showed a matching counter has no QPS data, however
	// often it is read: a pattern matching nothing is not an idle app.
	for i := range 3 {
		setNow(time.Duration(8+i) * time.Second)
		out, err := src.Read(t.Context(), sample.Request{Apps: []sample.App{{ID: "/a", Query: map[sample.Metric]string{sample.QPS: "nothing_total"}}, {ID: "/z"}}})
		if err != nil {
			t.Fatal(err)
		}
		if v := out["/a"][sample.QPS]; v.OK || v.Instances != 0 {
			t.Errorf("read %d: pattern matching nothing: %+v, want no data", i, v)
		}
		if v := out["/z"][sample.QPS]; v.OK {
			t.Errorf("read %d: app without instances: %+v, want no data", i, v)
		}
	}

	if _, err := local.New(nil, cli, local.WithCounterPattern("(")); err == nil {
		t.Error("New accepted an invalid counter pattern")
	}
}

// Issue 11: the default pattern missed a service's plain requests_total,
// and 40 req/s gave no decision and no sign.
func TestDefaultPatternCountsPlainRequestsTotal(t *testing.T) {
	etcd := etcdtest.New(t)
	cli := etcd.Client(t)
	x := &exposition{}
	srv := httptest.NewServer(x)
	defer srv.Close()
	reg, err := registrar.Register(t.Context(), cli, "p", "p.1",
		registrar.Endpoint{Addr: srv.Listener.Addr().String(), Metadata: map[string]string{"appId": "/p", "taskId": "p.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	var now atomic.Pointer[time.Time]
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now.Store(&t0)
	src, err := local.New(nil, cli, local.WithClock(func() time.Time { return *now.Load() }))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const body = "# TYPE requests_total counter\nrequests_total %d\n# TYPE http_requests_total counter\nhttp_requests_total %d\n# TYPE myapp_requests_total counter\nmyapp_requests_total %d\n# TYPE promhttp_metric_handler_requests_total counter\npromhttp_metric_handler_requests_total %d\n"
	x.set(body, 10, 0, 0, 0)
	if _, err := src.Read(t.Context(), sample.Request{Apps: []sample.App{{ID: "/p"}}}); err != nil {
		t.Fatal(err)
	}
	x.set(body, 30, 20, 40, 1000)
	t1 := t0.Add(2 * time.Second)
	now.Store(&t1)
	out, err := src.Read(t.Context(), sample.Request{Apps: []sample.App{{ID: "/p"}}})
	if err != nil {
		t.Fatal(err)
	}
	// (20 + 20 + 40) requests over 2 s; the scrapes' counter is not load.
	if v := out["/p"][sample.QPS]; !v.OK || v.Value != 40 {
		t.Fatalf("qps %+v, want 40 from requests_total, http_requests_total and myapp_requests_total", v)
	}
}

// Both drivers' Stats methods fit the source without scout importing
// signalman outside tests.
func TestFromDriverFitsBothDrivers(t *testing.T) {
	var readers []local.StatsReader
	readers = append(readers, local.FromDriver((*process.Driver)(nil)), local.FromDriver((*docker.Driver)(nil)))
	if len(readers) != 2 {
		t.Fatal("adapters missing")
	}
}

// A rule on QPS alone costs no task stats: with an evaluation every second
// they would be a Docker stats call per task per second for nothing.
func TestNoStatsForARuleWithoutCPUOrMemory(t *testing.T) {
	var calls atomic.Int64
	stats := local.StatsFunc(func(context.Context, string) (local.Usage, error) {
		calls.Add(1)
		return local.Usage{CPUSeconds: 1, MemBytes: 1 << 20}, nil
	})
	src, err := local.New(stats, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	app := sample.App{ID: "/q", CPUs: 1, MemMB: 32, Tasks: []string{"q.1", "q.2"}, Metrics: []sample.Metric{sample.QPS}}
	if _, err := src.Read(t.Context(), sample.Request{Apps: []sample.App{app}}); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d stats reads for a QPS-only rule", n)
	}
	app.Metrics = append(app.Metrics, sample.Mem)
	out, err := src.Read(t.Context(), sample.Request{Apps: []sample.App{app}})
	if err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 || !out["/q"][sample.Mem].OK {
		t.Fatalf("%d stats reads, mem %+v, with memory in the rule", n, out["/q"][sample.Mem])
	}
}
