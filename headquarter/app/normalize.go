package app

import (
	"fmt"
	"slices"
)

// Normalize returns a copy of a in Marathon's canonical form
// (AppNormalization.scala) with garrison's defaults filled in:
//   - the id made absolute and cleaned ("web" -> "/web"), dependencies
//     resolved against the app's group;
//   - top-level fields the body left out get their defaults (instances 1,
//     cpus 1, mem 128, backoff 1 s x 1.15 up to 300 s, upgradeStrategy 1/1,
//     killSelection YOUNGEST_FIRST, taskKillGracePeriodSeconds 3, networks
//     host, unreachableStrategy 0/0); an explicit 0 stays 0;
//   - legacy fields folded in: ports -> portDefinitions, uris -> fetch,
//     container.docker.network HOST -> networks, docker.portMappings ->
//     container.portMappings; when both the legacy and the new field are
//     given they are left alone for Validate to reject, as Marathon does;
//   - one dynamic port {port:0, name:"default"} when the app declared no
//     ports at all (send "portDefinitions":[] for none);
//   - health checks get portIndex 0 when they name no port, path "/" for
//     HTTP kinds, and COMMAND when they carry a command.
//
// Nested defaults (health check intervals, fetch extract, ...) are given by
// Decode, because only it can tell an absent nested field from a zero one.
// Normalize is idempotent.
func Normalize(in *App) *App {
	a := in.Clone()
	unset := func(f field) bool { return !a.present.has(f) }

	a.ID = CanonicalID(a.ID, "/")
	for i, dep := range a.Dependencies {
		a.Dependencies[i] = CanonicalID(dep, parentID(a.ID))
	}

	if unset(fInstances) && a.Instances == 0 {
		a.Instances = DefaultInstances
	}
	if unset(fCPUs) && a.CPUs == 0 {
		a.CPUs = DefaultCPUs
	}
	if unset(fMem) && a.Mem == 0 {
		a.Mem = DefaultMem
	}
	if unset(fBackoffSeconds) && a.BackoffSeconds == 0 {
		a.BackoffSeconds = DefaultBackoffSeconds
	}
	if unset(fBackoffFactor) && a.BackoffFactor == 0 {
		a.BackoffFactor = DefaultBackoffFactor
	}
	if unset(fMaxLaunchDelaySeconds) && a.MaxLaunchDelaySeconds == 0 {
		a.MaxLaunchDelaySeconds = DefaultMaxLaunchDelaySeconds
	}
	if unset(fUpgradeStrategy) && a.UpgradeStrategy == (UpgradeStrategy{}) {
		a.UpgradeStrategy = UpgradeStrategy{MinimumHealthCapacity: 1, MaximumOverCapacity: 1}
	}
	if unset(fTaskKillGracePeriodSeconds) && a.TaskKillGracePeriodSeconds == 0 {
		a.TaskKillGracePeriodSeconds = DefaultTaskKillGracePeriodSeconds
	}
	if a.KillSelection == "" {
		a.KillSelection = KillYoungestFirst
	}
	if len(a.Args) == 0 {
		a.Args = nil // Marathon treats [] as no args
	}
	a.Env = orEmptyMap(a.Env)
	a.Labels = orEmptyMap(a.Labels)
	a.Constraints = orEmpty(a.Constraints)
	a.Dependencies = orEmpty(a.Dependencies)
	a.StoreURLs = orEmpty(a.StoreURLs)
	a.ReadinessChecks = orEmpty(a.ReadinessChecks)

	// uris -> fetch.
	if len(a.URIs) > 0 && len(a.Fetch) == 0 {
		a.Fetch = make([]Fetch, len(a.URIs))
		for i, u := range a.URIs {
			a.Fetch[i] = Fetch{URI: u, Extract: true}
		}
		a.URIs = nil
	} else if len(a.URIs) == 0 {
		a.URIs = nil
	}
	a.Fetch = orEmpty(a.Fetch)

	// Container: legacy docker network and port mappings.
	if c := a.Container; c != nil {
		if c.Type == "" {
			c.Type = ContainerDocker
		}
		if d := c.Docker; d != nil {
			if d.Network == "HOST" && a.Networks == nil {
				a.Networks = []Network{{Mode: NetworkHost}}
				d.Network = ""
			}
			if len(d.PortMappings) > 0 && len(c.PortMappings) == 0 {
				c.PortMappings, d.PortMappings = d.PortMappings, nil
			}
		}
	}
	if a.Networks == nil && (a.Container == nil || a.Container.Docker == nil || a.Container.Docker.Network == "") {
		a.Networks = []Network{{Mode: NetworkHost}}
	}

	// ports -> portDefinitions, or the default dynamic port.
	switch {
	case a.PortDefinitions == nil && a.Ports != nil:
		a.PortDefinitions = make([]PortDefinition, len(a.Ports))
		for i, p := range a.Ports {
			a.PortDefinitions[i] = PortDefinition{Port: p, Protocol: "tcp"}
		}
		a.Ports = nil
	case a.PortDefinitions != nil && a.Ports != nil && slices.Equal(portNumbers(a.PortDefinitions), a.Ports):
		a.Ports = nil
	case a.PortDefinitions == nil && !a.hasPortMappings():
		a.PortDefinitions = []PortDefinition{{Port: 0, Protocol: "tcp", Name: "default"}}
	}
	a.PortDefinitions = orEmpty(a.PortDefinitions)
	for i := range a.PortDefinitions {
		if a.PortDefinitions[i].Protocol == "" {
			a.PortDefinitions[i].Protocol = "tcp"
		}
	}

	a.HealthChecks = orEmpty(a.HealthChecks)
	for i := range a.HealthChecks {
		h := &a.HealthChecks[i]
		if h.Protocol == "" {
			h.Protocol = ProtocolHTTP
			if h.Command != nil {
				h.Protocol = ProtocolCommand
			}
		}
		if h.Protocol != ProtocolCommand && h.Port == nil && h.PortIndex == nil {
			h.PortIndex = new(int)
		}
		if h.Path == "" && isHTTPCheck(h.Protocol) {
			h.Path = "/"
		}
		if h.IPProtocol == "" {
			h.IPProtocol = "IPv4"
		}
	}
	return a
}

func (a *App) hasPortMappings() bool {
	c := a.Container
	return c != nil && (len(c.PortMappings) > 0 || c.Docker != nil && len(c.Docker.PortMappings) > 0)
}

func isHTTPCheck(protocol string) bool {
	switch protocol {
	case ProtocolHTTP, ProtocolHTTPS, ProtocolMesosHTTP, ProtocolMesosHTTPS:
		return true
	}
	return false
}

func portNumbers(pds []PortDefinition) []int {
	out := make([]int, len(pds))
	for i, p := range pds {
		out[i] = p.Port
	}
	return out
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// AssignServicePorts returns a copy of a whose port definitions with port 0
// got a free service port from ServicePortMin..ServicePortMax, the lowest
// not in used (the service ports of every other app) nor in a itself; the
// assigned values are meant to be stored, as Marathon writes them back.
// Explicit ports are kept; one given twice in a, or already in used, is a
// *ValidationError, as is running out of ports.
func AssignServicePorts(a *App, used map[int]bool) (*App, error) {
	out := a.Clone()
	var errs errorList
	own := map[int]bool{}
	for i, pd := range out.PortDefinitions {
		if pd.Port == 0 {
			continue
		}
		if own[pd.Port] {
			errs.add("/portDefinitions", "Ports must be unique.")
		} else if used[pd.Port] {
			errs.addf(fmt.Sprintf("/portDefinitions(%d)/port", i), "service port %d is already used by another app", pd.Port)
		}
		own[pd.Port] = true
	}
	next := ServicePortMin
	for i := range out.PortDefinitions {
		if out.PortDefinitions[i].Port != 0 {
			continue
		}
		for next <= ServicePortMax && (used[next] || own[next]) {
			next++
		}
		if next > ServicePortMax {
			errs.addf(fmt.Sprintf("/portDefinitions(%d)/port", i), "no free service port left in %d-%d", ServicePortMin, ServicePortMax)
			break
		}
		out.PortDefinitions[i].Port = next
		own[next] = true
	}
	if len(errs.list) > 0 {
		return nil, &ValidationError{Details: errs.list}
	}
	return out, nil
}
