package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/leadertest"
	"github.com/garrisonhq/garrison/signalman/process"
	"github.com/garrisonhq/garrison/signalman/task"
)

// TestFormerLeaderNeitherLaunchesNorKills runs a scheduler with the store
// view of one leadership term, as garrison hq does, and ends the term
// behind its back (its lease revoked, as etcd expires a paused leader's):
// the scheduler, still running as a resumed process would, neither
// launches (its scale is refused before any task record) nor kills (the
// kill's fence check fails; the task keeps running).
func TestFormerLeaderNeitherLaunchesNorKills(t *testing.T) {
	h := newFencedHarness(t, nil, false)

	h.deploy([]scheduler.Change{{App: webApp(t, "/fenced/web", 2, ""), Create: true}}, false)
	h.waitFor("two running tasks", 30*time.Second, func() bool {
		return len(h.running("/fenced/web")) == 2 && len(h.sched.Deployments()) == 0
	})

	// The term ends behind the scheduler's back.
	h.endTerm()
	h.waitFor("the election key gone", 30*time.Second, func() bool {
		r, err := h.cli.Get(t.Context(), h.fence.Key())
		return err == nil && len(r.Kvs) == 0
	})

	// A kill: refused by the fence check, the task keeps running.
	updates, unsubscribe := h.bus.Subscribe(t.Context(), []string{events.TypeStatusUpdate})
	defer unsubscribe()
	victim := h.running("/fenced/web")[0]
	if _, _, err := h.sched.KillTasks(t.Context(), []string{victim.ID}, false, false); err != nil {
		t.Fatalf("kill: %v", err)
	}
	deadline := time.After(30 * time.Second)
	for refused := false; !refused; {
		select {
		case f := <-updates:
			refused = strings.Contains(string(f.Data), victim.ID) && strings.Contains(string(f.Data), "not the leader")
		case <-deadline:
			t.Fatal("no status update saying the kill was refused")
		}
	}
	if _, err := get(fmt.Sprintf("http://127.0.0.1:%d/health", victim.Ports[0])); err != nil {
		t.Fatalf("the task a former leader was told to kill is gone: %v", err)
	}

	// A scale-up: refused before any task record or launch.
	cur, _ := h.sched.App("/fenced/web")
	up := cur.Clone()
	up.Instances = 4
	if _, err := h.sched.Deploy(t.Context(), []scheduler.Change{{App: up}}, true, "test"); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("scale by a former leader: %v, want ErrNotLeader", err)
	}
	listed, err := h.proc.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 {
		t.Fatalf("the driver has %d tasks after a former leader's kill and scale, want the 2 it had: %+v", len(listed), listed)
	}
	for _, st := range listed {
		if st.State.Terminal() {
			t.Fatalf("task %s ended: %+v", st.ID, st)
		}
	}
	if recs, err := h.store.Tasks(t.Context()); err != nil || len(recs) != 2 {
		t.Fatalf("task records %d (%v), want 2", len(recs), err)
	}
}

// fencedHarness runs the harness's scheduler on a leader's store view, as
// garrison hq does: its writes are fenced by the first term of an elector
// on the harness's etcd and go through kv, which counts task records.
type fencedHarness struct {
	*harness
	fence leader.Fence
	kv    *endTermAfterTaskRecord
}

// newFencedHarness starts it; wrap (nil: none) puts a driver wrapper
// around the process driver, given endTerm; endOnRecord ends the term
// right after the first task record.
func newFencedHarness(t *testing.T, wrap func(p *process.Driver, endTerm func()) scheduler.Driver, endOnRecord bool) *fencedHarness {
	h := &fencedHarness{}
	var fenced *store.Store
	var wrapper func(*process.Driver) scheduler.Driver
	if wrap != nil {
		wrapper = func(p *process.Driver) scheduler.Driver { return wrap(p, h.endTerm) }
	}
	h.harness = newHarnessWith(t, wrapper, func(c *scheduler.Config) {
		if fenced != nil {
			c.Store = fenced
		}
	})
	h.crash() // restarted below on the fenced view
	h.fence = leadertest.Elect(t, h.cli)
	h.kv = &endTermAfterTaskRecord{KV: h.cli.KV, end: h.endTerm}
	h.kv.ended.Store(!endOnRecord)
	fenced = store.New(h.kv).Fenced(h.fence)
	h.start()
	return h
}

// endTerm revokes the term's lease behind the scheduler's back, as etcd
// expires the lease of a leader that stopped renewing it.
func (h *fencedHarness) endTerm() { leadertest.EndTerm(h.cli, h.fence) }

// endTermAfterTaskRecord is etcd as a leader sees it when it is paused
// right after writing a task record: the first transaction that writes one
// ends the term (revokes the election lease) once committed. It counts the
// task-record writes refused afterwards.
type endTermAfterTaskRecord struct {
	clientv3.KV
	end     func()
	ended   atomic.Bool
	refused atomic.Int32
}

func (k *endTermAfterTaskRecord) Txn(ctx context.Context) clientv3.Txn {
	return etcdtest.HookTxn(k.KV.Txn(ctx), func(then []clientv3.Op, commit etcdtest.Commit) (*clientv3.TxnResponse, error) {
		resp, err := commit()
		if err == nil && writesTask(then) {
			if !resp.Succeeded {
				k.refused.Add(1)
			} else if k.ended.CompareAndSwap(false, true) {
				k.end()
			}
		}
		return resp, err
	})
}

func writesTask(ops []clientv3.Op) bool {
	for _, op := range ops {
		if op.IsTxn() {
			_, then, _ := op.Txn()
			if writesTask(then) {
				return true
			}
		}
		if op.IsPut() && strings.HasPrefix(string(op.KeyBytes()), store.Prefix+"tasks/") {
			return true
		}
	}
	return false
}

// TestLeaderPausedAfterTaskRecordDoesNotLaunch: the term ends between the
// task record (written in the term) and the launch; the launch, which etcd
// cannot fence, is not made, and the next attempt's record is refused.
func TestLeaderPausedAfterTaskRecordDoesNotLaunch(t *testing.T) {
	h := newFencedHarness(t, nil, true)
	h.deploy([]scheduler.Change{{App: webApp(t, "/fenced/late", 1, ""), Create: true}}, false)
	h.waitFor("the next launch attempt refused by the fence", 30*time.Second, func() bool { return h.kv.refused.Load() > 0 })
	listed, err := h.proc.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 0 {
		t.Fatalf("a leader whose term ended after the task record launched it: %+v", listed)
	}
}

// launchThenEndTerm starts the task, then ends the term and reports the
// launch failed, as a launch cut short by the end of the term does (its
// context cancelled while Docker had started the container). Its Remove
// is Docker's: forced, a running task is killed.
type launchThenEndTerm struct {
	*process.Driver
	end func()
}

func (d launchThenEndTerm) Remove(ctx context.Context, id string) error {
	if err := d.Driver.Kill(ctx, id, 0); err != nil && !errors.Is(err, process.ErrTaskEnded) {
		return err
	}
	return d.Driver.Remove(ctx, id)
}

func (d launchThenEndTerm) Launch(ctx context.Context, spec task.Spec) (task.Status, error) {
	st, err := d.Driver.Launch(ctx, spec)
	if err != nil {
		return st, err
	}
	d.end()
	return task.Status{ID: spec.ID, State: task.Failed}, context.Canceled
}

// TestLaunchCutShortByTheTermIsLeftToTheNextLeader: a launch that failed
// because the term ended may have started the task; the former leader does
// not remove it (the next leader adopts it). Before, it removed the task a
// new leader had adopted.
func TestLaunchCutShortByTheTermIsLeftToTheNextLeader(t *testing.T) {
	h := newFencedHarness(t, func(p *process.Driver, end func()) scheduler.Driver { return launchThenEndTerm{p, end} }, false)
	h.deploy([]scheduler.Change{{App: webApp(t, "/fenced/cut", 1, ""), Create: true}}, false)
	h.waitFor("the next launch attempt refused by the fence", 30*time.Second, func() bool { return h.kv.refused.Load() > 0 })
	listed, err := h.proc.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].State.Terminal() {
		t.Fatalf("the task a cut-short launch started: %+v, want it running for the next leader", listed)
	}
}

// stopDuringLaunch stops the scheduler while a launch is under way and
// then behaves as the Docker driver does when the context of its start
// call ends: the started task is removed and the launch fails.
type stopDuringLaunch struct {
	*process.Driver
	stop func()
}

func (d stopDuringLaunch) Launch(ctx context.Context, spec task.Spec) (task.Status, error) {
	d.stop()
	st, err := d.Driver.Launch(context.Background(), spec)
	if err != nil || ctx.Err() == nil {
		return st, err
	}
	d.Driver.Kill(context.Background(), spec.ID, 0)
	return task.Status{ID: spec.ID, State: task.Failed}, ctx.Err()
}

// TestLaunchUnderWayFinishesWhenGarrisonStops: a launch under way when the
// scheduler stops (its term over) finishes, and the task is left running
// with its record for the next start or leader to adopt. Before, the
// stop's cancellation reached the driver, which removed the started task:
// in the HA test, a container the next leader had adopted.
func TestLaunchUnderWayFinishesWhenGarrisonStops(t *testing.T) {
	var h *harness
	began := make(chan struct{})
	h = newHarnessWith(t, func(p *process.Driver) scheduler.Driver {
		var once sync.Once
		return stopDuringLaunch{p, func() { once.Do(func() { h.stop(); close(began) }) }}
	}, nil)
	if _, err := h.sched.Deploy(t.Context(), []scheduler.Change{{App: webApp(t, "/stopping/web", 1, ""), Create: true}}, false, "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-began:
	case <-time.After(time.Minute):
		t.Fatal("no launch")
	}
	// Once the launch under way is over, as the next start sees it.
	h.crash()
	proc, err := process.New(filepath.Join(h.dir, "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	listed, err := proc.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].State.Terminal() {
		t.Fatalf("tasks after a stop during their launch: %+v, want the one launched, running", listed)
	}
	if recs, err := h.store.Tasks(context.Background()); err != nil || len(recs) != 1 || recs[0].Key != listed[0].ID {
		t.Fatalf("task records %+v (%v), want the launched task's", recs, err)
	}
}
