package ci_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/ci"
	"github.com/garrisonhq/garrison/ci/internal/citest"
	"github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/images"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/gittest"
	"github.com/garrisonhq/garrison/internal/registrytest"
)

// BenchmarkPushToImage measures a push's way to a pushed product image
// through garrison (post-receive hook, webhook, queue, checkout, build step
// in a fresh container, image build, push) next to the same work done
// directly with git and the docker command (clone, `docker run` of the
// step, `docker build` of garrison's Dockerfile, `docker push`) in the
// same run. It reports both, their ratio, garrison's overhead, and
// garrison's time by stage.
func BenchmarkPushToImage(b *testing.B) {
	gin.SetMode(gin.ReleaseMode)
	etcd := etcdtest.New(b).Client(b)
	d := dockertest.Client(b)
	img := citest.Busybox(b, d)
	reg := registrytest.Start(b)
	repo := gittest.New(b)
	dir := b.TempDir()
	projects := filepath.Join(dir, "projects.yaml")
	os.WriteFile(projects, []byte(fmt.Sprintf("projects:\n  - name: bench\n    repo: %s\n    secret: s\n    keepRuns: 1000\n", repo.Bare)), 0o600)
	r := gin.New()
	stop, err := ci.Start(context.Background(), r, ci.Config{Etcd: etcd, Docker: d, Namespace: dockertest.UniqueName("ci-bench-"),
		DataDir: dir, Node: "bench", Registry: reg, ProjectsFile: projects, Poll: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(r)
	b.Cleanup(func() { srv.Close(); stop() })
	script, _ := os.ReadFile("hooks/post-receive")
	os.WriteFile(filepath.Join(repo.Bare, "hooks", "post-receive"), script, 0o755)
	gittest.Git(b, repo.Bare, "config", "garrison.url", srv.URL)
	gittest.Git(b, repo.Bare, "config", "garrison.project", "bench")
	gittest.Git(b, repo.Bare, "config", "garrison.token", "s")
	commands := []string{"mkdir -p out", "echo $CI_COMMIT_SHA > out/rev"}
	file := fmt.Sprintf("app: /bench/app\nbuild:\n  image: %s\n  commands: [%q, %q]\nimage:\n  files: [{from: out/rev, to: /rev}]\n", img, commands[0], commands[1])
	runs := run.NewStore(etcd)
	ctx := context.Background()

	var total, queue, checkout, step, imageStage, direct time.Duration
	var refs []string
	b.Cleanup(func() {
		for _, ref := range refs {
			d.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true})
		}
	})
	n := 0
	for b.Loop() {
		n++
		repo.Commit(fmt.Sprintf("change %d", n), map[string]string{".garrison.yml": file, "n": fmt.Sprint(n)})
		start := time.Now()
		out := repo.Push()
		id := fmt.Sprintf("bench.%d", n)
		if !strings.Contains(out, `"run":"`+id+`"`) {
			b.Fatalf("push output:\n%s", out)
		}
		var x *run.Run
		for {
			x, err = runs.Get(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			if x.State.Final() {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		end := time.Now()
		if x.State != run.Passed {
			b.Fatalf("run %s %s: %s", id, x.State, x.Reason)
		}
		refs = append(refs, x.Image, "bench/app:"+x.Version)
		total += end.Sub(start)
		queue += x.Started.Sub(start)
		checkout += x.Steps[0].Started.Sub(*x.Started)
		step += x.Steps[0].Finished.Sub(*x.Steps[0].Started)
		imageStage += x.Finished.Sub(*x.Steps[0].Finished)

		t0 := time.Now()
		ref := directBuild(b, repo.Bare, gittest.Git(b, repo.Work, "rev-parse", "HEAD"), img, commands, reg, n)
		direct += time.Since(t0)
		refs = append(refs, ref)
	}
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(n) }
	b.ReportMetric(ms(total), "ms/push-to-image")
	b.ReportMetric(ms(direct), "ms/direct")
	b.ReportMetric(float64(total)/float64(direct), "ratio")
	b.ReportMetric(ms(total-direct), "ms-overhead")
	b.ReportMetric(ms(queue), "ms-hook+queue")
	b.ReportMetric(ms(checkout), "ms-checkout")
	b.ReportMetric(ms(step), "ms-build-step")
	b.ReportMetric(ms(imageStage), "ms-image+push")
}

// directBuild does a run's work by hand with git and the docker command.
func directBuild(b *testing.B, repo, rev, img string, commands []string, reg string, n int) string {
	b.Helper()
	ws := filepath.Join(b.TempDir(), "ws")
	sh := func(name string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Env = append(gittest.Env(), "DOCKER_BUILDKIT=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	sh("git", "clone", "-q", "--no-checkout", repo, ws)
	sh("git", "-C", ws, "checkout", "-q", "--detach", rev)
	sh("docker", "run", "--rm", "--network", "host", "-v", ws+":/workspace", "-w", "/workspace", "-e", "CI_COMMIT_SHA="+rev,
		"--entrypoint", "/bin/sh", img, "-c", strings.Join(commands, "\n"))
	ctxDir := filepath.Join(b.TempDir(), "ctx")
	os.MkdirAll(filepath.Join(ctxDir, "files"), 0o755)
	data, _ := os.ReadFile(filepath.Join(ws, "out", "rev"))
	os.WriteFile(filepath.Join(ctxDir, "files", "0"), data, 0o644)
	ref := fmt.Sprintf("%s/bench/direct:%d", reg, n)
	// garrison's Dockerfile for the run, labels and all: the same image.
	prod := images.Product{Name: "bench/direct", Version: fmt.Sprint(n), Base: "scratch", Files: []images.File{{From: "out/rev", To: "/rev"}},
		Revision: rev, Source: repo, RunID: fmt.Sprintf("bench.%d", n), Committer: "Mei <mei@ktv.example>"}
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(prod.Dockerfile()), 0o644)
	sh("docker", "build", "-q", "--no-cache", "--network", "host", "-t", ref, ctxDir)
	sh("docker", "push", "-q", ref)
	return ref
}
