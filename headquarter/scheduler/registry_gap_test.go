package scheduler_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/registrar"
)

// slowGrants makes every registration slow once on is set: a lease grant
// waits a second and a half, as on a loaded etcd.
type slowGrants struct {
	registrar.Client
	on atomic.Bool
}

func (s *slowGrants) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	if s.on.Load() {
		select {
		case <-time.After(1500 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Client.Grant(ctx, ttl)
}

// TestRollingRestartKeepsAnInstanceRegistered: a rolling restart kills
// the old task only once the new one is in the registry, not merely
// healthy: callers picking from the registry never find it empty (they
// did while the new task's registration was on its way, seen as "no
// endpoints" in TestPushToProduction's rollback under load).
func TestRollingRestartKeepsAnInstanceRegistered(t *testing.T) {
	var reg *slowGrants
	h := newHarnessWith(t, nil, func(c *scheduler.Config) {
		reg = &slowGrants{Client: c.Registry}
		c.Registry = reg
	})
	h.deploy([]scheduler.Change{{App: webApp(t, "/shop/web", 1, ""), Create: true}}, false)
	h.waitFor("one registered task", 20*time.Second, func() bool {
		return h.registered("shop_web") == 1 && len(h.sched.Deployments()) == 0
	})
	old := h.running("/shop/web")[0].ID

	reg.on.Store(true)
	var empty atomic.Bool
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			resp, err := h.cli.Get(context.Background(), registrar.ServicePrefix("shop_web"), clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err == nil && resp.Count == 0 {
				empty.Store(true)
			}
		}
	}()
	h.deploy([]scheduler.Change{{App: webApp(t, "/shop/web", 1, `,"env":{"COLOR":"blue"}`)}}, false)
	h.waitFor("the new task registered alone", 30*time.Second, func() bool {
		ts := h.sched.Tasks("/shop/web")
		return len(h.sched.Deployments()) == 0 && len(ts) == 1 && ts[0].ID != old && h.registered("shop_web") == 1
	})
	close(stop)
	<-done
	if empty.Load() {
		t.Error("the registry held no instance of /shop/web during the restart")
	}
}
