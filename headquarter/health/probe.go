package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// outcome is what one run of a check says.
type outcome int

const (
	pass    outcome = iota
	fail            // counts, unless in the grace period
	neutral         // a 1xx with IgnoreHTTP1xx: leaves the state unchanged
)

func (o outcome) String() string {
	switch o {
	case pass:
		return "success"
	case fail:
		return "failure"
	}
	return "ignored"
}

// errInformational aborts a request on its first 1xx response.
var errInformational = errors.New("informational response")

// maxCommandOutput bounds the COMMAND output kept for the failure cause.
const maxCommandOutput = 512

// maxBodyDrain is how much of a response body is read so its connection can
// be reused; a larger body closes the connection instead.
const maxBodyDrain = 64 << 10

// commandWaitDelay is how long a killed command's output pipes may stay open
// (held by a grandchild) before Wait gives up on them.
const commandWaitDelay = time.Second

// prober runs single checks. Its transport keeps connections to each task
// alive between checks.
type prober struct {
	client    *http.Client
	transport *http.Transport
	dialer    net.Dialer
	path      string // PATH given to COMMAND checks whose Env has none
	exec      ContainerExec
}

// ContainerExec runs a command inside a task's container and returns its
// exit code and (the start of) its output. The Docker driver satisfies it.
type ContainerExec interface {
	Exec(ctx context.Context, taskID string, argv []string, maxOutput int) (exitCode int, output string, err error)
}

func newProber(idlePerHost int) *prober {
	t := &http.Transport{
		// Health checks go straight to the task: never through a proxy
		// from garrison's environment.
		Proxy:               nil,
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: idlePerHost,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		// Marathon does not verify certificates of HTTPS checks: tasks
		// serve self-signed ones.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as Marathon
	}
	return &prober{
		transport: t,
		client: &http.Client{
			Transport: t,
			// A 3xx is a pass, as in Marathon: do not follow it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		path: os.Getenv("PATH"),
	}
}

// probe runs c (normalized) once, bounded by its timeout, and says why it
// failed. It returns early when ctx ends; the caller then drops the outcome.
func (p *prober) probe(ctx context.Context, c Check) (outcome, string) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var (
		o     outcome
		cause string
	)
	switch c.Protocol {
	case HTTP, HTTPS:
		o, cause = p.http(ctx, c)
	case TCP:
		o, cause = p.tcp(ctx, c)
	case Command:
		if c.Task != "" {
			o, cause = p.containerCommand(ctx, c)
		} else {
			o, cause = p.command(ctx, c)
		}
	default:
		return fail, fmt.Sprintf("unknown protocol %q", c.Protocol)
	}
	if o == fail && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fail, fmt.Sprintf("%s timed out after %s", c, c.Timeout)
	}
	return o, cause
}

func (p *prober) http(ctx context.Context, c Check) (outcome, string) {
	scheme := "http"
	if c.Protocol == HTTPS {
		scheme = "https"
	}
	url := scheme + "://" + net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) + c.Path
	informational := 0
	trace := &httptrace.ClientTrace{
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			informational = code
			return errInformational
		},
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		return fail, fmt.Sprintf("%s: %v", c, err)
	}
	req.Header.Set("User-Agent", "garrison-health")
	resp, err := p.client.Do(req)
	if err != nil {
		if informational != 0 {
			return informationalOutcome(c, informational)
		}
		return fail, fmt.Sprintf("%s: %v", c, err)
	}
	// Drain a small body so the connection can serve the next check. The
	// status alone decides, as in Marathon: a body cut short fails nothing.
	io.CopyN(io.Discard, resp.Body, maxBodyDrain) //nolint:errcheck // see above
	resp.Body.Close()                             //nolint:errcheck // see above
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 399:
		return pass, ""
	case resp.StatusCode < 200:
		return informationalOutcome(c, resp.StatusCode)
	}
	return fail, fmt.Sprintf("%s: HTTP %s", c, resp.Status)
}

func informationalOutcome(c Check, code int) (outcome, string) {
	if c.IgnoreHTTP1xx {
		return neutral, ""
	}
	return fail, fmt.Sprintf("%s: HTTP %d %s", c, code, http.StatusText(code))
}

func (p *prober) tcp(ctx context.Context, c Check) (outcome, string) {
	conn, err := p.dialer.DialContext(ctx, "tcp", net.JoinHostPort(c.Host, strconv.Itoa(c.Port)))
	if err != nil {
		return fail, fmt.Sprintf("%s: %v", c, err)
	}
	// The connection was accepted: that is the whole check, and an error
	// closing it says nothing about the task.
	conn.Close() //nolint:errcheck // see above
	return pass, ""
}

func (p *prober) command(ctx context.Context, c Check) (outcome, string) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c.Command)
	cmd.Env = c.Env
	if !hasPath(c.Env) && p.path != "" {
		cmd.Env = append(append(make([]string, 0, len(c.Env)+1), c.Env...), "PATH="+p.path)
	}
	if cmd.Env == nil {
		cmd.Env = []string{} // nil would hand over garrison's environment
	}
	// Its own process group, so a timeout kills whatever the shell started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = commandWaitDelay
	out := &capped{max: maxCommandOutput}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if err == nil {
		return pass, ""
	}
	if text := strings.TrimSpace(out.buf.String()); text != "" {
		return fail, fmt.Sprintf("%s: %v: %s", c, err, text)
	}
	return fail, fmt.Sprintf("%s: %v", c, err)
}

// containerCommand runs a COMMAND check in the task's container, with the
// container's shell as Mesos' command checks use it.
func (p *prober) containerCommand(ctx context.Context, c Check) (outcome, string) {
	if p.exec == nil {
		return fail, fmt.Sprintf("%s: task %s runs in a container and this garrison has no Docker exec to run the check in it", c, c.Task)
	}
	code, out, err := p.exec.Exec(ctx, c.Task, []string{"/bin/sh", "-c", c.Command}, maxCommandOutput)
	switch {
	case err != nil:
		return fail, fmt.Sprintf("%s: in container of %s: %v", c, c.Task, err)
	case code == 0:
		return pass, ""
	case strings.TrimSpace(out) != "":
		return fail, fmt.Sprintf("%s: in container of %s: exit status %d: %s", c, c.Task, code, strings.TrimSpace(out))
	}
	return fail, fmt.Sprintf("%s: in container of %s: exit status %d", c, c.Task, code)
}

func hasPath(env []string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			return true
		}
	}
	return false
}

// capped keeps the first max bytes written to it and discards the rest.
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(b []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}
