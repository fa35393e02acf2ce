package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// waitLimit bounds every wait in these tests; nothing here should take
// more than a fraction of it.
const waitLimit = 10 * time.Second

// fast is a check interval that makes a test see several checks quickly.
const fast = 5 * time.Millisecond

// harness is a running Monitor whose notifications land in channels.
type harness struct {
	m         *Monitor
	changes   chan Change
	unhealthy chan Unhealthy
}

// start runs a Monitor until the test ends and checks that Run returns.
func start(t testing.TB, opts ...Option) *harness {
	t.Helper()
	h := &harness{changes: make(chan Change, 10000), unhealthy: make(chan Unhealthy, 10000)}
	opts = append([]Option{
		WithOnChange(func(c Change) { h.changes <- c }),
		WithOnUnhealthy(func(u Unhealthy) { h.unhealthy <- u }),
	}, opts...)
	h.m = NewMonitor(opts...)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- h.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitLimit):
			t.Error("Run did not return after its context ended")
		}
	})
	return h
}

func (h *harness) add(t testing.TB, taskID string, startedAt time.Time, checks ...Check) {
	t.Helper()
	if err := h.m.Add(taskID, "inst-"+taskID, startedAt, checks); err != nil {
		t.Fatal(err)
	}
}

// recv waits for the next value on ch.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// none asserts that nothing is waiting on ch.
func none[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %+v", what, v)
	default:
	}
}

// eventually polls cond until it holds or the wait limit passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// result returns check i of a task, failing the test when there is none.
func result(t testing.TB, m *Monitor, taskID string, i int) Result {
	t.Helper()
	rs := m.Results(taskID)
	if i >= len(rs) {
		t.Fatalf("task %s has %d results, want index %d", taskID, len(rs), i)
	}
	return rs[i]
}

// target is an HTTP server on 127.0.0.1 answering every request with a
// status that the test can switch, counting the requests.
type target struct {
	srv    *httptest.Server
	hits   atomic.Int64
	status atomic.Int64
}

func newTarget(t testing.TB, status int) *target {
	t.Helper()
	tg := &target{}
	tg.status.Store(int64(status))
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.hits.Add(1)
		w.WriteHeader(int(tg.status.Load()))
	}))
	t.Cleanup(tg.srv.Close)
	return tg
}

func (tg *target) port(t testing.TB) int { return portOf(t, tg.srv.Listener.Addr()) }

// check is an HTTP check of tg at the fast interval.
func (tg *target) check(t testing.TB) Check {
	return Check{Protocol: HTTP, Port: tg.port(t), Path: "/health", Interval: fast, Timeout: 5 * time.Second}
}

// waitHits waits until tg has served n more requests than now.
func (tg *target) waitHits(t testing.TB, n int64) {
	t.Helper()
	goal := tg.hits.Load() + n
	eventually(t, strconv.FormatInt(n, 10)+" more requests", func() bool { return tg.hits.Load() >= goal })
}

func portOf(t testing.TB, a net.Addr) int {
	t.Helper()
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		t.Fatalf("%v is not a TCP address", a)
	}
	return ta.Port
}

// settableClock is an injected clock the test moves by hand.
type settableClock struct{ ns atomic.Int64 }

func newClock(t time.Time) *settableClock {
	c := &settableClock{}
	c.set(t)
	return c
}

func (c *settableClock) now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }
func (c *settableClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
