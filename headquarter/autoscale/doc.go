// Package autoscale decides instance counts from rules and readings.
//
// Decide is a pure function: rule, input, the app's State and the time in;
// a Decision out (State is updated in place: the down timer and the last
// decision). It does no I/O and reads no clock, so the evaluation loop,
// the decision log, the tests and the 10,000-app benchmark all call the
// same thing. The caller acts on Decision.Acts, records Decision.Notable
// decisions (every one that changes or would change the count, with its
// inputs, the rule's bounds and the reason), and calls State.Scaled after
// the driver applied a change: a no-op starts no cooldown
// (reference/autoscalers.md §8.5).
//
// Why the up step is sized from the instances with data: nomad-autoscaler
// overshot when a new instance counted in the denominator a scrape before
// its own rate showed (DESIGN.md, "What fast means here"). Here the load
// is measured on the instances that report it (sample.Value.Instances) and
// the count needed to carry it is compared with the count running; new
// instances without data are neither in the load nor asked for again.
// One step reaches the needed count, so the app is not held behind a too
// small first step; if load grows while the autoscaler's own scale
// deployment runs, a larger step supersedes it.
//
// Why down is slow and partial data never scales down: see rulefmt's
// package documentation and reference/autoscalers.md §7 rows 1 and 3.
package autoscale
