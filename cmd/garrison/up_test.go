package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/garrisontest"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/registrar"
)

var garrisonBinary string

func TestMain(m *testing.M) {
	// Static: the runner pool's image is made around it.
	testbin.Main(m, "github.com/garrisonhq/garrison/cmd/garrison", true, &garrisonBinary)
}

// garrisonProc is a running `garrison ...` with its stderr captured.
type garrisonProc = garrisontest.Proc

// startGarrison runs the garrison binary built for this test; the test's
// cleanup kills it and the process tasks of its --data-dir.
func startGarrison(t testing.TB, args ...string) *garrisonProc {
	t.Helper()
	return garrisontest.Start(t, garrisonBinary, args...)
}

// freeAddrs returns n loopback addresses whose port and the next one are
// reserved for the test (an embedded etcd listening on one takes the next
// for its peers): garrison binds them later, and testport sees to it that
// nobody else takes them meanwhile.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, 0, n)
	for range n {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", testport.Consecutive(t, 2)))
	}
	return addrs
}

func waitHTTP(t *testing.T, url string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(body)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s not 200 within %s: %v", url, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUpServesRegistryAndKeepsAcknowledgedWritesAcrossSIGKILL(t *testing.T) {
	addrs := freeAddrs(t, 2)
	api, etcdURL := addrs[0], "http://"+addrs[1]
	dataDir := t.TempDir()
	args := []string{"up", "--addr", api, "--etcd-listen", etcdURL, "--data-dir", dataDir}
	p := startGarrison(t, args...)
	if got := waitHTTP(t, "http://"+api+"/ping", 30*time.Second); got != "pong" {
		t.Fatalf("/ping = %q", got)
	}

	cli, err := registrar.NewClient([]string{etcdURL})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := t.Context()
	reg, err := registrar.Register(ctx, cli, "echo", "i-1", registrar.Endpoint{Addr: "127.0.0.1:31005", Metadata: map[string]string{"v": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Services []struct {
			Name      string `json:"name"`
			Instances []struct {
				ID, Addr string
			} `json:"instances"`
		} `json:"services"`
	}
	if err := json.Unmarshal([]byte(waitHTTP(t, "http://"+api+"/api/v1/services", 5*time.Second)), &list); err != nil {
		t.Fatal(err)
	}
	// Other tests' labelled containers on the shared Docker engine may be
	// registered beside it by garrison's own agent: look at echo alone.
	echoes := 0
	for _, svc := range list.Services {
		if svc.Name != "echo" {
			continue
		}
		echoes++
		if len(svc.Instances) != 1 || svc.Instances[0].Addr != "127.0.0.1:31005" {
			t.Fatalf("/api/v1/services: echo = %+v", svc)
		}
	}
	if echoes != 1 {
		t.Fatalf("/api/v1/services = %+v, want echo once", list)
	}
	one := waitHTTP(t, "http://"+api+"/api/v1/services/echo", 5*time.Second)
	if !strings.Contains(one, `"id":"i-1"`) {
		t.Fatalf("/api/v1/services/echo = %s", one)
	}
	resp, err := http.Get("http://" + api + "/api/v1/services/nothing")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown service: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	metrics := waitHTTP(t, "http://"+api+"/metrics", 5*time.Second)
	for _, want := range []string{"garrison_build_info", `garrison_http_requests_total{code="200",method="GET",route="/api/v1/services"}`, "go_goroutines"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	reg.Close(ctx)

	// An acknowledged write survives a crash of garrison.
	if _, err := cli.Put(ctx, "/garrison/test/acknowledged", "yes"); err != nil {
		t.Fatal(err)
	}
	p.Cmd.Process.Signal(syscall.SIGKILL)
	p.WaitExit(t, 10*time.Second)
	startGarrison(t, args...)
	waitHTTP(t, "http://"+api+"/ping", 30*time.Second)
	getCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := cli.Get(getCtx, "/garrison/test/acknowledged")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "yes" {
		t.Fatalf("acknowledged write after kill -9 and restart: %v %v", got, err)
	}
}

func TestUpStopsCleanlyOnSIGTERM(t *testing.T) {
	addrs := freeAddrs(t, 2)
	p := startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", t.TempDir())
	waitHTTP(t, "http://"+addrs[0]+"/ping", 30*time.Second)
	p.Cmd.Process.Signal(syscall.SIGTERM)
	if err := p.WaitExit(t, 20*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.Stderr())
	}
	log := p.Stderr()
	if !strings.Contains(log, "embedded etcd stopped") || strings.Contains(log, `"level":"error"`) {
		t.Fatalf("unclean stop log:\n%s", log)
	}
}

func TestUpExplainsWhatIsWrong(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addrs := freeAddrs(t, 2)
	notADir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notADir, nil, 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
		code int
	}{
		{"api port taken", []string{"up", "--addr", taken.Addr().String(), "--etcd-listen", "http://" + addrs[1], "--data-dir", t.TempDir()}, "cannot serve the API on " + taken.Addr().String(), 1},
		{"etcd port taken", []string{"up", "--addr", addrs[0], "--etcd-listen", "http://" + taken.Addr().String(), "--data-dir", t.TempDir()}, "etcd cannot listen on " + taken.Addr().String(), 1},
		{"data dir is a file", []string{"up", "--addr", addrs[0], "--etcd-listen", "http://" + addrs[1], "--data-dir", notADir}, "data directory " + notADir, 1},
		{"unknown flag", []string{"up", "--bogus"}, "flag provided but not defined: -bogus", 2},
		{"bad log level", []string{"up", "--log-level", "loud"}, `--log-level "loud"`, 2},
		{"unknown command", []string{"launch"}, `unknown command "launch"`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startGarrison(t, tc.args...)
			err := p.WaitExit(t, 30*time.Second)
			exitErr, ok := err.(*exec.ExitError)
			if !ok || exitErr.ExitCode() != tc.code {
				t.Fatalf("exit %v, want code %d; stderr:\n%s", err, tc.code, p.Stderr())
			}
			if !strings.Contains(p.Stderr(), tc.want) {
				t.Fatalf("stderr lacks %q:\n%s", tc.want, p.Stderr())
			}
		})
	}
}

func TestUpWithExternalEtcd(t *testing.T) {
	srv := etcdtest.NewExternal(t)
	api := freeAddrs(t, 1)[0]
	t.Setenv("GARRISON_ETCD", strings.Join(srv.Endpoints, ","))
	t.Setenv("GARRISON_ADDR", api)
	startGarrison(t, "up", "--data-dir", t.TempDir())
	waitHTTP(t, "http://"+api+"/ping", 30*time.Second)
	cli := srv.Client(t)
	reg, err := registrar.Register(t.Context(), cli, "billing", "b-1", registrar.Endpoint{Addr: "127.0.0.1:4000"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	if body := waitHTTP(t, "http://"+api+"/api/v1/services/billing", 5*time.Second); !strings.Contains(body, "127.0.0.1:4000") {
		t.Fatalf("garrison on external etcd does not show its registry: %s", body)
	}
}
