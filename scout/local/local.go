// Package local is scout's metric source for one machine with neither
// Prometheus nor Elasticsearch, so that `garrison up` autoscales on its own:
//
//   - CPU and memory come from the drivers' own stats (Docker's one-shot
//     stats, /proc for the process driver) through a StatsReader: the CPU
//     fraction of a task is its CPU seconds used between two cycles divided
//     by the wall time between them and by the app's cpus; the memory
//     fraction is its resident memory divided by the app's mem. Both are
//     averaged over the app's tasks.
//   - QPS comes from each instance's own /metrics: the source lists the
//     registry (/service/<name>/<id>), keeps the instances of the app,
//     scrapes them in parallel, sums the request counters in the Prometheus
//     text format and takes their rate between two cycles; the app's QPS is
//     the sum over its instances.
//
// The window is the evaluation interval: a rate is always taken between the
// current and the previous Read of the same app, whatever Request.Window
// says. The source is live (Live): a Read measures up to the moment it is
// called, so the autoscaler may read an app again half an interval after
// an evaluation that saw its load change, and that rate covers only the
// time since. The source keeps the previous sample of each task and instance for
// that. A task or instance seen for the first time has no rate yet and is
// not counted (it is in no Value's Instances), so a new instance never
// dilutes an average before its own data shows; a first Read therefore
// answers OK=false for CPU and QPS. Memory is a level, not a rate: it counts
// from the first sight.
//
// A task whose stats fail, or an instance that does not answer in time or
// answers with something other than a 200 text exposition, is left out of
// that cycle (not counted); its previous sample is kept while it stays
// listed, so the next cycle's rate spans both intervals. An instance whose
// exposition has no matching counter holds 0 requests: a CounterVec shows
// no series before its first request. It counts (with its rate from 0) once
// some instance of the app has shown the counter; until then the app's QPS
// has no data, so a counter pattern that matches nothing never reads as an
// idle app.
package local

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/scout/sample"
)

// DefaultCounterPattern matches the request counters summed into QPS:
// a plain `requests_total`, `http_requests_total` and every
// `<prefix>_requests_total` (the example service's `echo_requests_total`).
// The pattern must match a whole metric name. promhttp's own
// promhttp_metric_handler_requests_total counts the scrapes themselves and
// is always skipped.
const DefaultCounterPattern = `(.+_)?requests_total`

// Usage is a task's resource use now: the CPU time it has used since it
// started and its resident memory. The drivers' Usage types have this shape.
type Usage struct {
	CPUSeconds float64
	MemBytes   uint64
}

// StatsReader reads a running task's resource use. Each signalman driver
// has such a method with its own Usage type; FromDriver adapts it.
type StatsReader interface {
	Stats(ctx context.Context, taskID string) (Usage, error)
}

// StatsFunc adapts a function to a StatsReader.
type StatsFunc func(ctx context.Context, taskID string) (Usage, error)

// Stats calls f.
func (f StatsFunc) Stats(ctx context.Context, taskID string) (Usage, error) { return f(ctx, taskID) }

// DriverUsage is the shape of a driver's Usage type (process.Usage,
// docker.Usage).
type DriverUsage interface {
	~struct {
		CPUSeconds float64
		MemBytes   uint64
	}
}

// FromDriver turns a driver's Stats method into a StatsReader, so that
// wiring code can pass a *process.Driver or a *docker.Driver without scout
// importing signalman.
func FromDriver[U DriverUsage](d interface {
	Stats(ctx context.Context, taskID string) (U, error)
}) StatsReader {
	return StatsFunc(func(ctx context.Context, taskID string) (Usage, error) {
		u, err := d.Stats(ctx, taskID)
		return Usage(u), err
	})
}

// Option configures a Source.
type Option func(*config)

type config struct {
	counterPattern string
	metricsPath    string
	concurrency    int
	timeout        time.Duration
	maxBody        int64
	forget         time.Duration
	client         *http.Client
	now            func() time.Time
	logger         *slog.Logger
}

// WithCounterPattern sets the regular expression (matched against whole
// metric names) of the counters summed into QPS. Default
// DefaultCounterPattern. An app's Query[sample.QPS], when set, overrides it
// for that app.
func WithCounterPattern(re string) Option { return func(c *config) { c.counterPattern = re } }

// WithMetricsPath sets the path scraped on every instance. Default /metrics.
func WithMetricsPath(p string) Option { return func(c *config) { c.metricsPath = p } }

// WithConcurrency bounds how many scrapes and stats reads run at once.
// Default 8.
func WithConcurrency(n int) Option { return func(c *config) { c.concurrency = n } }

// WithTimeout bounds one scrape or one stats read. Default 1s: an instance
// slower than that is left out of the cycle.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithMaxBody bounds how much of a /metrics answer is read. Default 8 MiB.
func WithMaxBody(n int64) Option { return func(c *config) { c.maxBody = n } }

// WithForget sets how long the previous samples of an app that is no longer
// read are kept. Default 10m.
func WithForget(d time.Duration) Option { return func(c *config) { c.forget = d } }

// WithHTTPClient sets the client the scrapes use (each scrape still gets
// its own WithTimeout deadline). Default: a client with its own transport,
// no proxy, keep-alive to every instance.
func WithHTTPClient(cl *http.Client) Option { return func(c *config) { c.client = cl } }

// WithClock sets the clock the rates are computed with. Default time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithLogger sets where failures no caller receives are reported (a scrape
// that failed, the registry unreachable). Default: discarded.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// point is a cumulative value (CPU seconds, requests) at a time.
type point struct {
	v  float64
	at time.Time
}

// appState is what the source remembers of one app between cycles.
type appState struct {
	lastRead time.Time
	cpu      map[string]point // task id → CPU seconds
	requests map[string]point // instance key → summed request counters
	// counted: an instance of the app has exposed a matching counter, so
	// an instance without one has served no request yet (a CounterVec
	// shows no series before its first request) rather than not counting.
	counted bool
	pattern string // the counter pattern the samples were summed with
}

// Source is the local metric source. It is safe for concurrent use; Reads
// of the same app should come from one loop, since each Read's rate is
// taken against the previous Read of that app.
type Source struct {
	stats    StatsReader
	registry clientv3.KV
	cfg      config
	counters *regexp.Regexp
	client   *http.Client
	ownedTr  *http.Transport // closed by Close when the source made it

	mu       sync.Mutex
	apps     map[string]*appState
	patterns map[string]*regexp.Regexp // per-app Query[QPS], compiled once
}

var _ sample.Source = (*Source)(nil)

// Live reports that a Read measures up to the moment it is called: the
// autoscaler (autoscale.Live) re-reads an app sooner than its interval
// when that sizes a scale-up on a reading entirely after a change.
func (*Source) Live() bool { return true }

// New returns a source reading task stats from stats and instance addresses
// from registry (an etcd KV holding /service/...). A nil stats leaves CPU
// and memory without data; a nil registry leaves QPS without data.
func New(stats StatsReader, registry clientv3.KV, opts ...Option) (*Source, error) {
	cfg := config{
		counterPattern: DefaultCounterPattern,
		metricsPath:    "/metrics",
		concurrency:    8,
		timeout:        time.Second,
		maxBody:        8 << 20,
		forget:         10 * time.Minute,
		now:            time.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case cfg.concurrency < 1:
		return nil, fmt.Errorf("local source: concurrency %d must be at least 1", cfg.concurrency)
	case cfg.timeout <= 0:
		return nil, fmt.Errorf("local source: timeout %v must be positive", cfg.timeout)
	case cfg.maxBody <= 0:
		return nil, fmt.Errorf("local source: max body %d must be positive", cfg.maxBody)
	case !strings.HasPrefix(cfg.metricsPath, "/"):
		return nil, fmt.Errorf("local source: metrics path %q must start with /", cfg.metricsPath)
	}
	counters, err := compileCounters(cfg.counterPattern)
	if err != nil {
		return nil, fmt.Errorf("local source: counter pattern: %w", err)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		stats: stats, registry: registry, cfg: cfg, counters: counters, client: cfg.client,
		apps: map[string]*appState{}, patterns: map[string]*regexp.Regexp{},
	}
	if s.client == nil {
		s.ownedTr = &http.Transport{
			Proxy:               nil, // instances are on this machine
			DialContext:         (&net.Dialer{Timeout: cfg.timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
			// Over loopback, gzip only costs both sides CPU.
			DisableCompression: true,
		}
		s.client = &http.Client{Transport: s.ownedTr}
	}
	return s, nil
}

// Close releases the source's idle connections. The source stays usable.
func (s *Source) Close() {
	if s.ownedTr != nil {
		s.ownedTr.CloseIdleConnections()
	}
}

func compileCounters(pattern string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", pattern, err)
	}
	return re, nil
}

// target is one instance to scrape for one app.
type target struct {
	key  string // addr + "/" + task id: the identity of its samples
	addr string
}

// appWork is one app of a Read, with what its jobs observed.
type appWork struct {
	app      sample.App
	tasks    []string // deduplicated
	counters *regexp.Regexp
	targets  []target
	// observations, indexed like tasks and targets
	usage   []obsUsage
	scrapes []obsScrape
}

type obsUsage struct {
	ok bool
	u  Usage
	at time.Time
}

type obsScrape struct {
	ok    bool // the instance answered with a valid exposition
	found bool // it holds a matching counter
	v     float64
	at    time.Time
}

// Read returns CPU, memory and QPS of every app in req, each over the time
// since the previous Read of that app (req.Window is not used: the window is
// the evaluation interval). It fails only when ctx ends; a registry that
// cannot be listed leaves QPS without data for that cycle.
func (s *Source) Read(ctx context.Context, req sample.Request) (sample.Readings, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local source: %w", err)
	}
	works := make([]*appWork, 0, len(req.Apps))
	seen := make(map[string]bool, len(req.Apps))
	for _, a := range req.Apps {
		if seen[a.ID] {
			continue
		}
		seen[a.ID] = true
		w := &appWork{app: a, tasks: dedupe(a.Tasks)}
		w.usage = make([]obsUsage, len(w.tasks))
		works = append(works, w)
	}

	regErr := s.targets(ctx, works)
	if regErr != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("local source: %w", ctx.Err())
		}
		s.cfg.logger.Warn("local source: registry not listed; QPS has no data this cycle", "error", regErr)
	}

	var jobs []func(context.Context)
	for _, w := range works {
		if s.stats != nil && (w.app.Wants(sample.CPU) || w.app.Wants(sample.Mem)) {
			for i, id := range w.tasks {
				jobs = append(jobs, func(ctx context.Context) { w.usage[i] = s.readStats(ctx, w.app.ID, id) })
			}
		}
		for i, t := range w.targets {
			jobs = append(jobs, func(ctx context.Context) { w.scrapes[i] = s.scrape(ctx, w.app.ID, t, w.counters) })
		}
	}
	if err := s.run(ctx, jobs); err != nil {
		return nil, fmt.Errorf("local source: %w", err)
	}

	now := s.cfg.now()
	out := make(sample.Readings, len(works))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range works {
		st := s.apps[w.app.ID]
		if st == nil {
			st = &appState{cpu: map[string]point{}, requests: map[string]point{}}
			s.apps[w.app.ID] = st
		}
		st.lastRead = now
		r := sample.Reading{}
		r[sample.CPU], r[sample.Mem] = s.usageValues(st, w)
		if regErr != nil || w.counters == nil {
			r[sample.QPS] = sample.Value{} // no data; keep the previous samples
		} else {
			r[sample.QPS] = s.qpsValue(st, w)
		}
		out[w.app.ID] = r
	}
	for id, st := range s.apps {
		if now.Sub(st.lastRead) > s.cfg.forget {
			delete(s.apps, id)
		}
	}
	return out, nil
}

// usageValues turns this cycle's stats into the CPU and memory values and
// replaces the app's CPU samples. s.mu is held.
func (s *Source) usageValues(st *appState, w *appWork) (cpu, mem sample.Value) {
	if s.stats == nil {
		return sample.Value{}, sample.Value{}
	}
	next := make(map[string]point, len(w.tasks))
	var cpuSum, memSum float64
	for i, id := range w.tasks {
		o := w.usage[i]
		prev, had := st.cpu[id]
		if !o.ok {
			if had {
				next[id] = prev // keep it while the task is listed
			}
			continue
		}
		if w.app.MemMB > 0 {
			memSum += float64(o.u.MemBytes) / (w.app.MemMB * (1 << 20))
			mem.Instances++
		}
		cur := point{v: o.u.CPUSeconds, at: o.at}
		switch {
		case had && !cur.at.After(prev.at):
			next[id] = prev // an older observation than the one kept (concurrent Reads)
			continue
		case had && cur.v >= prev.v && w.app.CPUs > 0:
			cpuSum += (cur.v - prev.v) / cur.at.Sub(prev.at).Seconds() / w.app.CPUs
			cpu.Instances++
		}
		next[id] = cur
	}
	st.cpu = next
	if cpu.Instances > 0 {
		cpu.Value, cpu.OK = cpuSum/float64(cpu.Instances), true
	}
	if mem.Instances > 0 {
		mem.Value, mem.OK = memSum/float64(mem.Instances), true
	}
	return cpu, mem
}

// qpsValue turns this cycle's scrapes into the QPS value and replaces the
// app's request samples. s.mu is held.
func (s *Source) qpsValue(st *appState, w *appWork) sample.Value {
	if p := w.counters.String(); p != st.pattern { // other counters: start over
		st.pattern, st.counted, st.requests = p, false, nil
	}
	next := make(map[string]point, len(w.targets))
	var v sample.Value
	for _, o := range w.scrapes {
		st.counted = st.counted || o.found
	}
	for i, t := range w.targets {
		o := w.scrapes[i]
		prev, had := st.requests[t.key]
		if !o.ok {
			if had {
				next[t.key] = prev
			}
			continue
		}
		cur := point{v: o.v, at: o.at} // 0 when the counter is not there
		if had && !cur.at.After(prev.at) {
			next[t.key] = prev
			continue
		}
		if had && (o.found || st.counted) {
			delta := cur.v - prev.v
			if delta < 0 { // the counter was reset: the instance restarted
				delta = cur.v
			}
			v.Value += delta / cur.at.Sub(prev.at).Seconds()
			v.Instances++
		}
		next[t.key] = cur
	}
	st.requests = next
	v.OK = v.Instances > 0
	return v
}

// run runs jobs with at most cfg.concurrency at once and waits for all of
// them; it fails when ctx ends first.
func (s *Source) run(ctx context.Context, jobs []func(context.Context)) error {
	sem := make(chan struct{}, s.cfg.concurrency)
	var wg sync.WaitGroup
	var err error
loop:
	for _, job := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			job(ctx)
		})
	}
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return err
}

func (s *Source) readStats(ctx context.Context, appID, taskID string) obsUsage {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	u, err := s.stats.Stats(ctx, taskID)
	if err != nil {
		// Usual while a task stops; the task is left out of this cycle.
		s.cfg.logger.Debug("local source: task stats", "app", appID, "task", taskID, "error", err)
		return obsUsage{}
	}
	return obsUsage{ok: true, u: u, at: s.cfg.now()}
}

// targets lists the registry once and gives each app the instances to
// scrape: those whose metadata names the app (appId, as garrison registers
// tasks), and those without an appId whose instance id or taskId is one of
// the app's tasks (services that register themselves under MESOS_TASK_ID).
// Two entries of an app with the same address are one instance.
func (s *Source) targets(ctx context.Context, works []*appWork) error {
	byApp := map[string]*appWork{}
	byTask := map[string]*appWork{}
	for _, w := range works {
		byApp[w.app.ID] = w
		for _, id := range w.tasks {
			byTask[id] = w
		}
		pattern := w.app.Query[sample.QPS]
		if pattern == "" {
			w.counters = s.counters
			continue
		}
		re, err := s.appCounters(pattern)
		if err != nil {
			s.cfg.logger.Warn("local source: app counter pattern; QPS has no data", "app", w.app.ID, "error", err)
			continue
		}
		w.counters = re
	}
	if len(works) == 0 || s.registry == nil {
		return nil
	}
	resp, err := s.registry.Get(ctx, registrar.Prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("list %s: %w", registrar.Prefix, err)
	}
	type found struct {
		w      *appWork
		t      target
		byMeta bool
	}
	byAddr := map[string]found{}
	for _, kv := range resp.Kvs {
		inst, err := registrar.DecodeInstance(kv.Key, kv.Value)
		if err != nil {
			continue // not an endpoint: etcd's resolver skips it too
		}
		md := inst.Endpoint.Metadata
		taskID := cmp.Or(md["taskId"], inst.ID)
		var w *appWork
		byMeta := false
		if appID := md["appId"]; appID != "" {
			w, byMeta = byApp[appID], true
		} else {
			w = byTask[taskID]
		}
		if w == nil {
			continue
		}
		addr := inst.Endpoint.Addr
		at := w.app.ID + " " + addr
		if f, dup := byAddr[at]; dup && (f.byMeta || !byMeta) {
			continue
		}
		byAddr[at] = found{w: w, t: target{key: addr + "/" + taskID, addr: addr}, byMeta: byMeta}
	}
	for _, at := range slices.Sorted(maps.Keys(byAddr)) {
		f := byAddr[at]
		if f.w.counters != nil {
			f.w.targets = append(f.w.targets, f.t)
		}
	}
	for _, w := range works {
		w.scrapes = make([]obsScrape, len(w.targets))
	}
	return nil
}

func (s *Source) appCounters(pattern string) (*regexp.Regexp, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if re, ok := s.patterns[pattern]; ok {
		return re, nil
	}
	re, err := compileCounters(pattern)
	if err != nil {
		return nil, err
	}
	if len(s.patterns) > 1024 { // a bound, not a cache policy: apps rarely override
		clear(s.patterns)
	}
	s.patterns[pattern] = re
	return re, nil
}

// scrape reads one instance's request counters.
func (s *Source) scrape(ctx context.Context, appID string, t target, counters *regexp.Regexp) obsScrape {
	v, found, err := s.fetch(ctx, t.addr, counters)
	if err != nil {
		s.cfg.logger.Debug("local source: scrape; instance left out", "app", appID, "addr", t.addr, "error", err)
		return obsScrape{}
	}
	return obsScrape{ok: true, found: found, v: v, at: s.cfg.now()}
}

func (s *Source) fetch(ctx context.Context, addr string, counters *regexp.Regexp) (v float64, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	url := "http://" + addr + s.cfg.metricsPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false, fmt.Errorf("scrape %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, false, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // let the connection be reused
		return 0, false, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	v, found, err = sumCounters(io.LimitReader(resp.Body, s.cfg.maxBody), counters)
	if err != nil {
		return 0, false, fmt.Errorf("scrape %s: %w", url, err)
	}
	return v, found, nil
}

// sumCounters sums every series of the counter (or untyped) families whose
// name the pattern matches; found says whether there was one.
func sumCounters(r io.Reader, counters *regexp.Regexp) (sum float64, found bool, err error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return 0, false, fmt.Errorf("parse text exposition: %w", err)
	}
	for name, mf := range families {
		if strings.HasPrefix(name, "promhttp_") || !counters.MatchString(name) {
			continue
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		case dto.MetricType_UNTYPED:
			for _, m := range mf.GetMetric() {
				sum += m.GetUntyped().GetValue()
			}
		default:
			continue
		}
		found = true
	}
	return sum, found, nil
}

func dedupe(ids []string) []string {
	out := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
