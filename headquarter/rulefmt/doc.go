// Package rulefmt reads and writes garrison's autoscale rules: the rules
// file headquarter watches, the body of GET/PUT /api/v1/rules, and what
// `garrison rules check FILE` validates. It decodes through yaml.Node so
// every error carries its line and column, rejects unknown fields, and
// reports every problem at once, each as FILE:LINE:COL: PATH: MESSAGE,
// e.g.
//
//	rules.yaml:9:42: rules[2].up.cpu: must be above 0 and at most 10 (a fraction of what each instance was given)
//
// A file is valid as a whole or not used: Parse returns no rules with any
// error, so a bad reload keeps the live rules. JSON is YAML too: Parse
// reads a JSON body with the same fields, errors placed the same way.
//
// # Format
//
// A full example; the comments give each field's default and meaning.
//
//	rules:
//	  - app: /ktv/account      # required: the absolute Marathon app id, once per file
//	    min: 2                 # default 1; 0 allowed (see "At zero" below)
//	    max: 20                # required, >= 1, >= min, at most the per-app instance limit (1000 unless configured)
//	    quorum: 2              # default 2 (1 when up has one threshold), 1..3: metrics with data over their up band needed to scale up
//	    window: 1m             # default 1m: how far back scout reads
//	    maxStep: 10            # default 0 = no limit but max: most instances one scale-up adds
//	    maxStepDown: 1         # default 1: most instances one scale-down removes
//	    up:   { qps: 400, cpu: 0.75, mem: 0.80 }   # per instance; at least quorum of them
//	    down: { qps: 100, cpu: 0.25, mem: 0.40 }   # per instance; each below its up threshold
//	    tolerance: 0.1         # default 0.1, 0..0.5: a metric votes up only this far above up; a step sizes every metric back within it,
//	                           # and a reading this close to needing one instance fewer is confirmed by the next one
//	    cooldown: 60s          # default 60s, >= 0: after any change, before the next scale-DOWN
//	    scaleDownAfter: 5m     # default 5m, > 0: how long every metric stays under down first
//	    timezone: Asia/Shanghai  # default UTC: the zone the schedules' cron fields run in
//	    schedules:             # optional: raise the floor for a time
//	      - cron: "30 11 * * *"  # five fields (minute hour day month weekday) or @daily etc.
//	        for: 2h              # > 0: the floor holds from each fire time for this long
//	        min: 8               # the floor meanwhile; above the rule's min, at most max
//	    paused: false          # default false: decide and record, never act
//	    dryRun: false          # default false: decide, record marked dry-run, never act
//	    sources: { qps: elasticsearch, cpu: prometheus, mem: prometheus }   # optional: configured source per metric
//	    queries:               # optional: override the source's query per metric (a text/template)
//	      qps: 'sum(rate(echo_requests_total{app="{{.App}}"}[{{.Window}}]))'
//	      cpu:                 # or a mapping: the value, and a query counting the instances it came from
//	        value: 'avg(irate(cpu_seconds_total{app="{{.App}}"}[{{.Window}}]))'
//	        instances: 'count(irate(cpu_seconds_total{app="{{.App}}"}[{{.Window}}]))'
//
// Thresholds are per instance. qps is requests per second per instance
// (> 0); cpu and mem are fractions of the cpus and mem each instance was
// given, in (0, 10] (CPU is a share and may go past 1). A metric with
// neither threshold is not voted on; sources and queries may only name
// metrics that have one. An empty value (`min:`) is the default. An empty
// file is an error, not "no rules": a watched file read mid-write must not
// remove every rule in force; `rules: []` says no rules.
//
// # Semantics, and why
//
// Scale-up is fast, scale-down slow: every system surveyed makes scale-up
// permissive and scale-down conservative (reference/autoscalers.md §8.2),
// and users of all of them asked for separate up and down damping
// (§7 row 1). So cooldown holds scale-downs only: an up is never held by
// it (the nomad-autoscaler handler that blocked during cooldown let load
// increases go unseen, §7 row 1). Evaluations keep running in cooldown and
// are recorded. maxStep is unlimited by default because a step is sized
// to reach the needed count at once (DESIGN.md, "What fast means here");
// maxStepDown is 1 by default, and scale-downs wait scaleDownAfter (the
// 300 s every surveyed system uses, §8.1). scaleDownAfter is a
// stabilisation window, as HPA's: a breach, missing data, a scale-up or a
// change made by someone else starts it over, the autoscaler's own
// scale-down does not; cooldown then spaces the steps that follow, as
// nomad-autoscaler's cooldown spaces its actions. Each is honoured: the
// first step waits the longer of the two, the next ones the cooldown.
//
// Schedules raise the floor, as KEDA's cron scaler acts as a dynamic
// minimum (§4): while a window is open, the count is at least its min,
// whatever the metrics say; metrics may still take it higher. A window
// opens at each fire time in the rule's time zone and lasts `for`; it may
// cross midnight. @every is refused: it has no fixed fire times.
//
// # At zero
//
// With min 0, an app at 0 instances has no instances to measure CPU or
// memory on (§7 row 7: the trigger for waking up must not depend on
// metrics from the instances themselves). It is woken by a schedule's
// floor, by raising min, or by the API (PUT /v2/apps); or by a QPS source
// that measures in front of the app (gateway logs) with quorum 1.
package rulefmt
