package process

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// clockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat. The
// kernel reports 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is the part of /proc/<pid>/stat the driver reads.
type procStat struct {
	state   byte // R, S, D, Z, X, ...
	pgrp    int
	session int
	utime   uint64 // clock ticks
	stime   uint64 // clock ticks
	start   uint64 // field 22: clock ticks after boot
}

// readStat reads /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so the fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 || len(f[0]) == 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	var st procStat
	st.state = f[0][0]
	nums := []struct {
		dst   any
		field int
	}{{&st.pgrp, 5}, {&st.session, 6}, {&st.utime, 14}, {&st.stime, 15}, {&st.start, 22}}
	for _, n := range nums {
		s := f[n.field-3]
		switch p := n.dst.(type) {
		case *int:
			v, err := strconv.Atoi(s)
			if err != nil {
				return procStat{}, fmt.Errorf("/proc/%d/stat field %d: %w", pid, n.field, err)
			}
			*p = v
		case *uint64:
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return procStat{}, fmt.Errorf("/proc/%d/stat field %d: %w", pid, n.field, err)
			}
			*p = v
		}
	}
	return st, nil
}

// alive says whether pid is still the process that started at start (pid
// reuse safe) and has not exited: a zombie counts as gone.
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	if err != nil || st.start != start {
		return false
	}
	return st.state != 'Z' && st.state != 'X'
}

// rssBytes reads VmRSS from /proc/<pid>/status; 0 for kernel threads and
// zombies, which have none.
func rssBytes(pid int) (uint64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status VmRSS: %w", pid, err)
		}
		return kb * 1024, nil
	}
	return 0, sc.Err()
}

// sessionUsage sums CPU time and resident memory over every process in the
// session led by sid (a task and everything it started, unless a descendant
// called setsid itself).
func sessionUsage(ctx context.Context, sid int) (Usage, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return Usage{}, err
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.session != sid {
			continue // gone meanwhile, or another session
		}
		u.CPUSeconds += float64(st.utime+st.stime) / clockTicks
		rss, err := rssBytes(pid)
		if err == nil {
			u.MemBytes += rss
		}
	}
	return u, nil
}

// bootID identifies this boot of the machine: start times in /proc count
// from boot, so a pid and start time recorded before a reboot mean nothing.
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

const (
	sysPidfdOpen   = 434 // the same number on every Linux architecture
	pidfdNonblock  = syscall.O_NONBLOCK
	pollIn         = 0x1
	aLongTimeAgoNs = 1
)

// openPidfd returns a pollable pidfd for pid: it becomes readable when the
// process exits, whoever its parent is. The caller checks afterwards that pid
// is still the expected process (pid reuse), unless pid is its unreaped child.
func openPidfd(pid int) (*os.File, error) {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), pidfdNonblock, 0)
	if errno != 0 {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, errno)
	}
	return os.NewFile(fd, "pidfd:"+strconv.Itoa(pid)), nil
}

// pidfdExited polls fd without blocking: readable means the process exited.
func pidfdExited(fd uintptr) bool {
	pfd := struct {
		fd      int32
		events  int16
		revents int16
	}{fd: int32(fd), events: pollIn}
	var ts syscall.Timespec // zero: do not block
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return errno == 0 && n == 1 && pfd.revents&pollIn != 0
}

// waitPidfd blocks until the process behind f exits (true) or ctx ends
// (false). err is set when f cannot be waited on through the poller, and
// the caller falls back to polling /proc.
func waitPidfd(ctx context.Context, f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() {
		// Wakes the wait below; fails harmlessly when f is not pollable.
		_ = f.SetReadDeadline(time.Unix(0, aLongTimeAgoNs))
	})
	defer stop()
	err = rc.Read(pidfdExited)
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, nil
	default:
		return false, err
	}
}

// exitCode turns a wait status into a shell-style code: the exit status, or
// 128 + signal for a process killed by a signal.
func exitCode(ws syscall.WaitStatus) (int, string) {
	switch {
	case ws.Exited():
		return ws.ExitStatus(), fmt.Sprintf("exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		return 128 + int(ws.Signal()), fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return -1, fmt.Sprintf("ended with wait status %#x", uint32(ws))
}

// reap collects the exit of the process that started at start, if it is
// still a zombie, after killing what is left of its session: the zombie
// holds its pid, so the session id cannot belong to anyone else yet. It
// returns the exit code when the zombie was this process's child, and
// known=false when someone else (init) reaps or has reaped it.
func reap(pid int, start uint64) (code int, msg string, known bool) {
	st, err := readStat(pid)
	if err != nil || st.start != start || st.state != 'Z' {
		return 0, "", false
	}
	if st.session == pid {
		// Ignore ESRCH: nothing is left of the session.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	var ws syscall.WaitStatus
	for {
		wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || wpid != pid {
			return 0, "", false // ECHILD: not ours
		}
		code, msg := exitCode(ws)
		return code, msg, true
	}
}

// signalSession sends sig to the task's process group (its session leader's
// group, as started with setsid) if pid is still the task's process, and to
// the leader itself should it have left that group.
func signalSession(pid int, start uint64, sig syscall.Signal) error {
	if pid <= 0 {
		return nil
	}
	st, err := readStat(pid)
	if err != nil || st.start != start || st.session != pid {
		return nil // gone: nothing to signal
	}
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to group %d: %w", sig, pid, err)
	}
	if st.pgrp != pid {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal %v to %d: %w", sig, pid, err)
		}
	}
	return nil
}
