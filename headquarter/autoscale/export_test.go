package autoscale

import "time"

// SetRunClock replaces Run's ticker and its timer for a recheck, so that
// a test drives Run's evaluations without waiting on the wall clock.
func (m *Manager) SetRunClock(tick <-chan time.Time, after func(time.Duration) <-chan time.Time) {
	m.tick, m.after = tick, after
}
