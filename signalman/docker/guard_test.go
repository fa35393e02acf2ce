package docker_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	dockerevents "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/task"
)

// A leader paused between the scheduler's term check and its launch, and
// resumed after the next leader took over (and adopted what ran then),
// creates the container on resume, but the guard between create and start
// finds the term over: the container is removed and never started. Without
// the guard it started, a container no leader knew (seen in the HA test as
// one launch too many).
func TestLaunchChecksTheGuardBetweenCreateAndStart(t *testing.T) {
	cli := dockertest.Client(t)
	image(t, cli)
	spec := newSpec(t, 1)
	cleanup(t, cli, spec.ID)
	name := docker.ContainerName(spec.ID)
	termOver := errors.New("the term is over")
	var atCheck string // the container's state when the guard was asked
	d, err := docker.New(cli, docker.WithGuard(func(ctx context.Context) error {
		ctr, err := cli.ContainerInspect(ctx, name)
		if err != nil {
			atCheck = err.Error()
		} else {
			atCheck = string(ctr.State.Status)
		}
		return termOver
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	msgs, errs := cli.Events(ctx, dockerevents.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(dockerevents.ContainerEventType)), filters.Arg("container", name))})

	st, err := d.Launch(t.Context(), spec)
	if !errors.Is(err, termOver) || st.State == task.Running {
		t.Fatalf("launch with the term over: %+v, %v; want it refused", st, err)
	}
	if atCheck != "created" {
		t.Errorf("the guard was asked with the container %q, want it created and not started", atCheck)
	}
	if _, err := cli.ContainerInspect(t.Context(), name); !cerrdefs.IsNotFound(err) {
		t.Errorf("the unstarted container is still there: %v", err)
	}
	var seen []dockerevents.Action
	for !slices.Contains(seen, dockerevents.ActionDestroy) {
		select {
		case m := <-msgs:
			seen = append(seen, m.Action)
		case err := <-errs:
			t.Fatalf("Docker events: %v (seen %v)", err, seen)
		}
	}
	if slices.Contains(seen, dockerevents.ActionStart) {
		t.Errorf("the container was started: events %v", seen)
	}
}
