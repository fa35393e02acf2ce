// Package deploy releases what pipelines build: every product image is a
// release of its app (with its metadata and test results), deployed
// through a Marathon API to an environment. Environments are app-id
// prefixes on the same garrison: production is the app id itself
// (/ktv/account), every other environment prefixes it (/qa/ktv/account),
// and each run's alpha is its own (/alpha/account.12/ktv/account), created
// for the run's tests and destroyed after them. A release is promoted
// through the pipeline file's environments in order, and any environment
// can be rolled back to a release it ran before.
package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Limits, stated in the README.
const (
	// MaxReleasesPerApp: older releases not running anywhere are dropped.
	MaxReleasesPerApp = 200
	// MaxHistory bounds each environment's deployment history.
	MaxHistory = 100
)

// Release is one product image of an app.
type Release struct {
	App       string    `json:"app"`
	Version   string    `json:"version"`
	Image     string    `json:"image"`
	Revision  string    `json:"revision"`
	Committer string    `json:"committer,omitempty"`
	Project   string    `json:"project"`
	RunID     string    `json:"runId"`
	Created   time.Time `json:"created"`
	// Tests are the test steps' results against the run's alpha.
	Tests []TestResult `json:"tests"`
	// Passed is true when every test passed: only then is it promoted.
	Passed bool `json:"passed"`
	// Environments is the promotion order from the pipeline file.
	Environments []string `json:"environments"`
	// Definition is the app definition (Marathon JSON) without id and image.
	Definition map[string]any `json:"definition,omitempty"`
	// NeedsApproval are the environments (approval: true in the pipeline
	// file) it enters only once a user other than its committer approved.
	NeedsApproval []string `json:"needsApproval,omitempty"`
	// Approvals are who approved it for which environment.
	Approvals []Approval `json:"approvals,omitempty"`
}

// Approval is a user's consent to a release entering an environment.
type Approval struct {
	Environment string    `json:"environment"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
}

// approval returns who approved r for env, or "".
func (r Release) approval(env string) string {
	for _, a := range r.Approvals {
		if a.Environment == env {
			return a.By
		}
	}
	return ""
}

// TestResult is one test step's outcome.
type TestResult struct {
	Name     string `json:"name"`
	Passed   bool   `json:"passed"`
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"`
}

// Environment is what an environment runs of an app, and what it ran.
type Environment struct {
	Name    string       `json:"name"`
	App     string       `json:"app"`
	Current string       `json:"current,omitempty"`
	History []Deployment `json:"history,omitempty"`
}

// Deployment is one change of an environment's release.
type Deployment struct {
	Version  string    `json:"version"`
	At       time.Time `json:"at"`
	By       string    `json:"by"`
	Rollback bool      `json:"rollback,omitempty"`
	// ApprovedBy approved the release for this environment, when it needed
	// an approval.
	ApprovedBy string `json:"approvedBy,omitempty"`
}

const (
	releasePrefix = "/garrison/releases/"
	envPrefix     = "/garrison/environments/"
)

func appKey(app string) string { return url.PathEscape(app) }

// Store keeps releases and environments in etcd.
type Store struct {
	kv clientv3.KV
}

// NewStore returns a store over kv.
func NewStore(kv clientv3.KV) *Store { return &Store{kv: kv} }

// ErrNotFound is returned for an unknown release.
var ErrNotFound = errors.New("no such release")

// Put records a release.
func (s *Store) Put(ctx context.Context, r Release) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode release %s %s: %w", r.App, r.Version, err)
	}
	if _, err := s.kv.Put(ctx, releasePrefix+appKey(r.App)+"/"+r.Version, string(data)); err != nil {
		return fmt.Errorf("store release %s %s: %w", r.App, r.Version, err)
	}
	return s.trim(ctx, r.App)
}

// Get returns one release.
func (s *Store) Get(ctx context.Context, app, version string) (Release, error) {
	resp, err := s.kv.Get(ctx, releasePrefix+appKey(app)+"/"+version)
	if err != nil {
		return Release{}, fmt.Errorf("read release %s %s: %w", app, version, err)
	}
	if len(resp.Kvs) == 0 {
		return Release{}, fmt.Errorf("release %s of %s: %w", version, app, ErrNotFound)
	}
	var r Release
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return Release{}, fmt.Errorf("decode release %s %s: %w", app, version, err)
	}
	return r, nil
}

// List returns an app's releases, newest first.
func (s *Store) List(ctx context.Context, app string) ([]Release, error) {
	resp, err := s.kv.Get(ctx, releasePrefix+appKey(app)+"/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list releases of %s: %w", app, err)
	}
	out := make([]Release, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r Release
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("decode release %s: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b Release) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// trim drops the oldest releases past MaxReleasesPerApp that no
// environment runs now.
func (s *Store) trim(ctx context.Context, app string) error {
	rs, err := s.List(ctx, app)
	if err != nil || len(rs) <= MaxReleasesPerApp {
		return err
	}
	envs, err := s.Environments(ctx, app)
	if err != nil {
		return err
	}
	current := map[string]bool{}
	for _, e := range envs {
		current[e.Current] = true
	}
	for _, r := range rs[MaxReleasesPerApp:] {
		if !current[r.Version] {
			if _, err := s.kv.Delete(ctx, releasePrefix+appKey(app)+"/"+r.Version); err != nil {
				return fmt.Errorf("trim releases of %s: %w", app, err)
			}
		}
	}
	return nil
}

// Environment returns what env runs of app (empty when nothing yet).
func (s *Store) Environment(ctx context.Context, env, app string) (Environment, error) {
	resp, err := s.kv.Get(ctx, envPrefix+env+"/"+appKey(app))
	if err != nil {
		return Environment{}, fmt.Errorf("read environment %s of %s: %w", env, app, err)
	}
	e := Environment{Name: env, App: app}
	if len(resp.Kvs) > 0 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &e); err != nil {
			return Environment{}, fmt.Errorf("decode environment %s of %s: %w", env, app, err)
		}
	}
	return e, nil
}

// Environments returns every environment that ran app.
func (s *Store) Environments(ctx context.Context, app string) ([]Environment, error) {
	resp, err := s.kv.Get(ctx, envPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list environments: %w", err)
	}
	var out []Environment
	for _, kv := range resp.Kvs {
		var e Environment
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("decode environment %s: %w", kv.Key, err)
		}
		if e.App == app {
			out = append(out, e)
		}
	}
	return out, nil
}

// recordDeployment makes version env's current release of app.
func (s *Store) recordDeployment(ctx context.Context, env, app string, d Deployment) error {
	e, err := s.Environment(ctx, env, app)
	if err != nil {
		return err
	}
	e.Current = d.Version
	e.History = append(e.History, d)
	if len(e.History) > MaxHistory {
		e.History = e.History[len(e.History)-MaxHistory:]
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode environment %s of %s: %w", env, app, err)
	}
	if _, err := s.kv.Put(ctx, envPrefix+env+"/"+appKey(app), string(data)); err != nil {
		return fmt.Errorf("store environment %s of %s: %w", env, app, err)
	}
	return nil
}
