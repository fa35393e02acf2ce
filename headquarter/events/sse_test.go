package events

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-contrib/sse"
	"github.com/gin-gonic/gin"
)

// newServer serves Handler(bus) at GET /v2/events on 127.0.0.1.
func newServer(t *testing.T, bus *Bus, opts ...HandlerOption) *httptest.Server {
	t.Helper()
	r := gin.New()
	r.GET("/v2/events", Handler(bus, opts...))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	// Runs before srv.Close: ends open streams, which Close waits for.
	t.Cleanup(bus.Close)
	return srv
}

func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// open sends GET path with the given headers (Accept: text/event-stream
// unless headers set Accept) and returns the response once its headers
// are in. The body is closed at cleanup.
func open(t *testing.T, client *http.Client, srv *httptest.Server, path string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// item is what the test SSE reader yields: an event, or a heartbeat (an
// empty line outside an event).
type item struct {
	Type, Data string
	Heartbeat  bool
}

// sseReader parses a stream strictly as garrison writes it: every event is
// exactly "event: <type>", "data: <json>", blank line.
type sseReader struct {
	items chan item
	stop  chan struct{}
	done  chan struct{}
	body  io.Closer
	err   error // read or format error; valid once done is closed
}

func newReader(t *testing.T, r io.Reader, body io.Closer) *sseReader {
	t.Helper()
	c := &sseReader{items: make(chan item, 1024), stop: make(chan struct{}), done: make(chan struct{}), body: body}
	go c.run(r)
	t.Cleanup(c.close)
	return c
}

func (c *sseReader) run(r io.Reader) {
	defer close(c.done)
	br := bufio.NewReader(r)
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.err = err
			return
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line != "" {
			lines = append(lines, line)
			continue
		}
		var it item
		switch {
		case len(lines) == 0:
			it.Heartbeat = true
		case len(lines) == 2 && strings.HasPrefix(lines[0], "event: ") && strings.HasPrefix(lines[1], "data: "):
			it.Type = strings.TrimPrefix(lines[0], "event: ")
			it.Data = strings.TrimPrefix(lines[1], "data: ")
		default:
			c.err = fmt.Errorf("malformed SSE frame %q", lines)
			return
		}
		lines = lines[:0]
		select {
		case c.items <- it:
		case <-c.stop:
			return
		}
	}
}

func (c *sseReader) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.body.Close()
	<-c.done
}

func (c *sseReader) next(t *testing.T) item {
	t.Helper()
	select {
	case it := <-c.items:
		return it
	case <-c.done:
		select {
		case it := <-c.items:
			return it
		default:
		}
		t.Fatalf("stream ended: %v", c.err)
	case <-time.After(waitLimit):
		t.Fatal("nothing on the stream")
	}
	return item{}
}

// event returns the next event, skipping heartbeats.
func (c *sseReader) event(t *testing.T) item {
	t.Helper()
	for {
		if it := c.next(t); !it.Heartbeat {
			return it
		}
	}
}

// expect reads the next event and checks it is want, encoded as Marshal
// does with the test clock.
func (c *sseReader) expect(t *testing.T, want Event) {
	t.Helper()
	it := c.event(t)
	data, err := Marshal(want, testTime)
	if err != nil {
		t.Fatal(err)
	}
	if it.Type != want.EventType() || it.Data != string(data) {
		t.Fatalf("got event %s %s\nwant       %s %s", it.Type, it.Data, want.EventType(), data)
	}
}

func publish(t *testing.T, b *Bus, evs ...Event) {
	t.Helper()
	for _, ev := range evs {
		if err := b.Publish(ev); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSSERequiresAcceptHeader(t *testing.T) {
	b, _ := newTestBus(t)
	srv := newServer(t, b)
	client := newClient(t)
	for _, accept := range []string{"", "*/*", "application/json", "text/*", "text/event-stream;q=0", "text/plain, application/json"} {
		t.Run(accept, func(t *testing.T) {
			resp := open(t, client, srv, "/v2/events", "Accept", accept)
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Fatalf("status %d, want 405", resp.StatusCode)
			}
			var body struct{ Message string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Message == "" {
				t.Errorf("body: %+v, %v; want Marathon's {\"message\":...}", body, err)
			}
		})
	}
	if n := b.Subscribers(); n != 0 {
		t.Errorf("Subscribers() = %d after refused requests", n)
	}
}

func TestAcceptParsing(t *testing.T) {
	cases := []struct {
		header []string
		sse    bool
	}{
		{header: []string{"text/event-stream"}, sse: true},
		{header: []string{"application/json, text/event-stream;q=0.5"}, sse: true},
		{header: []string{"text/html", "TEXT/EVENT-STREAM"}, sse: true},
		{header: []string{"text/event-stream; charset=utf-8"}, sse: true},
		{header: []string{"*/*"}},
		{header: nil},
	}
	for _, tc := range cases {
		if got := acceptsEventStream(tc.header); got != tc.sse {
			t.Errorf("acceptsEventStream(%q) = %v, want %v", tc.header, got, tc.sse)
		}
	}
	gz := []struct {
		header []string
		want   bool
	}{
		{[]string{"gzip"}, true},
		{[]string{"deflate, GZIP;q=0.8"}, true},
		{[]string{"br", "gzip"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.0"}, false},
		{[]string{"identity"}, false},
		{[]string{"x-gzip"}, false},
		{nil, false},
	}
	for _, tc := range gz {
		if got := acceptsGzip(tc.header); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

func TestSSEStream(t *testing.T) {
	b, _ := newTestBus(t)
	srv := newServer(t, b)
	client := newClient(t)

	resp := open(t, client, srv, "/v2/events")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q", cc)
	}
	first := newReader(t, resp.Body, resp.Body)
	first.expect(t, EventStreamAttached{RemoteAddress: "127.0.0.1"})

	app := json.RawMessage("{\n  \"id\": \"/web\",\n  \"instances\": 2\n}")
	events := []Event{
		APIPost{ClientIP: "127.0.0.1", URI: "/v2/apps/web", AppDefinition: app},
		StatusUpdate{SlaveID: "agent-1", TaskID: "web.1", TaskStatus: "TASK_RUNNING", AppID: "/web", Host: "node1", Ports: []int{31000}, Version: "v1"},
		HealthStatusChanged{AppID: "/web", TaskID: "web.1", InstanceID: "web.1", Version: "v1", Alive: true},
		autoscaleDecision{AppID: "/web", From: 2, To: 3},
	}
	publish(t, b, events...)
	for _, ev := range events {
		first.expect(t, ev)
	}

	// A second client's attach and detach reach the first.
	resp2 := open(t, client, srv, "/v2/events")
	second := newReader(t, resp2.Body, resp2.Body)
	second.expect(t, EventStreamAttached{RemoteAddress: "127.0.0.1"})
	first.expect(t, EventStreamAttached{RemoteAddress: "127.0.0.1"})
	second.close()
	first.expect(t, EventStreamDetached{RemoteAddress: "127.0.0.1"})
	if n := b.Subscribers(); n != 1 {
		t.Errorf("Subscribers() = %d, want 1", n)
	}
}

func TestSSEFilter(t *testing.T) {
	b, _ := newTestBus(t)
	srv := newServer(t, b)
	client := newClient(t)

	resp := open(t, client, srv, "/v2/events?event_type=status_update_event&event_type=app_terminated_event")
	filtered := newReader(t, resp.Body, resp.Body)
	// marathon-lb's request.
	resp = open(t, client, srv, "/v2/events?plan-format=light&event_type=api_post_event&event_type=health_status_changed_event&event_type=status_update_event",
		"Cache-Control", "no-cache")
	lb := newReader(t, resp.Body, resp.Body)
	// The response headers came after the subscription: no wait needed.

	running := StatusUpdate{TaskID: "web.1", TaskStatus: "TASK_RUNNING", AppID: "/web"}
	killed := StatusUpdate{TaskID: "web.1", TaskStatus: "TASK_KILLED", AppID: "/web"}
	post := APIPost{URI: "/v2/apps/web", AppDefinition: json.RawMessage(`{"id":"/web"}`)}
	health := HealthStatusChanged{AppID: "/web", TaskID: "web.1", Alive: true}
	terminated := AppTerminated{AppID: "/web"}
	publish(t, b,
		post, health, running,
		DeploymentInfo{Plan: json.RawMessage(`{"id":"d1"}`), CurrentStep: json.RawMessage(`{}`)},
		terminated, autoscaleDecision{AppID: "/web"}, killed,
		EventStreamAttached{RemoteAddress: "10.0.0.1"},
		terminated, health,
	)
	// Each stream is in publish order, so a wanted event read right after
	// another proves nothing unwanted was sent between them.
	for _, ev := range []Event{running, terminated, killed, terminated} {
		filtered.expect(t, ev)
	}
	for _, ev := range []Event{post, health, running, killed, health} {
		lb.expect(t, ev)
	}
}

func TestSSEHeartbeat(t *testing.T) {
	b, _ := newTestBus(t)
	srv := newServer(t, b, WithHeartbeat(20*time.Millisecond))
	client := newClient(t)
	resp := open(t, client, srv, "/v2/events")
	r := newReader(t, resp.Body, resp.Body)
	r.expect(t, EventStreamAttached{RemoteAddress: "127.0.0.1"})
	for i := range 3 {
		if it := r.next(t); !it.Heartbeat {
			t.Fatalf("item %d on an idle stream: %+v, want a heartbeat", i, it)
		}
	}
	// Frames after heartbeats parse as before.
	publish(t, b, AppTerminated{AppID: "/web"})
	r.expect(t, AppTerminated{AppID: "/web"})
}

func TestSSEHeartbeatBytes(t *testing.T) {
	b, _ := newTestBus(t)
	srv := newServer(t, b, WithHeartbeat(10*time.Millisecond))
	client := newClient(t)
	resp := open(t, client, srv, "/v2/events?event_type=none")
	buf := make([]byte, len(Heartbeat)*2)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != Heartbeat+Heartbeat {
		t.Errorf("idle stream sent %q, want Jetty's heartbeat %q twice", buf, Heartbeat)
	}
}

// TestSSEDisconnectUnsubscribes closes clients and waits for their
// event_stream_detached events, which the handler publishes after it has
// unsubscribed.
func TestSSEDisconnectUnsubscribes(t *testing.T) {
	b, _ := newTestBus(t)
	srv := newServer(t, b)
	client := newClient(t)
	detached, cancel := b.Subscribe(t.Context(), []string{TypeEventStreamDetached})
	defer cancel()

	var readers []*sseReader
	for range 3 {
		resp := open(t, client, srv, "/v2/events")
		readers = append(readers, newReader(t, resp.Body, resp.Body))
	}
	if n := b.Subscribers(); n != 4 {
		t.Fatalf("Subscribers() = %d with 3 clients and a watcher, want 4", n)
	}
	for _, r := range readers {
		r.close()
	}
	for range readers {
		recv(t, detached)
	}
	if n := b.Subscribers(); n != 1 {
		t.Errorf("Subscribers() = %d after the clients left, want 1 (the watcher)", n)
	}
}

// TestSSESlowClientDropped connects a client that never reads. Once the
// TCP buffers are full the handler's writes stall, its bus buffer fills,
// the bus drops it and the write deadline ends the handler; Publish never
// waits for any of it.
func TestSSESlowClientDropped(t *testing.T) {
	b, reg := newTestBus(t, WithBuffer(8))
	srv := newServer(t, b, WithWriteTimeout(time.Second))
	client := newClient(t)
	detached, cancel := b.Subscribe(t.Context(), []string{TypeEventStreamDetached})
	defer cancel()
	open(t, client, srv, "/v2/events") // never read

	big := APIPost{URI: "/v2/apps/web", AppDefinition: json.RawMessage(`{"id":"/web","cmd":"` + strings.Repeat("x", 64<<10) + `"}`)}
	done := make(chan int, 1)
	stop := make(chan struct{})
	go func() {
		n := 0
		defer func() { done <- n }()
		for ; n < 100_000; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := b.Publish(big); err != nil {
				return
			}
		}
	}()
	select {
	case <-detached:
	case <-time.After(waitLimit):
		t.Fatal("stuck client never detached")
	}
	close(stop)
	select {
	case n := <-done:
		t.Logf("published %d events of 64 KiB before the stuck client was cut", n)
	case <-time.After(waitLimit):
		t.Fatal("Publish blocked")
	}
	if got := metricValue(t, reg, "garrison_events_subscribers_dropped_total", ""); got != 1 {
		t.Errorf("dropped = %v, want 1", got)
	}
	if n := b.Subscribers(); n != 1 {
		t.Errorf("Subscribers() = %d, want 1 (the watcher)", n)
	}
}

func TestSSEPlanFormatLight(t *testing.T) {
	b, _ := newTestBus(t)
	srv := newServer(t, b)
	client := newClient(t)
	resp := open(t, client, srv, "/v2/events?event_type=deployment_info")
	heavyReader := newReader(t, resp.Body, resp.Body)
	resp = open(t, client, srv, "/v2/events?event_type=deployment_info&plan-format=light")
	lightReader := newReader(t, resp.Body, resp.Body)

	step := json.RawMessage(`{"actions":[{"action":"StartApplication","app":"/web"}]}`)
	heavy := DeploymentInfo{Plan: json.RawMessage(`{"id":"d1","original":{"id":"/"},"target":{"id":"/","apps":[{"id":"/web"}]},"steps":[],"version":"v"}`), CurrentStep: step}
	light := DeploymentInfo{Plan: json.RawMessage(`{"id":"d1","steps":[],"version":"v"}`), CurrentStep: step}
	publish(t, b, heavy)
	heavyReader.expect(t, heavy)
	lightReader.expect(t, light)
}

func TestSSEGzip(t *testing.T) {
	b, _ := newTestBus(t)
	srv := newServer(t, b, WithHeartbeat(20*time.Millisecond))

	t.Run("explicit", func(t *testing.T) {
		resp := open(t, newClient(t), srv, "/v2/events", "Accept-Encoding", "gzip")
		if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
			t.Fatalf("Content-Encoding %q, want gzip", ce)
		}
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r := newReader(t, zr, resp.Body)
		r.expect(t, EventStreamAttached{RemoteAddress: "127.0.0.1"})
		if it := r.next(t); !it.Heartbeat {
			t.Fatalf("got %+v, want a heartbeat", it)
		}
		publish(t, b, AppTerminated{AppID: "/gz"})
		r.expect(t, AppTerminated{AppID: "/gz"})
	})
	t.Run("transparent", func(t *testing.T) {
		resp := open(t, newClient(t), srv, "/v2/events?event_type=app_terminated_event")
		if !resp.Uncompressed {
			t.Error("Go's transport did not negotiate gzip")
		}
		r := newReader(t, resp.Body, resp.Body)
		publish(t, b, AppTerminated{AppID: "/gz2"})
		r.expect(t, AppTerminated{AppID: "/gz2"})
	})
	t.Run("disabled", func(t *testing.T) {
		b, _ := newTestBus(t)
		srv := newServer(t, b, WithGzip(false))
		resp := open(t, newClient(t), srv, "/v2/events", "Accept-Encoding", "gzip")
		if ce := resp.Header.Get("Content-Encoding"); ce != "" {
			t.Fatalf("Content-Encoding %q with gzip off", ce)
		}
		r := newReader(t, resp.Body, resp.Body)
		r.expect(t, EventStreamAttached{RemoteAddress: "127.0.0.1"})
	})
}

// TestSSEBusCloseEndsStream reads a whole stream, ended by Bus.Close, with
// gin-contrib/sse's decoder: an independent SSE parser.
func TestSSEBusCloseEndsStream(t *testing.T) {
	b, _ := newTestBus(t)
	srv := newServer(t, b, WithHeartbeat(5*time.Millisecond))
	client := newClient(t)
	resp := open(t, client, srv, "/v2/events")
	evs := []Event{
		StatusUpdate{TaskID: "web.1", TaskStatus: "TASK_RUNNING", AppID: "/web"},
		DeploymentSuccess{ID: "d1", Plan: json.RawMessage(`{"id":"d1","steps":[],"version":"v"}`)},
		autoscaleDecision{AppID: "/web", From: 1, To: 2},
	}
	publish(t, b, evs...)
	// Let a heartbeat or two through before the end.
	br := bufio.NewReader(resp.Body)
	var head bytes.Buffer
	for !bytes.Contains(head.Bytes(), []byte("\r\n")) {
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		head.Write(line)
	}
	b.Close()
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("stream did not end cleanly: %v", err)
	}
	got, err := sse.Decode(io.MultiReader(&head, bytes.NewReader(rest)))
	if err != nil {
		t.Fatal(err)
	}
	want := append([]Event{EventStreamAttached{RemoteAddress: "127.0.0.1"}}, evs...)
	if len(got) != len(want) {
		t.Fatalf("decoded %d events, want %d: %+v", len(got), len(want), got)
	}
	for i, ev := range want {
		data, err := Marshal(ev, testTime)
		if err != nil {
			t.Fatal(err)
		}
		if got[i].Event != ev.EventType() || got[i].Data != string(data) {
			t.Errorf("event %d: %s %v, want %s %s", i, got[i].Event, got[i].Data, ev.EventType(), data)
		}
	}

	// A closed bus refuses new streams as Jetty does when it has no source.
	resp = open(t, client, srv, "/v2/events")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status on a closed bus %d, want 503", resp.StatusCode)
	}
}

// TestSSEServerShutdown wires Bus.Close to http.Server shutdown, as
// cmd/garrison should: Shutdown then returns although a stream is open.
func TestSSEServerShutdown(t *testing.T) {
	b, _ := newTestBus(t)
	r := gin.New()
	r.GET("/v2/events", Handler(b))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	server.RegisterOnShutdown(b.Close)
	served := make(chan error, 1)
	go func() { served <- server.Serve(ln) }()

	client := newClient(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+ln.Addr().String()+"/v2/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := newReader(t, resp.Body, resp.Body)
	rd.expect(t, EventStreamAttached{RemoteAddress: "127.0.0.1"})

	ctx, stop := context.WithTimeout(t.Context(), waitLimit)
	defer stop()
	if err := server.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an open stream: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	<-rd.done
	if !errors.Is(rd.err, io.EOF) {
		t.Errorf("client saw %v, want the stream to end", rd.err)
	}
}
