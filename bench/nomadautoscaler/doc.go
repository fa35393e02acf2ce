// Package nomadautoscaler holds the side-by-side benchmark of garrison's
// autoscaler against HashiCorp's nomad-autoscaler on the same Nomad
// (BenchmarkSideBySide in bench_test.go): the same agent, the same
// Prometheus, the same service and the same open-loop load step, one run
// of each per benchmark iteration. build.sh builds nomad-autoscaler from
// the Go module proxy and caches it, as scripts/nomad-build.sh does Nomad.
package nomadautoscaler
