package events

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// waitLimit bounds every wait in these tests; it is a failure bound, never
// a synchronisation point.
const waitLimit = 30 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestBus(t *testing.T, opts ...Option) (*Bus, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts = append([]Option{WithRegisterer(reg), WithClock(func() time.Time { return testTime }), WithLogger(quietLogger())}, opts...)
	b := NewBus(opts...)
	t.Cleanup(b.Close)
	return b, reg
}

// metricValue reads a counter or gauge from reg; label is the value of the
// metric's only label, or "" for unlabelled metrics. Absent series read 0.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// recv returns the next frame, failing the test if none comes in waitLimit
// or the channel closes.
func recv(t *testing.T, ch <-chan Frame) Frame {
	t.Helper()
	select {
	case f, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed, want a frame")
		}
		return f
	case <-time.After(waitLimit):
		t.Fatal("no frame")
	}
	return Frame{}
}

// waitClosed drains ch until it closes and returns how many frames it held.
func waitClosed(t *testing.T, ch <-chan Frame) int {
	t.Helper()
	deadline := time.After(waitLimit)
	n := 0
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return n
			}
			n++
		case <-deadline:
			t.Fatal("subscription not closed")
		}
	}
}

func TestBusFilter(t *testing.T) {
	b, reg := newTestBus(t)
	all, cancelAll := b.Subscribe(t.Context(), nil)
	defer cancelAll()
	some, cancelSome := b.Subscribe(t.Context(), []string{TypeStatusUpdate, "", TypeAppTerminated, TypeStatusUpdate})
	defer cancelSome()
	if n := b.Subscribers(); n != 2 {
		t.Fatalf("Subscribers() = %d, want 2", n)
	}

	published := []Event{
		APIPost{URI: "/v2/apps/web", AppDefinition: json.RawMessage(`{}`)},
		StatusUpdate{TaskID: "web.1", TaskStatus: "TASK_RUNNING"},
		HealthStatusChanged{AppID: "/web"},
		AppTerminated{AppID: "/web"},
		autoscaleDecision{AppID: "/web"},
		StatusUpdate{TaskID: "web.1", TaskStatus: "TASK_KILLED"},
	}
	for _, ev := range published {
		if err := b.Publish(ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, ev := range published {
		if f := recv(t, all); f.Type != ev.EventType() {
			t.Fatalf("unfiltered: got %s, want %s", f.Type, ev.EventType())
		}
	}
	want := []string{TypeStatusUpdate, TypeAppTerminated, TypeStatusUpdate}
	for i, typ := range want {
		f := recv(t, some)
		if f.Type != typ {
			t.Fatalf("filtered frame %d: got %s, want %s", i, f.Type, typ)
		}
		var body struct{ EventType string }
		if err := json.Unmarshal(f.Data, &body); err != nil || body.EventType != typ {
			t.Fatalf("frame %d data %s: eventType %q, err %v", i, f.Data, body.EventType, err)
		}
	}
	select {
	case f := <-some:
		t.Fatalf("filtered subscriber got an extra %s", f.Type)
	default:
	}
	for _, m := range []struct {
		name, label string
		want        float64
	}{
		{"garrison_events_published_total", TypeStatusUpdate, 2},
		{"garrison_events_published_total", "autoscale_decision_event", 1},
		{"garrison_events_subscribers_dropped_total", "", 0},
		{"garrison_events_subscribers", "", 2},
	} {
		if got := metricValue(t, reg, m.name, m.label); got != m.want {
			t.Errorf("%s{%s} = %v, want %v", m.name, m.label, got, m.want)
		}
	}
}

// TestPublishNeverBlocks publishes 100k events with a subscriber that never
// reads: Publish must finish, the stuck subscriber must be dropped and
// counted, and a subscriber to a rare type (fewer events than its buffer)
// must keep all of its events.
func TestPublishNeverBlocks(t *testing.T) {
	const events, buffer, rareEvery = 100_000, 16, 10_000
	b, reg := newTestBus(t, WithBuffer(buffer))
	stuck, cancelStuck := b.Subscribe(t.Context(), nil)
	defer cancelStuck()
	rare, cancelRare := b.Subscribe(t.Context(), []string{TypeAppTerminated})
	defer cancelRare()

	busy := StatusUpdate{TaskID: "web.1", TaskStatus: "TASK_RUNNING", AppID: "/web"}
	published := make(chan error, 1)
	go func() {
		for i := range events {
			var ev Event = busy
			if i%rareEvery == 0 {
				ev = AppTerminated{AppID: "/web"}
			}
			if err := b.Publish(ev); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	select {
	case err := <-published:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("Publish blocked: %d events not published in %v", events, waitLimit)
	}

	if n := waitClosed(t, stuck); n != buffer {
		t.Errorf("stuck subscriber held %d frames, want its buffer of %d", n, buffer)
	}
	if got := metricValue(t, reg, "garrison_events_subscribers_dropped_total", ""); got != 1 {
		t.Errorf("dropped = %v, want 1", got)
	}
	if n := b.Subscribers(); n != 1 {
		t.Errorf("Subscribers() = %d after the drop, want 1", n)
	}
	for range events / rareEvery {
		if f := recv(t, rare); f.Type != TypeAppTerminated {
			t.Fatalf("rare subscriber got %s", f.Type)
		}
	}
	cancelRare()
	if n := waitClosed(t, rare); n != 0 {
		t.Errorf("rare subscriber had %d extra frames", n)
	}
}

func TestSubscribeEnds(t *testing.T) {
	t.Run("cancel", func(t *testing.T) {
		b, _ := newTestBus(t)
		ch, cancel := b.Subscribe(t.Context(), nil)
		cancel()
		cancel() // idempotent
		waitClosed(t, ch)
		if n := b.Subscribers(); n != 0 {
			t.Errorf("Subscribers() = %d, want 0", n)
		}
	})
	t.Run("context", func(t *testing.T) {
		b, _ := newTestBus(t)
		ctx, stop := context.WithCancel(t.Context())
		ch, cancel := b.Subscribe(ctx, nil)
		defer cancel()
		stop()
		waitClosed(t, ch)
		if n := b.Subscribers(); n != 0 {
			t.Errorf("Subscribers() = %d, want 0", n)
		}
	})
	t.Run("bus closed", func(t *testing.T) {
		b, _ := newTestBus(t)
		ch, cancel := b.Subscribe(t.Context(), nil)
		defer cancel()
		b.Close()
		b.Close() // idempotent
		waitClosed(t, ch)
		if err := b.Publish(AppTerminated{AppID: "/web"}); err != nil {
			t.Errorf("Publish on a closed bus: %v", err)
		}
		late, cancelLate := b.Subscribe(t.Context(), nil)
		defer cancelLate()
		if n := waitClosed(t, late); n != 0 {
			t.Errorf("subscription on a closed bus got %d frames", n)
		}
	})
}

func TestPublishEncodeError(t *testing.T) {
	b, _ := newTestBus(t)
	ch, cancel := b.Subscribe(t.Context(), nil)
	defer cancel()
	if err := b.Publish(DeploymentInfo{Plan: json.RawMessage(`{`)}); err == nil {
		t.Fatal("Publish of invalid plan JSON: no error")
	}
	if err := b.Publish(AppTerminated{AppID: "/web"}); err != nil {
		t.Fatal(err)
	}
	if f := recv(t, ch); f.Type != TypeAppTerminated {
		t.Fatalf("got %s first, want the bad event skipped", f.Type)
	}
}

func TestLightFrame(t *testing.T) {
	b, _ := newTestBus(t)
	ch, cancel := b.Subscribe(t.Context(), nil)
	defer cancel()
	heavy := json.RawMessage(`{"id":"d1","original":{"id":"/","apps":[]},"target":{"id":"/","apps":[]},"steps":[],"version":"v"}`)
	light := json.RawMessage(`{"id":"d1","steps":[],"version":"v"}`)
	for _, ev := range []Event{
		DeploymentInfo{Plan: heavy, CurrentStep: json.RawMessage(`{"actions":[]}`)},
		DeploymentSuccess{ID: "d1", Plan: light},
	} {
		if err := b.Publish(ev); err != nil {
			t.Fatal(err)
		}
	}
	f := recv(t, ch)
	if want := `{"plan":` + string(heavy) + `,"currentStep":{"actions":[]},"eventType":"deployment_info",` + testStamp + `}`; string(f.Data) != want {
		t.Errorf("Data = %s\nwant %s", f.Data, want)
	}
	if want := `{"plan":` + string(light) + `,"currentStep":{"actions":[]},"eventType":"deployment_info",` + testStamp + `}`; string(f.Light) != want {
		t.Errorf("Light = %s\nwant %s", f.Light, want)
	}
	if f := recv(t, ch); f.Light != nil {
		t.Errorf("light plan: Light = %s, want nil", f.Light)
	}
}
