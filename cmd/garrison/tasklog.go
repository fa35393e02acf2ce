package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/garrisonhq/garrison/headquarter/api"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/process"
)

// logTailer is a driver that can read the end of its tasks' output.
type logTailer interface {
	Log(ctx context.Context, taskID string, n int) ([]byte, error)
}

// TaskLog asks the driver that knows the task for its log's tail (api.TaskLogs).
func (hq *headquarter) TaskLog(ctx context.Context, taskID string, n int) ([]byte, error) {
	if hq.env.Cluster {
		if _, ok := hq.sched.Task(taskID); !ok {
			return nil, fmt.Errorf("task %s: %w", taskID, api.ErrUnknownTask)
		}
		return nil, fmt.Errorf("task %s runs on Nomad: %w; read it with `nomad alloc logs`", taskID, api.ErrLogUnsupported)
	}
	drivers := []logTailer{hq.proc}
	if hq.dockerDriver != nil {
		drivers = append(drivers, hq.dockerDriver)
	}
	for _, d := range drivers {
		b, err := d.Log(ctx, taskID, n)
		if errors.Is(err, process.ErrUnknownTask) || errors.Is(err, docker.ErrUnknownTask) {
			continue
		}
		return b, err
	}
	return nil, fmt.Errorf("task %s: %w", taskID, api.ErrUnknownTask)
}
