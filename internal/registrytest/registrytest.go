// Package registrytest runs Debian's docker-registry (the distribution
// registry) for tests, on 127.0.0.1 with a port the registry picks itself
// (it listens on port 0 and logs the address), so no two tests race for a
// port. A loopback registry is one the Docker engine pushes to without TLS
// by default.
package registrytest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// Binary is Debian's docker-registry; `make test` installs it.
const Binary = "/usr/bin/docker-registry"

var listeningRE = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

// Start runs a registry with its storage in t.TempDir() and returns its
// address (host:port); it stops with the test.
func Start(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("registry: %v (run `make test`, which installs docker-registry)", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n", filepath.Join(dir, "data"))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Binary, "serve", cfg)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", Binary, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr := make(chan string, 1)
	logFile, _ := os.Create(filepath.Join(dir, "registry.log"))
	go func() {
		defer logFile.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-exited:
		t.Fatalf("docker-registry exited while starting (log in %s)", dir)
	case <-time.After(30 * time.Second):
		t.Fatalf("docker-registry did not say where it listens within 30s (log in %s)", dir)
	}
	return ""
}
