package docker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/task"
)

// The tests run against the real Docker engine (dockertest.Client fails, never
// skips, when none answers) with an image built FROM scratch around
// internal/taskserver.

const (
	taskServerPackage = "github.com/garrisonhq/garrison/signalman/docker/internal/taskserver"
	taskServerImage   = "garrison-test/signalman-taskserver:dev"
	testApp           = "/signalman/dockertest"
)

// newDriver returns a driver over a fresh client, and the client.
func newDriver(t testing.TB) (*docker.Driver, *client.Client) {
	t.Helper()
	cli := dockertest.Client(t)
	d, err := docker.New(cli, docker.WithReconnectDelay(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return d, cli
}

func image(t testing.TB, cli *client.Client) string {
	t.Helper()
	dockertest.BuildGoImage(t, cli, taskServerImage, taskServerPackage)
	return taskServerImage
}

// newSpec is a task of testApp with a fresh id and nPorts free host ports.
func newSpec(t testing.TB, nPorts int) task.Spec {
	t.Helper()
	s := task.Spec{
		ID:        dockertest.UniqueName("signalman_dockertest."),
		AppID:     testApp,
		Version:   "2026-01-02T03:04:05.000Z",
		Image:     taskServerImage,
		Host:      "127.0.0.1",
		KillGrace: 2 * time.Second,
		Labels:    map[string]string{dockertest.LabelTest: t.Name()},
	}
	if nPorts > 0 {
		for _, p := range testport.Take(t, nPorts) {
			s.Ports = append(s.Ports, task.Port{Host: p})
		}
	}
	return s
}

// cleanup removes the task's container, if any, when the test ends.
func cleanup(t testing.TB, cli *client.Client, taskID string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := cli.ContainerRemove(ctx, docker.ContainerName(taskID), container.RemoveOptions{Force: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove the container of %s: %v", taskID, err)
		}
	})
}

func launch(t testing.TB, d *docker.Driver, cli *client.Client, spec task.Spec) task.Status {
	t.Helper()
	cleanup(t, cli, spec.ID)
	st, err := d.Launch(t.Context(), spec)
	if err != nil {
		t.Fatalf("launch %s: %v", spec.ID, err)
	}
	if st.State != task.Running || st.ID != spec.ID {
		t.Fatalf("launch %s: status %+v, want %s running", spec.ID, st, spec.ID)
	}
	return st
}

// waitFor polls cond until it holds or timeout passes.
var waitFor = poll.Until

// getJSON polls url until it answers 200 and decodes the body into v.
func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	waitFor(t, 20*time.Second, "GET "+url, func() (bool, string) {
		resp, err := c.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false, fmt.Sprintf("%s %q %v", resp.Status, body, err)
		}
		if err := json.Unmarshal(body, v); err != nil {
			return false, fmt.Sprintf("decode %q: %v", body, err)
		}
		return true, ""
	})
}

// next waits for the next status of taskID on a Watch channel.
func next(t testing.TB, ch <-chan task.Status, taskID string, timeout time.Duration) task.Status {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case st, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed before a status of %s came", taskID)
			}
			if st.ID == taskID {
				return st
			}
		case <-timer.C:
			t.Fatalf("no status of %s on the watch within %s", taskID, timeout)
		}
	}
}

func TestLaunchServesOnHostPortWithMarathonEnv(t *testing.T) {
	t.Parallel()
	d, cli := newDriver(t)
	image(t, cli)
	spec := newSpec(t, 2)
	spec.Ports[0].Name = "http"
	spec.Ports[1].Requested = 8080
	spec.Labels["team.name"] = "ktv"
	spec.Args = []string{"-marker=from-args"}
	spec.Env = map[string]string{"EXTRA": "x"}
	st := launch(t, d, cli, spec)
	if !slices.Equal(st.Ports, []int{spec.Ports[0].Host, spec.Ports[1].Host}) || st.AppID != testApp || st.StartedAt.IsZero() {
		t.Errorf("launch status %+v", st)
	}

	base := fmt.Sprintf("http://127.0.0.1:%d", spec.Ports[0].Host)
	var env map[string]string
	getJSON(t, base+"/env", &env)
	p0, p1 := fmt.Sprint(spec.Ports[0].Host), fmt.Sprint(spec.Ports[1].Host)
	want := map[string]string{
		"MARATHON_APP_ID": testApp, "MESOS_TASK_ID": spec.ID, "MARATHON_APP_VERSION": spec.Version,
		"MARATHON_APP_DOCKER_IMAGE": taskServerImage, "HOST": "127.0.0.1",
		"PORT0": p0, "PORT": p0, "PORT1": p1, "PORT_HTTP": p0, "PORT_8080": p1, "PORTS": p0 + "," + p1,
		"MARATHON_APP_LABEL_TEAM_NAME": "ktv", "EXTRA": "x",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("task env %s = %q, want %q", k, env[k], v)
		}
	}
	var args []string
	getJSON(t, base+"/args", &args)
	if !slices.Equal(args, spec.Args) {
		t.Errorf("task argv %q, want %q after the image's entrypoint", args, spec.Args)
	}

	c, err := cli.ContainerInspect(t.Context(), docker.ContainerName(spec.ID))
	if err != nil {
		t.Fatal(err)
	}
	if !c.HostConfig.NetworkMode.IsHost() {
		t.Errorf("network mode %q, want host", c.HostConfig.NetworkMode)
	}
	for k, v := range map[string]string{
		docker.LabelTask: spec.ID, docker.LabelApp: testApp, docker.LabelVersion: spec.Version,
		docker.LabelPorts: p0 + "," + p1, docker.LabelMesosTaskID: spec.ID, "team.name": "ktv",
	} {
		if c.Config.Labels[k] != v {
			t.Errorf("container label %s = %q, want %q", k, c.Config.Labels[k], v)
		}
	}

	// Launching the same task again adopts the running container.
	again, err := d.Launch(t.Context(), spec)
	if err != nil || again.State != task.Running || again.ID != spec.ID {
		t.Errorf("second launch: %+v, %v; want the running task", again, err)
	}
}

func TestLaunchSetsLimits(t *testing.T) {
	t.Parallel()
	d, cli := newDriver(t)
	image(t, cli)
	for _, tc := range []struct {
		name            string
		cpus, mem       float64
		grace           time.Duration
		nanoCPUs, bytes int64
		stopTimeout     int // -1: none set
	}{
		{name: "half a cpu, 64 MB", cpus: 0.5, mem: 64, grace: 3 * time.Second, nanoCPUs: 5e8, bytes: 64 << 20, stopTimeout: 3},
		{name: "unlimited", stopTimeout: -1},
		{name: "sub-second grace rounds up", cpus: 1.25, mem: 32.5, grace: 300 * time.Millisecond, nanoCPUs: 125e7, bytes: 32<<20 + 1<<19, stopTimeout: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := newSpec(t, 0)
			spec.CPUs, spec.MemMB, spec.KillGrace = tc.cpus, tc.mem, tc.grace
			launch(t, d, cli, spec)
			c, err := cli.ContainerInspect(t.Context(), docker.ContainerName(spec.ID))
			if err != nil {
				t.Fatal(err)
			}
			if c.HostConfig.NanoCPUs != tc.nanoCPUs || c.HostConfig.Memory != tc.bytes {
				t.Errorf("NanoCPUs %d, Memory %d; want %d, %d", c.HostConfig.NanoCPUs, c.HostConfig.Memory, tc.nanoCPUs, tc.bytes)
			}
			got := -1
			if c.Config.StopTimeout != nil {
				got = *c.Config.StopTimeout
			}
			if got != tc.stopTimeout {
				t.Errorf("StopTimeout %d, want %d", got, tc.stopTimeout)
			}
		})
	}
}

func TestKillHonoursGrace(t *testing.T) {
	t.Parallel()
	d, cli := newDriver(t)
	image(t, cli)
	const grace = 2 * time.Second
	for _, tc := range []struct {
		name      string
		args      []string
		killGrace time.Duration // the spec's
		grace     time.Duration // Kill's
		exitCode  int
		killed    bool // SIGKILLed after the grace period
	}{
		{name: "exits on SIGTERM", killGrace: 30 * time.Second, grace: grace, exitCode: 0},
		{name: "ignores SIGTERM", args: []string{"-ignore-term"}, killGrace: 30 * time.Second, grace: grace, exitCode: 137, killed: true},
		{name: "ignores SIGTERM, spec's grace", args: []string{"-ignore-term"}, killGrace: grace, exitCode: 137, killed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			watch, err := d.Watch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			spec := newSpec(t, 1)
			spec.Args, spec.KillGrace = tc.args, tc.killGrace
			launch(t, d, cli, spec)
			if st := next(t, watch, spec.ID, 20*time.Second); st.State != task.Running {
				t.Fatalf("first watched status %+v, want running", st)
			}
			// The server handles signals once it listens.
			var env map[string]string
			getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/env", spec.Ports[0].Host), &env)

			start := time.Now()
			if err := d.Kill(t.Context(), spec.ID, tc.grace); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if tc.killed && took < grace {
				t.Errorf("kill took %s, less than the %s grace", took, grace)
			}
			if !tc.killed && took >= grace {
				t.Errorf("kill took %s: was the task that exits on SIGTERM SIGKILLed?", took)
			}
			st := next(t, watch, spec.ID, 20*time.Second)
			if st.State != task.Killing || !strings.Contains(st.Message, "signal 15") {
				t.Errorf("first status after kill: %+v, want killing by signal 15", st)
			}
			for !st.State.Terminal() {
				st = next(t, watch, spec.ID, 20*time.Second)
			}
			if st.State != task.Killed || st.ExitCode != tc.exitCode {
				t.Errorf("after kill: %s exit code %d (%s), want %s exit code %d", st.State, st.ExitCode, st.Message, task.Killed, tc.exitCode)
			}
			if _, err := cli.ContainerInspect(t.Context(), docker.ContainerName(spec.ID)); !cerrdefs.IsNotFound(err) {
				t.Errorf("container still there after kill: %v", err)
			}
			if err := d.Kill(t.Context(), spec.ID, tc.grace); err != nil {
				t.Errorf("killing a killed task: %v, want nil", err)
			}
		})
	}
}

func TestWatchSeesKillBehindGarrisonsBack(t *testing.T) {
	t.Parallel()
	d, cli := newDriver(t)
	image(t, cli)
	ctx, cancel := context.WithCancel(t.Context())
	watch, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	spec := newSpec(t, 0)
	launch(t, d, cli, spec)
	if st := next(t, watch, spec.ID, 20*time.Second); st.State != task.Running || st.StagedAt.IsZero() || st.StartedAt.IsZero() {
		t.Fatalf("first watched status %+v, want running with times", st)
	}
	if err := d.Remove(t.Context(), spec.ID); !errors.Is(err, docker.ErrTaskActive) {
		t.Errorf("removing a running task: %v, want ErrTaskActive", err)
	}
	if err := cli.ContainerKill(t.Context(), docker.ContainerName(spec.ID), "KILL"); err != nil {
		t.Fatal(err)
	}
	st := next(t, watch, spec.ID, 20*time.Second)
	if st.State != task.Failed || st.ExitCode != 137 || !strings.Contains(st.Message, "signal 9") {
		t.Errorf("after docker kill: %+v, want failed by signal 9", st)
	}
	if st.AppID != testApp || st.Version != spec.Version {
		t.Errorf("watched status lost the task's app or version: %+v", st)
	}

	if _, err := d.Stats(t.Context(), spec.ID); !errors.Is(err, docker.ErrTaskEnded) {
		t.Errorf("stats of a dead task: %v, want ErrTaskEnded", err)
	}
	// The dead container stays listed until removed.
	list, err := d.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(list, func(s task.Status) bool { return s.ID == spec.ID }); i < 0 || list[i].State != task.Failed || list[i].ExitCode != 137 {
		t.Errorf("list after docker kill: %+v", list)
	}
	if err := d.Remove(t.Context(), spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerInspect(t.Context(), docker.ContainerName(spec.ID)); !cerrdefs.IsNotFound(err) {
		t.Errorf("container still there after remove: %v", err)
	}
	if err := d.Remove(t.Context(), spec.ID); err != nil {
		t.Errorf("removing twice: %v, want nil", err)
	}

	cancel()
	for range watch { // the channel closes once ctx is done
	}
}

func TestListAdoptsAfterRestart(t *testing.T) {
	t.Parallel()
	d, cli := newDriver(t)
	image(t, cli)
	want := map[string]task.Status{}
	for range 2 {
		spec := newSpec(t, 2)
		st := launch(t, d, cli, spec)
		want[st.ID] = st
	}

	// A new garrison: a new client, a new driver, nothing in memory.
	restarted, _ := newDriver(t)
	list, err := restarted.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, got := range list {
		w, ok := want[got.ID]
		if !ok {
			continue
		}
		found++
		if got.AppID != w.AppID || got.Version != w.Version || got.Host != w.Host || !slices.Equal(got.Ports, w.Ports) {
			t.Errorf("adopted %+v, launched %+v", got, w)
		}
		if got.State != task.Running || got.StagedAt.IsZero() || got.StartedAt.IsZero() || got.StartedAt.Before(got.StagedAt) {
			t.Errorf("adopted %s: state %s, staged %v, started %v", got.ID, got.State, got.StagedAt, got.StartedAt)
		}
	}
	if found != len(want) {
		t.Errorf("list found %d of the %d tasks: %+v", found, len(want), list)
	}
}

func TestLaunchMissingImage(t *testing.T) {
	t.Parallel()
	d, cli := newDriver(t)
	spec := newSpec(t, 0)
	spec.Image = "garrison-test/no-such-image:never"
	cleanup(t, cli, spec.ID)
	st, err := d.Launch(t.Context(), spec)
	if err == nil {
		t.Fatal("launch with a missing image succeeded")
	}
	for _, part := range []string{spec.ID, spec.Image, "not found"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not say %q", err, part)
		}
	}
	if st.State != task.Failed {
		t.Errorf("status %s, want failed", st.State)
	}
}

func TestLaunchCmdWithoutShellLeavesNothing(t *testing.T) {
	t.Parallel()
	d, cli := newDriver(t)
	image(t, cli)
	spec := newSpec(t, 0)
	spec.Cmd = "exec /app" // the scratch image has no /bin/sh
	cleanup(t, cli, spec.ID)
	st, err := d.Launch(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), spec.ID) || !strings.Contains(err.Error(), "/bin/sh") {
		t.Fatalf("launch of a cmd in a shell-less image: %v, want an error naming the task and /bin/sh", err)
	}
	if st.State != task.Failed {
		t.Errorf("status %s, want failed", st.State)
	}
	if _, err := cli.ContainerInspect(t.Context(), docker.ContainerName(spec.ID)); !cerrdefs.IsNotFound(err) {
		t.Errorf("the failed container is left behind: %v", err)
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	d, cli := newDriver(t)
	image(t, cli)
	spec := newSpec(t, 1)
	launch(t, d, cli, spec)
	var env map[string]string
	getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/env", spec.Ports[0].Host), &env)
	waitFor(t, 20*time.Second, "stats with memory and cpu use", func() (bool, string) {
		u, err := d.Stats(t.Context(), spec.ID)
		if err != nil {
			return false, err.Error()
		}
		return u.MemBytes > 0 && u.CPUSeconds > 0, fmt.Sprintf("%+v", u)
	})
	if _, err := d.Stats(t.Context(), "signalman_dockertest.nosuchtask"); !errors.Is(err, docker.ErrUnknownTask) {
		t.Errorf("stats of an unknown task: %v, want ErrUnknownTask", err)
	}
}

func TestPingSaysWhenNoEngineAnswers(t *testing.T) {
	t.Parallel()
	host := "unix://" + t.TempDir() + "/no-docker.sock"
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	d, err := docker.New(cli)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Ping(t.Context())
	if err == nil || !strings.Contains(err.Error(), "no Docker engine answers at "+host) || !strings.Contains(err.Error(), "Docker apps are refused") {
		t.Errorf("ping without an engine: %v", err)
	}
	if _, err := d.Watch(t.Context()); err == nil {
		t.Error("watch without an engine succeeded")
	}
	// The real engine answers.
	real, _ := newDriver(t)
	if err := real.Ping(t.Context()); err != nil {
		t.Error(err)
	}
}

// Garrisons sharing one engine see only their own containers.
func TestNamespacesKeepGarrisonsApart(t *testing.T) {
	cli := dockertest.Client(t)
	dockertest.BuildGoImage(t, cli, taskServerImage, taskServerPackage)
	ctx := t.Context()
	a, err := docker.New(cli, docker.WithNamespace("garrison-a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := docker.New(cli, docker.WithNamespace("garrison-b"))
	if err != nil {
		t.Fatal(err)
	}
	none, err := docker.New(cli)
	if err != nil {
		t.Fatal(err)
	}
	ports := testport.Take(t, 1)
	id := "ns_test." + strings.ReplaceAll(dockertest.UniqueName("x"), "-", "")
	spec := task.Spec{ID: id, AppID: "/ns/test", Image: taskServerImage, Ports: []task.Port{{Host: ports[0]}}, KillGrace: time.Second}
	if _, err := a.Launch(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Kill(context.Background(), id, 0) })
	has := func(d *docker.Driver) bool {
		list, err := d.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range list {
			if st.ID == id {
				return true
			}
		}
		return false
	}
	if !has(a) || has(b) || has(none) {
		t.Fatalf("listed by a %v, b %v, no namespace %v: want only a", has(a), has(b), has(none))
	}
	if err := b.Kill(ctx, id, 0); err != nil {
		t.Fatalf("kill from another namespace: %v", err)
	}
	if !has(a) {
		t.Fatal("another namespace's Kill removed the container")
	}
}

// Issue 10: user, privileged, host volumes and docker parameters were
// accepted and dropped; the container now runs with them.
func TestLaunchHonoursContainerFields(t *testing.T) {
	t.Parallel()
	d, cli := newDriver(t)
	image(t, cli)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := newSpec(t, 1)
	spec.User = "65534:65534"
	spec.Privileged = true
	spec.Volumes = []task.Volume{{HostPath: dir, ContainerPath: "/etc/app", ReadOnly: true}}
	spec.Parameters = []task.Parameter{
		{Key: "label", Value: "team=ktv"}, {Key: "cap-add", Value: "NET_ADMIN"}, {Key: "read-only", Value: "true"},
		{Key: "shm-size", Value: "8m"}, {Key: "ulimit", Value: "nofile=512:1024"}, {Key: "env", Value: "FROM_PARAM=1"},
	}
	launch(t, d, cli, spec)

	var self struct {
		UID, GID   int
		Read       string
		ReadError  string
		WriteError string
	}
	base := fmt.Sprintf("http://127.0.0.1:%d/self", spec.Ports[0].Host)
	getJSON(t, base+"?read=/etc/app/config&write=/etc/app/new", &self)
	if self.UID != 65534 || self.GID != 65534 {
		t.Errorf("runs as %d:%d, want 65534:65534", self.UID, self.GID)
	}
	if self.Read != "from the host" || self.ReadError != "" {
		t.Errorf("read the host volume: %q, %s", self.Read, self.ReadError)
	}
	if self.WriteError == "" {
		t.Error("wrote into a read-only volume")
	}
	c, err := cli.ContainerInspect(t.Context(), docker.ContainerName(spec.ID))
	if err != nil {
		t.Fatal(err)
	}
	h := c.HostConfig
	if !h.Privileged || !h.ReadonlyRootfs || h.ShmSize != 8<<20 || !slices.ContainsFunc(h.CapAdd, func(c string) bool { return strings.TrimPrefix(c, "CAP_") == "NET_ADMIN" }) ||
		len(h.Ulimits) != 1 || h.Ulimits[0].Name != "nofile" || h.Ulimits[0].Hard != 1024 || c.Config.Labels["team"] != "ktv" ||
		!slices.Contains(c.Config.Env, "FROM_PARAM=1") || c.Config.Labels[docker.LabelTask] != spec.ID {
		t.Errorf("host config %+v, labels %v", h, c.Config.Labels)
	}
}

func TestLaunchRefusesUnmappedParameter(t *testing.T) {
	t.Parallel()
	d, cli := newDriver(t)
	image(t, cli)
	spec := newSpec(t, 0)
	spec.Parameters = []task.Parameter{{Key: "net", Value: "bridge"}}
	cleanup(t, cli, spec.ID)
	if st, err := d.Launch(t.Context(), spec); err == nil || st.State != task.Failed {
		t.Fatalf("launch with --net: %+v, %v; want a failure", st, err)
	}
	if _, err := cli.ContainerInspect(t.Context(), docker.ContainerName(spec.ID)); !cerrdefs.IsNotFound(err) {
		t.Errorf("a container was created: %v", err)
	}
}
