package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/headquarter/client"
	"github.com/garrisonhq/garrison/headquarter/events"
)

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"", "http://127.0.0.1:8080", ""},
		{"127.0.0.1:9000", "http://127.0.0.1:9000", ""},
		{":9000", "http://127.0.0.1:9000", ""},
		{"garrison.internal:8080", "http://garrison.internal:8080", ""},
		{"https://g.example/prefix/", "https://g.example/prefix", ""},
		{"http://h:1/?x=1#f", "http://h:1", ""},
		{"ftp://h", "", "want http:// or https://"},
		{"http://", "", "no host"},
	} {
		u, err := client.ParseAddr(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseAddr(%q) = %v, %v; want error %q", tc.in, u, err, tc.err)
			}
		case err != nil || u.String() != tc.want:
			t.Errorf("ParseAddr(%q) = %v, %v; want %s", tc.in, u, err, tc.want)
		}
	}
}

type testEvent struct {
	AppID string `json:"appId"`
	N     int    `json:"n"`
}

func (testEvent) EventType() string { return "test_event" }

// The stream reads garrison's own SSE handler: events in order, typed,
// the heartbeats (every millisecond here) skipped, and the end seen.
func TestStreamReadsGarrisonEvents(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	bus := events.NewBus()
	r := gin.New()
	r.GET("/v2/events", events.Handler(bus, events.WithHeartbeat(time.Millisecond)))
	srv := httptest.NewServer(r)
	defer srv.Close()

	c, err := client.New(client.Config{Addr: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Events(t.Context(), "test_event", "event_stream_attached")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ev, err := s.Next(); err != nil || ev.Type != "event_stream_attached" {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	for i := range 3 {
		if err := bus.Publish(testEvent{AppID: "/a", N: i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		ev, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		var got testEvent
		if ev.Type != "test_event" || json.Unmarshal(ev.Data, &got) != nil || got.N != i || got.AppID != "/a" {
			t.Fatalf("event %d: %s %s", i, ev.Type, ev.Data)
		}
	}
	bus.Close()
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the bus closed: %v, want io.EOF", err)
	}
}
