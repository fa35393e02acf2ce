package scheduler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/agent"
	"github.com/garrisonhq/garrison/signalman/nomad"
	"github.com/garrisonhq/garrison/signalman/task"
)

// Cluster is an app-level driver: a cluster scheduler (Nomad, through
// signalman/nomad's *Driver) that owns instance counts, placement,
// rollouts and replacements. With Config.Cluster set the scheduler plans
// no tasks: it stores apps, hands them to the cluster and shows what the
// cluster runs.
type Cluster interface {
	Validate(a nomad.App) error
	Submit(ctx context.Context, a nomad.App) (nomad.Submitted, error)
	Scale(ctx context.Context, appID string, count int, force bool) error
	Stop(ctx context.Context, appID string) error
	Jobs(ctx context.Context) ([]nomad.JobStatus, error)
	Watch(ctx context.Context) (<-chan nomad.Task, error)
	KillTask(ctx context.Context, taskID string) error
	Reschedule(ctx context.Context, appID string) error
	Queue(ctx context.Context, appID string) (nomad.Queued, error)
	Deployment(ctx context.Context, appID string) (nomad.Rollout, bool, error)
}

const driverCluster = "cluster"

// clusterRescheduleAfter is how long a failed task may stay without a
// planned replacement before Reschedule is asked for: Nomad's own
// reschedule delay starts at 5 s.
const clusterRescheduleAfter = 15 * time.Second

// clusterState is what the cluster path keeps beside the task map.
type clusterState struct {
	// failed are failed tasks not (yet) being replaced, by task id.
	failed map[string]*failedTask
	// queue is Nomad's latest queue of each app missing instances.
	queue map[string]nomad.Queued
	// prior is the id of each app's Nomad deployment before a garrison
	// deployment changed it, by garrison deployment id and app id: a
	// failed Nomad deployment other than that one fails the garrison one.
	prior map[string]map[string]string
	// rollouts is each deployed app's latest Nomad deployment.
	rollouts map[string]nomad.Rollout
}

type failedTask struct {
	appID       string
	at          time.Time
	rescheduled bool
}

func newClusterState() *clusterState {
	return &clusterState{failed: map[string]*failedTask{}, queue: map[string]nomad.Queued{},
		prior: map[string]map[string]string{}, rollouts: map[string]nomad.Rollout{}}
}

// clusterApp is what the cluster driver needs of an app. The job carries
// the configuration version, so a scale (a new app version, the same
// configuration) changes only the count.
func clusterApp(a *app.App) nomad.App {
	spec := app.ToSpec(a, "", nil, "")
	spec.Version = configVersion(a)
	if registers(a) && spec.Image != "" {
		// On Nomad the garrison agent on each client registers containers
		// (deploy/nomad): label them with the app's service, so that an
		// app registers by default as it does on one machine.
		labels := maps.Clone(spec.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		if labels[agent.LabelService] == "" {
			labels[agent.LabelService] = serviceName(a)
		}
		spec.Labels = labels
	}
	out := nomad.App{Task: spec, Instances: a.Instances, RequirePorts: a.RequirePorts,
		Upgrade:        nomad.Upgrade{MinimumHealthCapacity: a.UpgradeStrategy.MinimumHealthCapacity, MaximumOverCapacity: a.UpgradeStrategy.MaximumOverCapacity},
		Backoff:        time.Duration(a.BackoffSeconds) * time.Second,
		MaxLaunchDelay: time.Duration(a.MaxLaunchDelaySeconds) * time.Second,
	}
	if c := a.Container; c != nil && c.Docker != nil {
		out.ForcePull = c.Docker.ForcePullImage
	}
	for _, c := range a.Constraints {
		out.Constraints = append(out.Constraints, []string(c))
	}
	for _, hc := range a.HealthChecks {
		c := nomad.Check{Protocol: hc.Protocol, Path: hc.Path,
			Grace:                  time.Duration(hc.GracePeriodSeconds) * time.Second,
			Interval:               time.Duration(hc.IntervalSeconds) * time.Second,
			Timeout:                time.Duration(hc.TimeoutSeconds) * time.Second,
			MaxConsecutiveFailures: hc.MaxConsecutiveFailures}
		if hc.PortIndex != nil {
			c.PortIndex = *hc.PortIndex
		}
		if hc.Port != nil {
			c.Port = *hc.Port
		}
		out.Checks = append(out.Checks, c)
	}
	return out
}

// nativeChecks counts the checks Nomad runs itself (the task's health).
func nativeChecks(a nomad.App) int {
	n := 0
	for _, c := range a.Checks {
		if c.Native() {
			n++
		}
	}
	return n
}

// runnableLocked refuses an app the configured drivers cannot run: on a
// cluster, what has no Nomad form is a 422 at its field.
func (s *Scheduler) runnableLocked(a *app.App) error {
	if s.cfg.Cluster == nil {
		_, _, err := s.driverFor(a)
		return err
	}
	ca := clusterApp(a)
	var details []app.FieldError
	if err := s.cfg.Cluster.Validate(ca); err != nil {
		path := "/"
		// A *nomad.ConstraintError or *nomad.FieldError: at its field.
		var fe interface{ Path() string }
		if errors.As(err, &fe) {
			path = fe.Path()
		}
		details = append(details, app.FieldError{Path: path, Errors: []string{err.Error()}})
	}
	// Only Nomad's own checks run on a cluster: garrison's monitor does
	// not reach the nodes.
	for i, c := range ca.Checks {
		if !c.Native() {
			details = append(details, app.FieldError{Path: fmt.Sprintf("/healthChecks(%d)", i),
				Errors: []string{fmt.Sprintf("a %s check on a literal port or of another protocol than HTTP or TCP cannot run on Nomad: use HTTP or TCP on a port index", c.Protocol)}})
		}
	}
	if len(details) == 0 {
		return nil
	}
	return &app.ValidationError{Details: details}
}

// clusterCtx bounds one call to the cluster made for a request that may go
// away before it ends.
func (s *Scheduler) clusterCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StoreTimeout)
}

// applyCluster hands a stored deployment to the cluster. A failure is
// logged, not returned: the change is stored, and the next job sync
// submits it again.
func (s *Scheduler) applyCluster(ctx context.Context, res *DeployResult) {
	s.mu.Lock()
	rec := s.deployments[res.DeploymentID]
	var actions []Action
	next := map[string]*app.App{}
	if rec != nil {
		actions = slices.Clone(rec.Actions)
	}
	for _, a := range actions {
		if as := s.apps[a.App]; as != nil {
			next[a.App] = as.app
		}
	}
	s.mu.Unlock()
	ctx, cancel := s.clusterCtx(ctx)
	defer cancel()
	prior := map[string]string{}
	for _, a := range actions {
		// Nomad's calls cannot carry the fence: the term is checked right
		// before each, so a leader paused after its store write does not
		// act on resume (the next leader's job sync applies the change).
		// A submit or scale also checks it inside the driver, after reading
		// the job's modify index that Nomad then enforces (nomad.WithGuard).
		if err := s.guard(ctx); err != nil {
			s.log.Warn("cluster: change not applied", "app", a.App, "action", a.Action, "error", err)
			break
		}
		if r, ok, err := s.cfg.Cluster.Deployment(ctx, a.App); err == nil && ok {
			prior[a.App] = r.ID
		}
		var err error
		switch a.Action {
		case ActionStop:
			err = s.cfg.Cluster.Stop(ctx, a.App)
		case ActionScale:
			if err = s.cfg.Cluster.Scale(ctx, a.App, next[a.App].Instances, false); err != nil {
				// No job yet, or a rollout running: a submit sets the count.
				_, err = s.cfg.Cluster.Submit(ctx, clusterApp(next[a.App]))
			}
		default:
			if next[a.App] != nil {
				_, err = s.cfg.Cluster.Submit(ctx, clusterApp(next[a.App]))
			}
		}
		if err != nil {
			s.log.Warn("cluster: change not applied; the next job sync retries", "app", a.App, "action", a.Action, "error", err)
		}
	}
	s.mu.Lock()
	if _, ok := s.deployments[res.DeploymentID]; ok {
		s.cluster.prior[res.DeploymentID] = prior
	}
	s.mu.Unlock()
	s.poke()
}

// runCluster is Run with a cluster: the cluster's allocation stream feeds
// the task view, and a periodic job sync adopts or resubmits jobs.
func (s *Scheduler) runCluster(ctx context.Context) error {
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()
	// Without the cluster garrison still takes writes: they are stored and
	// submitted once it answers; the watch is retried at each job sync.
	ch, err := s.cfg.Cluster.Watch(ctx)
	if err != nil {
		s.log.Warn("cluster: tasks not watched; retrying", "error", err)
	}
	s.syncJobs(ctx)
	close(s.ready)
	ticker := time.NewTicker(s.cfg.Interval)
	defer ticker.Stop()
	resync := time.NewTicker(s.cfg.ResyncInterval)
	defer resync.Stop()
	for {
		// A task change only re-judges what is known; Nomad is read for
		// rollouts each Interval and for queues each ResyncInterval, so a
		// burst of allocation changes costs no burst of requests.
		var rollouts, queues bool
		select {
		case <-ctx.Done():
			return nil
		case t, ok := <-ch:
			if !ok {
				return nil
			}
			s.onClusterTask(t)
			continue
		case <-resync.C:
			if ch == nil {
				if ch, err = s.cfg.Cluster.Watch(ctx); err != nil {
					s.log.Warn("cluster: tasks not watched; retrying", "error", err)
				}
			}
			s.syncJobs(ctx)
			rollouts, queues = true, true
		case <-s.trigger:
		case <-ticker.C:
			rollouts = true
		}
		s.clusterPass(ctx, rollouts, queues)
	}
}

// syncJobs compares the stored apps with the cluster's jobs: a missing,
// stopped or different job is submitted again (an identical one moves
// nothing: that is adoption after a restart). A job of garrison's with no
// stored app is only reported, and a job garrison did not submit is never
// seen. When the cluster does not answer the pass is skipped.
func (s *Scheduler) syncJobs(ctx context.Context) {
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	jobs, err := s.cfg.Cluster.Jobs(ctx)
	if err != nil {
		s.log.Warn("cluster: jobs not read; job sync skipped", "error", err)
		return
	}
	byApp := map[string]nomad.JobStatus{}
	for _, j := range jobs {
		byApp[j.AppID] = j
	}
	s.mu.Lock()
	var submit []*app.App
	for id, as := range s.apps {
		j, ok := byApp[id]
		if !ok || j.Stopped || j.Version != configVersion(as.app) || j.Instances != as.app.Instances {
			submit = append(submit, as.app)
		}
		delete(byApp, id)
	}
	s.mu.Unlock()
	for id, j := range byApp {
		if !j.Stopped {
			s.log.Warn("cluster: a garrison job runs with no stored app; left alone", "app", id, "job", j.JobID)
		}
	}
	for _, a := range submit {
		if err := s.guard(ctx); err != nil {
			s.log.Warn("cluster: job sync stopped", "error", err)
			return
		}
		if _, err := s.cfg.Cluster.Submit(ctx, clusterApp(a)); err != nil {
			s.log.Warn("cluster: resubmit", "app", a.ID, "error", err)
			continue
		}
		s.log.Info("cluster: job submitted to match the stored app", "app", a.ID)
	}
}

// onClusterTask applies one allocation change to the task view.
func (s *Scheduler) onClusterTask(nt nomad.Task) {
	st := nt.Status
	s.mu.Lock()
	t, known := s.tasks[st.ID]
	as := s.apps[st.AppID]
	if st.State.Terminal() {
		if known {
			s.dropTaskLocked(t)
		}
		f := s.cluster.failed[st.ID]
		switch {
		case st.State != task.Failed || nt.Replacing:
			delete(s.cluster.failed, st.ID)
		case f == nil:
			s.cluster.failed[st.ID] = &failedTask{appID: st.AppID, at: s.cfg.Now()}
		}
		recorded := as != nil && as.failure != nil && as.failure.TaskID == st.ID
		if as != nil && !recorded && (st.State == task.Failed || st.State == task.Lost || st.State == task.Finished) {
			msg := st.Message
			if msg == "" {
				msg = fmt.Sprintf("exited with code %d", st.ExitCode)
			}
			as.failure = &TaskFailure{AppID: st.AppID, Host: st.Host, Message: msg, State: string(st.State),
				TaskID: st.ID, Timestamp: app.FormatVersion(s.cfg.Now()), Version: st.Version, SlaveID: nt.NodeID}
		}
		s.mu.Unlock()
		if known {
			s.publishStatus(t, st.State, st.Message)
		}
		s.poke()
		return
	}
	if !known {
		t = &taskState{record: taskRecord{ID: st.ID, AppID: st.AppID, Version: st.Version, ConfigVersion: st.Version,
			Ports: st.Ports, Driver: driverCluster, StagedAt: st.StagedAt}, healthAdded: true}
		if as != nil {
			t.healthChecks = nativeChecks(clusterApp(as.app))
		}
		s.putTaskLocked(t)
	}
	prev := t.status.State
	t.status = st
	t.record.Ports = st.Ports
	t.clusterHealthy, t.clusterNode = nt.Healthy, nt.NodeID
	s.mu.Unlock()
	if prev != st.State {
		s.publishStatus(t, st.State, st.Message)
	}
	s.poke()
}

// clusterPass follows the cluster's deployments and queue, finishes or
// fails garrison's deployments, and asks for replacements Nomad left out.
func (s *Scheduler) clusterPass(ctx context.Context, readRollouts, readQueues bool) {
	now := s.cfg.Now()
	s.mu.Lock()
	var reschedule []string
	for id, f := range s.cluster.failed {
		// Forgotten once its app is gone, or long after Reschedule was
		// asked for (Nomad's stream says no more of it).
		if _, ok := s.apps[f.appID]; !ok || f.rescheduled && now.Sub(f.at) > 10*clusterRescheduleAfter {
			delete(s.cluster.failed, id)
			continue
		}
		if !f.rescheduled && now.Sub(f.at) >= clusterRescheduleAfter && !slices.Contains(reschedule, f.appID) {
			f.rescheduled = true
			reschedule = append(reschedule, f.appID)
		}
	}
	deployed := map[string]bool{}
	for _, d := range s.deployments {
		for _, a := range d.Actions {
			if a.Action != ActionStop {
				deployed[a.App] = true
			}
		}
	}
	short := map[string]bool{}
	for id, as := range s.apps {
		if s.runningLocked(id) < as.app.Instances {
			short[id] = true
		}
	}
	for id := range s.cluster.queue {
		if !short[id] {
			delete(s.cluster.queue, id)
		}
	}
	for id := range s.cluster.rollouts {
		if !deployed[id] {
			delete(s.cluster.rollouts, id)
		}
	}
	s.mu.Unlock()

	for _, id := range reschedule {
		if err := s.guard(ctx); err != nil {
			s.log.Warn("cluster: no reschedule", "app", id, "error", err)
			break
		}
		s.log.Info("cluster: asking for the replacement of failed tasks", "app", id)
		if err := s.cfg.Cluster.Reschedule(ctx, id); err != nil {
			s.log.Warn("cluster: reschedule", "app", id, "error", err)
		}
	}
	rollouts := map[string]nomad.Rollout{}
	for id := range deployed {
		if !readRollouts {
			break
		}
		r, ok, err := s.cfg.Cluster.Deployment(ctx, id)
		if err != nil {
			s.log.Debug("cluster: deployment not read", "app", id, "error", err)
			continue
		}
		if ok {
			rollouts[id] = r
		}
	}
	queues := map[string]nomad.Queued{}
	for id := range short {
		if !readQueues {
			break
		}
		q, err := s.cfg.Cluster.Queue(ctx, id)
		if err == nil {
			queues[id] = q
		}
	}

	s.mu.Lock()
	for id, r := range rollouts {
		s.cluster.rollouts[id] = r
	}
	for id, q := range queues {
		s.cluster.queue[id] = q
	}
	var failed []*deploymentRecord
	var reasons []string
	for _, d := range s.deployments {
		for _, a := range d.Actions {
			r, ok := s.cluster.rollouts[a.App]
			if a.Action == ActionStop || !ok || r.Status != "failed" {
				continue
			}
			if prior, known := s.cluster.prior[d.ID]; known && prior[a.App] == r.ID {
				continue
			}
			failed = append(failed, d)
			reasons = append(reasons, fmt.Sprintf("Nomad deployment %s of %s failed: %s", r.ID, a.App, r.Description))
			break
		}
	}
	finished := s.finishedDeploymentsLocked()
	s.mu.Unlock()
	for i, d := range failed {
		s.failDeployment(ctx, d, reasons[i])
	}
	for _, d := range finished {
		if !slices.Contains(failed, d) {
			s.completeDeployment(ctx, d)
		}
	}
	s.mu.Lock()
	for id := range s.cluster.prior {
		if _, ok := s.deployments[id]; !ok {
			delete(s.cluster.prior, id)
		}
	}
	s.mu.Unlock()
}

// failDeployment removes a deployment the cluster failed; the apps stay as
// stored, as after Marathon's failed deployment.
func (s *Scheduler) failDeployment(ctx context.Context, d *deploymentRecord, reason string) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	if err := s.cfg.Store.Commit(ctx, store.Change{DeleteDeployments: []string{d.ID}}); err != nil {
		s.log.Warn("fail deployment", "deployment", d.ID, "error", err)
		return
	}
	s.mu.Lock()
	_, still := s.deployments[d.ID]
	delete(s.deployments, d.ID)
	s.mu.Unlock()
	if still {
		s.log.Warn("deployment failed", "deployment", d.ID, "reason", reason)
		s.publishDeployment(events.TypeDeploymentFailed, d, reason)
	}
}

// runningLocked counts an app's running tasks.
func (s *Scheduler) runningLocked(appID string) int {
	n := 0
	for _, t := range s.byApp[appID] {
		if t.status.State == task.Running {
			n++
		}
	}
	return n
}

// clusterActionDoneLocked: the cluster runs the app as stored (the
// configuration, every instance running and healthy) and its latest
// rollout is over; a stop is done once no task is left.
func (s *Scheduler) clusterActionDoneLocked(a Action, tasks map[string]*taskState) bool {
	as := s.apps[a.App]
	if a.Action == ActionStop || as == nil {
		return as == nil && len(tasks) == 0
	}
	if r, ok := s.cluster.rollouts[a.App]; !ok && as.app.Instances > 0 || ok && r.Active {
		return false
	}
	cfg := configVersion(as.app)
	n := 0
	for _, t := range tasks {
		if t.record.Version != cfg || !s.healthyLocked(t) {
			return false
		}
		n++
	}
	return n == as.app.Instances
}

// clusterHealthyLocked: running, and healthy by Nomad's checks when the
// app has any.
func clusterHealthyLocked(t *taskState) bool {
	if t.status.State != task.Running {
		return false
	}
	return t.healthChecks == 0 || t.clusterHealthy != nil && *t.clusterHealthy
}

// clusterQueueLocked is GET /v2/queue from Nomad's queue.
func (s *Scheduler) clusterQueueLocked() []QueueEntry {
	var out []QueueEntry
	for id, q := range s.cluster.queue {
		as := s.apps[id]
		if as == nil || q.Count == 0 {
			continue
		}
		out = append(out, QueueEntry{App: as.app, Count: q.Count})
	}
	slices.SortFunc(out, func(a, b QueueEntry) int { return strings.Compare(a.App.ID, b.App.ID) })
	return out
}

// killClusterTasks is KillTasks on a cluster: a kill is the allocation's
// stop (Nomad places a replacement); with scale the count goes down by
// the tasks named and Nomad picks which allocations stop.
func (s *Scheduler) killClusterTasks(ctx context.Context, ids []string, scale, force bool) ([]TaskInfo, *DeployResult, error) {
	s.mu.Lock()
	infos := []TaskInfo{}
	perApp := map[string]int{}
	var victims []string
	for _, id := range ids {
		t, ok := s.tasks[id]
		if !ok {
			continue
		}
		infos = append(infos, s.taskInfoLocked(t))
		perApp[t.record.AppID]++
		victims = append(victims, id)
	}
	var changes []Change
	for appID, n := range perApp {
		if as := s.apps[appID]; as != nil && scale {
			next := as.app.Clone()
			next.Instances = max(0, next.Instances-n)
			changes = append(changes, Change{App: next, Expect: as.revision})
		}
	}
	s.mu.Unlock()
	if scale {
		if len(changes) == 0 {
			return infos, nil, nil
		}
		res, err := s.Deploy(ctx, changes, force, "api")
		if err != nil {
			return nil, nil, err
		}
		return infos, res, nil
	}
	cctx, cancel := s.clusterCtx(ctx)
	defer cancel()
	for _, id := range victims {
		if err := s.guard(cctx); err != nil {
			return nil, nil, fmt.Errorf("kill task %s: %w", id, err)
		}
		if err := s.cfg.Cluster.KillTask(cctx, id); err != nil {
			return nil, nil, fmt.Errorf("kill task %s: %w", id, err)
		}
	}
	return infos, nil, nil
}
