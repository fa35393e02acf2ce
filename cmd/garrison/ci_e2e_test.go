package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/garrisonhq/garrison/ci/executor"
	cirun "github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/gittest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// TestKillGarrisonMidRun: garrison killed (SIGKILL) while a pipeline run's
// build step runs; after the restart the run is failed with the reason and
// its container is gone.
func TestKillGarrisonMidRun(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	repo := gittest.New(t)
	dir := t.TempDir()
	projects := filepath.Join(dir, "projects.yaml")
	os.WriteFile(projects, []byte("projects:\n  - name: slow\n    repo: "+repo.Bare+"\n    secret: hook-secret\n"), 0o600)
	addrs := freeAddrs(t, 2)
	base := "http://" + addrs[0]
	// With API auth on: hooks need none (their signatures are checked), the
	// runs API needs the token.
	args := []string{"up", "--addr", addrs[0], "--etcd-listen", "http://" + addrs[1], "--data-dir", filepath.Join(dir, "data"), "--ci-projects", projects,
		"--auth-token", "api-token"}
	p := startGarrison(t, args...)
	waitHTTP(t, base+"/ping", 30*time.Second)

	repo.HookGarrison("../../ci/hooks/post-receive", base, "slow", "hook-secret")
	repo.Commit("slow build", map[string]string{".garrison.yml": fmt.Sprintf(
		"app: /e2e/slow\nbuild:\n  image: %s\n  commands: [\"echo started\", \"sleep 600\"]\nimage:\n  files: [{from: x, to: /x}]\n", img)})
	if out := repo.Push(); !strings.Contains(out, `"run":"slow.1"`) {
		t.Fatalf("push output:\n%s", out)
	}
	stepContainers := func() int {
		list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", executor.LabelRun+"=slow.1"))})
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	getRun := func() cirun.Run {
		req, _ := http.NewRequest("GET", base+"/api/v1/runs/slow.1", nil)
		req.Header.Set("Authorization", "Bearer api-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return cirun.Run{}
		}
		defer resp.Body.Close()
		var x cirun.Run
		json.NewDecoder(resp.Body).Decode(&x)
		return x
	}
	if resp, err := http.Get(base + "/api/v1/runs/slow.1"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("runs API without the token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	poll.Until(t, 2*time.Minute, "the build step runs", func() (bool, string) {
		x := getRun()
		return x.State == cirun.Running && stepContainers() == 1, string(x.State)
	})
	p.Cmd.Process.Signal(syscall.SIGKILL)
	p.WaitExit(t, 10*time.Second)
	if n := stepContainers(); n != 1 {
		t.Fatalf("%d step containers after the kill, want the orphan", n)
	}

	startGarrison(t, args...)
	waitHTTP(t, base+"/ping", 30*time.Second)
	poll.Until(t, time.Minute, "the run failed and its container removed", func() (bool, string) {
		x := getRun()
		return x.State == cirun.Failed && stepContainers() == 0, fmt.Sprintf("%s %q, %d containers", x.State, x.Reason, stepContainers())
	})
	if x := getRun(); !strings.Contains(x.Reason, "garrison restarted while the run was in flight") {
		t.Errorf("reason %q", x.Reason)
	}
}
