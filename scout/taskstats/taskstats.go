// Package taskstats exports what each running task uses and was given as
// Prometheus metrics, the way the Mesos exporter did for the origin design,
// so the autoscaler's CPU and memory fractions are plain PromQL:
//
//	garrison_task_cpu_seconds_total{app,task}   counter: CPU time used since start
//	garrison_task_memory_bytes{app,task}        gauge: memory in use (RSS; a container's usage without page cache)
//	garrison_task_cpus{app,task}                gauge: cpus the app gives each task
//	garrison_task_memory_limit_bytes{app,task}  gauge: mem the app gives each task, in bytes
//
// e.g. avg by (app) (rate(garrison_task_cpu_seconds_total[30s]) / garrison_task_cpus).
//
// For tasks whose main pid is known (the Tasks implements PidReader, as
// internal/driverstats.Adapt does for the process and Docker drivers), it also exports their TCP
// sockets, found by ownership (see network.go):
//
//	garrison_task_tcp_connections{app,task,state}      gauge: established, listen, close_wait, other
//	garrison_task_tcp_queue_bytes{app,task,direction}  gauge: rx (unread), tx (unacknowledged)
//
// The series carry their own app and task labels, so the scrape job that
// reads garrison's /metrics needs honor_labels: true (otherwise a target
// label named app would rename them exported_app).
//
// There are no network byte counters: tasks run with host networking, so a
// container shares the host's network namespace and /proc/<pid>/net/dev (or
// Docker's network stats) report the whole host's traffic, not the task's.
// Per-task network bytes cannot be read truthfully here, so they are not
// exported at all rather than exported wrong; the TCP figures above are
// what socket ownership does tell truthfully.
//
// The package reads tasks through the small Tasks interface; it imports no
// signalman package (data flows scout -> headquarter -> signalman);
// internal/driverstats adapts the drivers to it in the wiring layer.
package taskstats

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Usage is what one task uses now.
type Usage struct {
	// CPUSeconds is the CPU time used since the task started.
	CPUSeconds float64
	// MemBytes is the memory in use now.
	MemBytes uint64
}

// Task is a running task: its id and its app's.
type Task struct {
	ID, AppID string
}

// Tasks is one driver's view of its tasks. The wiring adapts each
// signalman driver to it (internal/driverstats), so scout does not import
// signalman.
type Tasks interface {
	// Running lists the tasks that run (or are being killed) now.
	Running(ctx context.Context) ([]Task, error)
	Stats(ctx context.Context, taskID string) (Usage, error)
}

// Limits tells what each task of an app was given: cpus, and mem in MiB
// (Marathon's "mem", which Docker enforces as MemMB<<20 bytes). ok is false
// for an app garrison does not know; its tasks then export usage only.
type Limits func(appID string) (cpus, memMB float64, ok bool)

// Option changes a Collector.
type Option func(*Collector)

// WithTimeout bounds one collection, listing and stats together (default
// 2s). Tasks whose stats are not in by then are left out of that scrape and
// counted in garrison_task_stats_errors_total.
func WithTimeout(d time.Duration) Option { return func(c *Collector) { c.timeout = d } }

// WithParallelism sets how many Stats calls run at once (default 8).
func WithParallelism(n int) Option { return func(c *Collector) { c.parallel = n } }

// WithLogger sets where failed reads are logged (at debug level: they are
// counted in a metric).
func WithLogger(l *slog.Logger) Option { return func(c *Collector) { c.logger = l } }

// Collector is a prometheus.Collector over the tasks of one or more
// drivers. Register it on a registry of your own (not the default one).
type Collector struct {
	tasks     []Tasks
	limits    Limits
	timeout   time.Duration
	parallel  int
	procLimit int
	logger    *slog.Logger

	cpuSeconds, memBytes, cpus, memLimit *prometheus.Desc
	tcpConns, tcpQueue                   *prometheus.Desc
	errs                                 *prometheus.CounterVec
}

// Error stages counted in garrison_task_stats_errors_total{stage}.
const (
	StageList  = "list"
	StageStats = "stats"
	// StageNetwork: a task's pid, process tree, sockets or TCP table could
	// not be read; the task exports CPU and memory but no TCP figures.
	StageNetwork = "network"
)

// New returns a collector over tasks, with limits naming what each app's
// tasks were given.
func New(limits Limits, tasks []Tasks, opts ...Option) *Collector {
	labels := []string{"app", "task"}
	c := &Collector{
		tasks:     tasks,
		limits:    limits,
		timeout:   2 * time.Second,
		parallel:  8,
		procLimit: DefaultProcessLimit,
		logger:    slog.New(slog.DiscardHandler),
		cpuSeconds: prometheus.NewDesc("garrison_task_cpu_seconds_total",
			"CPU time the task has used since it started, in seconds.", labels, nil),
		memBytes: prometheus.NewDesc("garrison_task_memory_bytes",
			"Memory the task uses now, in bytes (resident set; for a container, usage without page cache).", labels, nil),
		cpus: prometheus.NewDesc("garrison_task_cpus",
			"CPUs the task's app gives each task.", labels, nil),
		memLimit: prometheus.NewDesc("garrison_task_memory_limit_bytes",
			"Memory the task's app gives each task, in bytes.", labels, nil),
		tcpConns: prometheus.NewDesc("garrison_task_tcp_connections",
			"TCP sockets the task's processes hold now, by state (established, listen, close_wait, other; TIME_WAIT sockets have no owner).",
			[]string{"app", "task", "state"}, nil),
		tcpQueue: prometheus.NewDesc("garrison_task_tcp_queue_bytes",
			"Bytes queued in the task's TCP connections now: rx received but not read by the task, tx sent but not acknowledged by the peer.",
			[]string{"app", "task", "direction"}, nil),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_task_stats_errors_total",
			Help: "Failed reads of task lists, task stats (a task ending between list and stats counts too) or task sockets (stage network).",
		}, []string{"stage"}),
	}
	for _, o := range opts {
		o(c)
	}
	if c.parallel < 1 {
		c.parallel = 1
	}
	if c.procLimit < 1 {
		c.procLimit = 1
	}
	for _, s := range []string{StageList, StageStats, StageNetwork} {
		c.errs.WithLabelValues(s) // exported as 0 from the start
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.cpuSeconds
	ch <- c.memBytes
	ch <- c.cpus
	ch <- c.memLimit
	ch <- c.tcpConns
	ch <- c.tcpQueue
	c.errs.Describe(ch)
}

// Collect implements prometheus.Collector: it lists every driver's tasks
// and reads the running ones' stats, in parallel, within the timeout.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	for _, m := range c.Gather(ctx) {
		c.emit(ch, m)
	}
	c.errs.Collect(ch)
}

// TaskUsage is one task's figures as Collect exports them.
type TaskUsage struct {
	AppID, TaskID string
	Usage
	// CPUs and MemMB are what the app gives each task; LimitsOK is false
	// when Limits did not know the app.
	CPUs, MemMB float64
	LimitsOK    bool
	// TCP is what the task's sockets are now; nil when its pid is not
	// known or they could not be read.
	TCP *TCPUsage
}

// Gather reads every running task's usage. Tasks whose list or stats fail,
// or are not in before ctx ends, are left out and counted as errors. For
// tasks of a PidReader it also walks their process trees and reads the TCP
// tables once per network namespace, within the same ctx.
func (c *Collector) Gather(ctx context.Context) []TaskUsage {
	var running []Task
	var from []Tasks
	for _, ts := range c.tasks {
		list, err := ts.Running(ctx)
		if err != nil {
			c.errs.WithLabelValues(StageList).Inc()
			c.logger.Debug("taskstats: list tasks", "error", err)
			continue
		}
		for _, st := range list {
			running = append(running, st)
			from = append(from, ts)
		}
	}
	out := make([]TaskUsage, len(running))
	ok := make([]bool, len(running))
	socks := make([]*taskSockets, len(running))
	walker := newProcWalker(c.procLimit)
	sem := make(chan struct{}, c.parallel)
	var wg sync.WaitGroup
reads:
	for i, st := range running {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			// The remaining tasks are not read: count them all.
			c.errs.WithLabelValues(StageStats).Add(float64(len(running) - i))
			c.logger.Debug("taskstats: out of time", "unread", len(running)-i, "error", ctx.Err())
			break reads
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			u, err := from[i].Stats(ctx, st.ID)
			if err != nil {
				c.errs.WithLabelValues(StageStats).Inc()
				c.logger.Debug("taskstats: stats", "task", st.ID, "error", err)
				return
			}
			tu := TaskUsage{AppID: st.AppID, TaskID: st.ID, Usage: u}
			if c.limits != nil {
				tu.CPUs, tu.MemMB, tu.LimitsOK = c.limits(st.AppID)
			}
			out[i], ok[i] = tu, true
			pr, isPR := from[i].(PidReader)
			if !isPR {
				return
			}
			ts, known, err := c.walkTask(ctx, walker, pr, st.ID)
			if err != nil {
				c.errs.WithLabelValues(StageNetwork).Inc()
				c.logger.Debug("taskstats: sockets", "task", st.ID, "error", err)
				return
			}
			if known {
				socks[i] = &ts
			}
		}()
	}
	wg.Wait()
	c.attributeTCP(ctx, socks, out)
	n := 0
	for i := range out {
		if ok[i] {
			out[n] = out[i]
			n++
		}
	}
	return out[:n]
}

func (c *Collector) emit(ch chan<- prometheus.Metric, u TaskUsage) {
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, extra ...string) {
		m, err := prometheus.NewConstMetric(d, t, v, append([]string{u.AppID, u.TaskID}, extra...)...)
		if err != nil { // only for invalid label values: not worth failing the scrape
			c.errs.WithLabelValues(StageStats).Inc()
			c.logger.Debug("taskstats: metric", "task", u.TaskID, "error", err)
			return
		}
		ch <- m
	}
	send(c.cpuSeconds, prometheus.CounterValue, u.CPUSeconds)
	send(c.memBytes, prometheus.GaugeValue, float64(u.MemBytes))
	// A zero limit would make the PromQL fraction +Inf: leave it out, and
	// the app's fraction has no data instead.
	if u.LimitsOK && u.CPUs > 0 {
		send(c.cpus, prometheus.GaugeValue, u.CPUs)
	}
	if u.LimitsOK && u.MemMB > 0 {
		send(c.memLimit, prometheus.GaugeValue, u.MemMB*(1<<20))
	}
	if t := u.TCP; t != nil {
		send(c.tcpConns, prometheus.GaugeValue, float64(t.Established), StateEstablished)
		send(c.tcpConns, prometheus.GaugeValue, float64(t.Listen), StateListen)
		send(c.tcpConns, prometheus.GaugeValue, float64(t.CloseWait), StateCloseWait)
		send(c.tcpConns, prometheus.GaugeValue, float64(t.Other), StateOther)
		send(c.tcpQueue, prometheus.GaugeValue, float64(t.RxQueueBytes), "rx")
		send(c.tcpQueue, prometheus.GaugeValue, float64(t.TxQueueBytes), "tx")
	}
}
