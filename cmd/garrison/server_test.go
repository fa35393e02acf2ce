package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/certtest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// call sends method url with an optional body and Authorization header and
// returns the status and body; a transport error fails the test.
func call(t *testing.T, c *http.Client, method, url, body, authz string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUpServesTLSWithAuthOnEveryRoute: --tls-cert/--tls-key serve the API
// over HTTPS only, and with --auth-user/--auth-password an unauthenticated
// PUT /api/v1/rules (which scaled apps before) is refused, as are /metrics
// and the registry; /ping and /health stay open.
func TestUpServesTLSWithAuthOnEveryRoute(t *testing.T) {
	certs := certtest.New(t, "client")
	addrs := freeAddrs(t, 2)
	startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", t.TempDir(),
		"--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey, "--auth-user", "ops", "--auth-password", "pw")
	tlsCfg := certs.ClientTLS(t)
	tlsCfg.Certificates = nil
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	base := "https://" + addrs[0]
	poll.True(t, 60*time.Second, "garrison answers over HTTPS", func() bool {
		resp, err := c.Get(base + "/ping")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if code, body := call(t, c, "GET", base+"/health", "", ""); code != http.StatusOK || !strings.Contains(body, `"writes":"ok"`) {
		t.Fatalf("/health: %d %s", code, body)
	}
	const basic = "Basic b3BzOnB3" // ops:pw
	rules := `{"rules":[{"app":"/web","min":4,"max":4,"up":{"qps":100},"down":{"qps":10}}]}`
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/api/v1/rules", rules},
		{"GET", "/api/v1/rules", ""},
		{"GET", "/api/v1/decisions", ""},
		{"GET", "/api/v1/services", ""},
		{"GET", "/api/v1/prometheus/sd", ""},
		{"GET", "/metrics", ""},
		{"GET", "/v2/apps", ""},
		{"POST", "/v2/apps", `{"id":"/web","cmd":"sleep 1000","instances":0}`},
	} {
		if code, body := call(t, c, tc.method, base+tc.path, tc.body, ""); code != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials: %d %s", tc.method, tc.path, code, body)
		}
	}
	if code, body := call(t, c, "GET", base+"/api/v1/rules", "", basic); code != http.StatusOK || strings.Contains(body, "/web") {
		t.Fatalf("rules after an unauthenticated PUT: %d %s", code, body)
	}
	if code, body := call(t, c, "GET", base+"/metrics", "", basic); code != http.StatusOK || !strings.Contains(body, "garrison_build_info") {
		t.Fatalf("/metrics with credentials: %d", code)
	}
	if code, body := call(t, c, "GET", base+"/v2/apps", "", basic); code != http.StatusOK {
		t.Fatalf("/v2/apps with credentials: %d %s", code, body)
	}
	// Plain HTTP on the TLS port gets net/http's 400, never the API.
	if code, body := call(t, http.DefaultClient, "GET", "http://"+addrs[0]+"/ping", "", ""); code != http.StatusBadRequest {
		t.Fatalf("plain HTTP to the TLS port: %d %s", code, body)
	}
}

// TestUpRefusesBadSettingsBeforeStarting: settings that cannot work fail
// with exit code 2 and a message naming them, before etcd starts (its data
// directory is never created).
func TestUpRefusesBadSettingsBeforeStarting(t *testing.T) {
	addrs := freeAddrs(t, 2)
	md5Users := filepath.Join(t.TempDir(), "users")
	os.WriteFile(md5Users, []byte("mei:$apr1$x$y\n"), 0o600)
	for _, tc := range []struct {
		name   string
		args   []string
		want   string
		reject string
	}{
		{"user without password", []string{"--auth-user", "ops"}, "--auth-user is set without --auth-password", ""},
		{"password without user", []string{"--auth-password", "pw"}, "--auth-password is set without --auth-user", ""},
		{"reversed task ports", []string{"--task-ports", "5-3"}, `--task-ports "5-3"`, ""},
		{"nonsense addr", []string{"--addr", "nonsense"}, `--addr "nonsense": want host:port`, "another garrison"},
		{"tls cert without key", []string{"--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together", ""},
		{"etcd TLS without --etcd", []string{"--etcd-cacert", "ca.pem"}, "apply to an external etcd: set --etcd", ""},
		{"etcd user without password", []string{"--etcd", "http://127.0.0.1:1", "--etcd-user", "root"}, "--etcd-user and --etcd-password go together", ""},
		{"quota not a size", []string{"--etcd-quota-bytes", "lots"}, `"lots": want a number of bytes`, ""},
		{"users file of MD5 hashes", []string{"--auth-users-file", md5Users}, md5Users + `:1: user "mei": not a bcrypt hash`, ""},
		{"approver who is no user", []string{"--auth-user", "ops", "--auth-password", "pw", "--ci-approvers", "ops,lin"}, `--ci-approvers: "lin" is no user`, ""},
		{"mail sender not an address", []string{"--smtp-addr", "127.0.0.1:25", "--smtp-from", "ci"}, `--smtp-addr: sender "ci"`, ""},
		{"mail user without a server", []string{"--smtp-user", "ci"}, "need --smtp-addr", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			args := append([]string{"up", "--addr", addrs[0], "--etcd-listen", "http://" + addrs[1], "--data-dir", dataDir}, tc.args...)
			p := startGarrison(t, args...)
			err := p.WaitExit(t, 30*time.Second)
			if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 2 {
				t.Fatalf("exit %v, want code 2; stderr:\n%s", err, p.Stderr())
			}
			if !strings.Contains(p.Stderr(), tc.want) || (tc.reject != "" && strings.Contains(p.Stderr(), tc.reject)) {
				t.Fatalf("stderr wants %q, not %q:\n%s", tc.want, tc.reject, p.Stderr())
			}
			if _, err := os.Stat(filepath.Join(dataDir, "etcd")); !os.IsNotExist(err) {
				t.Fatalf("etcd started before the settings were refused (%v)", err)
			}
		})
	}
}

// TestUpSecondGarrisonOnSameDataDir: a second garrison on a data dir in use
// (with ports of its own) fails at once naming the first one's pid; before,
// it hung inside etcd's file lock.
func TestUpSecondGarrisonOnSameDataDir(t *testing.T) {
	addrs := freeAddrs(t, 4)
	dataDir := t.TempDir()
	first := startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", dataDir)
	waitHTTP(t, "http://"+addrs[0]+"/ping", 60*time.Second)
	second := startGarrison(t, "up", "--addr", addrs[2], "--etcd-listen", "http://"+addrs[3], "--data-dir", dataDir)
	err := second.WaitExit(t, 30*time.Second)
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("second garrison: exit %v, want 1; stderr:\n%s", err, second.Stderr())
	}
	want := fmt.Sprintf("data dir %s is in use (by pid %d)", dataDir, first.Cmd.Process.Pid)
	if !strings.Contains(second.Stderr(), want) {
		t.Fatalf("stderr lacks %q:\n%s", want, second.Stderr())
	}
	waitHTTP(t, "http://"+addrs[0]+"/ping", 10*time.Second) // the first one is unharmed
}

// TestUpStopsOnSIGTERMWhileEtcdStarts: while embedded etcd waits for its
// database's file lock (held here, as another etcd on the same directory
// would), SIGTERM stops garrison; before, it waited forever.
func TestUpStopsOnSIGTERMWhileEtcdStarts(t *testing.T) {
	addrs := freeAddrs(t, 2)
	dataDir := t.TempDir()
	snap := filepath.Join(dataDir, "etcd", "member", "snap")
	if err := os.MkdirAll(snap, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := os.OpenFile(filepath.Join(snap, "db"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := syscall.Flock(int(db.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	p := startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", dataDir)
	// The pid file is written after the signal handler is installed and
	// before etcd starts.
	poll.True(t, 30*time.Second, "garrison writes its pid file", func() bool {
		b, err := os.ReadFile(filepath.Join(dataDir, pidFileName))
		return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(p.Cmd.Process.Pid)
	})
	p.Cmd.Process.Signal(syscall.SIGTERM)
	p.WaitExit(t, 30*time.Second)
	if !strings.Contains(p.Stderr(), "stopped while starting embedded etcd") {
		t.Fatalf("stderr:\n%s", p.Stderr())
	}
}

// TestUpCutsStalledBodiesAndCapsEventStreams: a request whose body stalls
// is cut after --read-timeout (before, it was held open indefinitely); an
// event stream outlives both the read and write timeouts; subscribers over
// --max-event-subscribers get 503.
func TestUpCutsStalledBodiesAndCapsEventStreams(t *testing.T) {
	addrs := freeAddrs(t, 2)
	startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", t.TempDir(),
		"--read-timeout", "1s", "--write-timeout", "1s", "--max-event-subscribers", "1")
	base := "http://" + addrs[0]
	waitHTTP(t, base+"/ping", 60*time.Second)

	conn, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v2/apps HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\":", addrs[0])
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("a stalled body was not cut: %v", err)
	}

	req, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/v2/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first event stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if code, body := call(t, http.DefaultClient, "GET", base+"/v2/events?x=1", "", ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("events without Accept: %d %s", code, body)
	}
	req2, _ := http.NewRequestWithContext(t.Context(), "GET", base+"/v2/events", nil)
	req2.Header.Set("Accept", "text/event-stream")
	resp2, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	body2, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body2), `"message":"the event stream has its maximum of 1 subscribers`) {
		t.Fatalf("second event stream over the cap: %d %s", resp2.StatusCode, body2)
	}
	// Two heartbeats (10 s apart) arrive on the first stream: it lives
	// well past both timeouts.
	r := bufio.NewReader(resp.Body)
	for beats := 0; beats < 2; {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream cut: %v", err)
		}
		if line == "\r\n" {
			beats++
		}
	}
}
