package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"time"
)

// Play-json's error codes, which Marathon returns for wrong JSON types and
// which clients may match on.
const (
	errString  = "error.expected.jsstring"
	errNumber  = "error.expected.jsnumber"
	errInt     = "error.expected.int"
	errLong    = "error.expected.long"
	errBool    = "error.expected.jsboolean"
	errArray   = "error.expected.jsarray"
	errObject  = "error.expected.jsobject"
	errISODate = "error.expected.date.isoformat"
)

// Decode reads a full app definition. Unknown fields are ignored and null
// counts as absent, because Marathon clients send both (go-marathon always
// sends "ports":null and "dependencies":null). Nested objects get their
// defaults here, as Marathon's RAML readers give them; top-level defaults
// are Normalize's job, so a partial update can tell what was left out.
//
// A body that is not JSON or has a value of the wrong JSON type gives a
// *DecodeError (Marathon's 400) naming every offending path.
func Decode(body []byte) (*App, error) {
	m, err := parseObject(body)
	if err != nil {
		return nil, err
	}
	return decodeObject(m)
}

// UnmarshalJSON decodes like Decode, so a stored app reads back with
// json.Unmarshal.
func (a *App) UnmarshalJSON(body []byte) error {
	d, err := Decode(body)
	if err != nil {
		return err
	}
	*a = *d
	return nil
}

func decodeObject(m map[string]any) (*App, error) {
	var d decoder
	a := d.app(m)
	if len(d.errs.list) > 0 {
		return nil, &DecodeError{Details: d.errs.list}
	}
	return a, nil
}

// parseObject parses body into a generic JSON object, numbers kept exact.
func parseObject(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &DecodeError{Syntax: "No content to map due to end-of-input"}
		}
		return nil, &DecodeError{Syntax: err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &DecodeError{Syntax: "unexpected data after the top-level value"}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &DecodeError{Details: []FieldError{{Path: "/", Errors: []string{errObject}}}}
	}
	return m, nil
}

// decoder turns generic JSON into typed values, recording a play-json style
// error for each value of the wrong type instead of stopping at the first.
type decoder struct {
	errs errorList
}

// get returns m[key] unless it is absent or null.
func get(m map[string]any, key string) (any, bool) {
	v, ok := m[key]
	return v, ok && v != nil
}

func idx(path string, i int) string { return path + "(" + strconv.Itoa(i) + ")" }

func (d *decoder) str(v any, path string) string {
	s, ok := v.(string)
	if !ok {
		d.errs.add(path, errString)
	}
	return s
}

func (d *decoder) bool(v any, path string) bool {
	b, ok := v.(bool)
	if !ok {
		d.errs.add(path, errBool)
	}
	return b
}

func (d *decoder) float(v any, path string) float64 {
	n, ok := v.(json.Number)
	if !ok {
		d.errs.add(path, errNumber)
		return 0
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		d.errs.add(path, "error.expected.double")
		return 0
	}
	return f
}

// integer reads a JSON number that is a whole number within bits; like
// play-json, 3.0 is an integer and 3.5 is not.
func (d *decoder) integer(v any, path string, bits int) int64 {
	n, ok := v.(json.Number)
	if !ok {
		d.errs.add(path, errNumber)
		return 0
	}
	code := errInt
	if bits == 64 {
		code = errLong
	}
	if i, err := strconv.ParseInt(string(n), 10, bits); err == nil {
		return i
	}
	f, err := strconv.ParseFloat(string(n), 64)
	limit := math.Ldexp(1, bits-1)
	if err != nil || f != math.Trunc(f) || f >= limit || f < -limit {
		d.errs.add(path, code)
		return 0
	}
	return int64(f)
}

func (d *decoder) int(v any, path string) int { return int(d.integer(v, path, 32)) }

func (d *decoder) arr(v any, path string) []any {
	a, ok := v.([]any)
	if !ok {
		d.errs.add(path, errArray)
	}
	return a
}

func (d *decoder) obj(v any, path string) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		d.errs.add(path, errObject)
	}
	return m
}

// strs reads an array of strings; a non-nil result even when empty, so "[]"
// stays distinguishable from absent.
func (d *decoder) strs(v any, path string) []string {
	a := d.arr(v, path)
	if a == nil {
		return nil
	}
	out := make([]string, len(a))
	for i, e := range a {
		out[i] = d.str(e, idx(path, i))
	}
	return out
}

func (d *decoder) ints(v any, path string) []int {
	a := d.arr(v, path)
	if a == nil {
		return nil
	}
	out := make([]int, len(a))
	for i, e := range a {
		out[i] = d.int(e, idx(path, i))
	}
	return out
}

func (d *decoder) strMap(v any, path string) map[string]string {
	m := d.obj(v, path)
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for _, k := range sortedKeys(m) { // sorted: errors in a stable order
		out[k] = d.str(m[k], path+"/"+k)
	}
	return out
}

func (d *decoder) version(v any, path string) time.Time {
	s, ok := v.(string)
	if !ok {
		d.errs.add(path, errString)
		return time.Time{}
	}
	t, err := ParseVersion(s)
	if err != nil {
		d.errs.add(path, errISODate)
	}
	return t
}

// app decodes the top-level object, field by field in a fixed order so
// errors come out in a stable order.
func (d *decoder) app(m map[string]any) *App {
	a := &App{}
	names := fieldNames()
	for f := range numFields {
		v, ok := get(m, names[f])
		if !ok {
			continue
		}
		a.present.add(f)
		p := "/" + names[f]
		switch f {
		case fID:
			a.ID = d.str(v, p)
		case fCmd:
			a.Cmd = d.str(v, p)
		case fArgs:
			a.Args = d.strs(v, p)
		case fUser:
			a.User = d.str(v, p)
		case fEnv:
			a.Env, a.EnvSecrets = d.env(v, p)
		case fSecrets:
			if o := d.obj(v, p); len(o) > 0 {
				a.Secrets = sortedKeys(o)
			}
		case fInstances:
			a.Instances = d.int(v, p)
		case fCPUs:
			a.CPUs = d.float(v, p)
		case fMem:
			a.Mem = d.float(v, p)
		case fDisk:
			a.Disk = d.float(v, p)
		case fGPUs:
			a.GPUs = d.int(v, p)
		case fExecutor:
			a.Executor = d.str(v, p)
		case fConstraints:
			for i, c := range d.arr(v, p) {
				a.Constraints = append(a.Constraints, Constraint(d.strs(c, idx(p, i))))
			}
			if a.Constraints == nil {
				a.Constraints = []Constraint{}
			}
		case fURIs:
			a.URIs = d.strs(v, p)
		case fFetch:
			a.Fetch = d.fetch(v, p)
		case fStoreURLs:
			a.StoreURLs = d.strs(v, p)
		case fPortDefinitions:
			a.PortDefinitions = d.portDefinitions(v, p)
		case fPorts:
			a.Ports = d.ints(v, p)
		case fRequirePorts:
			a.RequirePorts = d.bool(v, p)
		case fBackoffSeconds:
			a.BackoffSeconds = d.int(v, p)
		case fBackoffFactor:
			a.BackoffFactor = d.float(v, p)
		case fMaxLaunchDelaySeconds:
			a.MaxLaunchDelaySeconds = d.int(v, p)
		case fContainer:
			a.Container = d.container(v, p)
		case fNetworks:
			a.Networks = d.networks(v, p)
		case fHealthChecks:
			a.HealthChecks = d.healthChecks(v, p)
		case fReadinessChecks:
			a.ReadinessChecks = d.readinessChecks(v, p)
		case fDependencies:
			a.Dependencies = d.strs(v, p)
		case fUpgradeStrategy:
			if o := d.obj(v, p); o != nil {
				a.UpgradeStrategy = UpgradeStrategy{
					MinimumHealthCapacity: d.floatOr(o, "minimumHealthCapacity", p, 1),
					MaximumOverCapacity:   d.floatOr(o, "maximumOverCapacity", p, 1),
				}
			}
		case fLabels:
			a.Labels = d.strMap(v, p)
		case fAcceptedResourceRoles:
			a.AcceptedResourceRoles = d.strs(v, p)
		case fVersion:
			a.Version = d.version(v, p)
		case fVersionInfo:
			if o := d.obj(v, p); o != nil {
				vi := &VersionInfo{}
				if x, ok := get(o, "lastScalingAt"); ok {
					vi.LastScalingAt = d.version(x, p+"/lastScalingAt")
				}
				if x, ok := get(o, "lastConfigChangeAt"); ok {
					vi.LastConfigChangeAt = d.version(x, p+"/lastConfigChangeAt")
				}
				a.VersionInfo = vi
			}
		case fKillSelection:
			a.KillSelection = d.str(v, p)
		case fUnreachableStrategy:
			a.UnreachableStrategy = d.unreachable(v, p)
		case fTaskKillGracePeriodSeconds:
			a.TaskKillGracePeriodSeconds = d.int(v, p)
		case fRole:
			a.Role = d.str(v, p)
		case fResidency:
			a.Residency = true
		}
	}
	return a
}

// env reads env values: strings, or {"secret": name} references.
func (d *decoder) env(v any, p string) (env, secrets map[string]string) {
	m := d.obj(v, p)
	if m == nil {
		return nil, nil
	}
	env = make(map[string]string, len(m))
	for _, k := range sortedKeys(m) {
		ep := p + "/" + k
		switch x := m[k].(type) {
		case string:
			env[k] = x
		case map[string]any:
			if s, ok := get(x, "secret"); ok {
				if secrets == nil {
					secrets = map[string]string{}
				}
				secrets[k] = d.str(s, ep+"/secret")
				continue
			}
			d.errs.add(ep, errString)
		default:
			d.errs.add(ep, errString)
		}
	}
	return env, secrets
}

func (d *decoder) strOr(o map[string]any, key, p, def string) string {
	if v, ok := get(o, key); ok {
		return d.str(v, p+"/"+key)
	}
	return def
}

func (d *decoder) intOr(o map[string]any, key, p string, def int) int {
	if v, ok := get(o, key); ok {
		return d.int(v, p+"/"+key)
	}
	return def
}

func (d *decoder) floatOr(o map[string]any, key, p string, def float64) float64 {
	if v, ok := get(o, key); ok {
		return d.float(v, p+"/"+key)
	}
	return def
}

func (d *decoder) boolOr(o map[string]any, key, p string, def bool) bool {
	if v, ok := get(o, key); ok {
		return d.bool(v, p+"/"+key)
	}
	return def
}

func (d *decoder) intPtr(o map[string]any, key, p string) *int {
	if v, ok := get(o, key); ok {
		i := d.int(v, p+"/"+key)
		return &i
	}
	return nil
}

func (d *decoder) labelsOf(o map[string]any, p string) map[string]string {
	if v, ok := get(o, "labels"); ok {
		return d.strMap(v, p+"/labels")
	}
	return nil
}

// objects decodes an array of objects with one, giving each its "(i)" path.
func objects[T any](d *decoder, v any, p string, one func(o map[string]any, p string) T) []T {
	a := d.arr(v, p)
	if a == nil {
		return nil
	}
	out := make([]T, 0, len(a))
	for i, e := range a {
		ep := idx(p, i)
		if o := d.obj(e, ep); o != nil {
			out = append(out, one(o, ep))
		}
	}
	return out
}

func (d *decoder) fetch(v any, p string) []Fetch {
	return objects(d, v, p, func(o map[string]any, p string) Fetch {
		return Fetch{
			URI:        d.strOr(o, "uri", p, ""),
			Extract:    d.boolOr(o, "extract", p, true),
			Executable: d.boolOr(o, "executable", p, false),
			Cache:      d.boolOr(o, "cache", p, false),
			DestPath:   d.strOr(o, "destPath", p, ""),
			Checksum:   d.strOr(o, "checksum", p, ""),
		}
	})
}

func (d *decoder) portDefinitions(v any, p string) []PortDefinition {
	return objects(d, v, p, func(o map[string]any, p string) PortDefinition {
		return PortDefinition{
			Port:     d.intOr(o, "port", p, 0),
			Protocol: d.strOr(o, "protocol", p, "tcp"),
			Name:     d.strOr(o, "name", p, ""),
			Labels:   d.labelsOf(o, p),
		}
	})
}

func (d *decoder) portMappings(v any, p string) []PortMapping {
	return objects(d, v, p, func(o map[string]any, p string) PortMapping {
		pm := PortMapping{
			ContainerPort: d.intOr(o, "containerPort", p, 0),
			HostPort:      d.intOr(o, "hostPort", p, 0),
			ServicePort:   d.intOr(o, "servicePort", p, 0),
			Protocol:      d.strOr(o, "protocol", p, "tcp"),
			Name:          d.strOr(o, "name", p, ""),
			Labels:        d.labelsOf(o, p),
		}
		if x, ok := get(o, "networkNames"); ok {
			pm.NetworkNames = d.strs(x, p+"/networkNames")
		}
		return pm
	})
}

func (d *decoder) container(v any, p string) *Container {
	o := d.obj(v, p)
	if o == nil {
		return nil
	}
	c := &Container{Type: d.strOr(o, "type", p, ContainerDocker)}
	if x, ok := get(o, "docker"); ok {
		dp := p + "/docker"
		if do := d.obj(x, dp); do != nil {
			dk := &Docker{
				Image:          d.strOr(do, "image", dp, ""),
				Network:        d.strOr(do, "network", dp, ""),
				Privileged:     d.boolOr(do, "privileged", dp, false),
				ForcePullImage: d.boolOr(do, "forcePullImage", dp, false),
			}
			if y, ok := get(do, "parameters"); ok {
				dk.Parameters = objects(d, y, dp+"/parameters", func(o map[string]any, p string) Parameter {
					return Parameter{Key: d.strOr(o, "key", p, ""), Value: d.strOr(o, "value", p, "")}
				})
			}
			if y, ok := get(do, "portMappings"); ok {
				dk.PortMappings = d.portMappings(y, dp+"/portMappings")
			}
			c.Docker = dk
		}
	}
	if x, ok := get(o, "volumes"); ok {
		c.Volumes = objects(d, x, p+"/volumes", func(o map[string]any, p string) Volume {
			_, persistent := get(o, "persistent")
			_, external := get(o, "external")
			_, secret := get(o, "secret")
			return Volume{
				ContainerPath: d.strOr(o, "containerPath", p, ""),
				HostPath:      d.strOr(o, "hostPath", p, ""),
				Mode:          d.strOr(o, "mode", p, "RW"),
				Persistent:    persistent,
				External:      external,
				Secret:        secret,
			}
		})
	}
	if x, ok := get(o, "portMappings"); ok {
		c.PortMappings = d.portMappings(x, p+"/portMappings")
	}
	return c
}

func (d *decoder) networks(v any, p string) []Network {
	return objects(d, v, p, func(o map[string]any, p string) Network {
		return Network{
			Mode:   d.strOr(o, "mode", p, NetworkContainer), // RAML default
			Name:   d.strOr(o, "name", p, ""),
			Labels: d.labelsOf(o, p),
		}
	})
}

func (d *decoder) healthChecks(v any, p string) []HealthCheck {
	return objects(d, v, p, func(o map[string]any, p string) HealthCheck {
		h := HealthCheck{
			Protocol:               d.strOr(o, "protocol", p, ""),
			Path:                   d.strOr(o, "path", p, ""),
			PortIndex:              d.intPtr(o, "portIndex", p),
			Port:                   d.intPtr(o, "port", p),
			GracePeriodSeconds:     d.intOr(o, "gracePeriodSeconds", p, DefaultGracePeriodSeconds),
			IntervalSeconds:        d.intOr(o, "intervalSeconds", p, DefaultIntervalSeconds),
			TimeoutSeconds:         d.intOr(o, "timeoutSeconds", p, DefaultTimeoutSeconds),
			MaxConsecutiveFailures: d.intOr(o, "maxConsecutiveFailures", p, DefaultMaxConsecutiveFailures),
			DelaySeconds:           d.intOr(o, "delaySeconds", p, DefaultDelaySeconds),
			IgnoreHTTP1xx:          d.boolOr(o, "ignoreHttp1xx", p, false),
			IPProtocol:             d.strOr(o, "ipProtocol", p, "IPv4"),
		}
		if x, ok := get(o, "command"); ok {
			cp := p + "/command"
			if co := d.obj(x, cp); co != nil {
				h.Command = &Command{Value: d.strOr(co, "value", cp, "")}
			}
		}
		return h
	})
}

func (d *decoder) readinessChecks(v any, p string) []ReadinessCheck {
	return objects(d, v, p, func(o map[string]any, p string) ReadinessCheck {
		r := ReadinessCheck{
			Name:                 d.strOr(o, "name", p, "readinessCheck"),
			Protocol:             d.strOr(o, "protocol", p, ProtocolHTTP),
			Path:                 d.strOr(o, "path", p, "/"),
			PortName:             d.strOr(o, "portName", p, "http-api"),
			IntervalSeconds:      d.intOr(o, "intervalSeconds", p, 30),
			TimeoutSeconds:       d.intOr(o, "timeoutSeconds", p, 10),
			PreserveLastResponse: d.boolOr(o, "preserveLastResponse", p, false),
		}
		if x, ok := get(o, "httpStatusCodesForReady"); ok {
			r.HTTPStatusCodesForReady = d.ints(x, p+"/httpStatusCodesForReady")
		} else {
			r.HTTPStatusCodesForReady = []int{200}
		}
		return r
	})
}

// unreachable reads "disabled" or {inactiveAfterSeconds, expungeAfterSeconds}.
func (d *decoder) unreachable(v any, p string) UnreachableStrategy {
	if s, ok := v.(string); ok {
		if s == "disabled" {
			return UnreachableStrategy{Disabled: true}
		}
		d.errs.add(p, `error.expected.jsobject or "disabled"`)
		return UnreachableStrategy{}
	}
	o := d.obj(v, p)
	if o == nil {
		return UnreachableStrategy{}
	}
	u := UnreachableStrategy{}
	if x, ok := get(o, "inactiveAfterSeconds"); ok {
		u.InactiveAfterSeconds = d.integer(x, p+"/inactiveAfterSeconds", 64)
	}
	if x, ok := get(o, "expungeAfterSeconds"); ok {
		u.ExpungeAfterSeconds = d.integer(x, p+"/expungeAfterSeconds", 64)
	}
	return u
}
