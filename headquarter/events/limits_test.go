package events

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/internal/poll"
)

// TestSSESubscriberCap: above WithMaxSubscribers a client gets 503 with
// Marathon's {"message"} body, and a freed place can be taken again.
// garrison's own subscribers (the autoscaler's) take no place.
func TestSSESubscriberCap(t *testing.T) {
	b, reg := newTestBus(t, WithMaxSubscribers(2))
	srv := newServer(t, b)
	client := newClient(t)
	for range 3 {
		_, cancel := b.Subscribe(t.Context(), nil)
		defer cancel()
	}

	first := open(t, client, srv, "/v2/events")
	second := open(t, client, srv, "/v2/events")
	for _, r := range []*http.Response{first, second} {
		if r.StatusCode != http.StatusOK {
			t.Fatalf("subscriber under the cap: status %d", r.StatusCode)
		}
	}
	third := open(t, client, srv, "/v2/events")
	body, _ := io.ReadAll(third.Body)
	var msg struct{ Message string }
	if third.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &msg) != nil || !strings.Contains(msg.Message, "maximum of 2 subscribers") {
		t.Fatalf("subscriber over the cap: %d %s", third.StatusCode, body)
	}
	if got := metricValue(t, reg, "garrison_events_subscribers_refused_total", ""); got != 1 {
		t.Fatalf("refused counter = %v, want 1", got)
	}

	first.Body.Close()
	poll.True(t, 30*time.Second, "a subscriber leaves", func() bool { return b.Subscribers() == 3+1 })
	if r := open(t, client, srv, "/v2/events"); r.StatusCode != http.StatusOK {
		t.Fatalf("subscriber after one left: status %d", r.StatusCode)
	}
}

// TestSSEOutlivesServerTimeouts: an http.Server with read and write
// timeouts (as garrison's has, against stalled clients) must not cut an
// event stream that lasts longer than both. Without lifting the read
// deadline, net/http ends the request's context when ReadTimeout passes.
func TestSSEOutlivesServerTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	const heartbeat = 20 * time.Millisecond
	b, _ := newTestBus(t)
	r := gin.New()
	r.GET("/v2/events", Handler(b, WithHeartbeat(heartbeat)))
	srv := httptest.NewUnstartedServer(r)
	srv.Config.ReadTimeout = timeout
	srv.Config.WriteTimeout = timeout
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(b.Close)

	resp := open(t, newClient(t), srv, "/v2/events")
	stream := newReader(t, resp.Body, resp.Body)
	stream.expect(t, EventStreamAttached{RemoteAddress: "127.0.0.1"})
	// Heartbeats cover many times both timeouts, whatever the machine's
	// speed: the stream has lived at least that long when they are in.
	for range 5 * int(timeout/heartbeat) {
		if it := stream.next(t); !it.Heartbeat {
			t.Fatalf("want a heartbeat, got %+v", it)
		}
	}
	publish(t, b, APIPost{ClientIP: "127.0.0.1", URI: "/v2/apps/web"})
	stream.expect(t, APIPost{ClientIP: "127.0.0.1", URI: "/v2/apps/web"})
}

// TestStreamBoundedByBytes: an event stream that falls behind by more than
// WithBufferBytes is dropped long before its count buffer fills (big
// deployment events would otherwise pin a count buffer's worth of plans),
// while one that keeps taking its frames is never dropped.
func TestStreamBoundedByBytes(t *testing.T) {
	const limit = 16 << 10
	b, reg := newTestBus(t, WithBuffer(1024), WithBufferBytes(limit))
	lagging, cancelLagging, err := b.subscribe(t.Context(), nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	defer cancelLagging()
	keeping, cancelKeeping, err := b.subscribe(t.Context(), nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	defer cancelKeeping()

	big := APIPost{ClientIP: "127.0.0.1", URI: "/v2/apps/web", AppDefinition: json.RawMessage(`{"id":"/web","cmd":"` + strings.Repeat("x", 4<<10) + `"}`)}
	for range 64 {
		publish(t, b, big)
		f := recv(t, keeping.ch)
		keeping.took(f)
	}
	n := waitClosed(t, lagging.ch)
	if n == 0 || n >= 64 || int64(n-1)*(4<<10) > limit {
		t.Fatalf("lagging stream held %d frames of 4 KiB under a %d-byte bound", n, limit)
	}
	if got := metricValue(t, reg, "garrison_events_subscribers_dropped_total", ""); got != 1 {
		t.Fatalf("dropped = %v, want 1 (the lagging stream only)", got)
	}
	if b.Subscribers() != 1 {
		t.Fatalf("Subscribers() = %d, want the keeping stream", b.Subscribers())
	}
}
