package pool_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/ci/executor"
	"github.com/garrisonhq/garrison/ci/internal/citest"
	"github.com/garrisonhq/garrison/ci/pipeline"
	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
)

// Queue and Parallel shape the benchmark's queue: ten test steps queued
// at once, four at a time (four warm runners; four fresh containers).
const (
	Queue    = 10
	Parallel = 4
)

// BenchmarkWarmTestQueue times a queue of ten test steps (the same script
// in the same workspace) through the warm pool (queue in etcd, four
// runners in their containers claiming jobs, the workspace fetched and
// the output sent back over HTTP) next to the same ten steps each in a
// fresh container (the build steps' executor), four at a time too, in
// the same run, and reports their ratio. Each iteration is one queue of
// each; -benchtime=5x is five runs.
func BenchmarkWarmTestQueue(b *testing.B) {
	warmAgainstFresh(b, Parallel, Queue, "queue")
}

// BenchmarkWarmTestStep times one test step on a warm runner in its
// container next to the same step in a fresh container: the cost of a
// step without any queue.
func BenchmarkWarmTestStep(b *testing.B) {
	warmAgainstFresh(b, 1, 1, "step")
}

// warmAgainstFresh runs n steps through a pool of `runners` warm runners,
// then the same n in fresh containers, `runners` at a time too, each
// iteration, and reports both and their ratio as `what`.
func warmAgainstFresh(b *testing.B, runners, n int, what string) {
	etcd := etcdtest.New(b)
	cli := etcd.Client(b)
	d := dockertest.Client(b)
	img := citest.Busybox(b, d)
	poolApp := "/bench/runners-" + what
	runner := citest.RunnerImage(b, d)
	for i := range runners {
		citest.StartContainerRunner(b, d, runner, etcd.Endpoints, poolApp, fmt.Sprintf("r%d", i))
	}
	p := citest.PoolHQ(b, cli, poolApp)
	ex := executor.New(d, dockertest.UniqueName("pool-bench-"))
	ws := b.TempDir()
	step := pipeline.Step{Name: "smoke", Image: img, Commands: []string{"test -d .", "echo ok"}, Timeout: time.Minute}
	ctx := context.Background()
	var warm, fresh time.Duration
	for i := range b.N {
		t0 := time.Now()
		queue(b, n, n, func(j int) (int, error) {
			return p.Run(ctx, pool.Job{ID: fmt.Sprintf("%d.%d", i, j), Script: step.Script(), Timeout: time.Minute}, ws, io.Discard)
		})
		warm += time.Since(t0)
		t0 = time.Now()
		queue(b, n, runners, func(j int) (int, error) {
			return ex.Run(ctx, executor.Spec{RunID: fmt.Sprintf("bench.%d.%d", i, j), Step: step, Workspace: ws}, io.Discard)
		})
		fresh += time.Since(t0)
	}
	report(b, warm, fresh, what)
}

// queue runs n steps, at most par at once, and fails b on any that does
// not pass.
func queue(b *testing.B, n, par int, run func(int) (int, error)) {
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for j := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if code, err := run(j); err != nil || code != 0 {
				errs[j] = fmt.Errorf("step %d: %d %v", j, code, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

func report(b *testing.B, warm, fresh time.Duration, what string) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(warm), "ms/warm-"+what)
	b.ReportMetric(ms(fresh), "ms/container-"+what)
	b.ReportMetric(float64(warm)/float64(fresh), "ratio")
}
