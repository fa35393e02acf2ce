package scheduler_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/signalman/task"
)

// gatedDriver holds each Launch until released.
type gatedDriver struct {
	scheduler.Driver
	launching chan string
	release   chan struct{}
	returned  chan struct{}
}

func (g *gatedDriver) Launch(ctx context.Context, spec task.Spec) (task.Status, error) {
	g.launching <- spec.ID
	<-g.release
	defer close(g.returned)
	return g.Driver.Launch(ctx, spec)
}

// Create then delete with force while the container is being created: the
// kill waits for the launch, and no container is left running with no app
// and no task (the Docker driver's kill of a container it cannot find yet
// succeeds, so before the fix the task was forgotten and its container
// came up afterwards).
func TestDockerDeleteWhileLaunchingLeavesNoContainer(t *testing.T) {
	g := &gatedDriver{launching: make(chan string, 1), release: make(chan struct{}), returned: make(chan struct{})}
	sched, _, drv := dockerSchedulerWith(t, func(d scheduler.Driver) scheduler.Driver { g.Driver = d; return g }, time.Hour)
	ctx := t.Context()
	if _, err := sched.Deploy(ctx, []scheduler.Change{{App: dockerApp(t, "/brief", 1), Create: true}}, false, "test"); err != nil {
		t.Fatal(err)
	}
	id := <-g.launching
	if _, err := sched.Deploy(ctx, []scheduler.Change{{Delete: "/brief"}}, true, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ti, ok := sched.Task(id)
		if !ok || ti.State == "TASK_KILLING" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the delete was not acted on: %+v", ti)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(g.release)
	<-g.returned
	deadline = time.Now().Add(60 * time.Second)
	for {
		list, err := drv.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		running := slices.ContainsFunc(list, func(st task.Status) bool { return !st.State.Terminal() })
		if !running && len(sched.Tasks("")) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: containers %+v, tasks %+v", list, sched.Tasks(""))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// endedDriver returns from Launch only once the container's end has been
// handed to the scheduler, so its end is reported while the scheduler still
// sees the launch in flight.
type endedDriver struct {
	scheduler.Driver
	mu       sync.Mutex
	launched []string
	ended    map[string]chan struct{} // closed once the end is forwarded
}

func (e *endedDriver) endOf(id string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended[id] == nil {
		e.ended[id] = make(chan struct{})
	}
	return e.ended[id]
}

func (e *endedDriver) Watch(ctx context.Context) (<-chan task.Status, error) {
	in, err := e.Driver.Watch(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan task.Status)
	go func() {
		defer close(out)
		for st := range in {
			select {
			case out <- st:
			case <-ctx.Done():
				return
			}
			if st.State.Terminal() {
				ch := e.endOf(st.ID)
				select {
				case <-ch:
				default:
					close(ch)
				}
			}
		}
	}()
	return out, nil
}

func (e *endedDriver) Launch(ctx context.Context, spec task.Spec) (task.Status, error) {
	e.mu.Lock()
	e.launched = append(e.launched, spec.ID)
	e.mu.Unlock()
	st, err := e.Driver.Launch(ctx, spec)
	if err != nil {
		return st, err
	}
	select {
	case <-e.endOf(spec.ID):
		// Handed over; give the scheduler's loop a moment to apply it
		// before Launch returns. (Only how often the race is forced
		// depends on this pause, never whether the test passes.)
		time.Sleep(200 * time.Millisecond)
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	return st, nil
}

func (e *endedDriver) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.launched)
}

// A container that exits before Launch returns (a bad flag: exit 2) is a
// failed task, replaced with backoff, and never registered.
func TestDockerTaskExitingDuringLaunchIsReplaced(t *testing.T) {
	e := &endedDriver{ended: map[string]chan struct{}{}}
	sched, srv, _ := dockerSchedulerWith(t, func(d scheduler.Driver) scheduler.Driver { e.Driver = d; return e }, time.Hour)
	a := dockerApp(t, "/badflag", 1)
	a.Args = []string{"-no-such-flag"}
	a.HealthChecks = nil // only the container's end can tell
	a.BackoffSeconds = 1
	if _, err := sched.Deploy(t.Context(), []scheduler.Change{{App: a, Create: true}}, false, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for e.count() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the failed container was not replaced: %+v", sched.Tasks("/badflag"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if f := sched.LastFailure("/badflag"); f == nil || f.State != "TASK_FAILED" {
		t.Fatalf("lastTaskFailure %+v", f)
	}
	resp, err := srv.Client(t).Get(t.Context(), registrar.ServicePrefix("badflag"), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("%d registrations of a container that exited at launch (%v)", resp.Count, err)
	}
}
