package discovery

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/garrisonhq/garrison/registrar"
)

// Picker chooses the instance a call goes to. Pick is called concurrently,
// never with an empty slice; the slice is sorted by instance id and must not
// be modified.
type Picker interface {
	Pick(instances []registrar.Instance) registrar.Instance
}

// Reporter is a Picker that learns from how calls went.
type Reporter interface {
	// Report records one call to addr: how long it took and whether it
	// failed.
	Report(addr string, latency time.Duration, err error)
}

// RoundRobin hands out the instances in turn.
type RoundRobin struct{ next atomic.Uint64 }

// NewRoundRobin returns a round-robin picker.
func NewRoundRobin() *RoundRobin { return &RoundRobin{} }

// Pick returns the next instance in turn.
func (r *RoundRobin) Pick(instances []registrar.Instance) registrar.Instance {
	n := r.next.Add(1) - 1
	return instances[n%uint64(len(instances))]
}

// Weighted prefers instances whose recent calls succeeded and were fast:
// the power of two choices over a cost kept per address, the EWMA of the
// latency divided by the EWMA of the success rate (a failed call counts at
// least the failure penalty, so an instance that fails fast is not mistaken
// for a fast one).
//
// What it knows fades with a half-life: an address that got no report for a
// while costs less and less, down to zero like an address never seen. So a
// new instance is tried at once, and an instance avoided for failing is
// tried again after a few half-lives (about log2(its cost / the best cost)
// of them); when it has recovered, that call brings it back.
type Weighted struct {
	mu       sync.Mutex
	rnd      *rand.Rand
	now      func() time.Time
	halfLife time.Duration
	penalty  time.Duration
	stats    map[string]*callStats
	reports  int
}

type callStats struct {
	latency float64 // seconds, EWMA
	success float64 // 0..1, EWMA
	at      time.Time
}

// WeightedOption changes a Weighted picker.
type WeightedOption func(*Weighted)

// WithRand sets the source of the random choices; tests pass a seeded one.
func WithRand(r *rand.Rand) WeightedOption { return func(w *Weighted) { w.rnd = r } }

// WithPickerClock sets the clock that ages the statistics.
func WithPickerClock(now func() time.Time) WeightedOption { return func(w *Weighted) { w.now = now } }

// WithHalfLife sets how fast old reports stop counting (default 5 s).
func WithHalfLife(d time.Duration) WeightedOption { return func(w *Weighted) { w.halfLife = d } }

// WithFailurePenalty sets the least latency a failed call counts for
// (default 1 s, about what a timeout costs a caller).
func WithFailurePenalty(d time.Duration) WeightedOption { return func(w *Weighted) { w.penalty = d } }

// NewWeighted returns a picker that learns from Report.
func NewWeighted(opts ...WeightedOption) *Weighted {
	w := &Weighted{
		now:      time.Now,
		halfLife: 5 * time.Second,
		penalty:  time.Second,
		stats:    make(map[string]*callStats),
	}
	for _, opt := range opts {
		opt(w)
	}
	if w.rnd == nil {
		w.rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if w.halfLife <= 0 {
		w.halfLife = 5 * time.Second
	}
	return w
}

// ewmaKeep is the weight of the past against one new report: about the last
// five calls count.
const ewmaKeep = 0.8

// Pick draws two distinct instances at random and returns the cheaper one.
func (w *Weighted) Pick(instances []registrar.Instance) registrar.Instance {
	if len(instances) == 1 {
		return instances[0]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	i := w.rnd.IntN(len(instances))
	j := w.rnd.IntN(len(instances) - 1)
	if j >= i {
		j++
	}
	now := w.now()
	if w.cost(instances[j].Endpoint.Addr, now) < w.cost(instances[i].Endpoint.Addr, now) {
		return instances[j]
	}
	return instances[i]
}

// Report records one call to addr.
func (w *Weighted) Report(addr string, latency time.Duration, err error) {
	lat, ok := latency.Seconds(), 1.0
	if err != nil {
		lat, ok = max(lat, w.penalty.Seconds()), 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	st := w.stats[addr]
	if st == nil {
		w.stats[addr] = &callStats{latency: lat, success: ok, at: now}
	} else {
		// The past counts only as much as it is still believed.
		keep := ewmaKeep * w.confidence(st, now)
		st.latency = keep*st.latency + (1-keep)*lat
		st.success = keep*st.success + (1-keep)*ok
		st.at = now
	}
	w.reports++
	if w.reports%1024 == 0 {
		w.forget(now)
	}
}

// cost is what a call to addr is expected to cost, faded by age.
func (w *Weighted) cost(addr string, now time.Time) float64 {
	st := w.stats[addr]
	if st == nil {
		return 0
	}
	return max(st.latency, 1e-6) / max(st.success, 1e-3) * w.confidence(st, now)
}

// confidence is how much stats still count: 1 when just reported, halved
// every half-life.
func (w *Weighted) confidence(st *callStats, now time.Time) float64 {
	age := now.Sub(st.at)
	if age <= 0 {
		return 1
	}
	return math.Exp2(-float64(age) / float64(w.halfLife))
}

// forget drops addresses whose stats no longer count, so instances that
// left the service do not accumulate.
func (w *Weighted) forget(now time.Time) {
	for addr, st := range w.stats {
		if w.confidence(st, now) < 1e-4 {
			delete(w.stats, addr)
		}
	}
}
