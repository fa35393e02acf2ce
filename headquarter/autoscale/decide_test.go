package autoscale_test

import (
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/scout/sample"
)

// baseRule is the rule every row starts from; a row's overrides replace
// the line with the same key or are appended.
const baseRule = `app: /ktv/account
min: 1
max: 20
up: {qps: 400, cpu: 0.75, mem: 0.80}
down: {qps: 100, cpu: 0.25, mem: 0.40}
cooldown: 60s
scaleDownAfter: 5m`

func parseRule(t testing.TB, overrides ...string) rulefmt.Rule {
	t.Helper()
	lines := strings.Split(baseRule, "\n")
	for _, o := range overrides {
		key, _, _ := strings.Cut(o, ":")
		replaced := false
		for i, l := range lines {
			if strings.HasPrefix(l, key+":") {
				lines[i], replaced = o, true
			}
		}
		if !replaced {
			lines = append(lines, o)
		}
	}
	doc := "rules:\n  - " + strings.Join(lines, "\n    ") + "\n"
	rules, err := rulefmt.Parse([]byte(doc), "test.yaml")
	if err != nil {
		t.Fatalf("rule does not parse: %v\n%s", err, doc)
	}
	return rules[0]
}

// Readings: qps is the app's total from n instances; cpu and mem are
// averages over n instances. A metric left out has no data.
func qps(v float64, n int) kv { return kv{sample.QPS, sample.Value{Value: v, OK: true, Instances: n}} }
func cpu(v float64, n int) kv { return kv{sample.CPU, sample.Value{Value: v, OK: true, Instances: n}} }
func mem(v float64, n int) kv { return kv{sample.Mem, sample.Value{Value: v, OK: true, Instances: n}} }
func none(m sample.Metric) kv { return kv{m, sample.Value{}} }

type kv struct {
	m sample.Metric
	v sample.Value
}

func in(current int, vals ...kv) autoscale.Input {
	r := sample.Reading{}
	for _, x := range vals {
		r[x.m] = x.v
	}
	return autoscale.Input{Current: current, Desired: current, Reading: r}
}

// withDeployment: an autoscaler deployment has set the desired count to
// its target, as the scheduler's status reports it.
func withDeployment(i autoscale.Input, d autoscale.Deployment) autoscale.Input {
	i.Deployment = d
	if d.Autoscaler && d.Target > 0 {
		i.Desired = d.Target
	}
	return i
}

// wanting: the app's desired count is n while i.Current are ready.
func wanting(n int, i autoscale.Input) autoscale.Input {
	i.Desired = n
	return i
}

// short: the reading covers span of the interval (a live source's re-read).
func short(span float64, i autoscale.Input) autoscale.Input {
	i.Span = span
	return i
}

func withErr(i autoscale.Input, m sample.Metric, msg string) autoscale.Input {
	i.Errors = map[sample.Metric]string{m: msg}
	return i
}

// quiet is load well under every down threshold on n instances.
func quiet(n int) autoscale.Input {
	return in(n, qps(20*float64(n), n), cpu(0.10, n), mem(0.20, n))
}

// step is one evaluation at t0+at. When apply is set and the decision
// acts, the change is applied (State.Scaled), as the caller would after
// signalman succeeded.
type step struct {
	at      time.Duration
	in      autoscale.Input
	action  autoscale.Action
	to      int
	capped  autoscale.Cap
	blocked autoscale.Block
	// super: the decision supersedes the autoscaler's own deployment.
	super  bool
	reason string // a substring of Decision.Reason
	apply  bool
}

// t0 is a Monday, 00:00 UTC (08:00 in Asia/Shanghai).
var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func TestDecide(t *testing.T) {
	tests := []struct {
		name  string
		rule  []string
		steps []step
	}{
		{
			name: "quorum met: qps and cpu over, sized to the metric needing most",
			steps: []step{{in: in(2, qps(1000, 2), cpu(0.9, 2), mem(0.5, 2)), action: autoscale.Up, to: 3,
				reason: "2 of 3 metrics with data over their up thresholds (qps 500/400 per instance, cpu 0.90/0.75)"}},
		},
		{
			name: "one metric alone does not scale",
			steps: []step{{in: in(2, qps(4000, 2), cpu(0.5, 2), mem(0.5, 2)), action: autoscale.None, to: 2,
				reason: "1 of 3 metrics with data over their up thresholds (qps 2000/400 per instance); quorum is 2"}},
		},
		{
			name: "quorum 1: one metric scales",
			rule: []string{"quorum: 1"},
			steps: []step{
				// 4000 is within 10% of what 9 carry: confirmed first.
				{in: in(2, qps(4000, 2), cpu(0.5, 2), mem(0.5, 2)), action: autoscale.None, to: 2, reason: "within 10% of needing 9: confirmed at the next evaluation"},
				{at: time.Second, in: in(2, qps(4010, 2), cpu(0.5, 2), mem(0.5, 2)), action: autoscale.Up, to: 10,
					reason: "the mean of this and the previous reading needs 10"},
			},
		},
		{
			name: "no data never counts: missing and not-OK metrics do not vote",
			steps: []step{{in: in(2, qps(1000, 2), none(sample.CPU)), action: autoscale.None, to: 2,
				reason: "no data: cpu, mem"}},
		},
		{
			name: "a source error is no data even beside a reading",
			steps: []step{{in: withErr(in(2, qps(1000, 2), cpu(0.9, 2), mem(0.5, 2)), sample.CPU, "prometheus: connection refused"),
				action: autoscale.None, to: 2, reason: "cpu (prometheus: connection refused)"}},
		},
		{
			name:  "two metrics with data are a quorum while the third has none",
			steps: []step{{in: in(2, qps(1000, 2), cpu(0.9, 2)), action: autoscale.Up, to: 3, reason: "no data: mem"}},
		},
		{
			name: "proportional: load four times one instance's target is 4 instances in one step",
			steps: []step{{in: in(1, qps(1600, 1), cpu(0.95, 1), mem(0.3, 1)), action: autoscale.Up, to: 4,
				reason: "worst ratio 4.00 (qps over 1 instances with data): 4 needed"}},
		},
		{
			name: "new instances without data do not overshoot; once they report, no further step",
			steps: []step{
				{in: in(1, qps(1600, 1), cpu(0.95, 1), mem(0.3, 1)), action: autoscale.Up, to: 4, apply: true},
				// 4 running and healthy, 3 of them not scraped yet: the
				// load is still measured on the one with data.
				{at: 5 * time.Second, in: in(4, qps(1600, 1), cpu(0.95, 1), mem(0.3, 1)), action: autoscale.None, to: 4,
					reason: "4 wanted, 4 ready: waiting for the new instances"},
				{at: 10 * time.Second, in: in(4, qps(1600, 4), cpu(0.40, 4), mem(0.3, 4)), action: autoscale.None, to: 4,
					reason: "within thresholds"},
			},
		},
		{
			name: "maxStep caps a scale-up",
			rule: []string{"maxStep: 2"},
			steps: []step{{in: in(1, qps(1600, 1), cpu(0.95, 1)), action: autoscale.Up, to: 3, capped: autoscale.CapMaxStep,
				reason: "capped at maxStep 2"}},
		},
		{
			name:  "max caps a scale-up",
			rule:  []string{"max: 3"},
			steps: []step{{in: in(1, qps(1600, 1), cpu(0.95, 1)), action: autoscale.Up, to: 3, capped: autoscale.CapMax}},
		},
		{
			name:  "at max a breach changes nothing but is capped",
			rule:  []string{"max: 4"},
			steps: []step{{in: in(4, qps(3200, 4), cpu(0.95, 4)), action: autoscale.None, to: 4, capped: autoscale.CapMax}},
		},
		{
			name:  "above max lowers at once, data or not",
			rule:  []string{"max: 4"},
			steps: []step{{in: in(6), action: autoscale.Down, to: 4, capped: autoscale.CapMax}},
		},
		{
			name: "down only after the full window, one step of maxStepDown",
			steps: []step{
				{in: quiet(10), action: autoscale.None, to: 10, reason: "under the down thresholds for 0s of 5m"},
				{at: 4*time.Minute + 59*time.Second, in: quiet(10), action: autoscale.None, to: 10},
				{at: 5 * time.Minute, in: quiet(10), action: autoscale.Down, to: 9, capped: autoscale.CapMaxStepDown,
					reason: "3 of 3 metrics with data under their down thresholds for 5m (qps 20/100 per instance, cpu 0.10/0.25, mem 0.20/0.40); down to 9 (maxStepDown 1)", apply: true},
				// The window keeps holding; the cooldown spaces the steps.
				{at: 5*time.Minute + 30*time.Second, in: quiet(9), action: autoscale.Hold, to: 8, capped: autoscale.CapMaxStepDown, blocked: autoscale.BlockCooldown},
				{at: 6 * time.Minute, in: quiet(9), action: autoscale.Down, to: 8, capped: autoscale.CapMaxStepDown},
			},
		},
		{
			name: "a larger maxStepDown steps proportionally, keeping each metric halfway under its up threshold",
			rule: []string{"maxStepDown: 10"},
			steps: []step{
				{in: quiet(10)},
				// mem: 10 × 0.20 = 2 instances' worth; halfway is 0.60: 4.
				{at: 5 * time.Minute, in: quiet(10), action: autoscale.Down, to: 4},
			},
		},
		{
			name: "no scale-down that would push a metric past halfway",
			steps: []step{
				{in: in(2, qps(100, 2), cpu(0.2, 2), mem(0.35, 2))},
				{at: 5 * time.Minute, in: in(2, qps(100, 2), cpu(0.2, 2), mem(0.35, 2)), action: autoscale.None, to: 2,
					reason: "fewer than 2 would take a metric past halfway"},
			},
		},
		{
			name: "a breach restarts the down window",
			steps: []step{
				{in: quiet(10)},
				{at: 3 * time.Minute, in: in(10, qps(200, 10), cpu(0.9, 10), mem(0.2, 10)), action: autoscale.None, to: 10},
				{at: 4 * time.Minute, in: quiet(10)},
				{at: 8*time.Minute + 59*time.Second, in: quiet(10), action: autoscale.None, to: 10},
				{at: 9 * time.Minute, in: quiet(10), action: autoscale.Down, to: 9, capped: autoscale.CapMaxStepDown},
			},
		},
		{
			name: "missing data restarts the down window and never scales down",
			steps: []step{
				{in: quiet(10)},
				{at: 3 * time.Minute, in: in(10, qps(200, 10), cpu(0.1, 10)), action: autoscale.None, to: 10, reason: "no data: mem"},
				{at: 4 * time.Minute, in: quiet(10)},
				{at: 6 * time.Minute, in: in(10, qps(200, 10), cpu(0.1, 10)), action: autoscale.None, to: 10},
				{at: 10 * time.Minute, in: in(10, qps(200, 10), cpu(0.1, 10)), action: autoscale.None, to: 10},
			},
		},
		{
			name: "data from only some instances restarts the down window",
			steps: []step{
				{in: quiet(10)},
				{at: 3 * time.Minute, in: in(10, qps(200, 9), cpu(0.1, 9), mem(0.2, 9)), action: autoscale.None, to: 10},
				{at: 4 * time.Minute, in: quiet(10)},
				{at: 8*time.Minute + 59*time.Second, in: quiet(10), action: autoscale.None, to: 10},
				{at: 9 * time.Minute, in: quiet(10), action: autoscale.Down, to: 9, capped: autoscale.CapMaxStepDown},
			},
		},
		{
			name: "cooldown holds a scale-down but never a scale-up",
			rule: []string{"cooldown: 10m"},
			steps: []step{
				{in: in(1, qps(1600, 1), cpu(0.95, 1)), action: autoscale.Up, to: 4, apply: true},
				{at: 10 * time.Second, in: quiet(4)},
				{at: 5*time.Minute + 10*time.Second, in: quiet(4), action: autoscale.Hold, to: 3, capped: autoscale.CapMaxStepDown, blocked: autoscale.BlockCooldown,
					reason: "scale-down waits 10m"},
				// The load jumped within the last interval: sized once it settles.
				{at: 5*time.Minute + 20*time.Second, in: in(4, qps(3200, 4), cpu(0.95, 4)), action: autoscale.None, to: 4, reason: "sized at the next evaluation"},
				{at: 5*time.Minute + 21*time.Second, in: in(4, qps(3210, 4), cpu(0.95, 4)), action: autoscale.None, to: 4, reason: "confirmed at the next evaluation"},
				{at: 5*time.Minute + 22*time.Second, in: in(4, qps(3190, 4), cpu(0.95, 4)), action: autoscale.Up, to: 8, apply: true},
			},
		},
		// Issue 11: a cooldown shorter than scaleDownAfter had no effect:
		// every step's own instance change started the window over, so the
		// steps came a full scaleDownAfter apart whatever the cooldown.
		// scaleDownAfter is the stabilisation window (HPA's), cooldown the
		// least time after any change before the next scale-down
		// (nomad-autoscaler's).
		{
			name: "after the window, scale-down steps come a cooldown apart while the load stays under",
			rule: []string{"cooldown: 30s"},
			steps: []step{
				{in: quiet(10)},
				{at: 5 * time.Minute, in: quiet(10), action: autoscale.Down, to: 9, capped: autoscale.CapMaxStepDown, apply: true},
				// The step under way: an instance going, partial data.
				{at: 5*time.Minute + 1*time.Second, in: wanting(9, quiet(10)), action: autoscale.None, to: 9, reason: "a scale-down under way (10 ready, 9 wanted)"},
				{at: 5*time.Minute + 2*time.Second, in: wanting(9, in(10, qps(180, 9), cpu(0.1, 9), mem(0.2, 9))), action: autoscale.None, to: 9},
				{at: 5*time.Minute + 3*time.Second, in: withDeployment(quiet(9), autoscale.Deployment{InProgress: true, Autoscaler: true, Target: 9}), action: autoscale.None, to: 9},
				// Done: the window still holds; the cooldown spaces the step.
				{at: 5*time.Minute + 4*time.Second, in: quiet(9), action: autoscale.Hold, to: 8, capped: autoscale.CapMaxStepDown, blocked: autoscale.BlockCooldown,
					reason: "scale-down waits 30s"},
				{at: 5*time.Minute + 30*time.Second, in: quiet(9), action: autoscale.Down, to: 8, capped: autoscale.CapMaxStepDown, apply: true},
				// A breach while the step is under way starts the window over.
				{at: 5*time.Minute + 31*time.Second, in: wanting(8, in(9, qps(4000, 9), cpu(0.1, 9), mem(0.2, 9))), action: autoscale.None, to: 8},
				{at: 5*time.Minute + 32*time.Second, in: quiet(8), action: autoscale.None, to: 8, reason: "under the down thresholds for 0s of 5m"},
				{at: 10*time.Minute + 31*time.Second, in: quiet(8), action: autoscale.None, to: 8},
				{at: 10*time.Minute + 32*time.Second, in: quiet(8), action: autoscale.Down, to: 7, capped: autoscale.CapMaxStepDown},
			},
		},
		{
			name: "a cooldown longer than scaleDownAfter holds every scale-down after a change",
			rule: []string{"cooldown: 10m", "scaleDownAfter: 1m"},
			steps: []step{
				{in: quiet(10)},
				{at: time.Minute, in: quiet(10), action: autoscale.Down, to: 9, capped: autoscale.CapMaxStepDown, apply: true},
				{at: 2 * time.Minute, in: quiet(9), action: autoscale.Hold, to: 8, capped: autoscale.CapMaxStepDown, blocked: autoscale.BlockCooldown},
				{at: 11*time.Minute - time.Second, in: quiet(9), action: autoscale.Hold, to: 8, capped: autoscale.CapMaxStepDown, blocked: autoscale.BlockCooldown},
				{at: 11 * time.Minute, in: quiet(9), action: autoscale.Down, to: 8, capped: autoscale.CapMaxStepDown},
			},
		},
		{
			name: "someone else's scale-down (the API) starts the window over",
			rule: []string{"cooldown: 30s"},
			steps: []step{
				{in: quiet(10)},
				{at: 5 * time.Minute, in: withDeployment(wanting(8, quiet(10)), autoscale.Deployment{InProgress: true}), action: autoscale.None, to: 8},
				{at: 5*time.Minute + time.Second, in: quiet(8), action: autoscale.None, to: 8, reason: "under the down thresholds for 0s of 5m"},
			},
		},
		{
			name:  "min raises the count at once without data",
			rule:  []string{"min: 2"},
			steps: []step{{in: in(0), action: autoscale.Up, to: 2, capped: autoscale.CapMin, reason: "min is 2"}},
		},
		{
			name: "a scale-down stops at min",
			rule: []string{"min: 2"},
			steps: []step{
				{in: quiet(2)},
				{at: 5 * time.Minute, in: quiet(2), action: autoscale.None, to: 2, capped: autoscale.CapMin, reason: "min is 2"},
			},
		},
		{
			name: "a schedule raises the floor in its time zone, then lets go",
			rule: []string{"timezone: Asia/Shanghai", `schedules: [{cron: "30 11 * * *", for: 2h, min: 8}]`},
			steps: []step{
				// 03:29 UTC is 11:29 in Shanghai: not yet.
				{at: 3*time.Hour + 29*time.Minute, in: in(2, qps(400, 2), cpu(0.3, 2), mem(0.5, 2)), action: autoscale.None, to: 2},
				{at: 3*time.Hour + 30*time.Minute, in: in(2, qps(400, 2), cpu(0.3, 2), mem(0.5, 2)), action: autoscale.Up, to: 8,
					capped: autoscale.CapSchedule, reason: `schedule "30 11 * * *" (Asia/Shanghai) raises the floor to 8`, apply: true},
				// The floor holds a scale-down while the window is open...
				{at: 3*time.Hour + 31*time.Minute, in: quiet(8)},
				{at: 5*time.Hour + 29*time.Minute, in: quiet(8), action: autoscale.None, to: 8, capped: autoscale.CapSchedule},
				// ...and lets it go when it closes at 13:30.
				{at: 5*time.Hour + 30*time.Minute, in: quiet(8), action: autoscale.Down, to: 7, capped: autoscale.CapMaxStepDown},
			},
		},
		{
			name: "a schedule across midnight",
			rule: []string{"timezone: Asia/Shanghai", `schedules: [{cron: "0 23 * * *", for: 3h, min: 6}]`},
			steps: []step{
				// 14:59 UTC is 22:59 in Shanghai.
				{at: 14*time.Hour + 59*time.Minute, in: in(2), action: autoscale.None, to: 2},
				// 17:30 UTC is 01:30 the next day in Shanghai: inside.
				{at: 17*time.Hour + 30*time.Minute, in: in(2), action: autoscale.Up, to: 6, capped: autoscale.CapSchedule},
				// 18:00 UTC is 02:00: the window [23:00, 02:00) has closed.
				{at: 18 * time.Hour, in: in(2), action: autoscale.None, to: 2},
			},
		},
		{
			name: "a schedule floor above the metrics' count wins; metrics above it win",
			rule: []string{`schedules: [{cron: "0 0 * * *", for: 1h, min: 6}]`},
			steps: []step{
				{at: time.Minute, in: in(1, qps(1600, 1), cpu(0.95, 1)), action: autoscale.Up, to: 6, capped: autoscale.CapSchedule},
				{at: time.Minute, in: in(1, qps(4000, 1), cpu(0.95, 1)), action: autoscale.Up, to: 6, capped: autoscale.CapSchedule},
				{at: time.Minute + time.Second, in: in(1, qps(4010, 1), cpu(0.95, 1)), action: autoscale.Up, to: 6, capped: autoscale.CapSchedule,
					reason: "confirmed at the next evaluation"},
				{at: time.Minute + 2*time.Second, in: in(1, qps(4020, 1), cpu(0.95, 1)), action: autoscale.Up, to: 10},
			},
		},
		{
			name:  "paused: decided and recorded, held",
			rule:  []string{"paused: true"},
			steps: []step{{in: in(1, qps(1600, 1), cpu(0.95, 1)), action: autoscale.Hold, to: 4, reason: "held: paused"}},
		},
		{
			name:  "dry-run: decided and marked",
			rule:  []string{"dryRun: true"},
			steps: []step{{in: in(1, qps(1600, 1), cpu(0.95, 1)), action: autoscale.Up, to: 4, reason: "; dry-run"}},
		},
		{
			name: "a deployment in progress holds a scale-up",
			steps: []step{{in: withDeployment(in(1, qps(1600, 1), cpu(0.95, 1)), autoscale.Deployment{InProgress: true}),
				action: autoscale.Hold, to: 4, blocked: autoscale.BlockDeployment}},
		},
		{
			name: "a deployment in progress holds a floor raise",
			rule: []string{"min: 3"},
			steps: []step{
				{in: withDeployment(in(2), autoscale.Deployment{InProgress: true}), action: autoscale.Hold, to: 3, capped: autoscale.CapMin, blocked: autoscale.BlockDeployment},
			},
		},
		{
			name: "a deployment in progress restarts the down window",
			steps: []step{
				{in: quiet(10)},
				{at: 3 * time.Minute, in: withDeployment(quiet(10), autoscale.Deployment{InProgress: true})},
				{at: 5 * time.Minute, in: quiet(10), action: autoscale.None, to: 10},
				{at: 10 * time.Minute, in: quiet(10), action: autoscale.Down, to: 9, capped: autoscale.CapMaxStepDown},
			},
		},
		{
			name: "a larger scale-up supersedes the autoscaler's own scale deployment",
			steps: []step{
				{in: in(1, qps(1600, 1), cpu(0.95, 1)), action: autoscale.Up, to: 4, apply: true},
				// The load doubled while 3 instances were starting; the
				// next reading confirms the new level.
				{at: 2 * time.Second, in: withDeployment(in(1, qps(3200, 1), cpu(0.99, 1)), autoscale.Deployment{InProgress: true, Autoscaler: true, Target: 4}),
					action: autoscale.None, to: 4, reason: "qps rose from 1600 to 3200 in one interval"},
				{at: 3 * time.Second, in: withDeployment(in(1, qps(3210, 1), cpu(0.99, 1)), autoscale.Deployment{InProgress: true, Autoscaler: true, Target: 4}),
					action: autoscale.None, to: 4, reason: "confirmed at the next evaluation"},
				{at: 4 * time.Second, in: withDeployment(in(1, qps(3190, 1), cpu(0.99, 1)), autoscale.Deployment{InProgress: true, Autoscaler: true, Target: 4}),
					action: autoscale.Up, to: 8, super: true, reason: "supersedes the autoscaler's deployment to 4"},
			},
		},
		{
			name: "the autoscaler's deployment already starting enough is left alone",
			steps: []step{
				{in: withDeployment(in(1, qps(1600, 1), cpu(0.95, 1)), autoscale.Deployment{InProgress: true, Autoscaler: true, Target: 4}),
					action: autoscale.None, to: 4, reason: "4 wanted, 1 ready: waiting for the new instances"},
			},
		},
		{
			name: "maxStep counts from the autoscaler's deployment target when superseding",
			rule: []string{"maxStep: 2"},
			steps: []step{
				{in: withDeployment(in(1, qps(3200, 1), cpu(0.99, 1)), autoscale.Deployment{InProgress: true, Autoscaler: true, Target: 3}),
					action: autoscale.Up, to: 5, super: true, capped: autoscale.CapMaxStep},
			},
		},
		// Issue 10: an up decision sized from the ready count was applied
		// as an absolute count and killed instances still starting.
		{
			name: "an up never goes below the desired count while instances start",
			steps: []step{
				// desired 10, 7 ready, load for 8 (ceil(3500/440)): nothing to do.
				{in: wanting(10, in(7, qps(3500, 7), cpu(0.95, 7))), action: autoscale.None, to: 10,
					reason: "10 wanted, 7 ready: waiting for the new instances"},
				// load for 12 (after a reading that shows it settled): up
				// from 10, not from 7.
				{at: time.Second, in: wanting(10, in(7, qps(5000, 7), cpu(0.95, 7))), action: autoscale.None, to: 10},
				{at: 2 * time.Second, in: wanting(10, in(7, qps(5010, 7), cpu(0.95, 7))), action: autoscale.None, to: 10, reason: "confirmed at the next evaluation"},
				{at: 3 * time.Second, in: wanting(10, in(7, qps(4990, 7), cpu(0.95, 7))), action: autoscale.Up, to: 12},
			},
		},
		{
			name:  "the min floor counts the desired instances, not the ready ones",
			rule:  []string{"min: 4"},
			steps: []step{{in: wanting(6, in(3, qps(300, 3), cpu(0.3, 3), mem(0.5, 3))), action: autoscale.None, to: 6}},
		},
		{
			name: "no scale-down while instances are still starting; then one step from the desired count",
			steps: []step{
				{in: wanting(10, quiet(8))},
				{at: 5 * time.Minute, in: wanting(10, quiet(8)), action: autoscale.None, to: 10, reason: "8 of 10 ready"},
				{at: 6 * time.Minute, in: quiet(10)},
				{at: 11 * time.Minute, in: quiet(10), action: autoscale.Down, to: 9, capped: autoscale.CapMaxStepDown},
			},
		},
		{
			name: "sized within the tolerance band: 40.3 req/s against 10 per instance is 4, and 4 stay 4",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1"},
			steps: []step{
				{in: in(1, qps(40.3, 1)), action: autoscale.Up, to: 4, apply: true},
				{at: time.Second, in: in(4, qps(40.3, 4)), action: autoscale.None, to: 4, reason: "within thresholds"},
				// 10% over is within the band; past it, one more once a
				// second reading confirms it.
				{at: 2 * time.Second, in: in(4, qps(44, 4)), action: autoscale.None, to: 4},
				{at: 3 * time.Second, in: in(4, qps(45, 4)), action: autoscale.None, to: 4, reason: "within 10% of needing 4"},
				{at: 4 * time.Second, in: in(4, qps(45.5, 4)), action: autoscale.Up, to: 5},
			},
		},
		{
			name: "a reading spanning the load step waits one interval, then sizes in one step",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1"},
			steps: []step{
				{in: in(1, qps(0, 1))},
				// The step came 0.4 s before this reading: 16 req/s of 40.
				{at: time.Second, in: in(1, qps(16, 1)), action: autoscale.None, to: 1, reason: "qps rose from 0 to 16"},
				{at: 2 * time.Second, in: in(1, qps(40, 1)), action: autoscale.Up, to: 4, apply: true},
				// The new instances start: no more steps, no way down.
				{at: 3 * time.Second, in: wanting(4, in(1, qps(40, 1))), action: autoscale.None, to: 4},
				{at: 4 * time.Second, in: in(4, qps(31, 1)), action: autoscale.None, to: 4},
				{at: 5 * time.Second, in: in(4, qps(40, 4)), action: autoscale.None, to: 4},
			},
		},
		{
			name: "a source that fails every other read does not hold the step forever",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1"},
			steps: []step{
				{in: in(1, qps(0, 1))},
				{at: 1 * time.Second, in: in(1, qps(40, 1)), action: autoscale.None, to: 1, reason: "sized at the next evaluation"},
				{at: 2 * time.Second, in: in(1, none(sample.QPS)), action: autoscale.None, to: 1},
				{at: 3 * time.Second, in: in(1, qps(40, 1)), action: autoscale.Up, to: 4},
			},
		},
		{
			name: "a step that grows (40 then 80 req/s) follows in one more step",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1"},
			steps: []step{
				{in: in(1, qps(40, 1)), action: autoscale.Up, to: 4, apply: true},
				{at: 1 * time.Second, in: in(4, qps(40, 4)), action: autoscale.None, to: 4},
				{at: 2 * time.Second, in: in(4, qps(80, 4)), action: autoscale.None, to: 4, reason: "sized at the next evaluation"},
				// 80 is within 10% of what 7 carry: confirmed first.
				{at: 3 * time.Second, in: in(4, qps(80.5, 4)), action: autoscale.None, to: 4, reason: "confirmed at the next evaluation"},
				{at: 4 * time.Second, in: in(4, qps(79.5, 4)), action: autoscale.Up, to: 8, apply: true},
				{at: 5 * time.Second, in: in(8, qps(80, 8)), action: autoscale.None, to: 8, reason: "within thresholds"},
			},
		},
		// Issue 11: on the Prometheus source, irate over one 1 s scrape read
		// 44.8 req/s of 40 (a scrape late by a tenth of a second) and the
		// step went to 5.
		{
			name: "a reading a tolerance high once adds no instance: the mean of two sizes the step",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1"},
			steps: []step{
				{in: in(1, qps(0, 1))},
				{at: time.Second, in: in(1, qps(16, 1)), action: autoscale.None, to: 1, reason: "sized at the next evaluation"},
				{at: 2 * time.Second, in: in(1, qps(44.8, 1)), action: autoscale.None, to: 1, reason: "within 10% of needing 4: confirmed at the next evaluation"},
				{at: 3 * time.Second, in: in(1, qps(39.5, 1)), action: autoscale.Up, to: 4, reason: "the mean of this and the previous reading needs 4", apply: true},
				{at: 4 * time.Second, in: in(4, qps(40, 4)), action: autoscale.None, to: 4, reason: "within thresholds"},
				// Settled at 4: a spike past the band, then back, changes nothing...
				{at: 5 * time.Second, in: in(4, qps(46, 4)), action: autoscale.None, to: 4, reason: "sized at the next evaluation"},
				{at: 6 * time.Second, in: in(4, qps(38, 4)), action: autoscale.None, to: 4, reason: "within thresholds"},
				{at: 7 * time.Second, in: in(4, qps(40, 4)), action: autoscale.None, to: 4},
				// ...nor does one after a reading already high (not rising).
				{at: 8 * time.Second, in: in(4, qps(42.5, 4)), action: autoscale.None, to: 4},
				{at: 9 * time.Second, in: in(4, qps(44.9, 4)), action: autoscale.None, to: 4, reason: "confirmed at the next evaluation"},
				{at: 10 * time.Second, in: in(4, qps(40, 4)), action: autoscale.None, to: 4, reason: "within thresholds"},
			},
		},
		// Issue 11: with a 1 s scrape beside a 1 s evaluation, Prometheus
		// had often scraped nothing between two evaluations: the reading
		// after the hold was the partial one again, and the step was sized
		// from it (1 -> 2 at 17 req/s, then 3, then 4).
		{
			name: "a reading that repeats the previous one is no reading after the change, once",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1"},
			steps: []step{
				{in: in(1, qps(0, 1))},
				{at: time.Second, in: in(1, qps(17, 1)), action: autoscale.None, to: 1, reason: "sized at the next evaluation"},
				{at: 2 * time.Second, in: in(1, qps(17, 1)), action: autoscale.None, to: 1, reason: "the reading repeats the previous one (no new sample)"},
				{at: 3 * time.Second, in: in(1, qps(40, 1)), action: autoscale.Up, to: 4, apply: true},
				// A steady load read exactly alike twice waits one interval
				// more at most.
				{at: 4 * time.Second, in: in(4, qps(80, 4)), action: autoscale.None, to: 4, reason: "sized at the next evaluation"},
				{at: 5 * time.Second, in: in(4, qps(80, 4)), action: autoscale.None, to: 4, reason: "no new sample"},
				{at: 6 * time.Second, in: in(4, qps(80, 4)), action: autoscale.None, to: 4, reason: "confirmed at the next evaluation"},
				{at: 7 * time.Second, in: in(4, qps(80, 4)), action: autoscale.None, to: 4, reason: "no new sample"},
				{at: 8 * time.Second, in: in(4, qps(80, 4)), action: autoscale.Up, to: 8},
			},
		},
		{
			name: "a late scrape reads one interval high and the next low: their mean sizes the step",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1"},
			steps: []step{
				{in: in(1, qps(0, 1))},
				{at: time.Second, in: in(1, qps(16, 1)), action: autoscale.None, to: 1, reason: "sized at the next evaluation"},
				{at: 2 * time.Second, in: in(1, qps(46, 1)), action: autoscale.None, to: 1, reason: "confirmed at the next evaluation"},
				{at: 3 * time.Second, in: in(1, qps(30.72, 1)), action: autoscale.Up, to: 4, reason: "the mean of this and the previous reading needs 4"},
			},
		},
		// A live source's re-read half an interval after the hold counts
		// half the requests: one half-second reading of 40 req/s read 49
		// on a busy machine (BenchmarkReactionToLoadStep, tuned row).
		{
			name: "a half-interval re-read is confirmed within twice the tolerance, and the mean weighs each reading by its span",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1"},
			steps: []step{
				{in: in(1, qps(0, 1))},
				{at: time.Second, in: in(1, qps(16, 1)), action: autoscale.None, to: 1, reason: "sized at the next evaluation"},
				// 49 needs 5 (49/11) and 4 a fifth lower (49/13.2): held,
				// where a whole interval's 49 would go to 5 at once.
				{at: 1500 * time.Millisecond, in: short(0.5, in(1, qps(49, 1))), action: autoscale.None, to: 1,
					reason: "within 20% of needing 4: confirmed at the next evaluation"},
				// Two half intervals weigh alike: (49 + 37)/2 = 43, which 4
				// carry.
				{at: 2 * time.Second, in: short(0.5, in(1, qps(37, 1))), action: autoscale.Up, to: 4,
					reason: "the mean of this and the previous reading needs 4"},
			},
		},
		{
			name: "a confirm over unequal spans is sized from the mean weighed by span: the rate over both",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1"},
			steps: []step{
				{in: in(1, qps(0, 1))},
				{at: time.Second, in: in(1, qps(16, 1)), action: autoscale.None, to: 1, reason: "sized at the next evaluation"},
				// 36 needs 4 (36/11), 3 a tolerance lower (36/12.1).
				{at: 2 * time.Second, in: in(1, qps(36, 1)), action: autoscale.None, to: 1, reason: "within 10% of needing 3: confirmed at the next evaluation"},
				// (36×1 + 29×0.5)/1.5 = 33.7 needs 4; the plain mean, 32.5,
				// would give half the time twice its weight and ask for 3.
				{at: 2500 * time.Millisecond, in: short(0.5, in(1, qps(29, 1))), action: autoscale.Up, to: 4,
					reason: "the mean of this and the previous reading needs 4"},
			},
		},
		{
			name: "a reading clear of the tolerance acts at once",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1"},
			steps: []step{
				{in: in(1, qps(0, 1))},
				{at: time.Second, in: in(1, qps(16, 1)), action: autoscale.None, to: 1, reason: "sized at the next evaluation"},
				// 40 needs 4 (40/11), and 4 a tolerance lower too (36.4/11).
				{at: 2 * time.Second, in: in(1, qps(40, 1)), action: autoscale.Up, to: 4},
			},
		},
		{
			name: "tolerance 0: no confirmation",
			rule: []string{"up: {qps: 10}", "down: {qps: 3}", "quorum: 1", "tolerance: 0"},
			steps: []step{
				{in: in(1, qps(44.8, 1)), action: autoscale.Up, to: 5},
			},
		},
		{
			name:  "zero instances with min 0: metrics from instances cannot wake it",
			rule:  []string{"min: 0"},
			steps: []step{{in: in(0), action: autoscale.None, to: 0, reason: "cannot wake an app at 0"}},
		},
		{
			name:  "zero instances with min 0: QPS seen in front of the app can",
			rule:  []string{"min: 0", "quorum: 1"},
			steps: []step{{in: in(0, qps(800, 0)), action: autoscale.Up, to: 2}},
		},
		{
			name: "min 0 scales down to 0",
			rule: []string{"min: 0", "maxStepDown: 5"},
			steps: []step{
				{in: in(1, qps(0, 1), cpu(0, 1), mem(0, 1))},
				{at: 5 * time.Minute, in: in(1, qps(0, 1), cpu(0, 1), mem(0, 1)), action: autoscale.Down, to: 0},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule := parseRule(t, tt.rule...)
			var st autoscale.State
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				d := autoscale.Decide(rule, s.in, &st, now)
				if s.action == "" {
					// A set-up step: only its effect on the state matters.
					continue
				}
				if d.Action != s.action || d.To != s.to || d.Capped != s.capped || d.Blocked != s.blocked || d.Supersede != s.super {
					t.Errorf("step %d (t+%v): got %s to %d capped %q blocked %q supersede %v; want %s to %d capped %q blocked %q supersede %v\nreason: %s",
						i, s.at, d.Action, d.To, d.Capped, d.Blocked, d.Supersede, s.action, s.to, s.capped, s.blocked, s.super, d.Reason)
				}
				if !strings.Contains(d.Reason, s.reason) {
					t.Errorf("step %d (t+%v): reason %q does not contain %q", i, s.at, d.Reason, s.reason)
				}
				if d.From != s.in.Desired || d.Ready != s.in.Current || d.App != rule.App || !d.At.Equal(now) {
					t.Errorf("step %d: from %d app %q at %v", i, d.From, d.App, d.At)
				}
				if d.DryRun != rule.DryRun || d.Paused != rule.Paused {
					t.Errorf("step %d: dryRun %v paused %v, rule says %v %v", i, d.DryRun, d.Paused, rule.DryRun, rule.Paused)
				}
				if st.Last.Reason != d.Reason {
					t.Errorf("step %d: state's last decision is not this one", i)
				}
				if s.apply && d.Acts() {
					st.Scaled(d, now)
				}
			}
		})
	}
}
