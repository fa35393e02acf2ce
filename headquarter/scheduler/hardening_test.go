package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/signalman/process"
	"github.com/garrisonhq/garrison/signalman/task"
)

// wrapDriver is the real process driver with hooks around its calls, to
// force the timings the scenarios below need.
type wrapDriver struct {
	*process.Driver
	beforeLaunch func(spec task.Spec)
	afterLaunch  func(spec task.Spec, st task.Status, err error)
	beforeKill   func(id string)
	// dropEvents makes Watch deliver nothing: every status is missed.
	dropEvents bool

	mu       sync.Mutex
	launched []string
	inFlight int
	maxInFly int
}

func (w *wrapDriver) Launch(ctx context.Context, spec task.Spec) (task.Status, error) {
	w.mu.Lock()
	w.launched = append(w.launched, spec.ID)
	w.inFlight++
	w.maxInFly = max(w.maxInFly, w.inFlight)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.inFlight--
		w.mu.Unlock()
	}()
	if w.beforeLaunch != nil {
		w.beforeLaunch(spec)
	}
	st, err := w.Driver.Launch(ctx, spec)
	if w.afterLaunch != nil {
		w.afterLaunch(spec, st, err)
	}
	return st, err
}

func (w *wrapDriver) Kill(ctx context.Context, id string, grace time.Duration) error {
	if w.beforeKill != nil {
		w.beforeKill(id)
	}
	return w.Driver.Kill(ctx, id, grace)
}

func (w *wrapDriver) Watch(ctx context.Context) (<-chan task.Status, error) {
	if !w.dropEvents {
		return w.Driver.Watch(ctx)
	}
	ch := make(chan task.Status)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

func (w *wrapDriver) launches() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.launched)
}

// ended waits until the driver reports the task ended.
func ended(t *testing.T, d *process.Driver, id string) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		list, _ := d.List(context.Background())
		for _, st := range list {
			if st.ID == id && st.State.Terminal() {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("task %s did not end", id)
}

func parseApp(t *testing.T, body string) *app.App {
	t.Helper()
	a, err := app.Parse([]byte(body), app.Environment{Hostname: "test-host"})
	if err != nil {
		t.Fatalf("parse app: %v", err)
	}
	return a
}

// A task that exits before Launch returns (cmd "typo": exit 127) is a
// failed task: replaced with backoff, never TASK_RUNNING, never registered,
// and the deployment does not count it.
func TestTaskExitingDuringLaunchIsFailedAndReplaced(t *testing.T) {
	var w *wrapDriver
	h := newHarnessWith(t, func(p *process.Driver) scheduler.Driver {
		w = &wrapDriver{Driver: p}
		// Launch returns only once the process has ended: its end is
		// reported while the scheduler still sees the launch in flight.
		w.afterLaunch = func(spec task.Spec, _ task.Status, err error) {
			if err == nil {
				ended(t, p, spec.ID)
			}
		}
		return w
	}, nil)
	h.deploy([]scheduler.Change{{App: parseApp(t, `{"id":"/typo","cmd":"typo","instances":1,"backoffSeconds":1,
		"portDefinitions":[{"port":0}]}`), Create: true}}, false)
	h.waitFor("the failed task replaced", 30*time.Second, func() bool { return len(w.launches()) >= 2 })
	f := h.sched.LastFailure("/typo")
	if f == nil || f.State != "TASK_FAILED" || !slices.Contains(w.launches(), f.TaskID) {
		t.Fatalf("lastTaskFailure %+v", f)
	}
	// Every task but the latest launch has been seen failed and forgotten
	// (the latest one's end may still be on its way from the driver).
	launched := w.launches()
	for _, id := range launched[:len(launched)-1] {
		if ti, ok := h.sched.Task(id); ok {
			t.Fatalf("a task that exited at launch is still known: %+v", ti)
		}
	}
	if n := h.registered("typo"); n != 0 {
		t.Fatalf("%d registrations of a task that exited at launch", n)
	}
}

// With every driver event lost, the periodic re-list still sees a task that
// died (and replaces it) and a task nobody launched (and kills it).
func TestResyncCorrectsMissedEvents(t *testing.T) {
	var w *wrapDriver
	h := newHarnessWith(t, func(p *process.Driver) scheduler.Driver {
		w = &wrapDriver{Driver: p, dropEvents: true}
		return w
	}, func(c *scheduler.Config) { c.ResyncInterval = 300 * time.Millisecond })
	// No health checks: only the driver can tell that the task died.
	h.deploy([]scheduler.Change{{App: parseApp(t, `{"id":"/missed","cmd":"exec sleep 600","instances":1}`), Create: true}}, false)
	h.waitFor("one task", 20*time.Second, func() bool { return len(h.running("/missed")) == 1 && len(h.sched.Deployments()) == 0 })
	first := h.running("/missed")[0]
	pid, err := h.proc.Pid(first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the dead task replaced", 30*time.Second, func() bool {
		r := h.running("/missed")
		return len(r) == 1 && r[0].ID != first.ID
	})
	if f := h.sched.LastFailure("/missed"); f == nil || f.TaskID != first.ID {
		t.Fatalf("lastTaskFailure %+v", f)
	}

	// A task of no app, started behind the scheduler's back.
	ghost := task.Spec{ID: "ghost.0000", AppID: "/ghost", Cmd: "exec sleep 600"}
	if _, err := h.proc.Launch(t.Context(), ghost); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the unknown task killed", 30*time.Second, func() bool {
		list, _ := h.proc.List(t.Context())
		return !slices.ContainsFunc(list, func(st task.Status) bool { return st.ID == ghost.ID && !st.State.Terminal() })
	})
}

// gatedRegistry holds every lease grant until released, so a task can die
// while garrison is registering it.
type gatedRegistry struct {
	clientv3.KV
	clientv3.Lease
	granting chan struct{} // a grant is waiting
	release  chan struct{}
	once     sync.Once
}

func (g *gatedRegistry) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	g.once.Do(func() { close(g.granting) })
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Lease.Grant(ctx, ttl)
}

// A task that dies while garrison registers it: once forgotten, its
// registration is revoked, not kept alive pointing at a dead port.
func TestTaskDyingWhileRegisteredIsDeregistered(t *testing.T) {
	reg := &gatedRegistry{granting: make(chan struct{}), release: make(chan struct{})}
	h := newHarnessWith(t, nil, func(c *scheduler.Config) {
		reg.KV, reg.Lease = c.Registry, c.Registry
		c.Registry = reg
	})
	h.deploy([]scheduler.Change{{App: webApp(t, "/dying", 1, ""), Create: true}}, false)
	select {
	case <-reg.granting:
	case <-time.After(30 * time.Second):
		t.Fatal("no registration started")
	}
	first := h.running("/dying")[0]
	pid, err := h.proc.Pid(first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the dead task forgotten", 30*time.Second, func() bool {
		_, ok := h.sched.Task(first.ID)
		return !ok
	})
	close(reg.release)
	h.waitFor("only the replacement registered", 30*time.Second, func() bool {
		resp, err := h.cli.Get(t.Context(), registrar.ServicePrefix("dying"), clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		r := h.running("/dying")
		return len(resp.Kvs) == 1 && len(r) == 1 && strings.HasSuffix(string(resp.Kvs[0].Key), r[0].ID)
	})
}

// Create, then delete with force while the task is being launched: the kill
// takes effect once the launch returns, and no process is left running
// with no app and no task.
func TestDeleteWhileLaunchingLeavesNoProcess(t *testing.T) {
	launching := make(chan string, 1)
	release, returned := make(chan struct{}), make(chan struct{})
	h := newHarnessWith(t, func(p *process.Driver) scheduler.Driver {
		return &wrapDriver{Driver: p, beforeLaunch: func(spec task.Spec) {
			launching <- spec.ID
			<-release
		}, afterLaunch: func(task.Spec, task.Status, error) { close(returned) }}
	}, func(c *scheduler.Config) { c.ResyncInterval = time.Hour }) // the kill itself must do it
	h.deploy([]scheduler.Change{{App: parseApp(t, `{"id":"/brief","cmd":"exec sleep 600","instances":1}`), Create: true}}, false)
	id := <-launching
	h.deploy([]scheduler.Change{{Delete: "/brief"}}, true)
	// The delete has been acted on: the launching task is being killed (or,
	// as before the fix, already forgotten).
	h.waitFor("the delete acted on", 20*time.Second, func() bool {
		ti, ok := h.sched.Task(id)
		return !ok || ti.State == "TASK_KILLING"
	})
	close(release)
	<-returned
	h.waitFor("no task and no process left", 30*time.Second, func() bool {
		list, _ := h.proc.List(t.Context())
		running := slices.ContainsFunc(list, func(st task.Status) bool { return !st.State.Terminal() })
		return !running && len(h.sched.Tasks("")) == 0 && len(h.sched.Deployments()) == 0
	})
}

// failKill fails the first kill of each task without killing it.
type failKill struct {
	*process.Driver
	mu     sync.Mutex
	failed map[string]bool
}

func (f *failKill) Kill(ctx context.Context, id string, grace time.Duration) error {
	f.mu.Lock()
	first := !f.failed[id]
	f.failed[id] = true
	f.mu.Unlock()
	if first {
		return errors.New("injected: kill failed")
	}
	return f.Driver.Kill(ctx, id, grace)
}

// A kill that fails leaves the task known while it runs (a forgotten
// process would run with no task, uncounted and never stopped); a later
// pass kills it.
func TestFailedKillDoesNotForgetRunningTask(t *testing.T) {
	h := newHarnessWith(t, func(p *process.Driver) scheduler.Driver {
		return &failKill{Driver: p, failed: map[string]bool{}}
	}, func(c *scheduler.Config) { c.ResyncInterval = time.Hour })
	h.deploy([]scheduler.Change{{App: parseApp(t, `{"id":"/stubborn","cmd":"exec sleep 600","instances":2}`), Create: true}}, false)
	h.waitFor("two tasks", 20*time.Second, func() bool { return len(h.running("/stubborn")) == 2 && len(h.sched.Deployments()) == 0 })
	victim := h.running("/stubborn")[1].ID
	if _, _, err := h.sched.KillTasks(t.Context(), []string{victim}, true, false); err != nil {
		t.Fatal(err)
	}
	// Every process the driver runs is a task the scheduler knows, until
	// the victim is gone for good.
	h.waitFor("the victim killed by a later pass", 30*time.Second, func() bool {
		list, _ := h.proc.List(t.Context())
		for _, st := range list {
			if _, known := h.sched.Task(st.ID); !known && !st.State.Terminal() {
				t.Fatalf("task %s runs but the scheduler forgot it", st.ID)
			}
		}
		_, known := h.sched.Task(victim)
		return !known && len(h.running("/stubborn")) == 1 && len(h.sched.Deployments()) == 0
	})
}

// An app stored with a huge instance count (written before limits
// existed, or by hand) cannot make the scheduler's work or memory grow
// without bound on restart: at most MaxTasks tasks, LaunchConcurrency
// launches at a time.
func TestHugeStoredAppIsBounded(t *testing.T) {
	var w *wrapDriver
	h := newHarnessWith(t, func(p *process.Driver) scheduler.Driver {
		w = &wrapDriver{Driver: p}
		return w
	}, func(c *scheduler.Config) { c.MaxTasks, c.LaunchConcurrency = 6, 2 })
	h.crash()
	huge := parseApp(t, `{"id":"/huge","cmd":"exec sleep 600","instances":1,"backoffSeconds":0}`)
	huge.Instances = math.MaxInt32
	data, err := json.Marshal(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.Commit(t.Context(), store.Change{PutApps: []store.AppWrite{{ID: "/huge", Version: app.FormatVersion(huge.Version), Data: data, Expect: 0}}}); err != nil {
		t.Fatal(err)
	}
	h.start() // a restart over the stored app
	h.waitFor("the most tasks running", 30*time.Second, func() bool { return len(h.running("/huge")) == 6 })
	// A task dies: it is replaced (passes go on), and nothing beyond the
	// limit was launched meanwhile.
	victim := h.running("/huge")[0]
	pid, err := h.proc.Pid(victim.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the replacement", 30*time.Second, func() bool {
		r := h.running("/huge")
		return len(r) == 6 && !slices.ContainsFunc(r, func(ti scheduler.TaskInfo) bool { return ti.ID == victim.ID })
	})
	if n := len(w.launches()); n != 7 {
		t.Fatalf("%d launches for 6 tasks and one replacement", n)
	}
	if n := len(h.sched.Tasks("")); n > 6 {
		t.Fatalf("%d tasks held, limit 6", n)
	}
}
