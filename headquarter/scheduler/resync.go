package scheduler

import (
	"context"
	"time"

	"github.com/garrisonhq/garrison/signalman/task"
)

// resyncLoop re-lists every driver each ResyncInterval: the driver is the
// source of truth, and an event lost on the way (a watch that reconnected,
// a status that raced a launch) is corrected within one period, as
// Marathon's reconciliation against Mesos does.
func (s *Scheduler) resyncLoop(ctx context.Context) {
	ticker := time.NewTicker(s.cfg.ResyncInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for _, d := range s.drivers() {
			s.resync(ctx, d)
		}
	}
}

// resync compares one driver's tasks with the scheduler's: a known task the
// driver reports ended, or no longer has, has ended; a running task the
// scheduler does not know (its launch outlived a kill, or garrison lost its
// record) is killed.
func (s *Scheduler) resync(ctx context.Context, d Driver) {
	s.mu.Lock()
	seq := s.launchSeq
	s.mu.Unlock()
	listCtx, cancel := context.WithTimeout(ctx, s.cfg.ResyncInterval)
	listed, err := d.List(listCtx)
	cancel()
	if err != nil {
		s.log.Warn("re-list tasks", "error", err)
		return
	}
	byID := make(map[string]task.Status, len(listed))
	for _, st := range listed {
		byID[st.ID] = st
	}
	type endedTask struct {
		t  *taskState
		st task.Status
	}
	var endings []endedTask
	var unknown []task.Status
	s.mu.Lock()
	for id, t := range s.tasks {
		// Only a task whose launch finished before the list can be judged
		// by it; a task being killed or ended is already on its way out.
		if t.driver != d || t.launching || t.killing || t.ended || t.launchedSeq > seq {
			continue
		}
		st, ok := byID[id]
		switch {
		case !ok:
			endings = append(endings, endedTask{t, task.Status{ID: id, AppID: t.record.AppID, State: task.Lost,
				ExitCode: -1, Message: "the driver no longer has the task"}})
		case st.State.Terminal() && !t.status.State.Terminal():
			endings = append(endings, endedTask{t, st})
		}
	}
	for _, st := range listed {
		if _, ok := s.tasks[st.ID]; !ok {
			unknown = append(unknown, st)
		}
	}
	s.mu.Unlock()
	for _, e := range endings {
		s.log.Warn("re-list found a task ended without an event", "task", e.t.record.ID, "state", e.st.State)
		s.mu.Lock()
		s.applyStatusLocked(ctx, e.t, e.st)
	}
	for _, st := range unknown {
		s.log.Warn("re-list found a task garrison does not know: killing it", "task", st.ID, "app", st.AppID, "state", st.State)
		killCtx := context.WithoutCancel(ctx)
		if !st.State.Terminal() {
			if err := d.Kill(killCtx, st.ID, 0); err != nil {
				s.log.Warn("kill unknown task", "task", st.ID, "error", err)
				continue
			}
		}
		if err := d.Remove(killCtx, st.ID); err != nil {
			s.log.Warn("remove unknown task", "task", st.ID, "error", err)
		}
	}
}
