// Package etcdtest starts real etcd servers for tests: the embedded server
// (etcd's own code, in-process) and Debian's etcd binary as a separate
// process that a test can stop and start again to simulate an outage (the
// registrar module's etcdtest, which services' tests use too). Both listen
// on 127.0.0.1 only and are torn down with the test.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/internal/etcdembed"
	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/registrar"
	external "github.com/garrisonhq/garrison/registrar/etcdtest"
)

// Server is an etcd a test can talk to.
type Server struct {
	// Endpoints are the client URLs.
	Endpoints []string
	t         testing.TB
	external  *external.Server
}

// startAttempts bounds the retries of an embedded start whose probed ports
// were taken before etcd bound them.
const startAttempts = 10

// New starts an embedded etcd server in t.TempDir() on free loopback ports.
// etcd must be told its ports; testport reserves them, and should anything
// outside the tests still take one first, the start is retried on new ones.
func New(t testing.TB) *Server {
	t.Helper()
	var err error
	for attempt := range startAttempts {
		ports := testport.Take(t, 2)
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		var srv *etcdembed.Server
		srv, err = etcdembed.Start(context.Background(), etcdembed.Config{
			DataDir:   filepath.Join(t.TempDir(), fmt.Sprintf("etcd-%d", attempt)),
			ClientURL: client,
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		})
		if err == nil {
			t.Cleanup(srv.Close)
			return &Server{Endpoints: []string{client}, t: t}
		}
		if !addrInUse(err) {
			break
		}
	}
	t.Fatalf("start embedded etcd: %v", err)
	return nil
}

// NewExternal starts Debian's etcd as a separate process (the registrar
// module's etcdtest). A missing binary fails the test: the test set-up
// installs it, so CI never skips this path.
func NewExternal(t testing.TB) *Server {
	t.Helper()
	ext := external.New(t)
	return &Server{Endpoints: ext.Endpoints, t: t, external: ext}
}

// Start starts a stopped external etcd again on the same ports and data
// directory, and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	if s.external == nil {
		s.t.Fatal("etcdtest: Start is only for external servers")
	}
	if err := s.external.Restart(); err != nil {
		s.t.Fatalf("restart etcd: %v", err)
	}
}

// Stop ends the external etcd process (SIGTERM, then SIGKILL).
func (s *Server) Stop() {
	s.t.Helper()
	if s.external == nil {
		s.t.Fatal("etcdtest: Stop is only for external servers")
	}
	s.external.Stop()
}

// Client returns a client for the server, closed with the test.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := registrar.NewClient(s.Endpoints)
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// addrInUse tells a bind failure, which a retry on other ports cures, from
// any other failure to start. etcd does not always wrap the syscall error.
func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}
