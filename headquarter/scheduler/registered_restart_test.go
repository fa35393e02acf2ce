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

// slowRegistry is an etcd whose lease grants (the first step of every
// registration) take delay once armed: a registry that answers late, as a
// busy etcd does.
type slowRegistry struct {
	registrar.Client
	delay time.Duration
	armed atomic.Bool
}

func (r *slowRegistry) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	if r.armed.Load() {
		select {
		case <-time.After(r.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return r.Client.Grant(ctx, ttl)
}

// A rolling restart replaces an old instance only once its successor is
// registered, not merely healthy: callers find instances in the registry,
// and with one instance a healthy-but-unregistered successor left them
// with none (TestPushToProduction's rollback saw "no endpoints").
func TestRollingRestartKeepsAnInstanceRegistered(t *testing.T) {
	var reg *slowRegistry
	h := newHarnessWith(t, nil, func(cfg *scheduler.Config) {
		reg = &slowRegistry{Client: cfg.Registry, delay: 2 * time.Second}
		cfg.Registry = reg
	})
	h.deploy([]scheduler.Change{{App: webApp(t, "/shop/one", 1, ""), Create: true}}, false)
	h.waitFor("one healthy registered task", 30*time.Second, func() bool {
		return len(h.running("/shop/one")) == 1 && h.registered("shop_one") == 1 && len(h.sched.Deployments()) == 0
	})
	old := h.running("/shop/one")[0].ID

	reg.armed.Store(true)
	res := h.deploy([]scheduler.Change{{App: webApp(t, "/shop/one", 1, `,"env":{"COLOR":"blue"}`)}}, false)
	// Watch the registry through the whole restart: never empty.
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	empty := make(chan time.Time, 1)
	go func() {
		for ctx.Err() == nil {
			resp, err := h.cli.Get(ctx, registrar.ServicePrefix("shop_one"), clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err == nil && resp.Count == 0 {
				select {
				case empty <- time.Now():
				default:
				}
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	h.waitFor("the restart to finish with the new task registered", 60*time.Second, func() bool {
		ts := h.running("/shop/one")
		return len(h.sched.Deployments()) == 0 && len(h.sched.Tasks("/shop/one")) == 1 && len(ts) == 1 &&
			ts[0].ID != old && ts[0].Version == res.Version && h.registered("shop_one") == 1
	})
	stop()
	select {
	case at := <-empty:
		t.Fatalf("the registry held no instance of the app at %s, during the restart", at.Format(time.RFC3339Nano))
	default:
	}
}
