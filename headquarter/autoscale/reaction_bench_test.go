package autoscale_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/health"
	"github.com/garrisonhq/garrison/headquarter/promsd"
	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/loadgen"
	"github.com/garrisonhq/garrison/internal/promtest"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/scout/local"
	scoutprom "github.com/garrisonhq/garrison/scout/prometheus"
	"github.com/garrisonhq/garrison/scout/sample"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/process"
)

const echoImage = "garrison-test/echo:reaction"

// Issue 11's step: 0 to 40 req/s against up.qps 10 per instance, so 4
// instances are needed; the rule has the shape the README recommends (QPS
// and CPU, either one scales up, memory not counted).
const (
	stepRate   = 40
	stepNeeded = 4
	stepRuns   = 5
	reactRule  = `rules:
  - app: %s
    min: 1
    max: 10
    quorum: 1
    up:   { qps: 10, cpu: 0.8 }
    down: { qps: 3, cpu: 0.2 }
    tolerance: %g
`
)

// BenchmarkReactionToLoadStep: a load step to four times one instance's
// QPS target on a one-instance Docker app, spread over the registered
// instances as a caller would, at a random phase of the evaluation
// interval, five runs per op. It prints, per stage, min/median/max seconds
// after the step: the first decision, the first new instance healthy and
// registered, the needed count healthy and registered; the highest and
// final count and the failed requests; and the split of each new instance
// (detect: step to decision; decide: decision to the task staged; launch:
// staged to running; healthy: running to its first passing check;
// registered: to its key in etcd), beside one container create+start
// through the Docker API alone. It fails unless every run settles at
// exactly the needed count without going above it.
//
// "defaults" is what `garrison up` gives a user (1 s evaluation, the local
// source, 250 ms health checks until the first pass, the 10% band);
// "tuned" evaluates every 500 ms with a 20% band: a rate over half a
// second is twice as noisy (one request more or less is 5% at 40 req/s).
// With the 10% band it overshot to 5 in one run of five, confirmation
// and all: one half-second reading was 49 req/s of 40, a fifth high, more
// than the band a reading is confirmed within.
//
// "prometheus" is the defaults with the Prometheus source set up as the
// README says: a 1 s scrape of every registered instance, found through
// garrison's http_sd (headquarter/promsd) refreshed every second, and the
// default queries (irate over the rule's window).
func BenchmarkReactionToLoadStep(b *testing.B) {
	env := newReactionEnv(b)
	b.Run("defaults", func(b *testing.B) { env.bench(b, "local", autoscale.DefaultInterval, rulefmt.DefaultTolerance) })
	b.Run("tuned-500ms-band20", func(b *testing.B) { env.bench(b, "local", 500*time.Millisecond, 0.2) })
	b.Run("prometheus", func(b *testing.B) {
		sd := httptest.NewServer(promsd.New(env.etcd))
		b.Cleanup(sd.Close)
		prom := promtest.New(b, promtest.Config{Interval: time.Second, Jobs: []promtest.Job{{Name: "services", HTTPSD: sd.URL}}})
		src, err := scoutprom.New(prom.URL)
		if err != nil {
			b.Fatal(err)
		}
		env.sources["prometheus"] = src
		env.bench(b, "prometheus", autoscale.DefaultInterval, rulefmt.DefaultTolerance)
	})
}

type reactionEnv struct {
	cli   *client.Client
	etcd  *clientv3.Client
	drv   *docker.Driver
	sched *scheduler.Scheduler
	bus   *events.Bus
	// sources by name: local, and prometheus in its sub-benchmark.
	sources map[string]sample.Source
	ctx     context.Context
	seq     int
}

func newReactionEnv(b *testing.B) *reactionEnv {
	cli := dockertest.Client(b)
	dockertest.BuildGoImage(b, cli, echoImage, "github.com/garrisonhq/garrison/examples/echo")
	srv := etcdtest.New(b)
	etcd := srv.Client(b)
	// A namespace of its own: other tests' garrisons share the daemon, and
	// each adopts or kills the containers of its namespace only.
	drv, err := docker.New(cli, docker.WithNamespace(fmt.Sprintf("reaction-bench-%d", time.Now().UnixNano())))
	if err != nil {
		b.Fatal(err)
	}
	proc, err := process.New(filepath.Join(b.TempDir(), "tasks"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { proc.Close() })
	bus := events.NewBus()
	// garrison up's defaults: health checks every 250 ms until the first
	// pass, 1 s drain, 1 s reconcile.
	sched := scheduler.New(scheduler.Config{Store: store.New(etcd), Docker: drv, Process: proc, Registry: etcd,
		HealthOptions: []health.Option{health.WithStartupInterval(250 * time.Millisecond)},
		Events:        bus, PortRange: [2]int{41000, 41499}, DrainDelay: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { sched.Run(ctx) })
	b.Cleanup(func() { cancel(); wg.Wait() })
	src, err := local.New(local.FromDriver(drv), etcd)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(src.Close)
	return &reactionEnv{cli: cli, etcd: etcd, drv: drv, sched: sched, bus: bus, sources: map[string]sample.Source{"local": src}, ctx: ctx}
}

// reactionRun is one run's figures, in seconds after the step.
type reactionRun struct {
	firstDecision, firstReady, neededReady float64
	highest, final, upSteps                int
	failed                                 int64
	decide, launch, healthy, registered    []float64
}

func (env *reactionEnv) bench(b *testing.B, source string, interval time.Duration, tolerance float64) {
	var runs []reactionRun
	var raw []float64
	for b.Loop() {
		for range stepRuns {
			runs = append(runs, env.run(b, source, interval, tolerance))
			raw = append(raw, rawStart(b, env.cli).Seconds())
		}
	}
	pick := func(f func(r reactionRun) float64) []float64 {
		out := make([]float64, 0, len(runs))
		for _, r := range runs {
			out = append(out, f(r))
		}
		return out
	}
	var decide, launch, healthy, registered []float64
	for _, r := range runs {
		decide = append(decide, r.decide...)
		launch = append(launch, r.launch...)
		healthy = append(healthy, r.healthy...)
		registered = append(registered, r.registered...)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d runs, %s source, evaluation every %v, tolerance %g, step 0 -> %d req/s, %d needed\n", len(runs), source, interval, tolerance, stepRate, stepNeeded)
	fmt.Fprintf(&sb, "%-42s %8s %8s %8s\n", "stage (s after the step, or count)", "min", "median", "max")
	line := func(name string, xs []float64) {
		lo, med, hi := spread(xs)
		fmt.Fprintf(&sb, "%-42s %8.2f %8.2f %8.2f\n", name, lo, med, hi)
	}
	line("first decision (detect)", pick(func(r reactionRun) float64 { return r.firstDecision }))
	line("first new instance healthy+registered", pick(func(r reactionRun) float64 { return r.firstReady }))
	line("needed count healthy+registered", pick(func(r reactionRun) float64 { return r.neededReady }))
	line("highest count", pick(func(r reactionRun) float64 { return float64(r.highest) }))
	line("final count", pick(func(r reactionRun) float64 { return float64(r.final) }))
	line("scale-up steps", pick(func(r reactionRun) float64 { return float64(r.upSteps) }))
	line("failed requests", pick(func(r reactionRun) float64 { return float64(r.failed) }))
	line("split: decide (decision to staged)", decide)
	line("split: launch (staged to running)", launch)
	line("split: healthy (running to first pass)", healthy)
	line("split: registered (pass to etcd key)", registered)
	line("baseline: docker create+start", raw)
	// Printed whole: b.Log truncates a benchmark's output.
	fmt.Fprintf(os.Stderr, "\n%s %s", b.Name(), sb.String())

	_, med, _ := spread(pick(func(r reactionRun) float64 { return r.neededReady }))
	b.ReportMetric(med, "needed-ready-s")
	_, det, _ := spread(pick(func(r reactionRun) float64 { return r.firstDecision }))
	b.ReportMetric(det, "detect-s")
	_, l, _ := spread(launch)
	_, rs, _ := spread(raw)
	if rs > 0 {
		b.ReportMetric(l/rs, "launch/docker-start")
	}
}

// spread is min, median, max.
func spread(xs []float64) (lo, med, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}

func (env *reactionEnv) run(b *testing.B, source string, interval time.Duration, tolerance float64) reactionRun {
	ctx := env.ctx
	env.seq++
	appID := fmt.Sprintf("/bench/react%d-%d", interval/time.Millisecond, env.seq)
	service := app.ServiceName(appID)
	// The fastest check Marathon's fields allow: every 2 s, timeout 1 s.
	a, err := app.Parse([]byte(fmt.Sprintf(`{"id":%q,"instances":1,"cpus":0.1,"mem":32,"args":["-register=false"],
		"container":{"type":"DOCKER","docker":{"image":%q}},
		"healthChecks":[{"protocol":"HTTP","path":"/health","intervalSeconds":2,"timeoutSeconds":1,"gracePeriodSeconds":5}]}`, appID, echoImage)), app.Environment{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := env.sched.Deploy(ctx, []scheduler.Change{{App: a, Create: true}}, false, "bench"); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if _, err := env.sched.Deploy(ctx, []scheduler.Change{{Delete: appID}}, true, "bench"); err != nil {
			b.Fatal(err)
		}
		for len(env.sched.Tasks(appID)) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}()
	waitReady(b, env.sched, appID, 1)
	reg := watchRegistry(ctx, env.etcd, service)
	defer reg.stop()

	decisions, stopDecisions := env.bus.Subscribe(ctx, []string{autoscale.DecisionEvent{}.EventType()})
	defer stopDecisions()
	m := autoscale.New(autoscale.Config{Target: autoscale.SchedulerTarget(env.sched), Sources: env.sources,
		DefaultSource: source, Events: env.bus, Interval: interval})
	rules, err := rulefmt.Parse([]byte(fmt.Sprintf(reactRule, appID, tolerance)), "bench")
	if err != nil {
		b.Fatal(err)
	}
	m.SetRules(rules)
	mctx, stopManager := context.WithCancel(ctx)
	var mwg sync.WaitGroup
	mwg.Go(func() { m.Run(mctx) })
	defer func() { stopManager(); mwg.Wait() }()
	// Idle first, until the source has a rate (it needs two reads).
	deadline := time.Now().Add(time.Minute)
	for {
		evs := m.Evaluations(appID)
		if len(evs) == 1 && evs[0].Inputs[0].HasData {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: no QPS data while idle: %+v", appID, evs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The step at a random phase of the evaluation interval.
	phase := time.Duration(rand.Int64N(int64(interval)))
	time.Sleep(phase)

	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan loadgen.Result, 1)
	step := time.Now()
	go func() {
		loadDone <- loadgen.Run(loadCtx, loadgen.Config{Rate: stepRate, Duration: 2 * time.Minute, MaxRequests: stepRate * 120,
			Target: reg.next})
	}()
	var run reactionRun
	run.highest = 1
	var neededAt time.Time
	deadline = step.Add(time.Minute)
	for {
		st, _ := env.sched.ScaleStatus(appID)
		run.highest = max(run.highest, st.Instances, st.Running)
		if neededAt.IsZero() && st.Ready >= stepNeeded {
			neededAt = time.Now()
		}
		// Hold the load a while after the needed count is there: it must
		// stay there, neither growing nor shrinking.
		if !neededAt.IsZero() && time.Since(neededAt) > 5*interval+2*time.Second {
			run.final = st.Instances
			break
		}
		if time.Now().After(deadline) {
			stopLoad()
			b.Fatalf("%s: %d of %d needed instances ready a minute after the step (desired %d)", appID, st.Ready, stepNeeded, st.Instances)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopLoad()
	res := <-loadDone
	run.failed = res.Failed
	if res.Failed > 0 {
		b.Logf("%s: %d of %d requests failed, first: %s", appID, res.Failed, res.Sent, res.FirstError)
	}

	var first *autoscale.Record
	for draining := true; draining; {
		select {
		case f, ok := <-decisions:
			if !ok {
				draining = false
				break
			}
			var rec autoscale.Record
			if err := json.Unmarshal(f.Data, &rec); err != nil {
				b.Fatal(err)
			}
			if rec.App == appID && rec.Action == autoscale.Up && rec.Acted && rec.ReadyAt == nil {
				run.upSteps++
				if first == nil {
					first = &rec
				}
			}
		default:
			draining = false
		}
	}
	if first == nil {
		b.Fatalf("%s: no scale-up decision", appID)
	}
	run.firstDecision = first.At.Sub(step).Seconds()
	run.neededReady = neededAt.Sub(step).Seconds()
	regAt := reg.stop()
	for _, ti := range env.sched.Tasks(appID) {
		staged, _ := app.ParseVersion(ti.StagedAt)
		if staged.Before(first.At) {
			continue // the first instance
		}
		at, found := regAt[ti.ID]
		if found && (run.firstReady == 0 || at.Sub(step).Seconds() < run.firstReady) {
			run.firstReady = at.Sub(step).Seconds()
		}
		started, _ := app.ParseVersion(ti.StartedAt)
		run.decide = append(run.decide, staged.Sub(first.At).Seconds())
		run.launch = append(run.launch, started.Sub(staged).Seconds())
		if len(ti.HealthCheckResults) > 0 && ti.HealthCheckResults[0].FirstSuccess.After(started) {
			ok := ti.HealthCheckResults[0].FirstSuccess
			run.healthy = append(run.healthy, ok.Sub(started).Seconds())
			if found {
				run.registered = append(run.registered, at.Sub(ok).Seconds())
			}
		}
	}
	b.Logf("%s: step %v after the idle reading (interval %v): decision +%.2fs, first new ready +%.2fs, %d ready +%.2fs, highest %d, final %d, %d up steps, %d failed",
		appID, phase.Round(time.Millisecond), interval, run.firstDecision, run.firstReady,
		stepNeeded, run.neededReady, run.highest, run.final, run.upSteps, run.failed)
	// The assertion, not a timing: the step lands on the needed count.
	if run.final != stepNeeded || run.highest > stepNeeded {
		b.Errorf("%s: settled at %d (highest %d), want exactly %d", appID, run.final, run.highest, stepNeeded)
	}
	return run
}

func waitReady(b *testing.B, s *scheduler.Scheduler, appID string, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, _ := s.ScaleStatus(appID)
		if st.Ready >= n && !st.Deployment {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d ready after 2 minutes", appID, st.Ready, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// registryView follows one service in the registry as a caller's
// discovery would: the live endpoints (requests go round-robin over
// them) and when each instance first appeared.
type registryView struct {
	mu    sync.Mutex
	addrs map[string]string // instance id -> address
	order []string
	rr    int
	seen  map[string]time.Time
	stop  func() map[string]time.Time
}

func watchRegistry(ctx context.Context, etcd *clientv3.Client, service string) *registryView {
	v := &registryView{addrs: map[string]string{}, seen: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(ctx)
	resp, err := etcd.Get(ctx, registrar.ServicePrefix(service), clientv3.WithPrefix())
	rev := int64(0)
	if err == nil {
		rev = resp.Header.Revision + 1
		for _, kv := range resp.Kvs {
			v.put(kv.Key, kv.Value, time.Time{})
		}
	}
	done := make(chan struct{})
	ch := etcd.Watch(ctx, registrar.ServicePrefix(service), clientv3.WithPrefix(), clientv3.WithRev(rev))
	go func() {
		defer close(done)
		for resp := range ch {
			now := time.Now()
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypePut {
					v.put(ev.Kv.Key, ev.Kv.Value, now)
					continue
				}
				if _, id, ok := registrar.ParseKey(string(ev.Kv.Key)); ok {
					v.mu.Lock()
					delete(v.addrs, id)
					v.order = slices.DeleteFunc(v.order, func(s string) bool { return s == id })
					v.mu.Unlock()
				}
			}
		}
	}()
	v.stop = func() map[string]time.Time {
		cancel()
		<-done
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.seen
	}
	return v
}

func (v *registryView) put(key, value []byte, at time.Time) {
	inst, err := registrar.DecodeInstance(key, value)
	if err != nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.addrs[inst.ID]; !ok {
		v.order = append(v.order, inst.ID)
	}
	v.addrs[inst.ID] = inst.Endpoint.Addr
	if _, dup := v.seen[inst.ID]; !dup && !at.IsZero() {
		v.seen[inst.ID] = at
	}
}

func (v *registryView) next() (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.order) == 0 {
		return "", errors.New("no registered instance")
	}
	v.rr = (v.rr + 1) % len(v.order)
	return "http://" + v.addrs[v.order[v.rr]] + "/", nil
}

// rawStart is the baseline: one container create+start through the Docker
// API, then removed.
func rawStart(b *testing.B, cli *client.Client) time.Duration {
	ctx := context.Background()
	start := time.Now()
	resp, err := cli.ContainerCreate(ctx, &container.Config{Image: echoImage, Cmd: []string{"-register=false"}, Env: []string{"PORT0=41999"}},
		&container.HostConfig{NetworkMode: "host"}, nil, nil, "")
	if err != nil {
		b.Fatal(err)
	}
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	if err := cli.ContainerRemove(ctx, resp.ID, container.RemoveOptions{Force: true}); err != nil {
		b.Fatal(err)
	}
	return took
}
