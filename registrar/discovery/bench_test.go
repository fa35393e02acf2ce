package discovery_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/discovery"
	"github.com/garrisonhq/garrison/registrar/etcdtest"
)

// sighting is one instance appearing or disappearing, as a watcher saw it.
type sighting struct {
	id      string
	removed bool
	at      time.Time
}

// BenchmarkDeregistrationSeen measures how long after a deregistration
// (lease revoked) a watcher sees the instance gone: through the discovery
// client (its Updates channel and Snapshot) and through a bare clientv3
// Watch on the same prefix, for the same 1,000 changes in the same run.
func BenchmarkDeregistrationSeen(b *testing.B) {
	const changes = 1000
	srv := etcdtest.New(b)
	ctx := b.Context()
	writer := srv.Client(b)
	prefix := registrar.ServicePrefix("bench")

	svc, err := discovery.New(ctx, srv.Client(b), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	bareCli := srv.Client(b)
	watchCtx, stopWatchers := context.WithCancel(ctx)
	wch := bareCli.Watch(watchCtx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp := <-wch; !resp.Created {
		b.Fatalf("bare watch not created: %v", resp.Err())
	}

	bareSeen, discSeen := make(chan sighting, 64), make(chan sighting, 64)
	var readers sync.WaitGroup
	defer func() {
		stopWatchers()
		readers.Wait()
	}()
	readers.Go(func() {
		for resp := range wch {
			at := time.Now()
			for _, ev := range resp.Events {
				_, id, _ := registrar.ParseKey(string(ev.Kv.Key))
				select {
				case bareSeen <- sighting{id: id, removed: ev.Type == mvccpb.DELETE, at: at}:
				case <-watchCtx.Done():
					return
				}
			}
		}
	})
	readers.Go(func() {
		known := map[string]bool{}
		for {
			select {
			case <-svc.Updates():
			case <-watchCtx.Done():
				return
			}
			at := time.Now()
			now := map[string]bool{}
			var out []sighting
			for _, inst := range svc.Snapshot().Instances {
				now[inst.ID] = true
				if !known[inst.ID] {
					out = append(out, sighting{id: inst.ID, at: at})
				}
			}
			for id := range known {
				if !now[id] {
					out = append(out, sighting{id: id, removed: true, at: at})
				}
			}
			known = now
			for _, s := range out {
				select {
				case discSeen <- s:
				case <-watchCtx.Done():
					return
				}
			}
		}
	})
	await := func(ch <-chan sighting, id string, removed bool) time.Time {
		timeout := time.NewTimer(10 * time.Second)
		defer timeout.Stop()
		for {
			select {
			case s := <-ch:
				if s.id == id && s.removed == removed {
					return s.at
				}
			case <-timeout.C:
				b.Fatalf("instance %s (removed=%v) not seen within 10 s", id, removed)
			}
		}
	}

	var viaDisc, viaBare []time.Duration
	n := 0
	for b.Loop() {
		for range changes {
			n++
			id := fmt.Sprintf("i-%d", n)
			reg, err := registrar.Register(ctx, writer, "bench", id, registrar.Endpoint{Addr: fmt.Sprintf("127.0.0.1:%d", 10000+n%50000)})
			if err != nil {
				b.Fatal(err)
			}
			await(bareSeen, id, false)
			await(discSeen, id, false)
			start := time.Now()
			if err := reg.Close(ctx); err != nil {
				b.Fatal(err)
			}
			viaBare = append(viaBare, await(bareSeen, id, true).Sub(start))
			viaDisc = append(viaDisc, await(discSeen, id, true).Sub(start))
		}
	}
	dp50, dp99 := percentiles(viaDisc)
	bp50, bp99 := percentiles(viaBare)
	b.ReportMetric(ms(dp50), "p50-ms")
	b.ReportMetric(ms(dp99), "p99-ms")
	b.ReportMetric(ms(bp50), "bare-p50-ms")
	b.ReportMetric(ms(bp99), "bare-p99-ms")
	b.ReportMetric(float64(dp50)/float64(bp50), "ratio-p50")
	b.ReportMetric(float64(dp99)/float64(bp99), "ratio-p99")
}

// BenchmarkLoad10000 measures how long a new discovery client takes to be
// ready with a service of 10,000 instances, against a bare Get of the same
// prefix (and that Get plus decoding every value), alternating in the same
// run.
func BenchmarkLoad10000(b *testing.B) {
	const size = 10000
	srv := etcdtest.New(b)
	ctx := b.Context()
	cli := srv.Client(b)
	for start := 0; start < size; start += 100 {
		ops := make([]clientv3.Op, 0, 100)
		for i := start; i < start+100; i++ {
			ops = append(ops, clientv3.OpPut(registrar.Key("big", fmt.Sprintf("i-%05d", i)),
				fmt.Sprintf(`{"Addr":"127.0.0.1:%d","Metadata":{"version":"v1"}}`, 10000+i)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatalf("fill: %v", err)
		}
	}

	var viaNew, viaGet, viaGetDecode []time.Duration
	for b.Loop() {
		start := time.Now()
		resp, err := cli.Get(ctx, registrar.ServicePrefix("big"), clientv3.WithPrefix())
		viaGet = append(viaGet, time.Since(start))
		if err != nil || len(resp.Kvs) != size {
			b.Fatalf("bare get: %v, %d keys", err, len(resp.Kvs))
		}

		// The bare Get plus the JSON decoding any reader has to do: what is
		// left of the ratio is the client's own overhead.
		start = time.Now()
		resp, err = cli.Get(ctx, registrar.ServicePrefix("big"), clientv3.WithPrefix())
		if err != nil {
			b.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if _, err := registrar.DecodeInstance(kv.Key, kv.Value); err != nil {
				b.Fatal(err)
			}
		}
		viaGetDecode = append(viaGetDecode, time.Since(start))

		start = time.Now()
		svc, err := discovery.New(ctx, cli, "big")
		viaNew = append(viaNew, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		if n := len(svc.Snapshot().Instances); n != size {
			b.Fatalf("discovery ready with %d instances, want %d", n, size)
		}
		svc.Close()
	}
	newP50, _ := percentiles(viaNew)
	getP50, _ := percentiles(viaGet)
	decP50, _ := percentiles(viaGetDecode)
	b.ReportMetric(ms(newP50), "new-p50-ms")
	b.ReportMetric(ms(getP50), "get-p50-ms")
	b.ReportMetric(ms(decP50), "get+decode-p50-ms")
	b.ReportMetric(float64(newP50)/float64(getP50), "ratio-p50")
	b.ReportMetric(float64(newP50)/float64(decP50), "ratio-decode-p50")
}

func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
