package rulefmt

import (
	"time"

	"github.com/robfig/cron/v3"

	"github.com/garrisonhq/garrison/scout/sample"
)

// Defaults applied by Parse to fields a rule leaves out. Marshal writes
// every field, defaults included, so GET /api/v1/rules shows the rule that
// is in force.
const (
	DefaultMin            = 1
	DefaultQuorum         = 2 // or 1 when up sets one threshold
	DefaultTolerance      = 0.1
	DefaultWindow         = time.Minute
	DefaultMaxStep        = 0 // no limit on a scale-up step but max
	DefaultMaxStepDown    = 1
	DefaultCooldown       = 60 * time.Second
	DefaultScaleDownAfter = 5 * time.Minute
	DefaultTimezone       = "UTC"
)

// DefaultMaxInstances bounds min, max and schedule floors when the caller
// gives no limit: the same per-app instance limit apps have, so a rule can
// never ask the scheduler for more than an app definition could.
const DefaultMaxInstances = 1000

// Options are the settings Parse takes from garrison's configuration.
type Options struct {
	// MaxInstances is the per-app instance limit (0: DefaultMaxInstances).
	MaxInstances int
	// DefaultSource is the source of a metric the rule's `sources:` does
	// not name (garrison's --metrics-source).
	DefaultSource string
	// QueryChecks check, by source name, the `queries:` of the metrics
	// read from that source (the prometheus source parses PromQL). A
	// source without one gets the template check only.
	QueryChecks map[string]QueryCheck
}

// QueryCheck checks one query as its source would run it for app over
// window; the error is reported at the query's line and field.
type QueryCheck func(query, app string, window time.Duration) error

// Rule is one app's validated autoscale rule. Build it with Parse: a Rule
// made by hand has no compiled schedules or time zone (Schedule.Active is
// then always false and Location is UTC).
type Rule struct {
	// App is the absolute Marathon app id.
	App string
	// Min and Max bound the instance count. Min may be 0 (see the package
	// documentation: metrics from instances cannot wake an app at 0).
	Min, Max int
	// Quorum is how many metrics with data must be over their up
	// thresholds to scale up.
	Quorum int
	// Window is how far back scout reads.
	Window time.Duration
	// MaxStep bounds a metric-driven scale-up (0: only Max bounds it).
	MaxStep int
	// MaxStepDown bounds a scale-down (at least 1).
	MaxStepDown int
	// Up and Down are per-instance thresholds; a zero field is not set.
	// Up is the target: a metric votes up once it is more than Tolerance
	// above it, and a scale-up adds the fewest instances that bring every
	// metric back within that band.
	Up, Down Thresholds
	// Tolerance is the band above Up that is not a breach (HPA's 10%):
	// measured load wobbles, and a count sized to land exactly on the
	// threshold would be "over" at the next reading and grow by one. It is
	// also the noise a step allows for: a reading within it of needing one
	// instance fewer is confirmed by the next reading.
	Tolerance float64
	// Cooldown is the least time after any change before a scale-down
	// (the next step of one included); scale-ups never wait.
	Cooldown time.Duration
	// ScaleDownAfter is how long every metric must stay under its down
	// threshold (with data) before a scale-down: a stabilisation window
	// that a breach, a scale-up or another's change starts over, and the
	// autoscaler's own scale-down does not.
	ScaleDownAfter time.Duration
	// Timezone is the IANA zone the schedules' cron expressions run in.
	Timezone string
	// Schedules raise the floor for a time.
	Schedules []Schedule
	// Paused: decide and record, never act. DryRun: decide, mark DryRun,
	// the caller records but does not act.
	Paused, DryRun bool
	// Sources names the configured metric source per metric (empty: the
	// default source). Queries overrides that source's query per metric;
	// InstanceQueries (the `instances:` of a query given as a mapping)
	// counts the instances its value came from.
	Sources         map[sample.Metric]string
	Queries         map[sample.Metric]string
	InstanceQueries map[sample.Metric]string

	loc *time.Location
	// queryAt places each query in the file, for errors found later
	// (Prometheus refusing the query in `garrison rules check`).
	queryAt map[string]Pos
}

// Pos is a place in a rules file.
type Pos struct{ Line, Column int }

// QueryPos is where the rule's query for m (its instance count query
// when instances) is in the file; zero when it was not parsed from one.
func (r Rule) QueryPos(m sample.Metric, instances bool) Pos {
	key := string(m)
	if instances {
		key += ".instances"
	}
	return r.queryAt[key]
}

// Location is the rule's time zone (UTC for a Rule not built by Parse).
func (r Rule) Location() *time.Location {
	if r.loc == nil {
		return time.UTC
	}
	return r.loc
}

// Floor is the lowest count the rule allows at now: Min, raised by every
// active schedule. by is the schedule that set it (nil when Min does).
func (r Rule) Floor(now time.Time) (floor int, by *Schedule) {
	floor = r.Min
	for i := range r.Schedules {
		s := &r.Schedules[i]
		if s.Min > floor {
			if _, ok := s.Active(now); ok {
				floor, by = s.Min, s
			}
		}
	}
	return floor, by
}

// Metrics is how many metrics the rule votes on (those with an up or a down
// threshold).
func (r Rule) Metrics() int {
	n := 0
	for _, m := range sample.Metrics {
		if r.Up.Of(m) > 0 || r.Down.Of(m) > 0 {
			n++
		}
	}
	return n
}

// Thresholds are per-instance limits: QPS in requests per second per
// instance, CPU and Mem as fractions of what each instance was given. Zero
// means not set: Parse rejects an explicit 0.
type Thresholds struct {
	QPS float64 `json:"qps,omitempty" yaml:"qps,omitempty"`
	CPU float64 `json:"cpu,omitempty" yaml:"cpu,omitempty"`
	Mem float64 `json:"mem,omitempty" yaml:"mem,omitempty"`
}

// Of is m's threshold, 0 when not set.
func (t Thresholds) Of(m sample.Metric) float64 {
	switch m {
	case sample.QPS:
		return t.QPS
	case sample.CPU:
		return t.CPU
	case sample.Mem:
		return t.Mem
	}
	return 0
}

// Count is how many thresholds are set.
func (t Thresholds) Count() int {
	n := 0
	for _, m := range sample.Metrics {
		if t.Of(m) > 0 {
			n++
		}
	}
	return n
}

func (t *Thresholds) set(m sample.Metric, v float64) {
	switch m {
	case sample.QPS:
		t.QPS = v
	case sample.CPU:
		t.CPU = v
	case sample.Mem:
		t.Mem = v
	}
}

// Schedule raises a rule's floor to Min for For after every time Cron
// fires (in the rule's time zone).
type Schedule struct {
	Cron string
	For  time.Duration
	Min  int

	spec *cron.SpecSchedule
}

// Active reports whether now is inside one of the schedule's windows
// [fire, fire+For), and the fire time that opened it. cron only answers
// "next fire after t", so the window is open iff the first fire after
// now-For is not after now.
func (s Schedule) Active(now time.Time) (since time.Time, ok bool) {
	if s.spec == nil || s.For <= 0 {
		return time.Time{}, false
	}
	next := s.spec.Next(now.Add(-s.For))
	// Next returns the zero time for a spec with no fire in five years.
	if next.IsZero() || next.After(now) {
		return time.Time{}, false
	}
	return next, true
}

// Window is one stretch of time in which a schedule raises the floor.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Upcoming lists the schedule's windows that are open at now or open
// before now+within, at most max of them, in order: what a person needs to
// see coming (the lunch peak's floor tomorrow).
func (s Schedule) Upcoming(now time.Time, within time.Duration, max int) []Window {
	if s.spec == nil || s.For <= 0 || max <= 0 {
		return nil
	}
	var out []Window
	// The first fire after now-For is the open window, if any, or the next.
	for t := s.spec.Next(now.Add(-s.For)); !t.IsZero() && !t.After(now.Add(within)) && len(out) < max; t = s.spec.Next(t) {
		out = append(out, Window{Start: t, End: t.Add(s.For)})
	}
	return out
}
