// Package poll waits in tests for a condition that something else makes
// true (a container starting, a key expiring), polling with a deadline
// instead of sleeping a guessed time.
package poll

import (
	"testing"
	"time"
)

// Interval is how often Until checks.
const Interval = 25 * time.Millisecond

// Until checks cond until it holds, failing the test after timeout with
// what and the last state cond described.
func Until(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, timeout, state)
		}
		<-tick.C
	}
}

// True checks cond until it holds, failing the test after timeout.
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Until(t, timeout, what, func() (bool, string) { return cond(), "" })
}
