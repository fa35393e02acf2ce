package prometheus

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/garrisonhq/garrison/internal/promtest"
	"github.com/garrisonhq/garrison/scout/sample"
	"github.com/garrisonhq/garrison/scout/taskstats"
)

// synthetic is a scrape target's worth of apps: one task per app, whose
// CPU seconds and request counters grow with the wall clock, so rates are
// steady and every app has all three metrics.
type synthetic struct {
	apps  int
	start time.Time
	reqs  *prom.Desc
}

func (s *synthetic) Running(context.Context) ([]taskstats.Task, error) {
	out := make([]taskstats.Task, s.apps)
	for i := range out {
		out[i] = taskstats.Task{ID: fmt.Sprintf("app%d.t1", i), AppID: fmt.Sprintf("/bench/app%d", i)}
	}
	return out, nil
}

func (s *synthetic) Stats(_ context.Context, id string) (taskstats.Usage, error) {
	var i int
	fmt.Sscanf(id, "app%d.t1", &i)
	el := time.Since(s.start).Seconds()
	return taskstats.Usage{CPUSeconds: el * float64(i%10+1) / 20, MemBytes: uint64(i%100+1) << 20}, nil
}

func (s *synthetic) Describe(ch chan<- *prom.Desc) { ch <- s.reqs }

func (s *synthetic) Collect(ch chan<- prom.Metric) {
	el := time.Since(s.start).Seconds()
	for i := range s.apps {
		app := fmt.Sprintf("/bench/app%d", i)
		ch <- prom.MustNewConstMetric(s.reqs, prom.CounterValue, el*float64(i+1), app, "200")
		ch <- prom.MustNewConstMetric(s.reqs, prom.CounterValue, el, app, "500")
	}
}

// BenchmarkRead1000Apps reads QPS, CPU and memory of 1,000 apps from a real
// Prometheus scraping 1,000 apps' synthetic series (5,000 series), and in
// the same run issues (a) the very queries Read sends, raw through the
// client API with the same parallelism, and (b) the per-app alternative:
// three queries per app, 3,000 in all. It reports ms per cycle of each and
// the ratios read/raw (the source's own overhead) and per-app/read (why
// queries are grouped).
func BenchmarkRead1000Apps(b *testing.B) {
	const apps = 1000
	syn := &synthetic{apps: apps, start: time.Now().Add(-time.Minute),
		reqs: prom.NewDesc("bench_requests_total", "Synthetic requests.", []string{"app", "code"}, nil)}
	limits := func(string) (float64, float64, bool) { return 1, 128, true }
	reg := prom.NewRegistry()
	reg.MustRegister(syn, taskstats.New(limits, []taskstats.Tasks{syn}))
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	b.Cleanup(target.Close)
	server := promtest.New(b, promtest.Config{Jobs: []promtest.Job{
		{Name: "synthetic", Targets: []string{strings.TrimPrefix(target.URL, "http://")}, HonorLabels: true},
	}})

	src, err := New(server.URL, WithTimeout(30*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	req := sample.Request{Window: 10 * time.Second}
	for i := range apps {
		req.Apps = append(req.Apps, sample.App{ID: fmt.Sprintf("/bench/app%d", i), CPUs: 1, MemMB: 128})
	}
	waitAllOK(b, src, req)

	jobs, err := src.plan(req)
	if err != nil {
		b.Fatal(err)
	}
	raw := make([]string, len(jobs))
	for i, j := range jobs {
		raw[i] = j.text
	}
	window := Window(req.Window)
	var perApp []string
	for _, a := range req.Apps {
		perApp = append(perApp,
			fmt.Sprintf(`sum(rate({__name__=~".+_requests_total",app=%q}[%s]))`, a.ID, window),
			fmt.Sprintf(`avg(rate(garrison_task_cpu_seconds_total{app=%q}[%s]) / garrison_task_cpus{app=%q})`, a.ID, window, a.ID),
			fmt.Sprintf(`avg(garrison_task_memory_bytes{app=%q} / garrison_task_memory_limit_bytes{app=%q})`, a.ID, a.ID))
	}

	ctx := b.Context()
	var readTime, rawTime time.Duration
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		if _, err := src.Read(ctx, req); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		issueRaw(b, src, raw)
		readTime += t1.Sub(t0)
		rawTime += time.Since(t1)
		n++
	}
	b.StopTimer()
	const perAppReps = 2
	t0 := time.Now()
	for range perAppReps {
		issueRaw(b, src, perApp)
	}
	perAppTime := time.Since(t0) / perAppReps

	readMs := float64(readTime.Microseconds()) / 1000 / float64(n)
	rawMs := float64(rawTime.Microseconds()) / 1000 / float64(n)
	perAppMs := float64(perAppTime.Microseconds()) / 1000
	b.ReportMetric(readMs, "ms/read")
	b.ReportMetric(rawMs, "ms/raw-same-queries")
	b.ReportMetric(perAppMs, "ms/per-app-queries")
	b.ReportMetric(readMs/rawMs, "read/raw")
	b.ReportMetric(perAppMs/readMs, "per-app/read")
	b.ReportMetric(float64(len(raw)), "queries/read")
	b.ReportMetric(float64(len(perApp)), "queries/per-app-cycle")
}

// issueRaw sends queries through the client API, as many at once as the
// source would, and discards the results.
func issueRaw(b *testing.B, src *Source, queries []string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	at := time.Now()
	sem := make(chan struct{}, src.parallel)
	errs := make(chan error, len(queries))
	var wg sync.WaitGroup
	for _, q := range queries {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, _, err := src.api.Query(ctx, q, at); err != nil {
				errs <- fmt.Errorf("%s: %w", q, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// waitAllOK polls until every app has all three readings.
func waitAllOK(b *testing.B, src *Source, req sample.Request) {
	b.Helper()
	end := time.Now().Add(2 * time.Minute)
	for {
		got, err := src.Read(b.Context(), req)
		missing := 0
		if err == nil {
			for _, a := range req.Apps {
				for _, m := range sample.Metrics {
					if !got[a.ID][m].OK {
						missing++
					}
				}
			}
			if missing == 0 {
				return
			}
		}
		if time.Now().After(end) {
			b.Fatalf("readings not complete within 2m: %d missing, err %v", missing, err)
		}
		select {
		case <-b.Context().Done():
			b.Fatal(b.Context().Err())
		case <-time.After(250 * time.Millisecond): // poll interval
		}
	}
}
