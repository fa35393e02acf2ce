package docker

import (
	"context"
	"fmt"
)

// Pid returns the process id of the task's container's main process (the
// image's entrypoint, or the container's init), as the engine's inspect
// reports it (State.Pid). The pid is in the engine's pid namespace: the
// host's, when garrison and dockerd both run on the host, which is how
// garrison reads /proc/<pid> for the task. Its error wraps ErrUnknownTask
// when the task has no container, ErrTaskEnded when the container does not
// run (or, restarting, has no process right now).
func (d *Driver) Pid(ctx context.Context, taskID string) (int, error) {
	c, err := d.find(ctx, taskID)
	if err != nil {
		return 0, fmt.Errorf("docker: task %s: pid: %w", taskID, err)
	}
	if c.State == nil || !c.State.Running || c.State.Pid <= 0 {
		return 0, fmt.Errorf("docker: task %s: pid: %w", taskID, ErrTaskEnded)
	}
	return c.State.Pid, nil
}
