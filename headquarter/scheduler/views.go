package scheduler

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/health"
	"github.com/garrisonhq/garrison/signalman/task"
)

// TaskInfo is a task in Marathon's task JSON shape.
type TaskInfo struct {
	ID                 string             `json:"id"`
	AppID              string             `json:"appId"`
	Host               string             `json:"host"`
	SlaveID            string             `json:"slaveId"`
	Ports              []int              `json:"ports"`
	ServicePorts       []int              `json:"servicePorts"`
	IPAddresses        []events.IPAddress `json:"ipAddresses"`
	StagedAt           string             `json:"stagedAt,omitempty"`
	StartedAt          string             `json:"startedAt,omitempty"`
	Version            string             `json:"version,omitempty"`
	State              string             `json:"state"`
	HealthCheckResults []health.Result    `json:"healthCheckResults"`
	LocalVolumes       []any              `json:"localVolumes"`
	Role               string             `json:"role"`
	staged             time.Time
}

// Counts are an app's task counts (tasksStaged, ...).
type Counts struct {
	Staged, Running, Healthy, Unhealthy int
}

func (s *Scheduler) taskInfoLocked(t *taskState) TaskInfo {
	ti := TaskInfo{
		ID: t.record.ID, AppID: t.record.AppID, Host: s.cfg.Host, SlaveID: s.cfg.Hostname,
		Ports: orEmpty(t.record.Ports), ServicePorts: orEmpty(t.record.ServicePorts),
		IPAddresses:        []events.IPAddress{{IPAddress: s.cfg.Host, Protocol: "IPv4"}},
		StagedAt:           app.FormatVersion(t.record.StagedAt),
		Version:            t.record.Version,
		State:              string(t.status.State),
		HealthCheckResults: []health.Result{},
		LocalVolumes:       []any{},
		Role:               "*",
		staged:             t.record.StagedAt,
	}
	if t.record.Driver == driverCluster {
		// Placed by the cluster: its node, not this machine.
		ti.Host, ti.SlaveID = t.status.Host, t.clusterNode
		ti.IPAddresses = []events.IPAddress{{IPAddress: t.status.Host, Protocol: "IPv4"}}
	}
	if t.launching {
		ti.State = string(task.Staging)
		if t.killing {
			ti.State = string(task.Killing)
		}
	}
	if !t.status.StartedAt.IsZero() && t.status.State == task.Running || t.status.State == task.Killing && !t.status.StartedAt.IsZero() {
		ti.StartedAt = app.FormatVersion(t.status.StartedAt)
	}
	if t.healthChecks > 0 {
		ti.HealthCheckResults = append(ti.HealthCheckResults, s.healthResultsLocked(t)...)
	}
	return ti
}

// healthResultsLocked is a task's healthCheckResults. Nomad runs a cluster
// task's checks and reports one health for its allocation, which each of
// the checks shows; none before Nomad has judged it.
func (s *Scheduler) healthResultsLocked(t *taskState) []health.Result {
	if t.record.Driver != driverCluster {
		return s.health.Results(t.record.ID)
	}
	if t.clusterHealthy == nil {
		return nil
	}
	out := make([]health.Result, t.healthChecks)
	for i := range out {
		out[i] = health.Result{Alive: *t.clusterHealthy, TaskID: t.record.ID, InstanceID: t.record.ID}
	}
	return out
}

func orEmpty(xs []int) []int {
	if xs == nil {
		return []int{}
	}
	return xs
}

// Tasks returns the tasks of an app, or of every app when appID is "",
// oldest first.
func (s *Scheduler) Tasks(appID string) []TaskInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []TaskInfo{}
	for _, t := range s.tasksOfLocked(appID) {
		out = append(out, s.taskInfoLocked(t))
	}
	slices.SortFunc(out, func(a, b TaskInfo) int {
		if c := a.staged.Compare(b.staged); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Task returns one task.
func (s *Scheduler) Task(id string) (TaskInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok {
		return TaskInfo{}, false
	}
	return s.taskInfoLocked(t), true
}

// Counts returns an app's task counts.
func (s *Scheduler) Counts(appID string) Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c Counts
	for _, t := range s.byApp[appID] {
		switch {
		case t.launching || t.status.State == task.Staging || t.status.State == task.Starting:
			c.Staged++
		case t.status.State == task.Running:
			c.Running++
			if t.healthChecks > 0 {
				if s.healthyLocked(t) {
					c.Healthy++
				} else if len(s.healthResultsLocked(t)) > 0 {
					c.Unhealthy++
				}
			}
		}
	}
	return c
}

// Apps returns the current app definitions, sorted by id.
func (s *Scheduler) Apps() []*app.App {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*app.App, 0, len(s.apps))
	for _, as := range s.apps {
		out = append(out, as.app)
	}
	slices.SortFunc(out, func(a, b *app.App) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// App returns one app definition. The value is shared: do not modify it.
func (s *Scheduler) App(id string) (*app.App, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	as, ok := s.apps[id]
	if !ok {
		return nil, false
	}
	return as.app, true
}

// AppRevision is App with the revision of the definition, for a change
// built from it (Change.Expect).
func (s *Scheduler) AppRevision(id string) (*app.App, int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	as, ok := s.apps[id]
	if !ok {
		return nil, 0, false
	}
	return as.app, as.revision, true
}

// LastFailure is the app's lastTaskFailure, nil when none.
func (s *Scheduler) LastFailure(appID string) *TaskFailure {
	s.mu.Lock()
	defer s.mu.Unlock()
	if as, ok := s.apps[appID]; ok {
		return as.failure
	}
	return nil
}

// Deployments returns the running deployments, oldest first.
func (s *Scheduler) Deployments() []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := make([]*deploymentRecord, 0, len(s.deployments))
	for _, d := range s.deployments {
		recs = append(recs, d)
	}
	slices.SortFunc(recs, func(a, b *deploymentRecord) int { return a.StartedAt.Compare(b.StartedAt) })
	out := make([]Deployment, 0, len(recs))
	for _, d := range recs {
		out = append(out, d.view())
	}
	return out
}

// DeploymentsOf returns the ids of the deployments touching an app.
func (s *Scheduler) DeploymentsOf(appID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{}
	for _, d := range s.deployments {
		if d.touches(appID) {
			out = append(out, d.ID)
		}
	}
	slices.Sort(out)
	return out
}

// QueueEntry is one app waiting for instances (GET /v2/queue).
type QueueEntry struct {
	App   *app.App
	Count int
	// Delay left before the next launch; zero when not in backoff.
	Delay time.Duration
	Since time.Time
}

// Queue lists apps with instances still to launch.
func (s *Scheduler) Queue() []QueueEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Cluster != nil {
		return s.clusterQueueLocked()
	}
	now := s.cfg.Now()
	live := map[string]int{}
	for _, t := range s.tasks {
		if !t.killing {
			live[t.record.AppID]++
		}
	}
	var out []QueueEntry
	for id, as := range s.apps {
		missing := as.app.Instances - live[id]
		delay := as.delayUntil.Sub(now)
		if missing <= 0 && delay <= 0 {
			continue
		}
		out = append(out, QueueEntry{App: as.app, Count: max(missing, 0), Delay: max(delay, 0), Since: as.lastFailure})
	}
	slices.SortFunc(out, func(a, b QueueEntry) int { return strings.Compare(a.App.ID, b.App.ID) })
	return out
}

// OnHealthChange is the health monitor's callback: a check flipped.
func (s *Scheduler) OnHealthChange(c health.Change) {
	s.mu.Lock()
	t, ok := s.tasks[c.TaskID]
	var ev events.HealthStatusChanged
	if ok {
		ev = events.HealthStatusChanged{AppID: t.record.AppID, TaskID: t.record.ID, InstanceID: t.record.ID, Version: t.record.Version, Alive: c.Alive}
	}
	s.mu.Unlock()
	if ok {
		s.publish(ev)
	}
	s.poke()
}

// OnUnhealthy is the health monitor's callback: a task failed its check
// maxConsecutiveFailures times; it is killed and replaced.
func (s *Scheduler) OnUnhealthy(u health.Unhealthy) {
	s.mu.Lock()
	t, ok := s.tasks[u.TaskID]
	if !ok || t.killing || t.launching {
		s.mu.Unlock()
		return
	}
	t.killing = true
	if as := s.apps[t.record.AppID]; as != nil {
		s.noteFailure(as, t, task.Status{State: task.Killed, Message: "unhealthy: " + u.Reason}, s.cfg.Now())
		// An unhealthy kill is replaced at once, not after a backoff.
		as.delayUntil = time.Time{}
	}
	ev := events.UnhealthyTaskKill{AppID: t.record.AppID, TaskID: t.record.ID, Version: t.record.Version, Reason: u.Reason, Host: s.cfg.Host, SlaveID: s.cfg.Hostname}
	ctx := s.runCtx
	s.mu.Unlock()
	s.log.Warn("killing unhealthy task", "task", u.TaskID, "reason", u.Reason)
	s.publish(ev)
	if ctx == nil {
		ctx = context.Background()
	}
	s.startKill(ctx, t)
}

func (s *Scheduler) publish(ev events.Event) {
	if s.cfg.Events == nil {
		return
	}
	if err := s.cfg.Events.Publish(ev); err != nil {
		s.log.Warn("publish event", "type", ev.EventType(), "error", err)
	}
}

func (s *Scheduler) publishStatus(t *taskState, state task.State, msg string) {
	s.publish(events.StatusUpdate{SlaveID: s.cfg.Hostname, TaskID: t.record.ID, TaskStatus: string(state), Message: msg,
		AppID: t.record.AppID, Host: s.cfg.Host, IPAddresses: []events.IPAddress{{IPAddress: s.cfg.Host, Protocol: "IPv4"}},
		Ports: t.record.Ports, Version: t.record.Version})
}

func (s *Scheduler) publishDeployment(typ string, d *deploymentRecord, reason string) {
	if d == nil {
		return
	}
	v := d.view()
	plan, err := json.Marshal(map[string]any{"id": v.ID, "version": v.Version, "steps": v.Steps})
	if err != nil {
		return
	}
	step, _ := json.Marshal(map[string]any{"actions": d.Actions})
	switch typ {
	case events.TypeDeploymentInfo:
		s.publish(events.DeploymentInfo{Plan: plan, CurrentStep: step})
	case events.TypeDeploymentStepSuccess:
		s.publish(events.DeploymentStepSuccess{Plan: plan, CurrentStep: step})
	case events.TypeDeploymentSuccess:
		s.publish(events.DeploymentSuccess{ID: d.ID, Plan: plan})
	case events.TypeDeploymentFailed:
		s.publish(events.DeploymentFailed{ID: d.ID, Plan: plan, Reason: reason})
	}
}
