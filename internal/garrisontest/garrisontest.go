// Package garrisontest runs the garrison binary as a test's child process:
// its stderr captured, its API address read from its own log line, and on
// cleanup it and every task it started gone, so that a test that kills
// garrison (its tasks outlive it, by design) leaves no process holding a
// port for the tests after it.
package garrisontest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a running `garrison ...`.
type Proc struct {
	Cmd *exec.Cmd

	stderr  Buffer
	exited  chan struct{}
	err     error
	dataDir string
}

// Start runs bin with args. On the test's cleanup garrison is killed and,
// when args name a --data-dir, so is every process task it started there.
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Cmd: exec.Command(bin, args...), exited: make(chan struct{}), dataDir: flagValue(args, "--data-dir")}
	p.Cmd.Stderr = &p.stderr
	p.Cmd.Env = os.Environ()
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.Cmd.Process.Kill()
		<-p.exited
		if p.dataDir != "" {
			KillTasksUnder(p.dataDir)
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(bin), p.stderr.String())
		}
	})
	return p
}

// flagValue is the value of flag in args (--flag v or --flag=v), "" if
// absent; the last one wins, as it does for garrison's flags.
func flagValue(args []string, flag string) string {
	value := ""
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			value = args[i+1]
		} else if v, ok := strings.CutPrefix(a, flag+"="); ok {
			value = v
		}
	}
	return value
}

// Stderr is what garrison wrote to stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// Exited is closed once the process has ended.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is the process's exit error; valid once Exited is closed.
func (p *Proc) Err() error { return p.err }

// WaitExit waits for the process to end and returns its exit error; the
// test fails if it is still running after within.
func (p *Proc) WaitExit(t testing.TB, within time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(within):
		t.Fatalf("garrison still running after %s; stderr:\n%s", within, p.stderr.String())
		return nil
	}
}

// Stop sends SIGTERM and waits for the process to end, killing it after
// within: a clean stop, as Ctrl-C gives.
func (p *Proc) Stop(within time.Duration) error {
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(within):
		p.Cmd.Process.Kill()
		<-p.exited
	}
	return p.err
}

var upLine = regexp.MustCompile(`msg="garrison is up" addr=(\S+)`)

// Addr waits for `garrison up` to log that it is up and returns the
// address it serves on: the test can pass --addr 127.0.0.1:0 and needs no
// port reserved in advance.
func (p *Proc) Addr(t testing.TB, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if m := upLine.FindStringSubmatch(p.stderr.String()); m != nil {
			return m[1]
		}
		select {
		case <-p.exited:
			t.Fatalf("garrison exited before it was up: %v\n%s", p.err, p.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("garrison not up within %s; stderr:\n%s", within, p.stderr.String())
		}
	}
}

// sandboxEnv is the variable the process driver names each task's
// sandbox with (as Mesos does); the sandbox lies under the data dir.
const sandboxEnv = "MESOS_SANDBOX="

// KillTasksUnder kills, with their process groups, the processes whose
// sandbox lies under dir: the process tasks of a garrison whose data dir is
// dir. A garrison that is killed leaves them running on purpose (the next
// one adopts them); a test that ends must not.
func KillTasksUnder(dir string) {
	pids, _ := TasksUnder(dir)
	for _, pid := range pids {
		// Tasks lead their own session (setsid): the group takes their
		// children along.
		if syscall.Kill(-pid, syscall.SIGKILL) != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TasksUnder lists the pids of the processes KillTasksUnder would kill.
func TasksUnder(dir string) ([]int, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("tasks under %s: %w", dir, err)
	}
	want := []byte(sandboxEnv + abs + string(filepath.Separator))
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("tasks under %s: %w", dir, err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil { // gone meanwhile, or not ours to read
			continue
		}
		for _, v := range bytes.Split(env, []byte{0}) {
			if bytes.HasPrefix(v, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// Buffer is a bytes.Buffer safe for a writer goroutine (exec's stderr
// copier, a step's log) and the test reading it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
