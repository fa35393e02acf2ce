package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
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
	var fenced *store.Store
	h := newHarnessWith(t, nil, func(c *scheduler.Config) {
		if fenced != nil {
			c.Store = fenced
		}
	})
	h.crash()
	fence := electOnce(t, h.cli)
	fenced = h.store.Fenced(fence)
	h.start()

	h.deploy([]scheduler.Change{{App: webApp(t, "/fenced/web", 2, ""), Create: true}}, false)
	h.waitFor("two running tasks", 30*time.Second, func() bool {
		return len(h.running("/fenced/web")) == 2 && len(h.sched.Deployments()) == 0
	})

	// The term ends behind the scheduler's back.
	key, err := h.cli.Get(t.Context(), fence.Key())
	if err != nil || len(key.Kvs) != 1 {
		t.Fatalf("read the election key: %v %v", key, err)
	}
	if _, err := h.cli.Revoke(t.Context(), clientv3.LeaseID(key.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the election key gone", 30*time.Second, func() bool {
		r, err := h.cli.Get(t.Context(), fence.Key())
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
	return &taskTxn{Txn: k.KV.Txn(ctx), kv: k}
}

type taskTxn struct {
	clientv3.Txn
	kv   *endTermAfterTaskRecord
	task bool
}

func (t *taskTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	t.Txn = t.Txn.If(cs...)
	return t
}

func (t *taskTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Else(ops...)
	return t
}

func (t *taskTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.task = t.task || writesTask(ops)
	t.Txn = t.Txn.Then(ops...)
	return t
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

func (t *taskTxn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.Txn.Commit()
	if err == nil && t.task {
		if !resp.Succeeded {
			t.kv.refused.Add(1)
		} else if t.kv.ended.CompareAndSwap(false, true) {
			t.kv.end()
		}
	}
	return resp, err
}

// TestLeaderPausedAfterTaskRecordDoesNotLaunch: the term ends between the
// task record (written in the term) and the launch; the launch, which etcd
// cannot fence, is not made, and the next attempt's record is refused.
func TestLeaderPausedAfterTaskRecordDoesNotLaunch(t *testing.T) {
	var fenced *store.Store
	h := newHarnessWith(t, nil, func(c *scheduler.Config) {
		if fenced != nil {
			c.Store = fenced
		}
	})
	h.crash()
	fence := electOnce(t, h.cli)
	kv := &endTermAfterTaskRecord{KV: h.cli.KV, end: func() {
		key, err := h.cli.Get(context.Background(), fence.Key())
		if err == nil && len(key.Kvs) == 1 {
			h.cli.Revoke(context.Background(), clientv3.LeaseID(key.Kvs[0].Lease))
		}
	}}
	fenced = store.New(kv).Fenced(fence)
	h.start()

	h.deploy([]scheduler.Change{{App: webApp(t, "/fenced/late", 1, ""), Create: true}}, false)
	h.waitFor("the next launch attempt refused by the fence", 30*time.Second, func() bool { return kv.refused.Load() > 0 })
	listed, err := h.proc.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 0 {
		t.Fatalf("a leader whose term ended after the task record launched it: %+v", listed)
	}
}

// electOnce runs an elector on cli until the test ends and returns the
// fence of its first term.
func electOnce(t *testing.T, cli *clientv3.Client) leader.Fence {
	t.Helper()
	el, err := leader.New(leader.Config{Client: cli, Name: "hq:8080", TTL: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	terms := make(chan leader.Fence, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		el.Run(ctx, func(ctx context.Context, f leader.Fence) {
			select {
			case terms <- f:
			default:
			}
			<-ctx.Done()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case f := <-terms:
		return f
	case <-time.After(time.Minute):
		t.Fatal("never elected")
	}
	return leader.Fence{}
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
	var fenced *store.Store
	var fence leader.Fence
	var h *harness
	endTerm := func() {
		key, err := h.cli.Get(context.Background(), fence.Key())
		if err == nil && len(key.Kvs) == 1 {
			h.cli.Revoke(context.Background(), clientv3.LeaseID(key.Kvs[0].Lease))
		}
	}
	h = newHarnessWith(t, func(p *process.Driver) scheduler.Driver { return launchThenEndTerm{p, endTerm} }, func(c *scheduler.Config) {
		if fenced != nil {
			c.Store = fenced
		}
	})
	h.crash()
	fence = electOnce(t, h.cli)
	kv := &endTermAfterTaskRecord{KV: h.cli.KV, end: func() {}}
	kv.ended.Store(true) // the driver ends the term, not the record
	fenced = store.New(kv).Fenced(fence)
	h.start()

	h.deploy([]scheduler.Change{{App: webApp(t, "/fenced/cut", 1, ""), Create: true}}, false)
	h.waitFor("the next launch attempt refused by the fence", 30*time.Second, func() bool { return kv.refused.Load() > 0 })
	listed, err := h.proc.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].State.Terminal() {
		t.Fatalf("the task a cut-short launch started: %+v, want it running for the next leader", listed)
	}
}
