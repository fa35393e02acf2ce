package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/certtest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// TestCLIOverTLS follows the README with --tls-cert on: the client
// reaches garrison with --addr https://... and, for a private CA,
// SSL_CERT_FILE; the two ways a newcomer gets it wrong (the default
// http:// address, a CA this machine does not trust) say what to set
// instead of "400 Client sent an HTTP request to an HTTPS server".
func TestCLIOverTLS(t *testing.T) {
	certs := certtest.New(t, "client")
	addrs := freeAddrs(t, 2)
	startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", t.TempDir(),
		"--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey, "--auth-token", "tok")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GARRISON_") && !strings.HasPrefix(kv, "SSL_CERT_") {
			env = append(env, kv)
		}
	}
	run := func(extraEnv []string, args ...string) (int, string) {
		cmd := exec.Command(garrisonBinary, append([]string{"--token", "tok"}, args...)...)
		cmd.Env = append(append([]string{}, env...), extraEnv...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	}
	trusted := []string{"SSL_CERT_FILE=" + certs.CA}
	poll.True(t, 60*time.Second, "garrison answers over HTTPS", func() bool {
		code, _ := run(trusted, "--addr", "https://"+addrs[0], "apps", "ls")
		return code == 0
	})
	if code, out := run(trusted, "--addr", "https://"+addrs[0], "apps", "ls"); code != 0 || !strings.Contains(out, "ID") {
		t.Fatalf("apps ls over https with SSL_CERT_FILE: exit %d\n%s", code, out)
	}
	if code, out := run(trusted, "--addr", addrs[0], "apps", "ls"); code != 1 || !strings.Contains(out, "set --addr https://") {
		t.Errorf("apps ls with a plain host:port: exit %d, want 1 and a hint to use https://\n%s", code, out)
	}
	if code, out := run(nil, "--addr", "https://"+addrs[0], "apps", "ls"); code != 1 || !strings.Contains(out, "SSL_CERT_FILE") {
		t.Errorf("apps ls without the CA: exit %d, want 1 and a hint at SSL_CERT_FILE\n%s", code, out)
	}
}
