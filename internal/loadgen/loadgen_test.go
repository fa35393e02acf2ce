package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A slow target does not slow the load: with answers taking 200 ms at 100
// requests a second, about 20 are in flight at once, more than the 8
// workers the generator once had, which held the rate at 40 a second.
func TestSlowTargetKeepsRequestsInFlight(t *testing.T) {
	var inFlight, most atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(200 * time.Millisecond)
		inFlight.Add(-1)
	}))
	defer srv.Close()
	res := Run(context.Background(), Config{Rate: 100, Duration: time.Minute, MaxRequests: 100,
		Target: func() (string, error) { return srv.URL, nil }})
	if res.Sent != 100 || res.Failed != 0 {
		t.Fatalf("sent %d, failed %d (%s)", res.Sent, res.Failed, res.FirstError)
	}
	if got := most.Load(); got <= 8 {
		t.Fatalf("at most %d requests in flight against a target answering in 200 ms at 100/s; the rate fell with the target", got)
	}
}

func TestDefaultWorkersFollowTheRate(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		want int
	}{{1, 8}, {40, 10}, {200, 50}, {1e6, MaxWorkers}} {
		if got := defaultWorkers(tc.rate); got != tc.want {
			t.Errorf("rate %g: %d workers, want %d", tc.rate, got, tc.want)
		}
	}
}
