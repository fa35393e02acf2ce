package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/signalman/task"
)

// helperEnv switches the test binary into a helper program (see TestMain).
const helperEnv = "GARRISON_PROCESS_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "http":
		os.Exit(httpHelper())
	case "crash":
		os.Exit(crashHelper())
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// httpHelper is a task: it answers HTTP on 127.0.0.1:$PORT0 with its task id
// and exits 0 on SIGTERM.
func httpHelper() int {
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT0"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "task=%s port=%s", os.Getenv("MESOS_TASK_ID"), os.Getenv("PORT_HTTP"))
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("stopped on SIGTERM")
	return 0
}

// crashHelper is garrison crashing: it launches the tasks given as JSON
// specs on stdin through a Driver on $GARRISON_PROCESS_DIR, prints their
// statuses, and dies by SIGKILL without stopping anything.
func crashHelper() int {
	var specs []task.Spec
	if err := json.NewDecoder(os.Stdin).Decode(&specs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	d, err := New(os.Getenv("GARRISON_PROCESS_DIR"), WithCgroupParent(""))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var out []task.Status
	for _, s := range specs {
		st, err := d.Launch(context.Background(), s)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		out = append(out, st)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

const deadline = 15 * time.Second

// newDriver opens a driver on a fresh directory; at the end of the test it
// kills what still runs and closes the driver.
func newDriver(t testing.TB, opts ...Option) (*Driver, string) {
	t.Helper()
	dir := t.TempDir()
	return openDriver(t, dir, opts...), dir
}

func openDriver(t testing.TB, dir string, opts ...Option) *Driver {
	t.Helper()
	opts = append([]Option{WithPollInterval(20 * time.Millisecond), WithDefaultGrace(5 * time.Second)}, opts...)
	d, err := New(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAll(t, d) })
	return d
}

// stopAll kills every running task of d and closes d; safe after Close.
func stopAll(t testing.TB, d *Driver) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	all, err := d.List(ctx)
	if err != nil {
		t.Error(err)
	}
	for _, st := range all {
		if !st.State.Terminal() {
			if err := d.Kill(ctx, st.ID, 100*time.Millisecond); err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	if err := d.Close(); err != nil {
		t.Error(err)
	}
}

// freePorts reserves ports that the task binds later (testport: no one
// else takes them in between).
func freePorts(t testing.TB, n int) []int { return testport.Take(t, n) }

// waitState reads w until task id reaches state.
func waitState(t testing.TB, w <-chan task.Status, id string, state task.State) task.Status {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case st, ok := <-w:
			if !ok {
				t.Fatalf("watch closed before %s reached %s", id, state)
			}
			if st.ID == id && st.State == state {
				return st
			}
			if st.ID == id && st.State.Terminal() {
				t.Fatalf("task %s ended as %s (%d, %q), want %s", id, st.State, st.ExitCode, st.Message, state)
			}
		case <-timeout:
			t.Fatalf("task %s did not reach %s within %v", id, state, deadline)
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, deadline)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func watch(t testing.TB, d *Driver) <-chan task.Status {
	t.Helper()
	w, err := d.Watch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func launch(t testing.TB, d *Driver, spec task.Spec) task.Status {
	t.Helper()
	st, err := d.Launch(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != task.Running {
		t.Fatalf("launched task %s is %s", spec.ID, st.State)
	}
	return st
}

func statusOf(t testing.TB, d *Driver, id string) task.Status {
	t.Helper()
	all, err := d.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range all {
		if st.ID == id {
			return st
		}
	}
	t.Fatalf("task %s not listed", id)
	return task.Status{}
}

func TestTaskEnvironmentAndSandbox(t *testing.T) {
	d, _ := newDriver(t)
	w := watch(t, d)
	ports := freePorts(t, 2)
	spec := task.Spec{
		ID: "ktv_account.env1", AppID: "/ktv/account", Version: "2026-01-02T03:04:05.000Z",
		Cmd:   "env; pwd; echo to-stderr >&2",
		Ports: []task.Port{{Name: "http", Host: ports[0]}, {Host: ports[1], Requested: 8080}},
		Host:  "127.0.0.1", CPUs: 0.25, MemMB: 64,
		Env: map[string]string{"GREETING": "hello world"},
	}
	launch(t, d, spec)
	st := waitState(t, w, spec.ID, task.Finished)
	if st.ExitCode != 0 || st.StartedAt.IsZero() || st.StagedAt.IsZero() || st.Host != "127.0.0.1" {
		t.Errorf("finished status %+v", st)
	}
	if fmt.Sprint(st.Ports) != fmt.Sprint(ports) {
		t.Errorf("ports %v, want %v", st.Ports, ports)
	}
	out := readFile(t, filepath.Join(d.Sandbox(spec.ID), "stdout"))
	p0, p1 := strconv.Itoa(ports[0]), strconv.Itoa(ports[1])
	for _, want := range []string{
		"PORT0=" + p0, "PORT1=" + p1, "PORT=" + p0, "PORTS=" + p0 + "," + p1,
		"PORT_HTTP=" + p0, "PORT_8080=" + p1, "MARATHON_APP_ID=/ktv/account",
		"MESOS_TASK_ID=ktv_account.env1", "HOST=127.0.0.1", "GREETING=hello world",
		"MARATHON_APP_RESOURCE_MEM=64", "PATH=" + defaultPath, "HOME=" + d.Sandbox(spec.ID),
		"\n" + d.Sandbox(spec.ID) + "\n", // pwd
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if got := readFile(t, filepath.Join(d.Sandbox(spec.ID), "stderr")); got != "to-stderr\n" {
		t.Errorf("stderr = %q", got)
	}
	if _, err := d.Launch(t.Context(), spec); !errors.Is(err, ErrTaskExists) {
		t.Errorf("relaunch of an unremoved task: %v, want ErrTaskExists", err)
	}
}

func TestArgsRunWithoutShell(t *testing.T) {
	d, _ := newDriver(t)
	w := watch(t, d)
	launch(t, d, task.Spec{ID: "args.1", AppID: "/args", Args: []string{"/bin/echo", "$HOME", "a b"}})
	waitState(t, w, "args.1", task.Finished)
	if got := readFile(t, filepath.Join(d.Sandbox("args.1"), "stdout")); got != "$HOME a b\n" {
		t.Errorf("stdout = %q", got)
	}
}

func TestLaunchRejects(t *testing.T) {
	d, _ := newDriver(t)
	for _, tc := range []struct {
		name string
		spec task.Spec
	}{
		{"no command", task.Spec{ID: "a.1"}},
		{"both cmd and args", task.Spec{ID: "a.1", Cmd: "true", Args: []string{"true"}}},
		{"image", task.Spec{ID: "a.1", Cmd: "true", Image: "busybox"}},
		{"path in id", task.Spec{ID: "../a", Cmd: "true"}},
		{"dot id", task.Spec{ID: ".lock", Cmd: "true"}},
		{"missing program", task.Spec{ID: "a.2", Args: []string{"/nonexistent/program"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := d.Launch(t.Context(), tc.spec); err == nil {
				t.Fatal("launched")
			}
		})
	}
	if all, _ := d.List(t.Context()); len(all) != 0 {
		t.Errorf("rejected launches left tasks: %+v", all)
	}
}

func TestHTTPTask(t *testing.T) {
	d, _ := newDriver(t)
	w := watch(t, d)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	port := freePorts(t, 1)[0]
	spec := task.Spec{
		ID: "web.1", AppID: "/web", Args: []string{exe, "-test.run=^$"},
		Env:   map[string]string{helperEnv: "http"},
		Ports: []task.Port{{Name: "http", Host: port}},
	}
	launch(t, d, spec)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var body string
	eventually(t, "task answers HTTP", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err == nil && resp.StatusCode == http.StatusOK
	})
	if want := fmt.Sprintf("task=web.1 port=%d", port); body != want {
		t.Errorf("body %q, want %q", body, want)
	}
	if err := d.Kill(t.Context(), spec.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, w, spec.ID, task.Killed)
	if st.ExitCode != 0 {
		t.Errorf("exit code %d (%s), want 0 after a clean SIGTERM shutdown", st.ExitCode, st.Message)
	}
	if out := readFile(t, filepath.Join(d.Sandbox(spec.ID), "stdout")); !strings.Contains(out, "stopped on SIGTERM") {
		t.Errorf("stdout %q", out)
	}
}

func TestKillHonoursGrace(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cmd      string
		grace    time.Duration
		wantCode int
		minTime  time.Duration
	}{
		// The background sleep gets SIGTERM too (the whole group does), so
		// wait returns at once.
		{"exits on SIGTERM", `trap 'exit 0' TERM; echo ready; sleep 30 & wait`, 20 * time.Second, 0, 0},
		{"ignores SIGTERM", `trap '' TERM; echo ready; while :; do sleep 0.05; done`, 300 * time.Millisecond, 128 + 9, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDriver(t)
			w := watch(t, d)
			id := "grace.1"
			launch(t, d, task.Spec{ID: id, AppID: "/grace", Cmd: tc.cmd})
			eventually(t, "trap installed", func() bool {
				return strings.Contains(readFile(t, filepath.Join(d.Sandbox(id), "stdout")), "ready")
			})
			begin := time.Now()
			if err := d.Kill(t.Context(), id, tc.grace); err != nil {
				t.Fatal(err)
			}
			took := time.Since(begin)
			if took < tc.minTime || (tc.minTime == 0 && took >= tc.grace) {
				t.Errorf("kill took %v with grace %v", took, tc.grace)
			}
			waitState(t, w, id, task.Killing)
			st := waitState(t, w, id, task.Killed)
			if st.ExitCode != tc.wantCode {
				t.Errorf("exit code %d (%s), want %d", st.ExitCode, st.Message, tc.wantCode)
			}
			if got := statusOf(t, d, id); got.State != task.Killed {
				t.Errorf("listed as %s after Kill returned", got.State)
			}
			if err := d.Kill(t.Context(), id, tc.grace); err != nil {
				t.Errorf("second kill: %v", err)
			}
		})
	}
}

func TestEndsBehindTheDriversBack(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cmd       string
		signal    syscall.Signal // sent by the test to the task's pid, 0: none
		wantState task.State
		wantCode  int
	}{
		{"exit 0", "exit 0", 0, task.Finished, 0},
		{"exit 3", "exit 3", 0, task.Failed, 3},
		{"SIGKILL", "sleep 30 & echo $! > child.pid; wait", syscall.SIGKILL, task.Failed, 128 + 9},
		{"SIGTERM", "sleep 30 & echo $! > child.pid; wait", syscall.SIGTERM, task.Failed, 128 + 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := newDriver(t)
			w := watch(t, d)
			id := "back.1"
			launch(t, d, task.Spec{ID: id, AppID: "/back", Cmd: tc.cmd})
			var child int
			if tc.signal != 0 {
				eventually(t, "child pid written", func() bool {
					child, _ = strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(d.Sandbox(id), "child.pid"))))
					return child > 0
				})
				pid, err := d.Pid(id)
				if err != nil {
					t.Fatal(err)
				}
				if err := syscall.Kill(pid, tc.signal); err != nil {
					t.Fatal(err)
				}
			}
			st := waitState(t, w, id, tc.wantState)
			if st.ExitCode != tc.wantCode {
				t.Errorf("exit code %d (%s), want %d", st.ExitCode, st.Message, tc.wantCode)
			}
			if child > 0 {
				// The leader's end took the rest of its group along.
				eventually(t, "background child killed", func() bool { return !processRunning(child) })
			}
		})
	}
}

// crash launches specs through a Driver in another process on dir, which then
// dies by SIGKILL (garrison crashing), and returns the launched statuses.
func crash(t *testing.T, dir string, specs []task.Spec) []task.Status {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := json.Marshal(specs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=crash", "GARRISON_PROCESS_DIR="+dir)
	cmd.Stdin = strings.NewReader(string(in))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("crash helper: %v, want death by SIGKILL", err)
	}
	var sts []task.Status
	if err := json.Unmarshal(out, &sts); err != nil {
		t.Fatalf("crash helper output %q: %v", out, err)
	}
	return sts
}

func TestAdoptionAfterCrash(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"pidfd", nil},
		{"polling /proc", []Option{func(c *config) { c.noPidfd = true }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ports := freePorts(t, 2)
			launched := crash(t, dir, []task.Spec{
				{ID: "adopt.kill", AppID: "/adopt", Cmd: "exec sleep 30", Ports: []task.Port{{Host: ports[0]}}, Host: "127.0.0.1"},
				{ID: "adopt.die", AppID: "/adopt", Cmd: "exec sleep 30", Ports: []task.Port{{Host: ports[1]}}},
			})
			var pids []int
			for _, st := range launched {
				r, err := readRecord(filepath.Join(dir, st.ID))
				if err != nil {
					t.Fatal(err)
				}
				if !alive(r.Pid, r.StartTime) {
					t.Fatalf("task %s (pid %d) died with the driver that launched it", st.ID, r.Pid)
				}
				pids = append(pids, r.Pid)
			}

			d := openDriver(t, dir, tc.opts...)
			w := watch(t, d)
			all, err := d.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 2 {
				t.Fatalf("listed %d tasks, want 2: %+v", len(all), all)
			}
			for i, st := range launched {
				got := statusOf(t, d, st.ID)
				if got.State != task.Running || fmt.Sprint(got.Ports) != fmt.Sprint(st.Ports) ||
					!got.StartedAt.Equal(st.StartedAt) || got.Host != st.Host {
					t.Errorf("adopted %+v, launched %+v", got, st)
				}
				if pid, _ := d.Pid(st.ID); pid != pids[i] {
					t.Errorf("task %s: pid %d, launched as %d", st.ID, pid, pids[i])
				}
			}

			if err := d.Kill(t.Context(), "adopt.kill", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			st := waitState(t, w, "adopt.kill", task.Killed)
			if processRunning(pids[0]) {
				t.Errorf("killed task's process %d still runs", pids[0])
			}
			t.Logf("killed adopted task: %s", st.Message)

			if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			st = waitState(t, w, "adopt.die", task.Failed)
			t.Logf("adopted task killed behind the driver's back: %s", st.Message)
		})
	}
}

// processRunning says whether pid exists and is not a zombie.
func processRunning(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

func TestWatchClosesWithItsContext(t *testing.T) {
	d, _ := newDriver(t)
	ctx, cancel := context.WithCancel(t.Context())
	w, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	launch(t, d, task.Spec{ID: "w.1", AppID: "/w", Cmd: "exit 0"}) // events nobody reads
	cancel()
	for range w {
	}
	// The driver still works without the watcher.
	w2 := watch(t, d)
	launch(t, d, task.Spec{ID: "w.2", AppID: "/w", Cmd: "exit 0"})
	waitState(t, w2, "w.2", task.Finished)
}

func TestCloseLeavesTasksForTheNextDriver(t *testing.T) {
	d1, dir := newDriver(t)
	launch(t, d1, task.Spec{ID: "keep.1", AppID: "/keep", Cmd: "exec sleep 30"})
	w1 := watch(t, d1)
	if _, err := New(dir); err == nil {
		t.Fatal("a second driver opened a directory in use")
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	for range w1 {
	} // closes with the driver
	// A goroutine may still be returning from its deferred wg.Done.
	eventually(t, "driver goroutines end after Close", func() bool {
		buf := make([]byte, 1<<20)
		return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "process.(*Driver)")
	})
	if _, err := d1.Launch(t.Context(), task.Spec{ID: "keep.2", Cmd: "true"}); !errors.Is(err, ErrClosed) {
		t.Errorf("launch after close: %v", err)
	}

	d2 := openDriver(t, dir)
	w2 := watch(t, d2)
	if st := statusOf(t, d2, "keep.1"); st.State != task.Running {
		t.Fatalf("after close and reopen: %+v", st)
	}
	if err := d2.Kill(t.Context(), "keep.1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Still this test process's child, so the exit status is known.
	st := waitState(t, w2, "keep.1", task.Killed)
	if st.ExitCode != 128+15 {
		t.Errorf("exit code %d (%s), want 143", st.ExitCode, st.Message)
	}
}

func TestPidReuseGuard(t *testing.T) {
	boot, err := bootID()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		startDelta uint64
		boot       string
		want       task.State
	}{
		{"same process", 0, boot, task.Running},
		{"pid reused", 1, boot, task.Failed},
		{"other boot", 0, "not-this-boot", task.Failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A live process in its own session stands for the task.
			cmd := exec.Command("sleep", "30")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			t.Cleanup(func() {
				syscall.Kill(pid, syscall.SIGKILL)
				var ws syscall.WaitStatus
				syscall.Wait4(pid, &ws, 0, nil)
			})
			ps, err := readStat(pid)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			id := "reuse.1"
			if err := os.Mkdir(filepath.Join(dir, id), 0o755); err != nil {
				t.Fatal(err)
			}
			rec := record{
				ID: id, AppID: "/reuse", Pid: pid, StartTime: ps.start + tc.startDelta, BootID: tc.boot,
				State: task.Running, StagedAt: time.Now(), StartedAt: time.Now(),
			}
			if err := writeRecord(filepath.Join(dir, id), rec); err != nil {
				t.Fatal(err)
			}
			d := openDriver(t, dir)
			if st := statusOf(t, d, id); st.State != tc.want {
				t.Fatalf("state %s (%s), want %s", st.State, st.Message, tc.want)
			}
			if tc.want == task.Running {
				return
			}
			if err := d.Kill(t.Context(), id, time.Second); err != nil {
				t.Fatal(err)
			}
			if !alive(pid, ps.start) {
				t.Error("Kill of an ended task signalled the process that now has its pid")
			}
			if err := d.Remove(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	d, dir := newDriver(t)
	launch(t, d, task.Spec{ID: "rm.1", AppID: "/rm", Cmd: "exec sleep 30"})
	if err := d.Remove(t.Context(), "rm.1"); !errors.Is(err, ErrTaskActive) {
		t.Fatalf("remove of a running task: %v", err)
	}
	if err := d.Kill(t.Context(), "rm.1", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(t.Context(), "rm.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "rm.1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("task directory left: %v", err)
	}
	if all, _ := d.List(t.Context()); len(all) != 0 {
		t.Errorf("listed after remove: %+v", all)
	}
	if err := d.Remove(t.Context(), "rm.1"); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if err := d.Kill(t.Context(), "rm.1", time.Second); !errors.Is(err, ErrUnknownTask) {
		t.Errorf("kill of a removed task: %v", err)
	}
	// The id is free again.
	launch(t, d, task.Spec{ID: "rm.1", AppID: "/rm", Cmd: "exec sleep 30"})
}

func TestStats(t *testing.T) {
	d, _ := newDriver(t)
	id := "stats.1"
	// A busy shell and two sleeps: three processes in the session.
	launch(t, d, task.Spec{ID: id, AppID: "/stats", Cmd: "sleep 30 & sleep 30 & while :; do :; done"})
	var u Usage
	eventually(t, "CPU time shows", func() bool {
		var err error
		u, err = d.Stats(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		return u.CPUSeconds > 0
	})
	if u.MemBytes < 3*100*1024 {
		t.Errorf("resident memory %d B for three processes", u.MemBytes)
	}
	if err := d.Kill(t.Context(), id, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stats(t.Context(), id); !errors.Is(err, ErrTaskEnded) {
		t.Errorf("stats of a killed task: %v", err)
	}
}

func TestLimits(t *testing.T) {
	d, _ := newDriver(t)
	enforced, why := d.LimitsEnforced()
	st := launch(t, d, task.Spec{ID: "lim.1", AppID: "/lim", Cmd: "exec sleep 30", CPUs: 0.5, MemMB: 32})
	t.Logf("enforced=%v %q; status message %q", enforced, why, st.Message)
	if enforced {
		if !strings.Contains(st.Message, `cpu.max "50000 100000"`) || !strings.Contains(st.Message, "memory.max 33554432") {
			t.Errorf("message %q", st.Message)
		}
	} else if why == "" || st.Message != why {
		t.Errorf("limits not enforced, reason %q, message %q", why, st.Message)
	}
	for _, tc := range []struct {
		cpus, mem float64
		cpu, memo string
	}{{0, 0, "max 100000", "max"}, {1.5, 128, "150000 100000", "134217728"}, {0.001, 1, "1000 100000", "1048576"}} {
		if got := cpuMax(tc.cpus); got != tc.cpu {
			t.Errorf("cpuMax(%v) = %q, want %q", tc.cpus, got, tc.cpu)
		}
		if got := memoryMax(tc.mem); got != tc.memo {
			t.Errorf("memoryMax(%v) = %q, want %q", tc.mem, got, tc.memo)
		}
	}
}

func TestReadStatOddCommandName(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "a) b (c")
	if err := os.Symlink("/bin/sleep", prog); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prog, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	st, err := readStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.pgrp != syscall.Getpgrp() || st.start == 0 {
		t.Errorf("parsed %+v", st)
	}
}

// TestCrashWhileLaunching: garrison died after starting the process and
// before recording its pid; the next driver finds the process by its sandbox.
func TestCrashWhileLaunching(t *testing.T) {
	boot, err := bootID()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	staged := func(id string) record {
		if err := os.MkdirAll(filepath.Join(dir, id, "sandbox"), 0o755); err != nil {
			t.Fatal(err)
		}
		rec := record{ID: id, AppID: "/orphan", BootID: boot, State: task.Staging, StagedAt: time.Now().UTC()}
		if err := writeRecord(filepath.Join(dir, id), rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	staged("orphan.found")
	staged("orphan.none")
	if err := os.Mkdir(filepath.Join(dir, "broken.1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.1", stateFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "30")
	cmd.Env = []string{"A=1", sandboxEnv + "=" + filepath.Join(dir, "orphan.found", "sandbox"), "Z=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		cmd.Wait()
	})

	d := openDriver(t, dir)
	if st := statusOf(t, d, "orphan.found"); st.State != task.Running {
		t.Errorf("orphan not adopted: %+v", st)
	}
	if got, _ := d.Pid("orphan.found"); got != pid {
		t.Errorf("adopted pid %d, want %d", got, pid)
	}
	if st := statusOf(t, d, "orphan.none"); st.State != task.Failed {
		t.Errorf("staged task without a process: %+v", st)
	}
	if st := statusOf(t, d, "broken.1"); st.State != task.Failed || !strings.Contains(st.Message, "unreadable state") {
		t.Errorf("unreadable state file: %+v", st)
	}
	if err := d.Kill(t.Context(), "orphan.found", time.Second); err != nil {
		t.Fatal(err)
	}
	if processRunning(pid) {
		t.Error("orphan still runs after Kill")
	}
}

// Issue 10: `user` was accepted and dropped; as root the driver now runs
// the task as that user, with its sandbox owned by it.
func TestTaskRunsAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if err := CheckUser("nobody"); err == nil {
			t.Fatal("CheckUser(nobody) accepted by a driver that is not root")
		}
		return // the refusal is what a non-root garrison can do
	}
	dir := t.TempDir()
	for _, p := range []string{filepath.Dir(dir), dir} { // nobody must reach its sandbox
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := openDriver(t, dir)
	w := watch(t, d)
	spec := task.Spec{ID: "user.1", AppID: "/user", Cmd: "id -u; id -g; touch in-home", User: "nobody"}
	launch(t, d, spec)
	if st := waitState(t, w, spec.ID, task.Finished); st.ExitCode != 0 {
		t.Fatalf("task as nobody: %+v; stderr %s", st, readFile(t, filepath.Join(d.Sandbox(spec.ID), "stderr")))
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(d.Sandbox(spec.ID), "stdout")); got != u.Uid+"\n"+u.Gid+"\n" {
		t.Errorf("task ran as %q, want uid %s gid %s", got, u.Uid, u.Gid)
	}
	if err := CheckUser("no-such-user-here"); err == nil {
		t.Error("CheckUser accepted a user that does not exist")
	}
	if _, err := d.Launch(t.Context(), task.Spec{ID: "user.2", AppID: "/user", Cmd: "true", User: "no-such-user-here"}); err == nil {
		t.Error("launched a task as a user that does not exist")
	}
}

// A task's log files stay bounded while it writes; the tail still ends
// with its last lines.
func TestLogIsTrimmedAndTailed(t *testing.T) {
	d, _ := newDriver(t, WithLogLimit(4096, 20*time.Millisecond))
	// 2,000 lines of about 10 bytes: far past the limit.
	launch(t, d, task.Spec{ID: "logs.1", Cmd: `i=1; while [ $i -le 2000 ]; do echo "line $i"; i=$((i+1)); done; echo oops >&2; exec sleep 60`})
	stdout := filepath.Join(d.Sandbox("logs.1"), "stdout")
	want := "line 1997\nline 1998\nline 1999\nline 2000\noops\n"
	poll.Until(t, deadline, "the whole output, trimmed", func() (bool, string) {
		b, err := d.Log(t.Context(), "logs.1", 4)
		fi, serr := os.Stat(stdout)
		old, oerr := os.Stat(stdout + ".1")
		ok := err == nil && string(b) == want && serr == nil && oerr == nil && fi.Size() <= 4096 && old.Size() <= 4096
		return ok, fmt.Sprintf("log %q (%v), stdout %v (%v), stdout.1 %v", b, err, fi, serr, oerr)
	})
	if _, err := d.Log(t.Context(), "nosuch.1", 4); !errors.Is(err, ErrUnknownTask) {
		t.Errorf("log of an unknown task: %v, want ErrUnknownTask", err)
	}
}
