package nomad_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/nomadtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/signalman/nomad"
	"github.com/garrisonhq/garrison/signalman/task"
)

// The tests share one Nomad agent and the task server binary; each test
// runs in a Nomad namespace of its own.
var (
	agent     *nomadtest.Agent
	serverBin string
)

func TestMain(m *testing.M) { nomadtest.Main(m, &agent, &serverBin) }

// Generous: the machine is shared and Nomad's scheduling is asynchronous.
const wait = 2 * time.Minute

func newDriver(t *testing.T) (*nomad.Driver, *api.Client) {
	t.Helper()
	c, _ := agent.Namespace(t)
	d, err := nomad.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// rawApp runs the task server with raw_exec on one dynamic port.
func rawApp(id, version string, n int) nomad.App {
	return nomad.App{
		Task: task.Spec{
			AppID: id, Version: version, Args: []string{serverBin},
			Ports: []task.Port{{Name: "http", Requested: 10001}},
			CPUs:  0.05, MemMB: 32, KillGrace: 2 * time.Second,
		},
		Instances: n,
	}
}

// running lists the app's tasks that are not terminal, and whether all of
// them run.
func running(ctx context.Context, t *testing.T, d *nomad.Driver, appID string) ([]nomad.Task, bool) {
	t.Helper()
	tasks, err := d.Allocations(ctx, appID)
	if err != nil {
		t.Fatalf("allocations: %v", err)
	}
	var live []nomad.Task
	all := true
	for _, tk := range tasks {
		if tk.State.Terminal() {
			continue
		}
		live = append(live, tk)
		all = all && tk.State == task.Running
	}
	return live, all
}

// waitRunning waits until exactly n tasks of the app run (and no other is
// live) and returns them.
func waitRunning(ctx context.Context, t *testing.T, d *nomad.Driver, appID string, n int, cond func([]nomad.Task) bool) []nomad.Task {
	t.Helper()
	var live []nomad.Task
	poll.Until(t, wait, fmt.Sprintf("%d running tasks of %s", n, appID), func() (bool, string) {
		var all bool
		live, all = running(ctx, t, d, appID)
		ok := all && len(live) == n && (cond == nil || cond(live))
		return ok, describe(live) + "\n" + agent.Tail(5)
	})
	return live
}

func describe(ts []nomad.Task) string {
	var b strings.Builder
	for _, tk := range ts {
		fmt.Fprintf(&b, "%s %s v=%s host=%s ports=%v msg=%q; ", tk.ID, tk.State, tk.Version, tk.Host, tk.Ports, tk.Message)
	}
	return b.String()
}

// serves checks that the task answers HTTP on its first port.
func serves(t *testing.T, tk nomad.Task) {
	t.Helper()
	if len(tk.Ports) == 0 || tk.Host == "" {
		t.Fatalf("task %s has no address: host %q ports %v", tk.ID, tk.Host, tk.Ports)
	}
	url := fmt.Sprintf("http://%s:%d/", tk.Host, tk.Ports[0])
	poll.Until(t, wait, "task "+tk.ID+" answers on "+url, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// scale retries while Nomad's deployment of the previous change runs.
func scale(ctx context.Context, t *testing.T, d *nomad.Driver, appID string, n int) {
	t.Helper()
	poll.Until(t, wait, fmt.Sprintf("scale %s to %d", appID, n), func() (bool, string) {
		err := d.Scale(ctx, appID, n, false)
		if errors.Is(err, nomad.ErrDeploymentActive) {
			return false, err.Error()
		}
		if err != nil {
			t.Fatalf("scale: %v", err)
		}
		return true, ""
	})
}

func TestRawExecCreateScaleStop(t *testing.T) {
	d, _ := newDriver(t)
	ctx := ctxFor(t)
	a := rawApp("/it/raw", "2026-01-01T00:00:00.000Z", 1)
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	tasks := waitRunning(ctx, t, d, a.Task.AppID, 1, nil)
	tk := tasks[0]
	if !strings.HasPrefix(tk.ID, "it_raw.") || tk.AppID != "/it/raw" || tk.Version != a.Task.Version {
		t.Errorf("task %+v: want id it_raw.<alloc>, app /it/raw, version %s", tk.Status, a.Task.Version)
	}
	serves(t, tk)

	scale(ctx, t, d, a.Task.AppID, 3)
	tasks = waitRunning(ctx, t, d, a.Task.AppID, 3, nil)
	for _, tk := range tasks {
		serves(t, tk)
	}
	jobs, err := d.Jobs(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].Instances != 3 || jobs[0].Version != a.Task.Version {
		t.Errorf("jobs %+v %v: want one at 3 instances, version %s", jobs, err, a.Task.Version)
	}

	scale(ctx, t, d, a.Task.AppID, 1)
	waitRunning(ctx, t, d, a.Task.AppID, 1, nil)

	if err := d.Stop(ctx, a.Task.AppID); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, wait, "no live task after stop", func() (bool, string) {
		live, _ := running(ctx, t, d, a.Task.AppID)
		return len(live) == 0, describe(live)
	})
	jobs, err = d.Jobs(ctx)
	if err != nil || len(jobs) != 1 || !jobs[0].Stopped {
		t.Errorf("jobs after stop %+v %v: want the job kept, stopped", jobs, err)
	}
	// Stopping again, or an app Nomad never had, is not an error.
	if err := d.Stop(ctx, a.Task.AppID); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := d.Stop(ctx, "/it/never"); err != nil {
		t.Errorf("stop of an unknown app: %v", err)
	}
}

func TestDockerApp(t *testing.T) {
	cli := dockertest.Client(t)
	const image = "garrison-nomadtest:1"
	dockertest.BuildGoImage(t, cli, image, dockertest.TestServerPackage)
	d, _ := newDriver(t)
	ctx := ctxFor(t)
	a := nomad.App{
		Task: task.Spec{
			AppID: "/it/docker", Version: "2026-01-01T00:00:00.000Z", Image: image,
			Ports:  []task.Port{{Requested: 10002}},
			Labels: map[string]string{"team": "it"},
			CPUs:   0.05, MemMB: 32, KillGrace: 2 * time.Second,
		},
		Instances: 2,
	}
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	tasks := waitRunning(ctx, t, d, a.Task.AppID, 2, nil)
	for _, tk := range tasks {
		serves(t, tk)
	}
	if err := d.Stop(ctx, a.Task.AppID); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, wait, "docker tasks gone after stop", func() (bool, string) {
		live, _ := running(ctx, t, d, a.Task.AppID)
		return len(live) == 0, describe(live)
	})
}

// Both of Marathon's shapes of a rollout: stop-then-start within
// minimumHealthCapacity (Nomad's rolling update), and start-then-stop with
// maximumOverCapacity (Nomad's auto-promoted canaries).
func TestRollingUpdate(t *testing.T) {
	for name, up := range map[string]nomad.Upgrade{
		"rolling":      {MinimumHealthCapacity: 0.5},
		"overCapacity": {MinimumHealthCapacity: 1, MaximumOverCapacity: 1},
	} {
		t.Run(name, func(t *testing.T) { testRollingUpdate(t, up) })
	}
}

func testRollingUpdate(t *testing.T, up nomad.Upgrade) {
	d, _ := newDriver(t)
	ctx := ctxFor(t)
	v1, v2 := "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"
	a := rawApp("/it/roll", v1, 2)
	a.Upgrade = up
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	old := waitRunning(ctx, t, d, a.Task.AppID, 2, nil)

	a.Task.Version = v2
	a.Task.Env = map[string]string{"RELEASE": "2"}
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	tasks := waitRunning(ctx, t, d, a.Task.AppID, 2, func(ts []nomad.Task) bool {
		return !slices.ContainsFunc(ts, func(tk nomad.Task) bool { return tk.Version != v2 })
	})
	for _, tk := range tasks {
		if slices.ContainsFunc(old, func(o nomad.Task) bool { return o.ID == tk.ID }) {
			t.Errorf("task %s of v1 still runs after the update to v2", tk.ID)
		}
		serves(t, tk)
	}
	var r nomad.Rollout
	poll.Until(t, wait, "the update's deployment done", func() (bool, string) {
		var err error
		r, _, err = d.Deployment(ctx, a.Task.AppID)
		if err != nil {
			t.Fatal(err)
		}
		return !r.Active, fmt.Sprintf("%+v", r)
	})
	wantCanaries := 0
	if up.MaximumOverCapacity > 0 {
		wantCanaries = 2
	}
	if r.Status != api.DeploymentStatusSuccessful || r.Canaries != wantCanaries || r.Promoted != (wantCanaries > 0) {
		t.Errorf("deployment %+v: want successful with %d canaries, promoted if any", r, wantCanaries)
	}
	all, err := d.Allocations(ctx, a.Task.AppID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range all {
		if tk.Version == v1 && tk.State != task.Killed {
			t.Errorf("v1 task %s is %s, want TASK_KILLED", tk.ID, tk.State)
		}
	}
}

func TestKilledAllocationReplaced(t *testing.T) {
	d, c := newDriver(t)
	ctx := ctxFor(t)
	a := rawApp("/it/kill", "2026-01-01T00:00:00.000Z", 1)
	watch, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	first := waitRunning(ctx, t, d, a.Task.AppID, 1, nil)[0]
	// Nomad does not reschedule an allocation that fails while its
	// deployment runs (the deployment fails instead): kill it after.
	poll.Until(t, wait, "the first deployment done", func() (bool, string) {
		r, ok, err := d.Deployment(ctx, a.Task.AppID)
		if err != nil {
			t.Fatal(err)
		}
		return ok && r.Status == api.DeploymentStatusSuccessful, fmt.Sprintf("%+v", r)
	})

	// A real kill: SIGKILL to the task's process, through Nomad.
	if err := c.Allocations().Signal(&api.Allocation{ID: first.AllocID}, nil, "app", "SIGKILL"); err != nil {
		t.Fatalf("signal: %v", err)
	}
	var failed, replaced bool
	deadline := time.After(wait)
	for !failed || !replaced {
		select {
		case tk, ok := <-watch:
			if !ok {
				t.Fatal("watch closed")
			}
			if tk.ID == first.ID && tk.State == task.Failed {
				failed = true
			}
			if tk.AppID == a.Task.AppID && tk.ID != first.ID && tk.State == task.Running {
				replaced = true
			}
		case <-deadline:
			t.Fatalf("after the kill: failure seen %v, replacement running %v\n%s", failed, replaced, agent.Tail(20))
		}
	}
	now := waitRunning(ctx, t, d, a.Task.AppID, 1, nil)
	if now[0].ID == first.ID {
		t.Errorf("task %s still listed as running after its kill", first.ID)
	}
	serves(t, now[0])
}

// An allocation killed as its first deployment completes can stay down:
// Nomad records it healthy, keeps it out of rescheduling while the
// deployment runs, and creates no follow-up once it succeeded (seen here:
// still failed, no replacement, 20 s on). Reschedule replaces it.
func TestRescheduleReplacesFailed(t *testing.T) {
	d, c := newDriver(t)
	ctx := ctxFor(t)
	a := rawApp("/it/resched", "2026-01-01T00:00:00.000Z", 1)
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	first := waitRunning(ctx, t, d, a.Task.AppID, 1, nil)[0]
	if err := c.Allocations().Signal(&api.Allocation{ID: first.AllocID}, nil, "app", "SIGKILL"); err != nil {
		t.Fatalf("signal: %v", err)
	}
	poll.Until(t, wait, "the killed task failed", func() (bool, string) {
		all, err := d.Allocations(ctx, a.Task.AppID)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(all, func(tk nomad.Task) bool { return tk.ID == first.ID })
		return i >= 0 && all[i].State == task.Failed, describe(all)
	})
	if err := d.Reschedule(ctx, a.Task.AppID); err != nil {
		t.Fatal(err)
	}
	now := waitRunning(ctx, t, d, a.Task.AppID, 1, func(ts []nomad.Task) bool { return ts[0].ID != first.ID })
	serves(t, now[0])
}

func TestConstraintRefusesPlacement(t *testing.T) {
	d, c := newDriver(t)
	ctx := ctxFor(t)
	a := rawApp("/it/nowhere", "2026-01-01T00:00:00.000Z", 1)
	a.Constraints = [][]string{{"hostname", "CLUSTER", "no-such-host"}}
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	var q nomad.Queued
	poll.Until(t, wait, "the constrained instance queued", func() (bool, string) {
		var err error
		q, err = d.Queue(ctx, a.Task.AppID)
		if err != nil {
			t.Fatal(err)
		}
		return q.Count == 1 && len(q.ConstraintFiltered) > 0, fmt.Sprintf("%+v", q)
	})
	if tasks, err := d.Allocations(ctx, a.Task.AppID); err != nil || len(tasks) != 0 {
		t.Errorf("allocations %v %v: want none", describe(tasks), err)
	}
	found := false
	for k := range q.ConstraintFiltered {
		found = found || strings.Contains(k, "attr.unique.hostname") && strings.Contains(k, "no-such-host")
	}
	if !found {
		t.Errorf("filtered by %v: want the hostname constraint named", q.ConstraintFiltered)
	}

	// A constraint without a Nomad form is refused before anything is
	// submitted.
	b := rawApp("/it/refused", "2026-01-01T00:00:00.000Z", 1)
	b.Constraints = [][]string{{"rack", "UNLIKE", "r[0-9]+"}}
	_, err := d.Submit(ctx, b)
	var ce *nomad.ConstraintError
	if !errors.As(err, &ce) || ce.Path() != "/constraints(0)" {
		t.Fatalf("submit: %v, want a *ConstraintError at /constraints(0)", err)
	}
	if _, _, err := c.Jobs().Info(nomad.JobID(b.Task.AppID), nil); err == nil {
		t.Error("the refused app's job exists in Nomad")
	}
}

func TestAdoptionAfterRestart(t *testing.T) {
	d, c := newDriver(t)
	ctx := ctxFor(t)
	a := rawApp("/it/adopt", "2026-01-01T00:00:00.000Z", 2)
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	before := waitRunning(ctx, t, d, a.Task.AppID, 2, nil)
	job, _, err := c.Jobs().Info(nomad.JobID(a.Task.AppID), nil)
	if err != nil {
		t.Fatal(err)
	}

	// A restarted garrison: a new driver, no memory.
	d2, err := nomad.New(c)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := d2.Jobs(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].AppID != a.Task.AppID || jobs[0].Instances != 2 || jobs[0].Version != a.Task.Version {
		t.Fatalf("jobs %+v %v: want the app at 2 instances", jobs, err)
	}
	watch, err := d2.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]task.State{}
	for len(seen) < 2 {
		select {
		case tk := <-watch:
			seen[tk.ID] = tk.State
		case <-time.After(wait):
			t.Fatalf("watch of the new driver sent %v, want both running tasks", seen)
		}
	}
	for _, tk := range before {
		if seen[tk.ID] != task.Running {
			t.Errorf("task %s: watch says %q, want running", tk.ID, seen[tk.ID])
		}
	}
	// Submitting the same app again changes nothing: no new job version,
	// so nothing can be relaunched.
	if _, err := d2.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	after, _, err := c.Jobs().Info(nomad.JobID(a.Task.AppID), nil)
	if err != nil {
		t.Fatal(err)
	}
	if *after.Version != *job.Version {
		t.Errorf("job version %d after resubmitting the same app, want %d", *after.Version, *job.Version)
	}
	live, _ := running(ctx, t, d2, a.Task.AppID)
	if len(live) != 2 || !slices.ContainsFunc(live, func(tk nomad.Task) bool { return tk.ID == before[0].ID }) ||
		!slices.ContainsFunc(live, func(tk nomad.Task) bool { return tk.ID == before[1].ID }) {
		t.Errorf("tasks after adoption %s, want %s", describe(live), describe(before))
	}
}

func TestNotOursNeverTouched(t *testing.T) {
	d, c := newDriver(t)
	ctx := ctxFor(t)
	// A job of the same id that garrison did not submit.
	job := api.NewServiceJob("it_foreign", "it_foreign", "global", 50)
	job.Datacenters = []string{"*"}
	tg := api.NewTaskGroup("g", 0)
	tg.AddTask(api.NewTask("t", "raw_exec").SetConfig("command", serverBin))
	job.AddTaskGroup(tg)
	if _, _, err := c.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"submit": func() error { _, err := d.Submit(ctx, rawApp("/it/foreign", "v", 1)); return err }(),
		"scale":  d.Scale(ctx, "/it/foreign", 2, false),
		"stop":   d.Stop(ctx, "/it/foreign"),
	} {
		if !errors.Is(err, nomad.ErrNotOurs) {
			t.Errorf("%s: %v, want ErrNotOurs", name, err)
		}
	}
	if jobs, err := d.Jobs(ctx); err != nil || len(jobs) != 0 {
		t.Errorf("jobs %+v %v: want the foreign job left out", jobs, err)
	}
}

// When Nomad does not answer, every call says so; none pretends there is
// nothing (which would make a caller stop or relaunch apps).
func TestNomadDown(t *testing.T) {
	conf := api.DefaultConfig()
	conf.Address = "http://127.0.0.1:1" // nothing listens on port 1
	c, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	d, err := nomad.New(c, nomad.WithCPUMHz(1000))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	_, errSubmit := d.Submit(ctx, rawApp("/it/down", "v", 1))
	_, errJobs := d.Jobs(ctx)
	_, errAllocs := d.Allocations(ctx, "/it/down")
	_, errWatch := d.Watch(ctx)
	for name, err := range map[string]error{
		"submit": errSubmit, "jobs": errJobs, "allocations": errAllocs, "watch": errWatch,
		"scale": d.Scale(ctx, "/it/down", 2, false), "stop": d.Stop(ctx, "/it/down"),
	} {
		if err == nil || errors.Is(err, nomad.ErrNotFound) {
			t.Errorf("%s with Nomad down: %v, want an error that is not ErrNotFound", name, err)
		}
	}
}

// The agent's system job file parses and validates on a real Nomad.
func TestAgentJobFile(t *testing.T) {
	hcl, err := os.ReadFile("../../deploy/nomad/garrison-agent.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	job, err := agent.Client.Jobs().ParseHCLOpts(&api.JobsParseRequest{
		JobHCL: string(hcl), Variables: `etcd = "http://127.0.0.1:2379"`, Canonicalize: true,
	})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if *job.Type != api.JobTypeSystem || *job.ID != "garrison-agent" {
		t.Errorf("job %s of type %s, want the system job garrison-agent", *job.ID, *job.Type)
	}
	args := job.TaskGroups[0].Tasks[0].Config["args"]
	if !strings.Contains(fmt.Sprint(args), "http://127.0.0.1:2379") {
		t.Errorf("args %v do not carry the etcd variable", args)
	}
	resp, _, err := agent.Client.Jobs().Validate(job, nil)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	if len(resp.ValidationErrors) > 0 || resp.Error != "" {
		t.Errorf("validation: %v %s", resp.ValidationErrors, resp.Error)
	}
}

// The README's Nomad server and client configurations are valid for the
// Nomad the project builds, and the client's lets the agent's job mount
// the Docker socket.
func TestDeployAgentConfigs(t *testing.T) {
	bin, err := nomadtest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"server.hcl", "client.hcl"} {
		path := "../../deploy/nomad/" + f
		if out, err := exec.Command(bin, "config", "validate", path).CombinedOutput(); err != nil {
			t.Errorf("nomad config validate %s: %v\n%s", f, err, out)
		}
	}
	client, err := os.ReadFile("../../deploy/nomad/client.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?s)plugin "docker".*volumes\s*\{\s*enabled\s*=\s*true`).Match(client) {
		t.Errorf("client.hcl does not enable the docker driver's volumes, which garrison-agent.nomad.hcl needs")
	}
}

// HTTP checks run in Nomad: a passing one makes the allocation healthy; a
// failing one kills the task after maxConsecutiveFailures, a failure.
func TestNativeHealthChecks(t *testing.T) {
	d, _ := newDriver(t)
	ctx := ctxFor(t)
	check := nomad.Check{Protocol: "HTTP", Path: "/health", Interval: time.Second, Timeout: time.Second, MaxConsecutiveFailures: 2}
	good := rawApp("/it/healthy", "2026-01-01T00:00:00.000Z", 1)
	good.Checks = []nomad.Check{check}
	bad := rawApp("/it/sick", "2026-01-01T00:00:00.000Z", 1)
	bad.Checks = []nomad.Check{check}
	bad.Task.Env = map[string]string{"START_UNHEALTHY": "1"}
	for _, a := range []nomad.App{good, bad} {
		if _, err := d.Submit(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, wait, "the healthy app's task healthy", func() (bool, string) {
		live, _ := running(ctx, t, d, good.Task.AppID)
		return len(live) == 1 && live[0].Healthy != nil && *live[0].Healthy, describe(live)
	})
	poll.Until(t, wait, "the sick app's task killed by its check", func() (bool, string) {
		all, err := d.Allocations(ctx, bad.Task.AppID)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(all, func(tk nomad.Task) bool {
			return tk.State == task.Failed && tk.Healthy != nil && !*tk.Healthy
		}), describe(all)
	})
}

// The task sees Marathon's environment with Nomad's values filled in: its
// task id, its address and its host ports; and it is given the cpu share
// the node's fingerprint says.
func TestMarathonEnvironment(t *testing.T) {
	d, c := newDriver(t)
	ctx := ctxFor(t)
	a := rawApp("/it/env", "2026-01-01T00:00:00.000Z", 1)
	a.Task.Args = nil
	a.Task.Cmd = `echo "$MESOS_TASK_ID $HOST $PORT0 $PORT_HTTP $PORT_10001 $MARATHON_APP_ID" > local/env; exec ` + serverBin
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	tk := waitRunning(ctx, t, d, a.Task.AppID, 1, nil)[0]
	serves(t, tk)
	p := fmt.Sprint(tk.Ports[0])
	want := strings.Join([]string{tk.ID, tk.Host, p, p, p, "/it/env"}, " ") + "\n"
	var got string
	poll.Until(t, wait, "the task's env file", func() (bool, string) {
		r, err := c.AllocFS().Cat(&api.Allocation{ID: tk.AllocID, NodeID: tk.NodeID}, "app/local/env", nil)
		if err != nil {
			return false, err.Error()
		}
		defer r.Close()
		b, _ := io.ReadAll(r)
		got = string(b)
		return got == want, got
	})

	node, _, err := c.Nodes().Info(tk.NodeID, nil)
	if err != nil {
		t.Fatal(err)
	}
	mhz, err := strconv.Atoi(node.Attributes["cpu.frequency"])
	if err != nil {
		t.Fatalf("cpu.frequency %q: %v", node.Attributes["cpu.frequency"], err)
	}
	job, _, err := c.Jobs().Info(nomad.JobID(a.Task.AppID), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cpu := *job.TaskGroups[0].Tasks[0].Resources.CPU; cpu != int(math.Ceil(a.Task.CPUs*float64(mhz))) {
		t.Errorf("cpu %d MHz for %v cpus at %d MHz per core", cpu, a.Task.CPUs, mhz)
	}
}

// Nomad refuses to scale while a deployment runs; force fails the
// deployment first, as Marathon's force=true cancels one.
func TestScaleDuringDeployment(t *testing.T) {
	d, c := newDriver(t)
	ctx := ctxFor(t)
	// Its check never passes and never kills: the deployment stays active.
	a := rawApp("/it/stuck", "2026-01-01T00:00:00.000Z", 1)
	a.Task.Env = map[string]string{"START_UNHEALTHY": "1"}
	a.Checks = []nomad.Check{{Protocol: "HTTP", Path: "/health", Interval: time.Second, Timeout: time.Second}}
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	waitRunning(ctx, t, d, a.Task.AppID, 1, nil)
	r, ok, err := d.Deployment(ctx, a.Task.AppID)
	if err != nil || !ok || !r.Active {
		t.Fatalf("deployment %+v %v %v: want an active one", r, ok, err)
	}
	if err := d.Scale(ctx, a.Task.AppID, 2, false); !errors.Is(err, nomad.ErrDeploymentActive) {
		t.Fatalf("scale during the deployment: %v, want ErrDeploymentActive", err)
	}
	if err := d.Scale(ctx, a.Task.AppID, 2, true); err != nil {
		t.Fatalf("forced scale: %v", err)
	}
	dep, _, err := c.Deployments().Info(r.ID, nil)
	if err != nil || dep.Status != api.DeploymentStatusFailed {
		t.Errorf("the forced-over deployment: %v %v, want failed", dep.Status, err)
	}
	waitRunning(ctx, t, d, a.Task.AppID, 2, nil)
}

// A broken event stream is reopened: changes after the break still arrive.
// A proxy in front of the real agent breaks the stream's connection.
func TestWatchReconnects(t *testing.T) {
	_, ns := agent.Namespace(t)
	srv := agent.NewProxy(t)
	conf := api.DefaultConfig()
	conf.Address, conf.Namespace = srv.URL, ns
	c, err := api.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	d, err := nomad.New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	a := rawApp("/it/rewatch", "2026-01-01T00:00:00.000Z", 1)
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	waitRunning(ctx, t, d, a.Task.AppID, 1, nil)
	watch, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	scale(ctx, t, d, a.Task.AppID, 2)
	running := map[string]bool{}
	deadline := time.After(wait)
	for len(running) < 2 {
		select {
		case tk, ok := <-watch:
			if !ok {
				t.Fatal("watch closed after the stream broke")
			}
			if tk.State == task.Running {
				running[tk.ID] = true
			}
		case <-deadline:
			t.Fatalf("after the break the watch sent running %v, want 2 tasks", running)
		}
	}
}
