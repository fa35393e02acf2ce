package health

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkMonitor1000HTTP runs 1000 tasks, each with an HTTP check every
// 10 ms (far more than one machine can serve, so the Monitor runs flat out)
// against one httptest server on 127.0.0.1, and counts the requests the
// server sees in a fixed window. In the same round, as many goroutines as
// the Monitor runs checks at once do nothing but client.Get against the same
// server for the same window. It reports both rates and their ratio (the
// share of the bare HTTP rate the Monitor keeps, with its timers, semaphore
// and bookkeeping). Each round takes about a second: run it with
// -benchtime=1x for one round.
func BenchmarkMonitor1000HTTP(b *testing.B) {
	const (
		tasks       = 1000
		interval    = 10 * time.Millisecond
		window      = 500 * time.Millisecond
		concurrency = 256 // the Monitor's default
	)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	b.Cleanup(srv.Close)
	port := portOf(b, srv.Listener.Addr())

	var monitorChecks, bareGets int64
	var monitorTime, bareTime time.Duration
	for b.Loop() {
		n, d := benchMonitor(b, &hits, port, tasks, interval, window, concurrency)
		monitorChecks += n
		monitorTime += d
		n, d = benchBare(b, &hits, srv.URL+"/health", window, concurrency)
		bareGets += n
		bareTime += d
	}
	monitorRate := float64(monitorChecks) / monitorTime.Seconds()
	bareRate := float64(bareGets) / bareTime.Seconds()
	b.ReportMetric(monitorRate, "checks/s")
	b.ReportMetric(bareRate, "bare-gets/s")
	b.ReportMetric(monitorRate/bareRate, "monitor/bare")
}

// benchMonitor starts a Monitor with the tasks, waits until every task has
// passed once, then counts the checks served in the window.
func benchMonitor(b *testing.B, hits *atomic.Int64, port, tasks int, interval, window time.Duration, concurrency int) (int64, time.Duration) {
	b.Helper()
	var alive atomic.Int64
	m := NewMonitor(WithConcurrency(concurrency), WithOnChange(func(c Change) {
		if c.Alive {
			alive.Add(1)
		}
	}))
	ctx, cancel := context.WithCancel(b.Context())
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			b.Error(err)
		}
	}()
	for i := range tasks {
		id := fmt.Sprintf("bench.%d", i)
		if err := m.Add(id, id, time.Time{}, []Check{{Port: port, Path: "/health", Interval: interval, Timeout: 5 * time.Second}}); err != nil {
			b.Fatal(err)
		}
	}
	eventually(b, "every task alive", func() bool { return alive.Load() == int64(tasks) })

	before, begin := hits.Load(), time.Now()
	measure(b.Context(), window)
	return hits.Load() - before, time.Since(begin)
}

// benchBare runs workers that loop client.Get; once each has its connection
// (as the Monitor's have after every task passed once), it counts the
// requests served in the window.
func benchBare(b *testing.B, hits *atomic.Int64, url string, window time.Duration, workers int) (int64, time.Duration) {
	b.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		return resp.Body.Close()
	}
	ctx, cancel := context.WithCancel(b.Context())
	var wg, warm sync.WaitGroup
	errc := make(chan error, workers)
	warm.Add(workers)
	for range workers {
		wg.Go(func() {
			err := get()
			warm.Done()
			for err == nil && ctx.Err() == nil {
				err = get()
			}
			if err != nil {
				errc <- err
			}
		})
	}
	warm.Wait()
	before, begin := hits.Load(), time.Now()
	measure(b.Context(), window)
	n, d := hits.Load()-before, time.Since(begin)
	cancel()
	wg.Wait()
	close(errc)
	for err := range errc {
		b.Fatal(err)
	}
	return n, d
}

// measure waits out a measuring window (a measurement, not a
// synchronisation).
func measure(ctx context.Context, window time.Duration) {
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
