package main_test

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/registrar"
)

var echoBinary string

func TestMain(m *testing.M) {
	testbin.Main(m, "github.com/garrisonhq/garrison/examples/echo", false, &echoBinary)
}

// startEcho runs the example service as a real process against etcd.
func startEcho(t *testing.T, endpoints []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(echoBinary, append([]string{"-etcd", strings.Join(endpoints, ",")}, args...)...)
	cmd.Stderr = &testLog{t: t}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start echo: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

type testLog struct{ t *testing.T }

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Logf("echo: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitKeys polls the registry until cond holds for the keys under prefix.
func waitKeys(t *testing.T, cli *clientv3.Client, prefix string, within time.Duration, cond func(n int) bool) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	for {
		resp, err := cli.Get(t.Context(), prefix, clientv3.WithPrefix())
		if err == nil && cond(len(resp.Kvs)) {
			return time.Since(start), len(resp.Kvs)
		}
		if time.Since(start) > within {
			n := -1
			if err == nil {
				n = len(resp.Kvs)
			}
			t.Fatalf("registry under %s: condition not met within %s (%d keys, err %v)", prefix, within, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEchoRegistersAndAnswers(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	startEcho(t, srv.Endpoints, "-name", "echo")
	waitKeys(t, cli, registrar.ServicePrefix("echo"), 60*time.Second, func(n int) bool { return n == 1 })
	resp, err := cli.Get(t.Context(), registrar.ServicePrefix("echo"), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	inst, err := registrar.DecodeInstance(resp.Kvs[0].Key, resp.Kvs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	httpResp, err := http.Get("http://" + inst.Endpoint.Addr + "/hello?x=1")
	if err != nil {
		t.Fatalf("call the registered address %s: %v", inst.Endpoint.Addr, err)
	}
	body, _ := io.ReadAll(httpResp.Body)
	httpResp.Body.Close()
	if !strings.Contains(string(body), `"path":"/hello"`) || !strings.Contains(string(body), `"query":"x=1"`) {
		t.Fatalf("echo body: %s", body)
	}
	metrics, err := http.Get("http://" + inst.Endpoint.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	if !strings.Contains(string(mbody), `echo_requests_total{code="200",method="get"} 1`) {
		t.Fatalf("request counter missing from /metrics:\n%s", mbody)
	}
}

// A crashed instance disappears when its lease expires, and not before.
func TestKilledInstanceExpiresWithinTTL(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *etcdtest.Server
		ttl   time.Duration
	}{
		{"embedded-ttl3s", etcdtest.New, 3 * time.Second},
		{"external-ttl10s", etcdtest.NewExternal, registrar.DefaultTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := tc.start(t)
			cli := srv.Client(t)
			cmd := startEcho(t, srv.Endpoints, "-name", "crashy", "-ttl", tc.ttl.String())
			waitKeys(t, cli, registrar.ServicePrefix("crashy"), 60*time.Second, func(n int) bool { return n == 1 })
			resp, err := cli.Get(t.Context(), registrar.ServicePrefix("crashy"), clientv3.WithPrefix())
			if err != nil || len(resp.Kvs) != 1 {
				t.Fatalf("registered key: %v", err)
			}
			// What etcd says is left of the lease bounds how early the key
			// may go; a busy machine can only make it go later.
			left, err := cli.TimeToLive(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease))
			if err != nil {
				t.Fatal(err)
			}
			measured := time.Now()
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			cmd.Wait()
			waitKeys(t, cli, registrar.ServicePrefix("crashy"), tc.ttl+30*time.Second, func(n int) bool { return n == 0 })
			gone := time.Since(killed)
			t.Logf("key gone %s after kill -9 (TTL %s, %d s left when killed)", gone.Round(time.Millisecond), tc.ttl, left.TTL)
			// etcd reports whole seconds, rounded: allow one.
			if earliest := time.Duration(left.TTL-1)*time.Second - killed.Sub(measured); gone < earliest {
				t.Fatalf("key vanished after %s with %d s of its lease left: was it deleted by something else?", gone, left.TTL)
			}
		})
	}
}

// A graceful stop deregisters before the process stops serving. The drain
// is long enough that the order cannot depend on how busy the machine is.
func TestGracefulStopDeregistersAtOnce(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	const drain = 5 * time.Second
	cmd := startEcho(t, srv.Endpoints, "-name", "polite", "-drain", drain.String())
	waitKeys(t, cli, registrar.ServicePrefix("polite"), 60*time.Second, func(n int) bool { return n == 1 })
	exited := make(chan error, 1)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	go func() { exited <- cmd.Wait() }()
	poll.Until(t, 30*time.Second, "key gone after SIGTERM", func() (bool, string) {
		select {
		case err := <-exited:
			t.Fatalf("process exited (%v) before the key was seen gone: deregistration is not first", err)
		default:
		}
		resp, err := cli.Get(t.Context(), registrar.ServicePrefix("polite"), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return false, err.Error()
		}
		return resp.Count == 0, fmt.Sprintf("%d keys", resp.Count)
	})
	t.Logf("key gone %s after SIGTERM, while the instance was still draining", time.Since(signalled).Round(time.Millisecond))
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("echo exited with %v after SIGTERM", err)
		}
	case <-time.After(drain + 30*time.Second):
		t.Fatalf("echo did not exit within %s of SIGTERM", drain+30*time.Second)
	}
}

// TestREADMEEtcdctlStep runs the README's etcdctl command (Debian's
// etcd-client, which `make test-deps` installs) against a registered echo:
// it lists the instance's key and its endpoint JSON.
func TestREADMEEtcdctlStep(t *testing.T) {
	const etcdctl = "/usr/bin/etcdctl"
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	startEcho(t, srv.Endpoints, "-name", "echo")
	waitKeys(t, cli, registrar.ServicePrefix("echo"), 60*time.Second, func(n int) bool { return n == 1 })
	cmd := exec.Command(etcdctl, "--endpoints", srv.Endpoints[0], "get", "--prefix", "/service/")
	cmd.Env = append(cmd.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s (install Debian's etcd-client: `make test-deps`): %v\n%s", etcdctl, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "/service/echo/") || !strings.HasPrefix(lines[1], `{"Addr":"127.0.0.1:`) {
		t.Fatalf("etcdctl get --prefix /service/ printed:\n%s\nwant the echo instance's key and its endpoint", out)
	}
}
