package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/store"
)

// Marathon's deployment action names.
const (
	ActionStart   = "StartApplication"
	ActionStop    = "StopApplication"
	ActionScale   = "ScaleApplication"
	ActionRestart = "RestartApplication"
)

// deploymentRecord is a running deployment as stored: Marathon's plan plus
// what a rollback needs.
type deploymentRecord struct {
	ID        string                     `json:"id"`
	Version   string                     `json:"version"`
	Actions   []Action                   `json:"actions"`
	Originals map[string]json.RawMessage `json:"originals,omitempty"`
	StartedAt time.Time                  `json:"startedAt"`
	// Source says who started it ("api", "autoscaler", "rollback").
	Source string `json:"source,omitempty"`
}

// Action is one step action of a deployment plan.
type Action struct {
	Action string `json:"action"`
	App    string `json:"app"`
}

// Deployment is a running deployment in Marathon's /v2/deployments shape.
type Deployment struct {
	ID             string           `json:"id"`
	Version        string           `json:"version"`
	AffectedApps   []string         `json:"affectedApps"`
	AffectedPods   []string         `json:"affectedPods"`
	Steps          []DeploymentStep `json:"steps"`
	CurrentActions []CurrentAction  `json:"currentActions"`
	CurrentStep    int              `json:"currentStep"`
	TotalSteps     int              `json:"totalSteps"`
}

// DeploymentStep is one step of a plan.
type DeploymentStep struct {
	Actions []Action `json:"actions"`
}

// CurrentAction is an action in progress.
type CurrentAction struct {
	Action                string `json:"action"`
	App                   string `json:"app"`
	ReadinessCheckResults []any  `json:"readinessCheckResults"`
}

func (d *deploymentRecord) view() Deployment {
	out := Deployment{ID: d.ID, Version: d.Version, AffectedApps: []string{}, AffectedPods: []string{},
		Steps: []DeploymentStep{}, CurrentActions: []CurrentAction{}, CurrentStep: 1, TotalSteps: 1}
	for _, a := range d.Actions {
		if !slices.Contains(out.AffectedApps, a.App) {
			out.AffectedApps = append(out.AffectedApps, a.App)
		}
		out.CurrentActions = append(out.CurrentActions, CurrentAction{Action: a.Action, App: a.App, ReadinessCheckResults: []any{}})
	}
	if len(d.Actions) > 0 {
		out.Steps = []DeploymentStep{{Actions: d.Actions}}
	} else {
		out.CurrentStep, out.TotalSteps = 0, 0
	}
	return out
}

func (d *deploymentRecord) touches(appID string) bool {
	return slices.ContainsFunc(d.Actions, func(a Action) bool { return a.App == appID })
}

// LockedError is Marathon's 409: another deployment holds one of the apps.
type LockedError struct{ Deployments []string }

func (e *LockedError) Error() string {
	id := ""
	if len(e.Deployments) > 0 {
		id = e.Deployments[0]
	}
	return fmt.Sprintf("App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/%s'.", id)
}

// NotFoundError is Marathon's 404 for an app, task or deployment.
type NotFoundError struct{ Message string }

func (e *NotFoundError) Error() string { return e.Message }

// ExistsError is Marathon's 409 for creating an app that exists.
type ExistsError struct{ AppID string }

func (e *ExistsError) Error() string {
	return fmt.Sprintf("An app with id [%s] already exists.", e.AppID)
}

// Change is one app change of a deployment.
type Change struct {
	// App is the new definition, normalized and validated; nil deletes.
	App *app.App
	// Delete names the app to delete.
	Delete string
	// Create fails with ExistsError when the app exists (POST).
	Create bool
	// Restart forces a rolling restart even if the configuration is the same.
	Restart bool
	// Kill names tasks of the app to kill as part of the change (a scale
	// down that chooses its victims); they are marked in the same critical
	// section as the new count, so no reconcile pass picks others.
	Kill []string
	// Expect is the revision of the app the change was built from (see
	// AppRevision); the change fails with a conflict when the app changed
	// since, so a change built from a stale read never reverts a newer
	// one. 0: no check.
	Expect int64
}

// MaxChanges bounds the apps of one deployment: they are written in one
// etcd transaction, and etcd limits a transaction to 128 operations by
// default (each app takes two).
const MaxChanges = 60

// TooManyChangesError refuses a deployment of more than MaxChanges apps.
type TooManyChangesError struct{ Count int }

func (e *TooManyChangesError) Error() string {
	return fmt.Sprintf("%d apps in one request: at most %d can change in one deployment; send them in several requests", e.Count, MaxChanges)
}

// DeployResult is what a deployment-creating call returns.
type DeployResult struct {
	DeploymentID string
	Version      string
	// Apps are the stored definitions after the change (nil entries for
	// deleted apps), in the order of the changes.
	Apps    []*app.App
	Created []bool
	// killing are the tasks of Change.Kill marked for killing.
	killing []*taskState
}

// Deploy stores the changes and starts one deployment for them, as one etcd
// transaction. Apps locked by other deployments make it fail with a
// LockedError unless force, which cancels those deployments.
func (s *Scheduler) Deploy(ctx context.Context, changes []Change, force bool, source string) (*DeployResult, error) {
	if len(changes) > MaxChanges {
		return nil, &TooManyChangesError{Count: len(changes)}
	}
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("garrison is starting: the scheduler has not loaded its state yet: %w", ctx.Err())
	}
	// Deploys run one at a time, so the revisions a plan reads stay the
	// ones its commit compares against; the scheduler's lock is not held
	// during the etcd transaction, so reads, reconcile passes and health
	// callbacks go on while etcd is slow.
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	res, err := s.deploy(ctx, changes, force, source)
	if err == nil && s.cfg.Cluster != nil {
		s.applyCluster(ctx, res)
	}
	return res, err
}

// deploy is Deploy with deployMu held.
func (s *Scheduler) deploy(ctx context.Context, changes []Change, force bool, source string) (*DeployResult, error) {
	s.mu.Lock()
	p, err := s.planDeployLocked(changes, force, source)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	rev, err := s.commit(ctx, p.change, p.rec.ID)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("the app was changed by another request at the same time; read it again and retry: %w", err)
		}
		return nil, err
	}
	// Committed: from here on memory follows the store.
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, change, res, next, conflicts := p.rec, p.change, p.res, p.next, p.conflicts
	for _, id := range conflicts {
		s.publishDeployment(events.TypeDeploymentFailed, s.deployments[id], "cancelled by a forced deployment "+rec.ID)
		delete(s.deployments, id)
	}
	for _, c := range changes {
		if c.App == nil {
			delete(s.apps, c.Delete)
		}
	}
	for _, w := range change.PutApps {
		as := s.apps[w.ID]
		if as == nil {
			as = &appState{}
			s.apps[w.ID] = as
		}
		prevConfig := ""
		if as.app != nil {
			prevConfig = configVersion(as.app)
		}
		as.app = next[w.ID]
		as.revision = rev
		if prevConfig != configVersion(as.app) {
			// Marathon resets the backoff when a new configuration rolls out.
			as.failures, as.delayUntil = 0, time.Time{}
		}
	}
	for _, c := range changes {
		for _, id := range c.Kill {
			if t, ok := s.tasks[id]; ok && s.markKillLocked(t) {
				res.killing = append(res.killing, t)
			}
		}
	}
	s.deployments[rec.ID] = rec
	s.publishDeployment(events.TypeDeploymentInfo, rec, "")
	res.DeploymentID, res.Version = rec.ID, rec.Version
	s.poke()
	return res, nil
}

// deployPlan is a deployment built under the lock, to commit outside it.
type deployPlan struct {
	rec       *deploymentRecord
	change    store.Change
	res       *DeployResult
	next      map[string]*app.App
	conflicts []string
}

// planDeployLocked builds the store change and deployment for changes.
func (s *Scheduler) planDeployLocked(changes []Change, force bool, source string) (*deployPlan, error) {
	now := s.cfg.Now()
	rec := &deploymentRecord{ID: newUUID(), Originals: map[string]json.RawMessage{}, StartedAt: now, Source: source}
	var change store.Change
	res := &DeployResult{}
	next := map[string]*app.App{}
	for _, c := range changes {
		id := c.Delete
		if c.App != nil {
			id = c.App.ID
		}
		cur := s.apps[id]
		if c.Expect != 0 && (cur == nil || cur.revision != c.Expect) {
			return nil, fmt.Errorf("%s changed since the change was built from it: %w", id, store.ErrConflict)
		}
		if cur != nil {
			data, err := json.Marshal(cur.app)
			if err != nil {
				return nil, fmt.Errorf("encode %s: %w", id, err)
			}
			rec.Originals[id] = data
		}
		switch {
		case c.App == nil:
			if cur == nil {
				return nil, &NotFoundError{fmt.Sprintf("App '%s' does not exist", id)}
			}
			rec.Actions = append(rec.Actions, Action{Action: ActionStop, App: id})
			change.DeleteApps = append(change.DeleteApps, store.Expect{ID: id, Expect: cur.revision})
			res.Apps = append(res.Apps, nil)
			res.Created = append(res.Created, false)
			continue
		case cur == nil:
			if err := s.runnableLocked(c.App); err != nil {
				return nil, err
			}
			a, err := app.AssignServicePorts(app.Bump(nil, c.App, now, false), s.usedServicePortsLocked(id))
			if err != nil {
				return nil, err
			}
			next[id] = a
			rec.Actions = append(rec.Actions, Action{Action: ActionStart, App: id})
			res.Created = append(res.Created, true)
		default:
			if c.Create {
				return nil, &ExistsError{AppID: id}
			}
			if err := s.runnableLocked(c.App); err != nil {
				return nil, err
			}
			restart := c.Restart || app.IsUpgrade(cur.app, c.App)
			a, err := app.AssignServicePorts(app.Bump(cur.app, c.App, now, restart), s.usedServicePortsLocked(id))
			if err != nil {
				return nil, err
			}
			next[id] = a
			action := ActionScale
			if restart {
				action = ActionRestart
			}
			rec.Actions = append(rec.Actions, Action{Action: action, App: id})
			res.Created = append(res.Created, false)
		}
		data, err := json.Marshal(next[id])
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", id, err)
		}
		expect := int64(0)
		if cur != nil {
			expect = cur.revision
		}
		change.PutApps = append(change.PutApps, store.AppWrite{ID: id, Version: app.FormatVersion(next[id].Version), Data: data, Expect: expect})
		res.Apps = append(res.Apps, next[id])
	}
	rec.Version = app.FormatVersion(app.NewVersion(now))
	if len(next) > 0 {
		for _, a := range next {
			rec.Version = app.FormatVersion(a.Version)
			break
		}
	}

	var conflicts []string
	for _, d := range s.deployments {
		for _, a := range rec.Actions {
			if d.touches(a.App) {
				conflicts = append(conflicts, d.ID)
				break
			}
		}
	}
	slices.Sort(conflicts)
	if len(conflicts) > 0 && !force {
		return nil, &LockedError{Deployments: conflicts}
	}
	change.DeleteDeployments = conflicts
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode deployment: %w", err)
	}
	change.PutDeployments = []store.Record{{Key: rec.ID, Data: data}}
	return &deployPlan{rec: rec, change: change, res: res, next: next, conflicts: conflicts}, nil
}

// commit writes a deployment's change with a bounded context that the
// caller going away does not cut short. When the outcome is unknown (the
// connection failed after sending), the deployment record written in the
// same transaction tells whether it was committed, so memory follows what
// etcd holds.
func (s *Scheduler) commit(ctx context.Context, change store.Change, deploymentID string) (int64, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StoreTimeout)
	defer cancel()
	rev, err := s.cfg.Store.CommitAt(cctx, change)
	if err == nil || errors.Is(err, store.ErrConflict) {
		return rev, err
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StoreTimeout)
	defer rcancel()
	rec, rerr := s.cfg.Store.Deployment(rctx, deploymentID)
	switch {
	case rerr != nil:
		return 0, fmt.Errorf("%w (whether it was committed is unknown: %w)", err, rerr)
	case rec.Revision == 0:
		return 0, err
	}
	s.log.Warn("a commit reported an error but was applied", "deployment", deploymentID, "error", err)
	return rec.Revision, nil
}

func (s *Scheduler) usedServicePortsLocked(except string) map[int]bool {
	used := map[int]bool{}
	for id, as := range s.apps {
		if id == except {
			continue
		}
		for _, pd := range as.app.PortDefinitions {
			if pd.Port != 0 {
				used[pd.Port] = true
			}
		}
	}
	return used
}

// restartingLocked: a rolling restart of the app is under way.
func (s *Scheduler) restartingLocked(appID string) bool {
	for _, d := range s.deployments {
		for _, a := range d.Actions {
			if a.App == appID && a.Action == ActionRestart {
				return true
			}
		}
	}
	return false
}

// finishedDeploymentsLocked lists deployments whose every action is done.
func (s *Scheduler) finishedDeploymentsLocked() []*deploymentRecord {
	var out []*deploymentRecord
	for _, d := range s.deployments {
		done := true
		for _, a := range d.Actions {
			if !s.actionDoneLocked(a, s.byApp[a.App]) {
				done = false
				break
			}
		}
		if done {
			out = append(out, d)
		}
	}
	return out
}

func (s *Scheduler) actionDoneLocked(a Action, tasks map[string]*taskState) bool {
	if s.cfg.Cluster != nil {
		return s.clusterActionDoneLocked(a, tasks)
	}
	as := s.apps[a.App]
	if a.Action == ActionStop || as == nil {
		return as == nil && len(tasks) == 0
	}
	cfg := configVersion(as.app)
	n := 0
	for _, t := range tasks {
		if t.killing || t.launching {
			return false
		}
		if a.Action == ActionRestart && t.record.ConfigVersion != cfg {
			return false
		}
		if !s.servingLocked(as.app, t) {
			return false
		}
		n++
	}
	return n == as.app.Instances
}

// completeDeployment removes a finished deployment from the store.
func (s *Scheduler) completeDeployment(ctx context.Context, d *deploymentRecord) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	if err := s.cfg.Store.Commit(ctx, store.Change{DeleteDeployments: []string{d.ID}}); err != nil {
		s.log.Warn("finish deployment", "deployment", d.ID, "error", err)
		return
	}
	s.mu.Lock()
	_, still := s.deployments[d.ID]
	delete(s.deployments, d.ID)
	s.mu.Unlock()
	if !still {
		return
	}
	s.log.Info("deployment finished", "deployment", d.ID, "took", s.cfg.Now().Sub(d.StartedAt).Round(time.Millisecond))
	s.publishDeployment(events.TypeDeploymentStepSuccess, d, "")
	s.publishDeployment(events.TypeDeploymentSuccess, d, "")
	for _, a := range d.Actions {
		if a.Action == ActionStop {
			s.publish(events.AppTerminated{AppID: a.App})
		}
	}
}

// CancelDeployment stops a deployment. With force it is only removed and
// the apps stay as they are (possibly a mix of versions); without, a new
// deployment rolls the apps back to where they were before it, and its id
// is returned.
func (s *Scheduler) CancelDeployment(ctx context.Context, id string, force bool) (*DeployResult, error) {
	s.mu.Lock()
	d, ok := s.deployments[id]
	s.mu.Unlock()
	if !ok {
		return nil, &NotFoundError{fmt.Sprintf("DeploymentPlan %s does not exist", id)}
	}
	if force {
		s.deployMu.Lock()
		defer s.deployMu.Unlock()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StoreTimeout)
		defer cancel()
		if err := s.cfg.Store.Commit(cctx, store.Change{DeleteDeployments: []string{id}}); err != nil {
			return nil, err
		}
		s.mu.Lock()
		delete(s.deployments, id)
		s.mu.Unlock()
		s.publishDeployment(events.TypeDeploymentFailed, d, "cancelled")
		s.poke()
		return nil, nil
	}
	var changes []Change
	for _, a := range d.Actions {
		original, had := d.Originals[a.App]
		if !had {
			changes = append(changes, Change{Delete: a.App})
			continue
		}
		prev, err := app.Decode(original)
		if err != nil {
			return nil, fmt.Errorf("stored original of %s: %w", a.App, err)
		}
		changes = append(changes, Change{App: app.Normalize(prev)})
	}
	// The rollback replaces the cancelled deployment (force), as Marathon's.
	return s.Deploy(ctx, changes, true, "rollback")
}

// KillTasks kills the given tasks. With scale the apps' instance counts go
// down by the number killed (a scale deployment); without, the tasks are
// replaced.
func (s *Scheduler) KillTasks(ctx context.Context, ids []string, scale, force bool) ([]TaskInfo, *DeployResult, error) {
	if s.cfg.Cluster != nil {
		return s.killClusterTasks(ctx, ids, scale, force)
	}
	s.mu.Lock()
	var victims []*taskState
	perApp := map[string][]string{}
	for _, id := range ids {
		t, ok := s.tasks[id]
		if !ok {
			continue
		}
		victims = append(victims, t)
		perApp[t.record.AppID] = append(perApp[t.record.AppID], id)
	}
	infos := make([]TaskInfo, 0, len(victims))
	for _, t := range victims {
		infos = append(infos, s.taskInfoLocked(t))
	}
	var changes []Change
	if scale {
		for appID, kill := range perApp {
			as := s.apps[appID]
			if as == nil {
				continue
			}
			next := as.app.Clone()
			next.Instances = max(0, next.Instances-len(kill))
			changes = append(changes, Change{App: next, Kill: kill, Expect: as.revision})
		}
	}
	var start []*taskState
	if !scale {
		for _, t := range victims {
			if s.markKillLocked(t) {
				start = append(start, t)
			}
		}
	}
	s.mu.Unlock()
	var res *DeployResult
	if len(changes) > 0 {
		var err error
		if res, err = s.Deploy(ctx, changes, force, "api"); err != nil {
			return nil, nil, err
		}
		start = res.killing
	}
	for _, t := range start {
		s.startKill(s.effectsCtx(ctx), t)
	}
	return infos, res, nil
}

// effectsCtx is the context effects run under: the scheduler's own, so a
// kill started by an API request outlives the request.
func (s *Scheduler) effectsCtx(fallback context.Context) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runCtx != nil {
		return s.runCtx
	}
	return context.WithoutCancel(fallback)
}

// ResetDelay clears an app's launch backoff (DELETE /v2/queue/{id}/delay).
func (s *Scheduler) ResetDelay(appID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	as, ok := s.apps[appID]
	if !ok {
		return &NotFoundError{fmt.Sprintf("App '%s' does not exist", appID)}
	}
	as.failures, as.delayUntil = 0, time.Time{}
	s.poke()
	return nil
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
