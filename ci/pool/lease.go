package pool

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
)

// Lease is one etcd lease kept alive for many keys (a pool's queued jobs,
// a runner's claims), granted again should etcd lose it: one grant for
// all the keys, not one per job.
type Lease struct {
	cli    *clientv3.Client
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	cur  clientv3.LeaseID
	lost chan struct{}
}

// NewLease returns a lease granted on first use and kept alive until ctx
// ends or Close.
func NewLease(ctx context.Context, cli *clientv3.Client) *Lease {
	l := &Lease{cli: cli}
	l.ctx, l.cancel = context.WithCancel(ctx)
	return l
}

// ID is the live lease, granted anew when there is none.
func (l *Lease) ID(ctx context.Context) (clientv3.LeaseID, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != 0 {
		select {
		case <-l.lost:
		default:
			return l.cur, nil
		}
	}
	g, err := l.cli.Grant(ctx, int64(registrar.DefaultTTL/time.Second))
	if err != nil {
		return 0, fmt.Errorf("lease: %w", err)
	}
	alive, err := l.cli.KeepAlive(l.ctx, g.ID)
	if err != nil {
		return 0, fmt.Errorf("lease: %w", err)
	}
	lost := make(chan struct{})
	go func() {
		for range alive {
		}
		close(lost)
	}()
	l.cur, l.lost = g.ID, lost
	return g.ID, nil
}

// Close revokes the lease: every key on it goes.
func (l *Lease) Close() {
	l.cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), 5*time.Second)
	defer cancel()
	l.cli.Revoke(ctx, l.cur)
	l.cur = 0
}
