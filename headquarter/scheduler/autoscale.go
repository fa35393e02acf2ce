package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/garrisonhq/garrison/headquarter/store"
)

// SourceAutoscaler marks deployments the autoscaler started.
const SourceAutoscaler = "autoscaler"

// ScaleStatus is what the autoscaler needs to know about one app.
type ScaleStatus struct {
	// Instances is the desired count.
	Instances int
	// Running counts tasks that run; Ready those that are also healthy and,
	// when garrison registers the app, registered: only ready instances
	// take traffic, so only they count as capacity.
	Running, Ready int
	// CPUs and MemMB are what each instance is given.
	CPUs, MemMB float64
	// Tasks are the ids of the running tasks.
	Tasks []string
	// Deployment says a deployment touches the app; Autoscaled that every
	// such deployment is an autoscaler scale (which a larger scale-up may
	// supersede).
	Deployment, Autoscaled bool
}

// ScaleStatus reports an app's counts; false when it does not exist.
func (s *Scheduler) ScaleStatus(appID string) (ScaleStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	as, ok := s.apps[appID]
	if !ok {
		return ScaleStatus{}, false
	}
	st := ScaleStatus{Instances: as.app.Instances, CPUs: as.app.CPUs, MemMB: as.app.Mem, Autoscaled: true}
	for _, t := range s.byApp[appID] {
		if t.killing || t.launching || t.status.State != "TASK_RUNNING" {
			continue
		}
		st.Running++
		st.Tasks = append(st.Tasks, t.record.ID)
		if s.servingLocked(as.app, t) {
			st.Ready++
		}
	}
	slices.Sort(st.Tasks)
	for _, d := range s.deployments {
		if !d.touches(appID) {
			continue
		}
		st.Deployment = true
		if d.Source != SourceAutoscaler || slices.ContainsFunc(d.Actions, func(a Action) bool { return a.Action != ActionScale }) {
			st.Autoscaled = false
		}
	}
	if !st.Deployment {
		st.Autoscaled = false
	}
	return st, true
}

// Scale sets an app's instance count for the autoscaler: a scale deployment
// marked as the autoscaler's. It supersedes running deployments only when
// they are all autoscaler scales to fewer instances (a growing load is not
// held behind a first, too small step); any other deployment makes it fail
// with a LockedError, which the autoscaler treats as "not now".
func (s *Scheduler) Scale(ctx context.Context, appID string, n int, reason string) (*DeployResult, error) {
	if n < 0 {
		return nil, fmt.Errorf("scale %s to %d: a count cannot be negative", appID, n)
	}
	// The new count goes onto the definition it was read from; when the
	// app changed meanwhile (a new image), read it again rather than revert.
	for attempt := 1; ; attempt++ {
		res, err := s.scaleOnce(ctx, appID, n, reason)
		if !errors.Is(err, store.ErrConflict) || attempt == 3 {
			return res, err
		}
	}
}

func (s *Scheduler) scaleOnce(ctx context.Context, appID string, n int, reason string) (*DeployResult, error) {
	s.mu.Lock()
	as, ok := s.apps[appID]
	if !ok {
		s.mu.Unlock()
		return nil, &NotFoundError{fmt.Sprintf("App '%s' does not exist", appID)}
	}
	next := as.app.Clone()
	next.Instances = n
	rev := as.revision
	force := false
	for _, d := range s.deployments {
		if !d.touches(appID) {
			continue
		}
		if d.Source != SourceAutoscaler || n <= as.app.Instances {
			force = false
			break
		}
		force = true
	}
	s.mu.Unlock()
	s.log.Info("autoscaler scales app", "app", appID, "to", n, "reason", reason)
	return s.Deploy(ctx, []Change{{App: next, Expect: rev}}, force, SourceAutoscaler)
}
