package nomad_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/garrisonhq/garrison/internal/nomadtest"
	"github.com/garrisonhq/garrison/signalman/nomad"
)

// benchCount is how many allocations the scale benchmark reaches.
const benchCount = 50

// benchTurn counts the scale benchmark's iterations over all its runs.
var benchTurn int

// BenchmarkScale1To50 scales an app from 1 to 50 running allocations
// through the driver, and the same change sent to Nomad's scale endpoint
// directly, in the same run; both wait for the 50 the same way (blocking
// queries on the job summary). It reports each side's time per scale-up
// and driver/direct as the ratio.
//
//	make bench BENCH=Scale1To50 BENCH_PKGS=./signalman/nomad
func BenchmarkScale1To50(b *testing.B) {
	c, _ := agent.Namespace(b)
	d, err := nomad.New(c)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	a := rawApp("/bench/scale", "2026-01-01T00:00:00.000Z", 1)
	a.Task.Args = []string{"/bin/sleep", "3600"}
	a.Task.Ports = nil
	a.Task.MemMB = 10
	a.Task.CPUs = 0.01
	if _, err := d.Submit(ctx, a); err != nil {
		b.Fatal(err)
	}
	id := nomad.JobID(a.Task.AppID)
	waitCount(ctx, b, c, id, 1)

	direct := func(n int) error {
		_, _, err := c.Jobs().Scale(id, "app", &n, "bench", false, nil, (&api.WriteOptions{}).WithContext(ctx))
		return err
	}
	viaDriver := func(n int) error { return d.Scale(ctx, a.Task.AppID, n, false) }

	var tDriver, tDirect time.Duration
	b.ResetTimer()
	type side struct {
		scale func(int) error
		total *time.Duration
	}
	for range b.N {
		sides := []side{{viaDriver, &tDriver}, {direct, &tDirect}}
		// Alternate which side goes first, across iterations and across
		// runs (make bench runs -benchtime 1x -count 5): the machine warms
		// up and cools down.
		if benchTurn++; benchTurn%2 == 0 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, side := range sides {
			start := time.Now()
			scaleRetry(ctx, b, side.scale, benchCount)
			waitCount(ctx, b, c, id, benchCount)
			*side.total += time.Since(start)
			b.StopTimer()
			scaleRetry(ctx, b, direct, 1)
			waitCount(ctx, b, c, id, 1)
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(tDriver.Milliseconds())/float64(b.N), "driver-ms/op")
	b.ReportMetric(float64(tDirect.Milliseconds())/float64(b.N), "direct-ms/op")
	b.ReportMetric(float64(tDriver)/float64(tDirect), "driver/direct")
}

// scaleRetry scales, waiting out the deployment of the previous change.
func scaleRetry(ctx context.Context, b *testing.B, scale func(int) error, n int) {
	for {
		err := scale(n)
		if err == nil {
			return
		}
		if !errors.Is(err, nomad.ErrDeploymentActive) && !isBlocked(err) {
			b.Fatalf("scale to %d: %v", n, err)
		}
		select {
		case <-ctx.Done():
			b.Fatalf("scale to %d: %v", n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func isBlocked(err error) bool {
	var e api.UnexpectedResponseError
	return errors.As(err, &e) && e.StatusCode() == 400
}

func waitCount(ctx context.Context, b *testing.B, c *api.Client, jobID string, n int) {
	if err := nomadtest.WaitRunning(ctx, c, jobID, "app", n); err != nil {
		b.Fatal(err)
	}
}
