package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	cirun "github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/deploy"
	marathonapp "github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/gittest"
	"github.com/garrisonhq/garrison/internal/loadgen"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/registrytest"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/registrar/discovery"
)

// TestPushToProduction: pushes to a bare repository build the service,
// deploy it to each run's alpha, test it there (in a fresh container and
// on a warm runner of the pool), destroy alpha, record the
// release, promote it to qa on green and to production by a call; a release
// whose test fails is recorded and never promoted; a rollback puts the
// earlier release back in production with no failed request during the
// switch. Production needs an approval by a user other than the committer
// (Mei, gittest's): hers is refused, Lin's (basic auth) recorded.
func TestPushToProduction(t *testing.T) {
	cli := dockertest.Client(t)
	stepImage := dockertest.Busybox(t, cli)
	serviceBin := testbin.Static(t, dockertest.TestServerPackage)
	reg := registrytest.Start(t)
	repo := gittest.New(t)
	dir := t.TempDir()
	projects := filepath.Join(dir, "projects.yaml")
	os.WriteFile(projects, []byte("projects:\n  - name: shop\n    repo: "+repo.Bare+"\n    secret: hook-secret\n"), 0o600)
	addrs := freeAddrs(t, 2)
	base := "http://" + addrs[0]
	t.Cleanup(func() { removeAppContainers(cli, "/e2e/runners") }) // the runner pool, after garrison is killed
	startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", filepath.Join(dir, "data"),
		"--task-ports", "18000-18199", "--ci-projects", projects, "--ci-registry", reg, "--ci-runner-pool", "/e2e/runners")
	waitHTTP(t, base+"/ping", 30*time.Second)
	const app = "/e2e/shop"
	t.Cleanup(func() {
		// garrison is stopped by now (cleanups run last-in first): its
		// containers are removed directly.
		removeAppContainers(cli, app)
		removeAppContainers(cli, "/qa"+app)
	})

	repo.HookGarrison("../../ci/hooks/post-receive", base, "shop", "hook-secret")
	pipelineFile := func(testCmd string) string {
		return fmt.Sprintf(`app: %s
build:
  image: %s
  commands: ["mkdir -p out", "cp bin/service out/service"]
image:
  files: [{from: out/service, to: /service}]
  entrypoint: [/service]
deploy:
  instances: 1
  cpus: 0.05
  mem: 32
  portDefinitions: [{port: 0}]
  healthChecks: [{protocol: HTTP, path: /health, portIndex: 0, gracePeriodSeconds: 30, intervalSeconds: 2, timeoutSeconds: 1, maxConsecutiveFailures: 3}]
tests:
  - name: smoke
    image: %s
    commands: [%q]
  - name: warm
    commands: ["test -f CHANGES", "wget -qO- $ALPHA_URL/health"]
environments:
  - alpha
  - {name: qa, auto: true}
  - {name: production, approval: true}
`, app, stepImage, stepImage, testCmd)
	}
	var pushed []string
	t.Cleanup(func() {
		for _, ref := range pushed {
			cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true})
			cli.ImageRemove(context.Background(), strings.TrimPrefix(ref, reg+"/"), image.RemoveOptions{Force: true})
		}
	})
	var runIDs []string
	pushRun := func(msg, testCmd string) string {
		t.Helper()
		// An executable, as a build leaves it.
		os.MkdirAll(filepath.Join(repo.Work, "bin"), 0o755)
		if err := os.WriteFile(filepath.Join(repo.Work, "bin", "service"), serviceBin, 0o755); err != nil {
			t.Fatal(err)
		}
		repo.Commit(msg, map[string]string{".garrison.yml": pipelineFile(testCmd), "CHANGES": msg})
		out := repo.Push()
		i := strings.Index(out, `"run":"`)
		if i < 0 {
			t.Fatalf("push output:\n%s", out)
		}
		id := strings.SplitN(out[i+7:], `"`, 2)[0]
		runIDs = append(runIDs, id)
		return id
	}
	waitRun := func(id string, want cirun.State) cirun.Run {
		t.Helper()
		var x cirun.Run
		poll.Until(t, 4*time.Minute, "run "+id+" "+string(want), func() (bool, string) {
			code, _, body := marathonCall(t, "GET", base+"/api/v1/runs/"+id, nil)
			json.Unmarshal(body, &x)
			if x.State.Final() && x.State != want {
				t.Fatalf("run %s ended %s: %s", id, x.State, x.Reason)
			}
			return code == 200 && x.State == want, string(x.State) + " " + x.Reason
		})
		if x.Image != "" {
			pushed = append(pushed, x.Image)
		}
		return x
	}
	deployedImage := func(id string) string {
		code, _, body := marathonCall(t, "GET", base+"/v2/apps"+id, nil)
		var a struct {
			App struct {
				Container struct {
					Docker struct{ Image string }
				}
				TasksHealthy int
			}
		}
		json.Unmarshal(body, &a)
		if code != 200 {
			return ""
		}
		return a.App.Container.Docker.Image
	}
	call := func(method, path string, body any) (int, string) {
		code, _, b := marathonCall(t, method, base+path, body)
		return code, string(b)
	}
	// as calls the API as a basic-auth user: garrison runs without auth
	// here, so any user passes, and the pipeline API takes its name.
	as := func(user, path string, body any) (int, string) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(t.Context(), "POST", base+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(user, "pw")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}

	// Release 1: tests pass, alpha is destroyed, qa gets it automatically.
	r1 := waitRun(pushRun("first", "wget -qO- $ALPHA_URL/health"), cirun.Passed)
	// The test step without an image ran on a warm runner of the pool.
	if code, _, b := marathonCall(t, "GET", base+"/api/v1/runs/"+r1.ID+"/log?follow=false", nil); code != 200 ||
		!regexp.MustCompile(`\*\*\* step warm in a warm runner\n(.*\n)?\*\*\* runner \S+ took the job\n`).Match(b) {
		t.Errorf("warm test step: %d\n%s", code, b)
	}
	if deployedImage(deploy.AlphaID(r1.ID, app)) != "" {
		t.Errorf("alpha of %s still deployed", r1.ID)
	}
	if got := deployedImage("/qa" + app); got != r1.Image {
		t.Fatalf("qa runs %q, want %q", got, r1.Image)
	}
	if got := deployedImage(app); got != "" {
		t.Fatalf("production runs %q before any promotion", got)
	}
	change := map[string]string{"app": app, "version": r1.Version, "environment": "production"}
	if code, body := call("POST", "/api/v1/releases/promote", change); code != http.StatusConflict || !strings.Contains(body, "needs an approval") {
		t.Fatalf("promote 1 unapproved: %d %s", code, body)
	}
	if code, body := as("mei", "/api/v1/releases/approve", change); code != http.StatusForbidden || !strings.Contains(body, "cannot approve") {
		t.Fatalf("approval by the committer: %d %s", code, body)
	}
	if code, body := as("lin", "/api/v1/releases/approve", change); code != 200 || !strings.Contains(body, `"by":"lin"`) {
		t.Fatalf("approval by lin: %d %s", code, body)
	}
	if code, body := as("mei", "/api/v1/releases/promote", change); code != 200 {
		t.Fatalf("promote 1: %d %s", code, body)
	}
	if got := deployedImage(app); got != r1.Image {
		t.Fatalf("production runs %q, want %q", got, r1.Image)
	}

	// Release 2, promoted the same way.
	r2 := waitRun(pushRun("second", "wget -qO- $ALPHA_URL/health"), cirun.Passed)
	// Approved and promoted in one call.
	if code, body := as("lin", "/api/v1/releases/promote", map[string]any{"app": app, "version": r2.Version, "environment": "production", "approve": true}); code != 200 {
		t.Fatalf("promote 2: %d %s", code, body)
	}
	if got := deployedImage(app); got != r2.Image {
		t.Fatalf("production runs %q, want %q", got, r2.Image)
	}

	// Release 3 fails its test: recorded, alpha destroyed, never promoted.
	r3 := waitRun(pushRun("third", "wget -qO- $ALPHA_URL/no-such-page"), cirun.Failed)
	if r3.Reason != "test smoke exited with code 1" {
		t.Errorf("reason %q", r3.Reason)
	}
	if deployedImage(deploy.AlphaID(r3.ID, app)) != "" || deployedImage("/qa"+app) != r2.Image {
		t.Errorf("after a failed test: alpha %q, qa %q", deployedImage(deploy.AlphaID(r3.ID, app)), deployedImage("/qa"+app))
	}
	if code, body := call("POST", "/api/v1/releases/promote", map[string]string{"app": app, "version": r3.Version, "environment": "qa"}); code != http.StatusConflict {
		t.Errorf("promote a failed release: %d %s", code, body)
	}

	// Roll production back to release 1 under a steady load through the
	// registry: not one request fails during the switch.
	stopLoad := loadThroughRegistry(t, "http://"+addrs[1], app, 50)
	code, body := call("POST", "/api/v1/releases/rollback", map[string]string{"app": app, "environment": "production"})
	if code != 200 || !strings.Contains(body, `"version":"`+r1.Version+`"`) {
		t.Fatalf("rollback: %d %s", code, body)
	}
	// The old instance leaves after the new one answers: keep the load on
	// until the registry holds only the new one.
	poll.Until(t, time.Minute, "only release 1 in production", func() (bool, string) {
		code, _, b := marathonCall(t, "GET", base+"/v2/apps"+app+"/tasks", nil)
		var ts struct{ Tasks []struct{ ID string } }
		json.Unmarshal(b, &ts)
		return code == 200 && len(ts.Tasks) == 1, string(b)
	})
	if res := stopLoad(); res.Sent < 50 || res.Failed != 0 {
		t.Errorf("load during the rollback: %d sent, %d failed (first: %s)", res.Sent, res.Failed, res.FirstError)
	} else {
		t.Logf("load during the rollback: %d requests, 0 failed", res.Sent)
	}
	if got := deployedImage(app); got != r1.Image {
		t.Fatalf("production runs %q after the rollback, want %q", got, r1.Image)
	}
	resp, err := http.Get(base + "/api/v1/releases?app=" + app)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var hist struct {
		Releases     []deploy.Release
		Environments []deploy.Environment
	}
	json.Unmarshal(raw, &hist)
	if len(hist.Releases) != 3 || hist.Releases[0].Version != r3.Version || hist.Releases[0].Passed || !hist.Releases[2].Passed ||
		hist.Releases[2].Tests[0].Name != "smoke" || hist.Releases[0].Tests[0].ExitCode != 1 ||
		len(hist.Releases[2].Approvals) != 1 || hist.Releases[2].Approvals[0].By != "lin" {
		t.Errorf("releases: %s", raw)
	}
	for _, e := range hist.Environments {
		if e.Name == "production" && (e.Current != r1.Version || len(e.History) != 3 || !e.History[2].Rollback ||
			e.History[0].By != "mei" || e.History[0].ApprovedBy != "lin" || e.History[1].ApprovedBy != "lin") {
			t.Errorf("production history: %+v", e)
		}
	}
}

// loadThroughRegistry sends a steady load (rate a second, at most two
// minutes) to app's instances as the registry in etcd lists them, until
// the returned stop is called.
func loadThroughRegistry(t *testing.T, etcd, app string, rate float64) (stop func() loadgen.Result) {
	t.Helper()
	cli, err := registrar.NewClient([]string{etcd})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := discovery.New(t.Context(), cli, marathonapp.ServiceName(app))
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, app+" registered", func() (bool, string) {
		_, err := svc.Pick()
		return err == nil, fmt.Sprint(err)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan loadgen.Result, 1)
	go func() {
		done <- loadgen.Run(ctx, loadgen.Config{Rate: rate, Duration: 2 * time.Minute, MaxRequests: int64(rate * 120),
			Target: func() (string, error) {
				inst, err := svc.Pick()
				if err != nil {
					return "", err
				}
				return "http://" + inst.Endpoint.Addr + "/health", nil
			}})
	}()
	return func() loadgen.Result {
		cancel()
		res := <-done
		svc.Close()
		cli.Close()
		return res
	}
}
