// Package smtptest runs a real SMTP server for tests: aiosmtpd (Debian's
// python3-aiosmtpd, installed by scripts/test-deps.sh) on 127.0.0.1,
// with STARTTLS (a certificate made for the test) and AUTH when asked,
// delivering every message to a Maildir the test reads.
package smtptest

import (
	"bufio"
	_ "embed"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/certtest"
)

//go:embed smtpd.py
var script []byte

// Python is Debian's interpreter, the one python3-aiosmtpd installs for.
const Python = "/usr/bin/python3"

// Options choose what the server asks of its clients.
type Options struct {
	// TLS makes STARTTLS required, with a certificate for 127.0.0.1.
	TLS bool
	// User and Password require AUTH (PLAIN or LOGIN) with them.
	User, Password string
}

// Server is a running aiosmtpd.
type Server struct {
	// Addr is its host:port.
	Addr string
	// CA is the PEM file of the CA its certificate is from (with TLS).
	CA      string
	maildir string
}

// Start runs a server until the test ends. It fails the test when
// aiosmtpd is missing: the test set-up installs it.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	dir := t.TempDir()
	py := filepath.Join(dir, "smtpd.py")
	if err := os.WriteFile(py, script, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Server{maildir: filepath.Join(dir, "Maildir")}
	args := []string{py, "--maildir", s.maildir}
	if o.TLS {
		f := certtest.New(t, "smtptest-client")
		s.CA = f.CA
		args = append(args, "--cert", f.ServerCert, "--key", f.ServerKey)
	}
	if o.User != "" {
		args = append(args, "--user", o.User, "--password", o.Password)
	}
	cmd := exec.Command(Python, args...)
	// Dies with the test binary, whatever ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start aiosmtpd (%s; scripts/test-deps.sh installs python3-aiosmtpd): %v", Python, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	port := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		port <- strings.TrimSpace(line)
	}()
	select {
	case p := <-port:
		if p == "" {
			cmd.Wait()
			t.Fatalf("aiosmtpd did not start (scripts/test-deps.sh installs python3-aiosmtpd): %s", stderr.String())
		}
		s.Addr = net.JoinHostPort("127.0.0.1", p)
	case <-time.After(time.Minute):
		t.Fatalf("aiosmtpd printed no port in a minute: %s", stderr.String())
	}
	return s
}

// Messages are the messages delivered so far, oldest first.
func (s *Server) Messages(t testing.TB) []*mail.Message {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.maildir, "new", "*"))
	type msg struct {
		m  *mail.Message
		at time.Time
	}
	var ms []msg
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(fh)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		st, _ := fh.Stat()
		ms = append(ms, msg{m, st.ModTime()})
		t.Cleanup(func() { fh.Close() })
	}
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].at.Before(ms[j].at) })
	out := make([]*mail.Message, len(ms))
	for i, m := range ms {
		out[i] = m.m
	}
	return out
}
