package taskstats_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/driverstats"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/scout/taskstats"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/task"
)

const testServerImage = "garrison-test/taskstats-testserver:dev"

// The Docker driver's Pid is the container's main process as the engine
// sees it, on the host: the collector walks it and finds the container's
// listener and the connection this test holds to it. Runs against the real
// engine (dockertest.Client fails, never skips, when none answers).
func TestDockerPidAndTCPFigures(t *testing.T) {
	cli := dockertest.Client(t)
	dockertest.BuildGoImage(t, cli, testServerImage, dockertest.TestServerPackage)
	d, err := docker.New(cli)
	if err != nil {
		t.Fatal(err)
	}
	ports := testport.Take(t, 1)
	spec := task.Spec{
		ID:        dockertest.UniqueName("taskstats_docker."),
		AppID:     "/taskstats/docker",
		Image:     testServerImage,
		Host:      "127.0.0.1",
		Ports:     []task.Port{{Host: ports[0]}},
		KillGrace: time.Second,
		Labels:    map[string]string{dockertest.LabelTest: t.Name()},
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := cli.ContainerRemove(ctx, docker.ContainerName(spec.ID), container.RemoveOptions{Force: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove the container of %s: %v", spec.ID, err)
		}
	})
	if _, err := d.Launch(t.Context(), spec); err != nil {
		t.Fatal(err)
	}

	pid, err := d.Pid(t.Context(), spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cli.ContainerInspect(t.Context(), docker.ContainerName(spec.ID))
	if err != nil {
		t.Fatal(err)
	}
	if pid <= 0 || pid != c.State.Pid {
		t.Fatalf("Pid = %d, inspect says %d", pid, c.State.Pid)
	}
	// The pid is the host's: /proc/<pid> is the image's entrypoint.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || string(cmdline) != "/app\x00" {
		t.Fatalf("/proc/%d/cmdline = %q (%v), want the image's /app", pid, cmdline, err)
	}

	// One request on a kept-alive connection: the server holds it open
	// (established) after answering.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	var conn net.Conn
	poll.Until(t, deadline, "the container's server at "+addr, func() (bool, string) {
		conn, err = net.DialTimeout("tcp", addr, time.Second)
		return err == nil, fmt.Sprint(err)
	})
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(deadline)); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET /: %s, close %v", resp.Status, resp.Close)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(taskstats.New(nil, []taskstats.Tasks{driverstats.Adapt[docker.Usage](d)}, taskstats.WithTimeout(deadline)))
	poll.Until(t, deadline, "the container's TCP figures", func() (bool, string) {
		s := gather(t, reg)
		f := tcpOf(s, spec.AppID, spec.ID)
		return f.want(1, 1, 0, func(v float64) bool { return v == 0 }),
			fmt.Sprintf("%v; errors %v", f, s["garrison_task_stats_errors_total"])
	})

	if _, err := d.Pid(t.Context(), "taskstats_docker.no-such-task"); !errors.Is(err, docker.ErrUnknownTask) {
		t.Errorf("Pid of an unknown task: %v, want ErrUnknownTask", err)
	}
	// Stopped, the container remains but has no process; killed, it is gone.
	dockertest.Stop(t, cli, c.ID)
	if _, err := d.Pid(t.Context(), spec.ID); !errors.Is(err, docker.ErrTaskEnded) {
		t.Errorf("Pid of a stopped task: %v, want ErrTaskEnded", err)
	}
	if err := d.Kill(t.Context(), spec.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pid(t.Context(), spec.ID); !errors.Is(err, docker.ErrUnknownTask) {
		t.Errorf("Pid of a killed task: %v, want ErrUnknownTask", err)
	}
}
