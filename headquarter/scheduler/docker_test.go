package scheduler_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/registrar/discovery"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/process"
)

const testImage = "garrison-test/testserver:scheduler"

// dockerScheduler runs a scheduler over the real Docker engine.
func dockerScheduler(t *testing.T) (*scheduler.Scheduler, *etcdtest.Server) {
	sched, srv, _ := dockerSchedulerWith(t, nil, 0)
	return sched, srv
}

// dockerSchedulerWith is dockerScheduler with a wrapper around the Docker
// driver (to force a timing) and a resync interval (0: default); it also
// returns the real driver.
func dockerSchedulerWith(t *testing.T, wrap func(scheduler.Driver) scheduler.Driver, resync time.Duration) (*scheduler.Scheduler, *etcdtest.Server, *docker.Driver) {
	cli := dockertest.Client(t)
	dockertest.BuildGoImage(t, cli, testImage, dockertest.TestServerPackage)
	srv := etcdtest.New(t)
	etcd := srv.Client(t)
	// Its own namespace: the scheduler kills containers it does not know,
	// and other tests share the engine.
	drv, err := docker.New(cli, docker.WithNamespace(dockertest.UniqueName("sched-")))
	if err != nil {
		t.Fatal(err)
	}
	proc, err := process.New(filepath.Join(t.TempDir(), "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	var d scheduler.Driver = drv
	if wrap != nil {
		d = wrap(drv)
	}
	sched := scheduler.New(scheduler.Config{Store: store.New(etcd), Docker: d, Process: proc, Registry: etcd, ResyncInterval: resync,
		Events: events.NewBus(), PortRange: [2]int{16000, 16999},
		DrainDelay: 500 * time.Millisecond, Interval: 100 * time.Millisecond, RegistryTTL: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sched.Run(ctx) }()
	t.Cleanup(func() {
		// Delete every app so no container outlives the test.
		for _, a := range sched.Apps() {
			sched.Deploy(context.Background(), []scheduler.Change{{Delete: a.ID}}, true, "cleanup")
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(sched.Tasks("")) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		proc.Close()
	})
	return sched, srv, drv
}

func dockerApp(t *testing.T, id string, instances int) *app.App {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"instances":%d,"cpus":0.1,"mem":32,"args":["-grace","1s"],"taskKillGracePeriodSeconds":5,
		"container":{"type":"DOCKER","docker":{"image":%q}},
		"healthChecks":[{"protocol":"HTTP","path":"/health","gracePeriodSeconds":10,"intervalSeconds":2,"timeoutSeconds":1,"maxConsecutiveFailures":3}]}`,
		id, instances, testImage)
	a, err := app.Parse([]byte(body), app.Environment{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A rolling restart under a steady loopback load loses no request: callers
// pick instances from the registry, a new instance is registered only once
// healthy, and an old one leaves the registry before it is stopped.
func TestDockerRollingRestartUnderLoadLosesNoRequest(t *testing.T) {
	sched, srv := dockerScheduler(t)
	ctx := t.Context()
	if _, err := sched.Deploy(ctx, []scheduler.Change{{App: dockerApp(t, "/shop/cart", 3), Create: true}}, false, "test"); err != nil {
		t.Fatal(err)
	}
	svc, err := discovery.New(ctx, srv.Client(t), "shop_cart")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	deadline := time.Now().Add(60 * time.Second)
	for len(svc.Snapshot().Instances) < 3 || len(sched.Deployments()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("3 instances not registered within 60 s: %+v", sched.Tasks("/shop/cart"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := map[string]bool{}
	for _, ti := range sched.Tasks("/shop/cart") {
		before[ti.ID] = true
	}

	// The load: bounded in time (the restart plus a second) and in count.
	const maxRequests = 200000
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var load sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 4 {
		load.Add(1)
		go func() {
			defer load.Done()
			for sent.Load() < maxRequests {
				select {
				case <-stop:
					return
				default:
				}
				inst, err := svc.Pick()
				if err == nil {
					var resp *http.Response
					resp, err = client.Get("http://" + inst.Endpoint.Addr + "/")
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("%s: status %d", inst.Endpoint.Addr, resp.StatusCode)
						}
					}
				}
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	res, err := sched.Deploy(ctx, []scheduler.Change{{App: dockerApp(t, "/shop/cart", 3), Restart: true}}, false, "test")
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(120 * time.Second)
	for len(sched.Deployments()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("restart %s not finished within 120 s: %+v", res.DeploymentID, sched.Tasks("/shop/cart"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // keep the load on the new instances for a moment
	close(stop)
	load.Wait()

	for _, ti := range sched.Tasks("/shop/cart") {
		if before[ti.ID] {
			t.Fatalf("task %s survived the rolling restart", ti.ID)
		}
	}
	t.Logf("%d requests during the rolling restart, %d failed", sent.Load(), failed.Load())
	if sent.Load() < 100 {
		t.Fatalf("only %d requests sent: the load did not run", sent.Load())
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during the rolling restart; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
}

// A container killed behind garrison's back is replaced after the backoff.
func TestDockerContainerKilledBehindItsBackIsReplaced(t *testing.T) {
	sched, _ := dockerScheduler(t)
	ctx := t.Context()
	if _, err := sched.Deploy(ctx, []scheduler.Change{{App: dockerApp(t, "/victim", 1), Create: true}}, false, "test"); err != nil {
		t.Fatal(err)
	}
	waitRunning := func(not string) scheduler.TaskInfo {
		deadline := time.Now().Add(60 * time.Second)
		for {
			for _, ti := range sched.Tasks("/victim") {
				if ti.State == "TASK_RUNNING" && ti.ID != not && len(ti.HealthCheckResults) > 0 && ti.HealthCheckResults[0].Alive {
					return ti
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no healthy task within 60 s: %+v", sched.Tasks("/victim"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	first := waitRunning("")
	cli := dockertest.Client(t)
	if err := cli.ContainerKill(ctx, docker.ContainerName(first.ID), "KILL"); err != nil {
		t.Fatal(err)
	}
	waitRunning(first.ID)
	if f := sched.LastFailure("/victim"); f == nil || f.TaskID != first.ID {
		t.Fatalf("lastTaskFailure %+v, want the killed task %s", f, first.ID)
	}
	if _, err := cli.ContainerInspect(ctx, docker.ContainerName(first.ID)); err == nil {
		t.Fatalf("the killed container %s was left behind", first.ID)
	}
}
