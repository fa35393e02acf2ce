package nomade2e

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/leadertest"
	"github.com/garrisonhq/garrison/signalman/nomad"
)

// endTermAfterCommit is etcd as a leader sees it when it is paused right
// after a write was acknowledged: once armed, the next transaction that
// commits ends the term (its election lease revoked).
type endTermAfterCommit struct {
	clientv3.KV
	armed atomic.Bool
	end   func()
}

func (k *endTermAfterCommit) Txn(ctx context.Context) clientv3.Txn {
	return etcdtest.HookTxn(k.KV.Txn(ctx), func(_ []clientv3.Op, commit etcdtest.Commit) (*clientv3.TxnResponse, error) {
		resp, err := commit()
		if err == nil && resp.Succeeded && k.armed.CompareAndSwap(true, false) {
			k.end()
		}
		return resp, err
	})
}

// A leader whose term ends right after its scale was stored does not send
// the scale to Nomad: Nomad's calls cannot carry the fence, so the term is
// checked before each of them. Without the check the job went to 3.
func TestFormerLeaderDoesNotActOnNomad(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	fence := leadertest.Elect(t, cli)
	kv := &endTermAfterCommit{KV: cli.KV, end: func() { leadertest.EndTerm(cli, fence) }}

	c, _ := agent.Namespace(t)
	d, err := nomad.New(c)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, agent: agent, etcd: cli, store: store.New(kv).Fenced(fence), nomad: c, driver: d}
	s.start()
	t.Cleanup(func() { s.stop() })

	s.expect("POST", "/v2/apps", rawApp("/fenced", 1, "one"), 201, nil)
	s.settled("/fenced", 1, "one")

	kv.armed.Store(true)
	// Acknowledged: the write landed before the term ended.
	s.expect("PUT", "/v2/apps/fenced", map[string]any{"instances": 3}, 200, nil)
	if kv.armed.Load() {
		t.Fatal("the scale's write did not commit")
	}
	// Several job syncs (every 2 s here) and deployment passes later, the
	// job still asks for one instance.
	time.Sleep(8 * time.Second)
	job, _, err := s.nomad.Jobs().Info(nomad.JobID("/fenced"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := *job.TaskGroups[0].Count; n != 1 {
		t.Fatalf("a former leader scaled the job on Nomad to %d, want the 1 it had", n)
	}
}
