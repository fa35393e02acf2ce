package marathon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/events"
	hqmarathon "github.com/garrisonhq/garrison/headquarter/marathon"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/signalman/marathon"
	"github.com/garrisonhq/garrison/signalman/process"
)

// testServer is the task program: HTTP on $PORT0, GET /health answers 503
// when started with START_UNHEALTHY=1.
var testServer string

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	testbin.Main(m, "github.com/garrisonhq/garrison/internal/dockertest/testserver", true, &testServer)
}

// settle bounds every wait for garrison to converge.
const settle = 40 * time.Second

// stack is garrison's headquarter in-process (embedded etcd, store, a
// scheduler over the process driver, health monitor, event bus) serving
// its Marathon API on 127.0.0.1: the Marathon the target talks to. A
// minimal copy of headquarter/marathon's test harness.
type stack struct {
	t     testing.TB
	sched *scheduler.Scheduler
	url   string
}

func newStack(t testing.TB, auth hqmarathon.Auth) *stack {
	t.Helper()
	etcd := etcdtest.New(t)
	cli := etcd.Client(t)
	st := store.New(cli)
	bus := events.NewBus()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	proc, err := process.New(filepath.Join(t.TempDir(), "tasks"), process.WithCgroupParent(""),
		process.WithPollInterval(50*time.Millisecond), process.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	sched := scheduler.New(scheduler.Config{
		Store: st, Process: proc, Registry: cli, Events: bus,
		Hostname: "test-host", PortRange: [2]int{14000, 14999}, DrainDelay: 50 * time.Millisecond,
		Interval: 100 * time.Millisecond, RegistryTTL: 5 * time.Second, Logger: logger,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := sched.Run(ctx); err != nil {
			t.Errorf("scheduler: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if list, err := proc.List(context.Background()); err == nil {
			for _, s := range list {
				if !s.State.Terminal() {
					if err := proc.Kill(context.Background(), s.ID, 0); err != nil {
						t.Logf("kill leftover task %s: %v", s.ID, err)
					}
				}
			}
		}
		proc.Close()
	})
	engine := gin.New()
	srv := httptest.NewServer(engine)
	t.Cleanup(srv.Close)
	t.Cleanup(bus.Close)
	hqmarathon.Register(engine, hqmarathon.Config{
		Scheduler: sched, Store: st, Events: bus,
		Environment: app.Environment{Hostname: "test-host"},
		Leader:      strings.TrimPrefix(srv.URL, "http://"), Version: "test", FrameworkID: "garrison-test",
		Hostname: "test-host", Logger: logger, Auth: auth,
	})
	select {
	case <-sched.Ready():
	case <-time.After(settle):
		t.Fatal("scheduler not ready")
	}
	return &stack{t: t, sched: sched, url: srv.URL}
}

// raw sends a request straight to the API; headers come in pairs.
func (s *stack) raw(method, path string, body any, headers ...string) (int, []byte) {
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
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// createApp posts an app running the test server with an HTTP health check.
func (s *stack) createApp(id string, instances int, env map[string]string, headers ...string) {
	s.t.Helper()
	body := map[string]any{
		"id": id, "cmd": testServer, "instances": instances, "cpus": 0.1, "mem": 32, "env": env,
		"healthChecks": []map[string]any{{
			"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 60,
			"intervalSeconds": 2, "timeoutSeconds": 1, "maxConsecutiveFailures": 0,
		}},
	}
	if code, b := s.raw("POST", "/v2/apps", body, headers...); code != http.StatusCreated {
		s.t.Fatalf("POST /v2/apps %s: %d %s", id, code, b)
	}
}

// runningTasks counts the app's tasks the scheduler reports running.
func (s *stack) runningTasks(id string) int {
	n := 0
	for _, ti := range s.sched.Tasks(id) {
		if ti.State == "TASK_RUNNING" {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or within passes.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	poll.True(t, within, what, cond)
}

func newClient(t testing.TB, url string, opts ...marathon.Option) *marathon.Client {
	t.Helper()
	c, err := marathon.New(url, append([]marathon.Option{marathon.WithPollInterval(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// settled waits until the app has no deployment and runs n healthy tasks.
func settled(t testing.TB, c *marathon.Client, id string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to run %d healthy tasks", id, n), settle, func() bool {
		st, err := c.Status(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		return !st.DeploymentInProgress() && st.TasksRunning == n && st.TasksHealthy == n
	})
}

func TestScaleUpAndDown(t *testing.T) {
	s := newStack(t, hqmarathon.Auth{})
	c := newClient(t, s.url)
	ctx := t.Context()
	s.createApp("/ktv/web", 1, nil)
	settled(t, c, "/ktv/web", 1)
	if n, err := c.Count(ctx, "ktv/web"); err != nil || n != 1 { // the leading slash is optional
		t.Fatalf("Count = %d, %v; want 1", n, err)
	}

	for _, n := range []int{3, 1} {
		res, err := c.Scale(ctx, "/ktv/web", n, "test: scale to "+fmt.Sprint(n))
		if err != nil {
			t.Fatalf("Scale to %d: %v", n, err)
		}
		if res.Outcome != marathon.Scaled || res.DeploymentID == "" || res.Version == "" || res.Cause != nil {
			t.Fatalf("Scale to %d: %+v, want Scaled with a deployment", n, res)
		}
		if res.Instances != n || res.AppID != "/ktv/web" || !strings.Contains(res.Reason, "scale to") {
			t.Errorf("Scale to %d: result %+v", n, res)
		}
		waitCtx, cancel := context.WithTimeout(ctx, settle)
		if err := c.WaitDeployment(waitCtx, res.DeploymentID); err != nil {
			t.Fatalf("WaitDeployment after scale to %d: %v", n, err)
		}
		cancel()
		if got, err := c.Count(ctx, "/ktv/web"); err != nil || got != n {
			t.Fatalf("Count after scale = %d, %v; want %d", got, err, n)
		}
		settled(t, c, "/ktv/web", n)
		waitFor(t, "running tasks", settle, func() bool { return s.runningTasks("/ktv/web") == n })
	}
}

func TestScaleWhileLockedIsNoOp(t *testing.T) {
	s := newStack(t, hqmarathon.Auth{})
	c := newClient(t, s.url)
	ctx := t.Context()
	// Its health check never passes, so its start deployment never ends.
	s.createApp("/stuck", 1, map[string]string{"START_UNHEALTHY": "1"})
	var dep string
	waitFor(t, "the start deployment to be listed", settle, func() bool {
		st, err := c.Status(ctx, "/stuck")
		if err != nil {
			t.Fatal(err)
		}
		if st.DeploymentInProgress() {
			dep = st.Deployments[0]
		}
		return dep != ""
	})

	res, err := c.Scale(ctx, "/stuck", 3, "test: locked")
	if err != nil {
		t.Fatalf("Scale of a locked app: error %v, want a NoOp result", err)
	}
	if res.Outcome != marathon.NoOp || !errors.Is(res.Cause, marathon.ErrDeploymentInProgress) || res.DeploymentID != "" {
		t.Fatalf("Scale of a locked app: %+v, want NoOp caused by ErrDeploymentInProgress", res)
	}
	var apiErr *marathon.APIError
	if !errors.As(res.Cause, &apiErr) || apiErr.Status != http.StatusConflict || len(apiErr.Deployments) != 1 || apiErr.Deployments[0] != dep {
		t.Errorf("NoOp cause %#v: want the 409 naming deployment %s", res.Cause, dep)
	}
	if !strings.Contains(res.Cause.Error(), "App is locked by one or more deployments") {
		t.Errorf("NoOp cause %q: want Marathon's message", res.Cause)
	}
	if n, err := c.Count(ctx, "/stuck"); err != nil || n != 1 {
		t.Errorf("Count after NoOp = %d, %v; want 1 (unchanged)", n, err)
	}

	// WaitDeployment ends with its context while the deployment runs.
	waitCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := c.WaitDeployment(waitCtx, dep); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitDeployment on a stuck deployment: %v, want deadline exceeded", err)
	}

	// Forced, the scale supersedes the stuck deployment.
	forced := newClient(t, s.url, marathon.WithForce(true))
	res, err = forced.Scale(ctx, "/stuck", 2, "test: forced")
	if err != nil || res.Outcome != marathon.Scaled || res.DeploymentID == "" || res.DeploymentID == dep {
		t.Fatalf("forced Scale: %+v, %v; want Scaled with a new deployment", res, err)
	}
	if n, err := c.Count(ctx, "/stuck"); err != nil || n != 2 {
		t.Errorf("Count after forced scale = %d, %v; want 2", n, err)
	}
}

func TestMissingApp(t *testing.T) {
	s := newStack(t, hqmarathon.Auth{})
	c := newClient(t, s.url)
	ctx := t.Context()
	_, err := c.Count(ctx, "/no/such/app")
	if !errors.Is(err, marathon.ErrAppNotFound) {
		t.Fatalf("Count of a missing app: %v, want ErrAppNotFound", err)
	}
	t.Logf("Count: %v", err)
	res, err := c.Scale(ctx, "/no/such/app", 2, "test")
	if !errors.Is(err, marathon.ErrAppNotFound) || res.Outcome != 0 {
		t.Fatalf("Scale of a missing app: %+v, %v; want ErrAppNotFound", res, err)
	}
	if !strings.Contains(err.Error(), "/no/such/app") {
		t.Errorf("error %q does not name the app", err)
	}
	t.Logf("Scale: %v", err)
	if code, _ := s.raw("GET", "/v2/apps/no/such/app", nil); code != http.StatusNotFound {
		t.Errorf("Scale created the app: GET answers %d", code)
	}
	if _, err := c.Scale(ctx, "/x", -1, "test"); err == nil {
		t.Error("Scale accepted a negative count")
	}
	for _, bad := range []string{"", "ftp://127.0.0.1", "127.0.0.1:8080", "http://"} {
		if _, err := marathon.New(bad); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

func TestAuth(t *testing.T) {
	s := newStack(t, hqmarathon.Auth{Username: "ops", Password: "pw", Token: "s3cret"})
	s.createApp("/auth", 0, nil, "Authorization", "Bearer s3cret")
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		opts []marathon.Option
		ok   bool
	}{
		{"none", nil, false},
		{"wrong token", []marathon.Option{marathon.WithToken("nope")}, false},
		{"dcos token", []marathon.Option{marathon.WithToken("s3cret")}, true},
		{"bearer token", []marathon.Option{marathon.WithBearerToken("s3cret")}, true},
		{"basic", []marathon.Option{marathon.WithBasicAuth("ops", "pw")}, true},
		{"wrong basic", []marathon.Option{marathon.WithBasicAuth("ops", "no")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, s.url, tc.opts...)
			n, err := c.Count(ctx, "/auth")
			res, serr := c.Scale(ctx, "/auth", 0, "test: auth")
			if tc.ok {
				if err != nil || n != 0 || serr != nil || res.Outcome == 0 {
					t.Fatalf("Count %d, %v; Scale %+v, %v; want both to pass", n, err, res, serr)
				}
				return
			}
			var apiErr *marathon.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
				t.Errorf("Count: %v, want 401", err)
			}
			if !errors.As(serr, &apiErr) || apiErr.Status != http.StatusUnauthorized {
				t.Errorf("Scale: %v, want 401", serr)
			}
		})
	}
}

// BenchmarkScale is the target's Scale round trip against garrison's
// Marathon API, and its ratio to a bare PUT of the same body measured in
// the same run. The app has no instances and stays at 0, so each round trip
// is one small deployment.
func BenchmarkScale(b *testing.B) {
	s := newStack(b, hqmarathon.Auth{})
	s.createApp("/bench", 0, nil)
	c := newClient(b, s.url)
	ctx := context.Background()
	waitFor(b, "the create deployment to end", settle, func() bool {
		st, err := c.Status(ctx, "/bench")
		return err == nil && !st.DeploymentInProgress()
	})

	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	put := func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, s.url+"/v2/apps/bench", strings.NewReader(`{"instances":0}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusConflict {
			b.Fatalf("raw PUT: %s", resp.Status)
		}
	}
	put()
	const rounds = 100
	var baseline time.Duration // measured before and after, for drift
	measure := func() {
		start := time.Now()
		for range rounds {
			put()
		}
		baseline += time.Since(start) / (2 * rounds)
	}
	measure()

	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Scale(ctx, "/bench", 0, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	measure()
	b.ReportMetric(float64(baseline.Microseconds()), "µs/raw-put")
	b.ReportMetric(float64(per)/float64(baseline), "x-raw-put")
}
