package discovery_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/discovery"
)

func instances(n int) []registrar.Instance {
	out := make([]registrar.Instance, n)
	for i := range out {
		out[i] = registrar.Instance{Service: "s", ID: fmt.Sprintf("i-%d", i), Endpoint: registrar.Endpoint{Addr: fmt.Sprintf("127.0.0.1:%d", 1000+i)}}
	}
	return out
}

func TestRoundRobinCyclesFairly(t *testing.T) {
	insts := instances(3)
	rr := discovery.NewRoundRobin()
	for i := range 9 {
		if got, want := rr.Pick(insts).ID, insts[i%3].ID; got != want {
			t.Fatalf("pick %d: %s, want %s", i, got, want)
		}
	}
	// Concurrent callers share one turn: 3,000 picks give exactly 1,000 each.
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			local := map[string]int{}
			for range 300 {
				local[rr.Pick(insts).ID]++
			}
			mu.Lock()
			defer mu.Unlock()
			for id, n := range local {
				counts[id] += n
			}
		})
	}
	wg.Wait()
	for _, inst := range insts {
		if counts[inst.ID] != 1000 {
			t.Fatalf("concurrent picks %v, want 1000 each", counts)
		}
	}
}

// fakeClock is advanced by the test only.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// simulate makes n calls through the picker, one per millisecond of fake
// time, each reported as outcome says, and returns the share of calls each
// address got.
func simulate(p *discovery.Weighted, clock *fakeClock, insts []registrar.Instance, n int, outcome func(addr string) (time.Duration, error)) map[string]float64 {
	counts := map[string]int{}
	for range n {
		inst := p.Pick(insts)
		counts[inst.Endpoint.Addr]++
		lat, err := outcome(inst.Endpoint.Addr)
		p.Report(inst.Endpoint.Addr, lat, err)
		clock.t = clock.t.Add(time.Millisecond)
	}
	share := map[string]float64{}
	for addr, c := range counts {
		share[addr] = float64(c) / float64(n)
	}
	return share
}

func TestWeightedMovesTrafficAwayAndBack(t *testing.T) {
	errRefused := errors.New("connection refused")
	for _, tc := range []struct {
		name string
		// bad is how a call to the troubled instance goes while it is troubled.
		bad func() (time.Duration, error)
	}{
		{"failing fast", func() (time.Duration, error) { return 200 * time.Microsecond, errRefused }},
		{"slow", func() (time.Duration, error) { return 50 * time.Millisecond, nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			insts := instances(3)
			troubled := insts[0].Endpoint.Addr
			clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			p := discovery.NewWeighted(
				discovery.WithRand(rand.New(rand.NewPCG(1, 2))),
				discovery.WithPickerClock(clock.now),
				discovery.WithHalfLife(100*time.Millisecond),
			)
			healthy := func(string) (time.Duration, error) { return 5 * time.Millisecond, nil }
			isTroubled := false
			outcome := func(addr string) (time.Duration, error) {
				if isTroubled && addr == troubled {
					return tc.bad()
				}
				return healthy(addr)
			}

			share := simulate(p, clock, insts, 3000, outcome)
			for _, inst := range insts {
				if s := share[inst.Endpoint.Addr]; s < 0.28 || s > 0.39 {
					t.Fatalf("all healthy: shares %v, want about a third each", share)
				}
			}

			isTroubled = true
			simulate(p, clock, insts, 500, outcome) // learning
			share = simulate(p, clock, insts, 3000, outcome)
			if s := share[troubled]; s > 0.02 {
				t.Fatalf("troubled: %s got %.1f%% of calls, want < 2%% (shares %v)", troubled, 100*s, share)
			}
			t.Logf("troubled: %s got %.2f%% of calls (re-tried as its stats fade)", troubled, 100*share[troubled])

			isTroubled = false
			simulate(p, clock, insts, 3000, outcome) // it is re-tried and found well
			share = simulate(p, clock, insts, 3000, outcome)
			if s := share[troubled]; s < 0.28 {
				t.Fatalf("recovered: %s got %.1f%% of calls, want about a third (shares %v)", troubled, 100*s, share)
			}
		})
	}
}

func TestWeightedTriesNewInstancesAndSinglePick(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	p := discovery.NewWeighted(discovery.WithRand(rand.New(rand.NewPCG(3, 4))), discovery.WithPickerClock(clock.now))
	insts := instances(2)
	if got := p.Pick(insts[:1]); got.ID != "i-0" {
		t.Fatalf("single instance: picked %s", got.ID)
	}
	// i-0 has a history, i-1 none: the unknown one is tried first.
	p.Report(insts[0].Endpoint.Addr, time.Millisecond, nil)
	if got := p.Pick(insts); got.ID != "i-1" {
		t.Fatalf("picked %s, want the instance without reports", got.ID)
	}
}
