package taskstats_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/garrisonhq/garrison/internal/driverstats"
	"github.com/garrisonhq/garrison/scout/taskstats"
	"github.com/garrisonhq/garrison/signalman/process"
	"github.com/garrisonhq/garrison/signalman/task"
)

const deadline = 20 * time.Second

// newProcessDriver is signalman's real process driver in a temp directory;
// its tasks are killed and it is closed with the test.
func newProcessDriver(t *testing.T) *process.Driver {
	t.Helper()
	d, err := process.New(t.TempDir(), process.WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		all, _ := d.List(ctx)
		for _, st := range all {
			if !st.State.Terminal() {
				if err := d.Kill(ctx, st.ID, 100*time.Millisecond); err != nil {
					t.Errorf("cleanup: kill %s: %v", st.ID, err)
				}
			}
		}
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// series is a gathered metric family as label pair -> value.
type series map[string]map[string]float64 // name -> "app task" -> value

func gather(t *testing.T, reg *prometheus.Registry) series {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := series{}
	for _, mf := range mfs {
		m := map[string]float64{}
		for _, mm := range mf.Metric {
			var key string
			for _, lp := range mm.Label {
				key += lp.GetName() + "=" + lp.GetValue() + " "
			}
			m[key] = value(mm)
		}
		out[mf.GetName()] = m
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

func key(app, id string) string { return "app=" + app + " task=" + id + " " }

func TestCollectorOverProcessDriver(t *testing.T) {
	d := newProcessDriver(t)
	launch := func(app, id, cmd string) {
		t.Helper()
		if _, err := d.Launch(t.Context(), task.Spec{ID: id, AppID: app, Cmd: cmd, CPUs: 0.5, MemMB: 64}); err != nil {
			t.Fatal(err)
		}
	}
	// A busy task (bounded: it ends by itself after a few seconds of CPU),
	// an idle one, and one of an app garrison does not know.
	launch("/busy", "busy.1", "i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done; sleep 60")
	launch("/idle", "idle.1", "sleep 60")
	launch("/stranger", "stranger.1", "sleep 60")
	limits := func(app string) (float64, float64, bool) {
		switch app {
		case "/busy":
			return 0.5, 64, true
		case "/idle":
			return 2, 1024, true
		}
		return 0, 0, false
	}
	c := taskstats.New(limits, []taskstats.Tasks{driverstats.Adapt[process.Usage](d)})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	var s series
	end := time.Now().Add(deadline)
	for {
		s = gather(t, reg)
		if s["garrison_task_cpu_seconds_total"][key("/busy", "busy.1")] > 0.2 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("busy task's CPU seconds did not pass 0.2 within %s: %v", deadline, s["garrison_task_cpu_seconds_total"])
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond): // poll interval
		}
	}
	for _, id := range []string{key("/busy", "busy.1"), key("/idle", "idle.1"), key("/stranger", "stranger.1")} {
		if v, ok := s["garrison_task_memory_bytes"][id]; !ok || v < 4096 {
			t.Errorf("memory of %s: %v (present %v), want a resident set > 4 KiB", id, v, ok)
		}
		if _, ok := s["garrison_task_cpu_seconds_total"][id]; !ok {
			t.Errorf("cpu seconds of %s missing", id)
		}
	}
	if got := s["garrison_task_cpus"]; len(got) != 2 || got[key("/busy", "busy.1")] != 0.5 || got[key("/idle", "idle.1")] != 2 {
		t.Errorf("garrison_task_cpus = %v, want busy 0.5, idle 2, nothing for the unknown app", got)
	}
	if got := s["garrison_task_memory_limit_bytes"]; len(got) != 2 || got[key("/busy", "busy.1")] != 64<<20 || got[key("/idle", "idle.1")] != 1<<30 {
		t.Errorf("garrison_task_memory_limit_bytes = %v, want busy 64 MiB, idle 1 GiB", got)
	}
	if idle := s["garrison_task_cpu_seconds_total"][key("/idle", "idle.1")]; idle > 0.1 {
		t.Errorf("idle task used %v CPU seconds", idle)
	}
	for name := range s {
		if strings.Contains(name, "network") || strings.Contains(name, "_rx_") || strings.Contains(name, "_tx_") {
			t.Errorf("exported %s: per-task network bytes are not separable under host networking", name)
		}
	}

	// An ended task is no longer exported.
	if err := d.Kill(t.Context(), "idle.1", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	end = time.Now().Add(deadline)
	for {
		s = gather(t, reg)
		if _, ok := s["garrison_task_memory_bytes"][key("/idle", "idle.1")]; !ok {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("killed task still exported after %s", deadline)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond): // poll interval
		}
	}
}

// stuck is a driver whose Stats never answers before ctx ends, and whose
// list has many tasks: Collect must still return within its timeout.
type stuck struct{ n int }

func (s stuck) Running(context.Context) ([]taskstats.Task, error) {
	out := make([]taskstats.Task, s.n)
	for i := range out {
		out[i] = taskstats.Task{ID: fmt.Sprintf("t%d", i), AppID: "/a"}
	}
	return out, nil
}

func (stuck) Stats(ctx context.Context, _ string) (taskstats.Usage, error) {
	<-ctx.Done()
	return taskstats.Usage{}, ctx.Err()
}

type failing struct{}

func (failing) Running(context.Context) ([]taskstats.Task, error) {
	return nil, errors.New("engine unreachable")
}
func (failing) Stats(context.Context, string) (taskstats.Usage, error) {
	return taskstats.Usage{}, errors.New("unreachable")
}

func TestCollectIsBoundedAndCountsFailures(t *testing.T) {
	c := taskstats.New(nil, []taskstats.Tasks{stuck{n: 100}, failing{}},
		taskstats.WithTimeout(200*time.Millisecond), taskstats.WithParallelism(4))
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	start := time.Now()
	s := gather(t, reg)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("collect took %s with a 200ms timeout", d)
	}
	errs := s["garrison_task_stats_errors_total"]
	if errs["stage=list "] != 1 || errs["stage=stats "] != 100 {
		t.Errorf("errors = %v, want list 1, stats 100 (4 timed out, 96 never started)", errs)
	}
	if n := len(s["garrison_task_cpu_seconds_total"]); n != 0 {
		t.Errorf("%d cpu series from tasks without stats", n)
	}
}
