package docker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/garrisonhq/garrison/signalman/task"
)

// watchBuffer is how many statuses Watch holds for a slow reader before
// the event stream waits for it.
const watchBuffer = 64

// Watch streams task status changes from the Docker engine's event stream,
// as they happen, for every container garrison started: TASK_RUNNING when
// one starts (and on each Docker health status), TASK_KILLING when Kill
// signals it (once per signal), a terminal state when one
// dies (TASK_KILLED when garrison stopped it, TASK_FINISHED for exit code 0,
// TASK_FAILED otherwise, with the exit code and a message). It sees what
// happens behind garrison's back, such as a `docker kill`.
//
// Watch fails only when no engine answers at the start. It then reads
// events from the moment it was called; when the stream breaks it
// reconnects after the reconnect delay and resumes after the last event it
// saw, so a change is reported at least once. A status may repeat.
//
// The returned channel is closed once ctx is done, and only then; the
// caller must cancel ctx to stop watching and should drain the channel, or
// the stream stalls.
func (d *Driver) Watch(ctx context.Context) (<-chan task.Status, error) {
	if err := d.Ping(ctx); err != nil {
		return nil, fmt.Errorf("docker: watch: %w", err)
	}
	out := make(chan task.Status, watchBuffer)
	since := d.now()
	go func() {
		defer close(out)
		d.watch(ctx, since, out)
	}()
	return out, nil
}

// watch runs the event stream until ctx is done, reconnecting as needed.
func (d *Driver) watch(ctx context.Context, since time.Time, out chan<- task.Status) {
	oom := map[string]bool{} // container id -> an oom event came before its death
	for {
		since = d.stream(ctx, since, oom, out)
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(d.reconnect)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// stream reads one connection's events, from since, until it breaks or
// ctx is done, and returns where a new connection should resume.
func (d *Driver) stream(ctx context.Context, since time.Time, oom map[string]bool, out chan<- task.Status) time.Time {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the client's own reader goroutine
	msgs, errs := d.cli.Events(sctx, events.ListOptions{
		Since: fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("label", LabelTask),
			filters.Arg("event", string(events.ActionStart)),
			filters.Arg("event", string(events.ActionKill)),
			filters.Arg("event", string(events.ActionDie)),
			filters.Arg("event", string(events.ActionOOM)),
			filters.Arg("event", string(events.ActionHealthStatus)),
		),
	})
	for {
		select {
		case <-ctx.Done():
			return since
		case <-errs:
			// Broken stream (engine restart, timeout): the caller reconnects.
			return since
		case m := <-msgs:
			if at := eventTime(m); !at.Before(since) {
				since = at.Add(time.Nanosecond)
			}
			st, ok := d.eventStatus(ctx, m, oom)
			if !ok {
				continue
			}
			select {
			case out <- st:
			case <-ctx.Done():
				return since
			}
		}
	}
}

func eventTime(m events.Message) time.Time {
	if m.TimeNano != 0 {
		return time.Unix(0, m.TimeNano)
	}
	return time.Unix(m.Time, 0)
}

// eventStatus turns one container event into a task status; ok is false for
// events that change no status.
func (d *Driver) eventStatus(ctx context.Context, m events.Message, oom map[string]bool) (st task.Status, ok bool) {
	attrs := m.Actor.Attributes
	st = statusFromLabels(attrs)
	if st.ID == "" || !d.mine(attrs) {
		return st, false
	}
	at := eventTime(m)
	action := string(m.Action)
	switch {
	case m.Action == events.ActionStart:
		st.State, st.StartedAt = task.Running, at
		if c, err := d.cli.ContainerInspect(ctx, m.Actor.ID); err == nil {
			st.StagedAt = parseTime(c.Created)
		}
		return st, true
	case m.Action == events.ActionKill:
		// Garrison's own stop: the task is on its way out. A kill from
		// elsewhere shows as the death that follows.
		if !d.wasKilled(m.Actor.ID) {
			return st, false
		}
		st.State = task.Killing
		st.Message = "garrison sent signal " + attrs["signal"]
		return st, true
	case m.Action == events.ActionOOM:
		oom[m.Actor.ID] = true
		return st, false // the die event follows and reports it
	case m.Action == events.ActionDie:
		wasOOM := oom[m.Actor.ID]
		delete(oom, m.Actor.ID)
		code, _ := strconv.Atoi(attrs["exitCode"])
		var engineErr string
		// Best effort: Kill may have removed the container already.
		if c, err := d.cli.ContainerInspect(ctx, m.Actor.ID); err == nil {
			st.StagedAt = parseTime(c.Created)
			if c.State != nil {
				st.StartedAt = parseTime(c.State.StartedAt)
				wasOOM = wasOOM || c.State.OOMKilled
				engineErr = c.State.Error
			}
		}
		st.ExitCode = code
		st.State, st.Message = d.ending(m.Actor.ID, code, wasOOM, engineErr)
		return st, true
	case strings.HasPrefix(action, string(events.ActionHealthStatus)):
		st.State = task.Running
		st.Message = "Docker health check: " + strings.TrimSpace(strings.TrimPrefix(action, string(events.ActionHealthStatus)+":"))
		return st, true
	}
	return st, false
}
