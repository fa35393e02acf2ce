package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/garrisonhq/garrison/ci/executor"
	"github.com/garrisonhq/garrison/ci/internal/citest"
	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/ci/push"
	"github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/ci/runner"
	"github.com/garrisonhq/garrison/ci/webhook"
	"github.com/garrisonhq/garrison/images"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/gittest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/registrytest"
)

type rig struct {
	t        *testing.T
	runs     *run.Store
	projects *project.Store
	docker   client.APIClient
	img      string
	ns       string
	repo     *gittest.Repo
	dataDir  string
	cfg      runner.Config
}

func newRig(t *testing.T, p project.Project) *rig {
	t.Helper()
	cli := etcdtest.New(t).Client(t)
	d := dockertest.Client(t)
	r := &rig{t: t, runs: run.NewStore(cli), projects: project.NewStore(cli), docker: d,
		img: citest.Busybox(t, d), ns: dockertest.UniqueName("ci-test-"), repo: gittest.New(t), dataDir: t.TempDir()}
	p.Name, p.Repo, p.Secret = "account", r.repo.Bare, "s"
	if err := r.projects.Put(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	r.cfg = runner.Config{Runs: r.runs, Projects: r.projects, Steps: executor.New(d, r.ns), Watcher: cli,
		DataDir: r.dataDir, Node: "test-node", Poll: 50 * time.Millisecond}
	return r
}

// start runs a runner until the returned stop is called (or the test ends).
func (r *rig) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { runner.New(r.cfg).Run(ctx); close(done) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	r.t.Cleanup(stop)
	return stop
}

// pipelineFile is a .garrison.yml whose build runs commands.
func (r *rig) pipelineFile(commands ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "app: /ktv/account\nbuild:\n  image: %s\n  commands:\n", r.img)
	for _, c := range commands {
		fmt.Fprintf(&b, "    - %q\n", c)
	}
	b.WriteString("image:\n  base: " + r.img + "\n  files:\n    - {from: out/version.txt, to: /version.txt}\n  cmd: [cat, /version.txt]\n")
	return b.String()
}

func (r *rig) commitAndQueue(files map[string]string) *run.Run {
	r.t.Helper()
	sha := r.repo.Commit("change", files)
	r.repo.Push()
	x, err := r.runs.Create(context.Background(), "account", push.Push{Provider: "generic", RepoURL: r.repo.Bare,
		Ref: "refs/heads/main", Before: push.ZeroSHA, After: sha, Committer: push.Person{Name: "Mei", Email: "mei@ktv.example"}})
	if err != nil {
		r.t.Fatal(err)
	}
	return x
}

func (r *rig) waitState(id string, want run.State) *run.Run {
	r.t.Helper()
	var got *run.Run
	poll.Until(r.t, 2*time.Minute, "run "+id+" "+string(want), func() (bool, string) {
		x, err := r.runs.Get(context.Background(), id)
		if err != nil {
			return false, err.Error()
		}
		got = x
		return x.State == want, fmt.Sprintf("%s %s", x.State, x.Reason)
	})
	return got
}

func (r *rig) log(id string) string {
	b, _ := os.ReadFile(runner.LogPath(r.dataDir, id))
	return string(b)
}

func (r *rig) containersOf(id string) int {
	r.t.Helper()
	list, err := r.docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", executor.LabelRun+"="+id), filters.Arg("label", executor.LabelNamespace+"="+r.ns))})
	if err != nil {
		r.t.Fatal(err)
	}
	return len(list)
}

func TestRunBuildsPushesAndRecords(t *testing.T) {
	r := newRig(t, project.Project{Secrets: map[string]string{"DEPLOY_KEY": "hunter2-very-secret"}})
	reg := registrytest.Start(t)
	r.cfg.Products = images.NewBuilder(r.docker, reg)
	x := r.commitAndQueue(map[string]string{
		".garrison.yml": r.pipelineFile("mkdir -p out", "echo \"built $CI_COMMIT_SHA on $CI_COMMIT_BRANCH\" > out/version.txt", "echo key=$DEPLOY_KEY"),
	})
	r.start()
	done := r.waitState(x.ID, run.Passed)
	if done.Node != "test-node" || done.Started == nil || done.Finished == nil || len(done.Steps) != 1 ||
		done.Steps[0].State != run.Passed || *done.Steps[0].ExitCode != 0 {
		t.Errorf("run = %+v", done)
	}
	wantVersion := "1-" + x.Push.After[:12]
	if done.Version != wantVersion || done.Image != reg+"/ktv/account:"+wantVersion {
		t.Errorf("version %q image %q", done.Version, done.Image)
	}
	t.Cleanup(func() {
		r.docker.ImageRemove(context.Background(), done.Image, image.RemoveOptions{Force: true})
		r.docker.ImageRemove(context.Background(), "ktv/account:"+wantVersion, image.RemoveOptions{Force: true})
	})
	img, err := r.docker.ImageInspect(context.Background(), done.Image)
	if err != nil || img.Config.Labels[images.LabelRevision] != x.Push.After || img.Config.Labels[images.LabelRun] != x.ID {
		t.Errorf("image labels %v, %v", img.Config.Labels, err)
	}
	log := r.log(x.ID)
	for _, want := range []string{"*** checkout " + x.Push.After, "+ mkdir -p out", "key=****", "pushed " + done.Image, "*** passed"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "hunter2-very-secret") {
		t.Error("the log shows a secret")
	}
	if _, err := os.Stat(filepath.Join(r.dataDir, "ci", "workspaces", x.ID)); !os.IsNotExist(err) {
		t.Errorf("workspace left behind: %v", err)
	}
}

func TestFailuresEndTheRunWithAReason(t *testing.T) {
	r := newRig(t, project.Project{MaxConcurrent: 4})
	r.start()
	fail := r.commitAndQueue(map[string]string{".garrison.yml": r.pipelineFile("echo about to fail", "exit 3")})
	got := r.waitState(fail.ID, run.Failed)
	if got.Reason != "build step exited with code 3" || *got.Steps[0].ExitCode != 3 {
		t.Errorf("run = %+v", got)
	}
	bad := r.commitAndQueue(map[string]string{".garrison.yml": "app: /ktv/account\nbuild:\n  image: x\n  comands: [make]\nimage: {files: [{from: a, to: /a}]}\n"})
	got = r.waitState(bad.ID, run.Failed)
	if !strings.Contains(got.Reason, "pipeline file: .garrison.yml:3:3: build.commands: required") {
		t.Errorf("reason %q", got.Reason)
	}
	if !strings.Contains(r.log(bad.ID), "4:3: build.comands: unknown field") {
		t.Errorf("log:\n%s", r.log(bad.ID))
	}
	none := r.commitAndQueue(map[string]string{"README": "no pipeline"})
	os.Remove(filepath.Join(r.repo.Work, ".garrison.yml"))
	gittest.Git(t, r.repo.Work, "commit", "-qam", "drop the pipeline")
	sha := gittest.Git(t, r.repo.Work, "rev-parse", "HEAD")
	r.repo.Push()
	noFile, _ := r.runs.Create(context.Background(), "account", push.Push{Ref: "refs/heads/main", After: sha})
	got = r.waitState(noFile.ID, run.Failed)
	if !strings.Contains(got.Reason, "no pipeline file .garrison.yml") {
		t.Errorf("reason %q", got.Reason)
	}
	r.waitState(none.ID, run.Failed)
	missing, _ := r.runs.Create(context.Background(), "account", push.Push{Ref: "refs/heads/main", After: strings.Repeat("ab", 20)})
	if got := r.waitState(missing.ID, run.Failed); !strings.HasPrefix(got.Reason, "checkout: git checkout") {
		t.Errorf("reason %q", got.Reason)
	}
}

func TestConcurrencyLimitAndCancel(t *testing.T) {
	r := newRig(t, project.Project{MaxConcurrent: 1})
	first := r.commitAndQueue(map[string]string{".garrison.yml": r.pipelineFile("echo first is running", "sleep 600")})
	second := r.commitAndQueue(map[string]string{"b": "b"})
	r.start()
	poll.True(t, 2*time.Minute, "first run's step started", func() bool { return strings.Contains(r.log(first.ID), "first is running") })
	if got, _ := r.runs.Get(context.Background(), second.ID); got.State != run.Queued {
		t.Fatalf("second run is %s while the first runs (limit 1)", got.State)
	}
	// Cancel as the API does: a flag in etcd, seen by the leader's runner.
	r.runs.Update(context.Background(), first.ID, func(x *run.Run) error { x.CancelRequested = true; return nil })
	got := r.waitState(first.ID, run.Cancelled)
	if got.Reason != "cancelled by request" {
		t.Errorf("reason %q", got.Reason)
	}
	if n := r.containersOf(first.ID); n != 0 {
		t.Errorf("%d containers of the cancelled run remain", n)
	}
	// The second takes the free slot; it sleeps too (same pipeline file).
	poll.True(t, 2*time.Minute, "second run started", func() bool { return strings.Contains(r.log(second.ID), "first is running") })
	third := r.commitAndQueue(map[string]string{"c": "c"})
	r.runs.Update(context.Background(), third.ID, func(x *run.Run) error { x.CancelRequested = true; return nil })
	r.waitState(third.ID, run.Cancelled)
	r.runs.Update(context.Background(), second.ID, func(x *run.Run) error { x.CancelRequested = true; return nil })
	r.waitState(second.ID, run.Cancelled)
}

// TestStoppingFailsTheRunInFlight: a garrison that stops while a run is in
// flight records it failed with the reason and removes its container.
func TestStoppingFailsTheRunInFlight(t *testing.T) {
	r := newRig(t, project.Project{})
	x := r.commitAndQueue(map[string]string{".garrison.yml": r.pipelineFile("echo started", "sleep 600")})
	stop := r.start()
	poll.True(t, 2*time.Minute, "step started", func() bool { return strings.Contains(r.log(x.ID), "started") })
	stop()
	got, _ := r.runs.Get(context.Background(), x.ID)
	if got.State != run.Failed || got.Reason != "garrison stopped while the run was in flight" {
		t.Errorf("after stop: %s %q", got.State, got.Reason)
	}
	if n := r.containersOf(x.ID); n != 0 {
		t.Errorf("%d containers remain", n)
	}
}

// TestRestartFailsRunsLeftRunning: what a killed garrison leaves (a run
// marked running, its step container still there) is failed with the
// reason and removed when a runner takes the lead.
func TestRestartFailsRunsLeftRunning(t *testing.T) {
	r := newRig(t, project.Project{})
	x := r.commitAndQueue(map[string]string{".garrison.yml": r.pipelineFile("true")})
	r.runs.Update(context.Background(), x.ID, func(y *run.Run) error {
		now := time.Now()
		y.State, y.Node, y.Started = run.Running, "crashed-node", &now
		y.Steps = []run.Step{{Name: "build", State: run.Running, Started: &now}}
		return nil
	})
	// The killed garrison's step container, still running.
	// Made directly: the runner removes it, not the test.
	c, err := r.docker.ContainerCreate(context.Background(), &container.Config{Image: r.img, Cmd: []string{"sleep", "600"},
		Labels: map[string]string{executor.LabelRun: x.ID, executor.LabelStep: "build", executor.LabelNamespace: r.ns}},
		&container.HostConfig{NetworkMode: "host"}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.docker.ContainerStart(context.Background(), c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.docker.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
	if n := r.containersOf(x.ID); n != 1 {
		t.Fatalf("%d containers before the restart", n)
	}
	r.start()
	got := r.waitState(x.ID, run.Failed)
	if !strings.Contains(got.Reason, "garrison restarted while the run was in flight on crashed-node; 1 step container(s) removed") ||
		got.Steps[0].State != run.Failed {
		t.Errorf("run = %+v", got)
	}
	if n := r.containersOf(x.ID); n != 0 {
		t.Errorf("%d containers remain", n)
	}
	if !strings.Contains(r.log(x.ID), "garrison restarted") {
		t.Errorf("log:\n%s", r.log(x.ID))
	}
}

func TestRetentionDropsOldRunsAndLogs(t *testing.T) {
	r := newRig(t, project.Project{KeepRuns: 2, MaxConcurrent: 3})
	r.start()
	var ids []string
	for i := 0; i < 4; i++ {
		x := r.commitAndQueue(map[string]string{".garrison.yml": r.pipelineFile(fmt.Sprintf("echo %d", i))})
		ids = append(ids, x.ID)
	}
	for _, id := range ids {
		poll.True(t, 2*time.Minute, id+" finished or pruned", func() bool {
			x, err := r.runs.Get(context.Background(), id)
			return err != nil || x.State.Final()
		})
	}
	poll.True(t, time.Minute, "two runs kept", func() bool {
		left, _ := r.runs.List(context.Background(), run.Filter{Project: "account"})
		return len(left) == 2 && left[0].ID == ids[2]
	})
	if _, err := os.Stat(runner.LogPath(r.dataDir, ids[0])); !os.IsNotExist(err) {
		t.Errorf("log of a pruned run: %v", err)
	}
	if _, err := os.Stat(runner.LogPath(r.dataDir, ids[3])); err != nil {
		t.Errorf("log of a kept run: %v", err)
	}
}

// TestOnlyTheLeaderRuns: a runner that does not lead leaves runs queued;
// once it leads it runs them, and losing the lead stops a run in flight
// with the reason.
func TestOnlyTheLeaderRuns(t *testing.T) {
	r := newRig(t, project.Project{})
	var leader atomic.Bool
	var asked atomic.Int64
	r.cfg.IsLeader = func() bool { asked.Add(1); return leader.Load() }
	x := r.commitAndQueue(map[string]string{".garrison.yml": r.pipelineFile("echo started", "sleep 600")})
	r.start()
	poll.True(t, time.Minute, "the runner asked for leadership a few times", func() bool { return asked.Load() >= 5 })
	if got, _ := r.runs.Get(context.Background(), x.ID); got.State != run.Queued {
		t.Fatalf("a runner that does not lead took the run: %s", got.State)
	}
	leader.Store(true)
	poll.True(t, 2*time.Minute, "step started", func() bool { return strings.Contains(r.log(x.ID), "started") })
	leader.Store(false)
	got := r.waitState(x.ID, run.Failed)
	if got.Reason != "this garrison stopped being the leader while the run was in flight" {
		t.Errorf("reason %q", got.Reason)
	}
	if n := r.containersOf(x.ID); n != 0 {
		t.Errorf("%d containers remain", n)
	}
}

// TestNotificationsAreSigned: a run's end is posted to the pipeline's
// notification URLs, signed per Standard Webhooks with the project secret.
func TestNotificationsAreSigned(t *testing.T) {
	r := newRig(t, project.Project{})
	got := make(chan *http.Request, 4)
	bodies := make(chan []byte, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		got <- req
		bodies <- b
	}))
	defer srv.Close()
	file := r.pipelineFile("exit 1") + "notify:\n  - url: " + srv.URL + "/failed\n    on: [failed]\n  - url: " + srv.URL + "/passed\n    on: [passed]\n"
	x := r.commitAndQueue(map[string]string{".garrison.yml": file})
	r.start()
	r.waitState(x.ID, run.Failed)
	var req *http.Request
	select {
	case req = <-got:
	case <-time.After(time.Minute):
		t.Fatal("no notification")
	}
	body := <-bodies
	if req.URL.Path != "/failed" || req.Header.Get("webhook-id") != x.ID+".failed" {
		t.Errorf("notification %s %v", req.URL.Path, req.Header)
	}
	want := webhook.SignStandard("s", req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), body)
	if req.Header.Get("webhook-signature") != want {
		t.Errorf("signature %q, want %q", req.Header.Get("webhook-signature"), want)
	}
	var msg struct {
		Type string
		Run  run.Run
	}
	if err := json.Unmarshal(body, &msg); err != nil || msg.Type != "run.failed" || msg.Run.ID != x.ID || msg.Run.Reason != "build step exited with code 1" {
		t.Errorf("body %s", body)
	}
	select {
	case req := <-got:
		t.Errorf("notified %s too", req.URL.Path)
	default:
	}
}
