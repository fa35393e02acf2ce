package events

import (
	"sync"
	"testing"
	"time"
)

// BenchmarkFanout sends 10,000 events to 100 subscribers through the bus,
// and the same through plain buffered channels: each event encoded once
// with Marshal, then the Frame sent to every channel. Buffers hold the
// whole run, so neither side drops or blocks; each iteration ends when
// every subscriber has received every event. Reported: ns per event
// delivered to all subscribers for both, and their ratio.
func BenchmarkFanout(b *testing.B) {
	const events, subs = 10_000, 100
	ev := StatusUpdate{SlaveID: "agent-1", TaskID: "web.0b1c", TaskStatus: "TASK_RUNNING", AppID: "/web", Host: "node1", Ports: []int{31000}, Version: "2015-09-25T15:13:48.343Z"}
	now := func() time.Time { return testTime }

	var busTime, chanTime time.Duration
	b.ReportAllocs()
	for b.Loop() {
		busTime += fanoutBus(b, ev, events, subs, now)
		chanTime += fanoutChans(b, ev, events, subs, now)
	}
	perEvent := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*events) }
	b.ReportMetric(perEvent(busTime), "ns/event-bus")
	b.ReportMetric(perEvent(chanTime), "ns/event-chan")
	b.ReportMetric(float64(busTime)/float64(chanTime), "bus/chan")
}

// consume starts n readers of chans and returns a wait that fails b unless
// each got want frames before its channel closed.
func consume(b *testing.B, chans []<-chan Frame, want int) func() {
	var wg sync.WaitGroup
	counts := make([]int, len(chans))
	for i, ch := range chans {
		wg.Go(func() {
			for range ch {
				counts[i]++
			}
		})
	}
	return func() {
		wg.Wait()
		for i, n := range counts {
			if n != want {
				b.Fatalf("subscriber %d got %d frames, want %d", i, n, want)
			}
		}
	}
}

func fanoutBus(b *testing.B, ev Event, events, subs int, now func() time.Time) time.Duration {
	bus := NewBus(WithBuffer(events), WithClock(now), WithLogger(quietLogger()))
	chans := make([]<-chan Frame, subs)
	for i := range chans {
		var cancel func()
		chans[i], cancel = bus.Subscribe(b.Context(), nil)
		defer cancel()
	}
	wait := consume(b, chans, events)
	start := time.Now()
	for range events {
		if err := bus.Publish(ev); err != nil {
			b.Fatal(err)
		}
	}
	bus.Close()
	wait()
	return time.Since(start)
}

func fanoutChans(b *testing.B, ev Event, events, subs int, now func() time.Time) time.Duration {
	chans := make([]chan Frame, subs)
	recv := make([]<-chan Frame, subs)
	for i := range chans {
		chans[i] = make(chan Frame, events)
		recv[i] = chans[i]
	}
	wait := consume(b, recv, events)
	start := time.Now()
	for range events {
		data, err := Marshal(ev, now())
		if err != nil {
			b.Fatal(err)
		}
		f := Frame{Type: ev.EventType(), Data: data}
		for _, ch := range chans {
			ch <- f
		}
	}
	for _, ch := range chans {
		close(ch)
	}
	wait()
	return time.Since(start)
}
