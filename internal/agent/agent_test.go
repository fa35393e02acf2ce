package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/internal/agent"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/registrar"
)

// The crash test runs the agent as a separate process: this test binary,
// re-executed with helperEnv set, runs the agent instead of the tests.
const (
	helperEnv       = "GARRISON_AGENT_TEST_HELPER"
	helperEtcdEnv   = "GARRISON_AGENT_TEST_ETCD"
	helperNodeEnv   = "GARRISON_AGENT_TEST_NODE"
	helperSelectEnv = "GARRISON_AGENT_TEST_SELECT"
	helperTTLEnv    = "GARRISON_AGENT_TEST_TTL"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := runHelperAgent(); err != nil {
			fmt.Fprintln(os.Stderr, "agent helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelperAgent is the agent process of the crash test, configured the way
// `garrison agent` builds it from flags and the environment.
func runHelperAgent() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ttl, err := time.ParseDuration(os.Getenv(helperTTLEnv))
	if err != nil {
		return fmt.Errorf("%s: %w", helperTTLEnv, err)
	}
	etcd, err := registrar.NewClient(strings.Split(os.Getenv(helperEtcdEnv), ","))
	if err != nil {
		return err
	}
	defer etcd.Close()
	docker, err := agent.NewDockerClient()
	if err != nil {
		return err
	}
	defer docker.Close()
	a, err := agent.New(agent.Config{
		Docker: docker,
		Etcd:   etcd,
		Node:   os.Getenv(helperNodeEnv),
		TTL:    ttl,
		Select: []string{os.Getenv(helperSelectEnv)},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

const testImageTag = "garrison-test/testserver:dev"

// fixture is one test's etcd, Docker engine, test image and the label that
// keeps its agent to its own containers (tests run in parallel on one engine).
type fixture struct {
	t      *testing.T
	etcd   *etcdtest.Server
	kv     *clientv3.Client
	docker *client.Client
	image  string
	scope  string // "label=value" every container of the test carries
	node   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, etcdtest.New(t))
}

func newFixtureWith(t *testing.T, etcd *etcdtest.Server) *fixture {
	t.Helper()
	f := &fixture{t: t, etcd: etcd, docker: dockertest.Client(t)}
	f.kv = f.etcd.Client(t)
	f.image = dockertest.BuildGoImage(t, f.docker, testImageTag, dockertest.TestServerPackage)
	f.scope = "garrison.agenttest=" + dockertest.UniqueName("")
	f.node = dockertest.UniqueName("node-")
	return f
}

// startAgent runs an agent in this process until the test ends.
func (f *fixture) startAgent(reg prometheus.Registerer) *agent.Agent {
	f.t.Helper()
	return f.startAgentWith(reg, nil)
}

// startAgentWith is startAgent with tune changing the configuration.
func (f *fixture) startAgentWith(reg prometheus.Registerer, tune func(*agent.Config)) *agent.Agent {
	f.t.Helper()
	cfg := agent.Config{
		Docker:     f.docker,
		Etcd:       f.kv,
		Node:       f.node,
		TTL:        agentTTL,
		Select:     []string{f.scope},
		Logger:     slog.New(slog.NewTextHandler(testWriter{f.t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: reg,
	}
	if tune != nil {
		tune(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("agent Run: %v", err)
		}
	})
	return a
}

// serve starts a container of the test server carrying the test's scope
// label and labels, and returns once it serves on its port (a free one,
// given in $PORT).
func (f *fixture) serve(labels map[string]string, env []string, hc *container.HealthConfig) (id string, port int) {
	f.t.Helper()
	return dockertest.RunServing(f.t, f.docker, func(port int) dockertest.Spec { return f.spec(port, labels, env, hc) })
}

func (f *fixture) spec(port int, labels map[string]string, env []string, hc *container.HealthConfig) dockertest.Spec {
	k, v, _ := strings.Cut(f.scope, "=")
	all := map[string]string{k: v}
	for lk, lv := range labels {
		all[lk] = lv
	}
	if port != 0 {
		env = append(env, fmt.Sprintf("PORT=%d", port))
	}
	return dockertest.Spec{Image: f.image, Labels: all, Env: env, Healthcheck: hc}
}

// instance reads one registry key: the decoded instance and its raw entry.
func (f *fixture) instance(key string) (registrar.Instance, *clientv3.GetResponse, bool) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.kv.Get(ctx, key)
	if err != nil {
		f.t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return registrar.Instance{}, resp, false
	}
	inst, err := registrar.DecodeInstance(resp.Kvs[0].Key, resp.Kvs[0].Value)
	if err != nil {
		f.t.Fatalf("decode %s: %v", key, err)
	}
	return inst, resp, true
}

func (f *fixture) waitKey(key string, timeout time.Duration) (registrar.Instance, clientv3.LeaseID) {
	f.t.Helper()
	var inst registrar.Instance
	var lease clientv3.LeaseID
	waitFor(f.t, timeout, "key "+key+" registered", func() (bool, string) {
		i, resp, ok := f.instance(key)
		if ok {
			inst, lease = i, clientv3.LeaseID(resp.Kvs[0].Lease)
		}
		return ok, "absent"
	})
	return inst, lease
}

func (f *fixture) waitGone(key string, timeout time.Duration) {
	f.t.Helper()
	waitFor(f.t, timeout, "key "+key+" deleted", func() (bool, string) {
		inst, _, ok := f.instance(key)
		return !ok, fmt.Sprintf("still %+v", inst.Endpoint)
	})
}

// keys lists every registry key.
func (f *fixture) keys() []string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.kv.Get(ctx, registrar.Prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		f.t.Fatalf("list registry: %v", err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// leaseTTL is the remaining TTL of a lease in seconds, -1 once it is gone.
func (f *fixture) leaseTTL(lease clientv3.LeaseID) int64 {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.kv.TimeToLive(ctx, lease)
	if err != nil {
		f.t.Fatalf("lease %x: %v", int64(lease), err)
	}
	return resp.TTL
}

func short(id string) string { return id[:12] }

// agentTTL is the lease TTL of the in-process agents: long, so that a key
// gone within promptly was deleted, not left to expire, however busy the
// machine is.
const (
	agentTTL = time.Minute
	promptly = 30 * time.Second
)

func TestRegistersLabelledContainerAndDeregistersOnStop(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	f.startAgent(reg)

	// Port from the environment, instance id from the container id.
	byEnv, envPort := f.serve(map[string]string{agent.LabelService: "web"}, nil, nil)
	// Port from the label (the env PORT is only what the server listens on),
	// instance id from its label.
	byLabel, labelPort := dockertest.RunServing(t, f.docker, func(port int) dockertest.Spec {
		return f.spec(port, map[string]string{
			agent.LabelService:  "web",
			agent.LabelPort:     fmt.Sprint(port),
			agent.LabelInstance: "web-blue",
		}, nil, nil)
	})

	inst, _ := f.waitKey(registrar.Key("web", short(byEnv)), 20*time.Second)
	want := map[string]string{
		agent.MetaContainer:    byEnv,
		agent.MetaAgent:        f.node,
		agent.MetaRegisteredBy: agent.RegisteredBy,
		agent.MetaImage:        f.image,
	}
	checkEndpoint(t, inst, fmt.Sprintf("127.0.0.1:%d", envPort), want)

	inst, _ = f.waitKey(registrar.Key("web", "web-blue"), 20*time.Second)
	want[agent.MetaContainer] = byLabel
	checkEndpoint(t, inst, fmt.Sprintf("127.0.0.1:%d", labelPort), want)

	// The registered address serves.
	resp, err := http.Get("http://" + inst.Endpoint.Addr + "/")
	if err != nil {
		t.Fatalf("GET registered address: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET registered address: %s", resp.Status)
	}

	_, lease := f.waitKey(registrar.Key("web", short(byEnv)), time.Second)
	stopped := time.Now()
	dockertest.Stop(t, f.docker, byEnv)
	f.waitGone(registrar.Key("web", short(byEnv)), promptly)
	t.Logf("key gone %s after docker stop was called", time.Since(stopped).Round(time.Millisecond))
	if ttl := f.leaseTTL(lease); ttl != -1 {
		t.Errorf("lease of the stopped container has TTL %d, want -1 (revoked)", ttl)
	}
	if _, _, ok := f.instance(registrar.Key("web", "web-blue")); !ok {
		t.Error("the other container's key went too")
	}

	// The agent counts after etcd answered, so the test may see a key
	// change a moment before the counter.
	waitCounter(t, reg, "garrison_agent_registrations_total", 2)
	waitCounter(t, reg, "garrison_agent_deregistrations_total", 1)
}

// TestRegistersOnceThePortAccepts: Docker reports a container started
// before its server listens; the agent registers it only once its port
// accepts connections, so the first caller that finds the key is served.
func TestRegistersOnceThePortAccepts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.startAgent(nil)
	port := testport.Take(t, 1)[0]
	spec := f.spec(port, map[string]string{agent.LabelService: "slow"}, []string{"TESTSERVER_LISTEN_AFTER=5s"}, nil)
	id := dockertest.Run(t, f.docker, spec)
	inst, _ := f.waitKey(registrar.Key("slow", short(id)), time.Minute)
	resp, err := http.Get("http://" + inst.Endpoint.Addr + "/")
	if err != nil {
		t.Fatalf("GET the address the moment it was registered: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the address the moment it was registered: %s", resp.Status)
	}
}

// TestDeregistersBeforeContainerExits: a container that keeps serving for a
// while after SIGTERM (draining) is deregistered on the signal, not on exit.
func TestDeregistersBeforeContainerExits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.startAgent(nil)
	id, _ := dockertest.RunServing(t, f.docker, func(port int) dockertest.Spec {
		spec := f.spec(port, map[string]string{agent.LabelService: "web"}, nil, nil)
		spec.Cmd = []string{"-grace", "30s"}
		return spec
	})
	key := registrar.Key("web", short(id))
	f.waitKey(key, 20*time.Second)

	if err := f.docker.ContainerKill(context.Background(), id, "SIGTERM"); err != nil {
		t.Fatalf("docker kill -s TERM: %v", err)
	}
	f.waitGone(key, promptly)
	info, err := f.docker.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !info.State.Running {
		t.Fatal("container exited before the key went: the check proves nothing")
	}
	// Not registered again while it drains: pause and unpause make the
	// agent re-read the container; a marker container started afterwards
	// shows when the agent has handled those events.
	ctx := context.Background()
	if err := f.docker.ContainerPause(ctx, id); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if err := f.docker.ContainerUnpause(ctx, id); err != nil {
		t.Fatalf("unpause: %v", err)
	}
	marker, _ := f.serve(map[string]string{agent.LabelService: "marker"}, nil, nil)
	f.waitKey(registrar.Key("marker", short(marker)), 20*time.Second)
	if _, _, ok := f.instance(key); ok {
		t.Fatal("draining container registered again")
	}
}

func TestIgnoresUnlabelledAndPortlessContainers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.startAgent(nil)

	unlabelled, _ := f.serve(nil, nil, nil)
	// Labelled, but the port is only on the command line, which the agent
	// does not read.
	portless, _ := dockertest.RunServing(t, f.docker, func(port int) dockertest.Spec {
		s := f.spec(0, map[string]string{agent.LabelService: "api"}, nil, nil)
		s.Cmd = []string{"-port", fmt.Sprint(port)}
		return s
	})
	badLabel, _ := f.serve(map[string]string{agent.LabelService: "api", agent.LabelPort: "http"}, nil, nil)
	ignored := map[string]string{"unlabelled": unlabelled, "port-less": portless, "bad port label": badLabel}
	// A labelled container started afterwards: once it is registered, the
	// agent has handled the earlier containers' start events too.
	marker, _ := f.serve(map[string]string{agent.LabelService: "marker"}, nil, nil)
	f.waitKey(registrar.Key("marker", short(marker)), 20*time.Second)

	if keys := f.keys(); len(keys) != 1 {
		t.Errorf("registry holds %v, want only the marker", keys)
	}
	for what, id := range ignored {
		info, err := f.docker.ContainerInspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !info.State.Running {
			t.Errorf("%s container %s is not running (exit code %d): the check proves nothing", what, short(id), info.State.ExitCode)
		}
	}
}

func TestRegistersOnlyWhileHealthy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.startAgent(nil)
	hc := &container.HealthConfig{
		Test:     []string{"CMD", "/app", "-healthcheck"},
		Interval: 200 * time.Millisecond,
		Timeout:  2 * time.Second,
		Retries:  1,
	}
	sick, sickPort := f.serve(map[string]string{agent.LabelService: "php"}, []string{"START_UNHEALTHY=1"}, hc)
	key := registrar.Key("php", short(sick))
	waitFor(t, 20*time.Second, "container unhealthy", func() (bool, string) {
		return health(t, f.docker, sick) == container.Unhealthy, health(t, f.docker, sick)
	})
	marker, _ := f.serve(map[string]string{agent.LabelService: "marker"}, nil, nil)
	f.waitKey(registrar.Key("marker", short(marker)), 20*time.Second)
	if _, _, ok := f.instance(key); ok {
		t.Fatalf("%s registered while its health check fails", key)
	}

	setHealth(t, sickPort, "healthy")
	inst, lease := f.waitKey(key, 20*time.Second)
	if h := health(t, f.docker, sick); h != container.Healthy {
		t.Errorf("registered while Docker says %q", h)
	}
	checkEndpoint(t, inst, fmt.Sprintf("127.0.0.1:%d", sickPort), map[string]string{
		agent.MetaContainer: sick, agent.MetaAgent: f.node, agent.MetaRegisteredBy: agent.RegisteredBy,
	})

	setHealth(t, sickPort, "unhealthy")
	f.waitGone(key, promptly)
	if ttl := f.leaseTTL(lease); ttl != -1 {
		t.Errorf("lease of the unhealthy container has TTL %d, want -1 (revoked)", ttl)
	}
}

func TestStartupRegistersRunningAndRemovesStaleKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	running, _ := f.serve(map[string]string{agent.LabelService: "web"}, nil, nil)

	// Left behind by this node's agent (its container is gone), by another
	// node's agent, and by an instance registering itself.
	ctx := context.Background()
	put := func(key string, md map[string]string) {
		t.Helper()
		b, err := json.Marshal(registrar.Endpoint{Addr: "127.0.0.1:1", Metadata: md})
		if err != nil {
			t.Fatal(err)
		}
		grant, err := f.kv.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.kv.Put(ctx, key, string(b), clientv3.WithLease(grant.ID)); err != nil {
			t.Fatal(err)
		}
	}
	put("/service/web/gone", map[string]string{agent.MetaAgent: f.node, agent.MetaRegisteredBy: agent.RegisteredBy, agent.MetaContainer: "0123456789ab"})
	put("/service/web/other-node", map[string]string{agent.MetaAgent: "elsewhere", agent.MetaRegisteredBy: agent.RegisteredBy})
	put("/service/web/self", map[string]string{"version": "1"})

	reg := prometheus.NewRegistry()
	f.startAgent(reg)
	f.waitKey(registrar.Key("web", short(running)), 20*time.Second)
	f.waitGone("/service/web/gone", promptly)
	for _, key := range []string{"/service/web/other-node", "/service/web/self"} {
		if _, _, ok := f.instance(key); !ok {
			t.Errorf("%s deleted; it is not this agent's", key)
		}
	}
	// Counted after etcd answered the delete, so maybe a moment after the
	// key was seen gone (the cause of "counter = 0, want 1" on a busy machine).
	waitCounter(t, reg, "garrison_agent_stale_keys_removed_total", 1)
}

// TestReconcilesAfterEtcdReconnect stops etcd (Debian's, as a separate
// process) while one container stops and another starts: once etcd is back,
// the agent's reconcile deletes the stopped one's key, which its revoke could
// not reach and whose lease etcd renewed on restart, and registers the new one.
func TestReconcilesAfterEtcdReconnect(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, etcdtest.NewExternal(t))
	reg := prometheus.NewRegistry()
	f.startAgent(reg)
	stopMe, _ := f.serve(map[string]string{agent.LabelService: "php"}, nil, nil)
	stopKey := registrar.Key("php", short(stopMe))
	_, stopLease := f.waitKey(stopKey, 20*time.Second)

	f.etcd.Stop()
	dockertest.Stop(t, f.docker, stopMe)
	waitFor(t, 20*time.Second, "agent fails to revoke while etcd is down", func() (bool, string) {
		n := counter(t, reg, "garrison_agent_errors_total", "op", "deregister")
		return n > 0, fmt.Sprintf("%v errors", n)
	})
	startMe, startPort := f.serve(map[string]string{agent.LabelService: "php"}, nil, nil)

	f.etcd.Start()
	restarted := time.Now()
	f.waitGone(stopKey, promptly)
	if left := f.leaseTTL(stopLease); left <= 0 {
		t.Errorf("lease on %s has TTL %d: the key expired rather than being reconciled away", stopKey, left)
	}
	inst, _ := f.waitKey(registrar.Key("php", short(startMe)), promptly)
	t.Logf("reconciled %s after etcd came back", time.Since(restarted).Round(time.Millisecond))
	checkEndpoint(t, inst, fmt.Sprintf("127.0.0.1:%d", startPort), map[string]string{agent.MetaContainer: startMe})
}

// TestAgentCrashLeavesNoStaleKey kills the agent process with SIGKILL, stops
// one of its containers meanwhile, and starts the agent again: the stopped
// container's key is deleted by the new agent's reconcile while the dead
// agent's lease on it is still alive, and the running container stays
// registered, under the new agent's lease, after the old lease expired.
func TestAgentCrashLeavesNoStaleKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Long enough for the second agent to start and reconcile on a busy
	// machine before the dead agent's leases could expire.
	const ttl = 20 * time.Second
	stopMe, _ := f.serve(map[string]string{agent.LabelService: "php"}, nil, nil)
	keepMe, keepPort := f.serve(map[string]string{agent.LabelService: "php"}, nil, nil)
	stopKey, keepKey := registrar.Key("php", short(stopMe)), registrar.Key("php", short(keepMe))

	first := f.startAgentProcess(ttl, "first")
	_, stopLease := f.waitKey(stopKey, 20*time.Second)
	_, keepLease := f.waitKey(keepKey, 20*time.Second)

	first.kill()
	killed := time.Now()
	dockertest.Stop(t, f.docker, stopMe)
	if _, _, ok := f.instance(stopKey); !ok {
		t.Fatal("key of the stopped container went before the agent restarted; the test proves nothing")
	}

	restarted := time.Now()
	f.startAgentProcess(ttl, "second")
	// The proof is the lease: still alive when the key is gone, so the key
	// was deleted, not expired. The deadline only bounds a broken agent.
	f.waitGone(stopKey, ttl)
	t.Logf("stale key gone %s after the agent restarted, %s after kill -9", time.Since(restarted).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	if left := f.leaseTTL(stopLease); left <= 0 {
		t.Fatalf("the dead agent's lease on %s has TTL %d: the key expired (%s after kill -9) rather than being reconciled away", stopKey, left, time.Since(killed).Round(time.Millisecond))
	}

	// The running container moves to the new agent's lease and outlives the
	// old one.
	waitFor(t, ttl, keepKey+" under a new lease", func() (bool, string) {
		_, resp, ok := f.instance(keepKey)
		if !ok {
			return false, "absent"
		}
		return clientv3.LeaseID(resp.Kvs[0].Lease) != keepLease, "still on the dead agent's lease"
	})
	waitFor(t, ttl+5*time.Second, "the dead agent's leases expire", func() (bool, string) {
		return f.leaseTTL(keepLease) == -1 && f.leaseTTL(stopLease) == -1, "alive"
	})
	inst, _, ok := f.instance(keepKey)
	if !ok {
		t.Fatalf("%s gone after the dead agent's lease expired", keepKey)
	}
	checkEndpoint(t, inst, fmt.Sprintf("127.0.0.1:%d", keepPort), map[string]string{
		agent.MetaContainer: keepMe, agent.MetaAgent: f.node, agent.MetaRegisteredBy: agent.RegisteredBy,
	})
}

// agentProcess is the agent running as a child process: this test binary
// in helper mode.
type agentProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	exited chan struct{}
}

// startAgentProcess starts the agent process, stopped with SIGTERM at the
// end of the test unless the test killed it; its log is shown when the test
// fails.
func (f *fixture) startAgentProcess(ttl time.Duration, name string) *agentProcess {
	t := f.t
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "agent-"+name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"=1",
		helperEtcdEnv+"="+strings.Join(f.etcd.Endpoints, ","),
		helperNodeEnv+"="+f.node,
		helperSelectEnv+"="+f.scope,
		helperTTLEnv+"="+ttl.String(),
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent process: %v", err)
	}
	p := &agentProcess{t: t, cmd: cmd, exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		cmd.Wait()
		logFile.Close()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			t.Errorf("agent %s did not stop on SIGTERM", name)
			cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("agent %s log:\n%s", name, b)
		}
	})
	return p
}

// kill is kill -9: the agent gets no chance to deregister anything.
func (p *agentProcess) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatalf("kill -9 agent: %v", err)
	}
	<-p.exited
}

func checkEndpoint(t *testing.T, inst registrar.Instance, addr string, md map[string]string) {
	t.Helper()
	if inst.Endpoint.Addr != addr {
		t.Errorf("%s/%s: Addr %q, want %q", inst.Service, inst.ID, inst.Endpoint.Addr, addr)
	}
	for k, v := range md {
		if got := inst.Endpoint.Metadata[k]; got != v {
			t.Errorf("%s/%s: Metadata[%q] = %q, want %q (all: %v)", inst.Service, inst.ID, k, got, v, inst.Endpoint.Metadata)
		}
	}
}

func health(t *testing.T, cli *client.Client, id string) string {
	t.Helper()
	info, err := cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatalf("inspect %s: %v", short(id), err)
	}
	if info.State.Health == nil {
		return "none"
	}
	return info.State.Health.Status
}

func setHealth(t *testing.T, port int, state string) {
	t.Helper()
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/%s", port, state), "text/plain", nil)
	if err != nil {
		t.Fatalf("make test server %s: %v", state, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("make test server %s: %s", state, resp.Status)
	}
}

// counter sums the samples of a counter, of those with the label pair
// labelKV ("op", "deregister") when given.
func counter(t *testing.T, reg *prometheus.Registry, name string, labelKV ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
		metrics:
			for _, m := range mf.GetMetric() {
				for i := 0; i+1 < len(labelKV); i += 2 {
					found := false
					for _, lp := range m.GetLabel() {
						found = found || (lp.GetName() == labelKV[i] && lp.GetValue() == labelKV[i+1])
					}
					if !found {
						continue metrics
					}
				}
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

// waitCounter polls a counter until it reaches want; it fails at once when
// the counter went past it.
func waitCounter(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	waitFor(t, 30*time.Second, name+" reaches "+fmt.Sprint(want), func() (bool, string) {
		got := counter(t, reg, name)
		if got > want {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
		return got == want, fmt.Sprintf("%v", got)
	})
}

// waitFor polls cond until it holds or timeout passes.
var waitFor = poll.Until

// testWriter sends the agent's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// garrison up's agent (SkipNomad) leaves containers Nomad runs to the
// agent on Nomad's clients, and registers the rest as before; without
// SkipNomad (the agent Nomad runs) they register.
func TestSkipNomadLeavesNomadsContainers(t *testing.T) {
	t.Parallel()
	for _, skip := range []bool{true, false} {
		f := newFixture(t)
		f.startAgentWith(nil, func(c *agent.Config) { c.SkipNomad = skip })
		nomads, _ := f.serve(map[string]string{agent.LabelService: "by-nomad", agent.LabelNomadAlloc: "d96477e6-a1eb-41b6-fcdf-c05bd21c0c69"}, nil, nil)
		// Started afterwards: once it is registered, the agent has handled
		// the earlier container's start too.
		marker, _ := f.serve(map[string]string{agent.LabelService: "marker"}, nil, nil)
		f.waitKey(registrar.Key("marker", short(marker)), 20*time.Second)
		if skip {
			if keys := f.keys(); len(keys) != 1 {
				t.Errorf("with SkipNomad the registry holds %v, want only the marker", keys)
			}
		} else {
			f.waitKey(registrar.Key("by-nomad", short(nomads)), 20*time.Second)
		}
	}
}
