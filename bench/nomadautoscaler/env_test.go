package nomadautoscaler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/nomadtest"
	"github.com/garrisonhq/garrison/internal/promtest"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/internal/testport"
)

// echoImage is the service both autoscalers scale: the example echo, with
// its echo_requests_total counter, FROM scratch.
const echoImage = "garrison-test/echo:nasbench"

// garrisonNamespace is the Nomad namespace garrison runs its jobs in;
// nomad-autoscaler's jobs are in the default one, so neither sees the
// other's.
const garrisonNamespace = "garrison"

// env is one benchmark iteration's world: a Nomad agent, garrison up on it
// (with its embedded etcd, which is also the registry both services
// register in), the garrison agent a Nomad client runs, Prometheus scraping the registered instances every second,
// and nomad-autoscaler on the same agent and Prometheus.
type env struct {
	agent   *nomadtest.Agent
	nas     *nomadapi.Client // the default namespace: nomad-autoscaler's jobs
	gar     *nomadapi.Client // garrison's namespace
	garURL  string
	etcdURL string
	etcd    *clientv3.Client
	promURL string
	nasBin  string
	nasLog  string
	garLog  string
}

// binaries are built once per test binary.
var (
	garrisonBin, nasBin string
	imageBuilt          bool
)

func newEnv(b *testing.B) *env {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if garrisonBin == "" {
		bin, cleanup, err := testbin.Build("github.com/garrisonhq/garrison/cmd/garrison", false)
		if err != nil {
			b.Fatal(err)
		}
		garrisonBin = bin
		cleanupAtExit = append(cleanupAtExit, cleanup)
	}
	if nasBin == "" {
		nasBin = os.Getenv("GARRISON_NOMAD_AUTOSCALER")
	}
	if nasBin == "" {
		// Cached after the first build (~/.cache/garrison).
		cmd := exec.CommandContext(ctx, "./build.sh")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("build nomad-autoscaler: %v", err)
		}
		nasBin = strings.TrimSpace(string(out))
	}
	if !imageBuilt {
		dockertest.BuildGoImage(b, dockertest.Client(b), echoImage, "github.com/garrisonhq/garrison/examples/echo")
		imageBuilt = true
	}

	e := &env{nasBin: nasBin}
	agent, err := nomadtest.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(agent.Stop)
	e.agent, e.nas = agent, agent.Client
	if _, err := agent.Client.Namespaces().Register(&nomadapi.Namespace{Name: garrisonNamespace}, nil); err != nil {
		b.Fatalf("nomad namespace: %v", err)
	}
	conf := nomadapi.DefaultConfig()
	conf.Address, conf.Namespace = agent.Addr, garrisonNamespace
	if e.gar, err = nomadapi.NewClient(conf); err != nil {
		b.Fatal(err)
	}

	// garrison up with its defaults, but for the ports and the data dir,
	// as a user runs it on Nomad.
	ports := testport.Take(b, 3)
	e.garURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	e.etcdURL = "http://127.0.0.1:" + strconv.Itoa(ports[1])
	e.garLog = filepath.Join(b.TempDir(), "garrison.log")
	startProcess(b, e.garLog, []string{"NOMAD_NAMESPACE=" + garrisonNamespace}, garrisonBin, "up",
		"--addr", "127.0.0.1:"+strconv.Itoa(ports[0]), "--etcd-listen", e.etcdURL, "--data-dir", b.TempDir(), "--nomad", agent.Addr)
	waitOK(b, e.garURL+"/ping", e.garLog)
	if e.etcd, err = clientv3.New(clientv3.Config{Endpoints: []string{e.etcdURL}, DialTimeout: 5 * time.Second}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.etcd.Close() })
	// The agent of Nomad's client (deploy/nomad/garrison-agent.nomad.hcl
	// runs it as a system job, with these flags): it registers the
	// allocations' containers; garrison up's own agent leaves them to it.
	startProcess(b, filepath.Join(b.TempDir(), "agent.log"), nil, garrisonBin, "agent",
		"--etcd", e.etcdURL, "--advertise-host", "127.0.0.1", "--node", "nasbench-client", "--metrics-addr", "127.0.0.1:"+strconv.Itoa(ports[2]))

	// Prometheus scrapes every registered instance (garrison's HTTP service
	// discovery of the registry, refreshed every second) every second.
	prom := promtest.New(b, promtest.Config{Jobs: []promtest.Job{{Name: "services", HTTPSD: e.garURL + "/api/v1/prometheus/sd"}}})
	e.promURL = prom.URL

	// nomad-autoscaler: its Prometheus APM plugin on that Prometheus, the
	// Nomad target and the target-value strategy (both built in), policies
	// from Nomad's jobs only.
	dir := b.TempDir()
	nasPort := testport.Take(b, 1)[0]
	cfg := fmt.Sprintf(`
log_level  = "DEBUG"
plugin_dir = %q
http {
  bind_address = "127.0.0.1"
  bind_port    = %d
}
nomad {
  address = %q
}
policy {
  source "file" {
    enabled = false
  }
}
apm "prometheus" {
  driver = "prometheus"
  config = {
    address = %q
  }
}
`, filepath.Join(dir, "plugins"), nasPort, agent.Addr, e.promURL)
	if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o755); err != nil {
		b.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "nomad-autoscaler.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	e.nasLog = filepath.Join(dir, "nomad-autoscaler.log")
	startProcess(b, e.nasLog, nil, nasBin, "agent", "-config", cfgPath)
	waitOK(b, fmt.Sprintf("http://127.0.0.1:%d/v1/health", nasPort), e.nasLog)
	return e
}

// cleanupAtExit runs after every benchmark (TestMain).
var cleanupAtExit []func()

func TestMain(m *testing.M) {
	code := m.Run()
	printTable(os.Stdout)
	for _, f := range cleanupAtExit {
		f()
	}
	os.Exit(code)
}

// startProcess runs a server in a process group of its own, its output to
// logPath; the benchmark's cleanup stops the group (SIGTERM, then SIGKILL).
func startProcess(b *testing.B, logPath string, extraEnv []string, bin string, args ...string) {
	b.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		b.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	})
}

// waitOK polls url until it answers 200 (two minutes at most).
func waitOK(b *testing.B, url, logPath string) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			b.Fatalf("%s did not answer 200 in 2 minutes (%v); log:\n%s", url, err, tail(string(log), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// call sends a JSON request to garrison's API and decodes a 2xx answer
// into out (when not nil).
func (e *env) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.garURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// promQuery is an instant query's single value (ok false: no series).
func (e *env) promQuery(ctx context.Context, q string) (float64, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.promURL+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, false, err
	}
	if len(body.Data.Result) == 0 {
		return 0, false, nil
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil, nil
}
