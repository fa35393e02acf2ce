// Package sample holds the values scout's metric sources return and
// headquarter's autoscaler reads: one reading per app and metric over a
// window. It is a leaf: sources and the autoscaler import it, not each other.
package sample

import (
	"context"
	"time"
)

// Metric names one of the three signals the autoscaler votes on.
type Metric string

const (
	// QPS is requests per second, summed over the app's instances.
	QPS Metric = "qps"
	// CPU is the CPU used as a fraction of the app's cpus, averaged over its
	// instances (1.0 = every instance uses all it was given).
	CPU Metric = "cpu"
	// Mem is resident memory as a fraction of the app's mem, averaged over
	// its instances.
	Mem Metric = "mem"
)

// Metrics lists the three in a fixed order.
var Metrics = [...]Metric{QPS, CPU, Mem}

// App is one app a source is asked about.
type App struct {
	// ID is the Marathon app id, e.g. /ktv/account.
	ID string
	// CPUs and MemMB are what each instance was given: the denominators of
	// the CPU and memory fractions.
	CPUs  float64
	MemMB float64
	// Tasks are the ids of the app's running tasks, for sources that read
	// per task (the local source).
	Tasks []string
	// Query overrides a source's default query per metric (a PromQL
	// template, an Elasticsearch service name); empty uses the default.
	Query map[Metric]string
	// Metrics are the metrics the app's rule votes on; nil: all. A source
	// may skip the work of the others (the local source reads no task
	// stats for a rule on QPS alone).
	Metrics []Metric
	// InstancesQuery, beside a Query override, counts the instances its
	// value came from (so a new instance without data is not divided
	// into it); without one the autoscaler assumes every ready instance.
	InstancesQuery map[Metric]string
}

// Request asks a source for readings of many apps at once: sources answer
// with one query per metric for all apps, not one per app.
type Request struct {
	Apps   []App
	Window time.Duration
	// At is the end of the window (now, in production).
	At time.Time
}

// Value is one metric's reading. OK is false when the source has no data
// for it: no data never counts toward a vote and never scales down.
type Value struct {
	Value float64
	OK    bool
	// Instances is how many instances the value was computed from; a new
	// instance without data yet is not in it.
	Instances int
	// Err says why there is no data when the source knows (an app's own
	// query failed); the autoscaler records it.
	Err string
}

// Reading is one app's values. A source fills the metrics it knows.
type Reading map[Metric]Value

// Readings maps app id to its reading.
type Readings map[string]Reading

// Source is a metric source.
type Source interface {
	// Read returns readings for the apps in req. An error means the source
	// could not be asked at all (Prometheus down): the autoscaler records it
	// and treats every metric of that source as having no data.
	Read(ctx context.Context, req Request) (Readings, error)
}

// Wants reports whether the app's rule uses m.
func (a App) Wants(m Metric) bool {
	if a.Metrics == nil {
		return true
	}
	for _, x := range a.Metrics {
		if x == m {
			return true
		}
	}
	return false
}
