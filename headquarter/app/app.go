// Package app is the Marathon v2 app definition as garrison implements it:
// its Go types, decoding (with Marathon's 400 "Invalid JSON" paths),
// partial updates, normalization and defaults, validation (Marathon's 422
// paths and messages, narrowed to what one machine can run), service port
// assignment, task ids, label selectors and the conversion to a
// signalman/task.Spec.
//
// Everything here is a pure function of its arguments: no I/O, no clock, no
// etcd. The HTTP layer strings them together:
//
//	a, err := app.Decode(body)      // 400 on *DecodeError
//	a = app.Normalize(a)            // defaults, legacy fields folded in
//	errs := app.Validate(a, env)    // 422 when len(errs) > 0
//	a, err = app.AssignServicePorts(a, used)
package app

import (
	"maps"
	"slices"
	"time"
)

// Defaults garrison fills in (Marathon's AppDefinition and RAML defaults).
const (
	DefaultInstances             = 1
	DefaultCPUs                  = 1.0
	DefaultMem                   = 128.0
	DefaultDisk                  = 0.0
	DefaultBackoffSeconds        = 1
	DefaultBackoffFactor         = 1.15
	DefaultMaxLaunchDelaySeconds = 300 // Marathon >= 1.8; 3600 before
	// DefaultTaskKillGracePeriodSeconds is garrison's choice: Marathon sends
	// no KillPolicy when unset and the Mesos executors then wait 3 s between
	// SIGTERM and SIGKILL. Writing it into the app makes the grace visible
	// in GET and the same for the Docker and process drivers.
	DefaultTaskKillGracePeriodSeconds = 3

	DefaultGracePeriodSeconds     = 300
	DefaultIntervalSeconds        = 60
	DefaultTimeoutSeconds         = 20
	DefaultMaxConsecutiveFailures = 3
	DefaultDelaySeconds           = 15

	// Service ports are assigned from Marathon's local_port_min..max.
	ServicePortMin = 10000
	ServicePortMax = 20000
)

// Enumerations, spelled as Marathon spells them on the wire.
const (
	ContainerDocker = "DOCKER"
	ContainerMesos  = "MESOS"

	NetworkHost      = "host"
	NetworkContainer = "container"
	NetworkBridge    = "container/bridge"

	KillYoungestFirst = "YOUNGEST_FIRST"
	KillOldestFirst   = "OLDEST_FIRST"

	ProtocolHTTP       = "HTTP"
	ProtocolHTTPS      = "HTTPS"
	ProtocolTCP        = "TCP"
	ProtocolCommand    = "COMMAND"
	ProtocolMesosHTTP  = "MESOS_HTTP"
	ProtocolMesosHTTPS = "MESOS_HTTPS"
	ProtocolMesosTCP   = "MESOS_TCP"

	// LabelSingleInstance marks an app that must never run twice (Marathon's
	// MARATHON_SINGLE_INSTANCE_APP).
	LabelSingleInstance = "MARATHON_SINGLE_INSTANCE_APP"
)

// App is one app definition. Fields follow Marathon's JSON names; slices and
// maps that are nil before Normalize are filled by it, so a normalized App
// marshals to Marathon's full response shape.
type App struct {
	ID   string
	Cmd  string
	Args []string
	User string
	Env  map[string]string
	// EnvSecrets holds env entries given as {"secret": name}. garrison has
	// no secret store, so Validate rejects any.
	EnvSecrets map[string]string
	// Secrets is the names under the top-level "secrets"; rejected likewise.
	Secrets []string

	Instances int
	CPUs      float64
	Mem       float64
	Disk      float64
	GPUs      int
	Executor  string

	Constraints []Constraint
	URIs        []string // legacy; Normalize turns them into Fetch
	Fetch       []Fetch
	StoreURLs   []string

	PortDefinitions []PortDefinition
	Ports           []int // legacy; Normalize turns them into PortDefinitions
	RequirePorts    bool

	BackoffSeconds        int
	BackoffFactor         float64
	MaxLaunchDelaySeconds int

	Container *Container
	Networks  []Network

	HealthChecks    []HealthCheck
	ReadinessChecks []ReadinessCheck
	Dependencies    []string
	UpgradeStrategy UpgradeStrategy

	Labels                map[string]string
	AcceptedResourceRoles []string

	// Version is the time this definition was stored; zero until then.
	Version     time.Time
	VersionInfo *VersionInfo

	KillSelection              string
	UnreachableStrategy        UnreachableStrategy
	TaskKillGracePeriodSeconds int
	Role                       string

	// Residency is set when the body had "residency" (resident tasks with
	// persistent volumes), which garrison does not support.
	Residency bool

	// present records which top-level JSON fields the body carried, so
	// Normalize can tell an explicit 0 from an absent field and a partial
	// update keeps what it left out.
	present fieldSet
}

// Constraint is one Marathon constraint: [field, operator] or
// [field, operator, value], kept as the raw strings for a faithful round trip.
type Constraint []string

// Field is the constraint's field name, e.g. "hostname".
func (c Constraint) Field() string { return c.at(0) }

// Operator is the constraint's operator as given (Validate upper-cases it).
func (c Constraint) Operator() string { return c.at(1) }

// Value is the constraint's value and whether it has one.
func (c Constraint) Value() (string, bool) { return c.at(2), len(c) > 2 }

func (c Constraint) at(i int) string {
	if i < len(c) {
		return c[i]
	}
	return ""
}

// Fetch is one artifact to download into the sandbox.
type Fetch struct {
	URI        string
	Extract    bool
	Executable bool
	// Cache is Mesos' fetcher cache: garrison downloads every time, which
	// gives the same sandbox.
	Cache    bool
	DestPath string
	// Checksum is garrison's addition: "sha256:<hex>" that the download
	// must match; "" checks nothing.
	Checksum string
}

// PortDefinition is one port of a host-networked app. Port is the service
// port (with requirePorts false) or the literal host port (requirePorts true);
// 0 asks for a service port to be assigned.
type PortDefinition struct {
	Port     int
	Protocol string
	Name     string
	Labels   map[string]string
}

// Container is the app's container; garrison runs DOCKER ones with Docker and
// MESOS ones with an image the same way, without an image as a process.
type Container struct {
	Type         string
	Docker       *Docker
	Volumes      []Volume
	PortMappings []PortMapping
}

// Docker is container.docker.
type Docker struct {
	Image          string
	Network        string // legacy HOST|BRIDGE|USER|NONE; Normalize folds HOST into networks
	Privileged     bool
	Parameters     []Parameter
	ForcePullImage bool
	PortMappings   []PortMapping // legacy; Normalize moves them to Container.PortMappings
}

// Parameter is a `docker run --key=value` option.
type Parameter struct {
	Key   string
	Value string
}

// Volume is a container volume. Only host-path volumes are supported;
// Persistent, External and Secret record the unsupported kinds for Validate.
type Volume struct {
	ContainerPath string
	HostPath      string
	Mode          string
	Persistent    bool
	External      bool
	Secret        bool
}

// PortMapping is a bridge/container-network port mapping. garrison runs
// host networking only, so Validate rejects any; it is decoded so the
// rejection can name it.
type PortMapping struct {
	ContainerPort int
	HostPort      int
	ServicePort   int
	Protocol      string
	Name          string
	Labels        map[string]string
	NetworkNames  []string
}

// Network is one entry of "networks".
type Network struct {
	Mode   string
	Name   string
	Labels map[string]string
}

// HealthCheck is one health check. PortIndex and Port are pointers because
// Marathon tells "absent" from 0 (port wins over portIndex).
type HealthCheck struct {
	Protocol               string
	Path                   string
	PortIndex              *int
	Port                   *int
	Command                *Command
	GracePeriodSeconds     int
	IntervalSeconds        int
	TimeoutSeconds         int
	MaxConsecutiveFailures int
	DelaySeconds           int
	IgnoreHTTP1xx          bool
	IPProtocol             string
}

// Command is a COMMAND health check's command line.
type Command struct {
	Value string
}

// ReadinessCheck gates a deployment step until the new task answers.
type ReadinessCheck struct {
	Name                    string
	Protocol                string
	Path                    string
	PortName                string
	IntervalSeconds         int
	TimeoutSeconds          int
	HTTPStatusCodesForReady []int
	PreserveLastResponse    bool
}

// UpgradeStrategy bounds a rolling restart (see headquarter's deployments).
type UpgradeStrategy struct {
	MinimumHealthCapacity float64
	MaximumOverCapacity   float64
}

// UnreachableStrategy says when an unreachable task is replaced and expunged.
type UnreachableStrategy struct {
	Disabled             bool
	InactiveAfterSeconds int64
	ExpungeAfterSeconds  int64
}

// VersionInfo tells config changes from scale changes (Marathon's
// state/VersionInfo.scala; the RAML descriptions have them swapped).
type VersionInfo struct {
	LastScalingAt      time.Time
	LastConfigChangeAt time.Time
}

// Has says whether the decoded body carried the top-level JSON field name
// (with a non-null value).
func (a *App) Has(field string) bool {
	f, ok := fieldByName(field)
	return ok && a.present.has(f)
}

// Clone returns a deep copy.
func (a *App) Clone() *App {
	if a == nil {
		return nil
	}
	c := *a
	c.Args = slices.Clone(a.Args)
	c.Env = maps.Clone(a.Env)
	c.EnvSecrets = maps.Clone(a.EnvSecrets)
	c.Secrets = slices.Clone(a.Secrets)
	if a.Constraints != nil {
		c.Constraints = make([]Constraint, len(a.Constraints))
		for i, x := range a.Constraints {
			c.Constraints[i] = slices.Clone(x)
		}
	}
	c.URIs = slices.Clone(a.URIs)
	c.Fetch = slices.Clone(a.Fetch)
	c.StoreURLs = slices.Clone(a.StoreURLs)
	if a.PortDefinitions != nil {
		c.PortDefinitions = make([]PortDefinition, len(a.PortDefinitions))
		for i, p := range a.PortDefinitions {
			p.Labels = maps.Clone(p.Labels)
			c.PortDefinitions[i] = p
		}
	}
	c.Ports = slices.Clone(a.Ports)
	c.Container = a.Container.clone()
	if a.Networks != nil {
		c.Networks = make([]Network, len(a.Networks))
		for i, n := range a.Networks {
			n.Labels = maps.Clone(n.Labels)
			c.Networks[i] = n
		}
	}
	if a.HealthChecks != nil {
		c.HealthChecks = make([]HealthCheck, len(a.HealthChecks))
		for i, h := range a.HealthChecks {
			h.PortIndex = clonePtr(h.PortIndex)
			h.Port = clonePtr(h.Port)
			h.Command = clonePtr(h.Command)
			c.HealthChecks[i] = h
		}
	}
	if a.ReadinessChecks != nil {
		c.ReadinessChecks = make([]ReadinessCheck, len(a.ReadinessChecks))
		for i, r := range a.ReadinessChecks {
			r.HTTPStatusCodesForReady = slices.Clone(r.HTTPStatusCodesForReady)
			c.ReadinessChecks[i] = r
		}
	}
	c.Dependencies = slices.Clone(a.Dependencies)
	c.Labels = maps.Clone(a.Labels)
	c.AcceptedResourceRoles = slices.Clone(a.AcceptedResourceRoles)
	c.VersionInfo = clonePtr(a.VersionInfo)
	return &c
}

func (c *Container) clone() *Container {
	if c == nil {
		return nil
	}
	out := *c
	out.Volumes = slices.Clone(c.Volumes)
	out.PortMappings = clonePortMappings(c.PortMappings)
	if c.Docker != nil {
		d := *c.Docker
		d.Parameters = slices.Clone(d.Parameters)
		d.PortMappings = clonePortMappings(d.PortMappings)
		out.Docker = &d
	}
	return &out
}

func clonePortMappings(pms []PortMapping) []PortMapping {
	if pms == nil {
		return nil
	}
	out := make([]PortMapping, len(pms))
	for i, pm := range pms {
		pm.Labels = maps.Clone(pm.Labels)
		pm.NetworkNames = slices.Clone(pm.NetworkNames)
		out[i] = pm
	}
	return out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Image is the Docker image the app runs, "" for a process app.
func (a *App) Image() string {
	if a.Container == nil || a.Container.Docker == nil {
		return ""
	}
	return a.Container.Docker.Image
}
