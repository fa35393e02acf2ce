package scheduler_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/signalman/process"
	"github.com/garrisonhq/garrison/signalman/task"
)

// txnKV is a real etcd KV whose transactions can be made to report an
// error after committing (a connection lost on the way back), or to stall
// before committing (an fsync stall) until released.
type txnKV struct {
	clientv3.KV
	failAfter atomic.Int32 // commits left to fail after committing
	stall     atomic.Bool
	stalled   chan struct{} // receives when a commit stalls
	release   chan struct{}
}

func (k *txnKV) Txn(ctx context.Context) clientv3.Txn {
	return etcdtest.HookTxn(k.KV.Txn(ctx), func(_ []clientv3.Op, commit etcdtest.Commit) (*clientv3.TxnResponse, error) {
		if k.stall.Load() {
			k.stalled <- struct{}{}
			<-k.release
		}
		resp, err := commit()
		if err == nil && k.failAfter.Add(-1) >= 0 {
			return nil, errors.New("injected: connection lost after the commit")
		}
		return resp, err
	})
}

func txnHarness(t *testing.T) (*harness, *txnKV) {
	kv := &txnKV{stalled: make(chan struct{}, 1), release: make(chan struct{})}
	h := newHarnessWith(t, nil, func(c *scheduler.Config) {
		kv.KV = c.Registry
		c.Store = store.New(kv)
	})
	return h, kv
}

func scaled(t *testing.T, h *harness, id string, n int) []scheduler.Change {
	cur, ok := h.sched.App(id)
	if !ok {
		t.Fatalf("no app %s", id)
	}
	next := cur.Clone()
	next.Instances = n
	return []scheduler.Change{{App: next}}
}

// A commit that etcd applied but whose answer was lost: memory follows
// what etcd holds, so the deploy succeeds and later changes are not
// refused as concurrent (409) forever.
func TestFailureAfterCommitFollowsStore(t *testing.T) {
	h, kv := txnHarness(t)
	h.deploy([]scheduler.Change{{App: parseApp(t, `{"id":"/after","cmd":"exec sleep 600","instances":1}`), Create: true}}, false)
	kv.failAfter.Store(1)
	if _, err := h.sched.Deploy(t.Context(), scaled(t, h, "/after", 2), true, "test"); err != nil {
		t.Fatalf("deploy committed in etcd answered %v", err)
	}
	if a, _ := h.sched.App("/after"); a.Instances != 2 {
		t.Fatalf("memory holds %d instances after a committed scale to 2", a.Instances)
	}
	if _, err := h.sched.Deploy(t.Context(), scaled(t, h, "/after", 3), true, "test"); err != nil {
		t.Fatalf("the next change: %v", err)
	}
	h.waitFor("three tasks", 20*time.Second, func() bool { return len(h.running("/after")) == 3 })
}

// While etcd stalls on a deploy's transaction, reads and reconcile passes
// go on: the scheduler's lock is not held during the I/O.
func TestReadsGoOnWhileEtcdStalls(t *testing.T) {
	h, kv := txnHarness(t)
	h.deploy([]scheduler.Change{{App: parseApp(t, `{"id":"/stall","cmd":"exec sleep 600","instances":1}`), Create: true}}, false)
	// The deployment ends once the task is registered too: the next one
	// must not find the app locked.
	h.waitFor("one task and the deployment done", 20*time.Second, func() bool {
		return len(h.running("/stall")) == 1 && len(h.sched.Deployments()) == 0
	})
	kv.stall.Store(true)
	deployed := make(chan error, 1)
	go func() {
		_, err := h.sched.Deploy(context.Background(), scaled(t, h, "/stall", 2), false, "test")
		deployed <- err
	}()
	<-kv.stalled
	read := make(chan int, 1)
	go func() { read <- len(h.sched.Apps()) + len(h.sched.Tasks("")) + len(h.sched.Deployments()) }()
	select {
	case <-read:
	case <-time.After(30 * time.Second):
		t.Error("reads blocked while etcd stalls on a deploy")
	}
	kv.stall.Store(false)
	close(kv.release)
	if err := <-deployed; err != nil {
		t.Fatal(err)
	}
}

// Launches in flight never exceed LaunchConcurrency, whatever the count.
func TestLaunchConcurrencyIsBounded(t *testing.T) {
	var w *wrapDriver
	h := newHarnessWith(t, func(p *process.Driver) scheduler.Driver {
		// Each launch lasts a while, so unbounded launches would overlap.
		w = &wrapDriver{Driver: p, beforeLaunch: func(task.Spec) { time.Sleep(50 * time.Millisecond) }}
		return w
	}, func(c *scheduler.Config) { c.LaunchConcurrency = 3 })
	h.deploy([]scheduler.Change{{App: parseApp(t, `{"id":"/many","cmd":"exec sleep 600","instances":15}`), Create: true}}, false)
	h.waitFor("fifteen tasks", 60*time.Second, func() bool { return len(h.running("/many")) == 15 })
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.maxInFly > 3 || w.maxInFly == 0 {
		t.Fatalf("%d launches in flight at once, limit 3", w.maxInFly)
	}
}

// hookHandler signals when the scheduler logs a given message: the point
// where a timing must be forced.
type hookHandler struct {
	slog.Handler
	msg string
	ch  chan struct{}
}

func (h *hookHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.ch <- struct{}{}:
		default:
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h *hookHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &hookHandler{Handler: h.Handler.WithAttrs(as), msg: h.msg, ch: h.ch}
}

func (h *hookHandler) WithGroup(name string) slog.Handler {
	return &hookHandler{Handler: h.Handler.WithGroup(name), msg: h.msg, ch: h.ch}
}

// The autoscaler's forced scale, built from a read taken before a new
// configuration was committed, does not revert that configuration.
func TestForcedScaleDoesNotRevertNewerChange(t *testing.T) {
	kv := &txnKV{stalled: make(chan struct{}, 1), release: make(chan struct{})}
	scaling := &hookHandler{Handler: slog.Default().Handler(), msg: "autoscaler scales app", ch: make(chan struct{}, 1)}
	h := newHarnessWith(t, nil, func(c *scheduler.Config) {
		kv.KV = c.Registry
		c.Store = store.New(kv)
		c.Logger = slog.New(scaling)
	})
	// Never healthy (nothing answers its check, and the grace period is
	// long), so every deployment of it stays in progress.
	a := parseApp(t, `{"id":"/img","cmd":"exec sleep 600","instances":1,"env":{"COLOR":"red"},
		"healthChecks":[{"protocol":"TCP","port":1,"gracePeriodSeconds":600}]}`)
	res := h.deploy([]scheduler.Change{{App: a, Create: true}}, false)
	if _, err := h.sched.CancelDeployment(t.Context(), res.DeploymentID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sched.Scale(t.Context(), "/img", 2, "test: first step"); err != nil {
		t.Fatal(err)
	}
	<-scaling.ch

	// A user's new configuration stalls in etcd...
	blue := a.Clone()
	blue.Instances = 2
	blue.Env = map[string]string{"COLOR": "blue"}
	kv.stall.Store(true)
	deployed := make(chan error, 1)
	go func() {
		_, err := h.sched.Deploy(context.Background(), []scheduler.Change{{App: blue}}, true, "test")
		deployed <- err
	}()
	<-kv.stalled
	kv.stall.Store(false)
	// ...while the autoscaler reads the old one and scales it further.
	scaled := make(chan error, 1)
	go func() {
		_, err := h.sched.Scale(context.Background(), "/img", 3, "test: larger step")
		scaled <- err
	}()
	<-scaling.ch
	close(kv.release)
	if err := <-deployed; err != nil {
		t.Fatal(err)
	}
	<-scaled // refused or applied on top of blue: either is fine
	cur, _ := h.sched.App("/img")
	if cur.Env["COLOR"] != "blue" {
		t.Fatalf("the autoscaler's scale reverted the newer configuration: env %v", cur.Env)
	}
	stored, err := h.store.App(t.Context(), "/img")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := app.Decode(stored.Data); err != nil || got.Env["COLOR"] != "blue" {
		t.Fatalf("stored app env %v, %v", got.Env, err)
	}
}

// A change built from a stale read of the app fails as a conflict.
func TestChangeFromStaleReadConflicts(t *testing.T) {
	h := newHarness(t)
	h.deploy([]scheduler.Change{{App: parseApp(t, `{"id":"/cas","cmd":"exec sleep 600","instances":1}`), Create: true}}, false)
	old, rev, ok := h.sched.AppRevision("/cas")
	if !ok || rev == 0 {
		t.Fatalf("AppRevision: %v %d", ok, rev)
	}
	newer := old.Clone()
	newer.Env = map[string]string{"V": "2"}
	h.deploy([]scheduler.Change{{App: newer}}, true)
	stale := old.Clone()
	stale.Instances = 2
	if _, err := h.sched.Deploy(t.Context(), []scheduler.Change{{App: stale, Expect: rev}}, true, "test"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("change from a stale read: %v, want a conflict", err)
	}
}
