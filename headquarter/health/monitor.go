package health

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Change says that one check of a task turned alive or dead; it drives
// Marathon's health_status_changed_event.
type Change struct {
	TaskID     string
	CheckIndex int
	Alive      bool
	Result     Result
}

// Unhealthy says that a check of a task reached its MaxConsecutiveFailures:
// the task is to be killed and replaced (unhealthy_instance_kill_event).
// It is reported once per run of failures; a success starts a new run.
type Unhealthy struct {
	TaskID     string
	InstanceID string
	CheckIndex int
	Reason     string
	Result     Result
}

// Option configures a Monitor.
type Option func(*Monitor)

// WithNow sets the clock that stamps results and measures grace periods
// (time.Now by default). Intervals and timeouts are real time: tests shorten
// them on the Check.
func WithNow(now func() time.Time) Option { return func(m *Monitor) { m.now = now } }

// WithConcurrency bounds how many checks run at once (default 256); a check
// waiting for its turn is late, not failed.
func WithConcurrency(n int) Option {
	return func(m *Monitor) {
		if n > 0 {
			m.concurrency = n
		}
	}
}

// WithStartupInterval checks a task more often until its first success:
// every d instead of the check's interval (when that is longer). Marathon
// waits a whole interval after a failed first check, which for a task that
// is just starting to listen adds up to intervalSeconds to every launch; a
// scale-up should count its new instances as soon as they answer.
func WithStartupInterval(d time.Duration) Option { return func(m *Monitor) { m.startup = d } }

// WithContainerExec runs COMMAND checks of containerized tasks (Check.Task)
// through e, inside their containers. Without it such checks fail with a
// cause that says so.
func WithContainerExec(e ContainerExec) Option { return func(m *Monitor) { m.exec = e } }

// WithOnChange sets the function told about every flip of a check's alive.
// WithOnUnhealthy sets the one told when a task must be replaced. Both are
// called one at a time, in order, from one goroutine of Run, never from a
// check, so they may call Remove; a slow one delays the next calls but no
// check. A call for a task removed before it was due is dropped.
func WithOnChange(f func(Change)) Option { return func(m *Monitor) { m.onChange = f } }

// WithOnUnhealthy: see WithOnChange.
func WithOnUnhealthy(f func(Unhealthy)) Option { return func(m *Monitor) { m.onUnhealthy = f } }

// WithRegisterer registers the Monitor's metrics with reg (a fresh registry
// per test; none by default): garrison_health_checks_total{protocol,result}
// (result: success, failure, grace, ignored), garrison_health_check_seconds
// {protocol}, garrison_health_unhealthy_total and garrison_health_checks
// (checks tracked now). Registering twice with one reg panics.
func WithRegisterer(reg prometheus.Registerer) Option { return func(m *Monitor) { m.reg = reg } }

// Monitor runs the health checks of many tasks: one goroutine per check of a
// task, started by Add (or by Run for tasks added before it), cancelled and
// awaited by Remove (or by Run's end).
type Monitor struct {
	now         func() time.Time
	startup     time.Duration
	concurrency int
	onChange    func(Change)
	onUnhealthy func(Unhealthy)
	reg         prometheus.Registerer
	metrics     metrics
	prober      *prober
	exec        ContainerExec
	slots       chan struct{} // one token per running check

	mu       sync.Mutex
	tasks    map[string]*taskEntry
	runCtx   context.Context // set while Run runs
	started  bool            // Run was called
	finished bool            // Run returned or is returning

	evMu   sync.Mutex
	events []event
	poke   chan struct{} // 1 slot: events are waiting
}

type taskEntry struct {
	id         string
	instanceID string
	startedAt  time.Time
	checkers   []*checker
	cancel     context.CancelFunc // nil until started
}

type checker struct {
	index int
	check Check // normalized
	done  chan struct{}

	mu       sync.Mutex
	res      Result
	reported bool // Unhealthy sent for the current run of failures
}

type event struct {
	entry     *taskEntry
	change    *Change
	unhealthy *Unhealthy
}

// NewMonitor returns a Monitor; it checks nothing until Run.
func NewMonitor(opts ...Option) *Monitor {
	m := &Monitor{
		now:         time.Now,
		concurrency: 256,
		tasks:       map[string]*taskEntry{},
		poke:        make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(m)
	}
	m.slots = make(chan struct{}, m.concurrency)
	m.prober = newProber(m.concurrency)
	m.prober.exec = m.exec
	m.metrics = newMetrics(m.reg)
	return m
}

// Run checks every added task until ctx ends, then stops every check,
// waits for them and returns nil; notifications not yet delivered are
// dropped, results stay readable. A Monitor runs once.
func (m *Monitor) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("health monitor: Run called twice")
	}
	m.started = true
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.runCtx = runCtx
	for _, e := range m.tasks {
		m.start(e)
	}
	m.mu.Unlock()

	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		m.dispatch(runCtx)
	}()

	<-ctx.Done()
	cancel()
	m.mu.Lock()
	m.finished = true
	entries := make([]*taskEntry, 0, len(m.tasks))
	for _, e := range m.tasks {
		entries = append(entries, e)
	}
	m.mu.Unlock()
	for _, e := range entries {
		e.wait()
	}
	<-dispatched
	m.prober.transport.CloseIdleConnections()
	return nil
}

// Add starts checking a task (startedAt is when it began running: the
// grace periods count from it; zero means now). Results exist from now on,
// all null until a check counts. Adding a task again with the same instance,
// start (or a zero one) and checks changes nothing, so a reconciler may add
// every task it sees on every pass; anything else replaces the old checks
// and their results. A task with no checks is not tracked. Add rejects
// invalid checks (see Check.Validate) and then tracks nothing new.
func (m *Monitor) Add(taskID, instanceID string, startedAt time.Time, checks []Check) error {
	var errs []error
	for i, c := range checks {
		if err := c.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("check %d: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("health checks of task %s: %w", taskID, err)
	}
	anyStart := startedAt.IsZero()
	if anyStart {
		startedAt = m.now()
	}
	e := &taskEntry{id: taskID, instanceID: instanceID, startedAt: startedAt}
	for i, c := range checks {
		e.checkers = append(e.checkers, &checker{
			index: i,
			check: c.normalized(),
			done:  make(chan struct{}),
			res:   Result{TaskID: taskID, InstanceID: instanceID},
		})
	}

	m.mu.Lock()
	old := m.tasks[taskID]
	if old != nil && old.same(e, anyStart) {
		m.mu.Unlock()
		return nil
	}
	delete(m.tasks, taskID)
	if old != nil {
		m.metrics.tracked.Sub(float64(len(old.checkers)))
	}
	if len(checks) > 0 {
		m.metrics.tracked.Add(float64(len(e.checkers)))
		m.tasks[taskID] = e
		if m.runCtx != nil && !m.finished {
			m.start(e)
		}
	}
	m.mu.Unlock()
	if old != nil {
		old.stop()
	}
	return nil
}

// Remove stops checking a task and returns once its checks have stopped (a
// running HTTP or TCP check is cancelled, a COMMAND's process group killed):
// no check of it starts afterwards and no notification for it is delivered
// unless already under way. Its results are gone. It may be called from the
// callbacks.
func (m *Monitor) Remove(taskID string) {
	m.mu.Lock()
	e := m.tasks[taskID]
	delete(m.tasks, taskID)
	if e != nil {
		m.metrics.tracked.Sub(float64(len(e.checkers)))
	}
	m.mu.Unlock()
	if e != nil {
		e.stop()
	}
}

// Results returns a task's results in the order of its checks, nil for an
// unknown task.
func (m *Monitor) Results(taskID string) []Result {
	m.mu.Lock()
	e := m.tasks[taskID]
	m.mu.Unlock()
	if e == nil {
		return nil
	}
	out := make([]Result, len(e.checkers))
	for i, c := range e.checkers {
		c.mu.Lock()
		out[i] = c.res
		c.mu.Unlock()
	}
	return out
}

// Healthy says whether all of a task's checks are alive. known is false for
// a task without checks (Marathon counts it neither healthy nor unhealthy).
func (m *Monitor) Healthy(taskID string) (healthy, known bool) {
	results := m.Results(taskID)
	if len(results) == 0 {
		return false, false
	}
	for _, r := range results {
		if !r.Alive {
			return false, true
		}
	}
	return true, true
}

// start runs e's checks under Run's context; m.mu is held.
func (m *Monitor) start(e *taskEntry) {
	ctx, cancel := context.WithCancel(m.runCtx)
	e.cancel = cancel
	for _, c := range e.checkers {
		go m.loop(ctx, e, c)
	}
}

// stop cancels e's checks and waits for them.
func (e *taskEntry) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.wait()
}

// wait waits for e's checks; they must have been cancelled.
func (e *taskEntry) wait() {
	if e.cancel == nil {
		return
	}
	for _, c := range e.checkers {
		<-c.done
	}
}

// same says whether o (a new Add) asks for what e runs; anyStart: o was
// given no start time.
func (e *taskEntry) same(o *taskEntry, anyStart bool) bool {
	if e.instanceID != o.instanceID || (!anyStart && !e.startedAt.Equal(o.startedAt)) || len(e.checkers) != len(o.checkers) {
		return false
	}
	for i := range e.checkers {
		if !e.checkers[i].check.equal(o.checkers[i].check) {
			return false
		}
	}
	return true
}

// loop runs one check of one task every Interval (from start to start,
// never two at once) until ctx ends.
func (m *Monitor) loop(ctx context.Context, e *taskEntry, c *checker) {
	defer close(c.done)
	timer := time.NewTimer(c.check.Delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		begin := time.Now()
		select {
		case <-ctx.Done():
			return
		case m.slots <- struct{}{}:
		}
		probeBegin := time.Now()
		o, cause := m.prober.probe(ctx, c.check)
		<-m.slots
		if ctx.Err() != nil {
			return // removed or stopped mid-check: the outcome means nothing
		}
		m.metrics.seconds.WithLabelValues(string(c.check.Protocol)).Observe(time.Since(probeBegin).Seconds())
		m.record(e, c, o, cause)
		interval := c.check.Interval
		if m.startup > 0 && m.startup < interval {
			c.mu.Lock()
			starting := c.res.FirstSuccess.IsZero()
			c.mu.Unlock()
			if starting {
				interval = m.startup
			}
		}
		timer.Reset(max(interval-time.Since(begin), 0))
	}
}

// record applies one outcome to a check's result as Marathon's Health.update
// does, and queues the events it causes.
func (m *Monitor) record(e *taskEntry, c *checker, o outcome, cause string) {
	now := m.now()
	c.mu.Lock()
	r := &c.res
	var ev event
	label := o.String()
	switch o {
	case pass:
		if r.FirstSuccess.IsZero() {
			r.FirstSuccess = now
		}
		r.LastSuccess = now
		r.ConsecutiveFailures = 0
		c.reported = false
		if !r.Alive {
			r.Alive = true
			ev.change = &Change{TaskID: e.id, CheckIndex: c.index, Alive: true}
		}
	case fail:
		if r.FirstSuccess.IsZero() && now.Before(e.startedAt.Add(c.check.GracePeriod)) {
			label = "grace"
			break // still starting: Marathon neither counts nor records it
		}
		r.LastFailure = now
		r.LastFailureCause = cause
		r.ConsecutiveFailures++
		if r.Alive {
			r.Alive = false
			ev.change = &Change{TaskID: e.id, CheckIndex: c.index, Alive: false}
		}
		if limit := c.check.MaxConsecutiveFailures; limit > 0 && r.ConsecutiveFailures >= limit && !c.reported {
			c.reported = true
			m.metrics.unhealthy.Inc()
			ev.unhealthy = &Unhealthy{
				TaskID:     e.id,
				InstanceID: e.instanceID,
				CheckIndex: c.index,
				Reason:     fmt.Sprintf("%d consecutive health check failures, the last: %s", r.ConsecutiveFailures, cause),
			}
		}
	case neutral:
	}
	snapshot := *r
	c.mu.Unlock()
	m.metrics.checks.WithLabelValues(string(c.check.Protocol), label).Inc()
	if ev.change != nil {
		ev.change.Result = snapshot
	}
	if ev.unhealthy != nil {
		ev.unhealthy.Result = snapshot
	}
	if (ev.change != nil && m.onChange != nil) || (ev.unhealthy != nil && m.onUnhealthy != nil) {
		ev.entry = e
		m.evMu.Lock()
		m.events = append(m.events, ev)
		m.evMu.Unlock()
		select {
		case m.poke <- struct{}{}:
		default:
		}
	}
}

// dispatch calls the callbacks for queued events, in order, until ctx ends.
func (m *Monitor) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.poke:
		}
		m.evMu.Lock()
		batch := m.events
		m.events = nil
		m.evMu.Unlock()
		for _, ev := range batch {
			if ctx.Err() != nil {
				return
			}
			m.mu.Lock()
			current := m.tasks[ev.entry.id] == ev.entry
			m.mu.Unlock()
			if !current {
				continue
			}
			if ev.change != nil && m.onChange != nil {
				m.onChange(*ev.change)
			}
			if ev.unhealthy != nil && m.onUnhealthy != nil {
				m.onUnhealthy(*ev.unhealthy)
			}
		}
	}
}

type metrics struct {
	checks    *prometheus.CounterVec
	seconds   *prometheus.HistogramVec
	unhealthy prometheus.Counter
	tracked   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) metrics {
	mt := metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_health_checks_total", Help: "Health checks run, by protocol and result (success, failure, grace: a failure ignored in the grace period, ignored: a 1xx with ignoreHttp1xx).",
		}, []string{"protocol", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "garrison_health_check_seconds", Help: "Time one health check took, by protocol.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, []string{"protocol"}),
		unhealthy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "garrison_health_unhealthy_total", Help: "Times a task reached maxConsecutiveFailures.",
		}),
		tracked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_health_checks", Help: "Health checks of tasks tracked now.",
		}),
	}
	if reg != nil {
		reg.MustRegister(mt.checks, mt.seconds, mt.unhealthy, mt.tracked)
	}
	return mt
}
