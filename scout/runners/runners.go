// Package runners is scout's metric source for garrison's own warm runner
// pool (ci/runnerd, ci/pool): its rule scales the pool app on
//
//   - qps: the jobs wanting a runner, queued (keys under the pool's queue
//     prefix in etcd) plus running (claims under its claim prefix). With
//     `up: {qps: 1}` the needed count is one runner per job.
//   - cpu: the busy fraction, the jobs running over the runners
//     registered (at most 1: a stopping runner leaves the registry before
//     its job ends).
//
// Both read the pool as it is now, from etcd alone (runners on other
// machines need not be reachable): a queue is a level, not a rate.
package runners

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/scout/sample"
)

// Source reads the pools' queues, claims and runners.
type Source struct {
	etcd clientv3.KV
}

// New returns the source over garrison's etcd.
func New(etcd clientv3.KV) *Source { return &Source{etcd: etcd} }

// Read answers qps (jobs queued and running) and cpu (busy fraction) for
// each pool app in req.
func (s *Source) Read(ctx context.Context, req sample.Request) (sample.Readings, error) {
	out := sample.Readings{}
	for _, a := range req.Apps {
		queued, err := s.count(ctx, pool.QueuePrefix(a.ID))
		if err != nil {
			return nil, err
		}
		running, err := s.count(ctx, pool.ClaimPrefix(a.ID))
		if err != nil {
			return nil, err
		}
		addrs, err := pool.Instances(ctx, s.etcd, a.ID)
		if err != nil {
			return nil, err
		}
		runners := len(addrs)
		r := sample.Reading{}
		if a.Wants(sample.QPS) {
			r[sample.QPS] = sample.Value{Value: float64(queued + running), OK: true, Instances: runners}
		}
		if a.Wants(sample.CPU) && runners > 0 {
			r[sample.CPU] = sample.Value{Value: min(1, float64(running)/float64(runners)), OK: true, Instances: runners}
		}
		out[a.ID] = r
	}
	return out, nil
}

func (s *Source) count(ctx context.Context, prefix string) (int, error) {
	resp, err := s.etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return int(resp.Count), nil
}
