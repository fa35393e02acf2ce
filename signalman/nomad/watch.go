package nomad

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/nomad/api"
)

// reconnectDelay is the pause before the watch reconnects to a broken
// event stream (Nomad restarting, say).
const reconnectDelay = time.Second

// Watch follows Nomad's event stream for the allocations of garrison's
// jobs in the driver's namespace and sends each change as a Task: first
// every allocation Nomad holds (what a restarted garrison adopts), then
// each change as it happens. A broken stream is reopened after a re-list;
// a change already sent is not sent again (allocations are compared by
// Nomad's modify index). Every 10 minutes it re-lists, which also forgets
// allocations Nomad has garbage-collected. An allocation sent as live that
// a re-list no longer finds (Nomad restarted without its state) is sent
// once more as TASK_LOST. While Nomad does not answer the watch retries
// the re-list; it streams again only from a fresh list, whose index may
// be lower than before (a Nomad that lost its state counts from 1). The
// channel closes when ctx ends.
func (d *Driver) Watch(ctx context.Context) (<-chan Task, error) {
	w := &watcher{d: d, out: make(chan Task, 64), sent: map[string]uint64{}, live: map[string]Task{}, versions: map[string]string{}}
	index, err := w.relist(ctx)
	if err != nil {
		return nil, err
	}
	go w.run(ctx, index)
	return w.out, nil
}

type watcher struct {
	d   *Driver
	out chan Task
	// sent is the modify index of each allocation's last sent state.
	sent map[string]uint64
	// live are the allocations last sent in a state that is not terminal.
	live map[string]Task
	// versions remembers each allocation's garrison version: the event
	// payload carries no job.
	versions map[string]string
	// appIDs remembers each job's app id ("" for a job not garrison's).
	appIDs map[string]string
}

// resync is how often the watch re-lists even when the stream is fine: it
// catches anything the stream missed and forgets allocations Nomad has
// garbage-collected.
const resync = 10 * time.Minute

func (w *watcher) run(ctx context.Context, index uint64) {
	defer close(w.out)
	for ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, resync)
		err := w.stream(sctx, index)
		expired := sctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		if !expired {
			w.d.log.Warn("nomad event stream broke; re-listing", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(reconnectDelay):
			}
		}
		i, err := w.relistUntil(ctx)
		if err != nil {
			return
		}
		index = i
	}
}

// relist sends every allocation that changed since last sent and returns
// the index to stream from.
func (w *watcher) relist(ctx context.Context) (uint64, error) {
	q := w.d.q(ctx)
	q.Params = map[string]string{"resources": "true", "task_states": "true"}
	stubs, meta, err := w.d.c.Allocations().List(q)
	if err != nil {
		return 0, fmt.Errorf("nomad: list allocations: %w", err)
	}
	// Nomad may have come back without its state: its job versions and
	// ids can mean other jobs now.
	w.d.forgetVersions()
	w.appIDs = nil
	listed := make(map[string]bool, len(stubs))
	for _, s := range stubs {
		listed[s.ID] = true
	}
	if !w.sendVanished(ctx, listed) {
		return 0, ctx.Err()
	}
	for _, s := range stubs {
		appID, err := w.appID(ctx, s.JobID)
		if err != nil {
			return 0, err
		}
		if appID == "" {
			continue
		}
		v, err := w.d.version(ctx, s.JobID, s.JobVersion)
		if err != nil {
			return 0, err
		}
		w.versions[s.ID] = v
		if !w.send(ctx, taskOf(appID, v, viewOfStub(s))) {
			return 0, ctx.Err()
		}
	}
	return meta.LastIndex, nil
}

// stream follows the event stream from index until it breaks.
func (w *watcher) stream(ctx context.Context, index uint64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := w.d.c.EventStream().Stream(ctx, map[api.Topic][]string{api.TopicAllocation: {"*"}}, index+1, w.d.q(ctx))
	if err != nil {
		return fmt.Errorf("nomad: open event stream: %w", err)
	}
	for evs := range ch {
		if evs.Err != nil {
			return evs.Err
		}
		for _, ev := range evs.Events {
			if ev.Topic != api.TopicAllocation {
				continue
			}
			a, err := ev.Allocation()
			if err != nil || a == nil {
				continue
			}
			if err := w.allocation(ctx, a); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("nomad: event stream closed")
}

func (w *watcher) allocation(ctx context.Context, a *api.Allocation) error {
	appID, err := w.appID(ctx, a.JobID)
	if err != nil || appID == "" {
		return err
	}
	v, ok := w.versions[a.ID]
	if !ok {
		// A new allocation: its job version is only in the full record.
		full, _, err := w.d.c.Allocations().Info(a.ID, w.d.q(ctx))
		if err != nil {
			return fmt.Errorf("nomad: allocation %s: %w", a.ID, err)
		}
		if full.Job != nil && full.Job.Version != nil {
			if v, err = w.d.version(ctx, a.JobID, *full.Job.Version); err != nil {
				return err
			}
		}
		w.versions[a.ID] = v
	}
	w.send(ctx, taskOf(appID, v, viewOfAlloc(a)))
	return nil
}

// appID is the garrison app id of a job, "" when the job is not
// garrison's. Read once per job.
func (w *watcher) appID(ctx context.Context, jobID string) (string, error) {
	if w.appIDs == nil {
		w.appIDs = map[string]string{}
	}
	if id, ok := w.appIDs[jobID]; ok {
		return id, nil
	}
	job, _, err := w.d.c.Jobs().Info(jobID, w.d.q(ctx))
	if statusCode(err) == http.StatusNotFound {
		// Purged: its allocations are going too; nothing to adopt.
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("nomad: job %s: %w", jobID, err)
	}
	id := job.Meta[MetaAppID]
	if JobID(id) != jobID {
		id = ""
	}
	w.appIDs[jobID] = id
	return id, nil
}

// send sends t unless a state at least as new was sent; false when ctx
// ended.
func (w *watcher) send(ctx context.Context, t Task) bool {
	if last, ok := w.sent[t.AllocID]; ok && last >= t.Index {
		return true
	}
	select {
	case w.out <- t:
		w.sent[t.AllocID] = t.Index
		if t.State.Terminal() {
			delete(w.live, t.AllocID)
		} else {
			w.live[t.AllocID] = t
		}
		return true
	case <-ctx.Done():
		return false
	}
}
