package health

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/task"
)

// noShell runs a COMMAND check's words directly: the test image is FROM
// scratch, without the /bin/sh real images carry. Everything else is the
// real Docker driver's exec.
type noShell struct{ d *docker.Driver }

func (n noShell) Exec(ctx context.Context, taskID string, argv []string, max int) (int, string, error) {
	if len(argv) == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" {
		argv = strings.Fields(argv[2])
	}
	return n.d.Exec(ctx, taskID, argv, max)
}

// Issue 10: COMMAND checks of Docker apps ran on the host, as garrison's
// user; they run inside the task's container, as Marathon's (Mesos') do.
// /app exists only in the container, so a pass proves where it ran.
func TestCommandCheckOfAContainerRunsInIt(t *testing.T) {
	cli := dockertest.Client(t)
	const image = "garrison-test/health-taskserver:dev"
	dockertest.BuildGoImage(t, cli, image, "github.com/garrisonhq/garrison/signalman/docker/internal/taskserver")
	d, err := docker.New(cli)
	if err != nil {
		t.Fatal(err)
	}
	spec := task.Spec{ID: dockertest.UniqueName("health_exec."), AppID: "/health/exec", Image: image,
		Args: []string{"-marker", "x"}, Labels: map[string]string{dockertest.LabelTest: t.Name()}}
	// The task server needs a port; the kernel's choice is fine here.
	spec.Env = map[string]string{"PORT0": "0"}
	if _, err := d.Launch(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Kill(context.Background(), spec.ID, time.Second); err != nil {
			t.Errorf("kill %s: %v", spec.ID, err)
		}
	})

	h := start(t, WithContainerExec(noShell{d}))
	h.add(t, "in", time.Time{}, Check{Protocol: Command, Command: "/app -exists /app", Task: spec.ID, Interval: fast, Timeout: 20 * time.Second})
	h.add(t, "missing", time.Time{}, Check{Protocol: Command, Command: "/app -exists /no/such/file", Task: spec.ID, Interval: fast, Timeout: 20 * time.Second})
	for _, id := range []string{"in", "missing"} {
		eventually(t, "a counted check of "+id, func() bool {
			r := result(t, h.m, id, 0)
			return !r.LastSuccess.IsZero() || !r.LastFailure.IsZero()
		})
	}
	if r := result(t, h.m, "in", 0); !r.Alive {
		t.Errorf("check of a file in the container: %+v", r)
	}
	if r := result(t, h.m, "missing", 0); r.Alive || !strings.Contains(r.LastFailureCause, "exit status 1") || !strings.Contains(r.LastFailureCause, "missing") {
		t.Errorf("check of a missing file: %+v", r)
	}

	// Without a container exec the check fails and says why, rather than
	// running on the host.
	plain := start(t)
	plain.add(t, "in", time.Time{}, Check{Protocol: Command, Command: "true", Task: spec.ID, Interval: fast, Timeout: 5 * time.Second})
	eventually(t, "a counted check", func() bool { return !result(t, plain.m, "in", 0).LastFailure.IsZero() })
	if r := result(t, plain.m, "in", 0); r.Alive || !strings.Contains(r.LastFailureCause, "no Docker exec") {
		t.Errorf("check without a container exec: %+v", r)
	}
}
