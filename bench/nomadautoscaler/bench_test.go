package nomadautoscaler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/loadgen"
	"github.com/garrisonhq/garrison/registrar/discovery"
	"github.com/garrisonhq/garrison/signalman/nomad"
)

// The step: 0 to four times one instance's target, so 4 instances are
// needed.
const (
	target     = 10 // requests per second one instance should carry
	stepRate   = 4 * target
	needed     = 4
	maxCount   = 10
	runCap     = 90 * time.Second  // a tuned run that has not settled by then fails
	defaultCap = 150 * time.Second // nomad-autoscaler's defaults: reported as capped
	// hold is how long the load stays on once the needed count is there,
	// to catch a late overshoot (garrison's evaluation is every second,
	// nomad-autoscaler's cooldown 5 s).
	hold = 8 * time.Second
)

// garrisonRule has the shape the README recommends: QPS and CPU, either
// one scales up; every other field at its default.
const garrisonRule = `{"rules":[{"app":%q,"min":1,"max":%d,"quorum":1,"up":{"qps":%d,"cpu":0.8},"down":{"qps":3,"cpu":0.2}}]}`

// nasQuery is nomad-autoscaler's check: the per-instance request rate, as
// the average over the instances Prometheus has two samples of (a new one
// counts once it is scraped twice, like garrison's local source, which
// divides by the instances that reported data).
const nasQuery = `avg(sum by (task) (irate(echo_requests_total{service=%q}[5s])))`

// stage names, in print order.
var stages = []string{
	"metric visible",
	"decision (scale asked)",
	"scale reached Nomad",
	"first new allocation placed",
	"first new allocation running",
	"needed count running",
	"needed count registered",
	"needed count running+registered",
	"max count",
	"final count",
	"failed requests",
}

// run is one load step's figures: seconds after the step, or counts.
type run struct {
	v      map[string]float64
	capped bool
}

// side is one autoscaler: how its app is created, read and removed.
type side struct {
	name string
	// jobs is the Nomad client of the namespace its jobs run in.
	jobs *nomadapi.Client
	// create starts the one-instance app and returns its Nomad job id and
	// service name in the registry.
	create func(ctx context.Context, seq int) (job, service string, err error)
	// watching reports whether the autoscaler reads the idle app's metric
	// (so the step is seen from a known idle state).
	watching func(ctx context.Context) (bool, string)
	// over reports whether the autoscaler's metric is over the target now.
	over func(ctx context.Context) bool
	// decided is when it first asked for more instances after step.
	decided func(ctx context.Context, step time.Time) time.Time
	remove  func(ctx context.Context)
	// trace, when set, says what the autoscaler saw between the step and
	// its decision (its evaluations), for the log.
	trace func() string
	cap   time.Duration
	// settle: the benchmark fails unless the run ends at exactly the
	// needed count without going above it.
	settle bool
}

var (
	resultsMu sync.Mutex
	results   = map[string][]run{}
	seq       int
	// defaultsDone: nomad-autoscaler's defaults take minutes; they run
	// once per test binary.
	defaultsDone bool
)

// BenchmarkSideBySide: on one Nomad agent (raw `nomad agent -dev`, docker
// driver), the echo service as a one-instance Docker job, a load step from
// 0 to four times one instance's target (40 req/s open-loop, spread over
// the instances registered in etcd), at a random phase of a second, once
// scaled by garrison (`garrison up --nomad`, its defaults, the README's
// rule shape, its local metric source) and once by nomad-autoscaler 0.4.6
// (a target-value policy of 10 req/s per instance on Prometheus, tuned:
// evaluation 1 s, cooldown 5 s, no update block so no deployment gates the
// count; Prometheus scrapes every second). A run steps the load on a
// settled app: one instance running and registered, no deployment, the
// autoscaler reading its idle metric. Each iteration is one run of each,
// in alternating order; each call of the benchmark (-count) is a fresh
// environment (agent, garrison, Prometheus, nomad-autoscaler). The first
// iteration of the test binary also runs nomad-autoscaler with its
// defaults (evaluation 10 s, cooldown 5 m, Nomad's default update block),
// capped at 150 s. It fails unless every garrison run settles at exactly
// the needed count, never above it.
//
// The figures. Per iteration, benchstat's lines: garrison-s and
// nomad-autoscaler-s, seconds from the step to the needed count running
// and registered, and their ratio. At the end, a table of every run of the
// test binary: per side and stage, seconds after the step (the last three
// stages are counts) as min / median / mean / max over the runs, and
// garrison's figure over nomad-autoscaler tuned's, of the medians and of
// the means. Both, because nomad-autoscaler is bimodal: about 3 s when its
// first reading, which spans the step, happens to ask for the needed
// count, about 7.5 s when it asks for fewer and the rest waits its 5 s
// cooldown; the median hides whichever mode has fewer runs, the mean
// weighs them as they came. The stages: "metric visible", the first poll
// (every 100 ms) that saw the autoscaler's metric over the target;
// "decision", when it asked for more (garrison: its first acting up
// record; nomad-autoscaler: its scaling event in Nomad); "scale reached
// Nomad", the job's first count-raising scaling event; "first new
// allocation placed" and "running", from Nomad's allocations; "needed
// count running", "registered" (in etcd, as a caller sees it), and
// "running+registered", the later of the two; "max count", the highest
// count asked for or running; "final count", the count at the end of the
// hold; "failed requests", of the load.
//
// The number of iterations: make bench's BENCH_COUNT (default 5), one
// fresh environment each; -benchtime=Nx runs N in one environment.
//
//	make bench BENCH=SideBySide BENCH_PKGS=./bench/nomadautoscaler BENCH_COUNT=5
func BenchmarkSideBySide(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	sides := []side{e.garrisonSide(), e.nasSide(true)}
	for b.Loop() {
		seq++
		if seq%2 == 0 {
			slices.Reverse(sides)
		}
		got := map[string]run{}
		for _, s := range sides {
			r := e.run(ctx, b, s)
			got[s.name] = r
			record(s.name, r)
		}
		if !defaultsDone {
			defaultsDone = true
			s := e.nasSide(false)
			record(s.name, e.run(ctx, b, s))
		}
		g, n := got["garrison"].v["needed count running+registered"], got["nomad-autoscaler-tuned"].v["needed count running+registered"]
		b.ReportMetric(g, "garrison-s")
		b.ReportMetric(n, "nomad-autoscaler-s")
		if n > 0 {
			b.ReportMetric(g/n, "garrison/nomad-autoscaler")
		}
	}
}

func record(name string, r run) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results[name] = append(results[name], r)
}

// printTable prints every run of the test binary, per side and stage:
// min / median / mean / max, then garrison's figure over nomad-autoscaler
// tuned's, of the medians and of the means. TestMain calls it once the
// benchmarks are over (printed during one, it would split the result line
// benchstat reads). No line starts with "Benchmark" or "word:", which
// benchstat would parse.
func printTable(w io.Writer) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	var sb strings.Builder
	names := []string{"garrison", "nomad-autoscaler-tuned", "nomad-autoscaler-defaults"}
	fmt.Fprintf(&sb, "\nside by side on Nomad (BenchmarkSideBySide, all runs): load step 0 -> %d req/s, target %d req/s per instance, %d needed; seconds after the step, or counts (min / median / mean / max over the runs); g/nas: garrison over nomad-autoscaler-tuned, of the medians and of the means\n",
		stepRate, target, needed)
	fmt.Fprintf(&sb, "%-34s", "stage")
	for _, n := range names {
		fmt.Fprintf(&sb, " %34s", fmt.Sprintf("%s (%d)", n, len(results[n])))
	}
	fmt.Fprintf(&sb, " %12s %12s\n", "g/nas median", "g/nas mean")
	for _, st := range stages {
		fmt.Fprintf(&sb, "%-34s", st)
		var meds, means []float64
		for _, n := range names {
			var xs []float64
			for _, r := range results[n] {
				if v, ok := r.v[st]; ok {
					xs = append(xs, v)
				}
			}
			if len(xs) == 0 {
				fmt.Fprintf(&sb, " %34s", "-")
				meds, means = append(meds, 0), append(means, 0)
				continue
			}
			lo, med, mean, hi := spread(xs)
			fmt.Fprintf(&sb, " %34s", fmt.Sprintf("%.2f / %.2f / %.2f / %.2f", lo, med, mean, hi))
			meds, means = append(meds, med), append(means, mean)
		}
		if meds[1] > 0 {
			fmt.Fprintf(&sb, " %12.2f", meds[0]/meds[1])
		} else {
			fmt.Fprintf(&sb, " %12s", "-")
		}
		if means[1] > 0 {
			fmt.Fprintf(&sb, " %12.2f", means[0]/means[1])
		} else {
			fmt.Fprintf(&sb, " %12s", "-")
		}
		sb.WriteString("\n")
	}
	for _, r := range results["nomad-autoscaler-defaults"] {
		if r.capped {
			fmt.Fprintf(&sb, "(nomad-autoscaler-defaults capped at %v before the needed count was running and registered)\n", defaultCap)
		}
	}
	fmt.Fprint(w, sb.String())
}

// spread is min, median (the upper one of an even count), mean and max.
func spread(xs []float64) (lo, med, mean, hi float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	for _, x := range s {
		mean += x
	}
	return s[0], s[len(s)/2], mean / float64(len(s)), s[len(s)-1]
}

// run is one load step on a fresh one-instance app.
func (e *env) run(ctx context.Context, b *testing.B, s side) run {
	ctx, cancel := context.WithTimeout(ctx, s.cap+3*time.Minute)
	defer cancel()
	job, service, err := s.create(ctx, seq)
	if err != nil {
		b.Fatalf("%s: %v", s.name, err)
	}
	defer s.remove(context.WithoutCancel(ctx))
	svc, err := discovery.New(ctx, e.etcd, service)
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	// Idle first: one allocation running and registered, and the
	// autoscaler reading the idle metric.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ok, state := s.watching(ctx)
		if ok && len(svc.Snapshot().Instances) == 1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s %s: not idle and watched after 3 minutes: %s, %d registered\ngarrison log:\n%s\nnomad-autoscaler log:\n%s",
				s.name, job, state, len(svc.Snapshot().Instances), tailFile(e.garLog, 20), tailFile(e.nasLog, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	initial := map[string]bool{}
	for _, in := range svc.Snapshot().Instances {
		initial[in.ID] = true
	}
	allocs, _, err := s.jobs.Jobs().Allocations(job, false, nil)
	if err != nil || len(allocs) != 1 {
		b.Fatalf("%s %s: want one allocation before the step: %d, %v", s.name, job, len(allocs), err)
	}
	initialAlloc := allocs[0].ID
	time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))

	// Registration times, from the registry as a caller sees it.
	regMu := sync.Mutex{}
	regAt := map[string]time.Time{}
	regCtx, stopReg := context.WithCancel(ctx)
	regDone := make(chan struct{})
	go func() {
		defer close(regDone)
		for {
			select {
			case <-regCtx.Done():
				return
			case <-svc.Updates():
			}
			now := time.Now()
			regMu.Lock()
			for _, in := range svc.Snapshot().Instances {
				if _, ok := regAt[in.ID]; !ok && !initial[in.ID] {
					regAt[in.ID] = now
				}
			}
			regMu.Unlock()
		}
	}()

	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan loadgen.Result, 1)
	step := time.Now()
	go func() {
		limit := s.cap + hold + 30*time.Second
		loadDone <- loadgen.Run(loadCtx, loadgen.Config{Rate: stepRate, Duration: limit, MaxRequests: int64(stepRate * limit.Seconds()),
			Target: func() (string, error) {
				in, err := svc.Pick()
				if err != nil {
					return "", err
				}
				return "http://" + in.Endpoint.Addr + "/", nil
			}})
	}()

	r := run{v: map[string]float64{}}
	since := func(t time.Time) float64 { return t.Sub(step).Seconds() }
	var visibleAt, neededAt time.Time
	highest := 1
	running := map[string]time.Time{} // new allocations: when their task started
	var firstPlaced time.Time         // the first new allocation's creation
	var firstAlloc string
	for {
		now := time.Now()
		// Polled throughout, so that a trace holds every evaluation.
		if s.over(ctx) && visibleAt.IsZero() {
			visibleAt = now
		}
		allocs, _, err := s.jobs.Jobs().Allocations(job, false, nil)
		if err != nil {
			b.Fatalf("%s: allocations of %s: %v", s.name, job, err)
		}
		nRunning := 0
		for _, a := range allocs {
			if created := time.Unix(0, a.CreateTime); a.ID != initialAlloc && (firstPlaced.IsZero() || created.Before(firstPlaced)) {
				firstPlaced, firstAlloc = created, a.ID
			}
			if a.ClientStatus != nomadapi.AllocClientStatusRunning || a.DesiredStatus != nomadapi.AllocDesiredStatusRun {
				continue
			}
			nRunning++
			if a.ID == initialAlloc {
				continue
			}
			if _, ok := running[a.ID]; !ok {
				at := now
				for _, ts := range a.TaskStates {
					if !ts.StartedAt.IsZero() {
						at = ts.StartedAt
					}
				}
				running[a.ID] = at
			}
		}
		desired := desiredCount(ctx, s.jobs, job)
		highest = max(highest, desired, nRunning)
		regMu.Lock()
		nReg := len(svc.Snapshot().Instances)
		regMu.Unlock()
		if neededAt.IsZero() && nRunning >= needed && nReg >= needed {
			neededAt = now
		}
		if !neededAt.IsZero() && now.Sub(neededAt) >= hold {
			r.v["final count"] = float64(desired)
			break
		}
		if now.Sub(step) > s.cap {
			var states []string
			for _, a := range allocs {
				states = append(states, a.ClientStatus+"/"+a.DesiredStatus)
			}
			b.Logf("%s %s: capped at %v: job count %d, allocations %v, %d registered\nnomad-autoscaler log:\n%s",
				s.name, job, s.cap, desired, states, nReg, tailFile(e.nasLog, 15))
			r.capped = true
			r.v["final count"] = float64(desired)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopLoad()
	res := <-loadDone
	stopReg()
	<-regDone

	if !visibleAt.IsZero() {
		r.v["metric visible"] = since(visibleAt)
	}
	if d := s.decided(ctx, step); !d.IsZero() {
		r.v["decision (scale asked)"] = since(d)
	}
	if at := firstScaleUp(ctx, s.jobs, job, step); !at.IsZero() {
		r.v["scale reached Nomad"] = since(at)
	}
	if !firstPlaced.IsZero() {
		r.v["first new allocation placed"] = since(firstPlaced)
	}
	starts := slices.Collect(mapValues(running))
	slices.SortFunc(starts, func(x, y time.Time) int { return x.Compare(y) })
	if len(starts) > 0 {
		r.v["first new allocation running"] = since(starts[0])
	}
	if len(starts) >= needed-1 {
		r.v["needed count running"] = since(starts[needed-2])
	}
	regs := slices.Collect(mapValues(regAt))
	slices.SortFunc(regs, func(x, y time.Time) int { return x.Compare(y) })
	if len(regs) >= needed-1 {
		r.v["needed count registered"] = since(regs[needed-2])
	}
	if !neededAt.IsZero() {
		// The later of the two precise times; the poll only found it.
		r.v["needed count running+registered"] = max(r.v["needed count running"], r.v["needed count registered"])
	}
	r.v["max count"] = float64(highest)
	r.v["failed requests"] = float64(res.Failed)
	b.Logf("%s %s: visible %.2fs, decision %.2fs, at Nomad %.2fs, placed %.2fs, first new running %.2fs, needed running %.2fs, registered %.2fs, max %d, final %.0f, %d/%d failed %s",
		s.name, job, r.v["metric visible"], r.v["decision (scale asked)"], r.v["scale reached Nomad"], r.v["first new allocation placed"], r.v["first new allocation running"],
		r.v["needed count running"], r.v["needed count registered"], highest, r.v["final count"], res.Failed, res.Sent, res.FirstError)
	if firstAlloc != "" {
		b.Logf("%s %s: first new allocation after its placement: %s", s.name, job, taskEvents(ctx, s.jobs, firstAlloc, firstPlaced))
	}
	if s.trace != nil {
		b.Logf("%s %s: evaluations after the step: %s", s.name, job, s.trace())
	}
	if s.settle && (r.capped || r.v["final count"] != needed || highest > needed) {
		b.Errorf("%s %s: settled at %.0f (highest %d, capped %v), want exactly %d\ngarrison log:\n%s",
			s.name, job, r.v["final count"], highest, r.capped, needed, tailFile(e.garLog, 30))
	}
	return r
}

// taskEvents is the allocation's task events, in seconds after from: where
// Nomad's client and Docker spend the start.
func taskEvents(ctx context.Context, c *nomadapi.Client, allocID string, from time.Time) string {
	a, _, err := c.Allocations().Info(allocID, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, ts := range a.TaskStates {
		for _, ev := range ts.Events {
			out = append(out, fmt.Sprintf("%s +%.2fs", ev.Type, time.Unix(0, ev.Time).Sub(from).Seconds()))
		}
	}
	return strings.Join(out, ", ")
}

func mapValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// desiredCount is the job's group count.
func desiredCount(ctx context.Context, c *nomadapi.Client, job string) int {
	st, _, err := c.Jobs().ScaleStatus(job, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0
	}
	for _, tg := range st.TaskGroups {
		return tg.Desired
	}
	return 0
}

// firstScaleUp is the time of the job's first scaling event after step
// that raised the count: when an autoscaler's decision reached Nomad.
func firstScaleUp(ctx context.Context, c *nomadapi.Client, job string, step time.Time) time.Time {
	st, _, err := c.Jobs().ScaleStatus(job, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return time.Time{}
	}
	var first time.Time
	for _, tg := range st.TaskGroups {
		for _, ev := range tg.Events {
			at := time.Unix(0, int64(ev.Time))
			if ev.Count == nil || ev.PreviousCount >= *ev.Count || at.Before(step) {
				continue
			}
			if first.IsZero() || at.Before(first) {
				first = at
			}
		}
	}
	return first
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	return tail(string(b), n)
}

// garrisonSide: the app through garrison's Marathon API, its rule through
// the rules API, the count changed by garrison's autoscaler.
func (e *env) garrisonSide() side {
	var appID string
	var trace []string
	var lastAt time.Time
	return side{name: "garrison", jobs: e.gar, cap: runCap, settle: true,
		trace: func() string { return strings.Join(trace, "; ") },
		create: func(ctx context.Context, seq int) (string, string, error) {
			trace, lastAt = nil, time.Time{}
			appID = fmt.Sprintf("/nasbench/g%d", seq)
			service := app.ServiceName(appID)
			body := map[string]any{"id": appID, "instances": 1, "cpus": 0.1, "mem": 32, "args": []string{"-register=false"},
				"container":       map[string]any{"type": "DOCKER", "docker": map[string]any{"image": echoImage}},
				"labels":          map[string]string{"garrison.service": service},
				"portDefinitions": []map[string]any{{"port": 0}},
				"healthChecks":    []map[string]any{{"protocol": "HTTP", "path": "/health", "intervalSeconds": 2, "timeoutSeconds": 1, "gracePeriodSeconds": 5}}}
			if err := e.call(ctx, "POST", "/v2/apps", body, nil); err != nil {
				return "", "", err
			}
			var rules map[string]any
			if err := json.Unmarshal([]byte(fmt.Sprintf(garrisonRule, appID, maxCount, target)), &rules); err != nil {
				return "", "", err
			}
			if err := e.call(ctx, "PUT", "/api/v1/rules", rules, nil); err != nil {
				return "", "", err
			}
			return nomad.JobID(appID), service, nil
		},
		watching: func(ctx context.Context) (bool, string) {
			// Settled too: the app's creation is a deployment (Nomad's, until
			// the checks pass), which holds a scale-up while it runs.
			var out struct {
				App struct {
					Deployments []any `json:"deployments"`
				} `json:"app"`
			}
			if err := e.call(ctx, "GET", "/v2/apps"+appID, nil, &out); err != nil || len(out.App.Deployments) > 0 {
				return false, fmt.Sprintf("deployments %v (%v)", out.App.Deployments, err)
			}
			ev, in, ok := e.qpsInput(ctx, appID)
			if !ok {
				return false, "no evaluation yet"
			}
			lastAt = ev.At
			return in.HasData, fmt.Sprintf("evaluation %+v", in)
		},
		over: func(ctx context.Context) bool {
			ev, in, ok := e.qpsInput(ctx, appID)
			if ok && ev.At.After(lastAt) && len(trace) < 10 {
				lastAt = ev.At
				trace = append(trace, fmt.Sprintf("%s %d->%d %s (qps %.1f on %d, prev %.1f) %s",
					ev.At.Format("15:04:05.000"), ev.From, ev.To, ev.Action, in.Load, in.Instances, in.PrevLoad, ev.Why))
			}
			return ok && in.Over
		},
		decided: func(ctx context.Context, step time.Time) time.Time {
			var out struct {
				Decisions []struct {
					At     time.Time `json:"at"`
					Action string    `json:"action"`
					Acted  bool      `json:"acted"`
				} `json:"decisions"`
			}
			if err := e.call(ctx, "GET", "/api/v1/decisions?app="+url.QueryEscape(appID), nil, &out); err != nil {
				return time.Time{}
			}
			var first time.Time
			for _, d := range out.Decisions {
				if d.Action == "up" && d.Acted && !d.At.Before(step) && (first.IsZero() || d.At.Before(first)) {
					first = d.At
				}
			}
			return first
		},
		remove: func(ctx context.Context) {
			_ = e.call(ctx, "DELETE", "/v2/apps"+appID+"?force=true", nil, nil)
			waitGone(ctx, e.gar, nomad.JobID(appID))
		},
	}
}

type qpsInput struct {
	Metric    string  `json:"metric"`
	HasData   bool    `json:"hasData"`
	Over      bool    `json:"over"`
	Load      float64 `json:"load"`
	PrevLoad  float64 `json:"prevLoad"`
	Instances int     `json:"instances"`
}

type evaluation struct {
	At     time.Time  `json:"at"`
	From   int        `json:"from"`
	To     int        `json:"to"`
	Action string     `json:"action"`
	Why    string     `json:"why"`
	Inputs []qpsInput `json:"inputs"`
}

// qpsInput is the app's last evaluation and its QPS input.
func (e *env) qpsInput(ctx context.Context, appID string) (evaluation, qpsInput, bool) {
	var out struct {
		Evaluations []evaluation `json:"evaluations"`
	}
	if err := e.call(ctx, "GET", "/api/v1/evaluations?app="+url.QueryEscape(appID), nil, &out); err != nil || len(out.Evaluations) == 0 {
		return evaluation{}, qpsInput{}, false
	}
	for _, in := range out.Evaluations[0].Inputs {
		if in.Metric == "qps" {
			return out.Evaluations[0], in, true
		}
	}
	return evaluation{}, qpsInput{}, false
}

// nasSide: the same service as a Nomad job with a scaling policy, scaled by
// nomad-autoscaler. tuned: evaluation 1 s, cooldown 5 s, no update block;
// else its defaults (evaluation 10 s, cooldown 5 m) and Nomad's default
// update block.
func (e *env) nasSide(tuned bool) side {
	name, capAt := "nomad-autoscaler-tuned", runCap
	if !tuned {
		name, capAt = "nomad-autoscaler-defaults", defaultCap
	}
	var job, service string
	return side{name: name, jobs: e.nas, cap: capAt,
		create: func(ctx context.Context, seq int) (string, string, error) {
			job = fmt.Sprintf("nas%d%s", seq, map[bool]string{true: "", false: "-defaults"}[tuned])
			service = job
			j := nasJob(job, service, e.etcdURL, tuned)
			if _, _, err := e.nas.Jobs().Register(j, (&nomadapi.WriteOptions{}).WithContext(ctx)); err != nil {
				return "", "", fmt.Errorf("register %s: %w", job, err)
			}
			return job, service, nil
		},
		watching: func(ctx context.Context) (bool, string) {
			// Settled too: nomad-autoscaler does not scale a job while its
			// deployment (with the update block) runs.
			dep, _, err := e.nas.Jobs().LatestDeployment(job, (&nomadapi.QueryOptions{}).WithContext(ctx))
			if err != nil || dep != nil && dep.Status == nomadapi.DeploymentStatusRunning {
				return false, fmt.Sprintf("deployment running (%v)", err)
			}
			_, ok, err := e.promQuery(ctx, fmt.Sprintf(nasQuery, service))
			return ok, fmt.Sprintf("prometheus: series %v, %v", ok, err)
		},
		over: func(ctx context.Context) bool {
			v, ok, _ := e.promQuery(ctx, fmt.Sprintf(nasQuery, service))
			return ok && v > target
		},
		decided: func(ctx context.Context, step time.Time) time.Time {
			return firstScaleUp(ctx, e.nas, job, step)
		},
		remove: func(ctx context.Context) {
			_, _, _ = e.nas.Jobs().Deregister(job, true, (&nomadapi.WriteOptions{}).WithContext(ctx))
			waitGone(ctx, e.nas, job)
		},
	}
}

// nasJob is the echo service as a Nomad job with nomad-autoscaler's
// target-value policy on the per-instance request rate. The instances
// register themselves in etcd (the load picks them there, as for
// garrison's) and Prometheus finds them there.
func nasJob(id, service, etcdURL string, tuned bool) *nomadapi.Job {
	policy := map[string]any{
		"check": []map[string]any{{"rps": []map[string]any{{
			"source":       "prometheus",
			"query":        fmt.Sprintf(nasQuery, service),
			"query_window": "5s",
			"strategy":     []map[string]any{{"target-value": []map[string]any{{"target": float64(target)}}}},
		}}}},
	}
	if tuned {
		policy["evaluation_interval"] = "1s"
		policy["cooldown"] = "5s"
	}
	group := &nomadapi.TaskGroup{
		Name:  ptr("app"),
		Count: ptr(1),
		Networks: []*nomadapi.NetworkResource{{Mode: "host",
			DynamicPorts: []nomadapi.Port{{Label: "http"}}}},
		Tasks: []*nomadapi.Task{{
			Name:   "app",
			Driver: "docker",
			Config: map[string]any{"image": echoImage, "network_mode": "host",
				"args": []string{"-name", service, "-etcd", etcdURL}},
			Env: map[string]string{"PORT0": "${NOMAD_HOST_PORT_http}", "HOST": "127.0.0.1",
				"MESOS_TASK_ID": "${NOMAD_ALLOC_ID}"},
			Resources: &nomadapi.Resources{CPU: ptr(100), MemoryMB: ptr(32)},
			Services: []*nomadapi.Service{{Name: service, Provider: "nomad", PortLabel: "http",
				Checks: []nomadapi.ServiceCheck{{Name: "health", Type: "http", Path: "/health",
					Interval: 2 * time.Second, Timeout: time.Second}}}},
		}},
		Scaling: &nomadapi.ScalingPolicy{Min: ptr(int64(1)), Max: ptr(int64(maxCount)), Enabled: ptr(true), Policy: policy},
		// As garrison's jobs: no restart in place.
		RestartPolicy: &nomadapi.RestartPolicy{Attempts: ptr(0), Mode: ptr("fail")},
	}
	// Tuned: no deployment, nothing gates a count change on health. Else
	// the update block a job usually has, at Nomad's defaults (max_parallel
	// 1, health from the checks, min_healthy_time 10 s): nomad-autoscaler
	// does not scale a job while its deployment runs.
	group.Update = nomadapi.DefaultUpdateStrategy()
	if tuned {
		group.Update = &nomadapi.UpdateStrategy{MaxParallel: ptr(0)}
	}
	return &nomadapi.Job{ID: ptr(id), Name: ptr(id), Type: ptr(nomadapi.JobTypeService), Datacenters: []string{"*"},
		TaskGroups: []*nomadapi.TaskGroup{group}}
}

func ptr[T any](v T) *T { return &v }

// waitGone waits (bounded) until the job has no allocation left running.
func waitGone(ctx context.Context, c *nomadapi.Client, job string) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		allocs, _, err := c.Jobs().Allocations(job, false, (&nomadapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return
		}
		live := 0
		for _, a := range allocs {
			if a.ClientStatus == nomadapi.AllocClientStatusRunning || a.ClientStatus == nomadapi.AllocClientStatusPending {
				live++
			}
		}
		if live == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
