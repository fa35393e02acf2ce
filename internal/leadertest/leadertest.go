// Package leadertest gives tests one term of garrison's leader election
// and a way to end it behind the leader's back, as etcd ends the term of a
// leader that was paused past its lease.
package leadertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/leader"
)

// Elect runs an elector on cli until the test ends and returns the fence
// of its first term.
func Elect(t testing.TB, cli *clientv3.Client) leader.Fence {
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

// EndTerm revokes the term's lease, as etcd expires the lease of a leader
// that stopped renewing it.
func EndTerm(cli *clientv3.Client, f leader.Fence) {
	key, err := cli.Get(context.Background(), f.Key())
	if err == nil && len(key.Kvs) == 1 {
		cli.Revoke(context.Background(), clientv3.LeaseID(key.Kvs[0].Lease))
	}
}
