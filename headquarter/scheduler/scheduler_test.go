package scheduler_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/signalman/process"
)

// testServer is a small HTTP server for tasks: it serves on $PORT0, answers
// /health, and can be told to turn unhealthy.
var testServer string

func TestMain(m *testing.M) {
	testbin.Main(m, "github.com/garrisonhq/garrison/internal/dockertest/testserver", true, &testServer)
}

type harness struct {
	t       *testing.T
	etcd    *etcdtest.Server
	cli     *clientv3.Client
	store   *store.Store
	dir     string
	sched   *scheduler.Scheduler
	proc    *process.Driver
	bus     *events.Bus
	stop    context.CancelFunc
	stopped chan struct{}
	// wrap, when set, puts a wrapper around the process driver (to force a
	// timing); tune changes the scheduler's configuration.
	wrap func(*process.Driver) scheduler.Driver
	tune func(*scheduler.Config)
}

func newHarness(t *testing.T) *harness {
	return newHarnessWith(t, nil, nil)
}

func newHarnessWith(t *testing.T, wrap func(*process.Driver) scheduler.Driver, tune func(*scheduler.Config)) *harness {
	h := &harness{t: t, etcd: etcdtest.New(t), dir: t.TempDir(), wrap: wrap, tune: tune}
	h.cli = h.etcd.Client(t)
	h.store = store.New(h.cli)
	h.bus = events.NewBus()
	h.start()
	t.Cleanup(h.shutdown)
	return h
}

// start runs a scheduler over the harness's etcd and process state, as a
// (re)started garrison would.
func (h *harness) start() {
	t := h.t
	proc, err := process.New(filepath.Join(h.dir, "tasks"), process.WithPollInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	cfg := scheduler.Config{
		Store: h.store, Process: proc, Registry: h.cli, Events: h.bus,
		Hostname: "test-host", PortRange: [2]int{12000, 12999}, DrainDelay: 200 * time.Millisecond,
		Interval: 100 * time.Millisecond, RegistryTTL: 5 * time.Second,
	}
	if h.wrap != nil {
		cfg.Process = h.wrap(proc)
	}
	if h.tune != nil {
		h.tune(&cfg)
	}
	sched := scheduler.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := sched.Run(ctx); err != nil {
			t.Errorf("scheduler: %v", err)
		}
	}()
	go func() { wg.Wait(); proc.Close(); close(stopped) }()
	h.sched, h.proc, h.stop, h.stopped = sched, proc, cancel, stopped
}

// crash stops the scheduler without touching its tasks, as kill -9 would.
func (h *harness) crash() {
	h.stop()
	<-h.stopped
}

func (h *harness) shutdown() {
	h.crash()
	// Kill what the test left running.
	proc, err := process.New(filepath.Join(h.dir, "tasks"))
	if err != nil {
		return
	}
	list, _ := proc.List(context.Background())
	for _, st := range list {
		proc.Kill(context.Background(), st.ID, 0)
	}
	proc.Close()
}

func (h *harness) deploy(changes []scheduler.Change, force bool) *scheduler.DeployResult {
	h.t.Helper()
	res, err := h.sched.Deploy(h.t.Context(), changes, force, "test")
	if err != nil {
		h.t.Fatalf("deploy: %v", err)
	}
	return res
}

func (h *harness) waitFor(what string, within time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not within %s; tasks: %+v; deployments: %+v", what, within, h.sched.Tasks(""), h.sched.Deployments())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) running(appID string) []scheduler.TaskInfo {
	var out []scheduler.TaskInfo
	for _, ti := range h.sched.Tasks(appID) {
		if ti.State == "TASK_RUNNING" {
			out = append(out, ti)
		}
	}
	return out
}

func (h *harness) registered(service string) int {
	resp, err := h.cli.Get(h.t.Context(), registrar.ServicePrefix(service), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		h.t.Fatal(err)
	}
	return int(resp.Count)
}

func webApp(t *testing.T, id string, instances int, extra string) *app.App {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"cmd":%q,"instances":%d,"cpus":0.1,"mem":32,
		"healthChecks":[{"protocol":"HTTP","path":"/health","gracePeriodSeconds":5,"intervalSeconds":2,"timeoutSeconds":1,"maxConsecutiveFailures":2}]%s}`,
		id, testServer, instances, extra)
	a, err := app.Parse([]byte(body), app.Environment{Hostname: "test-host"})
	if err != nil {
		t.Fatalf("parse app: %v", err)
	}
	return a
}

func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	return string(b), err
}

func TestLifecycleScaleRestartDelete(t *testing.T) {
	h := newHarness(t)
	res := h.deploy([]scheduler.Change{{App: webApp(t, "/shop/web", 2, ""), Create: true}}, false)
	if res.DeploymentID == "" || !res.Created[0] {
		t.Fatalf("create result %+v", res)
	}
	h.waitFor("two healthy registered tasks and the deployment done", 20*time.Second, func() bool {
		return len(h.running("/shop/web")) == 2 && h.registered("shop_web") == 2 && len(h.sched.Deployments()) == 0
	})
	for _, ti := range h.running("/shop/web") {
		if _, err := get(fmt.Sprintf("http://127.0.0.1:%d/", ti.Ports[0])); err != nil {
			t.Fatalf("task %s does not answer on its port: %v", ti.ID, err)
		}
		if len(ti.HealthCheckResults) != 1 || !ti.HealthCheckResults[0].Alive {
			t.Fatalf("task %s health %+v", ti.ID, ti.HealthCheckResults)
		}
	}
	if _, err := h.sched.Deploy(t.Context(), []scheduler.Change{{App: webApp(t, "/shop/web", 2, ""), Create: true}}, false, "test"); err == nil {
		t.Fatal("second create of the same app succeeded")
	}

	// Scale up, then down: the youngest go.
	cur, _ := h.sched.App("/shop/web")
	up := cur.Clone()
	up.Instances = 4
	h.deploy([]scheduler.Change{{App: up}}, false)
	h.waitFor("four tasks", 20*time.Second, func() bool { return len(h.running("/shop/web")) == 4 && len(h.sched.Deployments()) == 0 })
	oldest := h.running("/shop/web")[:2]
	down := up.Clone()
	down.Instances = 2
	h.deploy([]scheduler.Change{{App: down}}, false)
	h.waitFor("two tasks again", 20*time.Second, func() bool {
		return len(h.sched.Tasks("/shop/web")) == 2 && h.registered("shop_web") == 2 && len(h.sched.Deployments()) == 0
	})
	for i, ti := range h.sched.Tasks("/shop/web") {
		if ti.ID != oldest[i].ID {
			t.Fatalf("scale-down kept %s, want the oldest %s", ti.ID, oldest[i].ID)
		}
	}

	// A configuration change rolls every task over to the new version.
	changed := webApp(t, "/shop/web", 2, `,"env":{"COLOR":"blue"}`)
	res = h.deploy([]scheduler.Change{{App: changed}}, false)
	h.waitFor("the rolling restart to finish", 30*time.Second, func() bool {
		ts := h.sched.Tasks("/shop/web")
		return len(h.sched.Deployments()) == 0 && len(ts) == 2 && ts[0].ID != oldest[0].ID && ts[1].ID != oldest[1].ID && ts[0].ID != oldest[1].ID
	})
	for _, ti := range h.running("/shop/web") {
		if ti.Version != res.Version {
			t.Fatalf("task %s runs %s after the restart, want %s", ti.ID, ti.Version, res.Version)
		}
	}

	// Delete: tasks and registrations go, the app is gone from the store.
	h.deploy([]scheduler.Change{{Delete: "/shop/web"}}, false)
	h.waitFor("the app to be gone", 20*time.Second, func() bool {
		return len(h.sched.Tasks("/shop/web")) == 0 && len(h.sched.Deployments()) == 0 && h.registered("shop_web") == 0
	})
	if rec, _ := h.store.App(t.Context(), "/shop/web"); rec.Revision != 0 {
		t.Fatal("app still stored after delete")
	}
	if tasks, _ := h.store.Tasks(t.Context()); len(tasks) != 0 {
		t.Fatalf("task records left: %d", len(tasks))
	}
}

func TestKilledBehindItsBackIsReplacedWithBackoff(t *testing.T) {
	h := newHarness(t)
	h.deploy([]scheduler.Change{{App: webApp(t, "/crashy", 1, ""), Create: true}}, false)
	h.waitFor("one task", 20*time.Second, func() bool { return len(h.running("/crashy")) == 1 && len(h.sched.Deployments()) == 0 })
	first := h.running("/crashy")[0]
	pid, err := h.proc.Pid(first.ID)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	h.waitFor("a replacement", 20*time.Second, func() bool {
		r := h.running("/crashy")
		return len(r) == 1 && r[0].ID != first.ID
	})
	if took := time.Since(killed); took < time.Second {
		t.Fatalf("replaced after %s, before Marathon's 1 s backoff", took)
	}
	f := h.sched.LastFailure("/crashy")
	if f == nil || f.TaskID != first.ID || f.State != "TASK_FAILED" {
		t.Fatalf("lastTaskFailure %+v", f)
	}
}

func TestUnhealthyTaskIsReplaced(t *testing.T) {
	h := newHarness(t)
	h.deploy([]scheduler.Change{{App: webApp(t, "/flaky", 1, ""), Create: true}}, false)
	h.waitFor("one healthy task", 20*time.Second, func() bool { return len(h.running("/flaky")) == 1 && len(h.sched.Deployments()) == 0 })
	first := h.running("/flaky")[0]
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/unhealthy", first.Ports[0]), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h.waitFor("the unhealthy task to be deregistered and replaced", 20*time.Second, func() bool {
		r := h.running("/flaky")
		return len(r) == 1 && r[0].ID != first.ID && h.registered("flaky") == 1
	})
}

func TestRestartAdoptsTasksWithoutDuplicates(t *testing.T) {
	h := newHarness(t)
	h.deploy([]scheduler.Change{{App: webApp(t, "/steady", 3, ""), Create: true}}, false)
	h.waitFor("three tasks", 20*time.Second, func() bool { return len(h.running("/steady")) == 3 && len(h.sched.Deployments()) == 0 })
	before := map[string]bool{}
	for _, ti := range h.running("/steady") {
		before[ti.ID] = true
	}
	h.crash()
	h.start()
	h.waitFor("the same three tasks adopted and registered", 20*time.Second, func() bool {
		r := h.running("/steady")
		if len(r) != 3 || h.registered("steady") != 3 {
			return false
		}
		for _, ti := range r {
			if !before[ti.ID] {
				return false
			}
		}
		return true
	})
	// Stays that way: nothing is launched or killed afterwards.
	time.Sleep(time.Second)
	if n := len(h.sched.Tasks("/steady")); n != 3 {
		t.Fatalf("%d tasks a second after adoption", n)
	}
}

func TestDockerAppRefusedWithoutEngine(t *testing.T) {
	h := newHarness(t)
	a, err := app.Parse([]byte(`{"id":"/img","container":{"type":"DOCKER","docker":{"image":"nginx"}}}`), app.Environment{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.sched.Deploy(t.Context(), []scheduler.Change{{App: a, Create: true}}, false, "test")
	if err == nil || !strings.Contains(err.Error(), "no Docker engine") {
		t.Fatalf("deploy of a Docker app without an engine: %v", err)
	}
	if apps := h.sched.Apps(); len(apps) != 0 {
		t.Fatalf("refused app stored: %v", apps)
	}
}
