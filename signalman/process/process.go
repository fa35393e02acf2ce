// Package process is signalman's driver for apps without a container image:
// each task is a local process (its cmd run by /bin/sh -c, or its args run
// directly) with Marathon's task environment, in a sandbox directory that
// holds its stdout and stderr, as Mesos does.
//
// Each task runs in its own session (setsid), so it outlives a crash or a
// restart of garrison, and a signal to the task reaches everything it
// started. A small state file per task records the pid and the process start
// time, so that the next Driver on the same directory adopts the tasks that
// still run (a pid alone might have been reused) and reports the others as
// ended.
//
// Linux only: it reads /proc and uses pidfds (Linux 5.3) to learn promptly
// when a process ends, falling back to polling /proc.
package process

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/garrisonhq/garrison/signalman/task"
)

var (
	// ErrUnknownTask: the driver knows no task with this id.
	ErrUnknownTask = errors.New("unknown task")
	// ErrTaskExists: a task with this id is known already (running, or
	// ended and not yet removed).
	ErrTaskExists = errors.New("task exists")
	// ErrTaskActive: the task has not ended, so it cannot be removed.
	ErrTaskActive = errors.New("task has not ended")
	// ErrTaskEnded: the task's process is not running.
	ErrTaskEnded = errors.New("task not running")
	// ErrClosed: the driver was closed.
	ErrClosed = errors.New("process driver closed")
)

// sandboxEnv names the sandbox in every task's environment, as Mesos does;
// it also identifies a task's process when its pid was never recorded.
const sandboxEnv = "MESOS_SANDBOX"

// defaultPath is the PATH a task gets unless its env sets one.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Option configures a Driver.
type Option func(*config)

type config struct {
	pollInterval time.Duration
	cgroupParent string
	defaultGrace time.Duration
	logger       *slog.Logger
	noPidfd      bool // tests: exercise the /proc polling path
	fetchLimit   int64
	fileFetch    bool
	logLimit     int64         // a log file longer than this is trimmed
	logCheck     time.Duration // how often log files are measured
}

// WithPollInterval sets how often /proc is polled for a task's process when
// the kernel cannot notify the driver of its end (no pidfd). Default 250ms.
func WithPollInterval(d time.Duration) Option { return func(c *config) { c.pollInterval = d } }

// WithCgroupParent sets the cgroup v2 directory under which each task gets a
// child cgroup with cpu.max and memory.max; "" turns limits off. Default
// /sys/fs/cgroup/garrison. When it cannot be used, tasks run without limits
// and LimitsEnforced says why.
func WithCgroupParent(dir string) Option { return func(c *config) { c.cgroupParent = dir } }

// WithDefaultGrace sets the time between SIGTERM and SIGKILL when neither
// Kill nor the task's spec gives one. Default 3s, as Mesos.
func WithDefaultGrace(d time.Duration) Option { return func(c *config) { c.defaultGrace = d } }

// WithLogger sets where the driver reports errors that no caller receives,
// such as a failed state write after a task ended. Default: discarded.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Usage is what a task uses right now, summed over its session.
type Usage struct {
	CPUSeconds float64 // user + system time since start
	MemBytes   uint64  // resident set size
}

// Driver runs tasks as local processes. Its methods are safe for concurrent
// use. Close stops the driver, not the tasks.
type Driver struct {
	dir    string
	cfg    config
	cg     *cgroups
	noCg   string // why limits are not enforced, "" when they are
	boot   string
	lock   *os.File
	ctx    context.Context // ends at Close; every goroutine watches it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	tasks  map[string]*entry
	subs   map[*subscriber]struct{}
	closed bool
}

// entry is one task. rec is guarded by Driver.mu; done closes when the task
// reaches a terminal state.
type entry struct {
	rec  record
	done chan struct{}
}

type subscriber struct {
	queue []task.Status // guarded by Driver.mu
	wake  chan struct{} // 1 slot
}

var validID = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$`)

// New opens the driver's state directory dir, creating it if needed, and
// adopts the tasks recorded there whose processes still run; the others are
// reported ended. Only one Driver may use a directory at a time.
func New(dir string, opts ...Option) (*Driver, error) {
	cfg := config{pollInterval: 250 * time.Millisecond, cgroupParent: "/sys/fs/cgroup/garrison", defaultGrace: 3 * time.Second, fetchLimit: DefaultFetchLimit,
		logLimit: DefaultLogLimit, logCheck: 10 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.pollInterval <= 0 {
		return nil, fmt.Errorf("process driver: poll interval %v must be positive", cfg.pollInterval)
	}
	if cfg.logLimit <= 0 || cfg.logCheck <= 0 {
		return nil, fmt.Errorf("process driver: log limit %d and check interval %v must be positive", cfg.logLimit, cfg.logCheck)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(dir) // the sandbox is the task's working directory
	if err != nil {
		return nil, fmt.Errorf("process driver: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("process driver: %w", err)
	}
	boot, err := bootID()
	if err != nil {
		return nil, fmt.Errorf("process driver: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("process driver: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("process driver: state directory %s is in use by another driver: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Driver{
		dir: dir, cfg: cfg, boot: boot, lock: lock, ctx: ctx, cancel: cancel,
		tasks: map[string]*entry{}, subs: map[*subscriber]struct{}{},
	}
	d.cg, d.noCg = setupCgroups(cfg.cgroupParent)
	if err := d.adopt(); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	d.wg.Add(1)
	go d.trimLogs()
	return d, nil
}

// adopt loads every state file: a task whose process still runs gets a
// monitor, any other unfinished one is settled now.
func (d *Driver) adopt() error {
	dirs, err := os.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("process driver: %w", err)
	}
	for _, de := range dirs {
		if !de.IsDir() || !validID.MatchString(de.Name()) {
			continue
		}
		rec, err := readRecord(filepath.Join(d.dir, de.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // a launch that stopped before its first state write
		}
		if err == nil && rec.ID != de.Name() {
			err = fmt.Errorf("state names task %q", rec.ID)
		}
		if err != nil {
			// Keep it listed, ended, so that it can be seen and removed.
			rec = record{ID: de.Name(), State: task.Failed, Message: "unreadable state: " + err.Error()}
		}
		e := &entry{rec: rec, done: make(chan struct{})}
		d.tasks[rec.ID] = e
		if rec.State.Terminal() {
			close(e.done)
			continue
		}
		if rec.Pid == 0 && rec.BootID == d.boot {
			if err := d.findOrphan(e); err != nil {
				return fmt.Errorf("process driver: adopt task %s: %w", rec.ID, err)
			}
			rec = e.rec
		}
		switch {
		case rec.Pid == 0:
			d.finish(e, 0, "garrison stopped before the process started", false)
		case rec.BootID != d.boot:
			d.finish(e, 0, "the machine restarted since the task started", false)
		case !alive(rec.Pid, rec.StartTime):
			code, msg, known := reap(rec.Pid, rec.StartTime)
			if !known {
				msg = fmt.Sprintf("process %d ended while no garrison watched it; exit status unknown", rec.Pid)
			}
			d.finish(e, code, msg, known)
		default:
			d.mu.Lock()
			d.startMonitor(e)
			d.mu.Unlock()
		}
	}
	return nil
}

// findOrphan looks for the process of a task whose launch was interrupted
// between starting the process and recording its pid: a session leader whose
// environment names the task's sandbox. Found, it is recorded as running.
func (d *Driver) findOrphan(e *entry) error {
	want := []byte("\x00" + sandboxEnv + "=" + d.Sandbox(e.rec.ID) + "\x00")
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.session != pid || st.state == 'Z' {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", p.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), want) {
			continue
		}
		e.rec.Pid, e.rec.StartTime, e.rec.State = pid, st.start, task.Running
		e.rec.StartedAt = e.rec.StagedAt
		return writeRecord(d.taskDir(e.rec.ID), e.rec)
	}
	return nil
}

func (d *Driver) taskDir(id string) string { return filepath.Join(d.dir, id) }

// Sandbox is the task's working directory, holding its stdout and stderr.
func (d *Driver) Sandbox(taskID string) string { return filepath.Join(d.taskDir(taskID), "sandbox") }

// LimitsEnforced says whether tasks run with their cpus and mem as cgroup
// limits, and if not, why.
func (d *Driver) LimitsEnforced() (bool, string) { return d.cg != nil, d.noCg }

// Launch starts the task and returns once its process runs. Cmd runs with
// /bin/sh -c; without Cmd, Args[0] runs with Args[1:]. The environment is
// spec.Environ() over a minimal PATH and HOME (the sandbox).
func (d *Driver) Launch(ctx context.Context, spec task.Spec) (task.Status, error) {
	if err := d.checkSpec(spec); err != nil {
		return task.Status{}, err
	}
	if err := ctx.Err(); err != nil {
		return task.Status{}, fmt.Errorf("launch task %s: %w", spec.ID, err)
	}
	rec := record{
		ID: spec.ID, AppID: spec.AppID, Version: spec.Version, Host: spec.Host,
		CPUs: spec.CPUs, MemMB: spec.MemMB, KillGraceMs: spec.KillGrace.Milliseconds(),
		BootID: d.boot, StagedAt: time.Now().UTC(), State: task.Staging, Limits: d.noCg,
	}
	for _, p := range spec.Ports {
		rec.Ports = append(rec.Ports, portRecord(p))
	}
	e := &entry{rec: rec, done: make(chan struct{})}
	d.mu.Lock()
	switch {
	case d.closed:
		d.mu.Unlock()
		return task.Status{}, fmt.Errorf("launch task %s: %w", spec.ID, ErrClosed)
	case d.tasks[spec.ID] != nil:
		d.mu.Unlock()
		return task.Status{}, fmt.Errorf("launch task %s: %w", spec.ID, ErrTaskExists)
	}
	d.tasks[spec.ID] = e // reserve the id
	d.mu.Unlock()

	rec, err := d.start(ctx, spec, rec)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		delete(d.tasks, spec.ID)
		close(e.done) // a Kill that came meanwhile has nothing to wait for
		return task.Status{}, err
	}
	if e.rec.KillRequested { // Kill came while the process was starting
		rec.KillRequested, rec.State = true, task.Killing
		if err := signalSession(rec.Pid, rec.StartTime, syscall.SIGTERM); err != nil {
			d.cfg.logger.Error("kill task while launching", "task", spec.ID, "err", err)
		}
	}
	e.rec = rec
	if !d.closed {
		d.startMonitor(e)
	} // else the next Driver adopts it
	st := rec.status()
	d.publish(st)
	return st, nil
}

func (d *Driver) checkSpec(spec task.Spec) error {
	switch {
	case !validID.MatchString(spec.ID):
		return fmt.Errorf("launch task %q: id must be 1-200 of [A-Za-z0-9_.-], not starting with '.' or '-'", spec.ID)
	case spec.Image != "":
		return fmt.Errorf("launch task %s: the process driver runs no container image (%s)", spec.ID, spec.Image)
	case spec.Cmd == "" && len(spec.Args) == 0:
		return fmt.Errorf("launch task %s: neither cmd nor args", spec.ID)
	case spec.Cmd != "" && len(spec.Args) > 0:
		return fmt.Errorf("launch task %s: both cmd and args", spec.ID)
	}
	return nil
}

// start creates the sandbox, starts the process and records it. On error
// nothing is left running and the task's directory is gone.
func (d *Driver) start(ctx context.Context, spec task.Spec, rec record) (_ record, err error) {
	tdir, sandbox := d.taskDir(spec.ID), d.Sandbox(spec.ID)
	cred, err := credential(spec.User)
	if err != nil {
		return rec, fmt.Errorf("launch task %s: %w", spec.ID, err)
	}
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		return rec, fmt.Errorf("launch task %s: %w", spec.ID, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tdir)
		}
	}()
	if cred != nil {
		// The sandbox is the task's home and working directory.
		if err := os.Chown(sandbox, int(cred.Uid), int(cred.Gid)); err != nil {
			return rec, fmt.Errorf("launch task %s: sandbox for user %s: %w", spec.ID, spec.User, err)
		}
	}
	if err := d.fetch(ctx, sandbox, spec.Fetch, cred); err != nil {
		return rec, fmt.Errorf("launch task %s: %w", spec.ID, err)
	}
	// Not synced: it is there for a garrison that crashes while the process
	// starts (see findOrphan), and the Running record below is synced.
	if err := writeRecordSync(tdir, rec, false); err != nil {
		return rec, fmt.Errorf("launch task %s: %w", spec.ID, err)
	}
	stdout, stderr, err := openLogs(sandbox)
	if err != nil {
		return rec, fmt.Errorf("launch task %s: %w", spec.ID, err)
	}
	defer stdout.Close() // the child has its own copies
	defer stderr.Close()
	var cgroupFD *os.File
	if d.cg != nil {
		dir, fd, limits, err := d.cg.create(spec.ID, spec.CPUs, spec.MemMB)
		if err != nil {
			rec.Limits = "limits not enforced: " + err.Error()
		} else {
			defer fd.Close()
			rec.Cgroup, rec.Limits, cgroupFD = dir, limits, fd
		}
	}
	cmd := command(spec, sandbox, stdout, stderr, cgroupFD, cred)
	err = cmd.Start()
	if err != nil && cgroupFD != nil {
		// clone3 into a cgroup needs Linux 5.7: run without limits instead.
		if rerr := removeCgroup(rec.Cgroup); rerr != nil {
			d.cfg.logger.Error("remove cgroup of task", "task", spec.ID, "err", rerr)
		}
		rec.Cgroup, rec.Limits = "", "limits not enforced: "+err.Error()
		cmd = command(spec, sandbox, stdout, stderr, nil, cred)
		err = cmd.Start()
	}
	if err != nil {
		return rec, fmt.Errorf("launch task %s: %w", spec.ID, err)
	}
	pid := cmd.Process.Pid
	// Until it is reaped, the child keeps its pid: no reuse race here.
	ps, serr := readStat(pid)
	if serr == nil {
		rec.Pid, rec.StartTime = pid, ps.start
		rec.StartedAt, rec.State = time.Now().UTC(), task.Running
		serr = writeRecord(tdir, rec)
	}
	if serr != nil {
		// Without a record the process would be an orphan nobody adopts.
		if kerr := syscall.Kill(-pid, syscall.SIGKILL); kerr != nil {
			d.cfg.logger.Error("kill unrecorded task", "task", spec.ID, "pid", pid, "err", kerr)
		}
		if _, werr := cmd.Process.Wait(); werr != nil {
			d.cfg.logger.Error("reap unrecorded task", "task", spec.ID, "pid", pid, "err", werr)
		}
		if rerr := removeCgroup(rec.Cgroup); rerr != nil {
			d.cfg.logger.Error("remove cgroup of task", "task", spec.ID, "err", rerr)
		}
		return rec, fmt.Errorf("launch task %s: %w", spec.ID, serr)
	}
	// The monitor reaps the child with wait4 (it may outlive this Driver's
	// goroutines), so os.Process lets go of it.
	if err := cmd.Process.Release(); err != nil {
		return rec, fmt.Errorf("launch task %s: %w", spec.ID, err)
	}
	return rec, nil
}

func openLogs(sandbox string) (stdout, stderr *os.File, err error) {
	const flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	stdout, err = os.OpenFile(filepath.Join(sandbox, "stdout"), flags, 0o644)
	if err != nil {
		return nil, nil, err
	}
	stderr, err = os.OpenFile(filepath.Join(sandbox, "stderr"), flags, 0o644)
	if err != nil {
		stdout.Close()
		return nil, nil, err
	}
	return stdout, stderr, nil
}

// command builds the task's process: its own session, the sandbox as
// working directory, and the task environment.
func command(spec task.Spec, sandbox string, stdout, stderr, cgroup *os.File, cred *syscall.Credential) *exec.Cmd {
	var cmd *exec.Cmd
	if spec.Cmd != "" {
		cmd = exec.Command("/bin/sh", "-c", spec.Cmd)
	} else {
		cmd = exec.Command(spec.Args[0], spec.Args[1:]...)
	}
	cmd.Dir = sandbox
	// exec.Cmd keeps the last of duplicate keys, so the task's env wins.
	// MESOS_SANDBOX comes last, so that findOrphan can rely on it.
	cmd.Env = append([]string{"PATH=" + defaultPath, "HOME=" + sandbox}, spec.Environ()...)
	cmd.Env = append(cmd.Env, sandboxEnv+"="+sandbox)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: cred}
	if cgroup != nil {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cgroup.Fd())
	}
	return cmd
}

// startMonitor starts the goroutine that waits for the task's process to end.
// Called with d.mu held and d not closed.
func (d *Driver) startMonitor(e *entry) {
	d.wg.Add(1)
	go d.monitor(e, e.rec.Pid, e.rec.StartTime)
}

// monitor waits for the process to end, then settles the task. It returns
// early, leaving the task running, when the driver closes.
func (d *Driver) monitor(e *entry, pid int, start uint64) {
	defer d.wg.Done()
	if !d.waitGone(pid, start) {
		return
	}
	code, msg, known := reap(pid, start)
	if !known {
		msg = "process ended; exit status unknown (not a child of this garrison)"
	}
	d.finish(e, code, msg, known)
}

// waitGone blocks until pid (started at start) has exited: true, or until
// the driver closes: false.
func (d *Driver) waitGone(pid int, start uint64) bool {
	if !d.cfg.noPidfd {
		if f, err := openPidfd(pid); err == nil {
			defer f.Close()
			// Opened after the check would race with pid reuse; checked after
			// opening, the pidfd is known to be our process (or it is gone).
			if !alive(pid, start) {
				return true
			}
			gone, err := waitPidfd(d.ctx, f)
			if err == nil {
				return gone
			}
			d.cfg.logger.Debug("pidfd not pollable, polling /proc", "pid", pid, "err", err)
		}
	}
	t := time.NewTicker(d.cfg.pollInterval)
	defer t.Stop()
	for alive(pid, start) {
		select {
		case <-d.ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// finish moves the task to its terminal state, once: Killed when garrison
// asked for it, else Finished for exit status 0 and Failed otherwise.
func (d *Driver) finish(e *entry, code int, msg string, known bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.rec.State.Terminal() {
		return
	}
	rec := e.rec
	switch {
	case rec.KillRequested:
		rec.State = task.Killed
	case known && code == 0:
		rec.State = task.Finished
	default:
		rec.State = task.Failed
	}
	rec.ExitCode, rec.Message, rec.FinishedAt = code, msg, time.Now().UTC()
	if err := writeRecord(d.taskDir(rec.ID), rec); err != nil {
		// The next Driver finds the process gone and reports it ended.
		d.cfg.logger.Error("record end of task", "task", rec.ID, "err", err)
	}
	if err := removeCgroup(rec.Cgroup); err != nil {
		d.cfg.logger.Error("remove cgroup of task", "task", rec.ID, "err", err)
	}
	e.rec = rec
	close(e.done)
	d.publish(rec.status())
}

// Kill stops the task: SIGTERM to its process group, SIGKILL after grace
// (grace <= 0: the spec's KillGrace, else the driver default). It returns
// once the process is gone. Killing an ended task does nothing.
func (d *Driver) Kill(ctx context.Context, taskID string, grace time.Duration) error {
	d.mu.Lock()
	e := d.tasks[taskID]
	switch {
	case e == nil:
		d.mu.Unlock()
		return fmt.Errorf("kill task %s: %w", taskID, ErrUnknownTask)
	case e.rec.State.Terminal():
		d.mu.Unlock()
		return nil
	case d.closed:
		d.mu.Unlock()
		return fmt.Errorf("kill task %s: %w", taskID, ErrClosed)
	}
	if grace <= 0 {
		grace = cmp.Or(time.Duration(e.rec.KillGraceMs)*time.Millisecond, d.cfg.defaultGrace)
	}
	if !e.rec.KillRequested {
		e.rec.KillRequested = true
		if e.rec.State != task.Staging {
			e.rec.State = task.Killing
			if err := writeRecord(d.taskDir(taskID), e.rec); err != nil {
				d.mu.Unlock()
				return fmt.Errorf("kill task %s: %w", taskID, err)
			}
			d.publish(e.rec.status())
		}
	}
	pid, start := e.rec.Pid, e.rec.StartTime
	d.mu.Unlock()

	if err := signalSession(pid, start, syscall.SIGTERM); err != nil {
		return fmt.Errorf("kill task %s: %w", taskID, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	if ended, err := d.waitDone(ctx, e, timer.C); ended || err != nil {
		return wrapKill(taskID, err)
	}
	d.mu.Lock()
	pid, start = e.rec.Pid, e.rec.StartTime // set by now if it was launching
	d.mu.Unlock()
	if err := signalSession(pid, start, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill task %s: %w", taskID, err)
	}
	_, err := d.waitDone(ctx, e, nil)
	return wrapKill(taskID, err)
}

// waitDone waits for the task to end (true), for timeout (false), for ctx
// or for the driver to close (error).
func (d *Driver) waitDone(ctx context.Context, e *entry, timeout <-chan time.Time) (bool, error) {
	select {
	case <-e.done:
		return true, nil
	case <-timeout:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	case <-d.ctx.Done():
		return false, ErrClosed
	}
}

func wrapKill(taskID string, err error) error {
	if err != nil {
		return fmt.Errorf("kill task %s: %w", taskID, err)
	}
	return nil
}

// List returns every task the driver knows, by id: running, or ended and
// not yet removed.
func (d *Driver) List(ctx context.Context) ([]task.Status, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]task.Status, 0, len(d.tasks))
	for _, id := range slices.Sorted(maps.Keys(d.tasks)) {
		out = append(out, d.tasks[id].rec.status())
	}
	return out, nil
}

// Pid returns the process id of the task's session leader (0 before it
// started).
func (d *Driver) Pid(taskID string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.tasks[taskID]
	if e == nil {
		return 0, fmt.Errorf("task %s: %w", taskID, ErrUnknownTask)
	}
	return e.rec.Pid, nil
}

// Watch streams the changes of task state from now on: launched, killing,
// and ended (also when a process ends behind garrison's back). Call List
// after Watch to know the state before. The channel closes when ctx ends or
// the driver closes; the caller must keep reading it until then.
func (d *Driver) Watch(ctx context.Context) (<-chan task.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("watch tasks: %w", ErrClosed)
	}
	s := &subscriber{wake: make(chan struct{}, 1)}
	d.subs[s] = struct{}{}
	out := make(chan task.Status)
	d.wg.Add(1)
	go d.forward(ctx, s, out)
	return out, nil
}

// publish queues st for every watcher. Called with d.mu held.
func (d *Driver) publish(st task.Status) {
	for s := range d.subs {
		s.queue = append(s.queue, st)
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (d *Driver) forward(ctx context.Context, s *subscriber, out chan<- task.Status) {
	defer d.wg.Done()
	defer close(out)
	defer func() {
		d.mu.Lock()
		delete(d.subs, s)
		d.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.ctx.Done():
			return
		case <-s.wake:
		}
		d.mu.Lock()
		batch := s.queue
		s.queue = nil
		d.mu.Unlock()
		for _, st := range batch {
			select {
			case out <- st:
			case <-ctx.Done():
				return
			case <-d.ctx.Done():
				return
			}
		}
	}
}

// Remove deletes an ended task's sandbox and state. Removing an unknown task
// does nothing.
func (d *Driver) Remove(ctx context.Context, taskID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove task %s: %w", taskID, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.tasks[taskID]
	if e == nil {
		return nil
	}
	if !e.rec.State.Terminal() {
		return fmt.Errorf("remove task %s: %w", taskID, ErrTaskActive)
	}
	if err := os.RemoveAll(d.taskDir(taskID)); err != nil {
		return fmt.Errorf("remove task %s: %w", taskID, err)
	}
	delete(d.tasks, taskID)
	return nil
}

// Stats returns the task's current CPU time and resident memory, summed over
// every process of its session.
func (d *Driver) Stats(ctx context.Context, taskID string) (Usage, error) {
	d.mu.Lock()
	e := d.tasks[taskID]
	var rec record
	if e != nil {
		rec = e.rec
	}
	d.mu.Unlock()
	switch {
	case e == nil:
		return Usage{}, fmt.Errorf("stats of task %s: %w", taskID, ErrUnknownTask)
	case !alive(rec.Pid, rec.StartTime):
		return Usage{}, fmt.Errorf("stats of task %s: %w", taskID, ErrTaskEnded)
	}
	u, err := sessionUsage(ctx, rec.Pid)
	if err != nil {
		return Usage{}, fmt.Errorf("stats of task %s: %w", taskID, err)
	}
	return u, nil
}

// Close stops watching the tasks and waits for the driver's goroutines. The
// tasks keep running; the next Driver on the directory adopts them. Watch
// channels close.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	err := syscall.Flock(int(d.lock.Fd()), syscall.LOCK_UN)
	if cerr := d.lock.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close process driver: %w", err)
	}
	return nil
}
