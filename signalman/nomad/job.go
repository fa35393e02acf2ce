package nomad

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/garrisonhq/garrison/signalman/task"
)

// App is what the driver needs of one Marathon app. Task is the template
// every instance starts from (AppID, Version, Image, Cmd, Args, Env, Labels,
// Ports, CPUs, MemMB, DiskMB, KillGrace, User, Privileged, Volumes); its ID
// and Host, and each port's Host, are Nomad's to choose per allocation and
// are ignored. Fetch and Parameters have no mapping yet and are refused.
type App struct {
	Task      task.Spec
	Instances int
	ForcePull bool
	// RequirePorts makes each port's Requested the literal host port
	// (Nomad reserved ports); otherwise Nomad picks dynamic ones.
	RequirePorts bool
	// Constraints are Marathon's [field, operator(, value)] triples.
	Constraints [][]string
	Checks      []Check
	Upgrade     Upgrade
	// Backoff is the delay before a failed instance is replaced (Nomad's
	// minimum is 5 s; it doubles per failure up to MaxLaunchDelay).
	Backoff        time.Duration
	MaxLaunchDelay time.Duration
}

// Check is one Marathon health check.
type Check struct {
	// Protocol is Marathon's: HTTP, HTTPS, TCP, COMMAND, MESOS_HTTP, ...
	Protocol string
	Path     string
	// PortIndex is the index into the app's ports; Port, when not 0, is a
	// literal port instead (which only garrison's own monitor can probe).
	PortIndex              int
	Port                   int
	Grace                  time.Duration
	Interval               time.Duration
	Timeout                time.Duration
	MaxConsecutiveFailures int
}

// Native says whether Nomad runs the check itself. HTTP and TCP checks on
// an app port map onto Nomad's own checks (provider "nomad"); HTTPS does
// not (Nomad verifies certificates, Marathon does not), nor do COMMAND
// checks or literal ports: garrison's monitor runs those against the tasks
// the driver lists.
func (c Check) Native() bool {
	if c.Port != 0 {
		return false
	}
	switch strings.ToUpper(c.Protocol) {
	case "HTTP", "MESOS_HTTP", "TCP", "MESOS_TCP":
		return true
	}
	return false
}

// Upgrade is Marathon's upgradeStrategy.
type Upgrade struct {
	MinimumHealthCapacity float64
	MaximumOverCapacity   float64
}

// Meta keys the driver puts on every job; a job without MetaAppID is not
// garrison's and the driver never touches it.
const (
	MetaAppID   = "garrison_app_id"
	MetaVersion = "garrison_version"
	// labelAgentPort is internal/agent.LabelPort (the agent garrison agent runs).
	labelAgentPort = "garrison.port"
	// labelAgentInstance is internal/agent.LabelInstance: the agent
	// registers the container under the task id instead of the container
	// id, so the registry entry names its app's task (the local metric
	// source finds an app's instances that way).
	labelAgentInstance = "garrison.instance"
	// taskName is the one task of the one group.
	taskName  = "app"
	groupName = "app"
)

// JobID is the Nomad job id of an app: Marathon's safe form ("/prod/web" ->
// "prod_web"), reversible because "_" is invalid in app ids. Nomad accepts
// "/" in ids, but its CLI and UI break on them.
func JobID(appID string) string {
	return strings.ReplaceAll(strings.TrimPrefix(appID, "/"), "/", "_")
}

// TaskID is the Marathon task id of an allocation, <jobID>.<allocID>: an
// alloc id has no dots, and go-marathon takes the app id to be what is
// before the last one.
func TaskID(jobID, allocID string) string { return jobID + "." + allocID }

// portLabel is the Nomad port label of the app's i-th port.
func portLabel(i int) string { return fmt.Sprintf("p%d", i) }

var serviceUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// serviceName is the Nomad service the native checks hang on: [a-z0-9-],
// under 64 characters.
func serviceName(jobID string) string {
	s := strings.Trim(serviceUnsafe.ReplaceAllString(strings.ToLower(jobID), "-"), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	if s == "" {
		s = "app"
	}
	return s
}

// cpuMHz converts Marathon cpus to Nomad MHz at mhzPerCore.
func cpuMHz(cpus float64, mhzPerCore int) int {
	return max(1, int(math.Ceil(cpus*float64(mhzPerCore))))
}

// toJob translates a into a Nomad service job: one group of a.Instances,
// one task, docker with host networking for an image and raw_exec for a
// command. mhzPerCore converts cpus into Nomad's MHz.
func toJob(a App, mhzPerCore int) (*api.Job, error) {
	t := a.Task
	if t.AppID == "" {
		return nil, errors.New("app has no id")
	}
	if t.Cmd != "" && len(t.Args) > 0 {
		return nil, fmt.Errorf("app %s: both cmd and args given; Marathon allows one", t.AppID)
	}
	if t.Image == "" && t.Cmd == "" && len(t.Args) == 0 {
		return nil, fmt.Errorf("app %s: neither an image nor cmd nor args: nothing to run", t.AppID)
	}
	if len(t.Fetch) > 0 {
		return nil, &FieldError{AppID: t.AppID, Field: "/fetch", Reason: "fetch is not supported on Nomad (use an image)"}
	}
	if len(t.Parameters) > 0 {
		return nil, &FieldError{AppID: t.AppID, Field: "/container/docker/parameters",
			Reason: fmt.Sprintf("container.docker.parameters (%s) are not supported on Nomad", t.Parameters[0].Key)}
	}
	if t.Image == "" && (t.Privileged || len(t.Volumes) > 0) {
		return nil, fmt.Errorf("app %s: privileged and volumes need a container image", t.AppID)
	}
	if a.Instances < 0 {
		return nil, fmt.Errorf("app %s: instances %d below 0", t.AppID, a.Instances)
	}
	place, err := translateConstraints(a.Constraints)
	if err != nil {
		return nil, fmt.Errorf("app %s: %w", t.AppID, err)
	}
	id := JobID(t.AppID)

	// The Marathon environment, with what only Nomad knows as its own
	// interpolations: the task id, the host and the host ports.
	t.ID = "${NOMAD_JOB_ID}.${NOMAD_ALLOC_ID}"
	t.Host = "${attr.unique.network.ip-address}"
	net := &api.NetworkResource{Mode: "host"}
	for i, p := range t.Ports {
		if a.RequirePorts && p.Requested != 0 {
			net.ReservedPorts = append(net.ReservedPorts, api.Port{Label: portLabel(i), Value: p.Requested})
		} else {
			net.DynamicPorts = append(net.DynamicPorts, api.Port{Label: portLabel(i)})
		}
		if i == 0 {
			t.Host = "${NOMAD_IP_p0}"
		}
	}
	env := t.EnvironmentWith(func(i int) string { return "${NOMAD_HOST_PORT_" + portLabel(i) + "}" })

	task := &api.Task{
		Name:        taskName,
		Env:         env,
		User:        t.User,
		KillTimeout: ptr(t.KillGrace),
		Resources: &api.Resources{
			CPU:      ptr(cpuMHz(t.CPUs, mhzPerCore)),
			MemoryMB: ptr(max(10, int(math.Ceil(t.MemMB)))),
		},
		Meta: map[string]string{},
	}
	if t.Image != "" {
		labels := maps.Clone(t.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels["MESOS_TASK_ID"] = t.ID
		if _, ok := labels[labelAgentInstance]; !ok {
			labels[labelAgentInstance] = t.ID
		}
		if _, ok := labels[labelAgentPort]; !ok && len(t.Ports) > 0 {
			// The garrison agent registers a container labelled
			// garrison.service at this port (deploy/nomad).
			labels[labelAgentPort] = "${NOMAD_HOST_PORT_p0}"
		}
		cfg := map[string]any{
			"image":        t.Image,
			"network_mode": "host",
			"force_pull":   a.ForcePull,
			// The docker driver takes labels as a list of maps: a map
			// passes register and fails at task start.
			"labels": []map[string]string{labels},
		}
		// Both need the client's docker plugin to allow them (volumes
		// { enabled = true }, allow_privileged = true); Nomad refuses the
		// task at start otherwise.
		if t.Privileged {
			cfg["privileged"] = true
		}
		if len(t.Volumes) > 0 {
			vols := make([]string, len(t.Volumes))
			for i, v := range t.Volumes {
				vols[i] = v.HostPath + ":" + v.ContainerPath
				if v.ReadOnly {
					vols[i] += ":ro"
				}
			}
			cfg["volumes"] = vols
		}
		switch {
		case t.Cmd != "":
			cfg["entrypoint"] = []string{"/bin/sh", "-c"}
			cfg["args"] = []string{t.Cmd}
		case len(t.Args) > 0:
			cfg["args"] = t.Args
		}
		task.Driver, task.Config = "docker", cfg
	} else {
		cfg := map[string]any{}
		if t.Cmd != "" {
			cfg["command"], cfg["args"] = "/bin/sh", []string{"-c", t.Cmd}
		} else {
			cfg["command"] = t.Args[0]
			if len(t.Args) > 1 {
				cfg["args"] = t.Args[1:]
			}
		}
		task.Driver, task.Config = "raw_exec", cfg
	}

	var checks []api.ServiceCheck
	var checkWindow time.Duration
	for i, c := range a.Checks {
		if !c.Native() {
			continue
		}
		if c.PortIndex < 0 || c.PortIndex >= len(t.Ports) {
			return nil, fmt.Errorf("app %s: health check %d: portIndex %d has no port", t.AppID, i, c.PortIndex)
		}
		sc := api.ServiceCheck{
			Name:      fmt.Sprintf("check-%d", i),
			Type:      "tcp",
			PortLabel: portLabel(c.PortIndex),
			Interval:  max(time.Second, c.Interval),
			Timeout:   max(time.Second, c.Timeout),
		}
		if strings.HasSuffix(strings.ToUpper(c.Protocol), "HTTP") {
			sc.Type, sc.Path = "http", c.Path
			if sc.Path == "" {
				sc.Path = "/"
			}
		}
		if c.MaxConsecutiveFailures > 0 {
			// Marathon kills a task after that many failures in a row,
			// grace period first; 0 means never.
			sc.CheckRestart = &api.CheckRestart{Limit: c.MaxConsecutiveFailures, Grace: ptr(c.Grace)}
		}
		checks = append(checks, sc)
		checkWindow = max(checkWindow, c.Grace+sc.Interval*time.Duration(c.MaxConsecutiveFailures+1)+sc.Timeout)
	}
	if len(checks) > 0 {
		task.Services = []*api.Service{{
			Name:      serviceName(id),
			Provider:  "nomad",
			PortLabel: checks[0].PortLabel,
			Checks:    checks,
		}}
	}

	group := &api.TaskGroup{
		Name:        ptr(groupName),
		Count:       ptr(a.Instances),
		Tasks:       []*api.Task{task},
		Constraints: place.constraints,
		Spreads:     place.spreads,
		Update:      update(a, len(checks) > 0, checkWindow),
		// Marathon replaces a failed task with a new one, with backoff: no
		// restart in place, reschedule with exponential delay.
		RestartPolicy: &api.RestartPolicy{Attempts: ptr(0), Mode: ptr("fail")},
		ReschedulePolicy: &api.ReschedulePolicy{
			Delay:         ptr(max(5*time.Second, a.Backoff)),
			DelayFunction: ptr("exponential"),
			MaxDelay:      ptr(max(5*time.Second, a.Backoff, a.MaxLaunchDelay)),
			Unlimited:     ptr(true),
		},
	}
	if len(t.Ports) > 0 {
		group.Networks = []*api.NetworkResource{net}
	}
	if t.DiskMB > 0 {
		group.EphemeralDisk = &api.EphemeralDisk{SizeMB: ptr(int(math.Ceil(t.DiskMB)))}
	}

	meta := maps.Clone(t.Labels)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[MetaAppID] = t.AppID
	meta[MetaVersion] = t.Version
	return &api.Job{
		ID:          ptr(id),
		Name:        ptr(id),
		Type:        ptr(api.JobTypeService),
		Datacenters: []string{"*"},
		Meta:        meta,
		TaskGroups:  []*api.TaskGroup{group},
	}, nil
}

// update maps Marathon's upgradeStrategy onto Nomad's update block.
// Nomad's rolling update stops max_parallel old allocations, then places
// new ones; over capacity is what canaries are. So:
//   - maximumOverCapacity 0: rolling, max_parallel = the instances Marathon
//     may take down at once, count*(1-minimumHealthCapacity), at least 1;
//   - maximumOverCapacity > 0: that many canaries (ceil(count*over)) first,
//     auto-promoted once healthy, then max_parallel of the same size.
//
// A task counts as healthy once it runs (no checks) or once its Nomad
// checks pass, as Marathon counts it at its first passing check: hence
// min_healthy_time 0. The healthy deadline covers the checks' grace and
// failures; auto_revert stays off, as Marathon has none.
func update(a App, checks bool, checkWindow time.Duration) *api.UpdateStrategy {
	n := a.Instances
	u := &api.UpdateStrategy{
		MaxParallel:     ptr(1),
		HealthCheck:     ptr("task_states"),
		MinHealthyTime:  ptr(time.Duration(0)),
		HealthyDeadline: ptr(max(5*time.Minute, checkWindow+time.Minute)),
		AutoRevert:      ptr(false),
		Canary:          ptr(0),
		AutoPromote:     ptr(false),
	}
	u.ProgressDeadline = ptr(*u.HealthyDeadline + 5*time.Minute)
	if checks {
		u.HealthCheck = ptr("checks")
	}
	over, minHealth := a.Upgrade.MaximumOverCapacity, a.Upgrade.MinimumHealthCapacity
	if over > 0 && n > 0 {
		c := min(n, max(1, int(math.Ceil(float64(n)*over))))
		u.Canary, u.AutoPromote, u.MaxParallel = ptr(c), ptr(true), ptr(c)
	} else {
		u.MaxParallel = ptr(max(1, int(math.Floor(float64(n)*(1-minHealth)))))
	}
	return u
}

func ptr[T any](v T) *T { return &v }
