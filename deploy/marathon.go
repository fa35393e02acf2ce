package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Marathon deploys apps through a Marathon API: garrison's own /v2, or a
// real Marathon.
type Marathon struct {
	base string
	auth Auth
	hc   *http.Client
	// poll paces the waits for a deployment: the API is usually
	// garrison's own, called in-process, and every poll period a
	// pipeline's deploy waits past readiness is on its way to production.
	poll time.Duration
}

// Auth is how to authenticate to the Marathon API: a bearer token, or
// basic auth; empty sends nothing.
type Auth struct {
	Token, Username, Password string
}

// NewMarathonHandler returns a client of the API h serves, called
// in-process: garrison deploying through its own router needs no address,
// TLS or network hop.
func NewMarathonHandler(h http.Handler, auth Auth) *Marathon {
	m := NewMarathon("http://garrison", auth)
	m.hc.Transport = handlerTransport{h}
	return m
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// NewMarathon returns a client of the API at base (http://127.0.0.1:8080).
func NewMarathon(base string, auth Auth) *Marathon {
	return &Marathon{base: strings.TrimSuffix(base, "/"), auth: auth, hc: &http.Client{Timeout: 30 * time.Second}, poll: 50 * time.Millisecond}
}

// APIError is a refusal by the Marathon API, with its body.
type APIError struct {
	Status int
	Body   string
}

func (e *APIError) Error() string { return fmt.Sprintf("marathon API: %d %s", e.Status, e.Body) }

func (m *Marathon) call(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	switch {
	case m.auth.Token != "":
		req.Header.Set("Authorization", "Bearer "+m.auth.Token)
	case m.auth.Username != "":
		req.SetBasicAuth(m.auth.Username, m.auth.Password)
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 {
		return &APIError{Status: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

func appPath(id string) string {
	return "/v2/apps" + (&url.URL{Path: id}).EscapedPath()
}

// ReadyTimeout bounds how long a deployment may take to have every
// instance running (and healthy).
const ReadyTimeout = 5 * time.Minute

// Deploy creates or replaces app id from def with image, and waits until
// every instance of the new version runs (and is healthy, when the app has
// health checks), at most ReadyTimeout. It does not wait for the instances
// it replaces to stop: Marathon's deployment goes on draining them (a
// second or more each, for the requests on their way) while the new ones
// already serve.
func (m *Marathon) Deploy(ctx context.Context, id string, def map[string]any, image string) error {
	app := appDefinition(id, def, image)
	var res struct {
		DeploymentID string `json:"deploymentId"`
		Version      string `json:"version"`
	}
	if err := m.call(ctx, http.MethodPut, appPath(id)+"?force=true", app, &res); err != nil {
		return fmt.Errorf("deploy %s: %w", id, err)
	}
	wctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(m.poll)
	defer tick.Stop()
	for {
		var a appState
		if err := m.call(ctx, http.MethodGet, appPath(id), nil, &a); err != nil {
			return fmt.Errorf("deploy %s: %w", id, err)
		}
		if a.App.versionReady(res.Version) {
			return nil
		}
		// A change that launches nothing new (a scale-down, the same
		// definition again) is ready when its deployment is done.
		var deps []struct {
			ID string `json:"id"`
		}
		if err := m.call(ctx, http.MethodGet, "/v2/deployments", nil, &deps); err != nil {
			return fmt.Errorf("deploy %s: %w", id, err)
		}
		busy := false
		for _, d := range deps {
			busy = busy || d.ID == res.DeploymentID
		}
		if !busy && a.App.TasksRunning >= a.App.Instances && (len(a.App.HealthChecks) == 0 || a.App.TasksHealthy >= a.App.Instances) {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("deploy %s: not ready: %w%s", id, wctx.Err(), m.lastFailure(context.WithoutCancel(ctx), id))
		case <-tick.C:
		}
	}
}

// appState is what Deploy reads of an app.
type appState struct {
	App appStatus `json:"app"`
}

type appStatus struct {
	Instances    int   `json:"instances"`
	TasksRunning int   `json:"tasksRunning"`
	TasksHealthy int   `json:"tasksHealthy"`
	HealthChecks []any `json:"healthChecks"`
	Tasks        []struct {
		Version            string `json:"version"`
		State              string `json:"state"`
		HealthCheckResults []struct {
			Alive bool `json:"alive"`
		} `json:"healthCheckResults"`
	} `json:"tasks"`
}

// versionReady reports whether as many tasks of version run (every check
// alive, when the app has checks) as the app wants instances.
func (a appStatus) versionReady(version string) bool {
	if version == "" || a.Instances == 0 {
		return false
	}
	ready := 0
	for _, t := range a.Tasks {
		if t.Version != version || t.State != "TASK_RUNNING" {
			continue
		}
		alive := len(t.HealthCheckResults) >= len(a.HealthChecks)
		for _, r := range t.HealthCheckResults {
			alive = alive && r.Alive
		}
		if alive {
			ready++
		}
	}
	return ready >= a.Instances
}

// lastFailure says why the app's last task failed, when Marathon knows.
func (m *Marathon) lastFailure(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var a struct {
		App struct {
			LastTaskFailure *struct {
				Message string `json:"message"`
			} `json:"lastTaskFailure"`
		} `json:"app"`
	}
	if m.call(ctx, http.MethodGet, appPath(id), nil, &a) != nil || a.App.LastTaskFailure == nil {
		return ""
	}
	return " (last task failure: " + a.App.LastTaskFailure.Message + ")"
}

// appDefinition is def with garrison's parts: the id and the image.
func appDefinition(id string, def map[string]any, image string) map[string]any {
	app := make(map[string]any, len(def)+2)
	for k, v := range def {
		app[k] = v
	}
	app["id"] = id
	c, _ := app["container"].(map[string]any)
	c = clone(c)
	c["type"] = "DOCKER"
	d, _ := c["docker"].(map[string]any)
	d = clone(d)
	d["image"] = image
	c["docker"] = d
	app["container"] = c
	return app
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Destroy deletes app id and waits until Marathon no longer knows it.
func (m *Marathon) Destroy(ctx context.Context, id string) error {
	err := m.call(ctx, http.MethodDelete, appPath(id)+"?force=true", nil, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("destroy %s: %w", id, err)
	}
	tick := time.NewTicker(m.poll)
	defer tick.Stop()
	for {
		err := m.call(ctx, http.MethodGet, appPath(id), nil, nil)
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("destroy %s: still there: %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}

// Endpoint returns host:port of the app's first task's first port.
func (m *Marathon) Endpoint(ctx context.Context, id string) (string, error) {
	var res struct {
		Tasks []struct {
			Host  string `json:"host"`
			Ports []int  `json:"ports"`
		} `json:"tasks"`
	}
	if err := m.call(ctx, http.MethodGet, appPath(id)+"/tasks", nil, &res); err != nil {
		return "", fmt.Errorf("tasks of %s: %w", id, err)
	}
	for _, t := range res.Tasks {
		if len(t.Ports) > 0 {
			return t.Host + ":" + strconv.Itoa(t.Ports[0]), nil
		}
	}
	return "", fmt.Errorf("app %s has no task with a port", id)
}

// Ensure creates the app def describes (its "id" set) unless Marathon
// already has it; it reports whether it created it. An existing app is
// left as it is: its count is the autoscaler's.
func (m *Marathon) Ensure(ctx context.Context, def map[string]any) (bool, error) {
	err := m.call(ctx, http.MethodPost, "/v2/apps", def, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create %v: %w", def["id"], err)
	}
	return true, nil
}

// App returns the definition Marathon holds for app id, as it answers GET
// /v2/apps/{id}; ok is false when it has no such app.
func (m *Marathon) App(ctx context.Context, id string) (def json.RawMessage, ok bool, err error) {
	var res struct {
		App json.RawMessage `json:"app"`
	}
	err = m.call(ctx, http.MethodGet, appPath(id), nil, &res)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read app %s: %w", id, err)
	}
	return res.App, true, nil
}

// Update changes app id to def as a user's PUT does: a partial update
// (what def leaves out, the instance count among it, keeps its value)
// deployed by Marathon, a rolling replacement of the tasks when the
// change needs one. It does not force: a deployment under way on the app
// refuses it with a 409 APIError. It returns the deployment's id.
func (m *Marathon) Update(ctx context.Context, id string, def map[string]any) (string, error) {
	var res struct {
		DeploymentID string `json:"deploymentId"`
	}
	if err := m.call(ctx, http.MethodPut, appPath(id), def, &res); err != nil {
		return "", fmt.Errorf("update %s: %w", id, err)
	}
	return res.DeploymentID, nil
}
