package etcdtest

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/registrar"
)

// Cluster is an etcd cluster of embedded members on loopback, for tests of
// what several headquarters sharing one etcd do.
type Cluster struct {
	// Endpoints[i] is member i's client URL.
	Endpoints []string
}

// NewCluster starts an n-member cluster in t.TempDir() and stops it with
// the test. Its ports are reserved with testport; should one be taken
// anyway, the whole start is retried on new ones.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	var err error
	for attempt := range startAttempts {
		var members []*embed.Etcd
		var c *Cluster
		members, c, err = startCluster(t, n, attempt)
		if err == nil {
			t.Cleanup(func() {
				// All at once: a member stopped after the others lost
				// quorum would wait for raft timeouts.
				var wg sync.WaitGroup
				for _, m := range members {
					wg.Go(m.Close)
				}
				wg.Wait()
			})
			return c
		}
		if !addrInUse(err) {
			break
		}
	}
	t.Fatalf("start etcd cluster of %d: %v", n, err)
	return nil
}

func startCluster(t testing.TB, n, attempt int) ([]*embed.Etcd, *Cluster, error) {
	dir := filepath.Join(t.TempDir(), fmt.Sprintf("cluster-%d", attempt))
	clients := make([]url.URL, n)
	peers := make([]url.URL, n)
	var initial []string
	for i := range n {
		ports := testport.Take(t, 2)
		clients[i] = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])}
		peers[i] = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peers[i].String()))
	}
	var members []*embed.Etcd
	fail := func(err error) ([]*embed.Etcd, *Cluster, error) {
		for _, m := range members {
			m.Close()
		}
		return nil, nil, err
	}
	c := &Cluster{}
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.ListenClientUrls = []url.URL{clients[i]}
		cfg.AdvertiseClientUrls = []url.URL{clients[i]}
		cfg.ListenPeerUrls = []url.URL{peers[i]}
		cfg.AdvertisePeerUrls = []url.URL{peers[i]}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = fmt.Sprintf("garrison-test-%d", attempt)
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			return fail(fmt.Errorf("member %d: %w", i, err))
		}
		members = append(members, e)
		c.Endpoints = append(c.Endpoints, clients[i].String())
	}
	for i, m := range members {
		select {
		case <-m.Server.ReadyNotify():
		case err := <-m.Err():
			return fail(fmt.Errorf("member %d: %w", i, err))
		case <-time.After(60 * time.Second):
			return fail(errors.New("member not ready after 60s"))
		}
	}
	return members, c, nil
}

// Client returns a client of the whole cluster, closed with the test.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := registrar.NewClient(c.Endpoints)
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
