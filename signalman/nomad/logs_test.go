package nomad_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/signalman/nomad"
	"github.com/garrisonhq/garrison/signalman/task"
)

// A task's log is the end of its stdout and of its stderr, read from the
// Nomad client that runs it: n lines of each, and no more than
// task.MaxLogBytes of each read, however long the log.
func TestTaskLog(t *testing.T) {
	d, _ := newDriver(t)
	ctx := ctxFor(t)
	// 60000 lines are 1.6 MB: more than Log reads of a stream.
	const lines = 60000
	a := rawApp("/it/logs", "2026-01-01T00:00:00.000Z", 1)
	a.Task.Env = map[string]string{"TESTSERVER_LOG_LINES": fmt.Sprint(lines)}
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	tk := waitRunning(ctx, t, d, a.Task.AppID, 1, nil)[0]
	serves(t, tk) // it printed its lines before it listened
	poll.Until(t, wait, "the task's log tail", func() (bool, string) {
		b, err := d.Log(ctx, tk.ID, 5)
		if err != nil {
			t.Fatal(err)
		}
		return string(b) == dockertest.LogLines(lines-4, lines), string(b)
	})
	b, err := d.Log(ctx, tk.ID, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != dockertest.LogLines(lines-4999, lines) {
		t.Errorf("tail 5000: %d bytes from %q, want lines %d to %d", len(b), firstLine(b), lines-4999, lines)
	}

	for _, id := range []string{"it_logs.00000000-0000-0000-0000-000000000000", "nodot", tk.ID[:strings.LastIndex(tk.ID, ".")+1]} {
		if _, err := d.Log(ctx, id, 5); !errors.Is(err, nomad.ErrUnknownTask) {
			t.Errorf("log of %q: %v, want ErrUnknownTask", id, err)
		}
	}
	// The allocation under another job's name is not that task.
	other := "other" + tk.ID[strings.LastIndex(tk.ID, "."):]
	if _, err := d.Log(ctx, other, 5); !errors.Is(err, nomad.ErrUnknownTask) {
		t.Errorf("log of %q: %v, want ErrUnknownTask", other, err)
	}
}

// A task that failed to start has an empty log, not an error (Nomad
// answers 404 "not started yet").
func TestTaskLogOfFailedStart(t *testing.T) {
	d, _ := newDriver(t)
	ctx := ctxFor(t)
	a := rawApp("/it/nostart", "2026-01-01T00:00:00.000Z", 1)
	a.Task.Args = []string{"/no/such/program"}
	if _, err := d.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	var failed nomad.Task
	poll.Until(t, wait, "the task failed", func() (bool, string) {
		all, err := d.Allocations(ctx, a.Task.AppID)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range all {
			if tk.State == task.Failed {
				failed = tk
				return true, ""
			}
		}
		return false, describe(all)
	})
	if b, err := d.Log(ctx, failed.ID, 10); err != nil || len(b) != 0 {
		t.Errorf("log of the task that never started: %q %v, want it empty", b, err)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// BenchmarkTaskLog reads the last 200 lines of a task with a 1.6 MB log
// through Driver.Log and, as the baseline in the same run, the same bytes
// straight from Nomad's logs endpoint (what `nomad alloc logs -tail`
// reads: the last MaxLogBytes of stdout and of stderr) without the
// allocation check and the tail cut. It reports each side's time per read
// and log/direct as the ratio.
//
//	make bench BENCH=TaskLog BENCH_PKGS=./signalman/nomad
func BenchmarkTaskLog(b *testing.B) {
	c, _ := agent.Namespace(b)
	d, err := nomad.New(c)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const lines = 60000
	a := rawApp("/bench/logs", "2026-01-01T00:00:00.000Z", 1)
	a.Task.Env = map[string]string{"TESTSERVER_LOG_LINES": fmt.Sprint(lines)}
	if _, err := d.Submit(ctx, a); err != nil {
		b.Fatal(err)
	}
	var tk nomad.Task
	poll.Until(b, wait, "the task's whole log", func() (bool, string) {
		tasks, err := d.Allocations(ctx, a.Task.AppID)
		if err != nil || len(tasks) != 1 || tasks[0].State != task.Running {
			return false, fmt.Sprint(describe(tasks), err)
		}
		tk = tasks[0]
		out, err := d.Log(ctx, tk.ID, 1)
		return err == nil && strings.HasSuffix(string(out), "stderr line\n"), string(out)
	})
	alloc := &api.Allocation{ID: tk.AllocID, NodeID: tk.NodeID}
	direct := func() int {
		n := 0
		for _, stream := range []string{"stdout", "stderr"} {
			stop := make(chan struct{})
			frames, errs := c.AllocFS().Logs(alloc, false, "app", stream, "end", task.MaxLogBytes, stop, nil)
			r := api.NewFrameReader(frames, errs, stop)
			body, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				b.Fatal(err)
			}
			n += len(body)
		}
		return n
	}
	viaLog := func() int {
		out, err := d.Log(ctx, tk.ID, 200)
		if err != nil || strings.Count(string(out), "\n") != 201 {
			b.Fatalf("log: %d lines, %v", strings.Count(string(out), "\n"), err)
		}
		return len(out)
	}
	var tLog, tDirect time.Duration
	b.ResetTimer()
	for i := range b.N {
		sides := []struct {
			read  func() int
			total *time.Duration
		}{{viaLog, &tLog}, {direct, &tDirect}}
		if i%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, side := range sides {
			start := time.Now()
			side.read()
			*side.total += time.Since(start)
		}
	}
	b.ReportMetric(float64(tLog.Microseconds())/float64(b.N), "log-µs/op")
	b.ReportMetric(float64(tDirect.Microseconds())/float64(b.N), "direct-µs/op")
	b.ReportMetric(float64(tLog)/float64(tDirect), "log/direct")
}
