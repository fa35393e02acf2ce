package nomadtest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
)

// Nomad does not check that a dynamic port it hands a task is free on the
// host: two agents on one machine giving out the same range give the same
// port to two tasks now and then, and the second task fails to bind (in a
// first deployment Nomad then leaves it down). Each agent therefore takes
// a window of the range of its own, held by a lock file for its life, so
// that agents started by concurrent test binaries do not overlap.
const portWindow = 100

// portLease is a window of dynamic ports an agent holds.
type portLease struct {
	min, max int
	f        *os.File // its lock; nil when none was free
}

// leasePorts takes a free window, in a random order; when every window is
// taken it gives the whole range, unlocked.
func leasePorts() portLease {
	n := (maxDynamicPort + 1 - minDynamicPort) / portWindow
	for _, i := range rand.Perm(n) {
		lo := minDynamicPort + i*portWindow
		path := filepath.Join(os.TempDir(), fmt.Sprintf("garrison-nomadtest-ports-%d.lock", lo))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		return portLease{min: lo, max: lo + portWindow - 1, f: f}
	}
	return portLease{min: minDynamicPort, max: maxDynamicPort}
}

// release gives the window back (closing the file drops the lock; so does
// the process's end).
func (l portLease) release() {
	if l.f != nil {
		l.f.Close()
	}
}
