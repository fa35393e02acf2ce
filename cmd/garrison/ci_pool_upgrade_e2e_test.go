package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/garrisonhq/garrison/ci"
	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/ci/runnerd"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/garrisontest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/pooltest"
	"github.com/garrisonhq/garrison/registrar"
)

// poolState is what the upgrade test reads of the pool app.
type poolState struct {
	App struct {
		Version      string   `json:"version"`
		Instances    int      `json:"instances"`
		CPUs         float64  `json:"cpus"`
		Mem          float64  `json:"mem"`
		TasksHealthy int      `json:"tasksHealthy"`
		Args         []string `json:"args"`
		Container    struct {
			Docker struct {
				Image string `json:"image"`
			} `json:"docker"`
		} `json:"container"`
		Tasks []struct {
			ID      string `json:"id"`
			Version string `json:"version"`
		} `json:"tasks"`
	} `json:"app"`
}

func getPool(t *testing.T, base, id string) poolState {
	t.Helper()
	var st poolState
	if code, _, body := marathonCall(t, "GET", base+"/v2/apps"+id, nil); code == http.StatusOK {
		json.Unmarshal(body, &st)
	}
	return st
}

// taskIDs of the pool's tasks, sorted.
func (s poolState) taskIDs() []string {
	var ids []string
	for _, task := range s.App.Tasks {
		ids = append(ids, task.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestRunnerPoolIsBroughtUpToDateAtStart: a pool app an older garrison
// made (another runner image, other args and env), scaled to 2 and
// sized by a user, is updated by a garrison started with
// --ci-runner-pool through a deployment, as a user's PUT: the runners are
// replaced rolling, the count and size stay, and a job a replaced runner had claimed runs to its end
// there (the runner leaves the registry, takes nothing new and drains)
// and reports its exit code. A garrison started again finds the pool as
// it wants it and leaves it alone: no new version, the same tasks.
func TestRunnerPoolIsBroughtUpToDateAtStart(t *testing.T) {
	addrs := freeAddrs(t, 2)
	base, etcd := "http://"+addrs[0], "http://"+addrs[1]
	const poolApp = "/ci/upgraded-runners"
	docker := dockertest.Client(t)
	t.Cleanup(func() { removeAppContainers(docker, poolApp) }) // after garrison is killed
	args := []string{"up", "--addr", addrs[0], "--etcd-listen", etcd, "--data-dir", t.TempDir(),
		"--task-ports", "19500-19599", "--drain-delay", "100ms"}
	old := startGarrison(t, args...)
	waitHTTP(t, base+"/ping", 30*time.Second)

	// The older garrison's pool: its runner image under another tag,
	// with args and env this garrison does not give.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var buildLog strings.Builder
	current, err := runnerd.BuildImage(ctx, docker, garrisonBinary, &buildLog)
	if err != nil {
		t.Fatalf("%v\n%s", err, buildLog.String())
	}
	oldImage := dockertest.UniqueName("garrison-test/old-runner:")
	if err := docker.ImageTag(ctx, current, oldImage); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker.ImageRemove(context.Background(), oldImage, image.RemoveOptions{}) })
	def := ci.PoolApp(poolApp, oldImage, []string{"--etcd", etcd, "--log-level", "debug"}, map[string]string{"OLD_GARRISON": "1"}, nil)
	// Scaled to 2, its runners sized by a user.
	def["instances"], def["cpus"], def["mem"] = 2, 0.5, 512
	if code, _, body := marathonCall(t, "POST", base+"/v2/apps", def); code != http.StatusCreated {
		t.Fatalf("POST the old pool app: %d %s", code, body)
	}
	poll.Until(t, 2*time.Minute, "the old pool's two runners healthy", func() (bool, string) {
		st := getPool(t, base, poolApp)
		return st.App.TasksHealthy == 2, fmt.Sprintf("%+v", st.App)
	})
	before := getPool(t, base, poolApp)

	// A job held running on one of the old runners until released.
	var released atomic.Bool
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !released.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer gate.Close()
	cli, err := registrar.NewClient([]string{etcd})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	p := pooltest.HQ(t, cli, poolApp, pooltest.Options{})
	// A failing test lets the job end, or the server's close waits for
	// its output.
	defer released.Store(true)
	var jobLog garrisontest.Buffer
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := p.Run(ctx, pool.Job{ID: "held", Timeout: 5 * time.Minute,
			Script: "echo started; until wget -q -O /dev/null " + gate.URL + "; do sleep 0.2; done; echo finished; exit 7"}, t.TempDir(), &jobLog)
		done <- result{code, err}
	}()
	poll.Until(t, time.Minute, "the job running on an old runner", func() (bool, string) {
		return strings.Contains(jobLog.String(), "started\n"), jobLog.String()
	})
	resp, err := cli.Get(ctx, pool.ClaimKey(poolApp, "held"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the job's claim: %v %v", resp, err)
	}
	var claim pool.Claim
	json.Unmarshal(resp.Kvs[0].Value, &claim)
	if !slices.Contains(before.taskIDs(), claim.Runner) {
		t.Fatalf("claimed by %q, not one of the old runners %v", claim.Runner, before.taskIDs())
	}

	// garrison upgraded: started again with the pool.
	old.Cmd.Process.Signal(syscall.SIGKILL)
	old.WaitExit(t, 10*time.Second)
	args = append(args, "--ci-runner-pool", poolApp)
	upgraded := startGarrison(t, args...)
	waitHTTP(t, base+"/ping", 30*time.Second)
	poll.Until(t, time.Minute, "the pool app updated to this garrison's definition", func() (bool, string) {
		st := getPool(t, base, poolApp)
		return st.App.Container.Docker.Image == current && slices.Equal(st.App.Args, []string{"--etcd", etcd}), fmt.Sprintf("%+v", st.App)
	})
	// The runner with the job is being replaced: out of the registry, its
	// job still running.
	poll.Until(t, 2*time.Minute, "the job's runner out of the registry", func() (bool, string) {
		resp, err := cli.Get(ctx, registrar.Key(app.ServiceName(poolApp), claim.Runner))
		return err == nil && len(resp.Kvs) == 0, fmt.Sprint(err)
	})
	select {
	case r := <-done:
		t.Fatalf("the job ended before it was released: %d %v\n%s", r.code, r.err, jobLog.String())
	default:
	}
	released.Store(true)
	select {
	case r := <-done:
		if r.code != 7 || r.err != nil || !strings.HasSuffix(jobLog.String(), "finished\n") {
			t.Errorf("the job on the replaced runner: %d %v\n%s", r.code, r.err, jobLog.String())
		}
	case <-ctx.Done():
		t.Fatalf("the job never ended:\n%s", jobLog.String())
	}
	var after poolState
	poll.Until(t, 3*time.Minute, "two new runners healthy, the deployment done", func() (bool, string) {
		after = getPool(t, base, poolApp)
		fresh := 0
		for _, task := range after.App.Tasks {
			if task.Version == after.App.Version && !slices.Contains(before.taskIDs(), task.ID) {
				fresh++
			}
		}
		return after.App.Instances == 2 && after.App.CPUs == 0.5 && after.App.Mem == 512 && after.App.TasksHealthy == 2 && fresh == 2 && len(after.App.Tasks) == 2 && deploymentCount(t, base) == 0,
			fmt.Sprintf("%+v deployments %d", after.App, deploymentCount(t, base))
	})
	if !strings.Contains(upgraded.Stderr(), "runner pool updated") {
		t.Errorf("no update logged:\n%s", upgraded.Stderr())
	}

	// Started again, garrison finds its pool as it wants it.
	upgraded.Cmd.Process.Signal(syscall.SIGKILL)
	upgraded.WaitExit(t, 10*time.Second)
	again := startGarrison(t, args...)
	waitHTTP(t, base+"/ping", 30*time.Second)
	poll.Until(t, time.Minute, "the pool found up to date", func() (bool, string) {
		return strings.Contains(again.Stderr(), "runner pool up to date"), again.Stderr()
	})
	now := getPool(t, base, poolApp)
	if now.App.Version != after.App.Version || !slices.Equal(now.taskIDs(), after.taskIDs()) || now.App.Instances != 2 || deploymentCount(t, base) != 0 {
		t.Errorf("an up-to-date pool was redeployed: before %+v\nnow %+v (deployments %d)", after.App, now.App, deploymentCount(t, base))
	}
	if strings.Contains(again.Stderr(), "runner pool updated") {
		t.Errorf("an up-to-date pool was updated:\n%s", again.Stderr())
	}
}
