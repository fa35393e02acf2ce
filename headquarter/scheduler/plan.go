package scheduler

import (
	"math"
	"slices"
	"time"

	"github.com/garrisonhq/garrison/headquarter/app"
)

// taskView is what planning needs to know about one live task.
type taskView struct {
	ID      string
	Current bool // runs the app's current configuration
	Healthy bool // running and, when the app has health checks, passing them
	Killing bool // a kill is under way
	Staged  time.Time
}

// step is what one reconcile pass should do for an app.
type step struct {
	Launch int
	Kill   []string
}

// planApp decides the next step for one app: values in, value out, so that
// Marathon's arithmetic is tested without Docker or etcd.
//
// Without a rolling restart, all tasks count towards the instance count:
// missing ones are launched, surplus ones killed (killSelection decides
// which). During a rolling restart the numbers follow Marathon's
// TaskReplaceActor: never fewer than ceil(n × minimumHealthCapacity) healthy
// tasks, never more than floor(n × (1 + maximumOverCapacity)) tasks, and an
// old task is killed only once enough others are healthy.
func planApp(a *app.App, tasks []taskView, restarting bool) step {
	n := a.Instances
	var live []taskView
	for _, t := range tasks {
		if !t.Killing {
			live = append(live, t)
		}
	}
	var old, current []taskView
	for _, t := range live {
		if restarting && !t.Current {
			old = append(old, t)
		} else {
			current = append(current, t)
		}
	}
	// A restart whose old tasks are all being killed still waits for them
	// before going above capacity.
	if len(old) == 0 && !(restarting && countKilling(tasks) > 0) {
		var s step
		if len(current) < n {
			s.Launch = n - len(current)
		}
		if surplus := len(current) - n; surplus > 0 {
			s.Kill = pickKills(current, surplus, a.KillSelection)
		}
		return s
	}

	minHealthy := int(math.Ceil(float64(n) * a.UpgradeStrategy.MinimumHealthCapacity))
	maxCapacity := int(math.Floor(float64(n) * (1 + a.UpgradeStrategy.MaximumOverCapacity)))
	healthy := 0
	for _, t := range live {
		if t.Healthy {
			healthy++
		}
	}
	// With no room above the floor the upgrade could never start: allow one
	// extra task, as Marathon does.
	if minHealthy == maxCapacity && healthy >= minHealthy {
		maxCapacity++
	}
	var s step
	// Surplus new tasks (the count went down during the restart).
	currentCount := len(current)
	if surplus := currentCount - n; surplus > 0 {
		s.Kill = append(s.Kill, pickKills(current, surplus, a.KillSelection)...)
		currentCount = n
	}
	// Old tasks go, unhealthy ones first, as long as enough stay healthy.
	slices.SortStableFunc(old, func(x, y taskView) int {
		if x.Healthy != y.Healthy {
			if x.Healthy {
				return 1
			}
			return -1
		}
		return 0
	})
	for _, t := range old {
		if t.Healthy && healthy-1 < minHealthy {
			break
		}
		s.Kill = append(s.Kill, t.ID)
		if t.Healthy {
			healthy--
		}
	}
	// A task being killed still holds its ports and memory until it is gone,
	// including the ones this step kills.
	occupied := len(old) + currentCount + countKilling(tasks)
	if room := maxCapacity - occupied; room > 0 {
		s.Launch = max(0, min(n-currentCount, room))
	}
	return s
}

func countKilling(tasks []taskView) int {
	n := 0
	for _, t := range tasks {
		if t.Killing {
			n++
		}
	}
	return n
}

// pickKills chooses which n tasks to kill: unhealthy ones first, then by
// the app's killSelection (youngest first by default).
func pickKills(tasks []taskView, n int, selection string) []string {
	sorted := slices.Clone(tasks)
	slices.SortStableFunc(sorted, func(x, y taskView) int {
		if x.Healthy != y.Healthy {
			if x.Healthy {
				return 1
			}
			return -1
		}
		c := x.Staged.Compare(y.Staged)
		if selection == app.KillOldestFirst {
			return c
		}
		return -c
	})
	ids := make([]string, 0, n)
	for _, t := range sorted[:min(n, len(sorted))] {
		ids = append(ids, t.ID)
	}
	return ids
}

// backoffDelay is Marathon's launch delay after the n-th consecutive
// failure: backoffSeconds × backoffFactor^(n-1), at most maxLaunchDelaySeconds.
func backoffDelay(a *app.App, failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := float64(a.BackoffSeconds) * math.Pow(a.BackoffFactor, float64(failures-1))
	d = min(d, float64(a.MaxLaunchDelaySeconds))
	return time.Duration(d * float64(time.Second))
}
