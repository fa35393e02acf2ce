package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/garrisonhq/garrison/signalman/task"
)

// Log returns the last n lines of the task's stdout followed by the last n
// lines of its stderr (the two files keep no common order). Each file is
// read from its last task.MaxLogBytes only.
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
	for _, name := range []string{"stdout", "stderr"} {
		b, err := tailFile(filepath.Join(d.Sandbox(taskID), name), n)
		if err != nil {
			return nil, fmt.Errorf("log of task %s: %w", taskID, err)
		}
		out = append(out, b...)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
	}
	return out, nil
}

// tailFile returns the last n lines of the file at path; a missing file
// (a task that failed before it started) has none.
func tailFile(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-task.MaxLogBytes, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil, err
	}
	return task.TailLines(b, n, off > 0), nil
}
