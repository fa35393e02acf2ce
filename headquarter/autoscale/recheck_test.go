package autoscale_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/scout/local"
	"github.com/garrisonhq/garrison/scout/sample"
)

// fakeClock is the time the manager and the local source read.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// decisionLog keeps the published decisions.
type decisionLog struct {
	mu   sync.Mutex
	recs []autoscale.Record
}

func (l *decisionLog) Publish(ev events.Event) error {
	if d, ok := ev.(autoscale.DecisionEvent); ok {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.recs = append(l.recs, d.Record)
	}
	return nil
}

// ups are the acting scale-ups, first records only (not their ready
// updates).
func (l *decisionLog) ups() []autoscale.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []autoscale.Record
	for _, r := range l.recs {
		if r.Action == autoscale.Up && r.Acted && r.ReadyAt == nil {
			out = append(out, r)
		}
	}
	return out
}

// readLog is a source that keeps the apps of each Read; embedding the
// local source keeps its Live method.
type readLog struct {
	*local.Source
	mu    sync.Mutex
	reads [][]string
}

func (s *readLog) Read(ctx context.Context, req sample.Request) (sample.Readings, error) {
	var apps []string
	for _, a := range req.Apps {
		apps = append(apps, a.ID)
	}
	slices.Sort(apps)
	s.mu.Lock()
	s.reads = append(s.reads, apps)
	s.mu.Unlock()
	return s.Source.Read(ctx, req)
}

// runClock drives Manager.Run: each tick is one evaluation; a recheck Run
// asks for is reported on afters and fired by the test.
type runClock struct {
	tick   chan time.Time
	afters chan time.Duration
	fire   chan time.Time
}

func startRun(t *testing.T, m *autoscale.Manager) (*runClock, func()) {
	c := &runClock{tick: make(chan time.Time), afters: make(chan time.Duration, 8), fire: make(chan time.Time)}
	m.SetRunClock(c.tick, func(d time.Duration) <-chan time.Time {
		c.afters <- d
		return c.fire
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	// stop returns once Run has finished what it was doing.
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return c, stop
}

// send hands Run a tick or a recheck and waits until the apps' evaluation
// at the clock's time is made (generous deadlines: the machine may be
// busy), so that the test moves the clock only between evaluations.
func send(t *testing.T, m *autoscale.Manager, clock *fakeClock, ch chan time.Time, what string, apps ...string) {
	t.Helper()
	select {
	case ch <- time.Now():
	case <-time.After(time.Minute):
		t.Fatalf("Run did not take the %s", what)
	}
	at := clock.now()
	poll.True(t, time.Minute, what+" evaluated", func() bool {
		for _, app := range apps {
			evs := m.Evaluations(app)
			if len(evs) != 1 || !evs[0].At.Equal(at) {
				return false
			}
		}
		return true
	})
}

// A live source (scout/local): the evaluation that sees the step holds it
// (the reading spans the change), and half an interval later the app alone
// is read again, over a window all after the change, and scaled to the
// needed count in one go, half an interval before the next evaluation.
// Before the re-read, the step waited for that next evaluation.
func TestManagerRereadsAHeldStepOnALiveSourceHalfAnIntervalLater(t *testing.T) {
	etcd := etcdtest.New(t)
	cli := etcd.Client(t)
	// Two apps' instances: /shop/web takes the step, /shop/api stays idle.
	var webRequests, apiRequests atomic.Int64
	for _, inst := range []struct {
		app, task string
		n         *atomic.Int64
	}{{"/shop/web", "web.1", &webRequests}, {"/shop/api", "api.1", &apiRequests}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "# TYPE echo_requests_total counter\necho_requests_total %d\n", inst.n.Load())
		}))
		t.Cleanup(srv.Close)
		reg, err := registrar.Register(t.Context(), cli, inst.task[:3], inst.task,
			registrar.Endpoint{Addr: srv.Listener.Addr().String(), Metadata: map[string]string{"appId": inst.app, "taskId": inst.task}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Close(context.Background()) })
	}
	clock := &fakeClock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	t0 := clock.now()
	ls, err := local.New(nil, cli, local.WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ls.Close)
	src := &readLog{Source: ls}
	target := &memTarget{status: map[string]autoscale.AppStatus{"/shop/web": {Instances: 1, Ready: 1}, "/shop/api": {Instances: 1, Ready: 1}}}
	decisions := &decisionLog{}
	m := autoscale.New(autoscale.Config{Target: target, Sources: map[string]sample.Source{"local": src}, DefaultSource: "local",
		Events: decisions, Interval: time.Second, Now: clock.now})
	m.SetRules(parseRules(t, "rules:\n  - app: /shop/web\n    max: 10\n    quorum: 1\n    up: { qps: 10 }\n    down: { qps: 3 }\n"+
		"  - app: /shop/api\n    max: 10\n    quorum: 1\n    up: { qps: 10 }\n    down: { qps: 3 }\n"))
	c, stop := startRun(t, m)

	at := func(d time.Duration, web int64) {
		clock.set(t0.Add(d))
		webRequests.Store(web)
		apiRequests.Add(2)
	}
	at(0, 0)
	send(t, m, clock, c.tick, "tick at 0s", "/shop/web", "/shop/api") // the first Read: no rate yet
	at(time.Second, 5)
	send(t, m, clock, c.tick, "tick at 1s", "/shop/web", "/shop/api") // idle: 5 req/s
	// The step to 40 req/s half-way through the interval: 5 + 20 requests
	// read as 25 req/s, rising from 5: held.
	at(2*time.Second, 30)
	send(t, m, clock, c.tick, "tick at 2s", "/shop/web", "/shop/api")
	var d time.Duration
	select {
	case d = <-c.afters:
	case <-time.After(time.Minute):
		t.Fatal("no recheck asked for after the held evaluation")
	}
	if d != 500*time.Millisecond {
		t.Fatalf("recheck after %v, want half the interval; %+v", d, m.Evaluations(""))
	}
	// Half a second at 40 req/s: 20 requests.
	at(2500*time.Millisecond, 50)
	send(t, m, clock, c.fire, "recheck", "/shop/web")
	at(3*time.Second, 70)
	send(t, m, clock, c.tick, "tick at 3s", "/shop/web", "/shop/api")
	stop()

	ups := decisions.ups()
	if len(ups) != 1 || ups[0].To != 4 || !ups[0].At.Equal(t0.Add(2500*time.Millisecond)) || ups[0].Span != 0.5 {
		t.Fatalf("scale-ups %+v, want one to 4 at the recheck, 2.5 s, over half an interval", ups)
	}
	if target.scales == nil || !slices.Equal(target.scales, []int{4}) {
		t.Fatalf("scales %v, want [4]", target.scales)
	}
	// The recheck read /shop/web alone: /shop/api's window stays whole.
	want := [][]string{{"/shop/api", "/shop/web"}, {"/shop/api", "/shop/web"}, {"/shop/api", "/shop/web"}, {"/shop/web"}, {"/shop/api", "/shop/web"}}
	if !slices.EqualFunc(src.reads, want, slices.Equal) {
		t.Fatalf("reads %v, want %v", src.reads, want)
	}
	if n := len(c.afters); n != 0 {
		t.Fatalf("%d more rechecks asked for", n)
	}
}

// A source that is not live (Prometheus: its reading moves only when a
// scrape lands) is never re-read: the held step waits for the next
// evaluation, as before.
func TestManagerDoesNotRereadANonLiveSource(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	t0 := clock.now()
	src := &scriptedSource{}
	target := &memTarget{status: map[string]autoscale.AppStatus{"/shop/web": {Instances: 1, Ready: 1}}}
	decisions := &decisionLog{}
	m := autoscale.New(autoscale.Config{Target: target, Sources: map[string]sample.Source{"prometheus": src}, DefaultSource: "prometheus",
		Events: decisions, Interval: time.Second, Now: clock.now})
	m.SetRules(parseRules(t, "rules:\n  - app: /shop/web\n    max: 10\n    quorum: 1\n    up: { qps: 10 }\n    down: { qps: 3 }\n"))
	c, stop := startRun(t, m)
	for i, qps := range []float64{5, 25, 40} {
		clock.set(t0.Add(time.Duration(i) * time.Second))
		src.mu.Lock()
		src.readings = sample.Readings{"/shop/web": {sample.QPS: {Value: qps, OK: true, Instances: 1}}}
		src.mu.Unlock()
		send(t, m, clock, c.tick, fmt.Sprintf("tick at %ds", i), "/shop/web")
	}
	stop()
	ups := decisions.ups()
	if len(ups) != 1 || ups[0].To != 4 || !ups[0].At.Equal(t0.Add(2*time.Second)) || ups[0].Span != 0 {
		t.Fatalf("scale-ups %+v, want one to 4 at the next evaluation, 2 s", ups)
	}
	if n := len(c.afters); n != 0 {
		t.Fatalf("%d rechecks asked for on a source that is not live", n)
	}
	if len(src.requests) != 3 {
		t.Fatalf("%d reads, want one per evaluation", len(src.requests))
	}
}

// Explicit Evaluate and Recheck: Recheck reads only the metrics that were
// over (QPS here; CPU keeps its last reading: the local source's CPU comes
// from Docker's stats, which answer at the daemon's next one-second
// collection and held the re-read as long as the tick), and it does
// nothing a second time.
func TestManagerRecheckOnlyOnceAndOnlyTheOverMetrics(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	src := &liveScripted{}
	target := &memTarget{status: map[string]autoscale.AppStatus{"/a": {Instances: 1, Ready: 1}}}
	m := autoscale.New(autoscale.Config{Target: target, Sources: map[string]sample.Source{"l": src}, DefaultSource: "l",
		Interval: time.Second, Now: clock.now})
	m.SetRules(parseRules(t, "rules:\n  - app: /a\n    max: 10\n    quorum: 1\n    up: { qps: 10, cpu: 0.8 }\n    down: { qps: 3, cpu: 0.2 }\n"))
	src.set(5)
	m.Evaluate(t.Context())
	if recs := m.Recheck(t.Context()); recs != nil || len(src.requests) != 1 {
		t.Fatalf("a recheck with nothing held: %+v, %d reads", recs, len(src.requests))
	}
	clock.set(clock.now().Add(time.Second))
	src.set(25)
	m.Evaluate(t.Context())
	clock.set(clock.now().Add(500 * time.Millisecond))
	src.cpu = 0.5 // answered but not asked for: the decision keeps 0.3
	src.set(40)
	recs := m.Recheck(t.Context())
	if len(recs) != 1 || recs[0].Action != autoscale.Up || recs[0].To != 4 || recs[0].Span != 0.5 {
		t.Fatalf("recheck %+v", recs)
	}
	if got := src.requests[2].Apps[0].Metrics; !slices.Equal(got, []sample.Metric{sample.QPS}) {
		t.Fatalf("the recheck asked for %v, want only qps", got)
	}
	for _, mi := range recs[0].Inputs {
		if mi.Metric == sample.CPU && (!mi.HasData || mi.Value != 0.3) {
			t.Fatalf("cpu in the recheck %+v, want its last reading, 0.3", mi)
		}
	}
	if recs := m.Recheck(t.Context()); recs != nil || len(src.requests) != 3 {
		t.Fatalf("a second recheck: %+v, %d reads", recs, len(src.requests))
	}
}

// liveScripted is a scripted source that says it is live; it answers
// every metric whatever the request asks for.
type liveScripted struct {
	scriptedSource
	cpu float64
}

func (*liveScripted) Live() bool { return true }

func (s *liveScripted) set(qps float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cpu == 0 {
		s.cpu = 0.3
	}
	s.readings = sample.Readings{"/a": {sample.QPS: {Value: qps, OK: true, Instances: 1}, sample.CPU: {Value: s.cpu, OK: true, Instances: 1}}}
}
