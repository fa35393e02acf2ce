package runnerd_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/internal/citest"
	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/ci/runnerd"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/garrisontest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// stopAfterClaim is the runner's etcd KV with one timing forced: once
// armed, the first transaction that succeeds (a claim) is followed at
// once by the runner's stop, as a rolling replacement of the pool may
// stop a runner at any moment.
type stopAfterClaim struct {
	clientv3.KV
	armed atomic.Bool
	once  sync.Once
	fired atomic.Bool
	stop  func()
}

func (k *stopAfterClaim) Txn(ctx context.Context) clientv3.Txn {
	return etcdtest.HookTxn(k.KV.Txn(ctx), func(_ []clientv3.Op, commit etcdtest.Commit) (*clientv3.TxnResponse, error) {
		resp, err := commit()
		if err == nil && resp.Succeeded && k.armed.Load() {
			k.once.Do(func() { k.stop(); k.fired.Store(true) })
		}
		return resp, err
	})
}

// TestRunnerStoppedRightAfterItsClaimRunsTheJob: a runner told to stop
// just as its claim of a job commits (its task replaced by a rolling
// update of the pool app) runs the job to its end within its drain and
// sends its output: the claim is on the runner's lease, so a runner that
// returned then would fail the job as lost.
func TestRunnerStoppedRightAfterItsClaimRunsTheJob(t *testing.T) {
	etcd := etcdtest.New(t)
	cli := etcd.Client(t)
	p := citest.PoolHQ(t, cli, poolApp)
	rcli := etcd.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hook := &stopAfterClaim{KV: rcli.KV, stop: cancel}
	rcli.KV = hook
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- runnerd.Serve(ctx, l, runnerd.Config{Etcd: rcli, App: poolApp, ID: "r1", WorkDir: t.TempDir(), Drain: time.Minute})
	}()
	poll.Until(t, 10*time.Second, "runner registered", func() (bool, string) {
		addrs, err := pool.Instances(context.Background(), cli, poolApp)
		return err == nil && len(addrs) == 1, fmt.Sprint(addrs, err)
	})
	hook.armed.Store(true)

	var log garrisontest.Buffer
	code, err := p.Run(context.Background(), pool.Job{ID: "j", Script: "echo ran to its end", Timeout: time.Minute}, t.TempDir(), &log)
	if !hook.fired.Load() {
		t.Fatal("the runner was not stopped after its claim")
	}
	if code != 0 || err != nil || !strings.Contains(log.String(), "ran to its end\n") {
		t.Errorf("job: %d %v\n%s", code, err, log.String())
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("runner: %v", err)
		}
	case <-time.After(time.Minute):
		t.Error("the stopped runner did not end after its job")
	}
}
