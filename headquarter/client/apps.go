package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// App is what the client reads of a Marathon app; Raw is the whole object
// as the API sent it, for callers that print it.
type App struct {
	ID        string            `json:"id"`
	Cmd       string            `json:"cmd"`
	Instances int               `json:"instances"`
	CPUs      float64           `json:"cpus"`
	Mem       float64           `json:"mem"`
	Labels    map[string]string `json:"labels"`
	Container *struct {
		Docker *struct {
			Image string `json:"image"`
		} `json:"docker"`
	} `json:"container"`
	Version     string `json:"version"`
	VersionInfo struct {
		LastScalingAt      string `json:"lastScalingAt"`
		LastConfigChangeAt string `json:"lastConfigChangeAt"`
	} `json:"versionInfo"`
	TasksStaged     int            `json:"tasksStaged"`
	TasksRunning    int            `json:"tasksRunning"`
	TasksHealthy    int            `json:"tasksHealthy"`
	TasksUnhealthy  int            `json:"tasksUnhealthy"`
	Deployments     []DeploymentID `json:"deployments"`
	Tasks           []Task         `json:"tasks"`
	LastTaskFailure *TaskFailure   `json:"lastTaskFailure"`

	// Raw is the whole object as the API sent it; App fills it, Apps
	// does not (AppsJSON gives the list raw).
	Raw json.RawMessage `json:"-"`
}

// Image is the app's Docker image, "" for a command app.
func (a *App) Image() string {
	if a.Container == nil || a.Container.Docker == nil {
		return ""
	}
	return a.Container.Docker.Image
}

// DeploymentID names a deployment in an app's deployments list.
type DeploymentID struct {
	ID string `json:"id"`
}

// TaskFailure is an app's last failed task.
type TaskFailure struct {
	TaskID    string `json:"taskId"`
	State     string `json:"state"`
	Message   string `json:"message"`
	Host      string `json:"host"`
	Timestamp string `json:"timestamp"`
	Version   string `json:"version"`
}

// Written is the answer of a call that started a deployment.
type Written struct {
	DeploymentID string `json:"deploymentId"`
	Version      string `json:"version,omitempty"`
	// Created: the call created the app (201).
	Created bool `json:"-"`
}

func written(resp *Response) *Written {
	w := &Written{DeploymentID: resp.DeploymentID(), Created: resp.Status == http.StatusCreated}
	var body struct {
		DeploymentID string `json:"deploymentId"`
		Version      string `json:"version"`
	}
	if json.Unmarshal(resp.Body, &body) == nil {
		if w.DeploymentID == "" {
			w.DeploymentID = body.DeploymentID
		}
		w.Version = body.Version
	}
	return w
}

// Apps lists every app with its counts and deployments (GET /v2/apps).
// Raw is left empty: decoding each app twice doubles the cost of a list
// of thousands.
func (c *Client) Apps(ctx context.Context) ([]App, error) {
	var out struct {
		Apps []App `json:"apps"`
	}
	if err := c.getJSON(ctx, "/v2/apps", nil, &out); err != nil {
		return nil, err
	}
	return out.Apps, nil
}

// AppsJSON lists every app as the API sent it.
func (c *Client) AppsJSON(ctx context.Context) ([]json.RawMessage, error) {
	var out struct {
		Apps []json.RawMessage `json:"apps"`
	}
	if err := c.getJSON(ctx, "/v2/apps", nil, &out); err != nil {
		return nil, err
	}
	return out.Apps, nil
}

// App reads one app with its tasks and last task failure.
func (c *Client) App(ctx context.Context, id string) (*App, error) {
	var out struct {
		App json.RawMessage `json:"app"`
	}
	if err := c.getJSON(ctx, appPath(id), nil, &out); err != nil {
		return nil, err
	}
	var a App
	if err := json.Unmarshal(out.App, &a); err != nil {
		return nil, fmt.Errorf("GET %s: decode app: %w", appPath(id), err)
	}
	a.Raw = out.App
	return &a, nil
}

// AppVersions lists an app's stored versions, newest first.
func (c *Client) AppVersions(ctx context.Context, id string) ([]string, error) {
	var out struct {
		Versions []string `json:"versions"`
	}
	if err := c.getJSON(ctx, appPath(id, "versions"), nil, &out); err != nil {
		return nil, err
	}
	return out.Versions, nil
}

func forceQuery(force bool) url.Values {
	if !force {
		return nil
	}
	return url.Values{"force": {"true"}}
}

// CreateApp creates an app from its JSON definition (POST /v2/apps).
func (c *Client) CreateApp(ctx context.Context, def []byte) (*Written, error) {
	resp, err := c.Do(ctx, http.MethodPost, "/v2/apps", nil, def)
	if err != nil {
		return nil, err
	}
	return written(resp), nil
}

// PutApp replaces (or creates) app id with a full definition (PUT
// /v2/apps/{id}?partialUpdate=false).
func (c *Client) PutApp(ctx context.Context, id string, def []byte, force bool) (*Written, error) {
	q := url.Values{"partialUpdate": {"false"}}
	if force {
		q.Set("force", "true")
	}
	resp, err := c.Do(ctx, http.MethodPut, appPath(id), q, def)
	if err != nil {
		return nil, err
	}
	return written(resp), nil
}

// PutApps replaces (or creates) several apps in one deployment (PUT
// /v2/apps with a JSON array of full definitions).
func (c *Client) PutApps(ctx context.Context, defs []byte, force bool) (*Written, error) {
	q := url.Values{"partialUpdate": {"false"}}
	if force {
		q.Set("force", "true")
	}
	resp, err := c.Do(ctx, http.MethodPut, "/v2/apps", q, defs)
	if err != nil {
		return nil, err
	}
	return written(resp), nil
}

// PatchApp changes the fields of app id that patch gives (PUT, the
// default partial update).
func (c *Client) PatchApp(ctx context.Context, id string, patch any, force bool) (*Written, error) {
	body, err := json.Marshal(patch)
	if err != nil {
		return nil, fmt.Errorf("encode update of %s: %w", id, err)
	}
	resp, err := c.Do(ctx, http.MethodPut, appPath(id), forceQuery(force), body)
	if err != nil {
		return nil, err
	}
	return written(resp), nil
}

// ScaleApp sets app id's instance count.
func (c *Client) ScaleApp(ctx context.Context, id string, n int, force bool) (*Written, error) {
	return c.PatchApp(ctx, id, map[string]int{"instances": n}, force)
}

// RollbackApp deploys a stored version of app id.
func (c *Client) RollbackApp(ctx context.Context, id, version string, force bool) (*Written, error) {
	return c.PatchApp(ctx, id, map[string]string{"version": version}, force)
}

// RestartApp replaces every task of app id (a rolling restart).
func (c *Client) RestartApp(ctx context.Context, id string, force bool) (*Written, error) {
	resp, err := c.Do(ctx, http.MethodPost, appPath(id, "restart"), forceQuery(force), nil)
	if err != nil {
		return nil, err
	}
	return written(resp), nil
}

// DeleteApp removes app id and stops its tasks.
func (c *Client) DeleteApp(ctx context.Context, id string, force bool) (*Written, error) {
	resp, err := c.Do(ctx, http.MethodDelete, appPath(id), forceQuery(force), nil)
	if err != nil {
		return nil, err
	}
	return written(resp), nil
}

// Info is what GET /v2/info says of the server.
type Info struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Leader  string `json:"leader"`
}

// Info reads GET /v2/info.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var out Info
	if err := c.getJSON(ctx, "/v2/info", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// itoa is strconv.Itoa, for query values.
func itoa(n int) string { return strconv.Itoa(n) }
