package nomad

import (
	"context"
	"time"

	"github.com/garrisonhq/garrison/signalman/task"
)

// vanishedMessage is the message of a task whose allocation Nomad no
// longer knows.
const vanishedMessage = "Nomad no longer knows the allocation (restarted without its state?)"

// sendVanished forgets the allocations a re-list did not find; those last
// sent as live are sent once more, as TASK_LOST, so that the receiver
// stops counting them. False when ctx ended.
func (w *watcher) sendVanished(ctx context.Context, listed map[string]bool) bool {
	for id := range w.sent {
		if listed[id] {
			continue
		}
		if t, ok := w.live[id]; ok {
			t.State, t.Message, t.Healthy = task.Lost, vanishedMessage, nil
			select {
			case w.out <- t:
			case <-ctx.Done():
				return false
			}
		}
		delete(w.live, id)
		delete(w.sent, id)
		delete(w.versions, id)
	}
	return true
}

// relistUntil re-lists until Nomad answers, or ctx ends; it returns the
// index to stream from.
func (w *watcher) relistUntil(ctx context.Context) (uint64, error) {
	for logged := false; ; logged = true {
		index, err := w.relist(ctx)
		if err == nil {
			if logged {
				w.d.log.Info("nomad answers again; allocations re-listed")
			}
			return index, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if !logged {
			w.d.log.Warn("nomad: re-list allocations; retrying until Nomad answers", "err", err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(reconnectDelay):
		}
	}
}

// forgetVersions drops the cached garrison version of every job version:
// after a restart without state Nomad numbers a resubmitted job's
// versions from 0 again.
func (d *Driver) forgetVersions() {
	d.mu.Lock()
	clear(d.versions)
	d.mu.Unlock()
}
