package scheduler_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/scheduler"
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
