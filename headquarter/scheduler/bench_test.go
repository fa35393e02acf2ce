package scheduler_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/process"
)

const benchImage = "garrison-test/testserver:bench"

// benchParallel is how many launches run at once on both sides of
// BenchmarkLaunch50Docker: the scheduler's launch concurrency, and as many
// workers over the raw Docker API.
const benchParallel = scheduler.DefaultLaunchConcurrency

// BenchmarkLaunch50Docker: 50 instances of one app through garrison (from
// the deploy call to 50 tasks running, benchParallel launches at a time)
// next to 50 container creates+starts through the Docker API directly by
// benchParallel workers, in the same run.
func BenchmarkLaunch50Docker(b *testing.B) {
	const n = 50
	cli := dockertest.Client(b)
	dockertest.BuildGoImage(b, cli, benchImage, dockertest.TestServerPackage)
	srv := etcdtest.New(b)
	etcd := srv.Client(b)
	drv, err := docker.New(cli, docker.WithNamespace(dockertest.UniqueName("bench-")))
	if err != nil {
		b.Fatal(err)
	}
	proc, err := process.New(filepath.Join(b.TempDir(), "tasks"))
	if err != nil {
		b.Fatal(err)
	}
	defer proc.Close()
	sched := scheduler.New(scheduler.Config{Store: store.New(etcd), Docker: drv, Process: proc,
		PortRange: [2]int{43000, 43999}, DrainDelay: time.Millisecond, Interval: 50 * time.Millisecond,
		LaunchConcurrency: benchParallel})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sched.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var garrisonTotal, rawTotal time.Duration
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("/bench/launch%d", i)
		a, err := app.Parse([]byte(fmt.Sprintf(`{"id":%q,"instances":%d,"cpus":0.01,"mem":16,"container":{"type":"DOCKER","docker":{"image":%q}}}`, id, n, benchImage)), app.Environment{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := sched.Deploy(ctx, []scheduler.Change{{App: a, Create: true}}, false, "bench"); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Minute)
		for runningCount(sched, id) < n {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d running after 5 minutes", runningCount(sched, id), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		garrisonTotal += time.Since(start)
		if _, err := sched.Deploy(ctx, []scheduler.Change{{Delete: id}}, true, "bench"); err != nil {
			b.Fatal(err)
		}
		for len(sched.Tasks(id)) > 0 {
			time.Sleep(20 * time.Millisecond)
		}

		rawTotal += rawLaunch(b, cli, n)
	}
	b.ReportMetric(float64(garrisonTotal.Milliseconds())/float64(b.N), "garrison-ms/50")
	b.ReportMetric(float64(rawTotal.Milliseconds())/float64(b.N), "docker-api-ms/50")
	b.ReportMetric(garrisonTotal.Seconds()/rawTotal.Seconds(), "garrison/docker-api")
}

func runningCount(s *scheduler.Scheduler, appID string) int {
	n := 0
	for _, t := range s.Tasks(appID) {
		if t.State == "TASK_RUNNING" {
			n++
		}
	}
	return n
}

// rawLaunch creates and starts n host-network containers with
// benchParallel workers over the Docker API, the parallelism garrison
// launches with, then removes them.
func rawLaunch(b *testing.B, cli *client.Client, n int) time.Duration {
	ctx := context.Background()
	label := "garrison.bench=" + strconv.FormatInt(time.Now().UnixNano(), 10)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	errs := make(chan error, n)
	start := time.Now()
	var workers sync.WaitGroup
	for range benchParallel {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range next {
				resp, err := cli.ContainerCreate(ctx, &container.Config{Image: benchImage, Env: []string{"PORT0=" + strconv.Itoa(44000+i)},
					Labels: map[string]string{"garrison.bench": label}},
					&container.HostConfig{NetworkMode: "host"}, nil, nil, "")
				if err == nil {
					err = cli.ContainerStart(ctx, resp.ID, container.StartOptions{})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	workers.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		b.Error(err)
	}
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "garrison.bench="+label))})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Add(1)
		go func() { defer wg.Done(); cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}) }()
	}
	wg.Wait()
	return took
}

// BenchmarkHQMemory1000Apps5000Tasks: headquarter's heap with 1,000 apps and
// 5,000 running tasks (tiny processes), next to the size of the same state
// as stored in etcd (JSON), in the same run. etcd runs as its own process
// (Debian's etcd-server), so its heap is not counted as headquarter's.
func BenchmarkHQMemory1000Apps5000Tasks(b *testing.B) {
	const apps, perApp = 1000, 5
	srv := etcdtest.NewExternal(b)
	etcd := srv.Client(b)
	st := store.New(etcd)
	dir := b.TempDir()
	proc, err := process.New(filepath.Join(dir, "tasks"), process.WithPollInterval(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer proc.Close()
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		sched := scheduler.New(scheduler.Config{Store: st, Process: proc, PortRange: [2]int{45000, 55000},
			DrainDelay: time.Millisecond, Interval: 200 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); sched.Run(ctx) }()
		var changes []scheduler.Change
		for i := range apps {
			a, err := app.Parse([]byte(fmt.Sprintf(`{"id":"/mem/app%04d","cmd":"exec sleep 600","instances":%d,"cpus":0.01,"mem":8}`, i, perApp)), app.Environment{})
			if err != nil {
				b.Fatal(err)
			}
			changes = append(changes, scheduler.Change{App: a, Create: true})
		}
		for i := 0; i < len(changes); i += scheduler.MaxChanges {
			if _, err := sched.Deploy(ctx, changes[i:min(i+scheduler.MaxChanges, len(changes))], false, "bench"); err != nil {
				b.Fatal(err)
			}
		}
		deadline := time.Now().Add(15 * time.Minute)
		for len(sched.Deployments()) > 0 {
			if time.Now().After(deadline) {
				b.Fatalf("5,000 tasks not running after 15 minutes: %d", len(sched.Tasks("")))
			}
			time.Sleep(200 * time.Millisecond)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		stored := storedBytes(b, st)
		b.ReportMetric(heap/(1<<20), "heap-MiB")
		b.ReportMetric(heap/float64(apps*perApp), "heap-B/task")
		b.ReportMetric(heap/stored, "heap/stored-json")

		var deletes []scheduler.Change
		for i := range apps {
			deletes = append(deletes, scheduler.Change{Delete: fmt.Sprintf("/mem/app%04d", i)})
		}
		for i := 0; i < len(deletes); i += scheduler.MaxChanges {
			if _, err := sched.Deploy(ctx, deletes[i:min(i+scheduler.MaxChanges, len(deletes))], true, "bench"); err != nil {
				b.Fatal(err)
			}
		}
		for len(sched.Tasks("")) > 0 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		cancel()
		<-done
	}
}

func storedBytes(b *testing.B, st *store.Store) float64 {
	ctx := context.Background()
	total := 0
	apps, err := st.Apps(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range apps {
		total += len(r.Data)
	}
	tasks, err := st.Tasks(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range tasks {
		total += len(r.Data)
	}
	return float64(total)
}
