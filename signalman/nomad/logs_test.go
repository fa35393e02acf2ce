package nomad_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/signalman/nomad"
	"github.com/garrisonhq/garrison/signalman/task"
)

// A task's log is the end of its stdout and of its stderr, read from the
// Nomad client that runs it: n lines of each, and no more than
// task.MaxLogBytes of each read, however long the log.
func TestTaskLog(t *testing.T) {
	d, _ := newDriver(t)
	ctx := ctxFor(t)
	// 60000 lines are 1.6 MB: more than Log reads of a stream.
	const lines = 60000
	a := rawApp("/it/logs", "2026-01-01T00:00:00.000Z", 1)
	a.Task.Env = map[string]string{"TESTSERVER_LOG_LINES": fmt.Sprint(lines)}
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	tk := waitRunning(ctx, t, d, a.Task.AppID, 1, nil)[0]
	serves(t, tk) // it printed its lines before it listened
	poll.Until(t, wait, "the task's log tail", func() (bool, string) {
		b, err := d.Log(ctx, tk.ID, 5)
		if err != nil {
			t.Fatal(err)
		}
		return string(b) == dockertest.LogLines(lines-4, lines), string(b)
	})
	b, err := d.Log(ctx, tk.ID, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != dockertest.LogLines(lines-4999, lines) {
		t.Errorf("tail 5000: %d bytes from %q, want lines %d to %d", len(b), firstLine(b), lines-4999, lines)
	}

	for _, id := range []string{"it_logs.00000000-0000-0000-0000-000000000000", "nodot", tk.ID[:strings.LastIndex(tk.ID, ".")+1]} {
		if _, err := d.Log(ctx, id, 5); !errors.Is(err, nomad.ErrUnknownTask) {
			t.Errorf("log of %q: %v, want ErrUnknownTask", id, err)
		}
	}
	// The allocation under another job's name is not that task.
	other := "other" + tk.ID[strings.LastIndex(tk.ID, "."):]
	if _, err := d.Log(ctx, other, 5); !errors.Is(err, nomad.ErrUnknownTask) {
		t.Errorf("log of %q: %v, want ErrUnknownTask", other, err)
	}
}

// A task that failed to start has an empty log, not an error (Nomad
// answers 404 "not started yet").
func TestTaskLogOfFailedStart(t *testing.T) {
	d, _ := newDriver(t)
	ctx := ctxFor(t)
	a := rawApp("/it/nostart", "2026-01-01T00:00:00.000Z", 1)
	a.Task.Args = []string{"/no/such/program"}
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	var failed nomad.Task
	poll.Until(t, wait, "the task failed", func() (bool, string) {
		all, err := d.Allocations(ctx, a.Task.AppID)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range all {
			if tk.State == task.Failed {
				failed = tk
				return true, ""
			}
		}
		return false, describe(all)
	})
	if b, err := d.Log(ctx, failed.ID, 10); err != nil || len(b) != 0 {
		t.Errorf("log of the task that never started: %q %v, want it empty", b, err)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}
