package process

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cgroupPeriod is the cpu.max period in microseconds (the kernel default).
const cgroupPeriod = 100000

// cgroups places tasks in child cgroups of parent (cgroup v2) with cpu.max
// and memory.max set from the task's cpus and mem.
type cgroups struct {
	parent string
}

// setupCgroups prepares parent (e.g. /sys/fs/cgroup/garrison) so that its
// children get the cpu and memory controllers. It returns nil and the reason
// when limits cannot be enforced: cgroup v2 missing, controllers not
// available, or the hierarchy not writable (an unprivileged garrison).
func setupCgroups(parent string) (*cgroups, string) {
	if parent == "" {
		return nil, "limits not enforced: cgroups disabled"
	}
	root := filepath.Dir(parent)
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Sprintf("limits not enforced: no cgroup v2 at %s", root)
	}
	if ctrl := strings.Fields(string(b)); !slices.Contains(ctrl, "cpu") || !slices.Contains(ctrl, "memory") {
		return nil, fmt.Sprintf("limits not enforced: cgroup %s lacks the cpu and memory controllers", root)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Sprintf("limits not enforced: %v", err)
	}
	for _, dir := range []string{root, parent} {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu +memory"), 0o644); err != nil {
			return nil, fmt.Sprintf("limits not enforced: %v", err)
		}
	}
	return &cgroups{parent: parent}, ""
}

// cpuMax is the cpu.max line for cpus (0: unlimited).
func cpuMax(cpus float64) string {
	if cpus <= 0 {
		return "max " + strconv.Itoa(cgroupPeriod)
	}
	quota := max(int64(cpus*cgroupPeriod), 1000)
	return strconv.FormatInt(quota, 10) + " " + strconv.Itoa(cgroupPeriod)
}

// memoryMax is the memory.max value for memMB (0: unlimited).
func memoryMax(memMB float64) string {
	if memMB <= 0 {
		return "max"
	}
	return strconv.FormatInt(int64(memMB*1024*1024), 10)
}

// create makes the task's cgroup and returns its directory, opened, for
// clone3's CLONE_INTO_CGROUP, and a description of the limits.
func (c *cgroups) create(taskID string, cpus, memMB float64) (dir string, fd *os.File, limits string, err error) {
	dir = filepath.Join(c.parent, taskID)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", nil, "", fmt.Errorf("cgroup for task %s: %w", taskID, err)
	}
	files := [][2]string{{"cpu.max", cpuMax(cpus)}, {"memory.max", memoryMax(memMB)}}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f[0]), []byte(f[1]), 0o644); err != nil {
			os.Remove(dir)
			return "", nil, "", fmt.Errorf("cgroup for task %s: %w", taskID, err)
		}
	}
	fd, err = os.Open(dir)
	if err != nil {
		os.Remove(dir)
		return "", nil, "", fmt.Errorf("cgroup for task %s: %w", taskID, err)
	}
	return dir, fd, fmt.Sprintf("limits enforced by cgroup %s: cpu.max %q, memory.max %s", dir, files[0][1], files[1][1]), nil
}

// removeCgroup removes an empty task cgroup; an absent one is fine.
func removeCgroup(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
