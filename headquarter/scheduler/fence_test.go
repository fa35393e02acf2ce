package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
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
	el, err := leader.New(leader.Config{Client: h.cli, Name: "hq:8080", TTL: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
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
	var fence leader.Fence
	select {
	case fence = <-terms:
	case <-time.After(time.Minute):
		t.Fatal("never elected")
	}
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
