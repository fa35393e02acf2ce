// Package testport hands tests TCP ports for servers that bind them later
// (etcd, Prometheus, a container, a task), without the race of probing a
// port free, closing it and binding it again: someone else could take it in
// between. Two things make that impossible here:
//
//   - the ports come from a range below the kernel's ephemeral range (the
//     one port-0 binds and outgoing connections draw from), so no process
//     takes them by chance;
//   - each port is reserved, across the test processes of every package
//     running at once, by an exclusive lock on a file named after it, held
//     until the test ends (the kernel drops it if the process dies).
//
// A port is also checked to be bindable before it is handed out, in case
// something outside garrison's tests listens on it.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// The range ports are taken from. It must stay below the ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range, 32768 by default) and apart from
// the task-port ranges tests give the scheduler (11000-19999).
const (
	Low  = 20000
	High = 29999
)

// Dir holds the lock files, shared by every test process on the machine.
var Dir = filepath.Join(os.TempDir(), "garrison-testports")

// Take reserves n ports for the rest of the test.
func Take(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		ports = append(ports, Consecutive(t, 1))
	}
	return ports
}

// Consecutive reserves k consecutive ports for the rest of the test and
// returns the first (an embedded etcd listening on a port takes the next
// one for its peers).
func Consecutive(t testing.TB, k int) int {
	t.Helper()
	checkEphemeral(t)
	if err := os.MkdirAll(Dir, 0o777); err != nil {
		t.Fatalf("testport: %v", err)
	}
	span := High - Low + 1 - k
	start := rand.IntN(span)
	for i := range span {
		base := Low + (start+i)%span
		locks, ok := reserve(base, k)
		if !ok {
			continue
		}
		t.Cleanup(func() {
			for _, f := range locks {
				f.Close()
			}
		})
		return base
	}
	t.Fatalf("testport: no %d consecutive free ports in %d-%d", k, Low, High)
	return 0
}

// reserve locks and probes base..base+k-1; it keeps the locks only when all
// of them were free.
func reserve(base, k int) ([]*os.File, bool) {
	var locks []*os.File
	release := func() {
		for _, f := range locks {
			f.Close()
		}
	}
	for p := base; p < base+k; p++ {
		f, err := os.OpenFile(filepath.Join(Dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			release()
			return nil, false
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			release()
			return nil, false
		}
		locks = append(locks, f)
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			release()
			return nil, false
		}
		l.Close()
	}
	return locks, true
}

// checkEphemeral fails the test when the machine's ephemeral range overlaps
// Low-High: ports there could be taken by anyone.
func checkEphemeral(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return // not Linux: nothing to check against
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		t.Fatalf("testport: ip_local_port_range %q: %v", b, err)
	}
	if lo <= High && hi >= Low {
		t.Fatalf("testport: the ephemeral port range %d-%d overlaps %d-%d; raise net.ipv4.ip_local_port_range", lo, hi, Low, High)
	}
}
