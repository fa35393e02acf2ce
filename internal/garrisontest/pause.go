package garrisontest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/poll"
)

// Pause stops the process with SIGSTOP and returns once every one of its
// threads has stopped. kill(2) returns as soon as the signal is queued:
// the process stops when one of its threads takes the signal, and until
// then the others go on running. A request sent right after the signal
// was still answered by the "stopped" process in 2-5% of tries here (more
// under load): an HA test that sends writes to a paused leader must wait
// for this.
func (p *Proc) Pause(t testing.TB, within time.Duration) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP pid %d: %v", p.Cmd.Process.Pid, err)
	}
	poll.Until(t, within, fmt.Sprintf("every thread of pid %d stopped", p.Cmd.Process.Pid), func() (bool, string) {
		select {
		case <-p.exited:
			t.Fatalf("pid %d exited instead of stopping: %v; stderr:\n%s", p.Cmd.Process.Pid, p.err, p.stderr.String())
		default:
		}
		running, err := runningThreads(p.Cmd.Process.Pid)
		if err != nil {
			return false, err.Error()
		}
		return len(running) == 0, fmt.Sprintf("threads not stopped yet: %v", running)
	})
}

// Resume sends SIGCONT to a paused process.
func (p *Proc) Resume(t testing.TB) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT pid %d: %v", p.Cmd.Process.Pid, err)
	}
}

// runningThreads lists the threads of pid that are neither stopped nor
// exiting, as "tid:state".
func runningThreads(pid int) ([]string, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tids, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("threads of pid %d: %w", pid, err)
	}
	var running []string
	for _, tid := range tids {
		stat, err := os.ReadFile(filepath.Join(dir, tid.Name(), "stat"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		// "tid (comm) S ...": comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 || i+2 >= len(stat) {
			return nil, fmt.Errorf("thread %s of pid %d: unreadable stat %q", tid.Name(), pid, stat)
		}
		switch state := stat[i+2]; state {
		case 'T', 't', 'Z', 'X': // stopped, traced, exiting
		default:
			running = append(running, tid.Name()+":"+string(state))
		}
	}
	return running, nil
}

// Listens reports whether the process holds the socket listening on addr
// (a TCP host:port, IPv4): which process serves an address, whatever a
// supervisor restarted meanwhile.
func (p *Proc) Listens(addr string) (bool, error) {
	inode, err := listenInode(addr)
	if err != nil {
		return false, err
	}
	fdDir := filepath.Join("/proc", strconv.Itoa(p.Cmd.Process.Pid), "fd")
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false, fmt.Errorf("open files of pid %d: %w", p.Cmd.Process.Pid, err)
	}
	want := "socket:[" + inode + "]"
	for _, fd := range fds {
		if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && link == want {
			return true, nil
		}
	}
	return false, nil
}

// listenInode finds the inode of the socket listening on addr in
// /proc/net/tcp; an error when none listens there.
func listenInode(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	ip, n := net.ParseIP(host).To4(), 0
	if n, err = strconv.Atoi(port); ip == nil || err != nil {
		return "", fmt.Errorf("%q is not an IPv4 host:port", addr)
	}
	// The kernel prints the address as the in-memory (network order) u32
	// in host order, the port as a number.
	local := fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip), n)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) >= 10 && fields[1] == local && fields[3] == "0A" { // TCP_LISTEN
			return fields[9], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read /proc/net/tcp: %w", err)
	}
	return "", fmt.Errorf("nothing listens on %s", addr)
}
