package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/gittest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// testCLIConfirm: a destructive command asks on a terminal (script(1)
// gives it one) and does nothing unless told yes; --yes and a stdin that
// is not a terminal are not asked.
func testCLIConfirm(t *testing.T, s *cliStack) {
	const id = "/cli/confirm"
	s.runEnv(s.webApp(id, 1, ""), s.env(), "apps", "create", "-f", "-", "--wait")
	onTerminal := func(answer string, args ...string) (string, int) {
		cmd := exec.Command("script", "-q", "-e", "-c", garrisonBinary+" "+strings.Join(args, " "), "/dev/null")
		cmd.Env = s.env()
		cmd.Stdin = strings.NewReader(answer)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := onTerminal("n\n", "apps", "rm", id)
	if code != 1 || !strings.Contains(out, "remove /cli/confirm and stop its tasks? [y/N]") || !strings.Contains(out, "not confirmed") {
		t.Fatalf("apps rm answered n: exit %d\n%s", code, out)
	}
	if r := s.run("apps", "show", id); r.code != 0 {
		t.Fatalf("the app is gone after a no: %s", r)
	}
	if out, code = onTerminal("y\n", "apps", "rm", id, "--wait"); code != 0 || !strings.Contains(out, "removing /cli/confirm: deployment") {
		t.Fatalf("apps rm answered y: exit %d\n%s", code, out)
	}
	if r := s.run("apps", "show", id); r.code != 1 || !strings.Contains(r.stderr, "404") {
		t.Fatalf("the app is still there after a yes: %s", r)
	}
	// --yes on a terminal: no question.
	s.runEnv(s.webApp(id, 1, ""), s.env(), "apps", "create", "-f", "-", "--wait")
	if out, code = onTerminal("", "apps", "rm", id, "--yes", "--wait"); code != 0 || strings.Contains(out, "[y/N]") {
		t.Fatalf("apps rm --yes: exit %d\n%s", code, out)
	}
	// Not a terminal (the other tests' stdin): no question either.
	if r := s.run("runs", "cancel", "nothing.1"); r.code != 1 || strings.Contains(r.stderr, "[y/N]") || !strings.Contains(r.stderr, "404") {
		t.Fatalf("runs cancel without a terminal: %s", r)
	}
}

// TestCLIPipeline drives the pipeline commands against a real `garrison
// up`: a push starts a run whose build step runs busybox in Docker; runs
// lists and shows it, runs log --follow streams it until runs cancel ends
// it. Releases recorded in the registry's etcd are listed, promoted (to a
// Docker app) and rolled back, and a promotion the rules forbid fails.
func TestCLIPipeline(t *testing.T) {
	docker := dockertest.Client(t)
	stepImage := dockertest.Busybox(t, docker)
	const serviceImage = "garrison-test/testserver:cli"
	dockertest.BuildGoImage(t, docker, serviceImage, dockertest.TestServerPackage)

	repo := gittest.New(t)
	projects := filepath.Join(t.TempDir(), "projects.yaml")
	os.WriteFile(projects, []byte("projects:\n  - name: slow\n    repo: "+repo.Bare+"\n    secret: hook-secret\n"), 0o600)
	s := startCLIStack(t, "--ci-projects", projects)
	const app = "/cli/shop"
	t.Cleanup(func() { removeAppContainers(docker, app) })

	t.Run("Runs", func(t *testing.T) {
		s.t = t
		repo.HookGarrison("../../ci/hooks/post-receive", "http://"+s.addr, "slow", "hook-secret")
		rev := repo.Commit("slow build", map[string]string{".garrison.yml": "app: /cli/slow\nbuild:\n  image: " + stepImage +
			"\n  commands: [\"echo started\", \"sleep 600\"]\nimage:\n  files: [{from: x, to: /x}]\n"})
		if out := repo.Push(); !strings.Contains(out, `"run":"slow.1"`) {
			t.Fatalf("push output:\n%s", out)
		}
		poll.Until(t, 2*time.Minute, "the run runs", func() (bool, string) {
			out := s.ok("runs", "--state", "running")
			return strings.Contains(out, "slow.1"), out
		})
		out := s.ok("runs", "--project", "slow")
		if h := tableRows(out)[0]; strings.Join(h, " ") != "ID PROJECT STATE REF REVISION COMMITTER AGE DURATION" {
			t.Fatalf("runs headers %v", h)
		}
		if row := rowOf(t, out, 0, "slow.1"); row[1] != "slow" || row[2] != "running" || row[3] != "main" || row[4] != rev[:12] {
			t.Fatalf("runs row %v (revision %s)", row, rev)
		}
		if out := s.ok("runs", "--state", "passed"); len(tableRows(out)) != 1 {
			t.Fatalf("runs --state passed lists runs:\n%s", out)
		}
		var list []map[string]any
		s.okJSON(&list, "runs")
		if len(list) != 1 || list[0]["id"] != "slow.1" || list[0]["state"] != "running" {
			t.Fatalf("runs -o json: %v", list)
		}
		if r := s.run("runs", "--state", "bogus"); r.code != 1 || !strings.Contains(r.stderr, "422") || !strings.Contains(r.stderr, "/state: must be queued") {
			t.Fatalf("runs --state bogus: %s", r)
		}

		// runs log --follow prints the step's output as it comes, and
		// ends (exit 1: the run did not pass) when the run is cancelled.
		follow, _, followErr := s.command("", s.env(), "runs", "log", "slow.1", "--follow")
		pr, pw := io.Pipe()
		follow.Stdout = pw
		if err := follow.Start(); err != nil {
			t.Fatal(err)
		}
		defer follow.Process.Kill()
		exited := make(chan error, 1)
		go func() { exited <- follow.Wait(); pw.Close() }()
		lines := make(chan string, 64)
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		deadline := time.After(time.Minute)
		for seen := false; !seen; {
			select {
			case line := <-lines:
				seen = strings.Contains(line, "started")
			case <-deadline:
				t.Fatalf("runs log --follow printed no \"started\"; stderr %s", followErr.String())
			}
		}
		if out := s.ok("runs", "log", "slow.1"); !strings.Contains(out, "started") {
			t.Fatalf("runs log:\n%s", out)
		}
		out = s.ok("runs", "show", "slow.1")
		for _, want := range []string{"ID         slow.1", "PROJECT    slow", "STATE      running", "REVISION   " + rev} {
			if !strings.Contains(out, want) {
				t.Errorf("runs show lacks %q:\n%s", want, out)
			}
		}
		if out := s.ok("runs", "cancel", "slow.1"); !strings.HasPrefix(out, "cancelling slow.1 (was running)") {
			t.Fatalf("runs cancel printed %q", out)
		}
		select {
		case err := <-exited:
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(followErr.String(), "run slow.1 cancelled") {
				t.Fatalf("runs log --follow ended with %v: %s", err, followErr.String())
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("runs log --follow still running after the cancel; stderr %s", followErr.String())
		}
		if out := s.ok("runs", "show", "slow.1", "-o", "yaml"); !strings.Contains(out, "state: cancelled") {
			t.Fatalf("runs show -o yaml:\n%s", out)
		}
		if r := s.run("runs", "cancel", "slow.1"); r.code != 1 || !strings.Contains(r.stderr, "409") || !strings.Contains(r.stderr, "already ended: cancelled") {
			t.Fatalf("runs cancel of an ended run: %s", r)
		}
		if r := s.run("runs", "show", "slow.9"); r.code != 1 || !strings.Contains(r.stderr, "404") {
			t.Fatalf("runs show of no run: %s", r)
		}
		if r := s.run("runs", "show"); r.code != 2 {
			t.Fatalf("runs show without an id: %s", r)
		}
		if out := s.ok("__complete", "runs", "show", ""); !strings.Contains(out, "slow.1\tcancelled") {
			t.Fatalf("completion of runs show:\n%s", out)
		}
		if out := s.ok("__complete", "runs", "--state", ""); !strings.Contains(out, "cancelled") {
			t.Fatalf("completion of --state:\n%s", out)
		}
	})

	t.Run("Releases", func(t *testing.T) {
		s.t = t
		etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{s.etcd}, DialTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer etcd.Close()
		store := deploy.NewStore(etcd)
		def := map[string]any{"instances": 1, "cpus": 0.01, "mem": 16}
		base := time.Now().Add(-time.Hour).UTC()
		for i, r := range []deploy.Release{
			{Version: "v1", Revision: "1111111111111111", Committer: "Ann", Passed: true, Tests: []deploy.TestResult{{Name: "smoke", Passed: true}}},
			{Version: "v2", Revision: "2222222222222222", Committer: "Bob", Passed: true, Tests: []deploy.TestResult{{Name: "smoke", Passed: true}}},
			{Version: "v3", Revision: "3333333333333333", Committer: "Cy", Passed: false, Tests: []deploy.TestResult{{Name: "smoke", ExitCode: 1}}},
		} {
			r.App, r.Image, r.Project, r.RunID = app, serviceImage, "shop", "shop."+r.Version[1:]
			r.Created, r.Environments, r.Definition = base.Add(time.Duration(i)*time.Minute), []string{"alpha", "production"}, def
			if err := store.Put(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		out := s.ok("releases", app)
		if h := tableRows(out)[0]; strings.Join(h, " ") != "VERSION REVISION COMMITTER TESTS APPROVALS RUNS IN RUN AGE" {
			t.Fatalf("releases headers %v", h)
		}
		if row := rowOf(t, out, 0, "v3"); row[1] != "333333333333" || row[2] != "Cy" || row[3] != "FAILED 0/1: smoke" || row[4] != "-" || row[5] != "-" {
			t.Fatalf("releases row v3 %v", row)
		}
		if r := s.run("releases", "promote", app, "v3", "production"); r.code != 1 || !strings.Contains(r.stderr, "failed its tests") {
			t.Fatalf("promote of a failed release: %s", r)
		}
		if r := s.run("releases", "rollback", app, "production"); r.code != 1 || !strings.Contains(r.stderr, "no earlier release") {
			t.Fatalf("rollback with nothing before: %s", r)
		}
		if out := s.ok("releases", "promote", app, "v1", "production", "--by", "cli-test"); out != "production now runs v1 of /cli/shop\n" {
			t.Fatalf("promote v1 printed %q", out)
		}
		s.ok("releases", "promote", app, "v2", "production")
		out = s.ok("releases", app)
		if row := rowOf(t, out, 0, "v2"); row[3] != "passed 1/1" || row[5] != "production" {
			t.Fatalf("releases row v2 after promotion %v", row)
		}
		if row := rowOf(t, out, 0, "production"); row[1] != app || row[2] != "v2" || row[3] != "v1" {
			t.Fatalf("environment row %v", row)
		}
		var back map[string]any
		s.okJSON(&back, "releases", "rollback", app, "production")
		if back["version"] != "v1" || back["environment"] != "production" {
			t.Fatalf("rollback -o json: %v", back)
		}
		var doc struct {
			Environments []struct {
				Current string `json:"current"`
				History []struct {
					By       string `json:"by"`
					Rollback bool   `json:"rollback"`
				} `json:"history"`
			} `json:"environments"`
		}
		s.okJSON(&doc, "releases", app)
		if len(doc.Environments) != 1 || doc.Environments[0].Current != "v1" || len(doc.Environments[0].History) != 3 ||
			// With credentials on, the release records the authenticated
			// caller (a bearer token's --ci-token-identity), not --by.
			doc.Environments[0].History[0].By != "token" || !doc.Environments[0].History[2].Rollback {
			t.Fatalf("releases -o json after the rollback: %+v", doc)
		}
		var image struct {
			Container struct {
				Docker struct {
					Image string `json:"image"`
				} `json:"docker"`
			} `json:"container"`
			TasksRunning int `json:"tasksRunning"`
		}
		s.okJSON(&image, "apps", "show", app)
		if image.Container.Docker.Image != serviceImage || image.TasksRunning != 1 {
			t.Fatalf("production app after the rollback: %+v", image)
		}
		if out := s.ok("__complete", "releases", "promote", app, ""); !strings.Contains(out, "v1\t111111111111 passed 1/1") || !strings.Contains(out, "v3\t333333333333 FAILED 0/1: smoke") {
			t.Fatalf("completion of promote's VERSION:\n%s", out)
		}
		if out := s.ok("__complete", "releases", "promote", app, "v1", ""); !strings.Contains(out, "production\t") || strings.Contains(out, "alpha") {
			t.Fatalf("completion of promote's ENVIRONMENT:\n%s", out)
		}
		if out := s.ok("__complete", "releases", "rollback", app, ""); !strings.Contains(out, "production\truns v1") {
			t.Fatalf("completion of rollback's ENVIRONMENT:\n%s", out)
		}
		if r := s.run("releases", "promote", app, "v1"); r.code != 2 {
			t.Fatalf("promote without an environment: %s", r)
		}
		if r := s.run("releases", "nothing/here"); r.code != 0 || len(tableRows(r.stdout)) != 1 {
			t.Fatalf("releases of an app without any: %s", r)
		}
		s.ok("apps", "rm", app, "--wait", "--force")
	})
}
