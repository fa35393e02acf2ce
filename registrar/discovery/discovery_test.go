package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/discovery"
	"github.com/garrisonhq/garrison/registrar/etcdtest"
)

// fast makes outages visible within a few hundred milliseconds.
var fast = []discovery.Option{
	discovery.WithProbe(100*time.Millisecond, 300*time.Millisecond),
	discovery.WithListTimeout(time.Second),
	discovery.WithRetry(50*time.Millisecond, 200*time.Millisecond),
}

func newService(t *testing.T, cli discovery.Registry, name string, opts ...discovery.Option) *discovery.Service {
	t.Helper()
	svc, err := discovery.New(t.Context(), cli, name, append(slices.Clone(fast), opts...)...)
	if err != nil {
		t.Fatalf("discovery.New(%s): %v", name, err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// waitFor waits on the Service's update channel until cond holds.
func waitFor(t *testing.T, svc *discovery.Service, timeout time.Duration, what string, cond func(discovery.Snapshot) bool) discovery.Snapshot {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		snap := svc.Snapshot()
		if cond(snap) {
			return snap
		}
		select {
		case <-svc.Updates():
		case <-deadline.C:
			t.Fatalf("%s: not within %s; last snapshot %s", what, timeout, describe(svc.Snapshot()))
		}
	}
}

func describe(s discovery.Snapshot) string {
	return fmt.Sprintf("{stale=%v since=%v rev=%d instances=%v}", s.Stale, s.Since.Format(time.TimeOnly), s.Revision, addrs(s))
}

// addrs lists "id=addr" of a snapshot, in id order.
func addrs(s discovery.Snapshot) []string {
	out := make([]string, 0, len(s.Instances))
	for _, inst := range s.Instances {
		out = append(out, inst.ID+"="+inst.Endpoint.Addr)
	}
	return out
}

func has(want ...string) func(discovery.Snapshot) bool {
	return func(s discovery.Snapshot) bool { return slices.Equal(addrs(s), want) }
}

func put(t *testing.T, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	resp, err := cli.Put(t.Context(), key, value)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

func ep(addr string) string { return fmt.Sprintf(`{"Addr":%q,"Metadata":{"v":"1"}}`, addr) }

func TestWatchSeesAddUpdateDeleteAndSkipsOthers(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	put(t, cli, "/service/web/a", ep("127.0.0.1:1001"))
	put(t, cli, "/service/web/bad", "not json")
	put(t, cli, "/service/web/noaddr", `{"Addr":""}`)
	put(t, cli, "/service/web/deep/er", ep("127.0.0.1:1999"))
	put(t, cli, "/service/web2/x", ep("127.0.0.1:2001"))
	put(t, cli, "/service/we", ep("127.0.0.1:2002"))

	svc := newService(t, cli, "web")
	snap := svc.Snapshot()
	if !has("a=127.0.0.1:1001")(snap) || snap.Stale || !snap.Since.IsZero() {
		t.Fatalf("initial listing: %s", describe(snap))
	}
	if snap.Instances[0].Service != "web" || snap.Instances[0].Endpoint.Metadata["v"] != "1" {
		t.Fatalf("instance %+v", snap.Instances[0])
	}

	// Add.
	put(t, cli, "/service/web/b", ep("127.0.0.1:1002"))
	waitFor(t, svc, 5*time.Second, "add b", has("a=127.0.0.1:1001", "b=127.0.0.1:1002"))

	// Entries that are not endpoints of "web", then a sentinel: once the
	// sentinel shows, the others have been through the watch too.
	put(t, cli, "/service/web/c", "{")
	put(t, cli, "/service/web/d", `{"Addr":""}`)
	put(t, cli, "/service/web/e/f", ep("127.0.0.1:1999"))
	put(t, cli, "/service/web2/y", ep("127.0.0.1:2003"))
	put(t, cli, "/service/web2", ep("127.0.0.1:2004"))
	rev := put(t, cli, "/service/web/z", ep("127.0.0.1:1026"))
	snap = waitFor(t, svc, 5*time.Second, "sentinel z", func(s discovery.Snapshot) bool { return s.Revision >= rev })
	if !has("a=127.0.0.1:1001", "b=127.0.0.1:1002", "z=127.0.0.1:1026")(snap) {
		t.Fatalf("after non-endpoint writes: %s", describe(snap))
	}

	// Update.
	put(t, cli, "/service/web/b", ep("127.0.0.1:2222"))
	waitFor(t, svc, 5*time.Second, "update b", has("a=127.0.0.1:1001", "b=127.0.0.1:2222", "z=127.0.0.1:1026"))

	// An instance whose value stops being an endpoint is no longer one.
	put(t, cli, "/service/web/z", "garbage")
	waitFor(t, svc, 5*time.Second, "z overwritten with garbage", has("a=127.0.0.1:1001", "b=127.0.0.1:2222"))

	// Delete.
	if _, err := cli.Delete(t.Context(), "/service/web/a"); err != nil {
		t.Fatal(err)
	}
	snap = waitFor(t, svc, 5*time.Second, "delete a", has("b=127.0.0.1:2222"))
	if snap.Stale {
		t.Fatalf("stale with etcd up: %s", describe(snap))
	}
	if _, err := cli.Delete(t.Context(), "/service/web/b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, svc, 5*time.Second, "delete b", has())
	if _, err := svc.Pick(); !errors.Is(err, discovery.ErrNoEndpoints) {
		t.Fatalf("Pick on an empty service: %v, want ErrNoEndpoints", err)
	}
}

func TestPickRoundRobinAndClose(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	for i := range 3 {
		put(t, cli, fmt.Sprintf("/service/rr/i-%d", i), ep(fmt.Sprintf("127.0.0.1:%d", 1000+i)))
	}
	svc := newService(t, cli, "rr")
	var got []string
	for range 6 {
		inst, err := svc.Pick()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, inst.ID)
	}
	if want := []string{"i-0", "i-1", "i-2", "i-0", "i-1", "i-2"}; !slices.Equal(got, want) {
		t.Fatalf("picks %v, want %v", got, want)
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := len(svc.Snapshot().Instances); n != 3 {
		t.Fatalf("snapshot after Close has %d instances", n)
	}
}

func TestNewRejectsBadServiceName(t *testing.T) {
	srv := etcdtest.New(t)
	if _, err := discovery.New(t.Context(), srv.Client(t), "a/b"); err == nil {
		t.Fatal("New accepted service name a/b")
	}
}

// TestServesStaleWhileEtcdIsDownAndResyncs is the registry issue's
// acceptance test: a 20 s outage of an external etcd.
func TestServesStaleWhileEtcdIsDownAndResyncs(t *testing.T) {
	srv := etcdtest.New(t)
	ctx := t.Context()
	regs := make([]*registrar.Registration, 3)
	for i := range regs {
		reg, err := registrar.Register(ctx, srv.Client(t), "web", fmt.Sprintf("i-%d", i),
			registrar.Endpoint{Addr: fmt.Sprintf("127.0.0.1:%d", 31000+i)}, registrar.WithTTL(10*time.Second))
		if err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
		regs[i] = reg
		t.Cleanup(func() {
			closeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			reg.Close(closeCtx)
		})
	}
	want := has("i-0=127.0.0.1:31000", "i-1=127.0.0.1:31001", "i-2=127.0.0.1:31002")
	svc := newService(t, srv.Client(t), "web")
	waitFor(t, svc, 5*time.Second, "three instances", want)

	srv.Stop()
	stopped := time.Now()
	snap := waitFor(t, svc, 2*time.Second, "stale after etcd stopped", func(s discovery.Snapshot) bool {
		if !want(s) {
			t.Fatalf("lost instances right after etcd stopped: %s", describe(s))
		}
		return s.Stale
	})
	t.Logf("stale %s after etcd stopped", snap.Since.Sub(stopped).Round(time.Millisecond))
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	checks := 0
	for time.Since(stopped) < 20*time.Second {
		<-tick.C
		s := svc.Snapshot()
		if !want(s) || !s.Stale || !s.Since.Equal(snap.Since) {
			t.Fatalf("%s into the outage: %s, want the 3 instances, stale since %s", time.Since(stopped).Round(time.Millisecond), describe(s), snap.Since.Format(time.TimeOnly))
		}
		if inst, err := svc.Pick(); err != nil {
			t.Fatalf("pick during the outage: %v (%+v)", err, inst)
		}
		checks++
	}
	t.Logf("%d checks during the outage: 3 stale instances each time", checks)

	if err := srv.Restart(); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	answering := time.Now()
	waitFor(t, svc, 5*time.Second, "fresh again after etcd came back", func(s discovery.Snapshot) bool { return !s.Stale && want(s) })
	t.Logf("fresh %s after etcd answered", time.Since(answering).Round(time.Millisecond))

	// Every registration holds its key under a live lease of its own again.
	check := srv.Client(t)
	var why string
	for {
		why = ""
		for _, reg := range regs {
			if why = registeredWhy(ctx, check, reg); why != "" {
				break
			}
		}
		if why == "" {
			break
		}
		if time.Since(answering) > 5*time.Second {
			t.Fatalf("registrations not back within 5 s of etcd answering: %s", why)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond): // polling etcd, which has no event for "lease kept alive"
		}
	}
	t.Logf("all registrations back %s after etcd answered", time.Since(answering).Round(time.Millisecond))
}

// registeredWhy says why reg is not registered under a live lease, or "".
func registeredWhy(ctx context.Context, cli *clientv3.Client, reg *registrar.Registration) string {
	lease := reg.Lease()
	if lease == 0 {
		return reg.Key() + ": registration holds no lease"
	}
	resp, err := cli.Get(ctx, reg.Key())
	if err != nil || len(resp.Kvs) != 1 {
		return fmt.Sprintf("%s: get: %v (%d keys)", reg.Key(), err, len(resp.Kvs))
	}
	if got := clientv3.LeaseID(resp.Kvs[0].Lease); got != lease {
		return fmt.Sprintf("%s: bound to lease %x, registration holds %x", reg.Key(), int64(got), int64(lease))
	}
	ttl, err := cli.TimeToLive(ctx, lease)
	if err != nil || ttl.TTL <= 0 {
		return fmt.Sprintf("%s: lease %x not live: %v, ttl %+v", reg.Key(), int64(lease), err, ttl)
	}
	return ""
}

// TestResyncSeesChangesMadeWhileCutOff cuts the discovery client off etcd
// (a proxy that drops its connections), changes the service and compacts
// the history meanwhile, then reconnects: the deletion must be seen.
func TestResyncSeesChangesMadeWhileCutOff(t *testing.T) {
	srv := etcdtest.New(t)
	direct := srv.Client(t)
	for _, id := range []string{"a", "b", "c"} {
		put(t, direct, "/service/api/"+id, ep("127.0.0.1:1"+id))
	}
	proxy := newCutProxy(t, srv.Endpoints[0])
	viaProxy, err := registrar.NewClient([]string{"http://" + proxy.addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { viaProxy.Close() })
	svc := newService(t, viaProxy, "api")
	all := has("a=127.0.0.1:1a", "b=127.0.0.1:1b", "c=127.0.0.1:1c")
	waitFor(t, svc, 5*time.Second, "three instances", all)

	proxy.cut(true)
	waitFor(t, svc, 5*time.Second, "stale once cut off", func(s discovery.Snapshot) bool {
		if !all(s) {
			t.Fatalf("lost instances when cut off: %s", describe(s))
		}
		return s.Stale
	})
	if _, err := direct.Delete(t.Context(), "/service/api/b"); err != nil {
		t.Fatal(err)
	}
	rev := put(t, direct, "/service/api/d", ep("127.0.0.1:1d"))
	if _, err := direct.Compact(t.Context(), rev); err != nil {
		t.Fatal(err)
	}
	if s := svc.Snapshot(); !all(s) || !s.Stale {
		t.Fatalf("while cut off: %s", describe(s))
	}

	proxy.cut(false)
	waitFor(t, svc, 10*time.Second, "resynced after reconnect", func(s discovery.Snapshot) bool {
		return !s.Stale && has("a=127.0.0.1:1a", "c=127.0.0.1:1c", "d=127.0.0.1:1d")(s)
	})
}

// cutProxy forwards TCP to etcd until cut: then it drops every connection
// and closes new ones at once, as a network partition would.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	isCut  bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, targetURL string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := targetURL[len("http://"):]
	p := &cutProxy{t: t, ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut(true)
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) cut(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = on
	if on {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isCut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *cutProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	c.Close()
}

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(in) {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil || !p.track(out) {
			if out != nil {
				out.Close()
			}
			p.untrack(in)
			continue
		}
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			io.Copy(dst, src)
			p.untrack(dst)
			p.untrack(src)
		}
		go pipe(out, in)
		go pipe(in, out)
	}
}

func TestServiceReportsReachTheWeightedPicker(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	put(t, cli, "/service/wp/bad", ep("127.0.0.1:1001"))
	put(t, cli, "/service/wp/good", ep("127.0.0.1:1002"))
	svc := newService(t, cli, "wp", discovery.WithPicker(discovery.NewWeighted()))
	svc.Report("127.0.0.1:1001", time.Millisecond, errors.New("connection refused"))
	svc.Report("127.0.0.1:1002", time.Millisecond, nil)
	for range 20 {
		inst, err := svc.Pick()
		if err != nil {
			t.Fatal(err)
		}
		if inst.ID != "good" {
			t.Fatalf("picked %s right after it failed", inst.ID)
		}
	}
}
