package nomad_test

import (
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/nomadtest"
	"github.com/garrisonhq/garrison/signalman/nomad"
	"github.com/garrisonhq/garrison/signalman/task"
)

// Nomad restarted without its state (a -dev agent: it destroys its
// allocations and forgets its jobs): the watch says the old task is over
// (TASK_LOST when no event said so before the restart) and follows the new
// Nomad, whose indexes start low again; the job garrison submits again
// starts at job version 0 again, which must not be taken for the old job's
// version 0.
func TestWatchAcrossNomadLosingState(t *testing.T) {
	ctx := ctxFor(t)
	ag := nomadtest.New(t)
	d, err := nomad.New(ag.Client)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v1, v2 := "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"
	a := rawApp("/it/wiped", v1, 1)
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	first := waitWatched(t, watch, "the first task running", func(tk nomad.Task) bool {
		return tk.State == task.Running && tk.Version == v1
	})

	ag.Halt()
	if err := ag.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitWatched(t, watch, "the first task over", func(tk nomad.Task) bool {
		return tk.ID == first.ID && tk.State.Terminal()
	})
	a.Task.Version = v2
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	second := waitWatched(t, watch, "a task of the resubmitted job running", func(tk nomad.Task) bool {
		return tk.State == task.Running
	})
	if second.Version != v2 || second.ID == first.ID {
		t.Errorf("task %s at version %q after the resubmit, want a new task at %s", second.ID, second.Version, v2)
	}
	tasks, err := d.Allocations(ctx, a.Task.AppID)
	if err != nil || len(tasks) != 1 || tasks[0].Version != v2 {
		t.Errorf("allocations %s %v: want the one task at %s", describe(tasks), err, v2)
	}
}

// waitWatched reads the watch until a task matches.
func waitWatched(t *testing.T, watch <-chan nomad.Task, what string, match func(nomad.Task) bool) nomad.Task {
	t.Helper()
	deadline := time.After(wait)
	var seen []nomad.Task
	for {
		select {
		case tk, ok := <-watch:
			if !ok {
				t.Fatalf("%s: the watch closed", what)
			}
			if match(tk) {
				return tk
			}
			seen = append(seen, tk)
		case <-deadline:
			t.Fatalf("%s: not within %v; the watch sent %s", what, wait, describe(seen))
		}
	}
}
