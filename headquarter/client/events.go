package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Event is one server-sent event of /v2/events: its type and its JSON.
type Event struct {
	Type string
	Data json.RawMessage
}

// Stream reads /v2/events. The subscription is live once Events returns:
// every event published after that is delivered (unless garrison drops a
// subscriber that does not keep up, which ends the stream).
type Stream struct {
	body io.ReadCloser
	r    *bufio.Reader
}

// maxEventBytes bounds one event's data: a deployment plan of many apps is
// large, but not this large.
const maxEventBytes = 16 << 20

// Events subscribes to /v2/events, to the given event types or to all.
// Close the stream (or end ctx) to unsubscribe.
func (c *Client) Events(ctx context.Context, types ...string) (*Stream, error) {
	q := url.Values{}
	for _, t := range types {
		q.Add("event_type", t)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v2/events", q), nil)
	if err != nil {
		return nil, fmt.Errorf("GET /v2/events: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	// Plain text: each event arrives as it is flushed.
	req.Header.Set("Accept-Encoding", "identity")
	c.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(http.MethodGet, "/v2/events", err)
	}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return nil, newAPIError(http.MethodGet, "/v2/events", resp.StatusCode, data)
	}
	return &Stream{body: resp.Body, r: bufio.NewReaderSize(resp.Body, 64<<10)}, nil
}

// Next blocks until the next event; at the end of the stream it returns
// io.EOF (or the read error).
func (s *Stream) Next() (Event, error) {
	var ev Event
	var data []byte
	for {
		line, err := s.readLine()
		if err != nil {
			return Event{}, err
		}
		switch {
		case len(line) == 0:
			// A blank line ends an event; outside one it is a heartbeat.
			if ev.Type != "" || data != nil {
				ev.Data = data
				if ev.Type == "" {
					ev.Type = "message"
				}
				return ev, nil
			}
		case line[0] == ':':
			// comment
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "event":
				ev.Type = string(value)
			case "data":
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, value...)
			}
		}
	}
}

func (s *Stream) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := s.r.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxEventBytes {
			return nil, fmt.Errorf("/v2/events: an event larger than %d bytes", maxEventBytes)
		}
		if !isPrefix {
			return bytes.TrimSuffix(line, []byte("\r")), nil
		}
	}
}

// Close ends the subscription.
func (s *Stream) Close() error { return s.body.Close() }

// Outcome is how a deployment ended.
type Outcome struct {
	ID string
	// Succeeded is false when the deployment failed or was cancelled
	// (Reason says why).
	Succeeded bool
	Reason    string
	// Polled: the event stream was lost, the end was seen by polling
	// /v2/deployments and judged from the apps' state.
	Polled bool
}

// Waiter follows deployments to their end. Make it (NewWaiter) before the
// call that starts the deployment, so that its end cannot be missed.
type Waiter struct {
	c      *Client
	events chan Event
	lost   chan error
	cancel context.CancelFunc
	done   chan struct{}
	// PollInterval is how often /v2/deployments is checked (default 1 s).
	PollInterval time.Duration
}

// NewWaiter subscribes to deployment_success and deployment_failed. When
// the stream cannot be opened it still returns a Waiter, which then polls;
// err says why the stream was not used.
func (c *Client) NewWaiter(ctx context.Context) (*Waiter, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &Waiter{c: c, events: make(chan Event, 64), lost: make(chan error, 1), cancel: cancel,
		done: make(chan struct{}), PollInterval: time.Second}
	s, err := c.Events(ctx, "deployment_success", "deployment_failed")
	if err != nil {
		w.lost <- err
		close(w.done)
		return w, err
	}
	go func() {
		defer close(w.done)
		defer s.Close()
		for {
			ev, err := s.Next()
			if err != nil {
				w.lost <- err
				return
			}
			select {
			case w.events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return w, nil
}

// Close ends the subscription and waits for its reader.
func (w *Waiter) Close() {
	w.cancel()
	<-w.done
}

// Wait blocks until deployment id ends or ctx does. Events decide; if the
// stream is lost, or the deployment leaves /v2/deployments without an
// event, the apps' state decides (see Outcome.Polled).
func (w *Waiter) Wait(ctx context.Context, id string, apps []string) (Outcome, error) {
	tick := time.NewTicker(w.PollInterval)
	defer tick.Stop()
	streaming := true
	var goneAt time.Time
	for {
		select {
		case <-ctx.Done():
			return Outcome{ID: id}, ctx.Err()
		case ev := <-w.events:
			var body struct {
				ID     string `json:"id"`
				Reason string `json:"reason"`
			}
			if json.Unmarshal(ev.Data, &body) != nil || body.ID != id {
				continue
			}
			return Outcome{ID: id, Succeeded: ev.Type == "deployment_success", Reason: body.Reason}, nil
		case err := <-w.lost:
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return Outcome{ID: id}, ctx.Err()
			}
			streaming = false
		case <-tick.C:
			deps, err := w.c.Deployments(ctx)
			if err != nil {
				continue // a restarting garrison: try again next tick
			}
			if running(deps, id) {
				goneAt = time.Time{}
				continue
			}
			// The event is published as the deployment leaves the list;
			// give it a moment before judging without it.
			if streaming && goneAt.IsZero() {
				goneAt = time.Now()
				continue
			}
			if streaming && time.Since(goneAt) < 3*w.PollInterval {
				continue
			}
			return w.judge(ctx, id, apps, deps)
		}
	}
}

func running(deps []Deployment, id string) bool {
	for _, d := range deps {
		if d.ID == id {
			return true
		}
	}
	return false
}

// judge decides a deployment's end without its event: it failed when one
// of its apps has another deployment in progress (the rollback of a
// cancel) or runs fewer tasks than it should.
func (w *Waiter) judge(ctx context.Context, id string, apps []string, deps []Deployment) (Outcome, error) {
	out := Outcome{ID: id, Succeeded: true, Polled: true}
	for _, appID := range apps {
		for _, d := range deps {
			for _, a := range d.AffectedApps {
				if a == appID {
					return Outcome{ID: id, Polled: true, Reason: fmt.Sprintf("app %s has another deployment, %s", appID, d.ID)}, nil
				}
			}
		}
		a, err := w.c.App(ctx, appID)
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return Outcome{ID: id}, err
		}
		if a.TasksRunning < a.Instances {
			return Outcome{ID: id, Polled: true, Reason: fmt.Sprintf("app %s runs %d of %d tasks", appID, a.TasksRunning, a.Instances)}, nil
		}
	}
	return out, nil
}
