package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/internal/diskguard"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/registrar"
)

// mountTmpfs mounts a tmpfs of size bytes for the test: a real small
// filesystem, so a full disk is the kernel's, not a fake. It needs root,
// as the test set-up (Docker) does.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("mount a %d-byte tmpfs at %s (the test needs root, as `make test` runs): %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

const newApp = `{"id":"/space/%d","cmd":"sleep 1000","instances":0}`

// TestUpRefusesWritesWhenDiskIsLow: with less free space in the data
// directory than --min-free-space, API writes get 507 with a message that
// says so, reads go on, and writes are accepted again once space is freed.
// Before, nothing watched: etcd died on a failed commit when the disk
// filled.
func TestUpRefusesWritesWhenDiskIsLow(t *testing.T) {
	dataDir := mountTmpfs(t, 256<<20)
	addrs := freeAddrs(t, 2)
	base := "http://" + addrs[0]
	startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", dataDir, "--min-free-space", "48MiB")
	waitHTTP(t, base+"/ping", 60*time.Second)
	if code, body := call(t, http0, "POST", base+"/v2/apps", fmt.Sprintf(newApp, 1), ""); code != 201 {
		t.Fatalf("write with space: %d %s", code, body)
	}

	free, err := diskguard.FreeBytes(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dataDir, "filler")
	fill(t, filler, int64(free)-24<<20)
	poll.Until(t, 30*time.Second, "writes refused with 507", func() (bool, string) {
		code, body := call(t, http0, "POST", base+"/v2/apps", fmt.Sprintf(newApp, 2), "")
		return code == 507 && strings.Contains(body, "the data directory "+dataDir+" has") && strings.Contains(body, "--min-free-space"), fmt.Sprint(code, body)
	})
	if code, body := call(t, http0, "GET", base+"/v2/apps/space/1", "", ""); code != 200 {
		t.Fatalf("read while writes are refused: %d %s", code, body)
	}
	if code, body := call(t, http0, "GET", base+"/health", "", ""); code != 200 || !strings.Contains(body, "refuses writes") {
		t.Fatalf("/health while writes are refused: %d %s", code, body)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "writes accepted again", func() (bool, string) {
		code, body := call(t, http0, "POST", base+"/v2/apps", fmt.Sprintf(newApp, 3), "")
		return code == 201, fmt.Sprint(code, body)
	})
}

// TestUpFailsWhenDataDirCannotHoldWAL: a data directory too small for
// etcd's preallocated write-ahead log fails the start with a message that
// says so, instead of etcd's bare error or a later crash.
func TestUpFailsWhenDataDirCannotHoldWAL(t *testing.T) {
	dataDir := mountTmpfs(t, 100<<20)
	addrs := freeAddrs(t, 2)
	p := startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", dataDir)
	err := p.WaitExit(t, 60*time.Second)
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1; stderr:\n%s", err, p.Stderr())
	}
	want := fmt.Sprintf("data directory %s has 100 MiB free: etcd needs at least 122 MiB for its write-ahead log", filepath.Join(dataDir, "etcd"))
	if !strings.Contains(p.Stderr(), want) {
		t.Fatalf("stderr lacks %q:\n%s", want, p.Stderr())
	}
}

// TestUpRefusesWritesNearEtcdQuota: once etcd's database passes 90% of its
// quota (lowered here with --etcd-quota-bytes, which the embedded server
// is given), API writes get 507 and reads go on; compacting and
// defragmenting etcd (its quota counts free pages until a defragment) lets
// writes in again.
func TestUpRefusesWritesNearEtcdQuota(t *testing.T) {
	const quota = 32 << 20
	addrs := freeAddrs(t, 2)
	base, etcdURL := "http://"+addrs[0], "http://"+addrs[1]
	startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", etcdURL, "--data-dir", t.TempDir(), "--etcd-quota-bytes", "32MiB")
	waitHTTP(t, base+"/ping", 60*time.Second)
	if code, body := call(t, http0, "POST", base+"/v2/apps", fmt.Sprintf(newApp, 1), ""); code != 201 {
		t.Fatalf("write under the quota: %d %s", code, body)
	}

	cli, err := registrar.NewClient([]string{etcdURL})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// Small values, so that the database grows in small steps: one large
	// value can need a run of free pages at the end of the file and jump
	// past the quota at once.
	value := strings.Repeat("x", 16<<10)
	for i := 0; ; i++ {
		st, err := cli.Status(ctx, etcdURL)
		if err != nil {
			t.Fatal(err)
		}
		if float64(st.DbSize) >= diskguard.QuotaFraction*quota {
			break
		}
		if _, err := cli.Put(ctx, fmt.Sprintf("/filler/%d", i), value); err != nil {
			t.Fatalf("fill etcd (db %d bytes): %v", st.DbSize, err)
		}
	}
	poll.Until(t, 30*time.Second, "writes refused with 507", func() (bool, string) {
		code, body := call(t, http0, "POST", base+"/v2/apps", fmt.Sprintf(newApp, 2), "")
		return code == 507 && strings.Contains(body, "of its 32 MiB quota") && strings.Contains(body, "etcdctl compact"), fmt.Sprint(code, body)
	})
	if code, body := call(t, http0, "GET", base+"/v2/apps", "", ""); code != 200 || !strings.Contains(body, "/space/1") {
		t.Fatalf("read while writes are refused: %d %s", code, body)
	}
	if _, body := call(t, http0, "GET", base+"/metrics", "", ""); !strings.Contains(body, "garrison_etcd_db_size_bytes") || !strings.Contains(body, "garrison_etcd_db_quota_bytes "+strconv.FormatFloat(quota, 'g', -1, 64)) || !strings.Contains(body, "garrison_api_writes_refused 1") {
		t.Fatalf("/metrics lacks etcd's space or the refusal")
	}

	del, err := cli.Delete(ctx, "/filler/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Defragment(ctx, etcdURL); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "writes accepted after defragmenting", func() (bool, string) {
		code, body := call(t, http0, "POST", base+"/v2/apps", fmt.Sprintf(newApp, 3), "")
		return code == 201, fmt.Sprint(code, body)
	})
}

// http0 is a client with a bound on each call.
var http0 = &http.Client{Timeout: 30 * time.Second}

// fill writes a file of n bytes.
func fill(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for n > 0 {
		w := min(n, int64(len(chunk)))
		if _, err := f.Write(chunk[:w]); err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
		n -= w
	}
}
