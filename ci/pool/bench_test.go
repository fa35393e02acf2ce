package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/ci/executor"
	"github.com/garrisonhq/garrison/ci/internal/citest"
	"github.com/garrisonhq/garrison/ci/pipeline"
	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/ci/runnerd"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/registrar"
)

// BenchmarkWarmTestStep times one test step (the same script in the same
// workspace) on a warm runner through the pool (queue in etcd, runner
// found in the registry, HTTP) next to the same step in a fresh container
// (the build steps' executor) in the same run, and reports their ratio.
func BenchmarkWarmTestStep(b *testing.B) {
	cli := etcdtest.New(b).Client(b)
	d := dockertest.Client(b)
	img := citest.Busybox(b, d)
	const poolApp = "/bench/runners"
	srv := httptest.NewServer(runnerd.New(nil).Handler())
	defer srv.Close()
	ep, _ := json.Marshal(registrar.Endpoint{Addr: strings.TrimPrefix(srv.URL, "http://"), Metadata: map[string]string{"appId": poolApp}})
	if _, err := cli.Put(context.Background(), registrar.Key(app.ServiceName(poolApp), "r1"), string(ep)); err != nil {
		b.Fatal(err)
	}
	p := pool.New(cli, poolApp)
	ex := executor.New(d, dockertest.UniqueName("pool-bench-"))
	ws := b.TempDir()
	step := pipeline.Step{Name: "smoke", Image: img, Commands: []string{"test -d .", "echo ok"}, Timeout: time.Minute}
	ctx := context.Background()
	var warm, fresh time.Duration
	for i := range b.N {
		t0 := time.Now()
		code, err := p.Run(ctx, runnerd.Job{ID: fmt.Sprint(i), Script: step.Script(), Dir: ws, Timeout: time.Minute}, io.Discard)
		if err != nil || code != 0 {
			b.Fatalf("warm: %d %v", code, err)
		}
		warm += time.Since(t0)
		t0 = time.Now()
		code, err = ex.Run(ctx, executor.Spec{RunID: fmt.Sprintf("bench.%d", i), Step: step, Workspace: ws}, io.Discard)
		if err != nil || code != 0 {
			b.Fatalf("container: %d %v", code, err)
		}
		fresh += time.Since(t0)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(warm), "ms/warm-step")
	b.ReportMetric(ms(fresh), "ms/container-step")
	b.ReportMetric(float64(warm)/float64(fresh), "ratio")
}
