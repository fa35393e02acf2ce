package docker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/client"

	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/task"
)

// breakingEvents is the real engine's client with an event stream that
// breaks: the first connection fails at once, the second after one event;
// later ones are the engine's own.
type breakingEvents struct {
	*client.Client
	conns atomic.Int32
}

func (b *breakingEvents) Events(ctx context.Context, opts events.ListOptions) (<-chan events.Message, <-chan error) {
	switch b.conns.Add(1) {
	case 1:
		errs := make(chan error, 1)
		errs <- errors.New("injected: stream refused")
		return make(chan events.Message), errs
	case 2:
		msgs, errs := b.Client.Events(ctx, opts)
		out, outErrs := make(chan events.Message), make(chan error, 1)
		// Owned by ctx, which the driver cancels when it drops this stream.
		go func() {
			select {
			case m := <-msgs:
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
				outErrs <- errors.New("injected: stream broken after one event")
			case err := <-errs:
				outErrs <- err
			case <-ctx.Done():
			}
		}()
		return out, outErrs
	}
	return b.Client.Events(ctx, opts)
}

// TestWatchReconnects: events that happen while the stream is down are
// delivered after it reconnects, and a stream that breaks mid-way resumes
// after the last event it delivered.
func TestWatchReconnects(t *testing.T) {
	t.Parallel()
	_, cli := newDriver(t)
	image(t, cli)
	flaky := &breakingEvents{Client: cli}
	d, err := docker.New(flaky, docker.WithReconnectDelay(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	watch, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	spec := newSpec(t, 0)
	launch(t, d, cli, spec) // most likely while the first stream is down
	if st := next(t, watch, spec.ID, 20*time.Second); st.State != task.Running {
		t.Fatalf("first watched status %+v, want running", st)
	}
	if err := cli.ContainerKill(t.Context(), docker.ContainerName(spec.ID), "KILL"); err != nil {
		t.Fatal(err)
	}
	if st := next(t, watch, spec.ID, 20*time.Second); st.State != task.Failed {
		t.Errorf("after docker kill: %+v, want failed", st)
	}
	if n := flaky.conns.Load(); n < 3 {
		t.Errorf("%d connections to the event stream, want at least 3", n)
	}
	cancel()
	for range watch {
	}
}
