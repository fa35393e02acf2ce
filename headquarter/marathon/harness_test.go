package marathon_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/api"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/marathon"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/signalman/process"
)

// testServer is the task program: it serves HTTP on $PORT0 and answers
// GET /health (503 when started with START_UNHEALTHY=1).
var testServer string

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	testbin.Main(m, "github.com/garrisonhq/garrison/internal/dockertest/testserver", true, &testServer)
}

// stack is garrison's headquarter in-process: embedded etcd, store, a
// scheduler over the process driver, health monitor, event bus, and the
// gin engine with the Marathon API behind a real HTTP server on 127.0.0.1.
type stack struct {
	t     testing.TB
	cli   *clientv3.Client
	store *store.Store
	sched *scheduler.Scheduler
	bus   *events.Bus
	srv   *httptest.Server
	url   string
	dir   string
}

func newStack(t testing.TB, configure ...func(*marathon.Config)) *stack {
	t.Helper()
	etcd := etcdtest.New(t)
	s := &stack{t: t, cli: etcd.Client(t), dir: t.TempDir()}
	s.store = store.New(s.cli)
	s.bus = events.NewBus()

	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	proc, err := process.New(filepath.Join(s.dir, "tasks"), process.WithPollInterval(50*time.Millisecond), process.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	sched := scheduler.New(scheduler.Config{
		Store: s.store, Process: proc, Registry: s.cli, Events: s.bus,
		Hostname: "test-host", PortRange: [2]int{13000, 13999}, DrainDelay: 50 * time.Millisecond,
		Interval: 100 * time.Millisecond, RegistryTTL: 5 * time.Second, Logger: logger,
	})
	s.sched = sched
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := sched.Run(ctx); err != nil {
			t.Errorf("scheduler: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		// Kill what the test left running.
		list, err := proc.List(context.Background())
		if err == nil {
			for _, st := range list {
				if err := proc.Kill(context.Background(), st.ID, 0); err != nil {
					t.Logf("kill leftover task %s: %v", st.ID, err)
				}
			}
		}
		proc.Close()
	})

	reg := prometheus.NewRegistry()
	engine := api.NewRouter(api.Config{Registry: s.cli, Registerer: reg, Gatherer: reg})
	s.srv = httptest.NewServer(engine)
	s.url = s.srv.URL
	t.Cleanup(s.srv.Close)
	t.Cleanup(s.bus.Close) // runs before srv.Close: ends the SSE streams

	cfg := marathon.Config{
		Scheduler: sched, Store: s.store, Events: s.bus,
		EventOptions: []events.HandlerOption{events.WithHeartbeat(200 * time.Millisecond)},
		Environment:  app.Environment{Hostname: "test-host"},
		Leader:       strings.TrimPrefix(s.url, "http://"), Version: "test", FrameworkID: "garrison-test",
		Hostname: "test-host", Logger: logger,
	}
	for _, f := range configure {
		f(&cfg)
	}
	marathon.Register(engine, cfg)
	select {
	case <-sched.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("scheduler not ready")
	}
	return s
}

// response is one HTTP answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request as go-marathon does (JSON in and out). body may be a
// string (sent as is), nil, or a value to encode. Extra headers come in
// pairs.
func (s *stack) do(method, path string, body any, headers ...string) *response {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

// expect fails the test unless the status is want; it returns r.
func (r *response) expect(t testing.TB, want int, what string) *response {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, want, r.body)
	}
	return r
}

func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// obj decodes the body as a generic JSON object.
func (r *response) obj(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.decode(t, &m)
	return m
}

// waitFor polls cond until it holds or within passes.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	poll.True(t, within, what, cond)
}

// deploymentGone polls GET /v2/deployments until id is no longer listed,
// as go-marathon's WaitOnDeployment does.
func (s *stack) deploymentGone(id string, within time.Duration) {
	s.t.Helper()
	waitFor(s.t, "deployment "+id+" to finish", within, func() bool {
		var deps []struct {
			ID string `json:"id"`
		}
		s.do("GET", "/v2/deployments", nil).expect(s.t, 200, "GET /v2/deployments").decode(s.t, &deps)
		for _, d := range deps {
			if d.ID == id {
				return false
			}
		}
		return true
	})
}

// marathonApp is the part of go-marathon's Application the tests read.
type marathonApp struct {
	ID              string            `json:"id"`
	Cmd             string            `json:"cmd"`
	Instances       int               `json:"instances"`
	Env             map[string]string `json:"env"`
	Labels          map[string]string `json:"labels"`
	Version         string            `json:"version"`
	VersionInfo     map[string]string `json:"versionInfo"`
	PortDefinitions []struct {
		Port int    `json:"port"`
		Name string `json:"name"`
	} `json:"portDefinitions"`
	TasksStaged     int             `json:"tasksStaged"`
	TasksRunning    int             `json:"tasksRunning"`
	TasksHealthy    int             `json:"tasksHealthy"`
	TasksUnhealthy  int             `json:"tasksUnhealthy"`
	Deployments     []deploymentRef `json:"deployments"`
	Tasks           []marathonTask  `json:"tasks"`
	LastTaskFailure json.RawMessage `json:"lastTaskFailure"`
	TaskStats       json.RawMessage `json:"taskStats"`
}

type deploymentRef struct {
	ID string `json:"id"`
}

type marathonTask struct {
	ID                 string         `json:"id"`
	AppID              string         `json:"appId"`
	Host               string         `json:"host"`
	Ports              []int          `json:"ports"`
	ServicePorts       []int          `json:"servicePorts"`
	State              string         `json:"state"`
	StagedAt           string         `json:"stagedAt"`
	StartedAt          string         `json:"startedAt"`
	Version            string         `json:"version"`
	HealthCheckResults []healthResult `json:"healthCheckResults"`
}

type healthResult struct {
	Alive  bool   `json:"alive"`
	TaskID string `json:"taskId"`
}

type deployResult struct {
	DeploymentID string `json:"deploymentId"`
	Version      string `json:"version"`
}

// deployed checks a deployment-creating answer: the status, the
// Marathon-Deployment-Id header equal to the body's deploymentId.
func (r *response) deployed(t testing.TB, status int, what string) deployResult {
	t.Helper()
	r.expect(t, status, what)
	var dr deployResult
	r.decode(t, &dr)
	if dr.DeploymentID == "" || dr.Version == "" {
		t.Fatalf("%s: deployment result %s", what, r.body)
	}
	if h := r.header.Get(marathon.DeploymentHeader); h != dr.DeploymentID {
		t.Fatalf("%s: %s header %q, body deploymentId %q", what, marathon.DeploymentHeader, h, dr.DeploymentID)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", dr.Version); err != nil {
		t.Fatalf("%s: version %q is not ISO-8601 with millis", what, dr.Version)
	}
	return dr
}

// deploy sends a deployment-creating request, checks its answer and waits
// for the deployment to finish.
func (s *stack) deploy(method, path string, body any, status int) deployResult {
	s.t.Helper()
	what := method + " " + path
	r := s.do(method, path, body)
	var dr deployResult
	if method == "POST" && path == "/v2/apps" {
		// POST answers with the app; the header names its deployment.
		r.expect(s.t, status, what)
		dr.DeploymentID = r.header.Get(marathon.DeploymentHeader)
	} else {
		dr = r.deployed(s.t, status, what)
	}
	s.deploymentGone(dr.DeploymentID, settle)
	return dr
}

func (s *stack) app(id string) marathonApp {
	s.t.Helper()
	var out struct {
		App marathonApp `json:"app"`
	}
	s.do("GET", "/v2/apps"+id, nil).expect(s.t, 200, "GET app "+id).decode(s.t, &out)
	return out.App
}

// allTasksRunning is go-marathon's Application.AllTaskRunning plus
// ApplicationOK: every instance running and, where checked, alive.
func allTasksRunning(a marathonApp) bool {
	if a.Instances == 0 {
		return true
	}
	if a.Tasks == nil || a.TasksRunning != a.Instances {
		return false
	}
	for _, t := range a.Tasks {
		for _, h := range t.HealthCheckResults {
			if !h.Alive {
				return false
			}
		}
	}
	return true
}

// sseEvent is one frame of /v2/events.
type sseEvent struct {
	typ  string
	data map[string]any
}

// subscribe opens /v2/events the way marathon-lb does and returns its
// frames; the stream ends with the test.
func (s *stack) subscribe(query string) <-chan sseEvent {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", s.url+"/v2/events?"+query, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		s.t.Fatalf("GET /v2/events: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		s.t.Fatalf("GET /v2/events: Content-Type %q", ct)
	}
	out := make(chan sseEvent, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var typ string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				var m map[string]any
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m); err != nil {
					s.t.Errorf("SSE data is not JSON: %q", line)
					return
				}
				select {
				case out <- sseEvent{typ: typ, data: m}:
				default: // the test stopped reading
				}
			}
		}
	}()
	s.t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return out
}

// nextEvent waits for an event of type typ for which match holds.
func nextEvent(t testing.TB, ch <-chan sseEvent, typ string, within time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event stream ended before a %s", typ)
			}
			if ev.typ == typ && (match == nil || match(ev.data)) {
				return ev.data
			}
		case <-timeout:
			t.Fatalf("no %s event within %s", typ, within)
		}
	}
}

// webApp is a go-marathon style app body for the test server with an HTTP
// health check on /health.
func webApp(id string, instances int, extra map[string]any) map[string]any {
	m := map[string]any{
		"id": id, "cmd": testServer, "instances": instances, "cpus": 0.1, "mem": 32,
		// go-marathon always sends these two as null.
		"ports": nil, "dependencies": nil,
		"healthChecks": []map[string]any{{
			"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 30,
			"intervalSeconds": 2, "timeoutSeconds": 1, "maxConsecutiveFailures": 0,
		}},
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}
