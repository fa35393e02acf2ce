package taskstats

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/poll"
)

// On kernels without /proc/<pid>/task/<tid>/children the walk falls back to
// a scan of /proc/*/stat: both must see the same children, and the fallback
// walk must find the sockets a process holds.
func TestChildrenByScanMatchesChildrenFiles(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "sleep 60 & sleep 60 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Kill the sleeps too: they are the shell's children, not ours.
	t.Cleanup(func() {
		kids, _ := childrenFromFiles(cmd.Process.Pid)
		for _, k := range kids {
			if p, err := os.FindProcess(k); err == nil {
				_ = p.Kill()
			}
		}
	})
	if !newProcWalker(DefaultProcessLimit).childFiles {
		t.Log("this kernel has no children files: only the scan is checked")
	}
	var scanned []int
	poll.Until(t, 20*time.Second, "the shell's two children", func() (bool, string) {
		w := &procWalker{limit: DefaultProcessLimit} // a fresh scan each time
		var err error
		scanned, err = w.childrenByScan(cmd.Process.Pid)
		return err == nil && len(scanned) == 2, fmt.Sprint(scanned, err)
	})
	if w := newProcWalker(DefaultProcessLimit); w.childFiles {
		files, err := childrenFromFiles(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(files)
		slices.Sort(scanned)
		if !slices.Equal(files, scanned) {
			t.Errorf("children files %v, scan %v", files, scanned)
		}
	}

	// This test process holds a listener; the fallback walk of its tree
	// finds it, and the TCP table says it listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w := &procWalker{limit: 1 << 16}
	ts, err := w.walk(t.Context(), os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64]int{}
	for _, ino := range ts.inodes {
		want[ino] = 0
	}
	got, err := readTCPTables(t.Context(), os.Getpid(), want)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] == nil || got[0].Listen < 1 {
		t.Errorf("TCP figures of this process: %+v, want its listener", got[0])
	}
}

func TestParseTCPLine(t *testing.T) {
	for _, tc := range []struct {
		line   string
		inode  uint64
		state  byte
		tx, rx uint64
		ok     bool
		what   string
	}{
		{"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n",
			12345, 0x0A, 0, 3, true, "IPv4 listener"},
		{"   1: 00000000000000000000000001000000:A2E4 00000000000000000000000001000000:1F90 01 0000001A:000003E8 00:00000000 00000000  1000        0 987654 1 0000000000000000 20 4 30 10 -1\n",
			987654, 0x01, 0x1a, 0x3e8, true, "IPv6 connection"},
		{"   2: 0100007F:1F90 0100007F:C350 06 00000000:00000000 03:00000DE5 00000000     0        0 0 3 0000000000000000\n",
			0, 0, 0, 0, false, "TIME_WAIT, no owner"},
		{"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
			0, 0, 0, 0, false, "header"},
		{"   3: 0100007F:1F90\n", 0, 0, 0, 0, false, "truncated"},
	} {
		inode, st, tx, rx, ok := parseTCPLine([]byte(tc.line))
		if ok != tc.ok || inode != tc.inode || st != tc.state || tx != tc.tx || rx != tc.rx {
			t.Errorf("%s: got inode %d state %x tx %d rx %d ok %v, want %d %x %d %d %v",
				tc.what, inode, st, tx, rx, ok, tc.inode, tc.state, tc.tx, tc.rx, tc.ok)
		}
	}
	if ino, ok := socketInode("socket:[4242]"); !ok || ino != 4242 {
		t.Errorf("socketInode = %d, %v", ino, ok)
	}
	for _, l := range []string{"pipe:[4242]", "socket:[]", "/dev/null", "socket:[12x]"} {
		if _, ok := socketInode(l); ok {
			t.Errorf("socketInode(%q) ok", l)
		}
	}
}
