package local_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/scout/local"
	"github.com/garrisonhq/garrison/scout/sample"
)

// BenchmarkRead50Instances reads QPS of one app with 50 registered
// instances (real HTTP servers on 127.0.0.1 with a client_golang registry),
// and reports the ratio to 50 bare sequential http.Get /metrics measured in
// the same run.
func BenchmarkRead50Instances(b *testing.B) {
	const n = 50
	etcd := etcdtest.New(b)
	cli := etcd.Client(b)
	addrs := make([]string, n)
	for i := range n {
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total"}, []string{"code", "method"})
		reg.MustRegister(c)
		c.WithLabelValues("200", "get").Add(float64(i * 100))
		c.WithLabelValues("500", "get").Add(float64(i))
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		b.Cleanup(srv.Close)
		addrs[i] = srv.Listener.Addr().String()
		id := fmt.Sprintf("bench.%d", i)
		r, err := registrar.Register(context.Background(), cli, "bench", id,
			registrar.Endpoint{Addr: addrs[i], Metadata: map[string]string{"appId": "/bench", "taskId": id}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { r.Close(context.Background()) })
	}

	// Baseline: 50 plain GETs in a loop, keep-alive, over 20 rounds.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}}
	defer client.CloseIdleConnections()
	get := func() {
		for _, a := range addrs {
			resp, err := client.Get("http://" + a + "/metrics")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	get() // warm the connections
	const rounds = 20
	var baseline time.Duration // measured before and after, for drift
	measure := func() {
		start := time.Now()
		for range rounds {
			get()
		}
		baseline += time.Since(start) / (2 * rounds)
	}
	measure()

	src, err := local.New(nil, cli)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	req := sample.Request{Apps: []sample.App{{ID: "/bench"}}}
	ctx := context.Background()
	if _, err := src.Read(ctx, req); err != nil { // warm, and the first sight
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		out, err := src.Read(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if v := out["/bench"][sample.QPS]; !v.OK || v.Instances != n {
			b.Fatalf("QPS %+v, want data from %d instances", v, n)
		}
	}
	b.StopTimer()
	perRead := b.Elapsed() / time.Duration(b.N)
	measure()
	b.ReportMetric(float64(baseline.Microseconds())/1000, "ms/raw-50-gets")
	b.ReportMetric(float64(perRead)/float64(baseline), "x-raw-50-gets")
}
