package autoscale

import (
	"context"
	"errors"
	"fmt"

	"github.com/garrisonhq/garrison/headquarter/scheduler"
)

// SchedulerTarget scales garrison's own apps through the scheduler.
func SchedulerTarget(s *scheduler.Scheduler) Target { return schedulerTarget{s} }

type schedulerTarget struct{ s *scheduler.Scheduler }

func (t schedulerTarget) Status(_ context.Context, appID string) (AppStatus, bool, error) {
	st, ok := t.s.ScaleStatus(appID)
	return AppStatus{Instances: st.Instances, Ready: st.Ready, CPUs: st.CPUs, MemMB: st.MemMB,
		Tasks: st.Tasks, Deployment: st.Deployment, Autoscaled: st.Autoscaled}, ok, nil
}

func (t schedulerTarget) Scale(ctx context.Context, appID string, n int, reason string) error {
	_, err := t.s.Scale(ctx, appID, n, reason)
	var locked *scheduler.LockedError
	if errors.As(err, &locked) {
		return fmt.Errorf("%w: %v", ErrNotNow, err)
	}
	return err
}
