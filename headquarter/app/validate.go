package app

import (
	"encoding/json"
	"errors"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/garrisonhq/garrison/signalman/docker/dockerparam"
)

// Environment is where an app is to run. Validate accepts only what can be
// placed there: one machine (Docker or process driver) cannot honour a
// constraint that spreads instances over hosts or names another host. The
// Nomad driver sets Cluster to lift those limits.
type Environment struct {
	// Hostname is this machine's name, matched by hostname constraints;
	// "" skips the match.
	Hostname string
	// Cluster is true when a driver places instances across machines.
	Cluster bool
	// MaxInstances bounds one app's instances; 0 means
	// DefaultMaxInstances.
	MaxInstances int
	// AllowFileFetch lets fetch take file:// URIs, which copy any file
	// garrison can read into a task's sandbox; off by default.
	AllowFileFetch bool
	// CheckUser says whether a process app (no image) may run as user on
	// this machine; nil accepts any user and leaves the check to launch.
	// A container's user is resolved in its image, so it is not asked.
	CheckUser func(user string) error
}

// DefaultMaxInstances is the per-app instance limit when the environment
// sets none: Marathon has no limit, but every instance is a process or a
// container on garrison's machines, and an unbounded count would make the
// reconciler's work (and memory) unbounded.
const DefaultMaxInstances = 1000

func (e Environment) maxInstances() int {
	if e.MaxInstances > 0 {
		return e.MaxInstances
	}
	return DefaultMaxInstances
}

// MaxIDLength is the longest app id garrison can run. A task id is the id
// without its leading "/" plus "." and a 36-character UUID, and the process
// driver names each task's directory after it with at most 200 characters
// (Docker container names and etcd keys take longer ones).
const MaxIDLength = 200 - 37 + 1

var (
	portNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// isValueRE is what Marathon's IS operator accepts as text.
	isValueRE = regexp.MustCompile(`^[a-zA-Z0-9_/.-]*$`)
)

const (
	msgCmdArgsContainer = "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
	msgPortIndex        = "Health check port indices must address an element of the ports array or container port mappings."
	msgHostOnly         = "garrison runs host networking only"
	msgSingleMachine    = "is not supported on a single machine until the Nomad driver exists"
	msgOperators        = "Constraint operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS"
)

// Validate checks a normalized app (see Normalize) as Marathon's
// AppValidation and SchedulingValidation do, narrowed to what garrison
// runs: host networking only, no secrets, GPUs, persistent volumes or
// custom executors, and constraints that make sense in env. Every rule
// Marathon lacks says why garrison needs it; fields garrison cannot honour
// (readinessChecks, dependencies, storeUrls, forcePullImage, fetch of a
// container, docker parameters outside dockerparam's allow-list) are
// refused by name
// rather than accepted and dropped. Instances and the id's length are
// bounded (env.MaxInstances, MaxIDLength). It returns
// every violation with Marathon's path ("/" for rules on the whole app,
// "(i)" for array elements); none means valid. Wrap them in a
// ValidationError for the 422 body.
func Validate(a *App, env Environment) []FieldError {
	v := validator{a: a, env: env}
	v.id()
	v.command()
	v.user()
	v.resources()
	v.envAndLabels()
	v.container()
	v.networks()
	v.ports()
	v.healthChecks()
	v.readinessChecks()
	v.strategies()
	v.constraints()
	v.misc()
	return v.errs.list
}

type validator struct {
	a    *App
	env  Environment
	errs errorList
}

func (v *validator) add(path, msg string)                  { v.errs.add(path, msg) }
func (v *validator) addf(path, format string, args ...any) { v.errs.addf(path, format, args...) }
func (v *validator) atLeast(path string, got, min float64) {
	if got < min {
		v.addf(path, "got %s, expected %s or more", num(got), num(min))
	}
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func (v *validator) id() {
	a := v.a
	if a.ID == "" || a.ID == "/" && !a.present.has(fID) {
		v.add("/id", "error.path.missing")
		return
	}
	if len(a.ID) > MaxIDLength {
		v.addf("/id", "is %d characters long, more than garrison's %d: task ids (the id, \".\" and a UUID) must fit the process driver's 200-character task names", len(a.ID), MaxIDLength)
	}
	for _, e := range idErrors(a.ID) {
		v.add("/id", e)
	}
	for i, dep := range a.Dependencies {
		for _, e := range idErrors(dep) {
			v.add(idx("/dependencies", i), e)
		}
	}
}

func (v *validator) command() {
	a := v.a
	if a.present.has(fCmd) && a.Cmd == "" {
		v.add("/cmd", "must not be an empty string")
	}
	cmd, args := a.Cmd != "", len(a.Args) > 0
	image := a.Container != nil && a.Container.Docker != nil
	if !(cmd != args || !(cmd && args) && image) {
		v.add("/", msgCmdArgsContainer)
	}
	if a.Executor != "" && a.Executor != "//cmd" {
		v.add("/executor", `custom executors are not supported by garrison, which has no Mesos executors: use "" or "//cmd"`)
	}
}

func (v *validator) resources() {
	a := v.a
	v.atLeast("/instances", float64(a.Instances), 0)
	if limit := v.env.maxInstances(); a.Instances > limit {
		v.addf("/instances", "got %d, expected %d or less: garrison's per-app instance limit (--max-instances-per-app), as every instance is a process or container it runs and watches", a.Instances, limit)
	}
	v.atLeast("/cpus", a.CPUs, 0.001)
	v.atLeast("/mem", a.Mem, 0)
	v.atLeast("/disk", a.Disk, 0)
	if a.GPUs != 0 {
		v.addf("/gpus", "GPU resources are not supported by garrison, whose drivers hand out no GPUs: gpus must be 0, got %d", a.GPUs)
	}
	if a.Labels[LabelSingleInstance] == "true" && a.Instances > 1 {
		v.add("/", "Single instance app may only have one instance")
	}
}

func (v *validator) user() {
	a := v.a
	if a.User == "" || a.Image() != "" || v.env.CheckUser == nil {
		return
	}
	if err := v.env.CheckUser(a.User); err != nil {
		v.addf("/user", "cannot run a process app as %q here: %v", a.User, err)
	}
}

func (v *validator) envAndLabels() {
	a := v.a
	for _, k := range sortedKeys(a.Env) {
		if k == "" {
			v.add("/env", "environment variable names must not be empty")
		}
	}
	for _, k := range sortedKeys(a.EnvSecrets) {
		v.addf("/env/"+k, "secrets are not supported by garrison, which has no secret store (references secret %q)", a.EnvSecrets[k])
	}
	if len(a.Secrets) > 0 {
		v.add("/secrets", "secrets are not supported by garrison, which has no secret store")
	}
	for _, k := range sortedKeys(a.Labels) {
		if k == "" {
			v.add("/labels", "label keys must not be empty")
		}
	}
}

func (v *validator) container() {
	a := v.a
	if a.Residency {
		v.add("/residency", "resident apps (persistent volumes) are not supported by garrison")
	}
	c := a.Container
	if c == nil {
		return
	}
	switch c.Type {
	case ContainerDocker, ContainerMesos:
	default:
		v.add("/container/type", "is not one of (DOCKER,MESOS)")
	}
	if c.Type == ContainerDocker && c.Docker == nil {
		v.add("/container/docker", "not defined")
	}
	if d := c.Docker; d != nil {
		if strings.TrimSpace(d.Image) == "" {
			v.add("/container/docker/image", "must not be empty")
		}
		switch d.Network {
		case "":
		case "HOST", "BRIDGE", "USER", "NONE":
			if a.present.has(fNetworks) {
				v.add("/", "must not specify both container.docker.network and networks")
			} else if d.Network != "HOST" {
				v.addf("/container/docker/network", "%s networking is not supported: %s", d.Network, msgHostOnly)
			}
		default:
			v.add("/container/docker/network", "is not one of (HOST,BRIDGE,USER,NONE)")
		}
		if d.ForcePullImage {
			v.add("/container/docker/forcePullImage", "garrison never pulls images: put the image on the Docker engine (docker push to its registry and pull there, or docker load) and leave forcePullImage false")
		}
		var opts dockerparam.Options
		for i, p := range d.Parameters {
			if p.Key == "" {
				v.add(idx("/container/docker/parameters", i)+"/key", "must not be empty")
				continue
			}
			var pe *dockerparam.Error
			if err := opts.Add(p.Key, p.Value); errors.As(err, &pe) {
				v.add(idx("/container/docker/parameters", i)+"/"+pe.Field, pe.Msg)
			}
		}
		if len(d.PortMappings) > 0 && len(c.PortMappings) > 0 {
			v.add("/container", "must not specify both container.portMappings and container.docker.portMappings")
		}
	}
	for i, vol := range c.Volumes {
		p := idx("/container/volumes", i)
		switch {
		case vol.Persistent:
			v.add(p+"/persistent", "persistent volumes are not supported by garrison")
		case vol.External:
			v.add(p+"/external", "external volumes are not supported by garrison")
		case vol.Secret:
			v.add(p+"/secret", "secrets are not supported by garrison, which has no secret store")
		case a.Image() == "":
			v.add(p, "host volumes need a container image: garrison runs an app without one as a plain process on the host, which sees host paths directly")
		default:
			if vol.ContainerPath == "" {
				v.add(p+"/containerPath", "must not be empty")
			} else if !strings.HasPrefix(vol.ContainerPath, "/") {
				v.add(p+"/containerPath", "must be an absolute path: garrison's containers have no Mesos sandbox to resolve a relative path in")
			}
			if vol.HostPath == "" {
				v.add(p+"/hostPath", "must not be empty")
			} else if !strings.HasPrefix(vol.HostPath, "/") {
				v.add(p+"/hostPath", "must be an absolute path: garrison's tasks have no Mesos sandbox to resolve a relative path in (Docker would take it for a named volume)")
			}
			if vol.Mode != "RO" && vol.Mode != "RW" {
				v.add(p+"/mode", "is not one of (RO,RW)")
			}
		}
	}
	if a.hasPortMappings() {
		v.add("/", "portMappings are not allowed with host-networking")
	}
}

func (v *validator) networks() {
	a := v.a
	if len(a.Networks) > 1 {
		v.addf("/networks", "%s: give at most one network, of mode host", msgHostOnly)
	}
	for i, n := range a.Networks {
		switch n.Mode {
		case NetworkHost:
		case NetworkContainer, NetworkBridge:
			v.addf(idx("/networks", i)+"/mode", "%s networking is not supported: %s", n.Mode, msgHostOnly)
		default:
			v.add(idx("/networks", i)+"/mode", "is not one of (container,container/bridge,host)")
		}
	}
}

func (v *validator) ports() {
	a := v.a
	if a.Ports != nil {
		if len(a.PortDefinitions) > 0 {
			v.add("/", "cannot specify both ports and port definitions")
		}
		seen := map[int]bool{}
		for i, p := range a.Ports {
			if p < 0 || p > 65535 {
				v.addf(idx("/ports", i), "got %d, expected between 0 and 65535", p)
			}
			if p != 0 && seen[p] {
				v.add("/", "ports must be unique")
			}
			seen[p] = true
		}
	}
	names, numbers := map[string]bool{}, map[int]bool{}
	for i, pd := range a.PortDefinitions {
		p := idx("/portDefinitions", i)
		if pd.Port < 0 || pd.Port > 65535 {
			v.addf(p+"/port", "got %d, expected between 0 and 65535", pd.Port)
		}
		switch pd.Protocol {
		case "tcp", "udp", "udp,tcp", "tcp,udp":
		default:
			v.add(p+"/protocol", "is not one of (tcp,udp,udp,tcp)")
		}
		if pd.Name != "" {
			if !portNameRE.MatchString(pd.Name) {
				v.addf(p+"/name", "must fully match regular expression '%s'", portNameRE)
			}
			if names[pd.Name] {
				v.add("/portDefinitions", "Port names must be unique.")
			}
			names[pd.Name] = true
		}
		if pd.Port != 0 {
			if numbers[pd.Port] {
				v.add("/portDefinitions", "Ports must be unique.")
			}
			numbers[pd.Port] = true
		}
	}
	if len(a.PortDefinitions) > 0 && slices.ContainsFunc(a.Networks, func(n Network) bool { return n.Mode != NetworkHost }) {
		v.add("/", "portDefinitions are only allowed with host-networking")
	}
	if a.RequirePorts && len(a.PortDefinitions) > 0 && a.Instances > 1 && !v.env.Cluster {
		v.addf("/requirePorts", "with %d instances on one machine: requirePorts makes every instance take the same host ports, so only one can run here; use requirePorts false (ports from $PORT0...) or one instance", a.Instances)
	}
}

func (v *validator) healthChecks() {
	a := v.a
	mesos := 0
	for i, h := range a.HealthChecks {
		p := idx("/healthChecks", i)
		switch h.Protocol {
		case ProtocolHTTP, ProtocolHTTPS, ProtocolTCP:
		case ProtocolCommand, ProtocolMesosHTTP, ProtocolMesosHTTPS, ProtocolMesosTCP:
			if h.Command == nil {
				mesos++ // Marathon tolerates several COMMAND checks from old versions
			}
		default:
			v.add(p+"/protocol", "is not one of (HTTP,HTTPS,TCP,COMMAND,MESOS_HTTP,MESOS_HTTPS,MESOS_TCP)")
			continue
		}
		if h.Protocol == ProtocolCommand {
			if h.Command == nil || strings.TrimSpace(h.Command.Value) == "" {
				v.add(p+"/command", "a COMMAND health check needs command.value")
			}
		} else {
			switch {
			case h.Port != nil:
				if *h.Port < 1 || *h.Port > 65535 {
					v.addf(p+"/port", "got %d, expected between 1 and 65535: no task can listen on port %d, so the check could never pass", *h.Port, *h.Port)
				}
			case h.PortIndex == nil || *h.PortIndex < 0 || *h.PortIndex >= len(a.PortDefinitions):
				v.add(p, msgPortIndex)
			}
		}
		if isHTTPCheck(h.Protocol) && !strings.HasPrefix(h.Path, "/") {
			v.add(p+"/path", `must start with "/": the path follows http://host:port, so without it the URL names another port and the check could never pass`)
		}
		// Marathon's RAML allows 0 for both; garrison refuses it with a
		// reason (there is no timeout < interval rule for health checks:
		// Marathon has it only for readiness checks).
		if h.IntervalSeconds < 1 {
			v.addf(p+"/intervalSeconds", "got %d, expected 1 or more: an interval of 0 would run the check without pause", h.IntervalSeconds)
		}
		if h.TimeoutSeconds < 1 {
			v.addf(p+"/timeoutSeconds", "got %d, expected 1 or more: a check with no time to answer could never pass", h.TimeoutSeconds)
		}
		v.atLeast(p+"/gracePeriodSeconds", float64(h.GracePeriodSeconds), 0)
		v.atLeast(p+"/maxConsecutiveFailures", float64(h.MaxConsecutiveFailures), 0)
		v.atLeast(p+"/delaySeconds", float64(h.DelaySeconds), 0)
		switch h.IPProtocol {
		case "IPv4":
		case "IPv6":
			if !(a.Container != nil && a.Container.Type == ContainerDocker && strings.HasPrefix(h.Protocol, "MESOS_")) {
				v.add(p, "IPv6 can only be used for container type DOCKER and Mesos http/https/tcp health checks")
			}
		default:
			v.add(p+"/ipProtocol", "is not one of (IPv4,IPv6)")
		}
	}
	if mesos > 1 {
		v.add("/", "AppDefinition can contain at most one Mesos health check")
	}
}

func (v *validator) readinessChecks() {
	a := v.a
	if len(a.ReadinessChecks) > 0 {
		v.add("/readinessChecks", "readiness checks are not supported by garrison yet: it would not hold deployments for them; use healthChecks, which garrison's deployments wait for")
	}
	if len(a.ReadinessChecks) > 1 {
		v.addf("/readinessChecks", "got %d, expected 1 or less", len(a.ReadinessChecks))
	}
	for i, r := range a.ReadinessChecks {
		p := idx("/readinessChecks", i)
		if r.Protocol != ProtocolHTTP && r.Protocol != ProtocolHTTPS {
			v.add(p+"/protocol", "is not one of (HTTP,HTTPS)")
		}
		if !strings.HasPrefix(r.Path, "/") {
			v.add(p+"/path", `must start with "/"`)
		}
		if !slices.ContainsFunc(a.PortDefinitions, func(pd PortDefinition) bool { return pd.Name == r.PortName }) {
			v.addf(p+"/portName", "No port definition reference for portName %s", r.PortName)
		}
		v.atLeast(p+"/intervalSeconds", float64(r.IntervalSeconds), 1)
		if r.TimeoutSeconds >= r.IntervalSeconds {
			v.addf(p+"/timeoutSeconds", "got %d, expected less than intervalSeconds (%d)", r.TimeoutSeconds, r.IntervalSeconds)
		}
	}
}

func (v *validator) strategies() {
	a := v.a
	v.atLeast("/backoffSeconds", float64(a.BackoffSeconds), 0)
	v.atLeast("/backoffFactor", a.BackoffFactor, 1)
	v.atLeast("/maxLaunchDelaySeconds", float64(a.MaxLaunchDelaySeconds), 0)
	v.atLeast("/taskKillGracePeriodSeconds", float64(a.TaskKillGracePeriodSeconds), 0)

	us := a.UpgradeStrategy
	for _, f := range []struct {
		name string
		val  float64
	}{{"minimumHealthCapacity", us.MinimumHealthCapacity}, {"maximumOverCapacity", us.MaximumOverCapacity}} {
		p := "/upgradeStrategy/" + f.name
		switch {
		case f.val < 0:
			v.add(p, "is less than 0")
		case f.val > 1:
			v.add(p, "is greater than 1")
		case a.Labels[LabelSingleInstance] == "true" && f.val != 0:
			v.addf(p, "got %s, expected 0 (single instance app)", num(f.val))
		}
	}

	switch a.KillSelection {
	case KillYoungestFirst, KillOldestFirst:
	default:
		v.add("/killSelection", "is not one of (YOUNGEST_FIRST,OLDEST_FIRST)")
	}

	if u := a.UnreachableStrategy; !u.Disabled {
		v.atLeast("/unreachableStrategy/inactiveAfterSeconds", float64(u.InactiveAfterSeconds), 0)
		v.atLeast("/unreachableStrategy/expungeAfterSeconds", float64(u.ExpungeAfterSeconds), 0)
		if u.InactiveAfterSeconds > u.ExpungeAfterSeconds {
			v.addf("/unreachableStrategy", "inactiveAfterSeconds (%d) must be less or equal to expungeAfterSeconds (%d)",
				u.InactiveAfterSeconds, u.ExpungeAfterSeconds)
		}
	}
}

func (v *validator) misc() {
	a := v.a
	if a.AcceptedResourceRoles != nil && len(a.AcceptedResourceRoles) == 0 {
		v.add("/acceptedResourceRoles", "must not be empty")
	}
	for i, r := range a.AcceptedResourceRoles {
		if r == "" {
			v.add(idx("/acceptedResourceRoles", i), "must not be empty")
		}
	}
	if len(a.URIs) > 0 && len(a.Fetch) > 0 {
		v.add("/uris", "may not be set in conjunction with fetch")
	}
	field := "/fetch"
	if a.present.has(fURIs) {
		field = "/uris"
	}
	if len(a.Fetch) > 0 && a.Image() != "" {
		v.add(field, "garrison fetches artifacts only into the sandbox of process apps: its containers have no Mesos sandbox; build them into the image instead")
	}
	for i, f := range a.Fetch {
		v.fetch(idx(field, i), f)
	}
	if len(a.StoreURLs) > 0 {
		v.add("/storeUrls", "the artifact store is not supported by garrison: it would start the task without resolving them")
	}
	if len(a.Dependencies) > 0 {
		v.add("/dependencies", "dependencies are not supported by garrison: it would not order the start, stop and upgrade of these apps; deploy them in order instead")
	}
}

var checksumRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// fetch checks one artifact: a URI garrison can download (http, https, and
// file when allowed), a destPath inside the sandbox, a well-formed checksum.
func (v *validator) fetch(p string, f Fetch) {
	if strings.TrimSpace(f.URI) == "" {
		v.add(p+"/uri", "must not be empty")
		return
	}
	u, err := url.Parse(f.URI)
	switch {
	case err != nil:
		v.addf(p+"/uri", "is not a URI: %v", err)
	case u.Scheme == "http" || u.Scheme == "https":
		if u.Host == "" {
			v.add(p+"/uri", "has no host")
		}
	case u.Scheme == "file":
		if !v.env.AllowFileFetch {
			v.add(p+"/uri", "file:// URIs are off: they copy any file garrison can read into the task's sandbox (turn them on with --fetch-allow-file)")
		}
	default:
		v.addf(p+"/uri", "scheme %q is not supported: garrison fetches http, https and (when allowed) file URIs", u.Scheme)
	}
	if d := f.DestPath; d != "" && (path.IsAbs(d) || d != path.Clean(d) || d == ".." || strings.HasPrefix(d, "../")) {
		v.add(p+"/destPath", "must be a clean relative path inside the sandbox")
	}
	if f.Checksum != "" && !checksumRE.MatchString(f.Checksum) {
		v.add(p+"/checksum", "must be sha256:<64 lower-case hex digits>")
	}
}

// constraints checks Marathon's rules, then (unless env.Cluster) what one
// machine can honour: only hostname constraints, and only those this host
// with the app's instance count satisfies.
func (v *validator) constraints() {
	a := v.a
	for i, c := range a.Constraints {
		p := idx("/constraints", i)
		if len(c) < 2 || len(c) > 3 {
			v.add(p, "Each constraint must have either 2 or 3 fields")
			continue
		}
		if c.Field() == "" {
			v.add(p, "Missing field and operator")
			continue
		}
		op := strings.ToUpper(c.Operator())
		value, hasValue := c.Value()
		var re *regexp.Regexp
		switch op {
		case "UNIQUE":
			if hasValue {
				v.add(p, "Value specified but not used")
				continue
			}
		case "CLUSTER":
			if !hasValue || value == "" {
				v.add(p, "Missing value")
				continue
			}
		case "GROUP_BY":
			if _, err := strconv.Atoi(value); hasValue && err != nil {
				v.add(p, "Value was specified but is not a number")
				continue
			}
		case "MAX_PER":
			if _, err := strconv.Atoi(value); !hasValue || err != nil {
				v.add(p, "Value was not specified or is not a number")
				continue
			}
		case "LIKE", "UNLIKE":
			if !hasValue {
				v.add(p, "A regular expression value must be provided")
				continue
			}
			var err error
			if re, err = regexp.Compile(`^(?:` + value + `)$`); err != nil {
				v.addf(p, "'%s' is not a valid regular expression (garrison matches with Go's RE2 syntax, which has no look-around or back-references)", value)
				continue
			}
		case "IS":
			if !hasValue || !isValueRE.MatchString(value) {
				v.addf(p, "IS needs a value matching %s", isValueRE)
				continue
			}
		default:
			v.add(p, msgOperators)
			continue
		}
		if !v.env.Cluster {
			v.singleMachine(p, c, op, value, re)
		}
	}
}

func (v *validator) singleMachine(p string, c Constraint, op, value string, re *regexp.Regexp) {
	quoted, _ := json.Marshal([]string(c))
	if f := c.Field(); f != "hostname" && f != "@hostname" {
		v.addf(p, "%s: a constraint on %q %s", quoted, f, msgSingleMachine)
		return
	}
	host, n := v.env.Hostname, v.a.Instances
	notHere := func() {
		v.addf(p, "%s does not match this machine (%q): placing on other machines %s", quoted, host, msgSingleMachine)
	}
	switch op {
	case "UNIQUE":
		if n > 1 {
			v.addf(p, "%s with %d instances needs %d machines, which %s", quoted, n, n, msgSingleMachine)
		}
	case "MAX_PER":
		if limit, _ := strconv.Atoi(value); n > limit {
			v.addf(p, "%s with %d instances needs more than one machine, which %s", quoted, n, msgSingleMachine)
		}
	case "GROUP_BY":
		if groups, _ := strconv.Atoi(value); groups > 1 {
			v.addf(p, "%s: spreading over %d machines %s", quoted, groups, msgSingleMachine)
		}
	case "CLUSTER", "IS":
		if host != "" && value != host {
			notHere()
		}
	case "LIKE":
		if host != "" && !re.MatchString(host) {
			notHere()
		}
	case "UNLIKE":
		if host != "" && re.MatchString(host) {
			notHere()
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Parse is the whole pipeline for a new app body: Decode, Normalize and
// Validate. The error is a *DecodeError (400) or a *ValidationError (422).
// Service ports are still to be assigned (AssignServicePorts).
func Parse(body []byte, env Environment) (*App, error) {
	a, err := Decode(body)
	if err != nil {
		return nil, err
	}
	a = Normalize(a)
	if errs := Validate(a, env); len(errs) > 0 {
		return nil, &ValidationError{Details: errs}
	}
	return a, nil
}
