package nomad

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/nomad/api"

	"github.com/garrisonhq/garrison/signalman/task"
)

// ErrUnknownTask: Nomad holds no allocation of garrison's for the task id
// (never had one, or garbage-collected it).
var ErrUnknownTask = errors.New("no Nomad allocation of garrison's for the task")

// logStreams are the task's outputs Log reads, in the order it prints them.
var logStreams = []string{"stdout", "stderr"}

// Log returns the last n lines of the task's stdout, then the last n of
// its stderr, as the Nomad client that runs (or ran) the allocation keeps
// them: its rotated log files, read through Nomad's logs endpoint from the
// end. At most task.MaxLogBytes of each stream is read, whatever n. A
// task whose allocation Nomad no longer holds, or that is not of a
// garrison job, is ErrUnknownTask.
func (d *Driver) Log(ctx context.Context, taskID string, n int) ([]byte, error) {
	i := strings.LastIndex(taskID, ".")
	if i <= 0 || i == len(taskID)-1 {
		return nil, fmt.Errorf("nomad: log of task %s: %w", taskID, ErrUnknownTask)
	}
	jobID, allocID := taskID[:i], taskID[i+1:]
	alloc, _, err := d.c.Allocations().Info(allocID, d.q(ctx))
	if statusCode(err) == http.StatusNotFound {
		return nil, fmt.Errorf("nomad: log of task %s: %w", taskID, ErrUnknownTask)
	}
	if err != nil {
		return nil, fmt.Errorf("nomad: log of task %s: read its allocation: %w", taskID, err)
	}
	if alloc.JobID != jobID || alloc.Job == nil || JobID(alloc.Job.Meta[MetaAppID]) != jobID {
		return nil, fmt.Errorf("nomad: log of task %s: %w", taskID, ErrUnknownTask)
	}
	var out []byte
	for _, stream := range logStreams {
		b, cut, err := d.logEnd(ctx, alloc, stream, task.MaxLogBytes)
		if err != nil {
			return nil, fmt.Errorf("nomad: log of task %s: %s: %w", taskID, stream, err)
		}
		out = append(out, task.TailLines(b, n, cut)...)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
	}
	return out, nil
}

// logEnd reads the last size bytes of one of the task's streams; cut says
// bytes before them were left out. A stream the task never wrote is empty.
func (d *Driver) logEnd(ctx context.Context, alloc *api.Allocation, stream string, size int64) ([]byte, bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	frames, errs := d.c.AllocFS().Logs(alloc, false, taskName, stream, "end", size, stop, d.q(ctx))
	if frames == nil {
		err := <-errs
		if isNoLog(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	// The decoding goroutine ends by closing frames or sending one error:
	// drain it on every way out, so that it does not block forever on a
	// frame nobody reads.
	defer func() {
		close(stop)
		cancel()
		go func() {
			for {
				select {
				case _, ok := <-frames:
					if !ok {
						return
					}
				case <-errs:
					return
				}
			}
		}()
	}()
	var b []byte
	var read int64
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return b, read >= size, nil
			}
			b = append(b, f.Data...)
			read += int64(len(f.Data))
			// Nomad sends about size bytes; keep to it whatever it sends.
			if int64(len(b)) > size {
				b = b[int64(len(b))-size:]
			}
		case err := <-errs:
			if isNoLog(err) {
				return nil, false, nil
			}
			return nil, false, err
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// isNoLog says Nomad has no log of the stream: the task never started
// (404 "not started yet"), or its log file is missing.
func isNoLog(err error) bool {
	return statusCode(err) == http.StatusNotFound || err != nil && strings.Contains(err.Error(), "not found")
}
