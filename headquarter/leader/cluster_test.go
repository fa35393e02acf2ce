package leader_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/garrisonhq/garrison/internal/testport"
)

// cluster is a three-member etcd cluster of embedded servers on loopback.
// Raft traffic between members goes through one proxy per member (its
// advertised peer URL), which lets a test cut a member off from the others
// while its clients still reach it, as a network partition does.
type cluster struct {
	members []*embed.Etcd
	// Endpoints[i] is member i's client URL.
	Endpoints []string
	net       *partition
}

const clusterSize = 3

// newCluster starts the cluster. The proxies bind port 0; the members'
// own ports are reserved with testport, and the whole start is retried on
// new ports should one be taken by something outside the tests anyway.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	p := &partition{ids: map[string]int{}, cut: map[int]bool{}}
	p.gen, p.cancelGen = context.WithCancel(context.Background())
	proxies := make([]string, clusterSize)
	targets := make([]*proxyTarget, clusterSize)
	for i := range clusterSize {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("proxy listen: %v", err)
		}
		targets[i] = &proxyTarget{}
		srv := &http.Server{Handler: p.handler(i, targets[i]), ErrorLog: log.New(io.Discard, "", 0)}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		proxies[i] = "http://" + l.Addr().String()
	}
	for attempt := 1; ; attempt++ {
		c, err := startMembers(t, proxies, targets)
		if err == nil {
			c.net = p
			for i, m := range c.members {
				p.setID(m.Server.MemberID().String(), i)
			}
			t.Cleanup(func() {
				p.cancelGen()
				// All at once: a member stopped after the others lost
				// quorum would wait for raft timeouts.
				var wg sync.WaitGroup
				for _, m := range c.members {
					wg.Go(m.Close)
				}
				wg.Wait()
			})
			return c
		}
		if !(errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")) || attempt == 5 {
			t.Fatalf("start etcd cluster (attempt %d): %v", attempt, err)
		}
		t.Logf("etcd cluster start attempt %d: %v; retrying on new ports", attempt, err)
	}
}

func startMembers(t *testing.T, proxies []string, targets []*proxyTarget) (*cluster, error) {
	dir := t.TempDir()
	var initial []string
	for i, p := range proxies {
		initial = append(initial, fmt.Sprintf("m%d=%s", i, p))
	}
	c := &cluster{}
	fail := func(err error) (*cluster, error) {
		for _, m := range c.members {
			m.Close()
		}
		return nil, err
	}
	for i := range clusterSize {
		ports := testport.Take(t, 2)
		client := mustURL(fmt.Sprintf("http://127.0.0.1:%d", ports[0]))
		peer := mustURL(fmt.Sprintf("http://127.0.0.1:%d", ports[1]))
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.ListenClientUrls = []url.URL{*client}
		cfg.AdvertiseClientUrls = []url.URL{*client}
		cfg.ListenPeerUrls = []url.URL{*peer}
		cfg.AdvertisePeerUrls = []url.URL{*mustURL(proxies[i])}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "garrison-leader-test"
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		targets[i].set(peer)
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			return fail(fmt.Errorf("member %d: %w", i, err))
		}
		c.members = append(c.members, e)
		c.Endpoints = append(c.Endpoints, client.String())
	}
	for i, m := range c.members {
		select {
		case <-m.Server.ReadyNotify():
		case err := <-m.Err():
			return fail(fmt.Errorf("member %d: %w", i, err))
		case <-time.After(60 * time.Second):
			return fail(fmt.Errorf("member %d not ready after 60s", i))
		}
	}
	return c, nil
}

// Client returns a client that talks to member i only.
func (c *cluster) Client(t *testing.T, i int) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{c.Endpoints[i]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client for member %d: %v", i, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Isolate cuts member i off from the other members; Heal reconnects all.
func (c *cluster) Isolate(i int) { c.net.set(map[int]bool{i: true}) }
func (c *cluster) Heal()         { c.net.set(map[int]bool{}) }

// partition decides which raft messages the proxies pass. rafthttp names
// the sending member in every request (X-Server-From), so a proxy can drop
// a cut-off member's requests to others as well as others' requests to it.
type partition struct {
	mu        sync.Mutex
	ids       map[string]int // member ID -> index
	cut       map[int]bool
	gen       context.Context // cancelled on each change: in-flight streams end
	cancelGen context.CancelFunc
}

func (p *partition) setID(id string, i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids[id] = i
}

func (p *partition) set(cut map[int]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	p.cancelGen()
	p.gen, p.cancelGen = context.WithCancel(context.Background())
}

func (p *partition) handler(self int, target *proxyTarget) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		from, known := p.ids[r.Header.Get("X-Server-From")]
		blocked := p.cut[self] || (known && p.cut[from])
		gen := p.gen
		p.mu.Unlock()
		if blocked {
			http.Error(w, "partitioned", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(gen, cancel)
		defer stop()
		target.proxy().ServeHTTP(w, r.WithContext(ctx))
	})
}

// proxyTarget is a member's own peer listener, set on each start attempt.
type proxyTarget struct {
	mu sync.Mutex
	rp *httputil.ReverseProxy
}

func (pt *proxyTarget) set(u *url.URL) {
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // raft streams
	rp.ErrorLog = log.New(io.Discard, "", 0)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	pt.rp = rp
}

func (pt *proxyTarget) proxy() *httputil.ReverseProxy {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.rp
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
