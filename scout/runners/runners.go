// Package runners is scout's metric source for garrison's own warm runner
// pool (ci/runnerd, ci/pool): its rule scales the pool app on
//
//   - qps: the jobs wanting a runner, queued (keys under the pool's queue
//     prefix in etcd) plus running (runners whose garrison_runner_busy is
//     1). With `up: {qps: 1}` the needed count is one runner per job.
//   - cpu: the busy fraction, the runners busy over the runners that
//     answered.
//
// Both read the pool as it is now: a queue is a level, not a rate. A
// runner that does not answer its /metrics is not counted.
package runners

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/scout/sample"
)

// Source reads the pools' queues and runners.
type Source struct {
	etcd clientv3.KV
	hc   *http.Client
}

// New returns the source over garrison's etcd.
func New(etcd clientv3.KV) *Source {
	return &Source{etcd: etcd, hc: &http.Client{Timeout: 2 * time.Second}}
}

// Read answers qps (jobs queued and running) and cpu (busy fraction) for
// each pool app in req.
func (s *Source) Read(ctx context.Context, req sample.Request) (sample.Readings, error) {
	out := sample.Readings{}
	for _, a := range req.Apps {
		queued, err := s.etcd.Get(ctx, pool.QueuePrefix(a.ID), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return nil, err
		}
		addrs, err := pool.Instances(ctx, s.etcd, a.ID)
		if err != nil {
			return nil, err
		}
		busy, answered := s.scrape(ctx, addrs)
		r := sample.Reading{}
		if a.Wants(sample.QPS) {
			r[sample.QPS] = sample.Value{Value: float64(queued.Count) + float64(busy), OK: true, Instances: answered}
		}
		if a.Wants(sample.CPU) && answered > 0 {
			r[sample.CPU] = sample.Value{Value: float64(busy) / float64(answered), OK: true, Instances: answered}
		}
		out[a.ID] = r
	}
	return out, nil
}

// scrape reads every runner's busy gauge in parallel.
func (s *Source) scrape(ctx context.Context, addrs []string) (busy, answered int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, ok := s.busy(ctx, addr)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				answered++
				if b {
					busy++
				}
			}
		}()
	}
	wg.Wait()
	return busy, answered
}

func (s *Source) busy(ctx context.Context, addr string) (busy, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return false, false
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return false, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, false
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, found := strings.CutPrefix(sc.Text(), "garrison_runner_busy "); found {
			return strings.TrimSpace(v) == "1", true
		}
	}
	return false, false
}
