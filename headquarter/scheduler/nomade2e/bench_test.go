package nomade2e

import (
	"context"
	"errors"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/garrisonhq/garrison/internal/nomadtest"
	"github.com/garrisonhq/garrison/signalman/nomad"
)

// benchInstances is what the scale benchmark scales to.
const benchInstances = 20

// BenchmarkScaleThroughMarathonAPI scales an app from 1 to benchInstances
// running allocations through garrison's Marathon API (PUT /v2/apps/{id}:
// store write, deployment, Nomad's scale endpoint) and, as the baseline in
// the same run, another app through the Nomad driver directly; both wait
// the same way, on Nomad's job summary. It reports each side's time per
// scale-up and api/driver as the ratio: what garrison adds over Nomad.
//
//	make bench BENCH=ScaleThroughMarathonAPI BENCH_PKGS=./headquarter/scheduler/nomade2e
func BenchmarkScaleThroughMarathonAPI(b *testing.B) {
	s := newStack(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	body := map[string]any{"id": "/bench/api", "cmd": "exec sleep 3600", "instances": 1, "cpus": 0.01, "mem": 10}
	s.expect("POST", "/v2/apps", body, 201, nil)
	apiJob := nomad.JobID("/bench/api")
	waitSummary(ctx, b, s.nomad, apiJob, 1)

	// The baseline app lives in a namespace garrison does not watch.
	c, _ := agent.Namespace(b)
	d, err := nomad.New(c)
	if err != nil {
		b.Fatal(err)
	}
	base := clusterBenchApp()
	if _, err := d.Submit(ctx, base); err != nil {
		b.Fatal(err)
	}
	baseJob := nomad.JobID(base.Task.AppID)
	waitSummary(ctx, b, c, baseJob, 1)

	viaAPI := func(n int) {
		s.expect("PUT", "/v2/apps/bench/api?force=true", map[string]any{"instances": n}, 200, nil)
		waitSummary(ctx, b, s.nomad, apiJob, n)
	}
	direct := func(n int) {
		for {
			err := d.Scale(ctx, base.Task.AppID, n, false)
			if err == nil {
				break
			}
			if !errors.Is(err, nomad.ErrDeploymentActive) {
				b.Fatalf("scale to %d: %v", n, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		waitSummary(ctx, b, c, baseJob, n)
	}
	var tAPI, tDirect time.Duration
	b.ResetTimer()
	for i := range b.N {
		sides := []struct {
			scale func(int)
			total *time.Duration
		}{{viaAPI, &tAPI}, {direct, &tDirect}}
		if i%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, side := range sides {
			start := time.Now()
			side.scale(benchInstances)
			*side.total += time.Since(start)
			b.StopTimer()
			side.scale(1)
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(tAPI.Milliseconds())/float64(b.N), "api-ms/op")
	b.ReportMetric(float64(tDirect.Milliseconds())/float64(b.N), "driver-ms/op")
	b.ReportMetric(float64(tAPI)/float64(tDirect), "api/driver")
}

func clusterBenchApp() nomad.App {
	a := nomad.App{Instances: 1}
	a.Task.AppID, a.Task.Version, a.Task.Cmd = "/bench/direct", "2026-01-01T00:00:00.000Z", "exec sleep 3600"
	a.Task.CPUs, a.Task.MemMB = 0.01, 10
	return a
}

func waitSummary(ctx context.Context, b testing.TB, c *nomadapi.Client, jobID string, n int) {
	if err := nomadtest.WaitRunning(ctx, c, jobID, "app", n); err != nil {
		b.Fatal(err)
	}
}
