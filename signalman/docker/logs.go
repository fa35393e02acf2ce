package docker

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/garrisonhq/garrison/signalman/task"
)

// Log returns the last n lines of the task's container's output, stdout and
// stderr in the order the engine logged them, from their last
// task.MaxLogBytes. Its error wraps ErrUnknownTask when the task has no
// container.
func (d *Driver) Log(ctx context.Context, taskID string, n int) ([]byte, error) {
	c, err := d.find(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("docker: task %s: log: %w", taskID, err)
	}
	r, err := d.cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n)})
	if err != nil {
		return nil, fmt.Errorf("docker: task %s: log: %w", taskID, err)
	}
	defer r.Close()
	w := &lastBytes{max: task.MaxLogBytes}
	if c.Config != nil && c.Config.Tty {
		_, err = io.Copy(w, r)
	} else {
		// Without a TTY the engine frames each stream's chunks.
		_, err = stdcopy.StdCopy(w, w, r)
	}
	if err != nil {
		return nil, fmt.Errorf("docker: task %s: log: %w", taskID, err)
	}
	return task.TailLines(w.bytes(), n, w.cut), nil
}

// lastBytes keeps the last max bytes written to it.
type lastBytes struct {
	buf []byte
	max int
	cut bool // bytes before buf were dropped
}

func (l *lastBytes) Write(b []byte) (int, error) {
	l.buf = append(l.buf, b...)
	// Trimmed only past twice max, so copying stays linear.
	if len(l.buf) > 2*l.max {
		l.buf = append(l.buf[:0], l.buf[len(l.buf)-l.max:]...)
		l.cut = true
	}
	return len(b), nil
}

func (l *lastBytes) bytes() []byte {
	if len(l.buf) > l.max {
		l.cut = true
		return l.buf[len(l.buf)-l.max:]
	}
	return l.buf
}
