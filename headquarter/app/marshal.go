package app

import (
	"encoding/json"
	"maps"
)

// The wire shapes, in Marathon's field names. Fields Marathon always returns
// for a normalized app have no omitempty, so clients see every default.
type appJSON struct {
	ID                         string            `json:"id"`
	Cmd                        string            `json:"cmd,omitempty"`
	Args                       []string          `json:"args,omitempty"`
	User                       string            `json:"user,omitempty"`
	Env                        map[string]any    `json:"env"`
	Instances                  int               `json:"instances"`
	CPUs                       float64           `json:"cpus"`
	Mem                        float64           `json:"mem"`
	Disk                       float64           `json:"disk"`
	GPUs                       int               `json:"gpus"`
	Executor                   string            `json:"executor"`
	Constraints                []Constraint      `json:"constraints"`
	URIs                       []string          `json:"uris,omitempty"`
	Fetch                      []fetchJSON       `json:"fetch"`
	StoreURLs                  []string          `json:"storeUrls"`
	BackoffSeconds             int               `json:"backoffSeconds"`
	BackoffFactor              float64           `json:"backoffFactor"`
	MaxLaunchDelaySeconds      int               `json:"maxLaunchDelaySeconds"`
	Container                  *containerJSON    `json:"container,omitempty"`
	HealthChecks               []healthCheckJSON `json:"healthChecks"`
	ReadinessChecks            []readinessJSON   `json:"readinessChecks"`
	Dependencies               []string          `json:"dependencies"`
	UpgradeStrategy            upgradeJSON       `json:"upgradeStrategy"`
	Labels                     map[string]string `json:"labels"`
	AcceptedResourceRoles      []string          `json:"acceptedResourceRoles,omitempty"`
	Version                    string            `json:"version,omitempty"`
	VersionInfo                *versionInfoJSON  `json:"versionInfo,omitempty"`
	KillSelection              string            `json:"killSelection"`
	UnreachableStrategy        any               `json:"unreachableStrategy"`
	TaskKillGracePeriodSeconds int               `json:"taskKillGracePeriodSeconds"`
	RequirePorts               bool              `json:"requirePorts"`
	Networks                   []networkJSON     `json:"networks"`
	PortDefinitions            []portDefJSON     `json:"portDefinitions"`
	Ports                      []int             `json:"ports,omitempty"` // only while not normalized
	Role                       string            `json:"role,omitempty"`
}

type fetchJSON struct {
	URI        string `json:"uri"`
	Extract    bool   `json:"extract"`
	Executable bool   `json:"executable"`
	Cache      bool   `json:"cache"`
	DestPath   string `json:"destPath,omitempty"`
	Checksum   string `json:"checksum,omitempty"`
}

type containerJSON struct {
	Type         string            `json:"type"`
	Docker       *dockerJSON       `json:"docker,omitempty"`
	Volumes      []volumeJSON      `json:"volumes"`
	PortMappings []portMappingJSON `json:"portMappings,omitempty"`
}

type dockerJSON struct {
	Image          string            `json:"image"`
	Network        string            `json:"network,omitempty"`
	Privileged     bool              `json:"privileged"`
	Parameters     []parameterJSON   `json:"parameters"`
	ForcePullImage bool              `json:"forcePullImage"`
	PortMappings   []portMappingJSON `json:"portMappings,omitempty"`
}

type parameterJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type volumeJSON struct {
	ContainerPath string `json:"containerPath"`
	HostPath      string `json:"hostPath"`
	Mode          string `json:"mode"`
}

type portMappingJSON struct {
	ContainerPort int               `json:"containerPort"`
	HostPort      int               `json:"hostPort"`
	ServicePort   int               `json:"servicePort"`
	Protocol      string            `json:"protocol"`
	Name          string            `json:"name,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	NetworkNames  []string          `json:"networkNames,omitempty"`
}

type networkJSON struct {
	Mode   string            `json:"mode"`
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

type portDefJSON struct {
	Port     int               `json:"port"`
	Protocol string            `json:"protocol"`
	Name     string            `json:"name,omitempty"`
	Labels   map[string]string `json:"labels"`
}

type healthCheckJSON struct {
	Protocol               string       `json:"protocol"`
	Path                   string       `json:"path,omitempty"`
	PortIndex              *int         `json:"portIndex,omitempty"`
	Port                   *int         `json:"port,omitempty"`
	Command                *commandJSON `json:"command,omitempty"`
	GracePeriodSeconds     int          `json:"gracePeriodSeconds"`
	IntervalSeconds        int          `json:"intervalSeconds"`
	TimeoutSeconds         int          `json:"timeoutSeconds"`
	MaxConsecutiveFailures int          `json:"maxConsecutiveFailures"`
	DelaySeconds           int          `json:"delaySeconds"`
	IgnoreHTTP1xx          bool         `json:"ignoreHttp1xx"`
	IPProtocol             string       `json:"ipProtocol,omitempty"`
}

type commandJSON struct {
	Value string `json:"value"`
}

type readinessJSON struct {
	Name                    string `json:"name"`
	Protocol                string `json:"protocol"`
	Path                    string `json:"path"`
	PortName                string `json:"portName"`
	IntervalSeconds         int    `json:"intervalSeconds"`
	TimeoutSeconds          int    `json:"timeoutSeconds"`
	HTTPStatusCodesForReady []int  `json:"httpStatusCodesForReady"`
	PreserveLastResponse    bool   `json:"preserveLastResponse"`
}

type upgradeJSON struct {
	MinimumHealthCapacity float64 `json:"minimumHealthCapacity"`
	MaximumOverCapacity   float64 `json:"maximumOverCapacity"`
}

type versionInfoJSON struct {
	LastScalingAt      string `json:"lastScalingAt,omitempty"`
	LastConfigChangeAt string `json:"lastConfigChangeAt,omitempty"`
}

type unreachableJSON struct {
	InactiveAfterSeconds int64 `json:"inactiveAfterSeconds"`
	ExpungeAfterSeconds  int64 `json:"expungeAfterSeconds"`
}

// MarshalJSON writes the app in Marathon's response shape. Decode reads it
// back to an equal app. A value receiver, so an App embedded by value in a
// response struct marshals the same way.
func (a App) MarshalJSON() ([]byte, error) {
	return json.Marshal(a.wire())
}

func (a *App) wire() *appJSON {
	w := &appJSON{
		ID: a.ID, Cmd: a.Cmd, Args: a.Args, User: a.User,
		Instances: a.Instances, CPUs: a.CPUs, Mem: a.Mem, Disk: a.Disk, GPUs: a.GPUs,
		Executor:                   a.Executor,
		Constraints:                orEmpty(a.Constraints),
		URIs:                       a.URIs,
		Fetch:                      make([]fetchJSON, len(a.Fetch)),
		StoreURLs:                  orEmpty(a.StoreURLs),
		BackoffSeconds:             a.BackoffSeconds,
		BackoffFactor:              a.BackoffFactor,
		MaxLaunchDelaySeconds:      a.MaxLaunchDelaySeconds,
		Container:                  containerWire(a.Container),
		HealthChecks:               make([]healthCheckJSON, len(a.HealthChecks)),
		ReadinessChecks:            make([]readinessJSON, len(a.ReadinessChecks)),
		Dependencies:               orEmpty(a.Dependencies),
		UpgradeStrategy:            upgradeJSON(a.UpgradeStrategy),
		Labels:                     orEmptyMap(a.Labels),
		AcceptedResourceRoles:      a.AcceptedResourceRoles,
		KillSelection:              a.KillSelection,
		TaskKillGracePeriodSeconds: a.TaskKillGracePeriodSeconds,
		RequirePorts:               a.RequirePorts,
		Networks:                   make([]networkJSON, len(a.Networks)),
		PortDefinitions:            make([]portDefJSON, len(a.PortDefinitions)),
		Ports:                      a.Ports,
		Role:                       a.Role,
	}
	w.Env = make(map[string]any, len(a.Env)+len(a.EnvSecrets))
	for k, v := range a.Env {
		w.Env[k] = v
	}
	for k, s := range a.EnvSecrets {
		w.Env[k] = map[string]string{"secret": s}
	}
	for i, f := range a.Fetch {
		w.Fetch[i] = fetchJSON(f)
	}
	for i, h := range a.HealthChecks {
		hj := healthCheckJSON{
			Protocol: h.Protocol, Path: h.Path, PortIndex: h.PortIndex, Port: h.Port,
			GracePeriodSeconds: h.GracePeriodSeconds, IntervalSeconds: h.IntervalSeconds,
			TimeoutSeconds: h.TimeoutSeconds, MaxConsecutiveFailures: h.MaxConsecutiveFailures,
			DelaySeconds: h.DelaySeconds, IgnoreHTTP1xx: h.IgnoreHTTP1xx, IPProtocol: h.IPProtocol,
		}
		if h.Command != nil {
			hj.Command = &commandJSON{Value: h.Command.Value}
		}
		w.HealthChecks[i] = hj
	}
	for i, r := range a.ReadinessChecks {
		w.ReadinessChecks[i] = readinessJSON(r)
		w.ReadinessChecks[i].HTTPStatusCodesForReady = orEmpty(r.HTTPStatusCodesForReady)
	}
	if !a.Version.IsZero() {
		w.Version = FormatVersion(a.Version)
	}
	if vi := a.VersionInfo; vi != nil {
		w.VersionInfo = &versionInfoJSON{}
		if !vi.LastScalingAt.IsZero() {
			w.VersionInfo.LastScalingAt = FormatVersion(vi.LastScalingAt)
		}
		if !vi.LastConfigChangeAt.IsZero() {
			w.VersionInfo.LastConfigChangeAt = FormatVersion(vi.LastConfigChangeAt)
		}
	}
	if a.UnreachableStrategy.Disabled {
		w.UnreachableStrategy = "disabled"
	} else {
		w.UnreachableStrategy = unreachableJSON{a.UnreachableStrategy.InactiveAfterSeconds, a.UnreachableStrategy.ExpungeAfterSeconds}
	}
	for i, n := range a.Networks {
		w.Networks[i] = networkJSON(n)
	}
	for i, p := range a.PortDefinitions {
		w.PortDefinitions[i] = portDefJSON{Port: p.Port, Protocol: p.Protocol, Name: p.Name, Labels: orEmptyMap(p.Labels)}
	}
	return w
}

func containerWire(c *Container) *containerJSON {
	if c == nil {
		return nil
	}
	w := &containerJSON{
		Type:         c.Type,
		Volumes:      make([]volumeJSON, len(c.Volumes)),
		PortMappings: portMappingsWire(c.PortMappings),
	}
	for i, v := range c.Volumes {
		w.Volumes[i] = volumeJSON{ContainerPath: v.ContainerPath, HostPath: v.HostPath, Mode: v.Mode}
	}
	if d := c.Docker; d != nil {
		w.Docker = &dockerJSON{
			Image: d.Image, Network: d.Network, Privileged: d.Privileged,
			Parameters:     make([]parameterJSON, len(d.Parameters)),
			ForcePullImage: d.ForcePullImage,
			PortMappings:   portMappingsWire(d.PortMappings),
		}
		for i, p := range d.Parameters {
			w.Docker.Parameters[i] = parameterJSON(p)
		}
	}
	return w
}

func portMappingsWire(pms []PortMapping) []portMappingJSON {
	if len(pms) == 0 {
		return nil
	}
	out := make([]portMappingJSON, len(pms))
	for i, pm := range pms {
		out[i] = portMappingJSON(pm)
		out[i].Labels = maps.Clone(pm.Labels)
	}
	return out
}
