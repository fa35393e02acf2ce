// Package driverstats adapts signalman's drivers to scout's taskstats, in
// the wiring layer: scout never imports signalman (DESIGN.md: data flows
// scout -> headquarter -> signalman), so the bridge lives here.
package driverstats

import (
	"context"

	"github.com/garrisonhq/garrison/scout/taskstats"
	"github.com/garrisonhq/garrison/signalman/task"
)

// UsageLike is any driver's usage type shaped like taskstats.Usage
// (docker.Usage and process.Usage are).
type UsageLike interface {
	~struct {
		CPUSeconds float64
		MemBytes   uint64
	}
}

// Driver is a driver whose Stats returns its own usage type.
type Driver[U UsageLike] interface {
	List(ctx context.Context) ([]task.Status, error)
	Stats(ctx context.Context, taskID string) (U, error)
}

// Adapt makes a driver a taskstats.Tasks, e.g. driverstats.Adapt[docker.Usage](d).
// When the driver has a Pid method (the process driver's Pid(taskID), the
// Docker driver's Pid(ctx, taskID)), the result is also a
// taskstats.PidReader, so its tasks' sockets are counted too.
func Adapt[U UsageLike](d Driver[U]) taskstats.Tasks {
	a := adapted[U]{d}
	switch p := any(d).(type) {
	case taskstats.PidReader:
		return withPid[U]{a, p.Pid}
	case interface {
		Pid(taskID string) (int, error)
	}:
		return withPid[U]{a, func(_ context.Context, id string) (int, error) { return p.Pid(id) }}
	}
	return a
}

type adapted[U UsageLike] struct{ d Driver[U] }

// Running lists the driver's tasks that run or are being killed.
func (a adapted[U]) Running(ctx context.Context) ([]taskstats.Task, error) {
	list, err := a.d.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]taskstats.Task, 0, len(list))
	for _, st := range list {
		if st.State == task.Running || st.State == task.Killing {
			out = append(out, taskstats.Task{ID: st.ID, AppID: st.AppID})
		}
	}
	return out, nil
}

func (a adapted[U]) Stats(ctx context.Context, id string) (taskstats.Usage, error) {
	u, err := a.d.Stats(ctx, id)
	return taskstats.Usage(u), err
}

// withPid is an adapted driver that also reads pids.
type withPid[U UsageLike] struct {
	adapted[U]
	pid func(ctx context.Context, taskID string) (int, error)
}

func (a withPid[U]) Pid(ctx context.Context, taskID string) (int, error) { return a.pid(ctx, taskID) }
