// Package task holds the values that pass between headquarter and the
// drivers in signalman: what to run (Spec) and what runs (Status). It has no
// behaviour beyond building a task's environment, so both sides can import
// it without importing each other.
package task

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// State is a task's state, spelled as Mesos and Marathon spell it, because
// Marathon clients (marathon-lb, go-marathon) compare these strings.
type State string

const (
	Staging  State = "TASK_STAGING"
	Starting State = "TASK_STARTING"
	Running  State = "TASK_RUNNING"
	Killing  State = "TASK_KILLING"
	Finished State = "TASK_FINISHED"
	Failed   State = "TASK_FAILED"
	Killed   State = "TASK_KILLED"
	Lost     State = "TASK_LOST"
)

// Terminal says whether a task in this state will never run again.
func (s State) Terminal() bool {
	switch s {
	case Finished, Failed, Killed, Lost:
		return true
	}
	return false
}

// Port is one host port handed to a task (host networking: the task must
// listen on exactly this port).
type Port struct {
	// Name is the port definition's name, "" when unnamed.
	Name string
	// Host is the host port number.
	Host int
	// Requested is the port the app definition asked for, 0 for dynamic.
	Requested int
}

// Spec is everything a driver needs to start one task.
type Spec struct {
	ID      string // e.g. ktv_account.1f0c...; see headquarter/app.TaskID
	AppID   string // e.g. /ktv/account
	Version string // the app version the task runs, an ISO-8601 timestamp
	// Image is the Docker image; empty for a process task.
	Image string
	// Cmd is a shell command line, run with /bin/sh -c (Marathon's `cmd`).
	Cmd string
	// Args are the argv (Marathon's `args`): for a container they follow the
	// image's entrypoint; for a process the first is the program.
	Args   []string
	Env    map[string]string
	Labels map[string]string
	Ports  []Port
	CPUs   float64
	MemMB  float64
	DiskMB float64
	// Host is the name this machine is known by, given to the task as HOST.
	Host string
	// KillGrace is how long a task has between SIGTERM and SIGKILL.
	KillGrace time.Duration
	// User runs the task as this user (Marathon's `user`); "" is the
	// driver's own user. A container resolves it in its image, a process
	// on the host.
	User string
	// Fetch are artifacts to download into a process task's sandbox
	// before it starts (Marathon's fetch).
	Fetch []Artifact

	// Container-only fields (Marathon's container.docker and volumes).

	// Privileged runs the container privileged.
	Privileged bool
	// Volumes are host paths mounted into the container.
	Volumes []Volume
	// Parameters are container.docker.parameters, which the Docker driver
	// maps through signalman/docker/dockerparam.
	Parameters []Parameter
}

// Artifact is one download into the sandbox (Mesos' fetcher).
type Artifact struct {
	URI string
	// Extract unpacks a .tar, .tar.gz, .tgz or .zip into the sandbox.
	Extract bool
	// Executable makes the file executable.
	Executable bool
	// DestPath is where it goes, relative to the sandbox; "" is the URI's
	// base name.
	DestPath string
	// Checksum is "sha256:<hex>" the download must match; "" checks
	// nothing.
	Checksum string
}

// Volume is a host path mounted into a container.
type Volume struct {
	HostPath      string
	ContainerPath string
	ReadOnly      bool
}

// Parameter is one `docker run --key=value` option.
type Parameter struct {
	Key   string
	Value string
}

// Status is what a driver knows about one task.
type Status struct {
	ID        string
	AppID     string
	Version   string
	State     State
	Host      string
	Ports     []int
	StagedAt  time.Time
	StartedAt time.Time // zero until running
	// ExitCode and Message describe how a terminal task ended.
	ExitCode int
	Message  string
}

var labelKeyUnsafe = regexp.MustCompile(`[^A-Za-z0-9_]`)

// maxLabelEnv mirrors Marathon, which leaves out label keys or values longer
// than this instead of passing huge environment variables.
const maxLabelEnv = 512

// Environment is the task's environment as Marathon builds it: the context
// (MARATHON_APP_*, MESOS_TASK_ID), the ports and HOST, then the app's own
// env, which wins on a clash.
func (s Spec) Environment() map[string]string {
	return s.EnvironmentWith(func(i int) string { return strconv.Itoa(s.Ports[i].Host) })
}

// EnvironmentWith is Environment with port i's value given by portValue,
// for a driver whose host ports are chosen after the spec is written (Nomad
// passes its ${NOMAD_HOST_PORT_p<i>} interpolation). PORT_<port> needs a
// number in its name: without a Requested or Host port it is left out.
func (s Spec) EnvironmentWith(portValue func(i int) string) map[string]string {
	env := map[string]string{
		"MARATHON_APP_ID":            s.AppID,
		"MARATHON_APP_VERSION":       s.Version,
		"MESOS_TASK_ID":              s.ID,
		"MARATHON_APP_RESOURCE_CPUS": strconv.FormatFloat(s.CPUs, 'f', -1, 64),
		"MARATHON_APP_RESOURCE_MEM":  strconv.FormatFloat(s.MemMB, 'f', -1, 64),
		"MARATHON_APP_RESOURCE_DISK": strconv.FormatFloat(s.DiskMB, 'f', -1, 64),
		"MARATHON_APP_RESOURCE_GPUS": "0",
	}
	if s.Image != "" {
		env["MARATHON_APP_DOCKER_IMAGE"] = s.Image
	}
	if s.Host != "" {
		env["HOST"] = s.Host
	}
	var labelKeys []string
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		v := s.Labels[k]
		if len(k) > maxLabelEnv || len(v) > maxLabelEnv {
			continue
		}
		key := strings.ToUpper(labelKeyUnsafe.ReplaceAllString(k, "_"))
		labelKeys = append(labelKeys, key)
		env["MARATHON_APP_LABEL_"+key] = v
	}
	env["MARATHON_APP_LABELS"] = strings.Join(labelKeys, " ")
	if len(s.Ports) > 0 {
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = portValue(i)
			env[fmt.Sprintf("PORT%d", i)] = ports[i]
			if p.Requested != 0 {
				env[fmt.Sprintf("PORT_%d", p.Requested)] = ports[i]
			} else if p.Host != 0 {
				env[fmt.Sprintf("PORT_%d", p.Host)] = ports[i]
			}
			if p.Name != "" {
				env["PORT_"+strings.ToUpper(labelKeyUnsafe.ReplaceAllString(p.Name, "_"))] = ports[i]
			}
		}
		env["PORT"] = ports[0]
		env["PORTS"] = strings.Join(ports, ",")
	}
	maps.Copy(env, s.Env)
	return env
}

// Environ is Environment as KEY=value lines in a stable order, the form
// exec.Cmd and the Docker API take.
func (s Spec) Environ() []string {
	env := s.Environment()
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}
