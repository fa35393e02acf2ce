package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Run is one pipeline run (GET /api/v1/runs/{id}).
type Run struct {
	ID              string `json:"id"`
	Project         string `json:"project"`
	Number          int    `json:"number"`
	State           string `json:"state"`
	Reason          string `json:"reason"`
	CancelRequested bool   `json:"cancelRequested"`
	Version         string `json:"version"`
	Image           string `json:"image"`
	Node            string `json:"node"`
	Push            struct {
		Ref       string `json:"ref"`
		After     string `json:"after"`
		Committer struct {
			Name  string `json:"name"`
			Email string `json:"email"`
		} `json:"committer"`
	} `json:"push"`
	Steps []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		ExitCode *int   `json:"exitCode"`
		Started  string `json:"started"`
		Finished string `json:"finished"`
	} `json:"steps"`
	Created  string `json:"created"`
	Started  string `json:"started"`
	Finished string `json:"finished"`

	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw object beside the decoded fields.
func (r *Run) UnmarshalJSON(data []byte) error {
	type plain Run
	if err := json.Unmarshal(data, (*plain)(r)); err != nil {
		return err
	}
	r.Raw = append(json.RawMessage(nil), data...)
	return nil
}

// Final reports whether the run has ended.
func (r *Run) Final() bool {
	return r.State == "passed" || r.State == "failed" || r.State == "cancelled"
}

// Runs lists pipeline runs, newest first, of project and in state when
// they are not "".
func (c *Client) Runs(ctx context.Context, project, state string) ([]Run, error) {
	q := url.Values{}
	if project != "" {
		q.Set("project", project)
	}
	if state != "" {
		q.Set("state", state)
	}
	var out struct {
		Runs []Run `json:"runs"`
	}
	if err := c.getJSON(ctx, "/api/v1/runs", q, &out); err != nil {
		return nil, err
	}
	return out.Runs, nil
}

func runPath(id string, suffix string) string {
	return "/api/v1/runs/" + url.PathEscape(id) + suffix
}

// Run reads one run.
func (c *Client) Run(ctx context.Context, id string) (*Run, error) {
	var r Run
	if err := c.getJSON(ctx, runPath(id, ""), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// CancelRun asks a queued or running run to stop; a run that ended is a
// 409 APIError.
func (c *Client) CancelRun(ctx context.Context, id string) (*Run, error) {
	resp, err := c.Do(ctx, http.MethodPost, runPath(id, "/cancel"), nil, []byte("{}"))
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		return nil, fmt.Errorf("POST %s: decode answer: %w", runPath(id, "/cancel"), err)
	}
	return &r, nil
}

// RunLog copies a run's log to w: what is there now, or with follow all
// of it until the run ends (or ctx does).
func (c *Client) RunLog(ctx context.Context, id string, follow bool, w io.Writer) error {
	path := runPath(id, "/log")
	q := url.Values{"follow": {fmt.Sprint(follow)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(path, q), nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	c.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(http.MethodGet, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return newAPIError(http.MethodGet, path, resp.StatusCode, data)
	}
	if _, err := io.Copy(w, resp.Body); err != nil && ctx.Err() == nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// Release is one product image of an app (GET /api/v1/releases).
type Release struct {
	App       string `json:"app"`
	Version   string `json:"version"`
	Image     string `json:"image"`
	Revision  string `json:"revision"`
	Committer string `json:"committer"`
	Project   string `json:"project"`
	RunID     string `json:"runId"`
	Created   string `json:"created"`
	Tests     []struct {
		Name     string `json:"name"`
		Passed   bool   `json:"passed"`
		ExitCode int    `json:"exitCode"`
		Error    string `json:"error"`
	} `json:"tests"`
	Passed       bool     `json:"passed"`
	Environments []string `json:"environments"`
	// NeedsApproval are the environments it enters only once approved;
	// Approvals who approved it for which.
	NeedsApproval []string `json:"needsApproval"`
	Approvals     []struct {
		Environment string `json:"environment"`
		By          string `json:"by"`
		At          string `json:"at"`
	} `json:"approvals"`
}

// ApprovedBy is who approved r for env, or "".
func (r *Release) ApprovedBy(env string) string {
	for _, a := range r.Approvals {
		if a.Environment == env {
			return a.By
		}
	}
	return ""
}

// Environment is what one environment runs of an app, and ran before.
type Environment struct {
	Name    string `json:"name"`
	App     string `json:"app"`
	Current string `json:"current"`
	History []struct {
		Version  string `json:"version"`
		At       string `json:"at"`
		By       string `json:"by"`
		Rollback bool   `json:"rollback"`
		// ApprovedBy approved the release for this environment.
		ApprovedBy string `json:"approvedBy"`
	} `json:"history"`
}

// Releases is an app's releases (newest first) and its environments.
type Releases struct {
	Releases     []Release     `json:"releases"`
	Environments []Environment `json:"environments"`

	Raw json.RawMessage `json:"-"`
}

// Releases reads app's releases and environments.
func (c *Client) Releases(ctx context.Context, app string) (*Releases, error) {
	resp, err := c.Do(ctx, http.MethodGet, "/api/v1/releases", url.Values{"app": {"/" + strings.Trim(app, "/")}}, nil)
	if err != nil {
		return nil, err
	}
	var out Releases
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return nil, fmt.Errorf("GET /api/v1/releases: decode answer: %w", err)
	}
	out.Raw = resp.Body
	return &out, nil
}

// ReleaseChange is a promote or rollback request; Version may be ""
// for a rollback (the release the environment ran before).
type ReleaseChange struct {
	App         string `json:"app"`
	Version     string `json:"version,omitempty"`
	Environment string `json:"environment"`
	By          string `json:"by,omitempty"`
	// Approve (promote only) approves the release first, as the caller.
	Approve bool `json:"approve,omitempty"`
}

// ReleaseChanged is the answer to a promote or rollback: the version now
// running there and the deployment's log.
type ReleaseChanged struct {
	App         string `json:"app"`
	Version     string `json:"version"`
	Environment string `json:"environment"`
	Log         string `json:"log"`
}

// Promote deploys a release to an environment and returns once it runs
// there; a promotion the rules forbid is a 409 APIError.
func (c *Client) Promote(ctx context.Context, ch ReleaseChange) (*ReleaseChanged, error) {
	return c.changeRelease(ctx, "/api/v1/releases/promote", ch)
}

// RollbackRelease deploys to an environment the release it ran before
// (or ch.Version, which it must have run).
func (c *Client) RollbackRelease(ctx context.Context, ch ReleaseChange) (*ReleaseChanged, error) {
	return c.changeRelease(ctx, "/api/v1/releases/rollback", ch)
}

// Approve records the caller's approval of release ch.Version for
// ch.Environment and returns the release; the committer's own is a 403
// APIError.
func (c *Client) Approve(ctx context.Context, ch ReleaseChange) (*Release, error) {
	var out Release
	if err := c.postRelease(ctx, "/api/v1/releases/approve", ch, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) changeRelease(ctx context.Context, path string, ch ReleaseChange) (*ReleaseChanged, error) {
	var out ReleaseChanged
	if err := c.postRelease(ctx, path, ch, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) postRelease(ctx context.Context, path string, ch ReleaseChange, out any) error {
	ch.App = "/" + strings.Trim(ch.App, "/")
	body, err := json.Marshal(ch)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	resp, err := c.Do(ctx, http.MethodPost, path, nil, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return fmt.Errorf("POST %s: decode answer: %w", path, err)
	}
	return nil
}

// Evaluation is the autoscaler's last evaluation of one rule: the
// decision (or non-decision) and its reason, with the rule.
type Evaluation struct {
	Decision
	Rule json.RawMessage `json:"rule"`
}

// UnmarshalJSON keeps the raw object beside the decoded fields (the
// embedded Decision's own UnmarshalJSON would otherwise take over).
func (e *Evaluation) UnmarshalJSON(data []byte) error {
	var d Decision
	if err := json.Unmarshal(data, &d); err != nil {
		return err
	}
	var r struct {
		Rule json.RawMessage `json:"rule"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	e.Decision, e.Rule = d, r.Rule
	return nil
}

// Evaluations reads the last evaluation of every rule (of app's when app
// is not "").
func (c *Client) Evaluations(ctx context.Context, app string) ([]Evaluation, error) {
	q := url.Values{}
	if app != "" {
		q.Set("app", "/"+strings.Trim(app, "/"))
	}
	var out struct {
		Evaluations []Evaluation `json:"evaluations"`
	}
	if err := c.getJSON(ctx, "/api/v1/evaluations", q, &out); err != nil {
		return nil, err
	}
	return out.Evaluations, nil
}
