package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/scout/sample"
)

// AppStatus is what the target knows about an app's instances.
type AppStatus struct {
	// Instances is the desired count; Ready the instances that run, pass
	// their health checks and are registered: the capacity that exists.
	Instances, Ready int
	// CPUs and MemMB are what each instance is given.
	CPUs, MemMB float64
	// Tasks are the running task ids (for per-task sources).
	Tasks []string
	// Deployment: a deployment touches the app. Autoscaled: it is the
	// autoscaler's own scale, to Instances.
	Deployment, Autoscaled bool
}

// Target changes instance counts: garrison's scheduler, or an external
// Marathon.
type Target interface {
	Status(ctx context.Context, appID string) (AppStatus, bool, error)
	// Scale sets the count. ErrNotNow means someone else's deployment got
	// there first: a no-op, not a failure, and no cooldown starts.
	Scale(ctx context.Context, appID string, n int, reason string) error
}

// ErrNotNow is a Target's answer when the app is locked by a deployment.
var ErrNotNow = errors.New("the app is locked by a deployment in progress")

// Recorder keeps the decision log (the store).
type Recorder interface {
	PutDecision(ctx context.Context, appID, id string, data []byte) error
}

// Publisher is the event bus.
type Publisher interface {
	Publish(ev events.Event) error
}

// Record is one decision-log entry: the decision with what came of it.
type Record struct {
	ID string `json:"id"`
	Decision
	// Rule is the rule the decision applied.
	Rule rulefmt.Rule `json:"rule"`
	// Repeats counts the evaluations after this one that decided the same
	// (a change held by a deployment, a count capped at max), until
	// LastAt; they update this record instead of adding one each.
	Repeats int        `json:"repeats,omitempty"`
	LastAt  *time.Time `json:"lastAt,omitempty"`
	// Acted: the target was asked to change the count. ActError says why
	// that failed; NotNow that a deployment held it.
	Acted    bool   `json:"acted"`
	NotNow   bool   `json:"notNow,omitempty"`
	ActError string `json:"actError,omitempty"`
	// ReadyAt is when a scale-up's instances were all ready (running,
	// healthy and registered); ReadySeconds how long after the decision.
	ReadyAt      *time.Time `json:"readyAt,omitempty"`
	ReadySeconds float64    `json:"readySeconds,omitempty"`
	// SourceErrors are the metric sources that failed this evaluation.
	SourceErrors map[string]string `json:"sourceErrors,omitempty"`
}

// DecisionEvent is published on /v2/events for every recorded decision.
type DecisionEvent struct {
	Record
}

// EventType implements events.Event.
func (DecisionEvent) EventType() string { return "autoscale_decision_event" }

// Config wires a Manager.
type Config struct {
	Target Target
	// Sources by name; DefaultSource is used for metrics a rule does not
	// assign. A metric whose source is missing has no data.
	Sources       map[string]sample.Source
	DefaultSource string
	Recorder      Recorder
	Events        Publisher
	// Interval between evaluations (default DefaultInterval).
	Interval time.Duration
	// ReadyPoll is how often a pending scale-up's instances are checked
	// between the scheduler's events (default 25 ms): ReadyAt is the moment
	// the last needed instance is ready, not the next evaluation.
	ReadyPoll time.Duration
	// RecordGap is the least time between two records of an app's
	// decisions that do not act (a count capped at max, a held change):
	// with the same outcome they are never rewritten, and a changing one
	// writes at most this often (default 1 min), so the log cannot grow
	// with the evaluation rate.
	RecordGap time.Duration
	// SourceTimeout bounds each source's read (default: the interval, at
	// least 3 s).
	SourceTimeout time.Duration
	// Recheck is how long after an evaluation that held an app's scale-up
	// (WhySettling: the load still rising; WhyConfirm: a reading to
	// confirm) that app alone is read and decided again, when every source
	// its rule uses is Live; other apps and sources wait for the next
	// evaluation. Default Interval/2; negative: never.
	Recheck time.Duration
	// IsLeader says whether this headquarter evaluates: with several
	// sharing an etcd, only the leader does. nil: always.
	IsLeader   func() bool
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
}

// DefaultInterval is how often every rule is evaluated: often, because an
// evaluation is cheap (BenchmarkDecide10k) and the step must be seen
// within a second or two (issue 11).
const DefaultInterval = time.Second

// Live is implemented by a metric source whose Read measures up to the
// moment it is called (scout/local takes each rate between two Reads of
// the app), so that a Read shortly after a held evaluation measures only
// the time since, all of it after a load change that evaluation saw. A
// Prometheus or Elasticsearch reading moves only when a scrape or an
// index lands: reading it sooner gives the same value again, so those
// sources are not Live and their apps wait for the next evaluation.
type Live interface {
	Live() bool
}

// Subscriber is the event bus as a source of the scheduler's events; a
// Publisher that is one wakes the ready check of a pending scale-up.
type Subscriber interface {
	Subscribe(ctx context.Context, types []string) (<-chan events.Frame, func())
}

// Manager evaluates every rule each interval and acts on the decisions.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	rules   []rulefmt.Rule
	state   map[string]*State
	pending map[string]*pendingScale
	// recorded is each app's last recorded decision; written is when a
	// record of the app last went to the Recorder.
	recorded map[string]*Record
	written  map[string]time.Time
	// noData counts, per app and used metric, the evaluations in a row
	// without data; logged once when it reaches noDataAfter.
	noData map[string]map[sample.Metric]int
	kick   chan struct{}
	// recheck: the apps the last full evaluation held (settling or
	// confirming) whose sources are all live, with when they were read;
	// Run evaluates them again Recheck after that. rechecked: the apps
	// whose last read was such a re-read, with its time, so that the next
	// evaluation knows its reading covers only the time since.
	recheck, rechecked map[string]time.Time
	// tick and after are Run's clock (tests replace them): nil, a ticker
	// of Interval and time.After.
	tick  <-chan time.Time
	after func(time.Duration) <-chan time.Time

	evaluations *prometheus.HistogramVec
	decisions   *prometheus.CounterVec
	sourceErrs  *prometheus.CounterVec
	readySecs   prometheus.Histogram
	hasData     *prometheus.GaugeVec
	writes      prometheus.Counter
}

// pendingFor bounds how long a scale-up is watched for its ready time.
const pendingFor = 10 * time.Minute

// pendingScale is a scale-up waiting for its instances to be ready.
type pendingScale struct {
	record Record
}

// New builds a manager; SetRules gives it rules, Run runs it.
func New(cfg Config) *Manager {
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ReadyPoll == 0 {
		cfg.ReadyPoll = 25 * time.Millisecond
	}
	if cfg.RecordGap == 0 {
		cfg.RecordGap = time.Minute
	}
	if cfg.Recheck == 0 {
		// Half an interval: the re-read's rate counts half the requests of
		// a whole interval's, so its noise is twice as large (at 40 req/s
		// one request more or less is 5%; a scrape 25 ms late on a busy
		// machine as much), which Decide answers by widening the band
		// within which it is confirmed (Input.Span). Sooner is noisier
		// still and would be confirmed more often, which costs the
		// interval back; later gains less than the half interval.
		cfg.Recheck = cfg.Interval / 2
	}
	if cfg.SourceTimeout == 0 {
		// Not the interval alone: Docker's stats can take most of a second
		// on a busy machine, and a read cut short is no data for every app
		// of the source.
		cfg.SourceTimeout = max(cfg.Interval, 3*time.Second)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, state: map[string]*State{}, pending: map[string]*pendingScale{}, recorded: map[string]*Record{},
		written: map[string]time.Time{}, noData: map[string]map[sample.Metric]int{}, kick: make(chan struct{}, 1),
		recheck: map[string]time.Time{}, rechecked: map[string]time.Time{}, after: time.After,
		hasData: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "garrison_autoscale_metric_has_data", Help: "Whether the last evaluation had data for a metric an app's rule uses (1) or not (0)."},
			[]string{"app", "metric"}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "garrison_autoscale_decision_writes_total", Help: "Decision-log records written to the store."}),
		evaluations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "garrison_autoscale_evaluation_seconds", Help: "Time to evaluate every rule once, by phase (read, decide).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}, []string{"phase"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_autoscale_decisions_total", Help: "Recorded autoscale decisions, by app and action."}, []string{"app", "action"}),
		sourceErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_autoscale_source_errors_total", Help: "Failed metric source reads, by source."}, []string{"source"}),
		readySecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "garrison_autoscale_scale_up_ready_seconds", Help: "Time from a scale-up decision to all its instances ready and registered.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 10)}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(m.evaluations, m.decisions, m.sourceErrs, m.readySecs, m.hasData, m.writes)
	}
	return m
}

// SetRules replaces the rules. Apps whose rule stays keep their state
// (cooldown, scale-down timer); apps without a rule forget it.
func (m *Manager) SetRules(rules []rulefmt.Rule) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rules = slices.Clone(rules)
	keep := map[string]bool{}
	for _, r := range rules {
		keep[r.App] = true
	}
	for app := range m.state {
		if !keep[app] {
			delete(m.state, app)
			delete(m.pending, app)
			delete(m.recorded, app)
			delete(m.written, app)
			delete(m.recheck, app)
			delete(m.rechecked, app)
			for metric := range m.noData[app] {
				m.hasData.DeleteLabelValues(app, string(metric))
			}
			delete(m.noData, app)
		}
	}
}

// Rules returns the rules in force.
func (m *Manager) Rules() []rulefmt.Rule {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.rules)
}

// Run evaluates every interval until ctx ends; Recheck after an
// evaluation that held a scale-up on a live source, it evaluates that app
// again (Manager.Recheck). Between evaluations it watches pending scale-ups: on each of
// the scheduler's task, health and deployment events (when Events is a
// Subscriber) and every ReadyPoll, so a scale-up's ReadyAt is when its
// last instance became ready.
func (m *Manager) Run(ctx context.Context) error {
	tick := m.tick
	if tick == nil {
		ticker := time.NewTicker(m.cfg.Interval)
		defer ticker.Stop()
		tick = ticker.C
	}
	// recheck fires once per full evaluation at most: a re-read that is
	// held again (settled, then to be confirmed) waits for the next tick,
	// half an interval later, rather than read a window shorter still.
	var recheck <-chan time.Time
	poll := time.NewTicker(m.cfg.ReadyPoll)
	poll.Stop()
	defer poll.Stop()
	var frames <-chan events.Frame
	if sub, ok := m.cfg.Events.(Subscriber); ok {
		ch, cancel := sub.Subscribe(ctx, []string{events.TypeStatusUpdate, events.TypeHealthStatusChanged,
			events.TypeInstanceHealthChanged, events.TypeDeploymentSuccess, events.TypeDeploymentStepSuccess})
		defer cancel()
		frames = ch
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
			poll.Reset(m.cfg.ReadyPoll)
			continue
		case _, ok := <-frames:
			if !ok {
				frames = nil
			}
			m.checkPendingAll(ctx)
			continue
		case <-poll.C:
			if !m.checkPendingAll(ctx) {
				poll.Stop()
			}
			continue
		case <-recheck:
			recheck = nil
			if m.cfg.IsLeader == nil || m.cfg.IsLeader() {
				m.Recheck(ctx)
			}
			continue
		case <-tick:
		}
		recheck = nil
		if m.cfg.IsLeader != nil && !m.cfg.IsLeader() {
			continue
		}
		m.Evaluate(ctx)
		if at, ok := m.recheckAt(); ok {
			recheck = m.after(max(at.Sub(m.cfg.Now()), 0))
		}
	}
}

// recheckAt is when the apps the last evaluation held are to be read
// again: Recheck after they were read.
func (m *Manager) recheckAt() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var first time.Time
	for _, at := range m.recheck {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first.Add(m.cfg.Recheck), !first.IsZero()
}

// Recheck reads and evaluates again, at once, the apps whose scale-up the
// last Evaluate held (the load still rising, or a reading to confirm) and
// whose rule reads only Live sources: their reading then covers only the
// time since, all after the change, and sizes the step half an interval
// sooner than the next evaluation would. Run calls it Recheck after
// Evaluate; it does nothing a second time. Exported for tests, which
// drive the clock.
func (m *Manager) Recheck(ctx context.Context) []Record {
	m.mu.Lock()
	apps := m.recheck
	m.recheck = map[string]time.Time{}
	m.mu.Unlock()
	if len(apps) == 0 {
		return nil
	}
	return m.evaluate(ctx, apps)
}

// live: every source the rule reads is Live.
func (m *Manager) live(r rulefmt.Rule) bool {
	of := sourcesOf(r, m.cfg.DefaultSource)
	for _, name := range of {
		l, ok := m.cfg.Sources[name].(Live)
		if !ok || !l.Live() {
			return false
		}
	}
	return len(of) > 0
}

// checkPendingAll checks every pending scale-up; it reports whether some
// are still pending.
func (m *Manager) checkPendingAll(ctx context.Context) bool {
	m.mu.Lock()
	apps := make([]string, 0, len(m.pending))
	for app := range m.pending {
		apps = append(apps, app)
	}
	m.mu.Unlock()
	for _, app := range apps {
		st, ok, err := m.cfg.Target.Status(ctx, app)
		if err != nil || !ok {
			continue
		}
		m.checkPending(ctx, app, st, m.cfg.Now())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending) > 0
}

// Evaluate runs one evaluation of every rule and acts on it. Exported for
// tests and benchmarks, which drive the clock.
func (m *Manager) Evaluate(ctx context.Context) []Record {
	return m.evaluate(ctx, nil)
}

// evaluate evaluates every rule, or (a recheck) only the apps of only,
// read at the times it holds.
func (m *Manager) evaluate(ctx context.Context, only map[string]time.Time) []Record {
	now := m.cfg.Now()
	rules := m.Rules()
	if only != nil {
		rules = slices.DeleteFunc(rules, func(r rulefmt.Rule) bool { _, ok := only[r.App]; return !ok })
	}
	if len(rules) == 0 {
		return nil
	}
	statuses := make(map[string]AppStatus, len(rules))
	var known []rulefmt.Rule
	for _, r := range rules {
		st, ok, err := m.cfg.Target.Status(ctx, r.App)
		if err != nil {
			m.log.Warn("autoscale: app status", "app", r.App, "error", err)
			continue
		}
		if !ok {
			continue // a rule for an app that does not exist (yet)
		}
		statuses[r.App] = st
		known = append(known, r)
	}
	// spans: the apps whose reading covers less than an interval (a
	// recheck, or the evaluation after one), as a fraction of it.
	readAt := now
	spans := map[string]float64{}
	m.mu.Lock()
	for _, r := range known {
		since, short := only[r.App]
		if only == nil {
			since, short = m.rechecked[r.App]
			delete(m.rechecked, r.App)
		} else {
			m.rechecked[r.App] = readAt
		}
		if short {
			spans[r.App] = float64(readAt.Sub(since)) / float64(m.cfg.Interval)
		}
	}
	// A recheck reads only the metrics that were over the held decision's
	// band: the others keep their last reading, and their window stays
	// whole. Nor does it wait for what it does not need: Docker's stats,
	// which the local source reads for CPU, answered a re-read only at the
	// daemon's next one-second collection (0.5 s, where the ticks took
	// 20 ms), and the step was decided no sooner than at the next tick.
	var want map[string][]sample.Metric
	kept := map[string]sample.Reading{}
	if only == nil {
		clear(m.recheck)
	} else {
		want = map[string][]sample.Metric{}
		for _, r := range known {
			last := sample.Reading{}
			if st := m.state[r.App]; st != nil {
				for _, mi := range st.Last.Inputs {
					switch {
					case mi.Over:
						want[r.App] = append(want[r.App], mi.Metric)
					case mi.HasData:
						last[mi.Metric] = sample.Value{Value: mi.Value, Instances: mi.Instances, OK: true}
					}
				}
			}
			kept[r.App] = last
		}
	}
	m.mu.Unlock()
	start := time.Now()
	readings, failures := m.read(ctx, known, statuses, want, now)
	for app, last := range kept {
		for metric, v := range last {
			if _, read := readings[app][metric]; !read && readings[app] != nil {
				readings[app][metric] = v
			}
		}
	}
	m.evaluations.WithLabelValues("read").Observe(time.Since(start).Seconds())
	// The readings cover the window up to the start of the evaluation; the
	// decision is made now, after reading (a source may take a while).
	now = m.cfg.Now()

	start = time.Now()
	var records []Record
	for _, r := range known {
		st := statuses[r.App]
		m.checkPending(ctx, r.App, st, now)
		in := Input{Current: st.Ready, Desired: st.Instances, Reading: readings[r.App], Span: spans[r.App],
			Deployment: Deployment{InProgress: st.Deployment, Autoscaler: st.Autoscaled, Target: st.Instances}}
		for metric, source := range sourcesOf(r, m.cfg.DefaultSource) {
			if err, failed := failures[source]; failed {
				if in.Errors == nil {
					in.Errors = map[sample.Metric]string{}
				}
				in.Errors[metric] = err
			}
		}
		m.mu.Lock()
		state := m.state[r.App]
		if state == nil {
			state = &State{}
			m.state[r.App] = state
		}
		d := Decide(r, in, state, now)
		last := m.recorded[r.App]
		if only == nil && (d.Why == WhySettling || d.Why == WhyConfirm) && m.cfg.Recheck > 0 && m.live(r) {
			m.recheck[r.App] = readAt
		}
		m.mu.Unlock()
		m.log.Debug("autoscale: decision", "decision", d.String(), "reason", d.Reason)
		m.noteData(r.App, d)
		if !d.Notable() {
			continue
		}
		// The same outcome as the last record (a count capped at max
		// through a long peak, a change held by a deployment) is counted
		// on that record in memory, never rewritten: an evaluation every
		// second must not write every second.
		if last != nil && !d.Acts() && sameOutcome(d, last.Decision) {
			m.mu.Lock()
			last.Repeats++
			at := now
			last.LastAt = &at
			m.mu.Unlock()
			continue
		}
		// Outcomes that change nothing and follow one another (capped, then
		// held, then capped...) are written at most once per RecordGap;
		// the first after an acting record always is, and so is the first
		// under a changed rule (a user who just put a dry-run rule looks
		// for its decision). Rule changes are writes of their own, so this
		// cannot grow with the evaluation rate.
		m.mu.Lock()
		quiet := !d.Acts() && last != nil && !last.Acts() && now.Sub(m.written[r.App]) < m.cfg.RecordGap &&
			reflect.DeepEqual(last.Rule, r)
		m.mu.Unlock()
		if quiet {
			// Kept for GET /api/v1/evaluations, not written.
			continue
		}
		rec := Record{ID: recordID(now), Decision: d, Rule: r}
		if len(in.Errors) > 0 {
			rec.SourceErrors = map[string]string{}
			for metric, err := range in.Errors {
				rec.SourceErrors[string(metric)] = err
			}
		}
		if last != nil && last.Repeats > 0 {
			// The outcome changed: the last record gets its final count.
			m.mu.Lock()
			prev := *last
			m.mu.Unlock()
			m.store(ctx, prev)
		}
		if d.Acts() {
			rec = m.act(ctx, r.App, rec, state, now)
		}
		m.decisions.WithLabelValues(rec.App, string(rec.Action)).Inc()
		m.mu.Lock()
		stored := rec
		m.recorded[r.App] = &stored
		m.written[r.App] = now
		m.mu.Unlock()
		m.record(ctx, rec)
		records = append(records, rec)
	}
	m.evaluations.WithLabelValues("decide").Observe(time.Since(start).Seconds())
	return records
}

// act asks the target for the new count.
func (m *Manager) act(ctx context.Context, app string, rec Record, state *State, now time.Time) Record {
	rec.Acted = true
	err := m.cfg.Target.Scale(ctx, app, rec.To, rec.Reason)
	switch {
	case errors.Is(err, ErrNotNow):
		rec.NotNow = true
		m.log.Info("autoscale: held by a deployment", "app", app, "to", rec.To)
	case err != nil:
		rec.ActError = err.Error()
		m.log.Warn("autoscale: scale failed", "app", app, "to", rec.To, "error", err)
	default:
		m.mu.Lock()
		state.Scaled(rec.Decision, now)
		if rec.To > rec.From {
			m.pending[app] = &pendingScale{record: rec}
		} else {
			delete(m.pending, app)
		}
		m.mu.Unlock()
		select {
		case m.kick <- struct{}{}:
		default:
		}
		m.log.Info("autoscale: scaled", "app", app, "from", rec.From, "to", rec.To, "reason", rec.Reason)
	}
	return rec
}

// checkPending completes a scale-up's record once its instances are ready.
func (m *Manager) checkPending(ctx context.Context, app string, st AppStatus, now time.Time) {
	m.mu.Lock()
	p := m.pending[app]
	if p != nil && st.Ready < p.record.To && now.Sub(p.record.At) > pendingFor {
		// Never got there (a crash loop, no capacity): stop watching.
		delete(m.pending, app)
		m.mu.Unlock()
		m.log.Warn("autoscale: scale-up not ready; no longer timed", "app", app, "to", p.record.To, "ready", st.Ready, "after", pendingFor)
		return
	}
	if p == nil || st.Ready < p.record.To {
		m.mu.Unlock()
		return
	}
	delete(m.pending, app)
	rec := p.record
	last := m.recorded[app]
	if last != nil && last.ID == rec.ID {
		rec = *last // with any repeats since
	}
	ready := now
	rec.ReadyAt = &ready
	rec.ReadySeconds = now.Sub(rec.At).Seconds()
	if last != nil && last.ID == rec.ID {
		*last = rec
	}
	m.mu.Unlock()
	m.readySecs.Observe(rec.ReadySeconds)
	m.log.Info("autoscale: scale-up ready", "app", app, "instances", rec.To, "after", time.Duration(rec.ReadySeconds*float64(time.Second)).Round(time.Millisecond))
	m.record(ctx, rec)
}

// read asks each source once for all the apps whose rules use it, per
// window: for the metrics of want when it is not nil (per app). It returns
// the merged readings and, per failed source, why.
func (m *Manager) read(ctx context.Context, rules []rulefmt.Rule, statuses map[string]AppStatus, want map[string][]sample.Metric, now time.Time) (sample.Readings, map[string]string) {
	type key struct {
		source string
		window time.Duration
	}
	requests := map[key]*sample.Request{}
	for _, r := range rules {
		st := statuses[r.App]
		seen := map[string]bool{}
		of := sourcesOf(r, m.cfg.DefaultSource)
		metrics := map[string][]sample.Metric{} // per source, the metrics the rule reads from it
		for _, metric := range sample.Metrics {
			if source, ok := of[metric]; ok && (want == nil || slices.Contains(want[r.App], metric)) {
				metrics[source] = append(metrics[source], metric)
			}
		}
		for _, source := range of {
			if seen[source] || metrics[source] == nil {
				continue
			}
			seen[source] = true
			k := key{source, r.Window}
			req := requests[k]
			if req == nil {
				req = &sample.Request{Window: r.Window, At: now}
				requests[k] = req
			}
			req.Apps = append(req.Apps, sample.App{ID: r.App, CPUs: st.CPUs, MemMB: st.MemMB, Tasks: st.Tasks, Query: r.Queries,
				InstancesQuery: r.InstanceQueries, Metrics: metrics[source]})
		}
	}
	type result struct {
		key      key
		readings sample.Readings
		err      error
	}
	results := make(chan result, len(requests))
	var wg sync.WaitGroup
	for k, req := range requests {
		src, ok := m.cfg.Sources[k.source]
		if !ok {
			results <- result{key: k, err: fmt.Errorf("no metric source named %q is configured", k.source)}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			readCtx, cancel := context.WithTimeout(ctx, m.cfg.SourceTimeout)
			defer cancel()
			rs, err := src.Read(readCtx, *req)
			results <- result{key: k, readings: rs, err: err}
		}()
	}
	wg.Wait()
	close(results)
	bySource := map[string]sample.Readings{}
	failures := map[string]string{}
	for res := range results {
		if res.err != nil && ctx.Err() != nil {
			continue // shutting down
		}
		if res.err != nil {
			failures[res.key.source] = res.err.Error()
			m.sourceErrs.WithLabelValues(res.key.source).Inc()
			m.log.Warn("autoscale: metric source failed", "source", res.key.source, "error", res.err)
			continue
		}
		if bySource[res.key.source] == nil {
			bySource[res.key.source] = sample.Readings{}
		}
		for app, reading := range res.readings {
			bySource[res.key.source][app] = reading
		}
	}
	merged := sample.Readings{}
	for _, r := range rules {
		reading := sample.Reading{}
		for metric, source := range sourcesOf(r, m.cfg.DefaultSource) {
			if want != nil && !slices.Contains(want[r.App], metric) {
				continue // not asked for: a source may still answer it, without data
			}
			if v, ok := bySource[source][r.App][metric]; ok {
				reading[metric] = v
			}
		}
		merged[r.App] = reading
	}
	return merged, failures
}

// sameOutcome: b (the last recorded decision) ended the same way as a.
func sameOutcome(a, b Decision) bool {
	return a.App == b.App && a.From == b.From && a.To == b.To && a.Action == b.Action && a.Capped == b.Capped &&
		a.Blocked == b.Blocked && a.Paused == b.Paused && a.DryRun == b.DryRun
}

// sourcesOf maps each metric the rule votes on to the source that reads it.
func sourcesOf(r rulefmt.Rule, fallback string) map[sample.Metric]string {
	out := map[sample.Metric]string{}
	for _, metric := range sample.Metrics {
		if r.Up.Of(metric) == 0 && r.Down.Of(metric) == 0 {
			continue
		}
		source := r.Sources[metric]
		if source == "" {
			source = fallback
		}
		out[metric] = source
	}
	return out
}

// record writes the decision log entry (again, when a scale-up completes)
// and publishes it.
func (m *Manager) record(ctx context.Context, rec Record) {
	m.store(ctx, rec)
	if m.cfg.Events != nil {
		if err := m.cfg.Events.Publish(DecisionEvent{rec}); err != nil {
			m.log.Warn("autoscale: publish decision", "app", rec.App, "error", err)
		}
	}
}

// store writes a decision log entry.
func (m *Manager) store(ctx context.Context, rec Record) {
	if m.cfg.Recorder != nil {
		data, err := json.Marshal(rec)
		if err == nil {
			err = m.cfg.Recorder.PutDecision(ctx, rec.App, rec.ID, data)
			m.writes.Inc()
		}
		if err != nil {
			m.log.Warn("autoscale: record decision", "app", rec.App, "error", err)
		}
	}
}

// recordID sorts by time: decisions are listed newest first by key.
func recordID(at time.Time) string {
	return at.UTC().Format("20060102T150405.000000000Z")
}

// noDataAfter is how many evaluations in a row a used metric must lack
// data before it is logged: a new app's first reading has no rate yet.
const noDataAfter = 3

// noteData keeps garrison_autoscale_metric_has_data and logs, once, a used
// metric that goes without data (a counter pattern that matches nothing,
// a source that is down) and, once, when it comes back.
func (m *Manager) noteData(app string, d Decision) {
	m.mu.Lock()
	missing := m.noData[app]
	if missing == nil {
		missing = map[sample.Metric]int{}
		m.noData[app] = missing
	}
	var gone, back []MetricInput
	for _, mi := range d.Inputs {
		if !mi.Used {
			continue
		}
		v := 0.0
		if mi.HasData {
			v = 1
		}
		m.hasData.WithLabelValues(app, string(mi.Metric)).Set(v)
		n := missing[mi.Metric]
		switch {
		case !mi.HasData:
			missing[mi.Metric] = n + 1
			if n+1 == noDataAfter {
				gone = append(gone, mi)
			}
		case n >= noDataAfter:
			back = append(back, mi)
			missing[mi.Metric] = 0
		default:
			missing[mi.Metric] = 0
		}
	}
	m.mu.Unlock()
	for _, mi := range gone {
		why := mi.Err
		switch {
		case why != "":
		case mi.Metric == sample.QPS:
			why = "the source has no value for it (local source: no instance exposes a counter matching the pattern, or none is registered)"
		default:
			why = "the source has no value for it"
		}
		m.log.Warn("autoscale: a metric of the rule has no data; it cannot vote", "app", app, "metric", mi.Metric, "evaluations", noDataAfter, "why", why)
	}
	for _, mi := range back {
		m.log.Info("autoscale: metric has data again", "app", app, "metric", mi.Metric)
	}
}

// Evaluation is an app's last evaluation, acting or not: GET
// /api/v1/evaluations.
type Evaluation struct {
	Decision
	Rule rulefmt.Rule `json:"rule"`
}

// Evaluations returns the last evaluation of every rule (of app's rule
// when app is not ""), in rule order. A rule not evaluated yet (its app
// does not exist) has none.
func (m *Manager) Evaluations(app string) []Evaluation {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Evaluation{}
	for _, r := range m.rules {
		if app != "" && r.App != app {
			continue
		}
		st := m.state[r.App]
		if st == nil || st.Last.At.IsZero() {
			continue
		}
		out = append(out, Evaluation{Decision: st.Last, Rule: r})
	}
	return out
}
