package prometheus_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/garrisonhq/garrison/headquarter/promsd"
	"github.com/garrisonhq/garrison/internal/driverstats"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/promtest"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/registrar"
	promsource "github.com/garrisonhq/garrison/scout/prometheus"
	"github.com/garrisonhq/garrison/scout/sample"
	"github.com/garrisonhq/garrison/scout/taskstats"
	"github.com/garrisonhq/garrison/signalman/process"
	"github.com/garrisonhq/garrison/signalman/task"
)

var echoBinary string

// TestMain builds the example service once per test binary.
func TestMain(m *testing.M) {
	testbin.Main(m, "github.com/garrisonhq/garrison/examples/echo", false, &echoBinary)
}

const deadline = 45 * time.Second

// serve serves h on a fresh 127.0.0.1 port, closed with the test.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func hostPort(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// load sends GETs to target at rate per second until n are sent, limit has
// passed or ctx ends; it reports how many were answered 200.
func load(ctx context.Context, target string, rate, n int, limit time.Duration) (ok int, err error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := 0; i < n; i++ {
		select {
		case <-ctx.Done():
			return ok, nil
		case <-tick.C:
		}
		req, rerr := http.NewRequestWithContext(ctx, http.MethodGet, target+"/load?i="+strconv.Itoa(i), nil)
		if rerr != nil {
			return ok, rerr
		}
		resp, rerr := client.Do(req)
		if rerr != nil {
			if ctx.Err() != nil {
				return ok, nil
			}
			return ok, rerr
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			ok++
		}
	}
	return ok, nil
}

// TestReadsWhatPrometheusScrapes runs the whole chain for real: the example
// echo service as a task of signalman's process driver, registered in
// embedded etcd (by itself under another service name, and by "garrison"
// with its app id, as headquarter does); Prometheus discovers it through
// promsd, scrapes it and garrison's taskstats exporter; a bounded load
// drives the echo; the source then reads the load's QPS, and CPU and memory
// fractions, for /echo and no data for /idle, which has no tasks.
func TestReadsWhatPrometheusScrapes(t *testing.T) {
	ctx := t.Context()
	etcd := etcdtest.New(t)
	cli := etcd.Client(t)

	port := testport.Take(t, 1)[0]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	driver, err := process.New(t.TempDir(), process.WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := driver.Kill(kctx, "echo.t1", time.Second); err != nil {
			t.Errorf("kill echo: %v", err)
		}
		driver.Close()
	})
	spec := task.Spec{
		ID: "echo.t1", AppID: "/echo", Args: []string{echoBinary}, Host: "127.0.0.1",
		Ports: []task.Port{{Host: port}}, CPUs: 0.5, MemMB: 64,
		Env: map[string]string{"GARRISON_ETCD": etcd.Endpoints[0], "SERVICE_NAME": "echo-self"},
	}
	if _, err := driver.Launch(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// What headquarter does once the task is healthy.
	reg, err := registrar.Register(ctx, cli, "echo", spec.ID, registrar.Endpoint{Addr: addr,
		Metadata: map[string]string{"appId": spec.AppID, "taskId": spec.ID, "registeredBy": "garrison"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(context.Background()) })

	limits := func(app string) (float64, float64, bool) {
		switch app {
		case "/echo":
			return 0.5, 64, true
		case "/idle":
			return 1, 128, true
		}
		return 0, 0, false
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(taskstats.New(limits, []taskstats.Tasks{driverstats.Adapt[process.Usage](driver)}))
	exporter := serve(t, promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	sd := serve(t, promsd.New(cli))

	prom := promtest.New(t, promtest.Config{Jobs: []promtest.Job{
		{Name: "services", HTTPSD: sd.URL},
		{Name: "garrison", Targets: []string{hostPort(t, exporter.URL)}, HonorLabels: true},
	}})
	// Exactly two targets: the echo is registered twice under one address
	// and promsd hands it over once.
	prom.WaitTargetsUp(t, 2, deadline)

	src, err := promsource.New(prom.URL)
	if err != nil {
		t.Fatal(err)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	const rate = 100
	var wg sync.WaitGroup
	var sent int
	var loadErr error
	start := time.Now()
	wg.Go(func() { sent, loadErr = load(loadCtx, "http://"+addr, rate, 60*rate, 60*time.Second) })
	defer func() { stopLoad(); wg.Wait() }()

	req := sample.Request{Apps: []sample.App{{ID: "/echo", CPUs: 0.5, MemMB: 64}, {ID: "/idle", CPUs: 1, MemMB: 128}}, Window: 5 * time.Second}
	var got sample.Readings
	end := time.Now().Add(deadline)
	for {
		got, err = src.Read(ctx, req)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		e := got["/echo"]
		qps, cpu, mem := e[sample.QPS], e[sample.CPU], e[sample.Mem]
		// The window must be full of load before QPS settles at the rate.
		if time.Since(start) > 6*time.Second && qps.OK && qps.Value > 0.8*rate && qps.Value < 1.2*rate && cpu.OK && cpu.Value > 0 && mem.OK {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("no reading of the load within %s: %v (prometheus log: %s)", deadline, got, prom.Log())
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(250 * time.Millisecond): // poll interval
		}
	}
	stopLoad()
	wg.Wait()
	if loadErr != nil {
		t.Fatalf("load: %v", loadErr)
	}
	elapsed := time.Since(start)
	achieved := float64(sent) / elapsed.Seconds()
	t.Logf("load: %d requests answered in %s (%.1f/s); reading %v", sent, elapsed.Round(time.Millisecond), achieved, got)
	// The reading is irate: the last scrape interval's rate, which may run
	// above the whole load's average (a load slowed by a busy machine at
	// first) but never above what the load's pace allows.
	if q := got["/echo"][sample.QPS].Value; q < 0.8*achieved || q > 1.2*float64(rate) {
		t.Errorf("QPS %.1f, want at least 80%% of the %.1f/s the load achieved and at most 120%% of its %d/s pace", q, achieved, rate)
	}

	e := got["/echo"]
	if e[sample.QPS].Instances != 1 {
		t.Errorf("QPS from %d instances, want 1 (the echo once, though registered twice)", e[sample.QPS].Instances)
	}
	if v := e[sample.CPU]; v.Value >= 1 || v.Instances != 1 {
		t.Errorf("cpu %+v: want a fraction of 0.5 cpus below 1, from 1 task", v)
	}
	if v := e[sample.Mem]; v.Value <= 0 || v.Value >= 1 || v.Instances != 1 {
		t.Errorf("mem %+v: want an RSS fraction of 64 MiB in (0,1), from 1 task", v)
	}
	for _, m := range sample.Metrics {
		if v := got["/idle"][m]; v.OK {
			t.Errorf("/idle %s = %+v: an app with no series must have no data", m, v)
		}
	}

	// Prometheus gone: Read fails, naming it, within its timeout.
	prom.Stop()
	began := time.Now()
	_, err = src.Read(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "prometheus at "+prom.URL) {
		t.Fatalf("read with Prometheus stopped: %v, want an error naming prometheus at %s", err, prom.URL)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("failed read took %s", d)
	}
	t.Logf("with Prometheus stopped: %v", err)
}

// A query Prometheus rejects fails the Read with Prometheus's message.
func TestBadQueryIsAnError(t *testing.T) {
	prom := promtest.New(t, promtest.Config{Jobs: []promtest.Job{{Name: "self", Targets: []string{hostPort(t, "http://127.0.0.1:1")}}}})
	src, err := promsource.New(prom.URL, promsource.WithQuery(sample.CPU, promsource.Query{Value: `sum by (app) (rate(x[{{.Window}}])`}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Read(t.Context(), sample.Request{Apps: []sample.App{{ID: "/a"}}, Window: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "cpu query") || !strings.Contains(err.Error(), "parse error") {
		t.Fatalf("err = %v, want Prometheus's parse error for the cpu query", err)
	}
}

// An app's own query that does not parse costs that app its metric, not
// every app its data (issue 11: the error came every evaluation and took
// the source down for all); its instance count query is used.
func TestBadAppQueryFailsThatAppOnly(t *testing.T) {
	prom := promtest.New(t, promtest.Config{Jobs: []promtest.Job{{Name: "self", Targets: []string{hostPort(t, "http://127.0.0.1:1")}}}})
	src, err := promsource.New(prom.URL)
	if err != nil {
		t.Fatal(err)
	}
	apps := []sample.App{
		{ID: "/bad", Query: map[sample.Metric]string{sample.QPS: `sum(rate(x[{{.Window}}])`}},
		{ID: "/good", Query: map[sample.Metric]string{sample.QPS: `vector(42)`}, InstancesQuery: map[sample.Metric]string{sample.QPS: `vector(3)`}},
	}
	got, err := src.Read(t.Context(), sample.Request{Apps: apps, Window: 10 * time.Second})
	if err != nil {
		t.Fatalf("one app's bad query failed the read: %v", err)
	}
	if v := got["/bad"][sample.QPS]; v.OK || !strings.Contains(v.Err, "parse error") {
		t.Fatalf("/bad qps %+v, want no data with Prometheus's parse error", v)
	}
	if v := got["/good"][sample.QPS]; !v.OK || v.Value != 42 || v.Instances != 3 {
		t.Fatalf("/good qps %+v, want 42 from 3 instances", v)
	}
}
