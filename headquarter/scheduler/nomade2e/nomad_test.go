// Package nomade2e tests garrison on a cluster end to end: the Marathon API
// and the real scheduler over a real Nomad agent (internal/nomadtest), with
// the task server run by raw_exec.
package nomade2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	nomadapi "github.com/hashicorp/nomad/api"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/marathon"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/nomadtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/signalman/nomad"
)

var _ scheduler.Cluster = (*nomad.Driver)(nil)

var (
	agent     *nomadtest.Agent
	serverBin string
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	nomadtest.Main(m, &agent, &serverBin)
}

// Generous: the machine is shared and Nomad's scheduling is asynchronous.
const wait = 3 * time.Minute

// stack is a headquarter on Nomad: etcd, the store, the scheduler with the
// Nomad driver as its cluster, and the Marathon API over HTTP. restart
// replaces the scheduler and the API, keeping etcd and Nomad.
type stack struct {
	t      testing.TB
	agent  *nomadtest.Agent
	etcd   *clientv3.Client
	store  *store.Store
	nomad  *nomadapi.Client
	driver *nomad.Driver
	url    string
	stop   func()
}

func newStack(t testing.TB) *stack {
	t.Helper()
	return newStackAt(t, agent, "")
}

// newStackAt is newStack on the agent ag, with garrison's Nomad client
// sent to addr (a proxy before the agent) when not "". On the shared
// agent garrison works in a namespace of the test's own; on an agent of
// the test's own in the default one (a Nomad that loses its state loses
// its namespaces too).
func newStackAt(t testing.TB, ag *nomadtest.Agent, addr string) *stack {
	t.Helper()
	etcd := etcdtest.New(t).Client(t)
	c, ns := ag.Client, "default"
	if ag == agent {
		c, ns = ag.Namespace(t)
	}
	gc := c
	if addr != "" {
		conf := nomadapi.DefaultConfig()
		conf.Address, conf.Namespace = addr, ns
		var err error
		if gc, err = nomadapi.NewClient(conf); err != nil {
			t.Fatal(err)
		}
	}
	d, err := nomad.New(gc)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, agent: ag, etcd: etcd, store: store.New(etcd), nomad: c, driver: d}
	s.start()
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *stack) start() {
	t := s.t
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	bus := events.NewBus()
	sched := scheduler.New(scheduler.Config{Store: s.store, Cluster: s.driver, Events: bus,
		Interval: 200 * time.Millisecond, ResyncInterval: 2 * time.Second, Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := sched.Run(ctx); err != nil {
			t.Errorf("scheduler: %v", err)
		}
	}()
	engine := gin.New()
	marathon.Register(engine, marathon.Config{Scheduler: sched, Store: s.store, Events: bus,
		Environment: app.Environment{Cluster: true}, Version: "test", Logger: logger})
	srv := httptest.NewServer(engine)
	s.url = srv.URL
	s.stop = func() {
		srv.Close()
		bus.Close()
		cancel()
		wg.Wait()
	}
	select {
	case <-sched.Ready():
	case <-time.After(wait):
		t.Fatal("scheduler not ready")
	}
}

type response struct {
	status int
	body   []byte
}

func (s *stack) do(method, path string, body any) response {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return response{status: resp.StatusCode, body: b}
}

func (s *stack) expect(method, path string, body any, status int, into any) {
	s.t.Helper()
	r := s.do(method, path, body)
	if r.status != status {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body)
	}
	if into != nil {
		if err := json.Unmarshal(r.body, into); err != nil {
			s.t.Fatalf("%s %s: decode %s: %v", method, path, r.body, err)
		}
	}
}

type mTask struct {
	ID        string `json:"id"`
	AppID     string `json:"appId"`
	Host      string `json:"host"`
	SlaveID   string `json:"slaveId"`
	Ports     []int  `json:"ports"`
	State     string `json:"state"`
	Version   string `json:"version"`
	StartedAt string `json:"startedAt"`
}

type mApp struct {
	ID           string `json:"id"`
	Instances    int    `json:"instances"`
	TasksRunning int    `json:"tasksRunning"`
	TasksHealthy int    `json:"tasksHealthy"`
	VersionInfo  struct {
		LastConfigChangeAt string `json:"lastConfigChangeAt"`
	} `json:"versionInfo"`
	Deployments     []struct{ ID string } `json:"deployments"`
	Tasks           []mTask               `json:"tasks"`
	LastTaskFailure *struct {
		TaskID string `json:"taskId"`
		State  string `json:"state"`
	} `json:"lastTaskFailure"`
}

func (s *stack) app(id string) mApp {
	s.t.Helper()
	var out struct{ App mApp }
	s.expect("GET", "/v2/apps"+id+"?embed=app.tasks&embed=app.lastTaskFailure&embed=app.deployments", nil, 200, &out)
	return out.App
}

// settled waits until the app runs n tasks of its current configuration,
// every one answering, and no deployment is left; it returns the tasks.
func (s *stack) settled(id string, n int, envID string) []mTask {
	s.t.Helper()
	var a mApp
	poll.Until(s.t, wait, fmt.Sprintf("%s settled at %d tasks", id, n), func() (bool, string) {
		a = s.app(id)
		var deps []json.RawMessage
		s.expect("GET", "/v2/deployments", nil, 200, &deps)
		ok := a.TasksRunning == n && len(a.Tasks) == n && len(deps) == 0
		for _, tk := range a.Tasks {
			ok = ok && tk.State == "TASK_RUNNING" && tk.Version == a.VersionInfo.LastConfigChangeAt
		}
		return ok, fmt.Sprintf("%+v deployments %d\n%s", a, len(deps), s.agent.Tail(3))
	})
	for _, tk := range a.Tasks {
		answers(s.t, tk, envID)
	}
	return a.Tasks
}

// answers checks the task serves on its host and first port and runs with
// TESTSERVER_ID=envID.
func answers(t testing.TB, tk mTask, envID string) {
	t.Helper()
	if tk.Host == "" || len(tk.Ports) == 0 {
		t.Fatalf("task %s has no address: host %q ports %v", tk.ID, tk.Host, tk.Ports)
	}
	url := fmt.Sprintf("http://%s:%d/id", tk.Host, tk.Ports[0])
	poll.Until(t, wait, tk.ID+" answers on "+url, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && strings.TrimSpace(string(b)) == envID, fmt.Sprintf("%s %q", resp.Status, b)
	})
}

func rawApp(id string, n int, envID string) map[string]any {
	return map[string]any{"id": id, "args": []string{serverBin}, "instances": n, "cpus": 0.05, "mem": 32,
		"portDefinitions": []map[string]any{{"port": 0, "name": "http"}},
		"env":             map[string]string{"TESTSERVER_ID": envID}}
}

func (s *stack) jobVersion(id string) uint64 {
	s.t.Helper()
	job, _, err := s.nomad.Jobs().Info(nomad.JobID(id), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return *job.Version
}

func TestCreateScaleAndRollingUpdate(t *testing.T) {
	s := newStack(t)
	s.expect("POST", "/v2/apps", rawApp("/web", 1, "one"), 201, nil)
	first := s.settled("/web", 1, "one")

	var tasks struct{ Tasks []mTask }
	s.expect("GET", "/v2/tasks", nil, 200, &tasks)
	if len(tasks.Tasks) != 1 || tasks.Tasks[0].ID != first[0].ID || tasks.Tasks[0].Host == "" || tasks.Tasks[0].SlaveID == "" || len(tasks.Tasks[0].Ports) != 1 {
		t.Fatalf("/v2/tasks: %+v, want the one task %s with host, node and port", tasks.Tasks, first[0].ID)
	}

	s.expect("PUT", "/v2/apps/web", map[string]any{"instances": 3}, 200, nil)
	three := s.settled("/web", 3, "one")
	if !containsTask(three, first[0].ID) {
		t.Errorf("scale up replaced the first task %s: %+v", first[0].ID, three)
	}
	s.expect("PUT", "/v2/apps/web", map[string]any{"instances": 1}, 200, nil)
	s.settled("/web", 1, "one")

	// A rolling update: every task is replaced by one with the new env.
	var dep struct {
		DeploymentID string `json:"deploymentId"`
	}
	s.expect("PUT", "/v2/apps/web", map[string]any{"env": map[string]string{"TESTSERVER_ID": "two"}}, 200, &dep)
	if dep.DeploymentID == "" {
		t.Fatal("the update started no deployment")
	}
	updated := s.settled("/web", 1, "two")
	if updated[0].ID == first[0].ID {
		t.Errorf("the update kept task %s", first[0].ID)
	}

	// Delete: the job is stopped, the tasks go.
	s.expect("DELETE", "/v2/apps/web", nil, 200, nil)
	poll.Until(t, wait, "the app's tasks gone", func() (bool, string) {
		s.expect("GET", "/v2/tasks", nil, 200, &tasks)
		return len(tasks.Tasks) == 0, fmt.Sprintf("%+v", tasks.Tasks)
	})
	jobs, err := s.driver.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || !jobs[0].Stopped {
		t.Errorf("after delete, jobs %+v, want the one job stopped", jobs)
	}
}

func containsTask(ts []mTask, id string) bool {
	for _, tk := range ts {
		if tk.ID == id {
			return true
		}
	}
	return false
}

func TestKilledAllocationReplaced(t *testing.T) {
	s := newStack(t)
	s.expect("POST", "/v2/apps", rawApp("/kill", 1, "k"), 201, nil)
	first := s.settled("/kill", 1, "k")[0]
	alloc := first.ID[strings.LastIndex(first.ID, ".")+1:]
	if err := s.nomad.Allocations().Signal(&nomadapi.Allocation{ID: alloc}, nil, "app", "SIGKILL"); err != nil {
		t.Fatalf("signal: %v", err)
	}
	poll.Until(t, wait, "the killed task replaced and reported", func() (bool, string) {
		a := s.app("/kill")
		ok := a.LastTaskFailure != nil && a.LastTaskFailure.TaskID == first.ID && a.LastTaskFailure.State == "TASK_FAILED" &&
			len(a.Tasks) == 1 && a.Tasks[0].ID != first.ID && a.Tasks[0].State == "TASK_RUNNING"
		return ok, fmt.Sprintf("%+v %+v", a.LastTaskFailure, a.Tasks)
	})
}

func TestKillTaskAndKillWithScale(t *testing.T) {
	s := newStack(t)
	s.expect("POST", "/v2/apps", rawApp("/k2", 2, "k2"), 201, nil)
	two := s.settled("/k2", 2, "k2")

	// A kill: Nomad stops the allocation and places another.
	s.expect("DELETE", "/v2/apps/k2/tasks/"+two[0].ID, nil, 200, nil)
	poll.Until(t, wait, "the killed task replaced", func() (bool, string) {
		a := s.app("/k2")
		running := 0
		for _, tk := range a.Tasks {
			if tk.State == "TASK_RUNNING" {
				running++
			}
		}
		return !containsTask(a.Tasks, two[0].ID) && running == 2, fmt.Sprintf("%+v", a.Tasks)
	})
	var deps []json.RawMessage
	poll.Until(t, wait, "no deployment", func() (bool, string) {
		s.expect("GET", "/v2/deployments", nil, 200, &deps)
		return len(deps) == 0, fmt.Sprintf("%s", deps)
	})

	// A kill with scale: one instance fewer.
	a := s.app("/k2")
	s.expect("DELETE", "/v2/apps/k2/tasks/"+a.Tasks[0].ID+"?scale=true", nil, 200, nil)
	s.settled("/k2", 1, "k2")
	if got := s.app("/k2").Instances; got != 1 {
		t.Errorf("instances after kill with scale: %d, want 1", got)
	}
}

func TestRestartAdoptsWithoutRelaunch(t *testing.T) {
	s := newStack(t)
	s.expect("POST", "/v2/apps", rawApp("/adopt", 2, "a"), 201, nil)
	before := s.settled("/adopt", 2, "a")
	version := s.jobVersion("/adopt")

	s.stop()
	s.start()
	after := s.settled("/adopt", 2, "a")
	for _, tk := range before {
		if !containsTask(after, tk.ID) {
			t.Errorf("task %s not adopted: after the restart %+v", tk.ID, after)
		}
	}
	if v := s.jobVersion("/adopt"); v != version {
		t.Errorf("job version %d after the restart, was %d: garrison resubmitted a changed job", v, version)
	}
}

// Fields without a Nomad form are refused with a 422 at their own path,
// as Marathon names a refused field, and nothing is stored.
func TestUnsupportedFieldRefusedAtItsPath(t *testing.T) {
	s := newStack(t)
	fetch := rawApp("/fetching", 1, "f")
	fetch["fetch"] = []map[string]string{{"uri": "http://127.0.0.1/a.tgz"}}
	params := map[string]any{"id": "/tuned", "instances": 1, "cpus": 0.05, "mem": 32,
		"container": map[string]any{"type": "DOCKER", "docker": map[string]any{"image": "busybox",
			"parameters": []map[string]string{{"key": "cap-add", "value": "NET_ADMIN"}}}}}
	for _, tc := range []struct {
		body       map[string]any
		path, word string
	}{{fetch, "/fetch", "fetch"}, {params, "/container/docker/parameters", "cap-add"}} {
		r := s.do("POST", "/v2/apps", tc.body)
		var ve struct {
			Details []struct {
				Path   string   `json:"path"`
				Errors []string `json:"errors"`
			} `json:"details"`
		}
		if err := json.Unmarshal(r.body, &ve); err != nil || r.status != 422 {
			t.Fatalf("%s: status %d %s (%v), want 422", tc.body["id"], r.status, r.body, err)
		}
		if len(ve.Details) != 1 || ve.Details[0].Path != tc.path || !strings.Contains(strings.Join(ve.Details[0].Errors, " "), tc.word) {
			t.Errorf("%s: 422 body %s, want the error at %s naming %s", tc.body["id"], r.body, tc.path, tc.word)
		}
		s.expect("GET", "/v2/apps"+tc.body["id"].(string), nil, 404, nil)
	}
}

func TestUntranslatableConstraintRefused(t *testing.T) {
	s := newStack(t)
	body := rawApp("/zoned", 1, "z")
	body["constraints"] = [][]string{{"hostname", "UNIQUE"}, {"@zone", "IS", "a"}}
	r := s.do("POST", "/v2/apps", body)
	if r.status != 422 {
		t.Fatalf("status %d, want 422: %s", r.status, r.body)
	}
	var ve struct {
		Details []struct {
			Path   string   `json:"path"`
			Errors []string `json:"errors"`
		} `json:"details"`
	}
	if err := json.Unmarshal(r.body, &ve); err != nil {
		t.Fatal(err)
	}
	if len(ve.Details) != 1 || ve.Details[0].Path != "/constraints(1)" || !strings.Contains(strings.Join(ve.Details[0].Errors, " "), "@zone") {
		t.Errorf("422 body %s: want the error at /constraints(1) naming @zone", r.body)
	}
	s.expect("GET", "/v2/apps/zoned", nil, 404, nil)
}

func TestQueueShowsUnplaceable(t *testing.T) {
	s := newStack(t)
	body := rawApp("/nowhere", 1, "n")
	body["constraints"] = [][]string{{"hostname", "LIKE", "no-such-node"}}
	s.expect("POST", "/v2/apps", body, 201, nil)
	poll.Until(t, wait, "the app queued", func() (bool, string) {
		var q struct {
			Queue []struct {
				Count int `json:"count"`
				App   struct {
					ID string `json:"id"`
				} `json:"app"`
			} `json:"queue"`
		}
		r := s.do("GET", "/v2/queue", nil)
		if err := json.Unmarshal(r.body, &q); err != nil {
			t.Fatalf("decode %s: %v", r.body, err)
		}
		return len(q.Queue) == 1 && q.Queue[0].App.ID == "/nowhere" && q.Queue[0].Count == 1, string(r.body)
	})
}

// A task Nomad's checks find healthy shows it in its healthCheckResults,
// one alive result per check, as the app's tasksHealthy counts it: Marathon
// clients (marathon-lb, garrison's own deploy) read a task's health there.
func TestTaskHealthCheckResults(t *testing.T) {
	s := newStack(t)
	body := rawApp("/checked", 1, "c")
	body["healthChecks"] = []map[string]any{{"protocol": "HTTP", "path": "/health", "portIndex": 0,
		"gracePeriodSeconds": 1, "intervalSeconds": 1, "timeoutSeconds": 1}}
	s.expect("POST", "/v2/apps", body, 201, nil)
	s.settled("/checked", 1, "c")
	poll.Until(t, wait, "the task healthy", func() (bool, string) {
		a := s.app("/checked")
		return a.TasksHealthy == 1, fmt.Sprintf("%+v", a)
	})
	var tasks struct {
		Tasks []struct {
			ID                 string
			HealthCheckResults []struct {
				Alive      bool   `json:"alive"`
				TaskID     string `json:"taskId"`
				InstanceID string `json:"instanceId"`
			} `json:"healthCheckResults"`
		}
	}
	s.expect("GET", "/v2/apps/checked/tasks", nil, 200, &tasks)
	if len(tasks.Tasks) != 1 {
		t.Fatalf("tasks %+v, want one", tasks.Tasks)
	}
	tk := tasks.Tasks[0]
	if len(tk.HealthCheckResults) != 1 || !tk.HealthCheckResults[0].Alive || tk.HealthCheckResults[0].TaskID != tk.ID {
		t.Errorf("task %s healthCheckResults %+v, want one alive result for the task", tk.ID, tk.HealthCheckResults)
	}
}

// garrison's deployment lasts as long as Nomad's rollout: while the new
// version fails its checks (Nomad replaces the failing canaries until its
// progress deadline, as Marathon retries) it stays listed; once Nomad
// fails the rollout (here an operator does) it ends, failed.
func TestFailedRolloutEndsDeployment(t *testing.T) {
	s := newStack(t)
	body := rawApp("/bad", 1, "b")
	body["healthChecks"] = []map[string]any{{"protocol": "HTTP", "path": "/health", "portIndex": 0,
		"gracePeriodSeconds": 1, "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 2}}
	s.expect("POST", "/v2/apps", body, 201, nil)
	s.settled("/bad", 1, "b")
	// Nomad's check decides the task's health.
	poll.Until(t, wait, "the task healthy", func() (bool, string) {
		a := s.app("/bad")
		return a.TasksHealthy == 1, fmt.Sprintf("%+v", a)
	})
	// The new version fails its health check: Nomad's check kills it.
	var dep struct {
		DeploymentID string `json:"deploymentId"`
	}
	s.expect("PUT", "/v2/apps/bad", map[string]any{"env": map[string]string{"TESTSERVER_ID": "b", "START_UNHEALTHY": "1"}}, 200, &dep)
	var rollout nomad.Rollout
	poll.Until(t, wait, "Nomad's rollout failing its canary while garrison's deployment is listed", func() (bool, string) {
		var deps []struct {
			ID string `json:"id"`
		}
		s.expect("GET", "/v2/deployments", nil, 200, &deps)
		r, ok, err := s.driver.Deployment(context.Background(), "/bad")
		if err != nil {
			t.Fatal(err)
		}
		rollout = r
		listed := len(deps) == 1 && deps[0].ID == dep.DeploymentID
		return listed && ok && r.JobVersion == 1 && r.Active && r.Unhealthy > 0, fmt.Sprintf("garrison %+v, nomad %v %+v", deps, ok, r)
	})
	if _, _, err := s.nomad.Deployments().Fail(rollout.ID, nil); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, wait, "garrison's deployment gone after Nomad's failed", func() (bool, string) {
		var deps []json.RawMessage
		s.expect("GET", "/v2/deployments", nil, 200, &deps)
		return len(deps) == 0, fmt.Sprintf("%s", deps)
	})
	if a := s.app("/bad"); a.LastTaskFailure == nil || a.LastTaskFailure.State != "TASK_FAILED" {
		t.Errorf("lastTaskFailure %+v, want the failed task", a.LastTaskFailure)
	}
}

func TestUnrunnableHealthCheckRefused(t *testing.T) {
	s := newStack(t)
	body := rawApp("/cmdcheck", 1, "c")
	body["healthChecks"] = []map[string]any{{"protocol": "HTTP", "portIndex": 0}, {"protocol": "COMMAND", "command": map[string]string{"value": "true"}}}
	r := s.do("POST", "/v2/apps", body)
	if r.status != 422 || !strings.Contains(string(r.body), `"/healthChecks(1)"`) || strings.Contains(string(r.body), `"/healthChecks(0)"`) {
		t.Fatalf("status %d %s, want 422 naming /healthChecks(1) only", r.status, r.body)
	}
}

// With Nomad unreachable garrison starts, takes writes and stops nothing;
// once Nomad answers the stored apps are submitted.
func TestNomadUnreachable(t *testing.T) {
	f := agent.NewProxy(t)
	s := newStackAt(t, agent, f.URL)
	s.expect("POST", "/v2/apps", rawApp("/up", 1, "u"), 201, nil)
	before := s.settled("/up", 1, "u")

	f.Down.Store(true)
	s.stop()
	s.start() // Ready although Nomad does not answer
	s.expect("POST", "/v2/apps", rawApp("/later", 1, "l"), 201, nil)
	s.expect("PUT", "/v2/apps/up", map[string]any{"instances": 2}, 200, nil)
	// Several job syncs fail meanwhile (the sync lists jobs first).
	seen := f.Refused.Load()
	poll.True(t, wait, "job syncs refused", func() bool { return f.Refused.Load() >= seen+6 })
	job, _, err := s.nomad.Jobs().Info(nomad.JobID("/up"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if *job.Stop || *job.TaskGroups[0].Count != 1 {
		t.Fatalf("while unreachable the job changed: stop %v count %d", *job.Stop, *job.TaskGroups[0].Count)
	}

	f.Down.Store(false)
	after := s.settled("/up", 2, "u")
	if !containsTask(after, before[0].ID) {
		t.Errorf("the running task %s was replaced: %+v", before[0].ID, after)
	}
	s.settled("/later", 1, "l")
}

// A task killed as its app's first deployment ends can be left down by
// Nomad (no follow-up evaluation); garrison asks for its replacement.
func TestKilledDuringFirstDeploymentReplaced(t *testing.T) {
	s := newStack(t)
	s.expect("POST", "/v2/apps", rawApp("/early", 1, "e"), 201, nil)
	var first mTask
	poll.Until(t, wait, "the first task running", func() (bool, string) {
		a := s.app("/early")
		ok := len(a.Tasks) == 1 && a.Tasks[0].State == "TASK_RUNNING"
		if ok {
			first = a.Tasks[0]
		}
		return ok, fmt.Sprintf("%+v", a.Tasks)
	})
	alloc := first.ID[strings.LastIndex(first.ID, ".")+1:]
	if err := s.nomad.Allocations().Signal(&nomadapi.Allocation{ID: alloc}, nil, "app", "SIGKILL"); err != nil {
		t.Fatalf("signal: %v", err)
	}
	poll.Until(t, wait, "the killed task replaced", func() (bool, string) {
		a := s.app("/early")
		return len(a.Tasks) == 1 && a.Tasks[0].ID != first.ID && a.Tasks[0].State == "TASK_RUNNING", fmt.Sprintf("%+v", a.Tasks)
	})
}

// POST /v2/apps/{id}/restart replaces every task, as Marathon's.
func TestRestartReplacesTasks(t *testing.T) {
	s := newStack(t)
	s.expect("POST", "/v2/apps", rawApp("/again", 2, "r"), 201, nil)
	before := s.settled("/again", 2, "r")
	s.expect("POST", "/v2/apps/again/restart", nil, 200, nil)
	after := s.settled("/again", 2, "r")
	for _, tk := range before {
		if containsTask(after, tk.ID) {
			t.Errorf("task %s survived the restart: %+v", tk.ID, after)
		}
	}
}
