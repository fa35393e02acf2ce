// Package docker is signalman's Docker driver: it runs each task as one
// host-networked container on the local Docker engine, and rebuilds each
// task's status from the container alone (its labels, its state), so a
// restarted garrison adopts the containers it started before.
//
// A task maps to a container as Marathon's Docker containerizer maps it:
//   - the container is named "garrison-" + the task id (sanitized), runs with
//     NetworkMode host, and gets the task's Marathon environment
//     (task.Spec.Environ);
//   - Spec.Args become the container's Cmd, after the image's ENTRYPOINT;
//     Spec.Cmd runs through the image's shell (Entrypoint /bin/sh -c), so an
//     image without a shell cannot take a Cmd;
//   - CPUs and MemMB become hard limits (NanoCPUs, Memory; 0 = unlimited),
//     KillGrace the container's stop timeout;
//   - the labels are the app's, plus MESOS_TASK_ID (as Marathon sets it) and
//     garrison's own garrison.* labels (task, app, version, host, ports).
//
// The driver never pulls an image: the image must be on the engine already.
package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/garrisonhq/garrison/signalman/docker/dockerparam"
	"github.com/garrisonhq/garrison/signalman/task"
)

// The labels garrison puts on every container it starts. LabelTask marks a
// container as garrison's: List and Watch see only containers that carry it.
const (
	LabelTask    = "garrison.task"
	LabelApp     = "garrison.app"
	LabelVersion = "garrison.version"
	LabelHost    = "garrison.host"
	LabelPorts   = "garrison.ports" // host ports, comma-separated, in Spec order
	// LabelNamespace names the garrison (its etcd) a container belongs to:
	// a driver sees only its own namespace's containers, so garrisons that
	// share a Docker engine never adopt or kill each other's tasks.
	LabelNamespace = "garrison.namespace"
	// LabelMesosTaskID is the label Marathon puts on every Docker task.
	LabelMesosTaskID = "MESOS_TASK_ID"
)

// NamePrefix starts the name of every container garrison starts.
const NamePrefix = "garrison-"

// Errors the driver returns wrapped, for errors.Is. They are named as the
// process driver names its own.
var (
	// ErrUnknownTask: no container runs or remains for this task id. Only
	// Stats returns it; Kill and Remove of an unknown task return nil.
	ErrUnknownTask = errors.New("unknown task: no container for it")
	// ErrTaskActive: Remove was asked to remove a task that still runs.
	ErrTaskActive = errors.New("task still runs: kill it first")
	// ErrTaskEnded: Stats was asked about a task that no longer runs.
	ErrTaskEnded = errors.New("task has ended")
)

// DockerAPI is the part of the Docker client (github.com/docker/docker/client)
// the driver uses; *client.Client satisfies it.
type DockerAPI interface {
	DaemonHost() string
	Ping(ctx context.Context) (types.Ping, error)
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerStop(ctx context.Context, containerID string, options container.StopOptions) error
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerExecCreate(ctx context.Context, containerID string, options container.ExecOptions) (container.ExecCreateResponse, error)
	ContainerExecAttach(ctx context.Context, execID string, config container.ExecAttachOptions) (types.HijackedResponse, error)
	ContainerExecInspect(ctx context.Context, execID string) (container.ExecInspect, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerStatsOneShot(ctx context.Context, containerID string) (container.StatsResponseReader, error)
	ContainerLogs(ctx context.Context, containerID string, options container.LogsOptions) (io.ReadCloser, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
}

// Option changes a Driver's defaults.
type Option func(*Driver)

// WithReconnectDelay sets how long Watch waits before it reconnects to a
// broken event stream (default 1 s).
func WithReconnectDelay(d time.Duration) Option {
	return func(dr *Driver) { dr.reconnect = d }
}

// WithClock sets the clock for StagedAt and StartedAt in Launch's status and
// the start of Watch's event stream (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(dr *Driver) { dr.now = now }
}

// WithNamespace sets the namespace the driver's containers carry in
// LabelNamespace; a driver without one sees only containers without one.
func WithNamespace(ns string) Option {
	return func(dr *Driver) { dr.namespace = ns }
}

// WithGuard makes Launch call guard between creating a container and
// starting it; on an error the container is removed unstarted and Launch
// fails with it. A leader passes its term's check (headquarter/store's
// Guard): one paused after the scheduler's own check, right before the
// launch, resumes into a create but never starts the container, which the
// next leader, having taken over meanwhile, did not adopt. (Paused after
// this check, it left a created container, which the next leader's
// adoption removes.)
func WithGuard(guard func(context.Context) error) Option {
	return func(dr *Driver) { dr.guard = guard }
}

// mine says whether a container's labels put it in this driver's namespace.
func (d *Driver) mine(labels map[string]string) bool {
	return labels[LabelNamespace] == d.namespace
}

// killMemory is how long the driver remembers that it asked a container to
// stop, so the container's death reads as TASK_KILLED, not TASK_FAILED.
const killMemory = 10 * time.Minute

// Driver runs tasks as Docker containers. Its methods are safe for
// concurrent use.
type Driver struct {
	cli       DockerAPI
	reconnect time.Duration
	now       func() time.Time
	namespace string
	guard     func(context.Context) error // WithGuard; nil: none

	mu      sync.Mutex
	killing map[string]time.Time // container id -> when garrison asked it to stop
}

// New returns a driver over cli. It does not talk to the engine: call Ping.
func New(cli DockerAPI, opts ...Option) (*Driver, error) {
	if cli == nil {
		return nil, errors.New("docker driver: nil Docker client")
	}
	d := &Driver{cli: cli, reconnect: time.Second, now: time.Now, killing: map[string]time.Time{}}
	for _, o := range opts {
		o(d)
	}
	if d.reconnect <= 0 {
		return nil, fmt.Errorf("docker driver: reconnect delay %v is not positive", d.reconnect)
	}
	return d, nil
}

// Ping says whether a Docker engine answers; its error says where it
// looked, so garrison can explain why it refuses Docker apps.
func (d *Driver) Ping(ctx context.Context) error {
	if _, err := d.cli.Ping(ctx); err != nil {
		return fmt.Errorf("no Docker engine answers at %s: Docker apps are refused: %w", d.cli.DaemonHost(), err)
	}
	return nil
}

var nameUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// ContainerName is the name of the container that runs task id. Characters
// Docker refuses in a name become "_"; when any did, a short hash of the id
// follows, so two ids never share a name.
func ContainerName(id string) string {
	safe := nameUnsafe.ReplaceAllString(id, "_")
	if safe != id {
		sum := sha256.Sum256([]byte(id))
		safe += "-" + hex.EncodeToString(sum[:4])
	}
	return NamePrefix + safe
}

// Launch creates and starts the container for spec and returns its status:
// Running on success. On failure the status says Failed (or Staging when
// nothing was created) and the error, wrapped with the task id, says why; a
// missing image is reported by name and never pulled. Launching a task
// whose container already runs returns that container's status.
func (d *Driver) Launch(ctx context.Context, spec task.Spec) (task.Status, error) {
	st := task.Status{
		ID: spec.ID, AppID: spec.AppID, Version: spec.Version, Host: spec.Host,
		State: task.Staging, Ports: hostPorts(spec.Ports), StagedAt: d.now(),
	}
	if spec.ID == "" {
		return st, errors.New("docker: launch: task has no id")
	}
	if spec.Image == "" {
		return st, fmt.Errorf("docker: task %s: no image (a process task, not a Docker one)", spec.ID)
	}
	if spec.Cmd != "" && len(spec.Args) > 0 {
		return st, fmt.Errorf("docker: task %s: both cmd and args given; Marathon allows one", spec.ID)
	}
	cfg, host, err := containerConfig(spec)
	if err != nil {
		st.State, st.Message = task.Failed, err.Error()
		return st, fmt.Errorf("docker: task %s: %w", spec.ID, err)
	}
	if d.namespace != "" {
		cfg.Labels[LabelNamespace] = d.namespace
	}
	name := ContainerName(spec.ID)
	created, err := d.cli.ContainerCreate(ctx, cfg, host, nil, nil, name)
	switch {
	case cerrdefs.IsConflict(err):
		if cur, ierr := d.inspect(ctx, spec.ID); ierr == nil && cur.State == task.Running {
			return cur, nil
		}
		return st, fmt.Errorf("docker: task %s: container %s exists already and does not run: %w", spec.ID, name, err)
	case cerrdefs.IsNotFound(err):
		st.State, st.Message = task.Failed, fmt.Sprintf("image %q not found on the Docker engine (garrison does not pull)", spec.Image)
		return st, fmt.Errorf("docker: task %s: image %q not found on the Docker engine (garrison does not pull images): %w", spec.ID, spec.Image, err)
	case err != nil:
		st.State, st.Message = task.Failed, err.Error()
		return st, fmt.Errorf("docker: task %s: create container %s: %w", spec.ID, name, err)
	}
	// The container never ran: leave nothing behind. A fresh context,
	// because ctx may be the reason the start failed.
	unstarted := func(err error) error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := d.cli.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true}); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("remove the unstarted container: %w", rerr))
		}
		return err
	}
	if d.guard != nil {
		if err := d.guard(ctx); err != nil {
			st.Message = err.Error()
			return st, fmt.Errorf("docker: task %s: not started: %w", spec.ID, unstarted(err))
		}
	}
	if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		st.State, st.Message = task.Failed, err.Error()
		return st, fmt.Errorf("docker: task %s: start container %s: %w", spec.ID, name, unstarted(err))
	}
	st.State, st.StartedAt = task.Running, d.now()
	return st, nil
}

// containerConfig translates spec into Docker's create request: user,
// privileged, host volumes as binds, and the docker parameters of
// dockerparam's allow-list onto their API fields.
func containerConfig(spec task.Spec) (*container.Config, *container.HostConfig, error) {
	var opts dockerparam.Options
	for _, p := range spec.Parameters {
		if err := opts.Add(p.Key, p.Value); err != nil {
			return nil, nil, err
		}
	}
	labels := make(map[string]string, len(spec.Labels)+len(opts.Labels)+7)
	maps.Copy(labels, spec.Labels)
	maps.Copy(labels, opts.Labels) // dockerparam refuses garrison's own keys
	labels[LabelMesosTaskID] = spec.ID
	labels[LabelTask] = spec.ID
	labels[LabelApp] = spec.AppID
	labels[LabelVersion] = spec.Version
	labels[LabelHost] = spec.Host
	ports := make([]string, len(spec.Ports))
	for i, p := range spec.Ports {
		ports[i] = strconv.Itoa(p.Host)
	}
	labels[LabelPorts] = strings.Join(ports, ",")

	cfg := &container.Config{
		Image:      spec.Image,
		Env:        append(spec.Environ(), opts.Env...),
		Labels:     labels,
		User:       spec.User,
		WorkingDir: opts.WorkDir,
		StopSignal: opts.StopSignal,
	}
	switch {
	case spec.Cmd != "":
		cfg.Entrypoint = []string{"/bin/sh", "-c"}
		cfg.Cmd = []string{spec.Cmd}
	case len(spec.Args) > 0:
		cfg.Cmd = append([]string(nil), spec.Args...)
	}
	if spec.KillGrace > 0 {
		secs := graceSeconds(spec.KillGrace)
		cfg.StopTimeout = &secs
	}
	host := &container.HostConfig{
		NetworkMode: network.NetworkHost,
		Privileged:  spec.Privileged,
		Resources: container.Resources{
			NanoCPUs:   int64(math.Round(spec.CPUs * 1e9)),
			Memory:     int64(math.Round(spec.MemMB * (1 << 20))),
			MemorySwap: opts.MemorySwap,
			PidsLimit:  opts.PidsLimit,
		},
		CapAdd:         opts.CapAdd,
		CapDrop:        opts.CapDrop,
		SecurityOpt:    opts.SecurityOpt,
		ExtraHosts:     opts.ExtraHosts,
		DNS:            opts.DNS,
		Tmpfs:          opts.Tmpfs,
		ShmSize:        opts.ShmSize,
		ReadonlyRootfs: opts.ReadOnly,
		Init:           opts.Init,
		LogConfig:      container.LogConfig{Type: opts.LogDriver, Config: opts.LogOpts},
	}
	for _, v := range spec.Volumes {
		mode := "rw"
		if v.ReadOnly {
			mode = "ro"
		}
		host.Binds = append(host.Binds, v.HostPath+":"+v.ContainerPath+":"+mode)
	}
	for _, u := range opts.Ulimits {
		host.Ulimits = append(host.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	for _, d := range opts.Devices {
		dm, err := deviceMapping(d)
		if err != nil {
			return nil, nil, err
		}
		host.Devices = append(host.Devices, dm)
	}
	return cfg, host, nil
}

// deviceMapping reads docker's --device host[:container[:permissions]].
func deviceMapping(v string) (container.DeviceMapping, error) {
	parts := strings.Split(v, ":")
	dm := container.DeviceMapping{PathOnHost: parts[0], PathInContainer: parts[0], CgroupPermissions: "rwm"}
	switch len(parts) {
	case 1:
	case 2:
		dm.PathInContainer = parts[1]
	case 3:
		dm.PathInContainer, dm.CgroupPermissions = parts[1], parts[2]
	default:
		return dm, fmt.Errorf("docker parameter device %q: want host[:container[:permissions]]", v)
	}
	return dm, nil
}

// graceSeconds rounds a grace period up to Docker's whole seconds.
func graceSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func hostPorts(ps []task.Port) []int {
	if len(ps) == 0 {
		return nil
	}
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.Host
	}
	return out
}

// find inspects the container of task id, checking its label so a
// sanitized name that happens to match another task's is not taken for it.
func (d *Driver) find(ctx context.Context, id string) (container.InspectResponse, error) {
	c, err := d.cli.ContainerInspect(ctx, ContainerName(id))
	if cerrdefs.IsNotFound(err) {
		return c, ErrUnknownTask
	}
	if err != nil {
		return c, err
	}
	if c.Config == nil || c.Config.Labels[LabelTask] != id || !d.mine(c.Config.Labels) {
		return c, ErrUnknownTask
	}
	return c, nil
}

func (d *Driver) inspect(ctx context.Context, id string) (task.Status, error) {
	c, err := d.find(ctx, id)
	if err != nil {
		return task.Status{}, err
	}
	return d.statusOf(c.ID, c.Config.Labels, c.Created, c.State), nil
}

// Kill stops the task: SIGTERM (or the image's stop signal), SIGKILL once
// grace has passed (grace <= 0: the spec's KillGrace given at launch, else
// Docker's 10 s; Docker counts whole seconds, so grace is rounded up), then
// removes the container. It returns once the container is gone. Kill is
// idempotent: killing a task that has no container returns nil.
func (d *Driver) Kill(ctx context.Context, taskID string, grace time.Duration) error {
	c, err := d.find(ctx, taskID)
	if errors.Is(err, ErrUnknownTask) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("docker: task %s: kill: %w", taskID, err)
	}
	d.markKilling(c.ID)
	var opts container.StopOptions
	if grace > 0 {
		secs := graceSeconds(grace)
		opts.Timeout = &secs
	}
	if err := d.cli.ContainerStop(ctx, c.ID, opts); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: task %s: stop container %s: %w", taskID, short(c.ID), err)
	}
	if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: task %s: remove container %s: %w", taskID, short(c.ID), err)
	}
	return nil
}

func (d *Driver) markKilling(containerID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for id, at := range d.killing {
		if now.Sub(at) > killMemory {
			delete(d.killing, id)
		}
	}
	d.killing[containerID] = now
}

func (d *Driver) wasKilled(containerID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.killing[containerID]
	return ok
}

// Remove removes the container of a task that has ended. Removing an
// unknown task returns nil; removing a running one fails with ErrTaskActive
// (Kill stops and removes a running task).
func (d *Driver) Remove(ctx context.Context, taskID string) error {
	c, err := d.find(ctx, taskID)
	if errors.Is(err, ErrUnknownTask) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("docker: task %s: remove: %w", taskID, err)
	}
	if c.State != nil && (c.State.Running || c.State.Restarting || c.State.Paused) {
		return fmt.Errorf("docker: task %s: remove container %s: %w", taskID, short(c.ID), ErrTaskActive)
	}
	if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: task %s: remove container %s: %w", taskID, short(c.ID), err)
	}
	return nil
}

// List returns the status of every container garrison started that still
// exists, running or ended but not yet removed, whichever Driver started it.
func (d *Driver) List(ctx context.Context) ([]task.Status, error) {
	cs, err := d.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelTask)),
	})
	if err != nil {
		return nil, fmt.Errorf("docker: list containers: %w", err)
	}
	out := make([]task.Status, 0, len(cs))
	for _, s := range cs {
		if !d.mine(s.Labels) {
			continue // another garrison's, sharing this engine
		}
		// The summary lacks exit code and times: inspect each container.
		c, err := d.cli.ContainerInspect(ctx, s.ID)
		if cerrdefs.IsNotFound(err) {
			continue // removed since the list
		}
		if err != nil {
			return nil, fmt.Errorf("docker: task %s: inspect container %s: %w", s.Labels[LabelTask], short(s.ID), err)
		}
		out = append(out, d.statusOf(c.ID, c.Config.Labels, c.Created, c.State))
	}
	return out, nil
}

// statusOf builds a task status from a container's labels and state.
func (d *Driver) statusOf(containerID string, labels map[string]string, created string, cs *container.State) task.Status {
	st := statusFromLabels(labels)
	st.StagedAt = parseTime(created)
	if cs == nil {
		st.State = task.Lost
		st.Message = "the Docker engine reports no state for the container"
		return st
	}
	switch {
	case cs.Running || cs.Restarting || cs.Paused:
		st.State = task.Running
		st.StartedAt = parseTime(cs.StartedAt)
	case cs.Status == container.StateCreated:
		st.State = task.Staging
	default: // exited, dead, removing
		st.StartedAt = parseTime(cs.StartedAt)
		st.ExitCode = cs.ExitCode
		st.State, st.Message = d.ending(containerID, cs.ExitCode, cs.OOMKilled, cs.Error)
	}
	return st
}

// ending says how a container that exited with code ended: Killed when
// garrison asked it to stop, Finished when it exited 0 by itself, Failed
// otherwise (killed behind garrison's back, OOM, a non-zero exit).
func (d *Driver) ending(containerID string, code int, oom bool, engineErr string) (task.State, string) {
	msg := exitMessage(code, oom, engineErr)
	switch {
	case d.wasKilled(containerID):
		return task.Killed, "killed by garrison; " + msg
	case code == 0 && !oom:
		return task.Finished, msg
	default:
		return task.Failed, msg
	}
}

func exitMessage(code int, oom bool, engineErr string) string {
	var msg string
	switch {
	case code > 128 && code < 128+65:
		msg = fmt.Sprintf("exited with code %d (signal %d)", code, code-128)
	default:
		msg = fmt.Sprintf("exited with code %d", code)
	}
	if oom {
		msg += ", killed for exceeding its memory limit"
	}
	if engineErr != "" {
		msg += ": " + engineErr
	}
	return msg
}

func statusFromLabels(labels map[string]string) task.Status {
	st := task.Status{
		ID:      labels[LabelTask],
		AppID:   labels[LabelApp],
		Version: labels[LabelVersion],
		Host:    labels[LabelHost],
	}
	if ps := labels[LabelPorts]; ps != "" {
		for p := range strings.SplitSeq(ps, ",") {
			n, err := strconv.Atoi(p)
			if err != nil {
				continue // a label edited by hand; the other ports still count
			}
			st.Ports = append(st.Ports, n)
		}
	}
	return st
}

// parseTime reads Docker's RFC 3339 times; Docker's zero time
// (0001-01-01T00:00:00Z) and garbage both give the zero time.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// Usage is a task's resource use, as the one-shot stats API reports it.
type Usage struct {
	// CPUSeconds is the CPU time the task has used since it started.
	CPUSeconds float64
	// MemBytes is the memory it uses now, without the page cache (as
	// `docker stats` counts it).
	MemBytes uint64
}

// Stats reads a running task's resource use. Its error wraps
// ErrUnknownTask when the task has no container, ErrTaskEnded when the
// container no longer runs.
func (d *Driver) Stats(ctx context.Context, taskID string) (Usage, error) {
	c, err := d.find(ctx, taskID)
	if err != nil {
		return Usage{}, fmt.Errorf("docker: task %s: stats: %w", taskID, err)
	}
	if c.State == nil || !c.State.Running {
		return Usage{}, fmt.Errorf("docker: task %s: stats: %w", taskID, ErrTaskEnded)
	}
	r, err := d.cli.ContainerStatsOneShot(ctx, c.ID)
	if err != nil {
		return Usage{}, fmt.Errorf("docker: task %s: stats: %w", taskID, err)
	}
	defer r.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
		return Usage{}, fmt.Errorf("docker: task %s: stats: %w", taskID, err)
	}
	mem := s.MemoryStats.Usage
	cache, ok := s.MemoryStats.Stats["total_inactive_file"] // cgroup v1
	if !ok {
		cache = s.MemoryStats.Stats["inactive_file"] // cgroup v2
	}
	if cache < mem {
		mem -= cache
	}
	return Usage{CPUSeconds: float64(s.CPUStats.CPUUsage.TotalUsage) / 1e9, MemBytes: mem}, nil
}

func short(containerID string) string {
	if len(containerID) > 12 {
		return containerID[:12]
	}
	return containerID
}
