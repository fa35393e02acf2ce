package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/garrisontest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/pooltest"
	"github.com/garrisonhq/garrison/registrar"
)

// TestRunnerPoolGrowsWithTheQueueAndShrinksAfter: garrison creates the
// warm runner pool (garrison runnerd in its runner image, a Docker app);
// ten test jobs queued at once make its autoscale rule (source runners:
// queue plus running jobs as qps, busy fraction as cpu) grow it to its
// max, every job runs on a warm runner, and the pool shrinks back to its
// min once the queue is empty. The jobs are queued by this test as
// garrison's side of the pool, on an HTTP server of its own: the runners
// reach it (and etcd) over 127.0.0.1, sharing no file with it.
func TestRunnerPoolGrowsWithTheQueueAndShrinksAfter(t *testing.T) {
	addrs := freeAddrs(t, 2)
	base, etcd := "http://"+addrs[0], "http://"+addrs[1]
	dataDir := t.TempDir()
	const poolApp = "/ci/runners"
	docker := dockertest.Client(t)
	t.Cleanup(func() { removeAppContainers(docker, poolApp) }) // after garrison is killed
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(rules, []byte(`rules:
  - app: /ci/runners
    min: 1
    max: 4
    quorum: 1
    tolerance: 0
    up: {qps: 1, cpu: 0.9}
    down: {qps: 0.5, cpu: 0.5}
    cooldown: 0s
    scaleDownAfter: 3s
    maxStepDown: 4
    sources: {qps: runners, cpu: runners}
`), 0o600)
	startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", etcd, "--data-dir", dataDir,
		"--task-ports", "19400-19499", "--drain-delay", "100ms", "--autoscale-interval", "500ms", "--rules", rules,
		"--ci-runner-pool", poolApp)
	waitHTTP(t, base+"/ping", 30*time.Second)
	healthy := func(n int) func() (bool, string) {
		return func() (bool, string) {
			st, ok := getApp(t, base, poolApp)
			return ok && st.App.Instances == n && st.App.TasksHealthy == n, fmt.Sprintf("%+v", st.App)
		}
	}
	poll.Until(t, time.Minute, "the pool's first runner", healthy(1))

	cli, err := registrar.NewClient([]string{etcd})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	p := pooltest.HQ(t, cli, poolApp, pooltest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "in.txt"), []byte("the workspace"), 0o644)
	var wg sync.WaitGroup
	outs := make([]strings.Builder, 10)
	codes := make([]int, 10)
	errs := make([]error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], errs[i] = p.Run(ctx, pool.Job{ID: fmt.Sprintf("job-%d", i), Timeout: time.Minute,
				Script: fmt.Sprintf("echo job $N with $(cat in.txt); sleep 2; exit %d", i%2), Env: map[string]string{"N": fmt.Sprint(i)}}, work, &outs[i])
		}()
	}
	most := 0
	poll.Until(t, 2*time.Minute, "the pool grown to its max", func() (bool, string) {
		st, _ := getApp(t, base, poolApp)
		most = max(most, st.App.Instances)
		return most == 4, fmt.Sprintf("instances %d (most %d)", st.App.Instances, most)
	})
	wg.Wait()
	for i := range 10 {
		if errs[i] != nil || codes[i] != i%2 || !strings.Contains(outs[i].String(), fmt.Sprintf("job %d with the workspace", i)) {
			t.Errorf("job %d: code %d, %v, output:\n%s", i, codes[i], errs[i], outs[i].String())
		}
	}
	if n, err := cli.Get(ctx, pool.QueuePrefix(poolApp), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || n.Count != 0 {
		t.Errorf("jobs still queued: %+v %v", n, err)
	}
	poll.Until(t, 2*time.Minute, "the pool back to one runner", healthy(1))
}

// TestRunnerdTakesItsSettingsFromTheEnvironment: `garrison runnerd` as
// the pool app starts it, with only --etcd on its command line and the
// rest in the env garrison gives a task (MARATHON_APP_ID, MESOS_TASK_ID,
// PORT0) and the pool app's (GARRISON_TOKEN): it registers under its task
// id and passes the token to garrison's API, which refuses calls without.
func TestRunnerdTakesItsSettingsFromTheEnvironment(t *testing.T) {
	etcd := etcdtest.New(t)
	cli := etcd.Client(t)
	const poolApp, taskID = "/ci/env-runners", "ci_env-runners.t1"
	p := pooltest.HQ(t, cli, poolApp, pooltest.Options{Token: "s3cret"})

	cmd := exec.Command(garrisonBinary, "runnerd", "--etcd", strings.Join(etcd.Endpoints, ","))
	cmd.Env = append(os.Environ(), "MARATHON_APP_ID="+poolApp, "MESOS_TASK_ID="+taskID, "PORT0=0", "GARRISON_TOKEN=s3cret")
	var stderr garrisontest.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("runnerd stderr:\n%s", stderr.String())
		}
	}()
	poll.Until(t, 30*time.Second, "the runner registered under its task id", func() (bool, string) {
		resp, err := cli.Get(t.Context(), registrar.Key(app.ServiceName(poolApp), taskID))
		return err == nil && len(resp.Kvs) == 1, fmt.Sprint(err)
	})
	var log strings.Builder
	code, err := p.Run(t.Context(), pool.Job{ID: "env", Script: "echo fine", Timeout: time.Minute}, t.TempDir(), &log)
	if code != 0 || err != nil || !strings.Contains(log.String(), "runner "+taskID+" took the job\nfine\n") {
		t.Errorf("job: %d %v\n%s", code, err, log.String())
	}
}
