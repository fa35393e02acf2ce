package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// Target is where apps are deployed: a Marathon API.
type Target interface {
	Deploy(ctx context.Context, id string, def map[string]any, image string) error
	Destroy(ctx context.Context, id string) error
	Endpoint(ctx context.Context, id string) (string, error)
}

// Manager deploys releases to environments and records it.
type Manager struct {
	store  *Store
	target Target
	// mu serialises changes of an environment: two promotions of one app
	// at once would race for the app definition.
	mu sync.Mutex
}

// NewManager returns a manager deploying to target.
func NewManager(store *Store, target Target) *Manager {
	return &Manager{store: store, target: target}
}

// Store returns the release store.
func (m *Manager) Store() *Store { return m.store }

// Production is the environment that runs the app under its own id.
const Production = "production"

// AppID is the app id of app in env.
func AppID(env, app string) string {
	if env == Production {
		return app
	}
	return "/" + env + app
}

// AlphaID is the app id of a run's alpha deployment.
func AlphaID(runID, app string) string { return "/alpha/" + runID + app }

// DeployAlpha deploys image as the run's alpha and returns where it
// answers (host:port of its first task).
func (m *Manager) DeployAlpha(ctx context.Context, id string, def map[string]any, image string, log io.Writer) (string, error) {
	fmt.Fprintf(log, "*** alpha: deploying %s as %s\n", image, id)
	if err := m.target.Deploy(ctx, id, def, image); err != nil {
		return "", err
	}
	ep, err := m.target.Endpoint(ctx, id)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(log, "*** alpha: %s answers at %s\n", id, ep)
	return ep, nil
}

// Destroy removes a deployment (the run's alpha).
func (m *Manager) Destroy(ctx context.Context, id string) error { return m.target.Destroy(ctx, id) }

// Record stores a release.
func (m *Manager) Record(ctx context.Context, r Release) error { return m.store.Put(ctx, r) }

// RefusedError is a promotion or rollback the rules forbid.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

// Promote deploys release version of app to env. The release must have
// passed its tests, env must be one of its environments (not alpha), and
// the environment before env in the order must have run it.
func (m *Manager) Promote(ctx context.Context, app, version, env, by string, log io.Writer) error {
	r, err := m.store.Get(ctx, app, version)
	if err != nil {
		return err
	}
	if !r.Passed {
		return &RefusedError{fmt.Sprintf("release %s of %s failed its tests: it is never promoted", version, app)}
	}
	i := slices.Index(r.Environments, env)
	if i < 0 || env == "alpha" {
		return &RefusedError{fmt.Sprintf("%s is not an environment of %s to promote to (%v)", env, app, r.Environments)}
	}
	approvedBy := r.approval(env)
	if slices.Contains(r.NeedsApproval, env) && approvedBy == "" {
		return &RefusedError{fmt.Sprintf("release %s of %s needs an approval for %s by a user other than its committer (%s): POST /api/v1/releases/approve first",
			version, app, env, r.Committer)}
	}
	if i > 0 && r.Environments[i-1] != "alpha" {
		prev, err := m.store.Environment(ctx, r.Environments[i-1], app)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(prev.History, func(d Deployment) bool { return d.Version == version }) {
			return &RefusedError{fmt.Sprintf("release %s of %s has not been in %s yet: promote it there first", version, app, r.Environments[i-1])}
		}
	}
	return m.deploy(ctx, r, env, Deployment{By: by, ApprovedBy: approvedBy}, log)
}

// ForbiddenError is an approval by a user who may not give it (403).
type ForbiddenError struct{ Msg string }

func (e *ForbiddenError) Error() string { return e.Msg }

// IsForbidden reports whether err is a ForbiddenError.
func IsForbidden(err error) bool {
	var fe *ForbiddenError
	return errors.As(err, &fe)
}

// Approve records by's approval of release version of app for env, which
// must need one. The committer never approves their own release: the
// point is a second pair of eyes.
func (m *Manager) Approve(ctx context.Context, app, version, env, by string) (Release, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.store.Get(ctx, app, version)
	if err != nil {
		return Release{}, err
	}
	switch {
	case !slices.Contains(r.NeedsApproval, env):
		return Release{}, &RefusedError{fmt.Sprintf("release %s of %s needs no approval for %s (environments needing one: %v)", version, app, env, r.NeedsApproval)}
	case !r.Passed:
		return Release{}, &RefusedError{fmt.Sprintf("release %s of %s failed its tests: it is never promoted", version, app)}
	case IsCommitter(r.Committer, by):
		return Release{}, &ForbiddenError{fmt.Sprintf("%s committed release %s of %s and cannot approve it: another user must", by, version, app)}
	case r.approval(env) != "":
		return Release{}, &RefusedError{fmt.Sprintf("release %s of %s is already approved for %s by %s", version, app, env, r.approval(env))}
	}
	r.Approvals = append(r.Approvals, Approval{Environment: env, By: by, At: time.Now().UTC()})
	if err := m.store.Put(ctx, r); err != nil {
		return Release{}, err
	}
	return r, nil
}

// IsCommitter reports whether user is the committer ("Name <email>"): the
// same name, e-mail address or its local part, ignoring case. An empty
// user is taken to be anyone, the committer too.
func IsCommitter(committer, user string) bool {
	user = strings.TrimSpace(user)
	if user == "" {
		return true
	}
	name, email, _ := strings.Cut(committer, "<")
	name, email = strings.TrimSpace(name), strings.TrimSuffix(strings.TrimSpace(email), ">")
	local, _, _ := strings.Cut(email, "@")
	for _, c := range []string{committer, name, email, local} {
		if c != "" && strings.EqualFold(c, user) {
			return true
		}
	}
	return false
}

// Rollback deploys to env the release it ran before its current one, or
// version when given (any release env ran before).
func (m *Manager) Rollback(ctx context.Context, app, env, version, by string, log io.Writer) (string, error) {
	e, err := m.store.Environment(ctx, env, app)
	if err != nil {
		return "", err
	}
	if version == "" {
		for i := len(e.History) - 1; i >= 0; i-- {
			if v := e.History[i].Version; v != e.Current {
				version = v
				break
			}
		}
		if version == "" {
			return "", &RefusedError{fmt.Sprintf("%s has run no earlier release of %s", env, app)}
		}
	} else if !slices.ContainsFunc(e.History, func(d Deployment) bool { return d.Version == version }) {
		return "", &RefusedError{fmt.Sprintf("%s never ran release %s of %s", env, version, app)}
	}
	r, err := m.store.Get(ctx, app, version)
	if err != nil {
		return "", err
	}
	return version, m.deploy(ctx, r, env, Deployment{By: by, Rollback: true}, log)
}

func (m *Manager) deploy(ctx context.Context, r Release, env string, d Deployment, log io.Writer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := AppID(env, r.App)
	fmt.Fprintf(log, "*** %s: deploying %s as %s\n", env, r.Image, id)
	if err := m.target.Deploy(ctx, id, r.Definition, r.Image); err != nil {
		return err
	}
	d.Version, d.At = r.Version, time.Now().UTC()
	return m.store.recordDeployment(context.WithoutCancel(ctx), env, r.App, d)
}

// IsRefused reports whether err is a refusal by the rules (422), not a
// failure.
func IsRefused(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}
