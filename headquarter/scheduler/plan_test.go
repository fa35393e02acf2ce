package scheduler

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/app"
)

func testApp(n int, minHealth, maxOver float64) *app.App {
	return &app.App{ID: "/web", Instances: n, KillSelection: app.KillYoungestFirst,
		UpgradeStrategy: app.UpgradeStrategy{MinimumHealthCapacity: minHealth, MaximumOverCapacity: maxOver}}
}

// tasks builds views: o = old healthy, u = old unhealthy, N = new healthy,
// n = new not yet healthy, k = killing; staged in order, so later is younger.
func tasks(spec string) []taskView {
	var out []taskView
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, c := range spec {
		t := taskView{ID: fmt.Sprintf("%c%d", c, i), Staged: base.Add(time.Duration(i) * time.Second)}
		switch c {
		case 'o':
			t.Healthy = true
		case 'u':
		case 'N':
			t.Current, t.Healthy = true, true
		case 'n':
			t.Current = true
		case 'k':
			t.Killing = true
		}
		out = append(out, t)
	}
	return out
}

func TestPlanApp(t *testing.T) {
	for _, tc := range []struct {
		name       string
		app        *app.App
		tasks      string
		restarting bool
		launch     int
		kill       []string
	}{
		{"scale up from nothing", testApp(3, 1, 1), "", false, 3, nil},
		{"scale up", testApp(3, 1, 1), "N", false, 2, nil},
		{"steady", testApp(3, 1, 1), "NNN", false, 0, nil},
		{"scale down kills youngest", testApp(1, 1, 1), "NNN", false, 0, []string{"N2", "N1"}},
		{"scale down kills unhealthy first", testApp(2, 1, 1), "NnN", false, 0, []string{"n1"}},
		{"killing tasks do not count", testApp(2, 1, 1), "Nk", false, 1, nil},
		{"old tasks count when no restart runs", testApp(2, 1, 1), "oo", false, 0, nil},
		{"to zero", testApp(0, 1, 1), "NN", false, 0, []string{"N1", "N0"}},

		// Marathon's default 1/1: start all new side by side, then retire old.
		{"restart 1/1 starts all new", testApp(3, 1, 1), "ooo", true, 3, nil},
		{"restart 1/1 waits for health", testApp(3, 1, 1), "ooonnn", true, 0, nil},
		{"restart 1/1 retires one per healthy new", testApp(3, 1, 1), "oooNnn", true, 0, []string{"o0"}},
		{"restart 1/1 unhealthy old go first", testApp(3, 1, 1), "uoo", true, 3, []string{"u0"}},
		// 0/0: kill everything first, launch when they are gone.
		{"restart 0/0 kills all first", testApp(3, 0, 0), "ooo", true, 0, []string{"o0", "o1", "o2"}},
		{"restart 0/0 launches after", testApp(3, 0, 0), "", true, 3, nil},
		{"restart 0/0 waits for kills", testApp(3, 0, 0), "kkk", true, 0, nil},
		// 1/0: floor equals ceiling, so one extra task is allowed.
		{"restart 1/0 one at a time", testApp(2, 1, 0), "oo", true, 1, nil},
		{"restart 1/0 next after health", testApp(2, 1, 0), "ooN", true, 0, []string{"o0"}},
		{"restart 1/0 continues", testApp(2, 1, 0), "okN", true, 0, nil},
		{"restart 1/0 continues after kill", testApp(2, 1, 0), "oN", true, 1, nil},
		// 0.5/0: half may go down, none above n.
		{"restart 0.5/0", testApp(4, 0.5, 0), "oooo", true, 0, []string{"o0", "o1"}},
		{"restart 0.5/0 refills", testApp(4, 0.5, 0), "kkoo", true, 0, nil},
		{"restart 0.5/0 refills after kill", testApp(4, 0.5, 0), "oo", true, 2, nil},
		{"restart done", testApp(2, 1, 1), "NN", true, 0, nil},
		{"restart with lower count kills surplus new", testApp(1, 1, 1), "NN", true, 0, []string{"N1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planApp(tc.app, tasks(tc.tasks), tc.restarting)
			if got.Launch != tc.launch || !slices.Equal(got.Kill, tc.kill) {
				t.Fatalf("plan(%q) = launch %d kill %v, want launch %d kill %v", tc.tasks, got.Launch, got.Kill, tc.launch, tc.kill)
			}
		})
	}
}

func TestPlanKillOldestFirst(t *testing.T) {
	a := testApp(1, 1, 1)
	a.KillSelection = app.KillOldestFirst
	if got := planApp(a, tasks("NNN"), false); !slices.Equal(got.Kill, []string{"N0", "N1"}) {
		t.Fatalf("kill %v, want the oldest", got.Kill)
	}
}

func TestBackoffDelay(t *testing.T) {
	a := &app.App{BackoffSeconds: 1, BackoffFactor: 1.15, MaxLaunchDelaySeconds: 300}
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{
		{0, 0}, {1, time.Second}, {2, 1150 * time.Millisecond}, {3, 1322500 * time.Microsecond}, {100, 300 * time.Second},
	} {
		if got := backoffDelay(a, tc.failures); (got - tc.want).Abs() > time.Millisecond {
			t.Errorf("backoff after %d failures = %s, want %s", tc.failures, got, tc.want)
		}
	}
}
