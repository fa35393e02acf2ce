package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/garrisonhq/garrison/signalman/task"
)

// DefaultLogLimit bounds a task's stdout and stderr files: past it, a file's
// last task.MaxLogBytes move to NAME.1 and the file starts again empty, so
// each stream takes at most DefaultLogLimit plus 1 MiB (and what the task
// writes between two checks).
const DefaultLogLimit = 8 << 20

// WithLogLimit sets the size past which a running task's stdout or stderr
// is trimmed, and how often the files are measured. Defaults:
// DefaultLogLimit, every 10 s.
func WithLogLimit(limit int64, every time.Duration) Option {
	return func(c *config) { c.logLimit, c.logCheck = limit, every }
}

var logNames = []string{"stdout", "stderr"}

// Log returns the last n lines of the task's stdout followed by the last n
// lines of its stderr (the two files keep no common order). Of each, at
// most the last task.MaxLogBytes are read, and of its trimmed part as much.
func (d *Driver) Log(ctx context.Context, taskID string, n int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("log of task %s: %w", taskID, err)
	}
	d.mu.Lock()
	known := d.tasks[taskID] != nil
	d.mu.Unlock()
	if !known {
		return nil, fmt.Errorf("log of task %s: %w", taskID, ErrUnknownTask)
	}
	var out []byte
	for _, name := range logNames {
		path := filepath.Join(d.Sandbox(taskID), name)
		old, oldCut, err := fileEnd(path+".1", task.MaxLogBytes)
		if err != nil {
			return nil, fmt.Errorf("log of task %s: %w", taskID, err)
		}
		b, cut, err := fileEnd(path, task.MaxLogBytes)
		if err != nil {
			return nil, fmt.Errorf("log of task %s: %w", taskID, err)
		}
		if !cut && len(old) > 0 {
			b, cut = append(old, b...), oldCut
		}
		out = append(out, task.TailLines(b, n, cut)...)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
	}
	return out, nil
}

// fileEnd reads the last size bytes of the file at path; cut says
// bytes before them were left out. A missing file (a task that failed
// before it started, a log never trimmed) is empty.
func fileEnd(path string, size int64) (_ []byte, cut bool, _ error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	off := fi.Size() - size
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil, false, err
	}
	return b, off > 0, nil
}

// trimLogs keeps the running tasks' log files under the limit until the
// driver closes. The task writes them itself (they outlive garrison), so
// they are trimmed from outside: its descriptors append (O_APPEND), so
// after a truncation its writes land at the new end.
func (d *Driver) trimLogs() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.logCheck)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		var ids []string
		for id, e := range d.tasks {
			if !e.rec.State.Terminal() {
				ids = append(ids, id)
			}
		}
		d.mu.Unlock()
		for _, id := range ids {
			for _, name := range logNames {
				if err := trimLog(filepath.Join(d.Sandbox(id), name), d.cfg.logLimit); err != nil {
					d.cfg.logger.Warn("trim task log", "task", id, "file", name, "err", err)
				}
			}
		}
	}
}

// trimLog moves the end of a log file longer than limit (at most limit
// bytes) to path.1 and
// empties it. Lines written between the copy and the truncation are lost,
// as with logrotate's copytruncate.
func trimLog(path string, limit int64) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || fi.Size() <= limit {
		return err
	}
	end, _, err := fileEnd(path, min(limit, task.MaxLogBytes))
	if err != nil {
		return err
	}
	tmp := path + ".1.tmp"
	if err := os.WriteFile(tmp, end, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path+".1"); err != nil {
		return err
	}
	return os.Truncate(path, 0)
}
