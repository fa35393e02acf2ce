// Package etcdtest starts real etcd servers for tests: the embedded server
// (etcd's own code, in-process) and Debian's etcd binary as a separate
// process that a test can stop and start again to simulate an outage. Both
// listen on 127.0.0.1 only and are torn down with the test.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/internal/etcdembed"
	"github.com/garrisonhq/garrison/registrar"
)

// Server is an etcd a test can talk to.
type Server struct {
	// Endpoints are the client URLs.
	Endpoints []string
	t         testing.TB
	embedded  *etcdembed.Server
	external  *exec.Cmd
	dataDir   string
	peerURL   string
	exited    chan struct{}
}

// New starts an embedded etcd server in t.TempDir() on free loopback ports.
func New(t testing.TB) *Server {
	t.Helper()
	ports := freePorts(t, 2)
	dir := t.TempDir()
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	srv, err := etcdembed.Start(context.Background(), etcdembed.Config{
		DataDir:   filepath.Join(dir, "etcd"),
		ClientURL: client,
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
	})
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	s := &Server{Endpoints: []string{client}, t: t, embedded: srv}
	t.Cleanup(srv.Close)
	return s
}

// EtcdBinary is Debian's etcd-server binary; `make test` installs it.
const EtcdBinary = "/usr/bin/etcd"

// NewExternal starts Debian's etcd as a separate process. A missing binary
// fails the test: the test set-up installs it, so CI never skips this path.
func NewExternal(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(EtcdBinary); err != nil {
		t.Fatalf("external etcd: %v (run `make test`, which installs etcd-server)", err)
	}
	ports := freePorts(t, 2)
	s := &Server{
		Endpoints: []string{fmt.Sprintf("http://127.0.0.1:%d", ports[0])},
		t:         t,
		dataDir:   filepath.Join(t.TempDir(), "etcd"),
		peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
	}
	s.Start()
	t.Cleanup(func() {
		if s.external != nil {
			s.Stop()
		}
	})
	return s
}

// Start (re)starts the external etcd process on the same ports and data
// directory, and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	if s.embedded != nil {
		s.t.Fatal("etcdtest: Start is only for external servers")
	}
	cmd := exec.Command(EtcdBinary,
		"--name", "test",
		"--data-dir", s.dataDir,
		"--listen-client-urls", s.Endpoints[0],
		"--advertise-client-urls", s.Endpoints[0],
		"--listen-peer-urls", s.peerURL,
		"--initial-advertise-peer-urls", s.peerURL,
		"--initial-cluster", "test="+s.peerURL,
		"--log-level", "error",
	)
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
	logFile, err := os.Create(filepath.Join(filepath.Dir(s.dataDir), fmt.Sprintf("etcd-%d.log", time.Now().UnixNano())))
	if err != nil {
		s.t.Fatalf("etcd log: %v", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", EtcdBinary, err)
	}
	s.external = cmd
	s.exited = make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(s.exited) }()
	s.waitReady(30 * time.Second)
}

// Stop ends the external etcd process (SIGTERM, then SIGKILL).
func (s *Server) Stop() {
	s.t.Helper()
	if s.external == nil {
		return
	}
	s.external.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.external.Process.Kill()
		<-s.exited
	}
	s.external = nil
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

func (s *Server) waitReady(timeout time.Duration) {
	s.t.Helper()
	cli, err := registrar.NewClient(s.Endpoints)
	if err != nil {
		s.t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health-probe")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("etcd exited while starting (log in %s)", filepath.Dir(s.dataDir))
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("etcd at %v not ready after %s: %v", s.Endpoints, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ls := make([]net.Listener, n)
	ports := make([]int, n)
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ls[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
