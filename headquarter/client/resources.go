package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// Task is one instance of an app.
type Task struct {
	ID                 string `json:"id"`
	AppID              string `json:"appId"`
	Host               string `json:"host"`
	Ports              []int  `json:"ports"`
	StagedAt           string `json:"stagedAt"`
	StartedAt          string `json:"startedAt"`
	Version            string `json:"version"`
	State              string `json:"state"`
	HealthCheckResults []struct {
		Alive bool `json:"alive"`
	} `json:"healthCheckResults"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw object beside the decoded fields.
func (t *Task) UnmarshalJSON(data []byte) error {
	type plain Task
	if err := json.Unmarshal(data, (*plain)(t)); err != nil {
		return err
	}
	t.Raw = append(json.RawMessage(nil), data...)
	return nil
}

// Tasks lists every task, or app's when app is not "".
func (c *Client) Tasks(ctx context.Context, app string) ([]Task, error) {
	path := "/v2/tasks"
	if app != "" {
		path = appPath(app, "tasks")
	}
	var out struct {
		Tasks []Task `json:"tasks"`
	}
	if err := c.getJSON(ctx, path, nil, &out); err != nil {
		return nil, err
	}
	return out.Tasks, nil
}

// TaskLog is the last tail lines of a task's stdout and stderr (0: the
// server's default).
func (c *Client) TaskLog(ctx context.Context, id string, tail int) ([]byte, error) {
	var q url.Values
	if tail > 0 {
		q = url.Values{"tail": {itoa(tail)}}
	}
	resp, err := c.Do(ctx, http.MethodGet, "/api/v1/tasks/"+id+"/log", q, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// KillTasks kills tasks by id. With scale their apps shrink by the number
// killed, which starts a deployment (Written); without, garrison replaces
// them and the killed tasks are returned.
func (c *Client) KillTasks(ctx context.Context, ids []string, scale bool) ([]Task, *Written, error) {
	body, err := json.Marshal(map[string][]string{"ids": ids})
	if err != nil {
		return nil, nil, fmt.Errorf("encode task ids: %w", err)
	}
	var q url.Values
	if scale {
		q = url.Values{"scale": {"true"}}
	}
	resp, err := c.Do(ctx, http.MethodPost, "/v2/tasks/delete", q, body)
	if err != nil {
		return nil, nil, err
	}
	if scale {
		return nil, written(resp), nil
	}
	var out struct {
		Tasks []Task `json:"tasks"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return nil, nil, fmt.Errorf("POST /v2/tasks/delete: decode answer: %w", err)
	}
	return out.Tasks, nil, nil
}

// Deployment is one deployment in progress.
type Deployment struct {
	ID             string   `json:"id"`
	Version        string   `json:"version"`
	AffectedApps   []string `json:"affectedApps"`
	CurrentActions []struct {
		Action string `json:"action"`
		App    string `json:"app"`
	} `json:"currentActions"`
	CurrentStep int `json:"currentStep"`
	TotalSteps  int `json:"totalSteps"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw object beside the decoded fields.
func (d *Deployment) UnmarshalJSON(data []byte) error {
	type plain Deployment
	if err := json.Unmarshal(data, (*plain)(d)); err != nil {
		return err
	}
	d.Raw = append(json.RawMessage(nil), data...)
	return nil
}

// Deployments lists the deployments in progress; a finished one is gone.
func (c *Client) Deployments(ctx context.Context) ([]Deployment, error) {
	var out []Deployment
	if err := c.getJSON(ctx, "/v2/deployments", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// CancelDeployment stops deployment id. Without force garrison rolls the
// apps back with a new deployment (returned); with force it only stops
// (nil).
func (c *Client) CancelDeployment(ctx context.Context, id string, force bool) (*Written, error) {
	resp, err := c.Do(ctx, http.MethodDelete, "/v2/deployments/"+id, forceQuery(force), nil)
	if err != nil {
		return nil, err
	}
	if resp.Status == http.StatusAccepted || len(resp.Body) == 0 {
		return nil, nil
	}
	return written(resp), nil
}

// Instance is one registered instance of a service.
type Instance struct {
	ID       string            `json:"id"`
	Addr     string            `json:"addr"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Lease    string            `json:"lease,omitempty"`
}

// Service is a service of the registry with its live instances.
type Service struct {
	Name      string     `json:"name"`
	Instances []Instance `json:"instances"`
}

// Services lists the registry (GET /api/v1/services).
func (c *Client) Services(ctx context.Context) ([]Service, error) {
	var out struct {
		Services []Service `json:"services"`
	}
	if err := c.getJSON(ctx, "/api/v1/services", nil, &out); err != nil {
		return nil, err
	}
	return out.Services, nil
}

// Service reads one service of the registry; 404 when it has no instance.
func (c *Client) Service(ctx context.Context, name string) (*Service, error) {
	var out Service
	if err := c.getJSON(ctx, "/api/v1/services/"+name, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Rule is an autoscale rule as the API spells it (durations as "5m").
type Rule struct {
	App            string             `json:"app"`
	Min            int                `json:"min"`
	Max            int                `json:"max"`
	Quorum         int                `json:"quorum"`
	Window         string             `json:"window"`
	Up             map[string]float64 `json:"up"`
	Down           map[string]float64 `json:"down"`
	Cooldown       string             `json:"cooldown"`
	ScaleDownAfter string             `json:"scaleDownAfter"`
	Schedules      []struct {
		Cron string `json:"cron"`
		For  string `json:"for"`
		Min  int    `json:"min"`
	} `json:"schedules"`
	Paused bool `json:"paused"`
	DryRun bool `json:"dryRun"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw object beside the decoded fields.
func (r *Rule) UnmarshalJSON(data []byte) error {
	type plain Rule
	if err := json.Unmarshal(data, (*plain)(r)); err != nil {
		return err
	}
	r.Raw = append(json.RawMessage(nil), data...)
	return nil
}

// Rules reads the autoscale rules in force.
func (c *Client) Rules(ctx context.Context) ([]Rule, error) {
	var out struct {
		Rules []Rule `json:"rules"`
	}
	if err := c.getJSON(ctx, "/api/v1/rules", nil, &out); err != nil {
		return nil, err
	}
	return out.Rules, nil
}

// RulesDocument reads the rules document in force, as YAML.
func (c *Client) RulesDocument(ctx context.Context) ([]byte, error) {
	resp, err := c.Do(ctx, http.MethodGet, "/api/v1/rules", url.Values{"format": {"yaml"}}, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// PutRules replaces the rules with a document (YAML or JSON); a 422
// *APIError carries every error in RuleErrors.
func (c *Client) PutRules(ctx context.Context, doc []byte) ([]Rule, error) {
	resp, err := c.Do(ctx, http.MethodPut, "/api/v1/rules", nil, doc)
	if err != nil {
		return nil, err
	}
	var out struct {
		Rules []Rule `json:"rules"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return nil, fmt.Errorf("PUT /api/v1/rules: decode answer: %w", err)
	}
	return out.Rules, nil
}

// Decision is one entry of the autoscaler's decision log.
type Decision struct {
	ID       string `json:"id"`
	App      string `json:"app"`
	At       string `json:"at"`
	From     int    `json:"from"`
	To       int    `json:"to"`
	Action   string `json:"action"`
	Reason   string `json:"reason"`
	Acted    bool   `json:"acted"`
	NotNow   bool   `json:"notNow"`
	ActError string `json:"actError"`
	DryRun   bool   `json:"dryRun"`
	Paused   bool   `json:"paused"`
	Blocked  string `json:"blocked"`
	Repeats  int    `json:"repeats"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw object beside the decoded fields.
func (d *Decision) UnmarshalJSON(data []byte) error {
	type plain Decision
	if err := json.Unmarshal(data, (*plain)(d)); err != nil {
		return err
	}
	d.Raw = append(json.RawMessage(nil), data...)
	return nil
}

// Decisions reads the newest decisions (of app, or of all apps when app
// is ""), newest first; limit <= 0 takes the server's default.
func (c *Client) Decisions(ctx context.Context, app string, limit int) ([]Decision, error) {
	q := url.Values{}
	if app != "" {
		q.Set("app", app)
	}
	if limit > 0 {
		q.Set("limit", itoa(limit))
	}
	var out struct {
		Decisions []Decision `json:"decisions"`
	}
	if err := c.getJSON(ctx, "/api/v1/decisions", q, &out); err != nil {
		return nil, err
	}
	return out.Decisions, nil
}
