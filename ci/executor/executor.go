// Package executor runs a pipeline step in a fresh Docker container: the
// step's image, host networking, the run's workspace mounted at
// /workspace and nothing else of the host (save the Go toolchain,
// read-only, when the step asks for it). Every container carries the run's
// id in a label, so a restarted garrison finds and removes what a run it
// lost left behind.
package executor

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/garrisonhq/garrison/ci/pipeline"
)

// Labels on every step container.
const (
	LabelRun       = "garrison.ci.run"
	LabelStep      = "garrison.ci.step"
	LabelNamespace = "garrison.namespace"
)

// Docker runs steps on a Docker engine.
type Docker struct {
	cli       client.APIClient
	namespace string
	goRoot    string
}

// Option configures Docker.
type Option func(*Docker)

// WithGoRoot sets the host directory a hostGo step gets, read-only, at
// /usr/local/go (default pipeline.HostGoRoot).
func WithGoRoot(dir string) Option { return func(d *Docker) { d.goRoot = dir } }

// New returns an executor on cli; namespace (garrison's cluster id) labels
// the containers so garrisons sharing an engine never touch each other's.
func New(cli client.APIClient, namespace string, opts ...Option) *Docker {
	d := &Docker{cli: cli, namespace: namespace, goRoot: pipeline.HostGoRoot}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Spec is one step to run.
type Spec struct {
	RunID string
	Step  pipeline.Step
	// Workspace is the host directory of the run's checkout.
	Workspace string
	// Env is added to the step's own env (run variables, secrets).
	Env map[string]string
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// Run runs the step to its end, copying its output to log, and returns
// its exit code. ctx ending (cancellation, the step's timeout) kills the
// container; the container is removed in every case.
func (d *Docker) Run(ctx context.Context, spec Spec, log io.Writer) (int, error) {
	step := spec.Step
	if step.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, step.Timeout)
		defer cancel()
	}
	env := make([]string, 0, len(step.Env)+len(spec.Env)+1)
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range step.Env {
		env = append(env, k+"="+v)
	}
	mounts := []mount.Mount{{Type: mount.TypeBind, Source: spec.Workspace, Target: pipeline.Workspace}}
	if step.HostGo {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: d.goRoot, Target: pipeline.HostGoRoot, ReadOnly: true})
		env = append(env, "GOROOT="+pipeline.HostGoRoot, "GOCACHE="+pipeline.Workspace+"/.cache/go-build",
			"GOPATH="+pipeline.Workspace+"/.cache/go", "GOFLAGS=-buildvcs=false")
	}
	// Run ids repeat across garrisons (project.N), and garrisons may share
	// an engine: the namespace keeps their container names apart.
	name := unsafeName.ReplaceAllString(fmt.Sprintf("garrison-ci-%s-%s-%s", shortNamespace(d.namespace), spec.RunID, step.Name), "-")
	created, err := d.cli.ContainerCreate(ctx,
		&container.Config{
			Image: step.Image, Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{step.Script()},
			Env: env, WorkingDir: pipeline.Workspace,
			Labels: map[string]string{LabelRun: spec.RunID, LabelStep: step.Name, LabelNamespace: d.namespace},
		},
		&container.HostConfig{
			NetworkMode: "host",
			Mounts:      mounts,
			SecurityOpt: []string{"no-new-privileges"},
		}, nil, nil, name)
	if err != nil {
		return -1, fmt.Errorf("create %s container from %s: %w", step.Name, step.Image, err)
	}
	defer d.remove(created.ID)
	// Wait is asked before start, so a step that exits at once is seen.
	waitC, waitErr := d.cli.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return -1, fmt.Errorf("start %s container: %w", step.Name, err)
	}
	logsDone := make(chan error, 1)
	go func() {
		rc, err := d.cli.ContainerLogs(context.WithoutCancel(ctx), created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
		if err != nil {
			logsDone <- err
			return
		}
		defer rc.Close()
		_, err = stdcopy.StdCopy(log, log, rc)
		logsDone <- err
	}()
	select {
	case w := <-waitC:
		// The log stream ends when the container does.
		<-logsDone
		if w.Error != nil {
			return -1, fmt.Errorf("wait for %s container: %s", step.Name, w.Error.Message)
		}
		return int(w.StatusCode), nil
	case err := <-waitErr:
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return -1, fmt.Errorf("step %s timed out after %s", step.Name, step.Timeout)
			}
			return -1, fmt.Errorf("step %s stopped: %w", step.Name, context.Cause(ctx))
		}
		return -1, fmt.Errorf("wait for %s container: %w", step.Name, err)
	}
}

func (d *Docker) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
}

// RemoveRun force-removes every container of run (all runs when runID is
// empty) in this namespace, and returns how many it removed.
func (d *Docker) RemoveRun(ctx context.Context, runID string) (int, error) {
	f := filters.NewArgs(filters.Arg("label", LabelNamespace+"="+d.namespace))
	if runID != "" {
		f.Add("label", LabelRun+"="+runID)
	} else {
		f.Add("label", LabelRun)
	}
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return 0, fmt.Errorf("list step containers: %w", err)
	}
	n := 0
	var errs []string
	for _, c := range list {
		if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err.Error())
			continue
		}
		n++
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("remove step containers: %s", strings.Join(errs, "; "))
	}
	return n, nil
}

// shortNamespace is a short, stable stand-in for the namespace in names.
func shortNamespace(ns string) string {
	h := fnv.New32a()
	h.Write([]byte(ns))
	return fmt.Sprintf("%08x", h.Sum32())
}
