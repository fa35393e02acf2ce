// Package marathon is signalman's scale target for teams that keep
// Marathon, as the origin design's Signalman was: it reads an app's
// instance count and changes it with Marathon's REST API, the way
// marathon-autoscale, marathon-lb's zdd and go-marathon do:
//
//	GET /v2/apps/{id}                     the count (app.instances)
//	PUT /v2/apps/{id}  {"instances":n}    the scale (partialUpdate defaults to true)
//	GET /v2/deployments                   until the deployment is gone
//
// It works against Marathon itself and against garrison's own Marathon API.
//
// A scale while another deployment holds the app is answered 409 "App is
// locked by one or more deployments". That is not a failure: Scale returns
// a NoOp Result (Cause wraps ErrDeploymentInProgress) and a nil error, so
// the autoscaler starts no cooldown and tries again on its next evaluation
// (Nomad autoscaler's rule for a scale during a deployment). Scale does not
// force by default: forcing cancels the running deployment, which may be a
// rolling upgrade a person started; WithForce turns it on.
package marathon

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrDeploymentInProgress: the app is locked by a running deployment
	// (Marathon's 409); the scale was not applied.
	ErrDeploymentInProgress = errors.New("app is locked by a deployment in progress")
	// ErrAppNotFound: Marathon has no app with this id.
	ErrAppNotFound = errors.New("app does not exist")
)

// DeploymentHeader is the header Marathon names a new deployment in.
const DeploymentHeader = "Marathon-Deployment-Id"

// Option configures a Client.
type Option func(*config)

type config struct {
	user, password string
	authHeader     string
	client         *http.Client
	timeout        time.Duration
	force          bool
	poll           time.Duration
	userAgent      string
}

// WithBasicAuth sends HTTP basic credentials (Marathon's
// --http_credentials).
func WithBasicAuth(user, password string) Option {
	return func(c *config) { c.user, c.password = user, password }
}

// WithToken sends "Authorization: token=<token>", as DC/OS clients
// (go-marathon's DCOSToken, marathon-autoscale, marathon-lb) do.
func WithToken(token string) Option { return func(c *config) { c.authHeader = "token=" + token } }

// WithBearerToken sends "Authorization: Bearer <token>".
func WithBearerToken(token string) Option {
	return func(c *config) { c.authHeader = "Bearer " + token }
}

// WithHTTPClient sets the HTTP client. Default: a client with its own
// transport (no proxy from the environment, dial and header timeouts) and
// WithTimeout as its overall timeout.
func WithHTTPClient(cl *http.Client) Option { return func(c *config) { c.client = cl } }

// WithTimeout bounds each request. Default 10s.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithForce sends ?force=true with every scale, cancelling a deployment
// that holds the app. Default false: a locked app is a NoOp.
func WithForce(force bool) Option { return func(c *config) { c.force = force } }

// WithPollInterval sets how often WaitDeployment lists the deployments.
// Default 500ms.
func WithPollInterval(d time.Duration) Option { return func(c *config) { c.poll = d } }

// WithUserAgent sets the User-Agent. Default "garrison-signalman".
func WithUserAgent(ua string) Option { return func(c *config) { c.userAgent = ua } }

// Client talks to one Marathon. It is safe for concurrent use.
type Client struct {
	base    string // scheme://host[:port][/prefix], no trailing slash
	cfg     config
	client  *http.Client
	ownedTr *http.Transport
}

// New returns a client for the Marathon at baseURL (e.g.
// http://127.0.0.1:8080, or a DC/OS prefix such as
// https://master/service/marathon).
func New(baseURL string, opts ...Option) (*Client, error) {
	cfg := config{timeout: 10 * time.Second, poll: 500 * time.Millisecond, userAgent: "garrison-signalman"}
	for _, o := range opts {
		o(&cfg)
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("marathon: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("marathon: base URL %q: want http(s)://host[:port][/path]", baseURL)
	}
	switch {
	case cfg.timeout <= 0:
		return nil, fmt.Errorf("marathon: timeout %v must be positive", cfg.timeout)
	case cfg.poll <= 0:
		return nil, fmt.Errorf("marathon: poll interval %v must be positive", cfg.poll)
	}
	c := &Client{base: strings.TrimRight(u.String(), "/"), cfg: cfg, client: cfg.client}
	if c.client == nil {
		c.ownedTr = &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: cfg.timeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
		}
		c.client = &http.Client{Transport: c.ownedTr, Timeout: cfg.timeout}
	}
	return c, nil
}

// Close releases idle connections. The client stays usable.
func (c *Client) Close() {
	if c.ownedTr != nil {
		c.ownedTr.CloseIdleConnections()
	}
}

// APIError is an answer other than the one expected, with Marathon's
// message. It unwraps to ErrAppNotFound for a 404 and to
// ErrDeploymentInProgress for a 409 that names locking deployments.
type APIError struct {
	Method, Path string
	Status       int
	// Message is Marathon's "message", or the start of the body.
	Message string
	// Deployments are the ids a 409 names as holding the app.
	Deployments []string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Message)
}

// Unwrap gives the sentinel the status stands for, if any.
func (e *APIError) Unwrap() error {
	switch {
	case e.Status == http.StatusNotFound:
		return ErrAppNotFound
	case e.Status == http.StatusConflict && len(e.Deployments) > 0:
		return ErrDeploymentInProgress
	}
	return nil
}

// Outcome is what a Scale did.
type Outcome int

const (
	// Scaled: Marathon accepted the new count and started a deployment.
	Scaled Outcome = iota + 1
	// NoOp: nothing changed and nothing failed (the app is locked by a
	// deployment); no cooldown should start.
	NoOp
)

func (o Outcome) String() string {
	switch o {
	case Scaled:
		return "scaled"
	case NoOp:
		return "no-op"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is a Scale that did not fail.
type Result struct {
	Outcome Outcome
	AppID   string
	// Instances is the count asked for.
	Instances int
	// Reason is the caller's reason, kept for its decision log (Marathon
	// has no field for it).
	Reason string
	// DeploymentID and Version name the deployment a Scaled result started.
	DeploymentID string
	Version      string
	// Cause says why a NoOp changed nothing; it wraps
	// ErrDeploymentInProgress and the *APIError with the deployments.
	Cause error
}

// Status is what Marathon reports of an app.
type Status struct {
	// Instances is the count asked for (the app definition's).
	Instances      int
	TasksStaged    int
	TasksRunning   int
	TasksHealthy   int
	TasksUnhealthy int
	// Deployments are the running deployments that hold the app.
	Deployments []string
	Version     string
}

// DeploymentInProgress says whether a deployment holds the app.
func (s Status) DeploymentInProgress() bool { return len(s.Deployments) > 0 }

// Count returns the app's instance count (what it is asked to run).
func (c *Client) Count(ctx context.Context, appID string) (int, error) {
	st, err := c.Status(ctx, appID)
	if err != nil {
		return 0, err
	}
	return st.Instances, nil
}

// Status reads the app's count, task counts and deployments.
func (c *Client) Status(ctx context.Context, appID string) (Status, error) {
	id, err := normalizeID(appID)
	if err != nil {
		return Status{}, fmt.Errorf("marathon: status of %q: %w", appID, err)
	}
	var out struct {
		App struct {
			Instances      int    `json:"instances"`
			TasksStaged    int    `json:"tasksStaged"`
			TasksRunning   int    `json:"tasksRunning"`
			TasksHealthy   int    `json:"tasksHealthy"`
			TasksUnhealthy int    `json:"tasksUnhealthy"`
			Version        string `json:"version"`
			Deployments    []struct {
				ID string `json:"id"`
			} `json:"deployments"`
		} `json:"app"`
	}
	if _, _, err := c.do(ctx, http.MethodGet, appPath(id), nil, http.StatusOK, &out); err != nil {
		return Status{}, fmt.Errorf("marathon: status of %s: %w", id, err)
	}
	a := out.App
	st := Status{Instances: a.Instances, TasksStaged: a.TasksStaged, TasksRunning: a.TasksRunning,
		TasksHealthy: a.TasksHealthy, TasksUnhealthy: a.TasksUnhealthy, Version: a.Version}
	for _, d := range a.Deployments {
		st.Deployments = append(st.Deployments, d.ID)
	}
	return st, nil
}

// Scale asks Marathon to run n instances of the app: PUT /v2/apps/{id}
// with {"instances":n}, so only the count changes (a ScaleApplication
// deployment, no restart). A locked app gives a NoOp Result and a nil
// error. A missing app is an error wrapping ErrAppNotFound: Scale never
// creates an app.
func (c *Client) Scale(ctx context.Context, appID string, n int, reason string) (Result, error) {
	id, err := normalizeID(appID)
	if err != nil {
		return Result{}, fmt.Errorf("marathon: scale %q: %w", appID, err)
	}
	if n < 0 {
		return Result{}, fmt.Errorf("marathon: scale %s to %d: negative count", id, n)
	}
	res := Result{AppID: id, Instances: n, Reason: reason}
	path := appPath(id)
	if c.cfg.force {
		path += "?force=true"
	}
	body := []byte(`{"instances":` + strconv.Itoa(n) + `}`)
	var dr struct {
		DeploymentID string `json:"deploymentId"`
		Version      string `json:"version"`
	}
	status, header, err := c.do(ctx, http.MethodPut, path, body, http.StatusOK, &dr)
	var apiErr *APIError
	switch {
	case err == nil && status == http.StatusOK:
		res.Outcome, res.DeploymentID, res.Version = Scaled, cmp.Or(dr.DeploymentID, header.Get(DeploymentHeader)), dr.Version
		return res, nil
	case errors.Is(err, ErrDeploymentInProgress):
		res.Outcome, res.Cause = NoOp, err
		return res, nil
	case errors.As(err, &apiErr) && (apiErr.Status == http.StatusUnprocessableEntity || apiErr.Status == http.StatusCreated):
		// PUT creates a missing app: Marathon refuses {"instances":n} as
		// an app definition (422). Say so plainly when that was the cause.
		var notFound *APIError
		if _, serr := c.Status(ctx, id); errors.Is(serr, ErrAppNotFound) && errors.As(serr, &notFound) {
			return Result{}, fmt.Errorf("marathon: scale %s to %d: %w (%s)", id, n, ErrAppNotFound, notFound)
		}
	}
	return Result{}, fmt.Errorf("marathon: scale %s to %d: %w", id, n, err)
}

// WaitDeployment returns once GET /v2/deployments no longer lists id (the
// deployment finished, or was cancelled), as go-marathon's
// WaitOnDeployment does, or with ctx's error.
func (c *Client) WaitDeployment(ctx context.Context, deploymentID string) error {
	if deploymentID == "" {
		return errors.New("marathon: wait for deployment: empty id")
	}
	tick := time.NewTicker(c.cfg.poll)
	defer tick.Stop()
	for {
		running, err := c.Deployments(ctx)
		if err != nil {
			return fmt.Errorf("marathon: wait for deployment %s: %w", deploymentID, err)
		}
		found := false
		for _, d := range running {
			found = found || d == deploymentID
		}
		if !found {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("marathon: wait for deployment %s: %w", deploymentID, ctx.Err())
		case <-tick.C:
		}
	}
}

// Deployments lists the ids of the running deployments.
func (c *Client) Deployments(ctx context.Context) ([]string, error) {
	var deps []struct {
		ID string `json:"id"`
	}
	if _, _, err := c.do(ctx, http.MethodGet, "/v2/deployments", nil, http.StatusOK, &deps); err != nil {
		return nil, fmt.Errorf("marathon: deployments: %w", err)
	}
	ids := make([]string, len(deps))
	for i, d := range deps {
		ids[i] = d.ID
	}
	return ids, nil
}

// maxBody bounds what is read of an answer.
const maxBody = 8 << 20

// do sends one request and decodes a want answer into out; any other
// status is an *APIError.
func (c *Client) do(ctx context.Context, method, path string, body []byte, want int, out any) (int, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", c.cfg.userAgent)
	switch {
	case c.cfg.authHeader != "":
		req.Header.Set("Authorization", c.cfg.authHeader)
	case c.cfg.user != "" || c.cfg.password != "":
		req.SetBasicAuth(c.cfg.user, c.cfg.password)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		return resp.StatusCode, resp.Header, apiError(method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, resp.Header, nil
}

func apiError(method, path string, status int, data []byte) *APIError {
	e := &APIError{Method: method, Path: path, Status: status}
	var body struct {
		Message     string `json:"message"`
		Deployments []struct {
			ID string `json:"id"`
		} `json:"deployments"`
	}
	if json.Unmarshal(data, &body) == nil && body.Message != "" {
		e.Message = body.Message
		for _, d := range body.Deployments {
			e.Deployments = append(e.Deployments, d.ID)
		}
		return e
	}
	msg := strings.TrimSpace(string(data))
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	e.Message = msg
	return e
}

// normalizeID gives an app id its leading slash, as Marathon does, and
// rejects what cannot be one.
func normalizeID(id string) (string, error) {
	id = strings.TrimSpace(id)
	if !strings.HasPrefix(id, "/") {
		id = "/" + id
	}
	id = strings.TrimRight(id, "/")
	if id == "" {
		return "", errors.New("empty app id")
	}
	for _, seg := range strings.Split(id[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("app id %q: empty or relative segment", id)
		}
	}
	return id, nil
}

// appPath is /v2/apps/{id} with each segment escaped.
func appPath(id string) string {
	segs := strings.Split(id[1:], "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/v2/apps/" + strings.Join(segs, "/")
}
