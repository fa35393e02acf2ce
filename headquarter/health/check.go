// Package health runs Marathon health checks for garrison's tasks. Marathon
// left HTTP, HTTPS and TCP checks to its leader and COMMAND and MESOS_* checks
// to the Mesos agent; garrison has no Mesos, so headquarter runs them all
// itself, from the machine the task's ports are bound on (host networking).
//
// The package knows nothing of garrison's app model: headquarter converts an
// app's healthChecks into Check values (resolving portIndex to the task's host
// port and building the task's environment) and hands them to a Monitor,
// which keeps Marathon's per-task healthCheckResults and reports when a check
// turns alive or dead (health_status_changed_event) and when a task has failed
// too often and must be replaced (unhealthy_instance_kill_event).
package health

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Protocol is a health check protocol, spelled as in Marathon's JSON.
type Protocol string

// The protocols Marathon accepts. The MESOS_* variants ran on the Mesos agent
// in Marathon; garrison runs them exactly like HTTP, HTTPS and TCP.
const (
	HTTP       Protocol = "HTTP"
	HTTPS      Protocol = "HTTPS"
	TCP        Protocol = "TCP"
	Command    Protocol = "COMMAND"
	MesosHTTP  Protocol = "MESOS_HTTP"
	MesosHTTPS Protocol = "MESOS_HTTPS"
	MesosTCP   Protocol = "MESOS_TCP"
)

// Marathon's defaults, applied to zero fields (healthCheck.raml).
const (
	DefaultInterval = 60 * time.Second
	DefaultTimeout  = 20 * time.Second
	DefaultPath     = "/"
	DefaultHost     = "127.0.0.1"
)

// Check is one resolved health check of one task.
type Check struct {
	// Protocol is one of the constants above; "" means HTTP.
	Protocol Protocol
	// Host is the address the check connects to; "" means 127.0.0.1, where
	// a host-networked task listens.
	Host string
	// Path is the HTTP(S) request path, query included; "" means "/".
	Path string
	// Port is the task's host port the check connects to (the caller
	// resolves portIndex). Unused by COMMAND.
	Port int
	// Command is the COMMAND check's shell command line, run on this host as
	// /bin/sh -c Command with Env as its whole environment (plus garrison's
	// PATH when Env has none). It passes when it exits 0.
	Command string
	// Env is the task's environment, KEY=value (task.Spec.Environ).
	Env []string
	// Task, when set, runs a COMMAND check inside that task's container
	// (docker exec, as Mesos runs it in the task's namespaces) through the
	// monitor's ContainerExec; the container's own environment applies and
	// Env is unused. "" runs it on this host.
	Task string
	// GracePeriod: failures before the first success and within this long
	// of the task's start are ignored (not counted, not recorded).
	GracePeriod time.Duration
	// Interval is the time between the starts of two checks; 0 means 60 s.
	Interval time.Duration
	// Timeout bounds one check; a check that runs out of time fails.
	// 0 means 20 s.
	Timeout time.Duration
	// MaxConsecutiveFailures is how many counted failures in a row make
	// the task unhealthy (to be killed and replaced); 0 means never.
	MaxConsecutiveFailures int
	// Delay is the wait before the first check (Mesos' delaySeconds).
	// Marathon ignores delaySeconds for its own HTTP/HTTPS/TCP checks, so
	// callers that want its behaviour pass 0 for those.
	Delay time.Duration
	// IgnoreHTTP1xx makes an informational (1xx) response leave the state
	// unchanged instead of failing the check.
	IgnoreHTTP1xx bool
}

// normalized maps MESOS_* onto the protocols garrison runs and fills in
// Marathon's defaults.
func (c Check) normalized() Check {
	switch c.Protocol {
	case "", MesosHTTP:
		c.Protocol = HTTP
	case MesosHTTPS:
		c.Protocol = HTTPS
	case MesosTCP:
		c.Protocol = TCP
	}
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.Path == "" {
		c.Path = DefaultPath
	} else if !strings.HasPrefix(c.Path, "/") {
		c.Path = "/" + c.Path
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate reports every problem that would keep the check from running.
func (c Check) Validate() error {
	n := c.normalized()
	var errs []error
	switch n.Protocol {
	case HTTP, HTTPS, TCP:
		if n.Port < 1 || n.Port > 65535 {
			errs = append(errs, fmt.Errorf("%s check: port %d out of range 1-65535", n.Protocol, n.Port))
		}
	case Command:
		if strings.TrimSpace(n.Command) == "" {
			errs = append(errs, errors.New("COMMAND check: empty command"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown protocol %q", c.Protocol))
	}
	if n.Interval < 0 {
		errs = append(errs, fmt.Errorf("negative interval %s", n.Interval))
	}
	if n.Timeout < 0 {
		errs = append(errs, fmt.Errorf("negative timeout %s", n.Timeout))
	}
	if n.GracePeriod < 0 {
		errs = append(errs, fmt.Errorf("negative grace period %s", n.GracePeriod))
	}
	if n.Delay < 0 {
		errs = append(errs, fmt.Errorf("negative delay %s", n.Delay))
	}
	if n.MaxConsecutiveFailures < 0 {
		errs = append(errs, fmt.Errorf("negative maxConsecutiveFailures %d", n.MaxConsecutiveFailures))
	}
	return errors.Join(errs...)
}

// String names the check in failure causes and logs, e.g.
// "HTTP 127.0.0.1:31005/health" or "COMMAND curl -f localhost".
func (c Check) String() string {
	n := c.normalized()
	switch n.Protocol {
	case HTTP, HTTPS:
		return string(n.Protocol) + " " + net.JoinHostPort(n.Host, strconv.Itoa(n.Port)) + n.Path
	case TCP:
		return "TCP " + net.JoinHostPort(n.Host, strconv.Itoa(n.Port))
	case Command:
		return "COMMAND " + n.Command
	}
	return string(c.Protocol)
}

func (c Check) equal(o Check) bool {
	return c.Protocol == o.Protocol && c.Host == o.Host && c.Path == o.Path &&
		c.Port == o.Port && c.Command == o.Command && slices.Equal(c.Env, o.Env) && c.Task == o.Task &&
		c.GracePeriod == o.GracePeriod && c.Interval == o.Interval &&
		c.Timeout == o.Timeout && c.MaxConsecutiveFailures == o.MaxConsecutiveFailures &&
		c.Delay == o.Delay && c.IgnoreHTTP1xx == o.IgnoreHTTP1xx
}
