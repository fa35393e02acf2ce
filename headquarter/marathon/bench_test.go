package marathon_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
)

// BenchmarkListApps1000 measures GET /v2/apps with 1,000 stored apps (no
// tasks: instances 0) over HTTP on 127.0.0.1, next to a trivial gin
// handler serving the same bytes in the same run. Reported: p50 and p99 of
// both, and their ratio.
func BenchmarkListApps1000(b *testing.B) {
	s := newStack(b)
	const apps, batch = 1000, 40 // a batch stays under etcd's 128 ops per transaction
	for i := 0; i < apps; i += batch {
		var changes []scheduler.Change
		for j := i; j < i+batch && j < apps; j++ {
			body := fmt.Sprintf(`{"id":"/bench/g%d/app-%04d","cmd":"sleep 1000","instances":0,"cpus":0.1,"mem":32,
				"labels":{"HAPROXY_GROUP":"external","HAPROXY_0_VHOST":"app-%04d.example.com"},
				"env":{"MODE":"bench"},
				"healthChecks":[{"protocol":"HTTP","path":"/health","intervalSeconds":10,"timeoutSeconds":5}]}`, j%10, j, j)
			a, err := app.Parse([]byte(body), app.Environment{Hostname: "test-host"})
			if err != nil {
				b.Fatal(err)
			}
			changes = append(changes, scheduler.Change{App: a, Create: true})
		}
		if _, err := s.sched.Deploy(b.Context(), changes, false, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, "the create deployments to finish", time.Minute, func() bool { return len(s.sched.Deployments()) == 0 })

	body := s.do("GET", "/v2/apps", nil).expect(b, 200, "GET /v2/apps").body
	base := gin.New()
	base.GET("/v2/apps", func(c *gin.Context) { c.Data(http.StatusOK, "application/json; charset=utf-8", body) })
	baseSrv := httptest.NewServer(base)
	b.Cleanup(baseSrv.Close)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	b.Cleanup(client.CloseIdleConnections)
	get := func(url string) time.Duration {
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || n != int64(len(body)) {
			b.Fatalf("GET %s: %v, status %d, %d bytes (want %d)", url, err, resp.StatusCode, n, len(body))
		}
		return time.Since(start)
	}
	var api, bare []time.Duration
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		api = append(api, get(s.url+"/v2/apps"))
		bare = append(bare, get(baseSrv.URL+"/v2/apps"))
	}
	p := func(ds []time.Duration, q float64) float64 {
		sorted := slices.Clone(ds)
		slices.Sort(sorted)
		return float64(sorted[min(len(sorted)-1, int(q*float64(len(sorted))))].Microseconds()) / 1000
	}
	b.ReportMetric(p(api, 0.50), "p50-ms")
	b.ReportMetric(p(api, 0.99), "p99-ms")
	b.ReportMetric(p(bare, 0.50), "bare-p50-ms")
	b.ReportMetric(p(bare, 0.99), "bare-p99-ms")
	b.ReportMetric(p(api, 0.50)/p(bare, 0.50), "p50-ratio")
	b.ReportMetric(p(api, 0.99)/p(bare, 0.99), "p99-ratio")
	b.ReportMetric(float64(len(body)), "body-bytes")
}
