// Package prometheus is the scout source that reads QPS, CPU and memory
// from Prometheus with instant queries.
//
// Each Read issues ONE query per metric for ALL apps, grouped by the app
// label (plus one count query per metric for Value.Instances), never one
// per app: N apps × 3 metrics queries every evaluation would hammer
// Prometheus and stretch the evaluation with N round trips, while one
// grouped query selects the same series once and costs about what a single
// app's query costs. The number of queries per Read is constant in the
// number of apps; the per-app overrides in App.Query add one query per
// distinct override.
//
// Queries are Go text/template strings over Data: {{.Window}} is the
// window as a PromQL duration (30s, 1m30s), and in a per-app override
// {{.App}} is the app id. The defaults work with what garrison exports:
// the targets headquarter/promsd hands Prometheus carry an app label, and
// scout/taskstats exports per-task CPU and memory with their limits.
package prometheus

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/garrisonhq/garrison/scout/sample"
)

// LabelApp is the label results are grouped by; its value is the app id.
const LabelApp = "app"

// Default queries. QPS sums the request counters of the app's instances
// (requests_total, http_requests_total, any *_requests_total; promhttp's
// own scrape counter is not load); an instance counts once it has a rate
// (two scrapes), so a new instance without data is not in Instances. CPU
// and memory are fractions of what each task was given, averaged over the
// app's tasks.
//
// Rates are irate: the last two samples in the window, so a reading shows
// the load of the last scrape interval, not a minute's average that is
// still mostly the time before a step (issue 11). The window only has to
// hold two scrapes; scale-downs are damped by scaleDownAfter, not by it.
const (
	counters            = `{__name__=~"(.+_)?requests_total",__name__!~"promhttp_.+",app!=""}`
	DefaultQPS          = `sum by (app) (irate(` + counters + `[{{.Window}}]))`
	DefaultQPSInstances = `count by (app) (sum by (app, instance) (irate(` + counters + `[{{.Window}}])))`
	DefaultCPU          = `avg by (app) (irate(garrison_task_cpu_seconds_total[{{.Window}}]) / garrison_task_cpus)`
	DefaultCPUInstances = `count by (app) (irate(garrison_task_cpu_seconds_total[{{.Window}}]) / garrison_task_cpus)`
	DefaultMem          = `avg by (app) (garrison_task_memory_bytes / garrison_task_memory_limit_bytes)`
	DefaultMemInstances = `count by (app) (garrison_task_memory_bytes / garrison_task_memory_limit_bytes)`
)

// Query is one metric's queries: Value gives the reading per app, and
// Instances, when set, the number of instances it was computed from.
type Query struct {
	Value     string
	Instances string
}

// DefaultQueries returns the default query of each metric.
func DefaultQueries() map[sample.Metric]Query {
	return map[sample.Metric]Query{
		sample.QPS: {Value: DefaultQPS, Instances: DefaultQPSInstances},
		sample.CPU: {Value: DefaultCPU, Instances: DefaultCPUInstances},
		sample.Mem: {Value: DefaultMem, Instances: DefaultMemInstances},
	}
}

// Data is what a query template sees.
type Data struct {
	// Window is the request's window as a PromQL duration.
	Window string
	// App is the app id in a per-app override, "" in the source's queries.
	App string
}

// Option changes a Source.
type Option func(*options)

type options struct {
	queries      map[sample.Metric]Query
	timeout      time.Duration
	parallel     int
	roundTripper http.RoundTripper
	logger       *slog.Logger
}

// WithQuery replaces the source's query for metric m (for every app
// without an override of its own). An empty Instances leaves
// Value.Instances at 0, meaning not counted.
func WithQuery(m sample.Metric, q Query) Option {
	return func(o *options) { o.queries[m] = q }
}

// WithTimeout bounds one Read, every query included (default 3s); it is
// also sent to Prometheus as the queries' evaluation timeout.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithParallelism sets how many queries run at once (default 8).
func WithParallelism(n int) Option { return func(o *options) { o.parallel = n } }

// WithRoundTripper sets the HTTP transport (default http.DefaultTransport).
func WithRoundTripper(rt http.RoundTripper) Option { return func(o *options) { o.roundTripper = rt } }

// WithLogger sets where query warnings from Prometheus are logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Source reads from one Prometheus server. It is safe for concurrent use.
type Source struct {
	addr     string
	api      v1.API
	queries  map[sample.Metric]compiled
	timeout  time.Duration
	parallel int
	logger   *slog.Logger

	mu        sync.Mutex
	overrides map[string]*template.Template // per-app override text -> parsed
}

type compiled struct {
	value, instances *template.Template
}

var _ sample.Source = (*Source)(nil)

// New returns a source reading from the Prometheus at address
// (http://127.0.0.1:9090). The queries are parsed here: a bad template is
// an error now, not at the first Read.
func New(address string, opts ...Option) (*Source, error) {
	o := options{
		queries:  DefaultQueries(),
		timeout:  3 * time.Second,
		parallel: 8,
		logger:   slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("prometheus source %s: timeout %v must be positive", address, o.timeout)
	}
	o.parallel = max(o.parallel, 1)
	client, err := api.NewClient(api.Config{Address: address, RoundTripper: o.roundTripper})
	if err != nil {
		return nil, fmt.Errorf("prometheus source %s: %w", address, err)
	}
	s := &Source{
		addr: address, api: v1.NewAPI(client), queries: map[sample.Metric]compiled{},
		timeout: o.timeout, parallel: o.parallel, logger: o.logger,
		overrides: map[string]*template.Template{},
	}
	for m, q := range o.queries {
		var c compiled
		if c.value, err = parse(string(m), q.Value); err != nil {
			return nil, fmt.Errorf("prometheus source %s: %w", address, err)
		}
		if q.Instances != "" {
			if c.instances, err = parse(string(m)+" instances", q.Instances); err != nil {
				return nil, fmt.Errorf("prometheus source %s: %w", address, err)
			}
		}
		s.queries[m] = c
	}
	return s, nil
}

func parse(name, text string) (*template.Template, error) {
	if text == "" {
		return nil, fmt.Errorf("query %s: empty", name)
	}
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", name, err)
	}
	return t, nil
}

// Render executes a query template with d: the text Prometheus is sent.
func Render(t *template.Template, d Data) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("render query %s: %w", t.Name(), err)
	}
	return b.String(), nil
}

// Window spells d as a PromQL duration, e.g. 30s, 1m30s; at least 1ms.
func Window(d time.Duration) string { return model.Duration(max(d, time.Millisecond)).String() }

// job is one query to run and the apps whose readings come from it.
type job struct {
	text   string
	metric sample.Metric
	count  bool // an Instances query
	// override: the query was an app's own; a lone result without an app
	// label is that app's.
	override bool
	apps     []string
	result   map[string]float64 // app label -> value
	single   *float64           // the lone unlabelled result
	// err: an override failed (a query that does not parse): its apps
	// have no data for the metric, the others are unaffected.
	err error
}

// plan renders the queries Read would send for req: one per metric (and
// one per metric's Instances) for every app on the defaults, plus one per
// distinct per-app override.
func (s *Source) plan(req sample.Request) ([]*job, error) {
	if req.Window <= 0 {
		return nil, fmt.Errorf("prometheus source %s: window %v must be positive", s.addr, req.Window)
	}
	window := Window(req.Window)
	byText := map[string]*job{}
	var jobs []*job
	add := func(text string, m sample.Metric, count, override bool, app string) {
		key := string(m) + "\x00" + fmt.Sprint(count) + "\x00" + text
		j := byText[key]
		if j == nil {
			j = &job{text: text, metric: m, count: count, override: override}
			byText[key] = j
			jobs = append(jobs, j)
		}
		j.apps = append(j.apps, app)
	}
	for _, m := range sample.Metrics {
		c, ok := s.queries[m]
		if !ok {
			continue
		}
		var shared, sharedCount string // rendered lazily: only if an app uses it
		for _, a := range req.Apps {
			if text := a.Query[m]; text != "" {
				// The app's own query, and the count of the instances its
				// value came from when the rule gives one.
				for i, text := range []string{text, a.InstancesQuery[m]} {
					if text == "" {
						continue
					}
					t, err := s.override(text)
					if err == nil {
						text, err = Render(t, Data{Window: window, App: a.ID})
					}
					if err != nil {
						return nil, fmt.Errorf("prometheus source %s: app %s: %w", s.addr, a.ID, err)
					}
					add(text, m, i == 1, true, a.ID)
				}
				continue
			}
			if shared == "" {
				var err error
				if shared, err = Render(c.value, Data{Window: window}); err != nil {
					return nil, fmt.Errorf("prometheus source %s: %w", s.addr, err)
				}
				if c.instances != nil {
					if sharedCount, err = Render(c.instances, Data{Window: window}); err != nil {
						return nil, fmt.Errorf("prometheus source %s: %w", s.addr, err)
					}
				}
			}
			add(shared, m, false, false, a.ID)
			if sharedCount != "" {
				add(sharedCount, m, true, false, a.ID)
			}
		}
	}
	return jobs, nil
}

func (s *Source) override(text string) (*template.Template, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.overrides[text]; t != nil {
		return t, nil
	}
	t, err := parse("override", text)
	if err != nil {
		return nil, err
	}
	s.overrides[text] = t
	return t, nil
}

// Read implements sample.Source. An app without series for a metric gets
// OK=false for it; so does a NaN or infinite value (a zero limit). Any
// failed query fails the Read: the autoscaler then counts no data for this
// source, which never scales anything down.
func (s *Source) Read(ctx context.Context, req sample.Request) (sample.Readings, error) {
	jobs, err := s.plan(req)
	if err != nil {
		return nil, err
	}
	at := req.At
	if at.IsZero() {
		at = time.Now()
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.run(ctx, jobs, at); err != nil {
		return nil, err
	}
	return assemble(req.Apps, jobs), nil
}

func (s *Source) run(ctx context.Context, jobs []*job, at time.Time) error {
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, s.parallel)
	var wg sync.WaitGroup
	for i, j := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return fmt.Errorf("prometheus at %s: %w", s.addr, ctx.Err())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = s.query(ctx, j, at)
		}()
	}
	wg.Wait()
	// The first failure names the server and the query; when Prometheus is
	// down every query fails alike, so the others are only counted. An
	// app's own query that Prometheus refuses (bad_data: it does not parse
	// or does not apply) fails that app's metric only.
	var first error
	n := 0
	for i, err := range errs {
		if err == nil {
			continue
		}
		var perr *v1.Error
		if jobs[i].override && errors.As(err, &perr) && perr.Type == v1.ErrBadData {
			jobs[i].err = err
			continue
		}
		first = cmp.Or(first, err)
		n++
	}
	if n > 1 {
		return fmt.Errorf("%w (and %d more of %d queries failed)", first, n-1, len(jobs))
	}
	return first
}

func (s *Source) query(ctx context.Context, j *job, at time.Time) error {
	// Prometheus 2.x parses the timeout parameter as a PromQL duration,
	// which has no fractions: whole seconds, at least one.
	timeout := max(time.Until(deadlineOf(ctx)).Truncate(time.Second), time.Second)
	val, warnings, err := s.api.Query(ctx, j.text, at, v1.WithTimeout(timeout))
	what := string(j.metric)
	if j.count {
		what += " instances"
	}
	if err != nil {
		return fmt.Errorf("prometheus at %s: %s query %q: %w", s.addr, what, j.text, err)
	}
	if len(warnings) > 0 {
		s.logger.Warn("prometheus query warnings", "server", s.addr, "query", j.text, "warnings", warnings)
	}
	if err := j.take(val); err != nil {
		return fmt.Errorf("prometheus at %s: %s query %q: %w", s.addr, what, j.text, err)
	}
	return nil
}

func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Minute)
	}
	return d
}

// take groups a query result by its app label.
func (j *job) take(val model.Value) error {
	switch v := val.(type) {
	case model.Vector:
		j.result = make(map[string]float64, len(v))
		for _, smp := range v {
			app, ok := smp.Metric[LabelApp]
			if !ok {
				if len(v) == 1 {
					f := float64(smp.Value)
					j.single = &f
				}
				continue
			}
			j.result[string(app)] = float64(smp.Value)
		}
	case *model.Scalar:
		f := float64(v.Value)
		j.single = &f
	default:
		return fmt.Errorf("result is a %s, want an instant vector", val.Type())
	}
	return nil
}

func (j *job) lookup(app string) (float64, bool) {
	if v, ok := j.result[app]; ok {
		return v, true
	}
	if j.override && j.single != nil {
		return *j.single, true
	}
	return 0, false
}

// assemble builds every app's reading from the jobs' results.
func assemble(apps []sample.App, jobs []*job) sample.Readings {
	out := make(sample.Readings, len(apps))
	for _, a := range apps {
		out[a.ID] = make(sample.Reading, len(sample.Metrics))
	}
	for _, j := range jobs {
		if j.err != nil {
			for _, app := range j.apps {
				if !j.count {
					out[app][j.metric] = sample.Value{Err: j.err.Error()}
				}
			}
			continue
		}
		for _, app := range j.apps {
			v, ok := j.lookup(app)
			if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			r := out[app]
			cur := r[j.metric]
			if j.count {
				cur.Instances = int(v)
			} else {
				cur.Value, cur.OK = v, true
			}
			r[j.metric] = cur
		}
	}
	// A count without a value is no reading.
	for _, r := range out {
		for m, v := range r {
			if !v.OK {
				r[m] = sample.Value{Err: v.Err}
			}
		}
	}
	return out
}

// Check asks Prometheus to parse a rule's query, rendered as the source
// would send it: an error of Prometheus's own parser (bad_data) names the
// problem and its position. CheckSyntax parses offline with the parser
// garrison links; the server that will run the query also knows which
// functions its version has. Other errors (Prometheus unreachable) are
// returned as they are.
func (s *Source) Check(ctx context.Context, query string, app string, window time.Duration) error {
	t, err := parse("query", query)
	if err != nil {
		return err
	}
	text, err := Render(t, Data{Window: Window(window), App: app})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, _, err = s.api.Query(ctx, text, time.Now())
	var perr *v1.Error
	if errors.As(err, &perr) && perr.Type == v1.ErrBadData {
		return &QueryError{Query: text, Msg: perr.Msg}
	}
	if err != nil {
		return fmt.Errorf("prometheus at %s: %w", s.addr, err)
	}
	return nil
}

// QueryError is a query Prometheus refused.
type QueryError struct {
	Query, Msg string
}

func (e *QueryError) Error() string { return fmt.Sprintf("PromQL %q: %s", e.Query, e.Msg) }
