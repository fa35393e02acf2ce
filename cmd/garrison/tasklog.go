package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/garrisonhq/garrison/headquarter/api"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/nomad"
	"github.com/garrisonhq/garrison/signalman/process"
)

// logTailer is a driver that can read the end of its tasks' output.
type logTailer interface {
	Log(ctx context.Context, taskID string, n int) ([]byte, error)
}

// TaskLog asks the driver that knows the task for its log's tail (api.TaskLogs).
func (hq *headquarter) TaskLog(ctx context.Context, taskID string, n int) ([]byte, error) {
	if hq.nomad != nil {
		// Nomad's client keeps the logs of failed and stopped allocations
		// too, until its garbage collection: ask it, not garrison's view.
		b, err := hq.nomad.Log(ctx, taskID, n)
		if errors.Is(err, nomad.ErrUnknownTask) {
			return nil, fmt.Errorf("task %s: %w", taskID, api.ErrUnknownTask)
		}
		return b, err
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
