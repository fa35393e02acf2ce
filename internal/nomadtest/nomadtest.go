// Package nomadtest runs a real Nomad agent for tests: `nomad agent -dev`
// (server and client in one process) bound to 127.0.0.1, with the docker
// and raw_exec drivers enabled and its data in a temporary directory. A
// test package starts one agent from TestMain (Main) and shares it; tests
// keep apart by running in Nomad namespaces of their own (Namespace).
//
// A test that restarts Nomad starts an agent of its own: Halt and Resume
// stop and start the agent process on the same ports and data. A -dev
// agent keeps its state in memory and destroys its allocations when it
// stops, so it comes back empty; a Persistent agent (server with
// bootstrap_expect = 1 and client, state on disk) leaves its tasks running
// and comes back with its jobs and allocations.
//
// The binary is built from the Go module proxy by scripts/nomad-build.sh
// (scripts/test-deps.sh runs it); the tests fail, never skip, without it.
package nomadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/testbin"
)

// Version is the Nomad release the tests run.
const Version = "1.9.3"

// Binary finds the Nomad binary: $GARRISON_NOMAD, else where
// scripts/nomad-build.sh caches it.
func Binary() (string, error) {
	if p := os.Getenv("GARRISON_NOMAD"); p != "" {
		return p, nil
	}
	dir := os.Getenv("GARRISON_NOMAD_CACHE")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("find the Nomad binary: %w", err)
		}
		dir = filepath.Join(cache, "garrison", "nomad-"+Version)
	}
	bin := filepath.Join(dir, "nomad")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no Nomad %s at %s: run scripts/nomad-build.sh (scripts/test-deps.sh does): %w", Version, bin, err)
	}
	return bin, nil
}

// Agent is a running Nomad agent.
type Agent struct {
	// Addr is the HTTP API's address, http://127.0.0.1:port.
	Addr string
	// Client talks to the agent in the default namespace.
	Client *api.Client

	args []string // the agent's command line
	cmd  *exec.Cmd
	dir  string
	log  *os.File
	done chan error
	// pgids are the process groups of every run of the agent: Stop ends
	// the executors each left.
	pgids      []int
	persistent bool
	// logStart is where the current run's output starts in the log.
	logStart int64
	ports    portLease
}

// Option changes the agent Start runs.
type Option func(*options)

type options struct{ persistent bool }

// Persistent runs a server (bootstrap_expect = 1) and a client in one agent
// with their state on disk instead of -dev's memory, so that jobs and
// running allocations survive Halt and Resume.
func Persistent() Option { return func(o *options) { o.persistent = true } }

// The agent's own ports and the dynamic ports it hands its tasks come from
// 30000-30999: below the kernel's ephemeral range (32768+, what port-0
// binds draw from) and apart from the ranges other tests use
// (internal/testport's 20000-29999, the scheduler tests' task ports
// 11000-19999), so nothing takes them by chance. Should something hold one
// anyway, the agent fails to bind and Start tries other ports.
const (
	portLow        = 30000
	portHigh       = 30299
	minDynamicPort = 30300
	// Not up to 32699: garrison's default task ports (31000-32000) are
	// used by tests whose tasks outlive a killed garrison. Each agent
	// gives out a window of the range (leasePorts).
	maxDynamicPort = 30999
	attempts       = 8
)

// Start starts an agent and waits until its client node is ready with the
// docker and raw_exec drivers healthy.
func Start(ctx context.Context, opts ...Option) (*Agent, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var errs []error
	for range attempts {
		base := portLow + rand.IntN((portHigh-portLow)/3)*3
		a, err := start(ctx, bin, base, o)
		if err == nil {
			return a, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, errBind) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("start nomad agent: %w", errors.Join(errs...))
}

var errBind = errors.New("port in use")

func start(ctx context.Context, bin string, base int, o options) (*Agent, error) {
	dir, err := os.MkdirTemp("", "garrison-nomad-")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	ports := leasePorts()
	cfg := fmt.Sprintf(`
bind_addr = "127.0.0.1"
ports {
  http = %d
  rpc  = %d
  serf = %d
}
disable_update_check = true
log_level = "INFO"
client {
  network_interface = "lo"
  min_dynamic_port  = %d
  max_dynamic_port  = %d
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
plugin "docker" {
  config {
    # Test images are built locally and cannot be pulled again.
    gc {
      image = false
    }
  }
}
`, base, base+1, base+2, ports.min, ports.max)
	args := []string{"agent", "-dev"}
	if o.persistent {
		// What -dev sets up, with the state in data_dir. No Consul: the
		// jobs' services use Nomad's own provider.
		cfg += fmt.Sprintf(`
data_dir = %q
# Nomad refuses to default to a loopback advertise address outside -dev.
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
server {
  enabled          = true
  bootstrap_expect = 1
}
client {
  enabled = true
}
consul {
  auto_advertise   = false
  server_auto_join = false
  client_auto_join = false
}
`, data)
		args = []string{"agent"}
	}
	cfgPath := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		ports.release()
		os.RemoveAll(dir)
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		ports.release()
		os.RemoveAll(dir)
		return nil, err
	}
	args = append([]string{bin}, append(args, "-config="+cfgPath, "-data-dir="+data)...)
	a := &Agent{Addr: fmt.Sprintf("http://127.0.0.1:%d", base), args: args, dir: dir, log: logf, persistent: o.persistent, ports: ports}
	if err := a.launch(); err != nil {
		ports.release()
		logf.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	conf := api.DefaultConfig()
	conf.Address = a.Addr
	a.Client, err = api.NewClient(conf)
	if err == nil {
		err = a.waitReady(ctx)
	}
	if err != nil {
		a.Stop()
		return nil, err
	}
	return a, nil
}

// launch runs the agent process.
func (a *Agent) launch() error {
	if st, err := a.log.Stat(); err == nil {
		a.logStart = st.Size()
	}
	cmd := exec.Command(a.args[0], a.args[1:]...)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	// Its own process group, so Stop can end the task executors it spawns.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", a.args[0], err)
	}
	a.cmd, a.done = cmd, make(chan error, 1)
	a.pgids = append(a.pgids, cmd.Process.Pid)
	go func() { a.done <- cmd.Wait() }()
	return nil
}

// Halt stops the agent process (SIGTERM, as an init system does) and waits
// for it to exit; Nomad stops answering. A -dev agent destroys its
// allocations on the way out; a Persistent one leaves them running.
func (a *Agent) Halt() {
	a.terminate()
}

// terminate ends the agent process, killing it after 30 s.
func (a *Agent) terminate() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
	a.cmd = nil
}

// Resume starts the halted agent again, on the same ports and data, and
// waits until it is ready.
func (a *Agent) Resume(ctx context.Context) error {
	if a.cmd != nil {
		return errors.New("nomad agent: resume of a running agent")
	}
	fmt.Fprintf(a.log, "\n=== nomadtest: agent resumed ===\n")
	if err := a.launch(); err != nil {
		return err
	}
	if err := a.waitReady(ctx); err != nil {
		return fmt.Errorf("resume nomad agent: %w", err)
	}
	return nil
}

// waitReady polls the agent's health and the node list until the agent's
// server and client are up and its node is ready with both drivers
// healthy, or the agent exits (a port clash among others). (After a
// restart the node list answers from the restored state at once; the
// agent's health says when its client is back.)
func (a *Agent) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no answer"
	for {
		select {
		case err := <-a.done:
			a.done <- err
			out := a.runLog()
			if strings.Contains(out, "address already in use") {
				return fmt.Errorf("%w: %s", errBind, lastLines(out, 3))
			}
			return fmt.Errorf("nomad agent exited: %v\n%s", err, lastLines(out, 30))
		case <-ctx.Done():
			return fmt.Errorf("nomad agent not ready (%s): %w\n%s", last, ctx.Err(), lastLines(a.Log(), 30))
		case <-tick.C:
		}
		// Nomad keeps retrying a taken port for minutes before it exits:
		// give up on these ports at once.
		if out := a.runLog(); strings.Contains(out, "address already in use") {
			return fmt.Errorf("%w: %s", errBind, lastLines(out, 3))
		}
		// Short, so a port held by something that never answers cannot
		// keep the loop from seeing the agent's own failure.
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		q := (&api.QueryOptions{}).WithContext(rctx)
		health, err := a.health(q)
		var nodes []*api.NodeListStub
		if err == nil && (!health.Client.Ok || !health.Server.Ok) {
			err = fmt.Errorf("agent health: client %q, server %q", health.Client.Message, health.Server.Message)
		}
		if err == nil {
			nodes, _, err = a.Client.Nodes().List(q)
		}
		rcancel()
		if err != nil {
			last = err.Error()
			continue
		}
		if len(nodes) == 0 {
			last = "no node yet"
			continue
		}
		n := nodes[0]
		docker, raw := n.Drivers["docker"], n.Drivers["raw_exec"]
		if n.Status == api.NodeStatusReady && docker != nil && docker.Healthy && raw != nil && raw.Healthy {
			return nil
		}
		last = fmt.Sprintf("node %s, drivers %v", n.Status, driverStates(n.Drivers))
	}
}

// health is GET /v1/agent/health (api's Agent().Health takes no context).
func (a *Agent) health(q *api.QueryOptions) (*api.AgentHealthResponse, error) {
	var h api.AgentHealthResponse
	// The endpoint answers 500 with the same body while a part is down.
	_, err := a.Client.Raw().Query("/v1/agent/health", &h, q)
	if err != nil && h.Client == nil {
		return nil, err
	}
	if h.Client == nil || h.Server == nil {
		return nil, fmt.Errorf("agent health: %+v", h)
	}
	return &h, nil
}

func driverStates(ds map[string]*api.DriverInfo) string {
	var b strings.Builder
	for name, d := range ds {
		fmt.Fprintf(&b, "%s=%v(%s) ", name, d.Healthy, d.HealthDescription)
	}
	return b.String()
}

// runLog is the output of the agent's current run.
func (a *Agent) runLog() string {
	out := a.Log()
	if a.logStart <= int64(len(out)) {
		out = out[a.logStart:]
	}
	return out
}

// Log is the agent's output so far, of all its runs.
func (a *Agent) Log() string {
	b, _ := os.ReadFile(a.log.Name())
	return string(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop stops every job the agent runs (so their containers and processes
// end with it), stops the agent and removes its data.
func (a *Agent) Stop() {
	if a.cmd == nil && a.persistent {
		// Halted with tasks running (a test that failed mid-outage): only
		// the agent can stop its containers.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_ = a.Resume(ctx)
		cancel()
	}
	if a.Client != nil && a.cmd != nil {
		a.stopJobs()
	}
	a.terminate()
	// Task executors the agent left behind are in its process groups, or
	// in sessions of their own: those name the agent's data dir on their
	// command line. Their tasks would otherwise keep ports from the dynamic
	// range the next agent hands out.
	for _, pg := range a.pgids {
		_ = syscall.Kill(-pg, syscall.SIGKILL)
	}
	killLeftovers(a.dir)
	removeContainers(a.dir)
	a.ports.release()
	a.log.Close()
	os.RemoveAll(a.dir)
}

// stopJobs purges all jobs in all namespaces and waits (bounded) for their
// allocations to end.
func (a *Agent) stopJobs() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q := (&api.QueryOptions{Namespace: "*"}).WithContext(ctx)
	jobs, _, err := a.Client.Jobs().List(q)
	if err != nil {
		return
	}
	for _, j := range jobs {
		w := (&api.WriteOptions{Namespace: j.Namespace}).WithContext(ctx)
		_, _, _ = a.Client.Jobs().Deregister(j.ID, true, w)
	}
	for ctx.Err() == nil {
		allocs, _, err := a.Client.Allocations().List(q)
		if err != nil {
			return
		}
		running := 0
		for _, al := range allocs {
			if al.ClientStatus == api.AllocClientStatusRunning || al.ClientStatus == api.AllocClientStatusPending {
				running++
			}
		}
		if running == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// New starts an agent for one test, failing it when the agent does not
// start, and stops the agent at the test's end.
func New(t testing.TB, opts ...Option) *Agent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := Start(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return a
}

// Main is a TestMain body: it builds the task server
// (dockertest.TestServerPackage, static) into *serverBin, starts an agent
// into *agent, runs the tests, stops the agent and exits with the tests'
// code.
func Main(m *testing.M, agent **Agent, serverBin *string) {
	bin, cleanup, err := testbin.Build(dockertest.TestServerPackage, true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*serverBin = bin
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	a, err := Start(ctx)
	cancel()
	if err != nil {
		cleanup()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*agent = a
	code := m.Run()
	a.Stop()
	cleanup()
	os.Exit(code)
}

// WaitRunning blocks on the job's summary until exactly n allocations of
// its group run and none is starting or queued, or ctx ends.
func WaitRunning(ctx context.Context, c *api.Client, jobID, group string, n int) error {
	var index uint64
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second}).WithContext(ctx)
		sum, meta, err := c.Jobs().Summary(jobID, q)
		if err != nil {
			return fmt.Errorf("summary of job %s: %w", jobID, err)
		}
		tg := sum.Summary[group]
		if tg.Running == n && tg.Starting == 0 && tg.Queued == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("job %s: %d running, want %d: %w", jobID, tg.Running, n, ctx.Err())
		}
		index = meta.LastIndex
	}
}

// Namespace creates a Nomad namespace of its own for the test and returns
// a client in it; the test's jobs are purged at its end.
func (a *Agent) Namespace(t testing.TB) (*api.Client, string) {
	t.Helper()
	ns := dockertest.UniqueName("t-")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Client.Namespaces().Register(&api.Namespace{Name: ns, Description: t.Name()}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		t.Fatalf("create nomad namespace %s: %v", ns, err)
	}
	conf := api.DefaultConfig()
	conf.Address = a.Addr
	conf.Namespace = ns
	c, err := api.NewClient(conf)
	if err != nil {
		t.Fatalf("nomad client: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		jobs, _, err := c.Jobs().List((&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			t.Errorf("list jobs of %s: %v", ns, err)
			return
		}
		for _, j := range jobs {
			if _, _, err := c.Jobs().Deregister(j.ID, true, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
				t.Errorf("purge job %s: %v", j.ID, err)
			}
		}
	})
	return c, ns
}

// Tail is the last n lines of the agent's log, for failure messages.
func (a *Agent) Tail(n int) string {
	return lastLines(a.Log(), n)
}

// killLeftovers kills every process whose command line names dir, and
// every process below them.
func killLeftovers(dir string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	parent := map[int]int{}
	var roots []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			// The parent pid is the second field after the parenthesised name.
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
				if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
					if ppid, err := strconv.Atoi(f[1]); err == nil {
						parent[pid] = ppid
					}
				}
			}
		}
		if cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(cmdline), dir) {
			roots = append(roots, pid)
		}
	}
	doomed := map[int]bool{}
	for _, r := range roots {
		doomed[r] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, ppid := range parent {
			if doomed[ppid] && !doomed[pid] {
				doomed[pid] = true
				changed = true
			}
		}
	}
	for pid := range doomed {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
