package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	cirun "github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/ci/runner"
	marathonapp "github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/images"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/gittest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/registrytest"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/internal/testport"
)

// The stages of a push's way to production, in order; both sides time
// each of them.
var wtpStages = []string{
	"hook+queue", "checkout", "build step", "image+push", "alpha deploy",
	"tests", "alpha destroy", "promote qa", "promote production", "registered",
}

// wtpRounds is how many pushes one iteration of
// BenchmarkWebhookToProduction times on each side.
const wtpRounds = 5

// BenchmarkWebhookToProduction times the example service (examples/echo)
// from a signed GitHub push webhook to its production instance healthy and
// registered, through a real `garrison up` with the settings a user gets:
// webhook, queue, checkout, build step in a fresh container, product image
// pushed to the registry, alpha deployed, a test step in a fresh container
// and one on the warm runner pool, alpha destroyed, the release promoted
// to qa and then to production by calls (the default environments: no
// auto promotion, no approval), the production instance registered in
// etcd. Next to it, in the same iteration, the same work by hand with git
// and the docker command: clone, `docker run` of the build step, `docker
// build` of garrison's Dockerfile, `docker push`, `docker run` of alpha
// with the app's cpu and memory limits until /health answers (polled every
// 5 ms), the test image with `docker run` and the warm step as a shell on
// the host, `docker rm -f` of alpha, then qa and production started the
// same way (the previous one removed once the new one answers). By hand
// nothing registers: garrison's last stage, the new production instance
// in etcd's registry, has no counterpart. Apart from the total, the same
// image is also made by hand the way garrison makes it (`docker import` of
// the file with its config, then `docker push`), and a second total uses
// that: garrison's overhead against the fastest way by hand. Rounds
// alternate which side goes first. Every stage is printed with min/median/max of both sides;
// the metrics are the medians, their ratio and garrison's overhead.
func BenchmarkWebhookToProduction(b *testing.B) {
	cli := dockertest.Client(b)
	stepImage := dockertest.UniqueName("garrison-bench/busybox-") + ":ci"
	var buildLog bytes.Buffer
	if err := images.BuildBusybox(context.Background(), cli, stepImage, &buildLog); err != nil {
		b.Fatalf("%v\n%s", err, buildLog.String())
	}
	echo := testbin.Static(b, "github.com/garrisonhq/garrison/examples/echo")
	reg := registrytest.Start(b)
	repo := gittest.New(b)
	dir := b.TempDir()
	data := filepath.Join(dir, "data")
	const secret, app = "bench-secret", "/bench/echo"
	projects := filepath.Join(dir, "projects.yaml")
	os.WriteFile(projects, []byte("projects:\n  - name: echo\n    repo: "+repo.Bare+"\n    secret: "+secret+"\n    keepRuns: 1000\n"), 0o600)
	addrs := freeAddrs(b, 2)
	base := "http://" + addrs[0]
	b.Cleanup(func() { removeAppContainers(cli, "/bench/runners") }) // the runner pool, after garrison is killed
	var imagesToRemove, containers []string
	b.Cleanup(func() {
		removeAppContainers(cli, app)
		removeAppContainers(cli, "/qa"+app)
		for _, id := range containers {
			exec.Command("docker", "rm", "-f", id).Run()
		}
		for _, ref := range append(imagesToRemove, stepImage) {
			cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true})
		}
	})
	startGarrison(b, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", data,
		"--task-ports", "19600-19799", "--ci-projects", projects, "--ci-registry", reg, "--ci-runner-pool", "/bench/runners")
	api := benchAPI(base)
	// The warm runner pool is part of garrison's steady state: wait for it.
	poll.Until(b, 2*time.Minute, "a warm runner", func() (bool, string) {
		code, raw := api.call("GET", "/v2/apps/bench/runners", nil)
		var a appStatus
		json.Unmarshal(raw, &a)
		return code == 200 && a.App.TasksHealthy >= 1, fmt.Sprintf("%d %s", code, raw)
	})
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + addrs[1]}, DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer etcd.Close()

	os.MkdirAll(filepath.Join(repo.Work, "bin"), 0o755)
	if err := os.WriteFile(filepath.Join(repo.Work, "bin", "echo"), echo, 0o755); err != nil {
		b.Fatal(err)
	}
	buildCommands := []string{"mkdir -p out", "cp bin/echo out/echo"}
	const testCommand = "wget -qO- $ALPHA_URL/health"
	pipelineFile := fmt.Sprintf(`app: %s
build:
  image: %s
  commands: [%q, %q]
image:
  files: [{from: out/echo, to: /echo}]
  entrypoint: [/echo]
  cmd: [--register=false]
deploy:
  instances: 1
  cpus: 0.05
  mem: 64
  portDefinitions: [{port: 0}]
  healthChecks: [{protocol: HTTP, path: /health, portIndex: 0}]
tests:
  - name: smoke
    image: %s
    commands: [%q]
  - name: warm
    commands: [%q]
`, app, stepImage, buildCommands[0], buildCommands[1], stepImage, testCommand, testCommand)

	byHand := &handPipeline{b: b, reg: reg, bare: repo.Bare, stepImage: stepImage, build: buildCommands, test: testCommand, containers: &containers}
	garrisonTimes := map[string][]time.Duration{}
	handTimes := map[string][]time.Duration{}
	var garrisonTotal, handTotal, handImportTotal []time.Duration
	n := 0
	before := strings.Repeat("0", 40)
	round := func() {
		n++
		// A new binary each push, as a code change makes: trailing bytes
		// an ELF loader ignores. With the same binary every time the
		// registry would already hold the (reproducible) layer.
		if err := os.WriteFile(filepath.Join(repo.Work, "bin", "echo"), append(slices.Clip(echo), fmt.Sprintf("\nround %d\n", n)...), 0o755); err != nil {
			b.Fatal(err)
		}
		sha := repo.Commit(fmt.Sprintf("change %d", n), map[string]string{".garrison.yml": pipelineFile, "CHANGES": strconv.Itoa(n)})
		defer func() { before = sha }()
		repo.Push() // no post-receive hook: the webhook below tells garrison
		viaGarrison := func() {
			stages, total := pushToProduction(b, api, etcd, data, app, secret, before, sha, repo.Bare, n)
			for k, v := range stages {
				garrisonTimes[k] = append(garrisonTimes[k], v)
			}
			garrisonTotal = append(garrisonTotal, total)
		}
		viaHand := func() {
			stages, total := byHand.run(sha, n)
			for k, v := range stages {
				handTimes[k] = append(handTimes[k], v)
			}
			handTotal = append(handTotal, total)
			handImportTotal = append(handImportTotal, total-stages["image+push"]+stages["image+push by import"])
			imagesToRemove = append(imagesToRemove, byHand.lastRef, byHand.importRef)
		}
		if n%2 == 1 {
			viaGarrison()
			viaHand()
		} else {
			viaHand()
			viaGarrison()
		}
	}
	// make bench runs one iteration: each holds several rounds, for the
	// spread.
	for b.Loop() {
		for range wtpRounds {
			round()
		}
	}
	b.StopTimer()
	for _, ref := range registryImages(b, api, app) {
		imagesToRemove = append(imagesToRemove, ref, strings.TrimPrefix(ref, reg+"/"))
	}

	stat := func(ds []time.Duration) (lo, med, hi time.Duration) {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[0], s[len(s)/2], s[len(s)-1]
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	var out strings.Builder
	fmt.Fprintf(&out, "%d runs; ms min/median/max\n%-24s %20s %20s\n", n, "stage", "garrison", "by hand")
	spread := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "-"
		}
		lo, med, hi := stat(ds)
		return ms(lo) + "/" + ms(med) + "/" + ms(hi)
	}
	row := func(name string, g, h []time.Duration) {
		fmt.Fprintf(&out, "%-24s %20s %20s\n", name, spread(g), spread(h))
	}
	for _, s := range wtpStages {
		row(s, garrisonTimes[s], handTimes[s])
	}
	row("total", garrisonTotal, handTotal)
	row("image+push by import", nil, handTimes["image+push by import"])
	row("total, image by import", garrisonTotal, handImportTotal)
	// Printed, not logged: a benchmark's log is cut after ten lines.
	fmt.Print(out.String())
	_, g, _ := stat(garrisonTotal)
	_, h, _ := stat(handTotal)
	b.ReportMetric(float64(g.Milliseconds()), "ms/webhook-to-production")
	b.ReportMetric(float64(h.Milliseconds()), "ms/by-hand")
	b.ReportMetric(float64(g)/float64(h), "ratio")
	b.ReportMetric(float64((g - h).Milliseconds()), "ms-overhead")
	_, hi, _ := stat(handImportTotal)
	b.ReportMetric(float64((g - hi).Milliseconds()), "ms-overhead-vs-import")
}

// pushToProduction sends the signed GitHub webhook of the push before ->
// sha, waits for the run, promotes its release to qa and production and
// waits for the production instance in the registry. It returns the time
// of each stage and the whole.
func pushToProduction(b *testing.B, api benchAPI, etcd *clientv3.Client,
	data, app, secret, before, sha, repoURL string, n int) (map[string]time.Duration, time.Duration) {
	b.Helper()
	payload, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": before, "after": sha, "deleted": false,
		"repository": map[string]any{"full_name": "bench/echo", "clone_url": repoURL},
		"pusher":     map[string]any{"name": "mei", "email": "mei@ktv.example"},
		"head_commit": map[string]any{"id": sha, "message": "change",
			"committer": map[string]any{"name": "Mei", "email": "mei@ktv.example"}},
		"commits": []any{map[string]any{"id": sha, "modified": []string{"CHANGES"}}},
	})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(payload)
	id := fmt.Sprintf("echo.%d", n)
	// The log's stage lines, stamped when they appear.
	marks := watchLog(runner.LogPath(data, id))
	defer marks.stop()

	start := time.Now()
	req, _ := http.NewRequest("POST", string(api)+"/api/v1/hooks/github?project=echo", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%d-%d", n, start.UnixNano()))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(body), `"run":"`+id+`"`) {
		b.Fatalf("webhook: %d %s", resp.StatusCode, body)
	}
	var x cirun.Run
	deadline := time.Now().Add(5 * time.Minute)
	for {
		code, raw := api.call("GET", "/api/v1/runs/"+id, nil)
		if code == 200 && json.Unmarshal(raw, &x) == nil && x.State.Final() {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("run %s not over in 5m: %d %s", id, code, raw)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if x.State != cirun.Passed || len(x.Steps) != 3 {
		code, raw := api.call("GET", "/api/v1/runs/"+id+"/log?follow=false", nil)
		b.Fatalf("run %s %s: %s\nlog (%d):\n%s", id, x.State, x.Reason, code, raw)
	}
	for _, env := range []string{"qa", "production"} {
		if code, raw := api.call("POST", "/api/v1/releases/promote", map[string]string{"app": app, "version": x.Version, "environment": env}); code != 200 {
			b.Fatalf("promote %s to %s: %d %s", x.Version, env, code, raw)
		}
		marks.mark("promoted " + env)
	}
	// Registered: the registry holds production's new instance (the one
	// it replaced may still be draining: it leaves the registry first).
	svc := "/service/" + marathonapp.ServiceName(app) + "/"
	deadline = time.Now().Add(time.Minute)
	for {
		code, raw := api.call("GET", "/v2/apps"+app, nil)
		var a struct {
			App struct {
				Version string `json:"version"`
				Tasks   []struct {
					Version string `json:"version"`
					Ports   []int  `json:"ports"`
				} `json:"tasks"`
			} `json:"app"`
		}
		json.Unmarshal(raw, &a)
		res, err := etcd.Get(context.Background(), svc, clientv3.WithPrefix())
		if code == 200 && err == nil && registered(a.App.Version, a.App.Tasks, res.Kvs) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("production of %s not registered in 1m: %d %s", id, code, raw)
		}
		time.Sleep(5 * time.Millisecond)
	}
	end := time.Now()
	marks.stop()
	at := func(prefix string) time.Time {
		t, ok := marks.at(prefix)
		if !ok {
			b.Fatalf("run %s: no log line %q", id, prefix)
		}
		return t
	}
	build, smoke, warm := x.Steps[0], x.Steps[1], x.Steps[2]
	alpha := at("*** alpha: deploying")
	qa, prod := at("promoted qa"), at("promoted production")
	return map[string]time.Duration{
		"hook+queue":         x.Started.Sub(start),
		"checkout":           build.Started.Sub(*x.Started),
		"build step":         build.Finished.Sub(*build.Started),
		"image+push":         alpha.Sub(*build.Finished),
		"alpha deploy":       smoke.Started.Sub(alpha),
		"tests":              warm.Finished.Sub(*smoke.Started),
		"alpha destroy":      x.Finished.Sub(*warm.Finished),
		"promote qa":         qa.Sub(*x.Finished),
		"promote production": prod.Sub(qa),
		"registered":         end.Sub(prod),
	}, end.Sub(start)
}

// benchAPI calls garrison's API at its base URL; a transport error is
// status 0 with the error as the body.
type benchAPI string

func (base benchAPI) call(method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, string(base)+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// logMarks stamps the lines of a log file starting with "*** " as they
// appear, polling it every few milliseconds.
type logMarks struct {
	mu    sync.Mutex
	seen  map[string]time.Time
	lines []string
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func watchLog(path string) *logMarks {
	m := &logMarks{seen: map[string]time.Time{}, done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		var f *os.File
		var rd *bufio.Reader
		var partial string
		for {
			if f == nil {
				if g, err := os.Open(path); err == nil {
					f, rd = g, bufio.NewReader(g)
					defer f.Close()
				}
			}
			for rd != nil {
				line, err := rd.ReadString('\n')
				if err != nil {
					partial += line
					break
				}
				m.add(partial + line)
				partial = ""
			}
			select {
			case <-m.done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return m
}

func (m *logMarks) add(line string) {
	if !strings.HasPrefix(line, "*** ") {
		return
	}
	m.mark(strings.TrimSuffix(line, "\n"))
}

func (m *logMarks) mark(line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines = append(m.lines, line)
	if _, ok := m.seen[line]; !ok {
		m.seen[line] = time.Now()
	}
}

// at is when the first line starting with prefix appeared.
func (m *logMarks) at(prefix string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.lines {
		if strings.HasPrefix(l, prefix) {
			return m.seen[l], true
		}
	}
	return time.Time{}, false
}

func (m *logMarks) stop() {
	m.once.Do(func() { close(m.done) })
	m.wg.Wait()
}

// registered reports whether a task of version has its first port in
// the registry entries kvs.
func registered(version string, tasks []struct {
	Version string `json:"version"`
	Ports   []int  `json:"ports"`
}, kvs []*mvccpb.KeyValue) bool {
	for _, t := range tasks {
		if t.Version != version || len(t.Ports) == 0 {
			continue
		}
		for _, kv := range kvs {
			var e struct{ Addr string }
			if json.Unmarshal(kv.Value, &e) == nil && strings.HasSuffix(e.Addr, ":"+strconv.Itoa(t.Ports[0])) {
				return true
			}
		}
	}
	return false
}

// registryImages lists the product images of app's releases.
func registryImages(b *testing.B, api benchAPI, app string) []string {
	_, raw := api.call("GET", "/api/v1/releases?app="+app, nil)
	var hist struct{ Releases []struct{ Image string } }
	json.Unmarshal(raw, &hist)
	var out []string
	for _, r := range hist.Releases {
		out = append(out, r.Image)
	}
	return out
}

// handPipeline does a run's work by hand with git and the docker command.
type handPipeline struct {
	b              *testing.B
	reg, bare      string
	stepImage      string
	build          []string
	test           string
	containers     *[]string
	qa, production string // the containers running now
	lastRef        string
	importRef      string
}

func (h *handPipeline) sh(dir string, name string, args ...string) string {
	h.b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(gittest.Env(), "DOCKER_BUILDKIT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		h.b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// start runs ref serving on a port of its own and returns the container
// and its URL once /health answers.
func (h *handPipeline) start(ref string) (string, string) {
	h.b.Helper()
	port := strconv.Itoa(testport.Consecutive(h.b, 1))
	// The limits of the app definition, as garrison's Docker driver sets them.
	id := h.sh("", "docker", "run", "-d", "--network", "host", "--cpus", "0.05", "--memory", "64m", "-e", "PORT0="+port,
		"--label", dockertest.LabelTest+"=BenchmarkWebhookToProduction", ref)
	*h.containers = append(*h.containers, id)
	url := "http://127.0.0.1:" + port
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return id, url
			}
		}
		if time.Now().After(deadline) {
			h.b.Fatalf("%s did not answer on %s in 1m", ref, url)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *handPipeline) run(sha string, n int) (map[string]time.Duration, time.Duration) {
	h.b.Helper()
	st := map[string]time.Duration{}
	start := time.Now()
	last := start
	lap := func(stage string) {
		now := time.Now()
		st[stage] = now.Sub(last)
		last = now
	}
	st["hook+queue"] = 0
	ws := filepath.Join(h.b.TempDir(), "ws")
	h.sh("", "git", "clone", "-q", "--no-checkout", h.bare, ws)
	h.sh(ws, "git", "checkout", "-q", "--detach", sha)
	lap("checkout")
	h.sh("", "docker", "run", "--rm", "--network", "host", "-v", ws+":/workspace", "-w", "/workspace", "-e", "CI_COMMIT_SHA="+sha,
		"--entrypoint", "/bin/sh", h.stepImage, "-e", "-c", strings.Join(h.build, "\n"))
	lap("build step")
	ctxDir := filepath.Join(h.b.TempDir(), "ctx")
	os.MkdirAll(filepath.Join(ctxDir, "files"), 0o755)
	bin, err := os.ReadFile(filepath.Join(ws, "out", "echo"))
	if err != nil {
		h.b.Fatal(err)
	}
	os.WriteFile(filepath.Join(ctxDir, "files", "0"), bin, 0o755)
	ref := fmt.Sprintf("%s/bench/direct:%d", h.reg, n)
	// garrison's Dockerfile, labels and all: the same image.
	prod := images.Product{Name: "bench/direct", Version: strconv.Itoa(n), Base: "scratch", Files: []images.File{{From: "out/echo", To: "/echo"}},
		Entrypoint: []string{"/echo"}, Cmd: []string{"--register=false"}, Revision: sha, Source: h.bare, RunID: fmt.Sprintf("echo.%d", n), Committer: "Mei <mei@ktv.example>"}
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(prod.Dockerfile()), 0o644)
	h.lastRef = ref
	h.sh("", "docker", "build", "-q", "--network", "host", "-t", ref, ctxDir)
	h.sh("", "docker", "push", "-q", ref)
	lap("image+push")
	// The same image the way garrison makes it, docker import, timed
	// apart: the fastest by hand, outside the total.
	importRef := ref + "-import"
	h.importRef = importRef
	rootDir := filepath.Join(h.b.TempDir(), "root")
	os.MkdirAll(rootDir, 0o755)
	os.WriteFile(filepath.Join(rootDir, "echo"), bin, 0o755)
	args := []string{"import"}
	for _, line := range strings.Split(strings.TrimSpace(prod.Dockerfile()), "\n")[2:] { // after FROM and COPY
		args = append(args, "-c", line)
	}
	h.sh("", "sh", append([]string{"-c", `ref=$1; shift; tar -C "$0" -c . | docker "$@" - "$ref" >/dev/null && docker push -q "$ref"`,
		rootDir, importRef}, args...)...)
	st["image+push by import"] = time.Since(last)
	importTook := st["image+push by import"]
	last = time.Now()
	alpha, url := h.start(ref)
	lap("alpha deploy")
	script := strings.ReplaceAll(h.test, "$ALPHA_URL", url)
	h.sh("", "docker", "run", "--rm", "--network", "host", "-v", ws+":/workspace", "-w", "/workspace",
		"--entrypoint", "/bin/sh", h.stepImage, "-e", "-c", script)
	h.sh(ws, "sh", "-e", "-c", script) // the warm runner's shell
	lap("tests")
	h.sh("", "docker", "rm", "-f", alpha)
	lap("alpha destroy")
	for _, env := range []*string{&h.qa, &h.production} {
		id, _ := h.start(ref)
		if *env != "" {
			h.sh("", "docker", "rm", "-f", *env)
		}
		*env = id
		if env == &h.qa {
			lap("promote qa")
		} else {
			lap("promote production")
		}
	}
	st["registered"] = 0
	return st, time.Since(start) - importTook
}
