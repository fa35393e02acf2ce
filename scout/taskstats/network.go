package taskstats

// Per-task network figures under host networking.
//
// Why there are no byte counters. Every task runs with host networking: a
// process task never leaves the host's network namespace, and a container
// started with NetworkMode host joins it. Byte counters live on network
// interfaces, and an interface belongs to a namespace, not to a process:
// /proc/<pid>/net/dev of any task, and Docker's per-container network
// stats, are the host's interfaces, so they report every task's traffic
// (and the host's own) at once. Nor can the bytes be rebuilt from sockets:
// the kernel's per-socket totals (tcp_info's bytes_received, bytes_acked)
// disappear with the socket, so a sum over the sockets open now goes down
// whenever a connection closes and never sees a connection that opened and
// closed between two scrapes: it is not a counter, and rate() over it would
// be wrong. A true per-task byte counter needs the kernel to count every
// packet by its owner (an eBPF cgroup_skb program, or netfilter rules
// matching the task's cgroup), which garrison does not install.
//
// What is truthful. A socket belongs to whoever holds a descriptor for it,
// and that ownership is visible without any help from the task: each fd in
// /proc/<pid>/fd that reads "socket:[N]" names a socket inode N, and the
// host's TCP tables (/proc/<pid>/net/tcp and tcp6, the task's namespace,
// i.e. the host's) list every TCP socket with its inode, state and queues.
// So for each running task whose main pid is known (PidReader), the
// collector walks that process and its descendants, collects the socket
// inodes they hold, reads the TCP tables once per namespace per collection,
// and exports what those sockets are now:
//
//	garrison_task_tcp_connections{app,task,state}       gauge: the task's TCP sockets by state
//	garrison_task_tcp_queue_bytes{app,task,direction}   gauge: bytes queued in them
//
// state is established, listen, close_wait (the peer closed, the task has
// not: a growing count is a descriptor leak) or other (connecting, closing).
// There is no time_wait: a socket in TIME_WAIT has no descriptor left, so it
// belongs to no task. Neither are connections still in a listener's accept
// queue counted: the task has not accepted them yet, so it holds no
// descriptor for them. direction rx is data received that the task has not
// read yet, tx data the task wrote that the peer has not acknowledged yet;
// both are summed over the task's connections, not its listeners (for a
// listening socket the kernel reports the accept backlog there, a count of
// connections, not bytes). A rising rx queue means the task cannot keep up
// with what it is sent; a rising tx queue, that its peers or the network
// cannot keep up with what it sends.
//
// Limits: a process that left the task's tree (a daemon that double-forked
// to init) is not the task's any more, and the walk stops at a bound number
// of processes per task (WithProcessLimit): a task with more exports no
// network figures rather than partial ones, and counts a network error.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
)

// PidReader is implemented by a Tasks that knows the process id of a
// running task's main process: the process driver's session leader, a
// container's State.Pid. The pid must be the host's (garrison reads
// /proc/<pid>). A Tasks without it, or a task whose pid is 0 (not started),
// exports no network figures. internal/driverstats.Adapt implements it for drivers with a Pid
// method, with or without a context.
type PidReader interface {
	Pid(ctx context.Context, taskID string) (int, error)
}

// DefaultProcessLimit is how many processes of one task's tree are walked
// unless WithProcessLimit says otherwise.
const DefaultProcessLimit = 256

// WithProcessLimit sets the most processes of one task (its main process
// and descendants) whose sockets are read (default 256). A task with more
// exports no network figures, and counts a network error, rather than
// figures that miss some of its sockets.
func WithProcessLimit(n int) Option { return func(c *Collector) { c.procLimit = n } }

// TCPUsage is what a task's TCP sockets are now.
type TCPUsage struct {
	// Sockets by state; Other is every state but these three (connecting,
	// closing). TIME_WAIT sockets belong to no task: they have no owner.
	Established, Listen, CloseWait, Other int
	// RxQueueBytes is data received and not yet read by the task,
	// TxQueueBytes data it sent that is not yet acknowledged, summed over
	// its connections (listening sockets left out).
	RxQueueBytes, TxQueueBytes uint64
}

// Values of the state label of garrison_task_tcp_connections.
const (
	StateEstablished = "established"
	StateListen      = "listen"
	StateCloseWait   = "close_wait"
	StateOther       = "other"
)

// TCP states as /proc/net/tcp numbers them (include/net/tcp_states.h).
const (
	tcpEstablished = 0x01
	tcpCloseWait   = 0x08
	tcpListen      = 0x0A
)

func (u *TCPUsage) add(state byte, tx, rx uint64) {
	switch state {
	case tcpEstablished:
		u.Established++
	case tcpListen:
		u.Listen++
		return // its "queues" are the accept backlog, not bytes
	case tcpCloseWait:
		u.CloseWait++
	default:
		u.Other++
	}
	u.TxQueueBytes += tx
	u.RxQueueBytes += rx
}

// taskSockets is what the walk of one task's process tree found.
type taskSockets struct {
	pid    int    // the task's main process
	netns  string // its network namespace, as /proc/<pid>/ns/net reads
	inodes []uint64
}

// procWalker walks task process trees for one collection. Its methods are
// safe for concurrent use.
type procWalker struct {
	limit int
	// childFiles: the kernel has /proc/<pid>/task/<tid>/children
	// (CONFIG_PROC_CHILDREN); without it a scan of /proc/*/stat, done once
	// per collection, gives each process's children.
	childFiles bool

	scanOnce sync.Once
	kids     map[int][]int
	scanErr  error
}

func newProcWalker(limit int) *procWalker {
	_, err := os.Stat("/proc/thread-self/children")
	return &procWalker{limit: limit, childFiles: err == nil}
}

// walk reads pid's network namespace and the socket inodes held by pid and
// its descendants.
func (w *procWalker) walk(ctx context.Context, pid int) (taskSockets, error) {
	ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return taskSockets{}, fmt.Errorf("network namespace of process %d: %w", pid, err)
	}
	ts := taskSockets{pid: pid, netns: ns}
	seen := map[int]bool{pid: true}
	queue := []int{pid}
	for i := 0; i < len(queue); i++ {
		if err := ctx.Err(); err != nil {
			return taskSockets{}, fmt.Errorf("sockets of process %d: %w", pid, err)
		}
		p := queue[i]
		inodes, err := socketInodes(ctx, p)
		if err == nil {
			var kids []int
			kids, err = w.children(p)
			for _, k := range kids {
				if seen[k] {
					continue
				}
				if len(seen) >= w.limit {
					return taskSockets{}, fmt.Errorf("process %d has more than %d processes in its tree: sockets not read (see WithProcessLimit)", pid, w.limit)
				}
				seen[k] = true
				queue = append(queue, k)
			}
		}
		switch {
		case err == nil:
			ts.inodes = append(ts.inodes, inodes...)
		case i > 0 && errors.Is(err, fs.ErrNotExist):
			// A descendant that exited meanwhile holds nothing any more.
		default:
			return taskSockets{}, fmt.Errorf("sockets of process %d (task process %d): %w", p, pid, err)
		}
	}
	return ts, nil
}

// socketInodes returns the inodes of the sockets pid holds descriptors for.
func socketInodes(ctx context.Context, pid int) ([]uint64, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []uint64
	for {
		names, rerr := f.Readdirnames(1024)
		for _, n := range names {
			link, err := os.Readlink(dir + n)
			if errors.Is(err, fs.ErrNotExist) {
				continue // closed since the listing
			}
			if err != nil {
				return nil, err
			}
			if ino, ok := socketInode(link); ok {
				out = append(out, ino)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return out, nil
		}
		if rerr != nil {
			return nil, rerr
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// socketInode reads the inode out of an fd link "socket:[12345]".
func socketInode(link string) (uint64, bool) {
	const prefix = "socket:["
	if len(link) <= len(prefix)+1 || link[:len(prefix)] != prefix || link[len(link)-1] != ']' {
		return 0, false
	}
	return parseUint([]byte(link[len(prefix):len(link)-1]), 10)
}

// children returns pid's child processes.
func (w *procWalker) children(pid int) ([]int, error) {
	if !w.childFiles {
		return w.childrenByScan(pid)
	}
	return childrenFromFiles(pid)
}

// childrenFromFiles reads the children of every thread of pid (a child
// belongs to the thread that forked it).
func childrenFromFiles(pid int) ([]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	tids, err := readDirNames(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, tid := range tids {
		b, err := os.ReadFile(dir + tid + "/children")
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread ended
		}
		if err != nil {
			return nil, err
		}
		for _, f := range fields(b, len(b)) {
			if k, ok := parseUint(f, 10); ok && k > 0 {
				out = append(out, int(k))
			}
		}
	}
	return out, nil
}

// childrenByScan looks pid's children up in a parent map built, once per
// collection, from every /proc/<pid>/stat.
func (w *procWalker) childrenByScan(pid int) ([]int, error) {
	w.scanOnce.Do(func() { w.kids, w.scanErr = scanParents() })
	if w.scanErr != nil {
		return nil, w.scanErr
	}
	return w.kids[pid], nil
}

// scanParents maps each process of /proc to its children.
func scanParents() (map[int][]int, error) {
	names, err := readDirNames("/proc")
	if err != nil {
		return nil, err
	}
	kids := map[int][]int{}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		ppid, err := readPpid(pid)
		if err != nil {
			continue // gone meanwhile
		}
		kids[ppid] = append(kids[ppid], pid)
	}
	return kids, nil
}

// readPpid reads field 4 of /proc/<pid>/stat, counted after the command
// name, which may hold spaces and parentheses.
func readPpid(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			f := fields(b[i+1:], 2) // state, ppid
			if len(f) == 2 {
				if ppid, ok := parseUint(f[1], 10); ok {
					return int(ppid), nil
				}
			}
			break
		}
	}
	return 0, fmt.Errorf("/proc/%d/stat: no parent pid", pid)
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// readTCPTables reads the TCP tables (IPv4 and IPv6) of pid's network
// namespace and returns the figures of the sockets in want, by want's value
// (an index into the collected tasks).
func readTCPTables(ctx context.Context, pid int, want map[uint64]int) (map[int]*TCPUsage, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/net/"
	got := map[int]*TCPUsage{}
	if err := readTCPTable(ctx, dir+"tcp", want, got); err != nil {
		return nil, err
	}
	err := readTCPTable(ctx, dir+"tcp6", want, got)
	if errors.Is(err, fs.ErrNotExist) {
		// No tcp6 table: IPv6 is off, unless the process is gone.
		if _, serr := os.Stat(dir + "tcp"); serr == nil {
			err = nil
		}
	}
	if err != nil {
		return nil, err
	}
	return got, nil
}

// readTCPTable adds the sockets of one /proc/net/tcp-format table that want
// names to got.
//
//	sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//	 0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 ...
func readTCPTable(ctx context.Context, path string, want map[uint64]int, got map[int]*TCPUsage) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("read %s: %w", path, err)
			}
		}
		line, err := r.ReadSlice('\n')
		if n > 0 && len(line) > 0 { // line 0 is the header
			if ino, st, tx, rx, ok := parseTCPLine(line); ok {
				if i, mine := want[ino]; mine {
					u := got[i]
					if u == nil {
						u = &TCPUsage{}
						got[i] = u
					}
					u.add(st, tx, rx)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
}

// parseTCPLine reads the inode, state and queues of one table line. ok is
// false for a line without an owner (inode 0: TIME_WAIT, request and
// orphaned sockets) or one it cannot read.
func parseTCPLine(line []byte) (inode uint64, state byte, tx, rx uint64, ok bool) {
	f := fields(line, 10)
	if len(f) < 10 {
		return 0, 0, 0, 0, false
	}
	inode, ok = parseUint(f[9], 10)
	if !ok || inode == 0 {
		return 0, 0, 0, 0, false
	}
	st, ok1 := parseUint(f[3], 16)
	var txb, rxb []byte
	for i, c := range f[4] {
		if c == ':' {
			txb, rxb = f[4][:i], f[4][i+1:]
			break
		}
	}
	tx, ok2 := parseUint(txb, 16)
	rx, ok3 := parseUint(rxb, 16)
	if !ok1 || !ok2 || !ok3 || st > 0xff {
		return 0, 0, 0, 0, false
	}
	return inode, byte(st), tx, rx, true
}

// fields splits b at spaces, tabs and newlines into at most max fields,
// without copying.
func fields(b []byte, max int) [][]byte {
	var out [][]byte
	for i := 0; i < len(b) && len(out) < max; {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n') {
			i++
		}
		j := i
		for j < len(b) && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' {
			j++
		}
		if j > i {
			out = append(out, b[i:j])
		}
		i = j
	}
	return out
}

// parseUint reads an unsigned number in base 10 or 16 without allocating.
func parseUint(b []byte, base uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		v = v*base + d
	}
	return v, true
}

// walkTask finds the sockets of one task through pr; ok is false, with no
// error, when the task's pid is not known (0).
func (c *Collector) walkTask(ctx context.Context, w *procWalker, pr PidReader, taskID string) (taskSockets, bool, error) {
	pid, err := pr.Pid(ctx, taskID)
	if err != nil {
		return taskSockets{}, false, fmt.Errorf("pid of task %s: %w", taskID, err)
	}
	if pid <= 0 {
		return taskSockets{}, false, nil
	}
	ts, err := w.walk(ctx, pid)
	if err != nil {
		return taskSockets{}, false, fmt.Errorf("task %s: %w", taskID, err)
	}
	return ts, true, nil
}

// attributeTCP reads the TCP tables once per network namespace (with host
// networking: once) and sets out[i].TCP for every task whose sockets were
// walked (socks[i] non-nil). Tasks whose table cannot be read get none and
// count a network error.
func (c *Collector) attributeTCP(ctx context.Context, socks []*taskSockets, out []TaskUsage) {
	var order []string
	groups := map[string][]int{}
	for i, s := range socks {
		if s == nil {
			continue
		}
		if _, ok := groups[s.netns]; !ok {
			order = append(order, s.netns)
		}
		groups[s.netns] = append(groups[s.netns], i)
	}
	for _, ns := range order {
		idx := groups[ns]
		want := map[uint64]int{}
		for _, i := range idx {
			for _, ino := range socks[i].inodes {
				if _, dup := want[ino]; !dup { // a socket shared by two tasks counts for the first
					want[ino] = i
				}
			}
		}
		// Any of the namespace's processes shows its table; the first may
		// have ended since its walk.
		var got map[int]*TCPUsage
		var err error
		for _, i := range idx {
			if got, err = readTCPTables(ctx, socks[i].pid, want); err == nil {
				break
			}
		}
		if err != nil {
			c.errs.WithLabelValues(StageNetwork).Add(float64(len(idx)))
			c.logger.Debug("taskstats: TCP tables", "netns", ns, "tasks", len(idx), "error", err)
			continue
		}
		for _, i := range idx {
			u := TCPUsage{}
			if g := got[i]; g != nil {
				u = *g
			}
			out[i].TCP = &u
		}
	}
}
