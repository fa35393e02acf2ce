package autoscale

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/scout/sample"
)

// Action is what a decision asks of the caller.
type Action string

const (
	// Up and Down: change the count to Decision.To (unless DryRun).
	Up   Action = "up"
	Down Action = "down"
	// None: no change is wanted.
	None Action = "none"
	// Hold: a change is wanted (To) but must not happen now: the rule is
	// paused, a deployment is in progress, or the cooldown holds a
	// scale-down. Blocked (or Paused) says which.
	Hold Action = "hold"
)

// Cap names the bound that set Decision.To, when one did.
type Cap string

const (
	CapMax         Cap = "max"
	CapMin         Cap = "min"
	CapMaxStep     Cap = "maxStep"
	CapMaxStepDown Cap = "maxStepDown"
	CapSchedule    Cap = "schedule"
)

// Block names what holds a wanted change.
type Block string

const (
	BlockDeployment Block = "deployment"
	BlockCooldown   Block = "cooldown"
)

// Why names what kept a decision from changing the count.
type Why string

const (
	WhyQuorum   Why = "quorum not met"
	WhyWindow   Why = "scale-down window not elapsed"
	WhySettling Why = "load still rising: sized at the next evaluation"
	WhyConfirm  Why = "within the tolerance of one instance fewer: confirmed at the next evaluation"
	WhyStarting Why = "instances already starting"
	WhyStopping Why = "a scale-down under way"
	WhyNoData   Why = "no data"
	WhyCooldown Why = "cooldown"
	WhyDeploy   Why = "deployment in progress"
	WhyPaused   Why = "paused"
	WhyBound    Why = "at a bound"
	WhyPartial  Why = "not every instance has data"
)

// Deployment is the app's deployment state as the scheduler sees it.
type Deployment struct {
	InProgress bool `json:"inProgress"`
	// Autoscaler: the deployment in progress is a scale the autoscaler
	// started, to Target instances. Only such a deployment may be
	// superseded, and only by a larger scale-up.
	Autoscaler bool `json:"autoscaler,omitempty"`
	Target     int  `json:"target,omitempty"`
}

// Input is what one evaluation knows about one app.
type Input struct {
	// Current is the instances running and healthy (registered): the ones
	// the readings can come from.
	Current int `json:"current"`
	// Desired is the app's instance count as set (by the last deployment,
	// the autoscaler's included): what the scheduler is bringing up or
	// down to. An up never goes below it and a down steps from it, so a
	// decision taken while instances are still starting cannot kill them.
	// 0 with instances running is taken as Current (a caller that does not
	// know).
	Desired int `json:"desired"`
	// Reading is scout's values for the app over the rule's window.
	Reading sample.Reading `json:"reading,omitempty"`
	// Deployment is the app's deployment in progress, if any.
	Deployment Deployment `json:"deployment"`
	// Errors holds, per metric, why its source failed this time: such a
	// metric has no data whatever Reading says, and the text is recorded.
	Errors map[sample.Metric]string `json:"errors,omitempty"`
	// Span is the time the reading covers as a fraction of the evaluation
	// interval, when a live source's quick re-read made it shorter (0: a
	// whole interval). A rate over half the time counts half the events,
	// so its noise is twice as large: the band within which a reading is
	// confirmed widens in proportion, and the mean of two readings weighs
	// each by its span.
	Span float64 `json:"span,omitempty"`
}

// MetricInput is one metric's part in a decision: what was read, the
// thresholds it was held against, and how it voted.
type MetricInput struct {
	Metric sample.Metric `json:"metric"`
	// Used: the rule has an up or a down threshold for it. The other
	// fields are zero when it is not used.
	Used    bool   `json:"used"`
	HasData bool   `json:"hasData"`
	Err     string `json:"error,omitempty"`
	// Value is as read (QPS: the app's total; CPU, Mem: the average over
	// Instances), Instances how many instances it came from (0: the source
	// did not say, Current is assumed).
	Value     float64 `json:"value"`
	Instances int     `json:"instances"`
	// PerInstance is what the thresholds are held against.
	PerInstance float64 `json:"perInstance"`
	Up          float64 `json:"up,omitempty"`
	Down        float64 `json:"down,omitempty"`
	// Ratio is PerInstance/Up.
	Ratio float64 `json:"ratio,omitempty"`
	// Over: above its up threshold. Under: below its down threshold.
	Over  bool `json:"over"`
	Under bool `json:"under"`
	// Needed is the fewest instances that bring it within its up band.
	Needed int `json:"needed,omitempty"`
	// Load is the total the metric measures (QPS: the app's requests per
	// second; CPU, Mem: the average × the instances it came from), and
	// PrevLoad the previous evaluation's (-1: it had no data), for the
	// "load still rising" check.
	Load     float64 `json:"load,omitempty"`
	PrevLoad float64 `json:"prevLoad,omitempty"`
}

// Decision is one evaluation of one app: the decision log's entry.
type Decision struct {
	App string    `json:"app"`
	At  time.Time `json:"at"`
	// From is the desired count the decision starts from (Input.Desired),
	// Ready the instances ready now; To the count wanted (for Hold: the
	// count that would be wanted were it not held).
	From   int    `json:"from"`
	Ready  int    `json:"ready"`
	To     int    `json:"to"`
	Action Action `json:"action"`
	Reason string `json:"reason"`
	// Inputs is every metric in sample.Metrics order.
	Inputs [len(sample.Metrics)]MetricInput `json:"inputs"`
	// Floor is the lowest count allowed now: min, or an active schedule's
	// min (Schedule is its cron expression).
	Floor    int    `json:"floor"`
	Schedule string `json:"schedule,omitempty"`
	Capped   Cap    `json:"capped,omitempty"`
	// DryRun: record, do not act. Paused: the rule is paused.
	DryRun bool `json:"dryRun,omitempty"`
	Paused bool `json:"paused,omitempty"`
	// Blocked says what holds a wanted change.
	Blocked Block `json:"blocked,omitempty"`
	// UnderSince is when the scale-down window began (every metric under
	// its down threshold since); zero when it is not running.
	UnderSince time.Time `json:"underSince,omitzero"`
	// Why says, for a decision that changes nothing, what stopped it:
	// WhyQuorum, WhyWindow, WhySettling, WhyConfirm, WhyStarting,
	// WhyStopping, WhyNoData, or empty
	// when nothing asked for a change (within thresholds).
	Why Why `json:"why,omitempty"`
	// Supersede: an up that replaces the autoscaler's own scale deployment
	// in progress (it is larger than that deployment's target).
	Supersede bool `json:"supersede,omitempty"`
	// Span is Input.Span: the reading covered this fraction of the
	// interval (0: all of it).
	Span float64 `json:"span,omitempty"`
}

// Acts reports whether the caller should change the count.
func (d Decision) Acts() bool {
	return (d.Action == Up || d.Action == Down) && !d.DryRun
}

// Notable reports whether the decision goes in the decision log: it
// changes or would change the count, or a bound stopped a change.
func (d Decision) Notable() bool {
	return d.To != d.From || d.Capped != ""
}

// State is one app's memory between evaluations. Decide updates BelowSince
// and Last; the caller calls Scaled once a change has been applied.
type State struct {
	// BelowSince is when the down condition started holding (every used
	// metric with data from every instance, under its down threshold);
	// zero while it does not hold.
	BelowSince time.Time `json:"belowSince"`
	// LastChange is when the count last changed, for the cooldown.
	LastChange time.Time `json:"lastChange"`
	// DownTo is the count of the last change when it was a scale-down
	// (0 otherwise): while the app goes down to it, the down window goes on.
	DownTo int `json:"downTo,omitempty"`
	// Last is the previous decision.
	Last Decision `json:"last"`
	// Settled: the last evaluation held an up because the load was still
	// rising; the next one acts whatever the trend (one interval at most;
	// half of one when a live source re-reads the app sooner).
	Settled bool `json:"settled,omitempty"`
	// Confirming: the last evaluation held an up whose size the reading's
	// noise could have set (see Decide); the next one sizes from the lower
	// of the two readings and acts.
	Confirming bool `json:"confirming,omitempty"`
	// Repeated: the last evaluation kept Settled or Confirming because its
	// reading was the one before it again (at most once in a row).
	Repeated bool `json:"repeated,omitempty"`
}

// Scaled records that d's change was applied at at: it starts the
// cooldown, and a scale-up restarts the scale-down window. Call it only
// when the driver changed the count: a no-op (a deployment got there
// first, Marathon's 409) starts no cooldown. Call it too for a change made
// outside the autoscaler (PUT /v2/apps), so scale-downs wait after it.
func (s *State) Scaled(d Decision, at time.Time) {
	s.LastChange = at
	s.DownTo = 0
	if d.To > d.From {
		s.BelowSince = time.Time{}
	} else {
		s.DownTo = d.To
	}
}

// slack absorbs float error in ceil: 4 instances' worth of load computed
// as 4.0000000001 must not ask for 5.
const slack = 1e-9

func ceil(x float64) int {
	if x <= 0 {
		return 0
	}
	return int(math.Ceil(x - slack))
}

// Decide evaluates rule for one app at now. It does no I/O and reads no
// clock: values in, value out, plus st, which it updates (the down timer,
// the settling flag and the last decision). The vote:
//
//   - a metric counts only with data (OK, no source error); QPS per
//     instance is the app's total over the instances the value came from,
//     so an instance with no data yet never dilutes it; CPU and Mem are
//     already per-instance averages.
//   - a metric is over when its per-instance value is above up ×
//     (1+Tolerance). Up when at least Quorum metrics are over: to the most
//     any of them needs to be back within that band (its load over up ×
//     (1+Tolerance)), so one step reaches the needed count and the next
//     reading is not over again. Never below Desired: instances asked for
//     and still starting are counted, not killed. Bounded by MaxStep (from
//     Desired) and Max; never held by the cooldown.
//   - when the load that sizes the step rose past the band since the
//     previous evaluation (or had no data then), the reading may span the
//     moment the load changed: the up waits one evaluation (Why
//     WhySettling) and is sized from the next reading, which is all after
//     it (the Manager takes it half an interval later from a live source);
//     a load that keeps rising is followed at the next evaluation.
//   - a reading within the tolerance (widened by 1/Input.Span for a
//     shorter reading) of needing one instance fewer waits too (Why
//     WhyConfirm): the next reading confirms, and the step is sized from
//     the mean of the two, each weighed by its span.
//   - down when every used metric has data from every instance, no
//     instance is starting (Current == Desired) and each is under its down
//     threshold (a metric with only an up threshold: not over it),
//     continuously for ScaleDownAfter. One step from Desired of at most
//     MaxStepDown, never below what keeps each metric at most halfway
//     between its down and up thresholds, never below the floor, and not
//     within Cooldown of the last change.
//   - the floor (Min, or an active schedule's min) raises a Desired below
//     it at once, whatever the metrics say and past MaxStep; a Desired
//     above Max is lowered at once.
//   - a deployment in progress holds every change, except that an up
//     larger than the target of the autoscaler's own scale deployment
//     supersedes it.
//   - paused holds every change; dry-run marks the decision DryRun.
//
// A decision that changes nothing says why in Why.
func Decide(rule rulefmt.Rule, in Input, st *State, now time.Time) Decision {
	cur := max(in.Current, 0)
	desired := max(in.Desired, 0)
	if desired == 0 {
		desired = cur
	}
	dep := in.Deployment
	// A Rule built without Parse may have quorum 0: one vote is the least.
	quorum := max(rule.Quorum, 1)
	band := 1 + max(rule.Tolerance, 0)
	d := Decision{
		App: rule.App, At: now, From: desired, Ready: cur, To: desired, Action: None,
		DryRun: rule.DryRun, Paused: rule.Paused,
	}
	prev := &st.Last
	// first: nothing to compare the load with, so no "still rising" hold.
	first := prev.App != rule.App || prev.At.IsZero()
	// span, prevSpan: the time this and the previous reading cover, in
	// intervals. lowBand is the noise one reading of this span may carry.
	span, prevSpan := 1.0, 1.0
	if in.Span > 0 && in.Span < 1 {
		span, d.Span = in.Span, in.Span
	}
	if !first && prev.Span > 0 {
		prevSpan = prev.Span
	}
	lowBand := 1 + (band-1)/span
	var (
		used, withData, over int
		// downCond: the down condition holds this evaluation.
		downCond = true
		hasDown  bool
		upNeeded int // the most any breaching metric needs
		// upLow: what upNeeded would be were every load a tolerance lower;
		// upConfirmed: sized from the mean of this and the previous load.
		upLow, upConfirmed int
		worst              = -1
		downFloor          int // the fewest instances that keep every metric under its ceiling
		partial            bool
		// breach: a used metric with data is not under its down threshold.
		breach bool
	)
	for i, m := range sample.Metrics {
		mi := &d.Inputs[i]
		mi.Metric = m
		mi.Up, mi.Down = rule.Up.Of(m), rule.Down.Of(m)
		mi.PrevLoad = -1 // the previous evaluation had no data for it
		if p := &prev.Inputs[i]; !first && p.HasData {
			mi.PrevLoad = p.Load
		}
		if mi.Up == 0 && mi.Down == 0 {
			continue
		}
		mi.Used = true
		used++
		mi.Err = in.Errors[m]
		v, ok := in.Reading[m]
		if mi.Err == "" && ok && !v.OK {
			mi.Err = v.Err
		}
		if !ok || !v.OK || mi.Err != "" || math.IsNaN(v.Value) || math.IsInf(v.Value, 0) || v.Value < 0 {
			// No data never counts and never scales down.
			downCond = false
			continue
		}
		mi.HasData = true
		withData++
		mi.Value, mi.Instances = v.Value, v.Instances
		base := v.Instances
		if base <= 0 {
			base = cur
		}
		if base <= 0 {
			// Data with no instances (QPS seen in front of the app, at a
			// gateway): all of it would land on the first instance.
			base = 1
		}
		load := v.Value
		if m == sample.QPS {
			mi.PerInstance = v.Value / float64(base)
		} else {
			mi.PerInstance = v.Value
			load = v.Value * float64(base)
		}
		mi.Load = load
		if mi.Up > 0 {
			mi.Ratio = mi.PerInstance / mi.Up
			// Over the band, not the threshold: a count sized to the band
			// is not over at the next reading.
			mi.Over = mi.PerInstance > mi.Up*band
			mi.Needed = ceil(load / (mi.Up * band))
			if mi.Over {
				upLow = max(upLow, ceil(load/(mi.Up*band*lowBand)))
				// The mean of two rates, each weighed by the time it
				// covers, is the rate over both: the error of one late
				// scrape, which adds to one interval what it takes from
				// the next, cancels.
				both := load
				if mi.PrevLoad >= 0 {
					both = (load*span + mi.PrevLoad*prevSpan) / (span + prevSpan)
				}
				upConfirmed = max(upConfirmed, ceil(both/(mi.Up*band)))
			}
		}
		if mi.Down > 0 {
			hasDown = true
			mi.Under = mi.PerInstance < mi.Down
		}
		if mi.Over {
			over++
			// The metric that needs the most instances sizes the step.
			if w := &d.Inputs[max(worst, 0)]; worst < 0 || mi.Needed > w.Needed ||
				(mi.Needed == w.Needed && mi.Ratio > w.Ratio) {
				worst, upNeeded = i, mi.Needed
			}
		}
		// An instance without data could be the busy one: partial data
		// does not let the count go down.
		if v.Instances > 0 && v.Instances < cur {
			downCond, partial = false, true
		}
		if (mi.Down > 0 && !mi.Under) || (mi.Down == 0 && mi.Over) {
			downCond, breach = false, true
		}
		// A scale-down keeps each metric at most halfway between its
		// thresholds (hysteresis), so the next small rise does not cross
		// the up threshold and undo it.
		ceiling := mi.Up
		switch {
		case mi.Up > 0 && mi.Down > 0:
			ceiling = (mi.Up + mi.Down) / 2
		case mi.Up == 0:
			ceiling = mi.Down
		}
		downFloor = max(downFloor, ceil(load/ceiling))
	}
	downCond = downCond && hasDown && used > 0
	changing := dep.InProgress || cur != desired
	// shrinking: the change under way is the autoscaler's own scale-down
	// (to the desired count, no instance starting).
	shrinking := changing && cur >= desired && st.DownTo == desired
	switch {
	case shrinking && hasDown && !breach && !st.BelowSince.IsZero():
		// Instances going away make the readings partial: the window
		// neither acts nor starts over unless a metric breaches. As with
		// HPA's stabilisation window, a step of its own does not restart
		// it: the next step waits for the cooldown, not another window.
		downCond = false
	case downCond && !changing:
		if st.BelowSince.IsZero() || st.BelowSince.After(now) {
			st.BelowSince = now
		}
	default:
		// Instances starting, someone else's deployment, a breach or no
		// data: start the window over once the instances are all there.
		downCond = false
		st.BelowSince = time.Time{}
	}

	floor, sched := rule.Floor(now)
	d.Floor = floor
	floorCap := CapMin
	if sched != nil {
		d.Schedule = sched.Cron
		floorCap = CapSchedule
	}

	// Settled holds across evaluations without a vote for want of data (a
	// source that timed out): only an up, or a reading with data that is
	// no longer over, clears it.
	settled, confirming := st.Settled, st.Confirming
	if over < quorum && withData > 0 {
		st.Settled, st.Confirming, st.Repeated = false, false, false
	}
	repeated := false
	r := reason{b: make([]byte, 0, 256)}
	switch {
	case over >= quorum || desired < floor:
		to, capped := desired, Cap("")
		// bound is n as maxStep, max and the floor leave it: a noise that
		// cannot change the bounded count needs no confirmation.
		bound := func(n int) int {
			if rule.MaxStep > 0 {
				n = min(n, desired+rule.MaxStep)
			}
			return max(min(n, rule.Max), floor)
		}
		if over >= quorum {
			r.votes(&d, over, withData, "over their up thresholds", false, func(mi *MetricInput) bool { return mi.Over })
			w := &d.Inputs[worst]
			r.s("; step sized to the worst ratio ")
			r.f(w.Ratio, 2)
			r.s(" (" + string(w.Metric))
			if w.Instances > 0 {
				r.s(" over ")
				r.i(w.Instances)
				r.s(" instances with data")
			}
			r.s("): ")
			r.i(upNeeded)
			r.s(" needed")
			to = upNeeded
			switch {
			case to <= desired:
				// Never below the desired count: the instances it asks
				// for are starting, and an absolute count lower than it
				// would kill them.
				to = desired
				d.Why = WhyStarting
				r.s(", ")
				r.i(desired)
				r.s(" wanted, ")
				r.i(cur)
				r.s(" ready: waiting for the new instances")
			case (settled || confirming) && !st.Repeated && repeats(w, &prev.Inputs[worst]):
				// The reading is the previous one again: no new sample
				// between the two evaluations (a 1 s scrape beside a 1 s
				// evaluation), so it is neither a reading after the change
				// nor a second opinion. One more interval, once.
				to = desired
				d.Why, repeated = WhyConfirm, true
				if settled {
					d.Why = WhySettling
				}
				r.s("; the reading repeats the previous one (no new sample): sized at the next evaluation")
			case confirming:
				// The previous reading was held to be confirmed: the
				// mean of the two sizes the step, so a reading a
				// tolerance high once adds no instance.
				to = max(upConfirmed, desired)
				r.s("; the mean of this and the previous reading needs ")
				r.i(upConfirmed)
			case !first && rising(w, band) && !settled && upNeeded > desired:
				// The reading spans the moment the load changed: part of
				// the interval was before it. The next reading is all
				// after it, so it sizes the step in one go.
				to = desired
				d.Why = WhySettling
				st.Settled = true
				r.s("; ")
				r.s(string(w.Metric))
				r.s(" rose from ")
				r.g(w.PrevLoad)
				r.s(" to ")
				r.g(w.Load)
				r.s(" in one interval: sized at the next evaluation")
			case bound(upLow) < bound(upNeeded):
				// The reading is within the tolerance of needing one
				// instance fewer: the noise of one reading (a scrape late
				// by a tenth of its interval) could have added it. The
				// next reading confirms, sized from the mean of the two.
				to = desired
				d.Why = WhyConfirm
				st.Confirming = true
				r.s("; within ")
				r.f(100*(lowBand-1), 0)
				r.s("% of needing ")
				r.i(upLow)
				r.s(": confirmed at the next evaluation")
			}
			if rule.MaxStep > 0 && to > desired+rule.MaxStep {
				to, capped = desired+rule.MaxStep, CapMaxStep
				r.s("; capped at maxStep ")
				r.i(rule.MaxStep)
			}
		} else {
			r.s("no metric vote to scale up")
		}
		if desired < floor && to < floor {
			to, capped = floor, floorCap
			r.floor(&d, rule, floor)
		}
		if to > rule.Max {
			to, capped = rule.Max, CapMax
			r.s("; capped at max ")
			r.i(rule.Max)
		}
		d.To, d.Capped = to, capped
		if d.Why != WhySettling {
			st.Settled = false
		}
		if d.Why != WhyConfirm {
			st.Confirming = false
		}
		st.Repeated = repeated
		if to > desired {
			d.Action, d.Why = Up, ""
		} else if to < desired {
			// Only when above max.
			d.Action, d.Why = Down, ""
		} else if capped != "" && d.Why == "" {
			d.Why = WhyBound
		}
	case desired > rule.Max:
		d.To, d.Capped, d.Action = rule.Max, CapMax, Down
		r.s(strconv.Itoa(desired) + " instances, above max " + strconv.Itoa(rule.Max))
	case downCond && now.Sub(st.BelowSince) >= rule.ScaleDownAfter:
		r.votes(&d, withData, withData, "under their down thresholds for "+rulefmt.FormatDuration(rule.ScaleDownAfter), true,
			func(mi *MetricInput) bool { return mi.HasData })
		to, capped := downFloor, Cap("")
		if step := desired - rule.MaxStepDown; step > to {
			to, capped = step, CapMaxStepDown
		}
		if floor > to {
			to, capped = floor, floorCap
		}
		switch {
		case to >= desired && capped == floorCap:
			to = desired
			d.Why = WhyBound
			r.floor(&d, rule, floor)
		case to >= desired:
			to, capped = desired, ""
			d.Why = WhyBound
			r.s("; fewer than ")
			r.i(desired)
			r.s(" would take a metric past halfway to its up threshold")
		default:
			d.Action = Down
			r.s("; down to ")
			r.i(to)
			switch capped {
			case CapMaxStepDown:
				r.s(" (maxStepDown ")
				r.i(rule.MaxStepDown)
				r.s(")")
			case CapMin, CapSchedule:
				r.floor(&d, rule, floor)
			}
			if !st.LastChange.IsZero() && now.Sub(st.LastChange) < rule.Cooldown {
				d.Action, d.Blocked, d.Why = Hold, BlockCooldown, WhyCooldown
				r.s("; cooldown: last change ")
				r.s(rulefmt.FormatDuration(now.Sub(st.LastChange).Round(time.Second)))
				r.s(" ago, scale-down waits ")
				r.s(rulefmt.FormatDuration(rule.Cooldown))
			}
		}
		d.To, d.Capped = to, capped
	default:
		d.Why = r.none(&d, rule, st, now, over, withData, downCond || !st.BelowSince.IsZero(), partial, cur, desired)
	}

	if d.To != desired && d.Action != Hold {
		switch {
		case dep.InProgress && d.Action == Up && dep.Autoscaler && d.To > dep.Target:
			d.Supersede = true
			r.s("; supersedes the autoscaler's deployment to ")
			r.i(dep.Target)
		case dep.InProgress:
			d.Action, d.Blocked, d.Why = Hold, BlockDeployment, WhyDeploy
			r.s("; held: a deployment is in progress")
		}
	}
	if d.To != desired && rule.Paused {
		d.Action, d.Why = Hold, WhyPaused
		r.s("; held: paused")
	}
	if rule.DryRun && (d.Action == Up || d.Action == Down) {
		r.s("; dry-run")
	}
	d.Reason = r.String()
	d.UnderSince = st.BelowSince
	st.Last = d
	return d
}

// repeats: the metric's reading is exactly the previous evaluation's, the
// sign of a source with no new sample since (Prometheus scraped nothing
// between the two): two fresh rates of a changing load are never equal to
// the last bit, and a steady one waits one more interval per hold at most.
func repeats(mi, prev *MetricInput) bool {
	return prev.Metric == mi.Metric && prev.HasData && prev.Value == mi.Value && prev.Instances == mi.Instances
}

// rising: the metric's load grew past the tolerance band since the
// previous evaluation (or it had no data then), so this reading may span
// the change and understate the new level.
func rising(mi *MetricInput, band float64) bool {
	if mi.Metric == sample.Mem {
		return false // a level, not a rate over the interval
	}
	return mi.PrevLoad < 0 || mi.Load > mi.PrevLoad*band
}

// reason builds Decision.Reason without fmt: it runs for every app every
// evaluation.
type reason struct{ b []byte }

func (r *reason) s(s string)            { r.b = append(r.b, s...) }
func (r *reason) i(n int)               { r.b = strconv.AppendInt(r.b, int64(n), 10) }
func (r *reason) f(x float64, prec int) { r.b = strconv.AppendFloat(r.b, x, 'f', prec, 64) }
func (r *reason) String() string        { return string(r.b) }
func (r *reason) g(x float64)           { r.b = strconv.AppendFloat(r.b, x, 'g', 4, 64) }
func (r *reason) pair(mi *MetricInput, t float64) {
	r.s(string(mi.Metric))
	r.s(" ")
	if mi.Metric == sample.QPS {
		r.g(mi.PerInstance)
	} else {
		r.f(mi.PerInstance, 2)
	}
	r.s("/")
	if mi.Metric == sample.QPS {
		r.g(t)
		r.s(" per instance")
	} else {
		r.f(t, 2)
	}
}

// votes writes "N of M metrics <what> (qps 612/400 per instance, ...)".
func (r *reason) votes(d *Decision, n, of int, what string, down bool, pick func(*MetricInput) bool) {
	r.i(n)
	r.s(" of ")
	r.i(of)
	r.s(" metrics with data ")
	r.s(what)
	r.s(" (")
	first := true
	for i := range d.Inputs {
		mi := &d.Inputs[i]
		if !mi.Used || !mi.HasData || !pick(mi) {
			continue
		}
		if !first {
			r.s(", ")
		}
		first = false
		t := mi.Up
		if down && mi.Down > 0 {
			t = mi.Down
		}
		r.pair(mi, t)
	}
	r.s(")")
	r.missing(d)
}

// missing notes the used metrics without data; it reports whether there
// was one.
func (r *reason) missing(d *Decision) bool {
	first := true
	for i := range d.Inputs {
		mi := &d.Inputs[i]
		if !mi.Used || mi.HasData {
			continue
		}
		if first {
			r.s("; no data: ")
		} else {
			r.s(", ")
		}
		first = false
		r.s(string(mi.Metric))
		if mi.Err != "" {
			r.s(" (" + mi.Err + ")")
		}
	}
	return !first
}

func (r *reason) floor(d *Decision, rule rulefmt.Rule, floor int) {
	if d.Schedule != "" {
		r.s("; schedule \"" + d.Schedule + "\" (" + rule.Location().String() + ") raises the floor to ")
	} else {
		r.s("; min is ")
	}
	r.i(floor)
}

// none explains a decision that changes nothing; below: the down window is
// running (or paused while a scale-down of the autoscaler's own completes).
func (r *reason) none(d *Decision, rule rulefmt.Rule, st *State, now time.Time, over, withData int, below, partial bool, cur, desired int) Why {
	var why Why
	switch {
	case cur == 0 && withData == 0:
		r.s("no instances and no data: metrics from instances cannot wake an app at 0; a schedule, min or the API must")
		return WhyNoData
	case over > 0:
		r.votes(d, over, withData, "over their up thresholds", false, func(mi *MetricInput) bool { return mi.Over })
		r.s("; quorum is ")
		r.i(max(rule.Quorum, 1))
		why = WhyQuorum
	case below && cur != desired:
		r.s("a scale-down under way (")
		r.i(cur)
		r.s(" ready, ")
		r.i(desired)
		r.s(" wanted); under the down thresholds for ")
		r.s(rulefmt.FormatDuration(now.Sub(st.BelowSince).Round(time.Second)))
		why = WhyStopping
	case below:
		r.s("under the down thresholds for ")
		r.s(rulefmt.FormatDuration(now.Sub(st.BelowSince).Round(time.Second)))
		r.s(" of ")
		r.s(rulefmt.FormatDuration(rule.ScaleDownAfter))
		why = WhyWindow
	case withData == 0:
		r.s("no data")
		return WhyNoData
	case cur != desired:
		r.s("within thresholds; ")
		r.i(cur)
		r.s(" of ")
		r.i(desired)
		r.s(" ready")
		why = WhyStarting
	case partial:
		r.s("within thresholds; not every instance has data yet")
		why = WhyPartial
	default:
		r.s("within thresholds")
	}
	if r.missing(d) && why == "" {
		why = WhyNoData
	}
	return why
}

// String is the decision in one line, for logs.
func (d Decision) String() string {
	var b strings.Builder
	b.WriteString(d.App)
	b.WriteString(": ")
	b.WriteString(string(d.Action))
	b.WriteString(" ")
	b.WriteString(strconv.Itoa(d.From))
	b.WriteString("->")
	b.WriteString(strconv.Itoa(d.To))
	if d.DryRun {
		b.WriteString(" (dry-run)")
	}
	b.WriteString(": ")
	b.WriteString(d.Reason)
	return b.String()
}
