package taskstats_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrisonhq/garrison/internal/driverstats"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/scout/taskstats"
	"github.com/garrisonhq/garrison/signalman/process"
	"github.com/garrisonhq/garrison/signalman/task"
)

// helperEnv makes the test binary, run as a task, the server holdServer is.
const helperEnv = "TASKSTATS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "hold" {
		holdServer()
		return
	}
	os.Exit(m.Run())
}

// holdServer listens on 127.0.0.1, prints "port=N" on stdout, and accepts
// connections forever, holding each one open and never reading from it, so
// data sent to it stays in its receive queue.
func holdServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "hold server:", err)
		os.Exit(1)
	}
	fmt.Printf("port=%d\n", ln.Addr().(*net.TCPAddr).Port)
	var held []net.Conn
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "hold server: accept:", err)
			os.Exit(1)
		}
		held = append(held, c)
	}
}

// launchHoldServer starts the hold server as a process task, a child of the
// task's shell (not exec'd: the sockets belong to a descendant of the task's
// main process), and returns its port.
func launchHoldServer(t *testing.T, d *process.Driver, app, id string) int {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spec := task.Spec{ID: id, AppID: app, Cmd: shellQuote(bin) + "; exit $?", Env: map[string]string{helperEnv: "hold"}}
	if _, err := d.Launch(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	var port int
	stdout := filepath.Join(d.Sandbox(id), "stdout")
	poll.Until(t, deadline, "port of "+id, func() (bool, string) {
		b, err := os.ReadFile(stdout)
		if err != nil {
			return false, err.Error()
		}
		line, ok := bytes.CutPrefix(b, []byte("port="))
		if !ok || !bytes.HasSuffix(line, []byte("\n")) {
			return false, fmt.Sprintf("stdout %q", b)
		}
		port, err = strconv.Atoi(string(bytes.TrimSpace(line)))
		return err == nil, fmt.Sprint(err)
	})
	return port
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// dial opens n connections to 127.0.0.1:port, closed with the test.
func dial(t *testing.T, port, n int) []net.Conn {
	t.Helper()
	out := make([]net.Conn, n)
	for i := range out {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), deadline)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out[i] = c
	}
	return out
}

// tcpFigures is one task's TCP series: state or direction -> value, and
// whether any was exported.
type tcpFigures struct {
	conns, queue map[string]float64
}

func (f tcpFigures) exported() bool { return len(f.conns) > 0 || len(f.queue) > 0 }

func (f tcpFigures) String() string {
	return fmt.Sprintf("connections %v, queue bytes %v", f.conns, f.queue)
}

// tcpOf picks one task's TCP series out of s (labels come sorted by name).
func tcpOf(s series, app, id string) tcpFigures {
	f := tcpFigures{conns: map[string]float64{}, queue: map[string]float64{}}
	for _, st := range []string{taskstats.StateEstablished, taskstats.StateListen, taskstats.StateCloseWait, taskstats.StateOther} {
		if v, ok := s["garrison_task_tcp_connections"]["app="+app+" state="+st+" task="+id+" "]; ok {
			f.conns[st] = v
		}
	}
	for _, dir := range []string{"rx", "tx"} {
		if v, ok := s["garrison_task_tcp_queue_bytes"]["app="+app+" direction="+dir+" task="+id+" "]; ok {
			f.queue[dir] = v
		}
	}
	return f
}

// want says whether f has every series, exactly these connection counts
// (zero for other), and an rx queue rx accepts.
func (f tcpFigures) want(established, listen, closeWait float64, rx func(float64) bool) bool {
	return len(f.conns) == 4 && len(f.queue) == 2 &&
		f.conns[taskstats.StateEstablished] == established && f.conns[taskstats.StateListen] == listen &&
		f.conns[taskstats.StateCloseWait] == closeWait && f.conns[taskstats.StateOther] == 0 &&
		rx(f.queue["rx"])
}

func TestTCPFiguresBySocketOwnership(t *testing.T) {
	d := newProcessDriver(t)
	portA := launchHoldServer(t, d, "/net/a", "a.1")
	portB := launchHoldServer(t, d, "/net/b", "b.1")

	// The task's main process is the shell; the sockets are its child's.
	pid, err := d.Pid("a.1")
	if err != nil {
		t.Fatal(err)
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || strings.Contains(exe, "taskstats") {
		t.Fatalf("task a.1's main process %d is %q (%v), want the shell", pid, exe, err)
	}

	const n, m, k = 5, 2, 1000
	connsA := dial(t, portA, n)
	dial(t, portB, m)
	payload := bytes.Repeat([]byte("x"), k)
	for _, c := range connsA {
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(taskstats.New(nil, []taskstats.Tasks{driverstats.Adapt[process.Usage](d)}, taskstats.WithTimeout(deadline)))
	eq := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

	// a.1 holds its listener and the server side of our n connections,
	// with k unread bytes in each; b.1 its listener and m connections. The
	// client sides are this test's, so they count for neither task.
	var a, b tcpFigures
	poll.Until(t, deadline, "a.1 and b.1's TCP figures", func() (bool, string) {
		s := gather(t, reg)
		a, b = tcpOf(s, "/net/a", "a.1"), tcpOf(s, "/net/b", "b.1")
		return a.want(n, 1, 0, eq(n*k)) && b.want(m, 1, 0, eq(0)),
			fmt.Sprintf("a.1 %v; b.1 %v; errors %v", a, b, s["garrison_task_stats_errors_total"])
	})
	if a.queue["tx"] != 0 || b.queue["tx"] != 0 {
		t.Errorf("tx queues a.1 %v, b.1 %v: the tasks never wrote", a.queue["tx"], b.queue["tx"])
	}

	// We close one connection: a.1 never reads, so never sees the end, and
	// its side waits in CLOSE_WAIT (the FIN adds a sequence number to its
	// receive queue, hence >=).
	if err := connsA[0].Close(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, deadline, "a.1's closed connection in close_wait", func() (bool, string) {
		s := gather(t, reg)
		a, b = tcpOf(s, "/net/a", "a.1"), tcpOf(s, "/net/b", "b.1")
		return a.want(n-1, 1, 1, func(v float64) bool { return v >= n*k }) && b.want(m, 1, 0, eq(0)),
			fmt.Sprintf("a.1 %v; b.1 %v", a, b)
	})
	if errs := gather(t, reg)["garrison_task_stats_errors_total"]; errs["stage=network "] != 0 {
		t.Errorf("network errors: %v", errs)
	}

	// A Tasks that does not know pids exports CPU and memory, no TCP.
	noPid := prometheus.NewRegistry()
	noPid.MustRegister(taskstats.New(nil, []taskstats.Tasks{withoutPid{driverstats.Adapt[process.Usage](d)}}))
	s := gather(t, noPid)
	if _, ok := s["garrison_task_cpu_seconds_total"][key("/net/a", "a.1")]; !ok {
		t.Fatalf("no cpu series without pids: %v", s["garrison_task_cpu_seconds_total"])
	}
	if f := tcpOf(s, "/net/a", "a.1"); f.exported() {
		t.Errorf("TCP figures exported without a pid: %v", f)
	}
}

// withoutPid hides the adapted driver's Pid: only List and Stats remain.
type withoutPid struct{ taskstats.Tasks }

func TestProcessLimit(t *testing.T) {
	d := newProcessDriver(t)
	// Three processes: the shell and two children.
	if _, err := d.Launch(t.Context(), task.Spec{ID: "tree.1", AppID: "/tree", Cmd: "sleep 60 & sleep 60 & wait"}); err != nil {
		t.Fatal(err)
	}
	tasks := []taskstats.Tasks{driverstats.Adapt[process.Usage](d)}
	two := prometheus.NewRegistry()
	two.MustRegister(taskstats.New(nil, tasks, taskstats.WithProcessLimit(2), taskstats.WithTimeout(deadline)))
	three := prometheus.NewRegistry()
	three.MustRegister(taskstats.New(nil, tasks, taskstats.WithProcessLimit(3), taskstats.WithTimeout(deadline)))

	// Once both children run, a limit of 2 refuses the task rather than
	// export figures that miss a process, and counts an error.
	poll.Until(t, deadline, "a walk over the limit", func() (bool, string) {
		s := gather(t, two)
		f := tcpOf(s, "/tree", "tree.1")
		_, cpu := s["garrison_task_cpu_seconds_total"][key("/tree", "tree.1")]
		return cpu && !f.exported() && s["garrison_task_stats_errors_total"]["stage=network "] > 0,
			fmt.Sprintf("cpu %v, tcp %v, errors %v", cpu, f, s["garrison_task_stats_errors_total"])
	})
	s := gather(t, three)
	if f := tcpOf(s, "/tree", "tree.1"); !f.want(0, 0, 0, func(v float64) bool { return v == 0 }) {
		t.Errorf("with room for its 3 processes: %v, want every figure 0 (sleep holds no socket)", f)
	}
	if errs := s["garrison_task_stats_errors_total"]; errs["stage=network "] != 0 {
		t.Errorf("errors with room for the tree: %v", errs)
	}
}
