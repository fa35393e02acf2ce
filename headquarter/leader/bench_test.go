package leader_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// BenchmarkFencedWrite measures what the fence costs a leader's write: the
// same one-key transaction with and without the election-key compare, on
// one embedded etcd, alternated so both see the same machine. It reports
// both latencies and their ratio (fenced/plain).
func BenchmarkFencedWrite(b *testing.B) {
	etcd := etcdtest.New(b)
	cli := etcd.Client(b)
	el, err := leader.New(leader.Config{Client: cli, Name: "bench:8080", TTL: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	fences := make(chan leader.Fence, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		el.Run(ctx, func(ctx context.Context, f leader.Fence) {
			fences <- f
			<-ctx.Done()
		})
	}()
	defer func() { cancel(); <-done }()
	var f leader.Fence
	select {
	case f = <-fences:
	case <-time.After(60 * time.Second):
		b.Fatal("no term within 60s")
	}
	poll.True(b, time.Minute, "leading", el.IsLeader)

	// One iteration is a scenario of its own (make bench runs 1x).
	const writes = 500
	var fenced, plain time.Duration
	for b.Loop() {
		for i := range writes {
			key := fmt.Sprintf("/bench/tasks/%d", i)
			start := time.Now()
			if _, err := cli.Txn(ctx).Then(clientv3.OpPut(key, "x")).Commit(); err != nil {
				b.Fatal(err)
			}
			plain += time.Since(start)
			start = time.Now()
			if _, err := f.Do(ctx, clientv3.OpPut(key, "x")); err != nil {
				b.Fatal(err)
			}
			fenced += time.Since(start)
		}
	}
	n := float64(b.N * writes)
	b.ReportMetric(float64(plain.Microseconds())/n, "plain-µs/write")
	b.ReportMetric(float64(fenced.Microseconds())/n, "fenced-µs/write")
	b.ReportMetric(float64(fenced)/float64(plain), "fenced/plain")
}
