package app

import (
	"maps"
	"slices"
	"time"

	"github.com/garrisonhq/garrison/signalman/task"
)

// ToSpec builds what a driver needs to start one task of a. hostPorts are
// the host ports chosen for the task, in portDefinitions order; where one is
// missing, a port that requirePorts makes literal is used, else 0 (the
// driver picks). Each port's Requested is its definition's port (the
// service port once assigned), which gives Marathon's PORT_<port> variable.
func ToSpec(a *App, taskID string, hostPorts []int, host string) task.Spec {
	s := task.Spec{
		ID:        taskID,
		AppID:     a.ID,
		Image:     a.Image(),
		Cmd:       a.Cmd,
		Args:      slices.Clone(a.Args),
		Env:       maps.Clone(a.Env),
		Labels:    maps.Clone(a.Labels),
		CPUs:      a.CPUs,
		MemMB:     a.Mem,
		DiskMB:    a.Disk,
		Host:      host,
		KillGrace: time.Duration(a.TaskKillGracePeriodSeconds) * time.Second,
		User:      a.User,
	}
	for _, f := range a.Fetch {
		s.Fetch = append(s.Fetch, task.Artifact{URI: f.URI, Extract: f.Extract, Executable: f.Executable, DestPath: f.DestPath, Checksum: f.Checksum})
	}
	if c := a.Container; c != nil && a.Image() != "" {
		s.Privileged = c.Docker.Privileged
		for _, p := range c.Docker.Parameters {
			s.Parameters = append(s.Parameters, task.Parameter{Key: p.Key, Value: p.Value})
		}
		for _, v := range c.Volumes {
			s.Volumes = append(s.Volumes, task.Volume{HostPath: v.HostPath, ContainerPath: v.ContainerPath, ReadOnly: v.Mode == "RO"})
		}
	}
	if !a.Version.IsZero() {
		s.Version = FormatVersion(a.Version)
	}
	for i, pd := range a.PortDefinitions {
		p := task.Port{Name: pd.Name, Requested: pd.Port}
		switch {
		case i < len(hostPorts):
			p.Host = hostPorts[i]
		case a.RequirePorts:
			p.Host = pd.Port
		}
		s.Ports = append(s.Ports, p)
	}
	return s
}
