// Package etcdtest runs a real etcd server as a separate process for the
// tests of services that use the registrar (and for the registrar's own):
// Debian's etcd-server binary, listening on 127.0.0.1 only, with its data in
// a directory the test owns. A test can stop it and start it again on the
// same ports and data to simulate an outage.
//
// Only the standard library and the etcd client are imported, so a service
// that uses this package in its tests pulls no etcd server code.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
)

// Binary is the etcd executable: $ETCD_BINARY when set, else Debian's
// /usr/bin/etcd (package etcd-server).
func Binary() string {
	if b := os.Getenv("ETCD_BINARY"); b != "" {
		return b
	}
	return "/usr/bin/etcd"
}

// ReadyTimeout bounds how long a start waits for etcd to answer; generous,
// because a loaded machine can take many seconds to start a process.
const ReadyTimeout = 60 * time.Second

// portAttempts is how many fresh port pairs a first start tries: etcd must
// be given its ports, so they are probed free and can be taken by someone
// else before etcd binds them; such a start is retried on new ports.
const portAttempts = 10

// Server is one etcd process.
type Server struct {
	// Endpoints are the client URLs.
	Endpoints []string
	dir       string
	name      string // unique, so a client can tell this etcd from another on a reused port
	peerURL   string
	cmd       *exec.Cmd
	exited    chan struct{}
	logPath   string
}

// Start runs etcd with its data and logs under dir, on free loopback ports,
// and returns once it answers. Stop it with Stop.
func Start(dir string) (*Server, error) {
	if _, err := os.Stat(Binary()); err != nil {
		return nil, fmt.Errorf("etcd binary: %w (install Debian's etcd-server, e.g. `make test-deps`, or set ETCD_BINARY)", err)
	}
	var lastErr error
	for range portAttempts {
		ports, err := registrar.FreePorts(2)
		if err != nil {
			return nil, err
		}
		s := &Server{
			Endpoints: []string{fmt.Sprintf("http://127.0.0.1:%d", ports[0])},
			dir:       dir,
			name:      fmt.Sprintf("test-%d-%d", os.Getpid(), time.Now().UnixNano()),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		}
		lastErr = s.run()
		if lastErr == nil {
			return s, nil
		}
		if !errors.Is(lastErr, syscall.EADDRINUSE) {
			return nil, lastErr
		}
		// A first start has no data yet worth keeping: the next attempt
		// starts afresh, as a member whose peer URL it records.
		os.RemoveAll(s.dataDir())
	}
	return nil, fmt.Errorf("etcd: no free ports after %d attempts: %w", portAttempts, lastErr)
}

// New starts etcd in t.TempDir() and stops it when the test ends. A missing
// binary fails the test rather than skipping it.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := Start(t.TempDir())
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// Restart starts a stopped server again on the same ports and data. When
// something else took one of its ports meanwhile, it retries until
// ReadyTimeout ends.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return errors.New("etcd: Restart of a running server")
	}
	deadline := time.Now().Add(ReadyTimeout)
	for {
		err := s.run()
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop ends the etcd process (SIGTERM, then SIGKILL after 10 s). Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Client returns a registrar client of the server, closed with the test.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := registrar.NewClient(s.Endpoints)
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "etcd") }

// run starts the process and waits until it answers. An error wraps
// syscall.EADDRINUSE when etcd could not bind one of its ports.
func (s *Server) run() error {
	cmd := exec.Command(Binary(),
		"--name", s.name,
		"--data-dir", s.dataDir(),
		"--listen-client-urls", s.Endpoints[0],
		"--advertise-client-urls", s.Endpoints[0],
		"--listen-peer-urls", s.peerURL,
		"--initial-advertise-peer-urls", s.peerURL,
		"--initial-cluster", s.name+"="+s.peerURL,
		"--log-level", "error",
	)
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
	s.logPath = filepath.Join(s.dir, fmt.Sprintf("etcd-%d.log", time.Now().UnixNano()))
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return fmt.Errorf("etcd log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", Binary(), err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	if err := s.waitReady(); err != nil {
		s.Stop()
		return err
	}
	return nil
}

func (s *Server) waitReady() error {
	cli, err := registrar.NewClient(s.Endpoints)
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		members, err := cli.MemberList(ctx)
		cancel()
		if err == nil {
			// Another test's etcd may have bound the probed port first; then
			// this one fails to bind it and the answer is not its own.
			if len(members.Members) != 1 || members.Members[0].Name != s.name {
				return fmt.Errorf("etcd on %s is another server: %w", s.Endpoints[0], syscall.EADDRINUSE)
			}
			return nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(s.logPath)
			if strings.Contains(string(log), "address already in use") {
				return fmt.Errorf("etcd on %s / %s: %w", s.Endpoints[0], s.peerURL, syscall.EADDRINUSE)
			}
			return fmt.Errorf("etcd exited while starting; its log %s:\n%s", s.logPath, tail(log, 2000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd at %v not ready after %s: %w", s.Endpoints, ReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Main starts one etcd for a whole test binary, for what has no *testing.T
// to start its own (runnable examples), sets *endpoints to its client URLs,
// runs the tests and exits with their status. Call it from TestMain.
func Main(m *testing.M, endpoints *[]string) {
	os.Exit(runMain(m, endpoints))
}

func runMain(m *testing.M, endpoints *[]string) int {
	dir, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, err := Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest:", err)
		return 1
	}
	defer s.Stop()
	*endpoints = s.Endpoints
	return m.Run()
}
