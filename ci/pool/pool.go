// Package pool hands test jobs to the warm runners (ci/runnerd) of the
// runner pool: a Marathon app garrison runs. A job waiting for a runner is
// queued in etcd (a key under QueuePrefix, on a lease, so a garrison that
// dies leaves no phantom queue); the pool's autoscale rule reads that
// queue and the runners' busy gauge (scout/runners) and grows the pool.
package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/runnerd"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/registrar"
)

// QueuePrefix holds the jobs waiting for a runner of the pool app.
func QueuePrefix(poolApp string) string {
	return "/garrison/ci/pool/" + url.PathEscape(poolApp) + "/queue/"
}

// Instances lists the addresses (host:port) of the pool app's registered
// runners.
func Instances(ctx context.Context, kv clientv3.KV, poolApp string) ([]string, error) {
	resp, err := kv.Get(ctx, registrar.ServicePrefix(app.ServiceName(poolApp)), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list runners of %s: %w", poolApp, err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		inst, err := registrar.DecodeInstance(kv.Key, kv.Value)
		if err != nil {
			continue
		}
		if id := inst.Endpoint.Metadata["appId"]; id != "" && id != poolApp {
			continue
		}
		out = append(out, inst.Endpoint.Addr)
	}
	return out, nil
}

// Pool is the client of one pool app.
type Pool struct {
	etcd *clientv3.Client
	app  string
	hc   *http.Client
	// Poll is how often a queued job looks for a free runner again.
	Poll time.Duration
}

// New returns the client of the pool app poolApp.
func New(etcd *clientv3.Client, poolApp string) *Pool {
	return &Pool{etcd: etcd, app: poolApp, hc: &http.Client{}, Poll: 250 * time.Millisecond}
}

// App is the pool's app id.
func (p *Pool) App() string { return p.app }

// ErrLost is a runner that went away during a job (its stream ended
// without an exit code).
var ErrLost = errors.New("the runner went away during the job")

// Run queues job until a runner takes it, then copies its output to log
// and returns its exit code.
func (p *Pool) Run(ctx context.Context, job runnerd.Job, log io.Writer) (int, error) {
	body, err := json.Marshal(job)
	if err != nil {
		return -1, fmt.Errorf("encode job %s: %w", job.ID, err)
	}
	dequeue, err := p.enqueue(ctx, job.ID)
	if err != nil {
		return -1, err
	}
	defer dequeue()
	fmt.Fprintf(log, "*** waiting for a warm runner of %s\n", p.app)
	// refused holds what each runner that could not take the job said,
	// written to the log once: a job no runner can take (its workspace is
	// not on their machine) says why while it waits.
	refused := map[string]string{}
	for {
		addrs, err := Instances(ctx, p.etcd, p.app)
		if err != nil {
			return -1, err
		}
		rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
		for _, addr := range addrs {
			resp, err := p.offer(ctx, addr, body)
			if err != nil && ctx.Err() == nil && refused[addr] != err.Error() {
				refused[addr] = err.Error()
				fmt.Fprintf(log, "*** runner %s: %v\n", addr, err)
			}
			if err != nil || resp == nil {
				continue // busy, gone or unable: the next one
			}
			dequeue()
			fmt.Fprintf(log, "*** runner %s took the job\n", addr)
			return p.follow(resp, log)
		}
		select {
		case <-ctx.Done():
			return -1, context.Cause(ctx)
		case <-time.After(p.Poll):
		}
	}
}

// enqueue puts the job in the queue under a lease kept alive while it
// waits.
func (p *Pool) enqueue(ctx context.Context, id string) (func(), error) {
	lease, err := p.etcd.Grant(ctx, 30)
	if err != nil {
		return nil, fmt.Errorf("queue job %s: %w", id, err)
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ka, err := p.etcd.KeepAlive(kctx, lease.ID)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("queue job %s: %w", id, err)
	}
	go func() {
		for range ka {
		}
	}()
	if _, err := p.etcd.Put(ctx, QueuePrefix(p.app)+url.PathEscape(id), time.Now().UTC().Format(time.RFC3339Nano), clientv3.WithLease(lease.ID)); err != nil {
		cancel()
		return nil, fmt.Errorf("queue job %s: %w", id, err)
	}
	done := false
	return func() {
		if done {
			return
		}
		done = true
		cancel()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer rcancel()
		p.etcd.Revoke(rctx, lease.ID) // the key goes with it
	}, nil
}

// offer posts the job to one runner: a response when it took it, nil when
// it is busy.
func (p *Pool) offer(ctx context.Context, addr string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/jobs", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusConflict {
			return nil, nil
		}
		return nil, fmt.Errorf("runner %s: %d %s", addr, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return resp, nil
}

func (p *Pool) follow(resp *http.Response, log io.Writer) (int, error) {
	defer resp.Body.Close()
	if _, err := io.Copy(log, resp.Body); err != nil {
		return -1, fmt.Errorf("%w: %v", ErrLost, err)
	}
	if msg := resp.Trailer.Get(runnerd.ErrorTrailer); msg != "" {
		return -1, fmt.Errorf("runner: %s", msg)
	}
	code, err := strconv.Atoi(resp.Trailer.Get(runnerd.ExitCodeTrailer))
	if err != nil {
		return -1, ErrLost
	}
	return code, nil
}
