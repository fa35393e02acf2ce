package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// pidFileName is the file in the data directory that a running garrison
// holds an exclusive flock on, with its pid inside.
const pidFileName = "garrison.pid"

// dataDirLock is a held data directory; release it when garrison stops.
type dataDirLock struct{ f *os.File }

// lockDataDir creates dir when missing and takes it for this process, so a
// second garrison on the same directory fails at once instead of hanging
// inside etcd's own file lock. The lock is a flock, which the kernel drops
// when the process dies: a kill -9 leaves no stale lock behind.
func lockDataDir(dir string) (*dataDirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s is unusable: %w", dir, err)
	}
	path := filepath.Join(dir, pidFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory %s is unusable: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			data, _ := os.ReadFile(path) // best effort: the pid only helps the message
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); perr == nil {
				return nil, fmt.Errorf("data dir %s is in use (by pid %d)", dir, pid)
			}
			return nil, fmt.Errorf("data dir %s is in use (by another process)", dir)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &dataDirLock{f: f}, nil
}

// release drops the lock. The pid file stays: removing it would race with
// a next garrison that has just opened it.
func (l *dataDirLock) release() { l.f.Close() }
