package garrisontest

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testbin"
)

func TestFlagValueTakesTheLast(t *testing.T) {
	args := []string{"up", "--data-dir", "a", "--addr", "x", "--data-dir=b"}
	if got := flagValue(args, "--data-dir"); got != "b" {
		t.Fatalf("flagValue = %q, want b", got)
	}
	if got := flagValue([]string{"up", "--data-dir"}, "--data-dir"); got != "" {
		t.Fatalf("flagValue of a flag with no value = %q", got)
	}
}

// A garrison killed with SIGKILL leaves its process tasks running; the
// cleanup finds them by their sandbox under the data dir and kills them.
func TestKilledGarrisonsTasksAreFoundAndKilled(t *testing.T) {
	bin, cleanup, err := testbin.Build("github.com/garrisonhq/garrison/cmd/garrison", false)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	etcd := etcdtest.New(t)
	dataDir, otherDir := t.TempDir(), t.TempDir()
	p := Start(t, bin, "up", "--addr", "127.0.0.1:0", "--etcd", strings.Join(etcd.Endpoints, ","),
		"--data-dir", otherDir, "--data-dir", dataDir)
	base := "http://" + p.Addr(t, 2*time.Minute)
	body := `{"id":"/gt/sleep","cmd":"sleep 600","instances":2,"cpus":0.01,"mem":16}`
	resp, err := http.Post(base+"/v2/apps", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v2/apps: %s", resp.Status)
	}
	// Each task is a shell running sleep: two processes per task.
	poll.Until(t, time.Minute, "both tasks' processes under the data dir", func() (bool, string) {
		pids, err := TasksUnder(dataDir)
		return err == nil && len(pids) == 4, fmt.Sprintf("pids %v, err %v", pids, err)
	})
	p.Cmd.Process.Signal(syscall.SIGKILL)
	p.WaitExit(t, 30*time.Second)
	pids, err := TasksUnder(dataDir)
	if err != nil || len(pids) != 4 {
		t.Fatalf("after SIGKILL of garrison: processes %v, %v; want both tasks still running", pids, err)
	}
	if other, _ := TasksUnder(otherDir); len(other) != 0 {
		t.Fatalf("tasks under a data dir garrison did not use: %v", other)
	}
	KillTasksUnder(dataDir)
	poll.Until(t, 30*time.Second, "no task left", func() (bool, string) {
		pids, _ := TasksUnder(dataDir)
		return len(pids) == 0, ""
	})
}
