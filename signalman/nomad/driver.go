package nomad

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/nomad/api"
)

// Errors the driver returns wrapped, for errors.Is.
var (
	// ErrNotFound: Nomad has no job for the app.
	ErrNotFound = errors.New("no Nomad job for the app")
	// ErrNotOurs: a job with the app's id exists but garrison did not
	// submit it (no garrison_app_id meta naming the app); garrison never
	// overwrites, scales or stops it.
	ErrNotOurs = errors.New("the Nomad job was not submitted by garrison for this app")
	// ErrDeploymentActive: Nomad refuses to scale while a deployment of the
	// job runs (Marathon's "app is locked by a deployment", a 409).
	ErrDeploymentActive = errors.New("a deployment of the app is in progress")
	// ErrConflict: the job changed between read and write (check-and-set).
	ErrConflict = errors.New("the Nomad job changed concurrently")
)

// Driver runs garrison apps as Nomad jobs. Its methods are safe for
// concurrent use. Every call goes to Nomad: when Nomad does not answer, it
// returns the error and changes nothing.
type Driver struct {
	c   *api.Client
	ns  string
	log *slog.Logger
	mhz int // MHz per Marathon cpu; 0 until read from a node
	// guard is checked between reading a job and changing it (WithGuard).
	guard func(context.Context) error

	mu sync.Mutex
	// versions maps jobID -> Nomad job version -> garrison app version.
	// A job version's meta never changes, so entries never go stale.
	versions map[string]map[uint64]string
}

// Option changes a Driver's defaults.
type Option func(*Driver)

// WithCPUMHz fixes the MHz one Marathon cpu stands for. Without it the
// driver reads cpu.frequency from the first ready node's fingerprint; in a
// fleet of mixed CPUs, fix one reference figure.
func WithCPUMHz(mhz int) Option { return func(d *Driver) { d.mhz = mhz } }

// WithNamespace sets the Nomad namespace the driver's jobs live in
// (default: the client's, NOMAD_NAMESPACE, else "default"). Garrisons that
// share a Nomad keep apart by namespace.
func WithNamespace(ns string) Option { return func(d *Driver) { d.ns = ns } }

// WithGuard makes Submit and Scale call guard between reading the job's
// modify index and writing with that index enforced, on every try; an
// error from guard stops the change. A leader passes its term's check
// (headquarter/store's Guard): paused after a check that passed, it cannot
// overwrite what a next leader changed meanwhile, because Nomad refuses a
// write whose index moved since a read made while the term still held.
// (Checked before the read, as a caller can, the window stays open: the
// index read on resume is the next leader's.)
func WithGuard(guard func(context.Context) error) Option {
	return func(d *Driver) { d.guard = guard }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(d *Driver) { d.log = l } }

// New returns a driver over c. It does not talk to Nomad.
func New(c *api.Client, opts ...Option) (*Driver, error) {
	if c == nil {
		return nil, errors.New("nomad driver: nil Nomad client")
	}
	d := &Driver{c: c, log: slog.Default(), versions: map[string]map[uint64]string{},
		guard: func(context.Context) error { return nil }}
	for _, o := range opts {
		o(d)
	}
	if d.mhz < 0 {
		return nil, fmt.Errorf("nomad driver: cpu MHz %d below 0", d.mhz)
	}
	return d, nil
}

func (d *Driver) q(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{Namespace: d.ns}).WithContext(ctx)
}

func (d *Driver) w(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{Namespace: d.ns}).WithContext(ctx)
}

// statusCode is the HTTP status of a Nomad API error, 0 for others (Nomad
// unreachable, say).
func statusCode(err error) int {
	var e api.UnexpectedResponseError
	if errors.As(err, &e) {
		return e.StatusCode()
	}
	return 0
}

// cpuMHz is the MHz per Marathon cpu: fixed, or the first ready node's
// cpu.frequency fingerprint, read once.
func (d *Driver) cpuMHz(ctx context.Context) (int, error) {
	d.mu.Lock()
	mhz := d.mhz
	d.mu.Unlock()
	if mhz > 0 {
		return mhz, nil
	}
	nodes, _, err := d.c.Nodes().List(d.q(ctx))
	if err != nil {
		return 0, fmt.Errorf("nomad: list nodes for the CPU frequency: %w", err)
	}
	for _, n := range nodes {
		if n.Status != api.NodeStatusReady {
			continue
		}
		node, _, err := d.c.Nodes().Info(n.ID, d.q(ctx))
		if err != nil {
			return 0, fmt.Errorf("nomad: node %s: %w", n.ID, err)
		}
		f, err := strconv.Atoi(node.Attributes["cpu.frequency"])
		if err != nil || f <= 0 {
			continue
		}
		d.mu.Lock()
		d.mhz = f
		d.mu.Unlock()
		return f, nil
	}
	return 0, errors.New("nomad: no ready node reports cpu.frequency: set the MHz per cpu (WithCPUMHz)")
}

// Submitted is Nomad's answer to a submit.
type Submitted struct {
	JobID string
	// EvalID is the evaluation the change started; empty when the spec
	// was identical and Nomad had nothing to do.
	EvalID   string
	Warnings string
}

// Submit creates the app's job or updates it to a: count, spec and all.
// An identical spec makes no new job version and moves no allocation,
// which is what adopting a running job after a restart relies on. A job
// of the same id that garrison did not submit is refused (ErrNotOurs).
// A spec change rolls out through the job's update block. Constraints
// without a Nomad form are a *ConstraintError.
func (d *Driver) Submit(ctx context.Context, a App) (Submitted, error) {
	mhz, err := d.cpuMHz(ctx)
	if err != nil {
		return Submitted{}, err
	}
	job, err := toJob(a, mhz)
	if err != nil {
		return Submitted{}, fmt.Errorf("nomad: %w", err)
	}
	id := *job.ID
	// Check-and-set against concurrent writers (a Scale, another
	// garrison, a next leader): retry a few times on a changed index, each
	// try guarded after its read.
	for attempt := 0; ; attempt++ {
		cur, err := d.job(ctx, a.Task.AppID)
		var index uint64
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return Submitted{}, err
		default:
			index = *cur.JobModifyIndex
		}
		if err := d.guard(ctx); err != nil {
			return Submitted{}, fmt.Errorf("nomad: submit job %s: %w", id, err)
		}
		resp, _, err := d.c.Jobs().RegisterOpts(job, &api.RegisterOptions{EnforceIndex: true, ModifyIndex: index}, d.w(ctx))
		if isIndexConflict(err) {
			if attempt < 3 {
				continue
			}
			return Submitted{}, fmt.Errorf("nomad: submit job %s: %w: %v", id, ErrConflict, err)
		}
		if err != nil {
			return Submitted{}, fmt.Errorf("nomad: submit job %s: %w", id, err)
		}
		return Submitted{JobID: id, EvalID: resp.EvalID, Warnings: resp.Warnings}, nil
	}
}

// job reads the app's job, checking that it is garrison's.
func (d *Driver) job(ctx context.Context, appID string) (*api.Job, error) {
	id := JobID(appID)
	job, _, err := d.c.Jobs().Info(id, d.q(ctx))
	if statusCode(err) == http.StatusNotFound {
		return nil, fmt.Errorf("nomad: job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("nomad: read job %s: %w", id, err)
	}
	if job.Meta[MetaAppID] != appID {
		return nil, fmt.Errorf("nomad: job %s: %w", id, ErrNotOurs)
	}
	return job, nil
}

// isIndexConflict tells Nomad's refusal of a write whose enforced job
// modify index moved (a 500, for register and scale alike).
func isIndexConflict(err error) bool {
	return err != nil && strings.Contains(err.Error(), api.RegisterEnforceIndexErrPrefix)
}

// Scale sets the app's instance count through Nomad's scale endpoint,
// leaving the spec alone, with the job's modify index enforced as Submit
// does. While a deployment of the job runs Nomad refuses
// (ErrDeploymentActive); with force the deployment is failed first, as
// Marathon's force=true cancels one.
func (d *Driver) Scale(ctx context.Context, appID string, count int, force bool) error {
	if count < 0 {
		return fmt.Errorf("nomad: scale %s to %d: below 0", appID, count)
	}
	id := JobID(appID)
	failed := false // the deployment in the way, with force
	for conflicts := 0; ; {
		job, err := d.job(ctx, appID)
		if err != nil {
			return err
		}
		if err := d.guard(ctx); err != nil {
			return fmt.Errorf("nomad: scale job %s to %d: %w", id, count, err)
		}
		_, _, err = d.c.Jobs().ScaleWithRequest(id, &api.ScalingRequest{
			Count:   new(int64(count)),
			Target:  map[string]string{"Job": id, "Group": groupName},
			Message: "garrison: scale to " + strconv.Itoa(count),
			// Nomad ignores 0: a job always has a modify index above it.
			JobModifyIndex: *job.JobModifyIndex,
		}, d.w(ctx))
		if err == nil {
			return nil
		}
		if isIndexConflict(err) {
			if conflicts++; conflicts <= 3 {
				continue
			}
			return fmt.Errorf("nomad: scale job %s to %d: %w: %v", id, count, ErrConflict, err)
		}
		if statusCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "active deployment") {
			return fmt.Errorf("nomad: scale job %s to %d: %w", id, count, err)
		}
		if !force || failed {
			return fmt.Errorf("nomad: scale job %s to %d: %w", id, count, ErrDeploymentActive)
		}
		failed = true
		dep, _, err := d.c.Jobs().LatestDeployment(id, d.q(ctx))
		if err != nil {
			return fmt.Errorf("nomad: scale job %s: read its deployment: %w", id, err)
		}
		if dep != nil {
			if _, _, err := d.c.Deployments().Fail(dep.ID, d.w(ctx)); err != nil {
				return fmt.Errorf("nomad: scale job %s: fail deployment %s: %w", id, dep.ID, err)
			}
		}
	}
}

// Stop stops the app's job: Nomad stops its allocations and keeps the job
// (stopped) until its garbage collection, so its history stays visible.
// Stopping an app that has no job is not an error.
func (d *Driver) Stop(ctx context.Context, appID string) error {
	if _, err := d.job(ctx, appID); errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	id := JobID(appID)
	if _, _, err := d.c.Jobs().Deregister(id, false, d.w(ctx)); err != nil {
		return fmt.Errorf("nomad: stop job %s: %w", id, err)
	}
	return nil
}

// JobStatus is what Nomad runs for one app.
type JobStatus struct {
	AppID string
	JobID string
	// Version is the garrison app version the job's spec carries.
	Version string
	// Instances is the group's count, as Nomad holds it (a Scale changes
	// it without a new app version).
	Instances int
	// Stopped is true once the job was stopped (Stop).
	Stopped bool
	// Status is Nomad's: pending, running or dead.
	Status     string
	JobVersion uint64
}

// Jobs lists the garrison apps Nomad runs in the driver's namespace: what a
// restarted garrison adopts. Jobs without garrison's meta are left out.
// When Nomad does not answer it returns the error, never an empty list.
func (d *Driver) Jobs(ctx context.Context) ([]JobStatus, error) {
	stubs, _, err := d.c.Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}}, d.q(ctx))
	if err != nil {
		return nil, fmt.Errorf("nomad: list jobs: %w", err)
	}
	var out []JobStatus
	for _, s := range stubs {
		appID := s.Meta[MetaAppID]
		if appID == "" || JobID(appID) != s.ID {
			continue
		}
		// The list stub has no group count nor job version.
		job, err := d.job(ctx, appID)
		if errors.Is(err, ErrNotFound) {
			continue // purged since the list
		}
		if err != nil {
			return nil, err
		}
		js := JobStatus{AppID: appID, JobID: s.ID, Version: job.Meta[MetaVersion], Stopped: s.Stop, Status: s.Status}
		if job.Version != nil {
			js.JobVersion = *job.Version
		}
		if len(job.TaskGroups) > 0 && job.TaskGroups[0].Count != nil {
			js.Instances = *job.TaskGroups[0].Count
		}
		out = append(out, js)
	}
	return out, nil
}

// KillTask stops one allocation. Nomad places a replacement, as Marathon
// does for a kill without scale.
func (d *Driver) KillTask(ctx context.Context, taskID string) error {
	i := strings.LastIndex(taskID, ".")
	if i <= 0 {
		return fmt.Errorf("nomad: task id %q is not <job>.<alloc>", taskID)
	}
	alloc := &api.Allocation{ID: taskID[i+1:], Namespace: d.ns}
	if _, err := d.c.Allocations().Stop(alloc, d.q(ctx)); err != nil {
		return fmt.Errorf("nomad: stop allocation of task %s: %w", taskID, err)
	}
	return nil
}

// Queued is what Nomad could not place for an app (Marathon's /v2/queue).
type Queued struct {
	// Count is the number of instances waiting for a place.
	Count int
	// ConstraintFiltered counts the nodes each constraint turned away, and
	// DimensionExhausted the nodes short of each resource, as Nomad's last
	// failed placement reports them.
	ConstraintFiltered map[string]int
	DimensionExhausted map[string]int
}

// Queue reports the app's instances Nomad could not place, and why.
func (d *Driver) Queue(ctx context.Context, appID string) (Queued, error) {
	if _, err := d.job(ctx, appID); err != nil {
		return Queued{}, err
	}
	id := JobID(appID)
	sum, _, err := d.c.Jobs().Summary(id, d.q(ctx))
	if err != nil {
		return Queued{}, fmt.Errorf("nomad: summary of job %s: %w", id, err)
	}
	var q Queued
	if tg, ok := sum.Summary[groupName]; ok {
		q.Count = tg.Queued
	}
	if q.Count == 0 {
		return q, nil
	}
	evals, _, err := d.c.Jobs().Evaluations(id, d.q(ctx))
	if err != nil {
		return Queued{}, fmt.Errorf("nomad: evaluations of job %s: %w", id, err)
	}
	// The newest evaluation that failed to place says why.
	var newest *api.Evaluation
	for _, e := range evals {
		if m := e.FailedTGAllocs[groupName]; m != nil && (newest == nil || e.ModifyIndex > newest.ModifyIndex) {
			newest = e
		}
	}
	if newest != nil {
		m := newest.FailedTGAllocs[groupName]
		q.ConstraintFiltered, q.DimensionExhausted = m.ConstraintFiltered, m.DimensionExhausted
	}
	return q, nil
}

// Rollout is Nomad's latest deployment of an app's job: the progress and
// outcome of a rolling update (Marathon's /v2/deployments).
type Rollout struct {
	ID          string
	JobVersion  uint64
	Status      string // running, paused, successful, failed, cancelled...
	Description string
	// Active is true while Nomad still works on it; Scale is refused then.
	Active                              bool
	Desired, Placed, Healthy, Unhealthy int
	// Canaries is the number of instances started over capacity first
	// (maximumOverCapacity); Promoted says they were promoted.
	Canaries int
	Promoted bool
}

// Deployment returns the app's latest deployment; false when it has none.
func (d *Driver) Deployment(ctx context.Context, appID string) (Rollout, bool, error) {
	if _, err := d.job(ctx, appID); err != nil {
		return Rollout{}, false, err
	}
	id := JobID(appID)
	dep, _, err := d.c.Jobs().LatestDeployment(id, d.q(ctx))
	if err != nil {
		return Rollout{}, false, fmt.Errorf("nomad: deployment of job %s: %w", id, err)
	}
	if dep == nil {
		return Rollout{}, false, nil
	}
	r := Rollout{ID: dep.ID, JobVersion: dep.JobVersion, Status: dep.Status, Description: dep.StatusDescription,
		Active: dep.Status != api.DeploymentStatusSuccessful && dep.Status != api.DeploymentStatusFailed &&
			dep.Status != api.DeploymentStatusCancelled}
	if st := dep.TaskGroups[groupName]; st != nil {
		r.Desired, r.Placed, r.Healthy, r.Unhealthy = st.DesiredTotal, st.PlacedAllocs, st.HealthyAllocs, st.UnhealthyAllocs
		r.Canaries, r.Promoted = st.DesiredCanaries, st.Promoted
	}
	return r, true, nil
}

// Reschedule asks Nomad to replace the app's failed allocations now. Nomad
// does not reschedule an allocation that failed while its deployment ran
// (the deployment fails instead, and the instance stays down), where
// Marathon would replace it: the caller calls this on seeing a failed
// deployment with failed tasks.
func (d *Driver) Reschedule(ctx context.Context, appID string) error {
	if _, err := d.job(ctx, appID); err != nil {
		return err
	}
	id := JobID(appID)
	if _, _, err := d.c.Jobs().EvaluateWithOpts(id, api.EvalOptions{ForceReschedule: true}, d.w(ctx)); err != nil {
		return fmt.Errorf("nomad: reschedule failed allocations of job %s: %w", id, err)
	}
	return nil
}

// Validate says whether the app translates into a Nomad job, without asking
// Nomad: a constraint without a Nomad form is a *ConstraintError, so the
// API can refuse it before the app is stored.
func (d *Driver) Validate(a App) error {
	if _, err := toJob(a, 1000); err != nil {
		return fmt.Errorf("nomad: %w", err)
	}
	return nil
}
