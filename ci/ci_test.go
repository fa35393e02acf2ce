package ci_test

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
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/ci"
	"github.com/garrisonhq/garrison/ci/internal/citest"
	"github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/gittest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/registrytest"
)

type server struct {
	t    *testing.T
	url  string
	repo *gittest.Repo
	img  string
	reg  string
}

func start(t *testing.T, withRegistry bool) *server {
	t.Helper()
	gin.SetMode(gin.TestMode)
	etcd := etcdtest.New(t).Client(t)
	d := dockertest.Client(t)
	s := &server{t: t, repo: gittest.New(t), img: citest.Busybox(t, d)}
	if withRegistry {
		s.reg = registrytest.Start(t)
	}
	dir := t.TempDir()
	projects := filepath.Join(dir, "projects.yaml")
	os.WriteFile(projects, []byte(fmt.Sprintf("projects:\n  - name: account\n    repo: %s\n    secret: hook-secret\n    branches: [main]\n", s.repo.Bare)), 0o600)
	r := gin.New()
	stop, err := ci.Start(context.Background(), r, ci.Config{Etcd: etcd, Docker: d, Namespace: dockertest.UniqueName("ci-test-"),
		DataDir: dir, Node: "test", Registry: s.reg, ProjectsFile: projects, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(func() { srv.Close(); stop() })
	s.url = srv.URL
	// The bare repository tells garrison about pushes.
	script, _ := os.ReadFile("hooks/post-receive")
	os.WriteFile(filepath.Join(s.repo.Bare, "hooks", "post-receive"), script, 0o755)
	gittest.Git(t, s.repo.Bare, "config", "garrison.url", s.url)
	gittest.Git(t, s.repo.Bare, "config", "garrison.project", "account")
	gittest.Git(t, s.repo.Bare, "config", "garrison.token", "hook-secret")
	return s
}

func (s *server) do(method, path, body string) (int, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (s *server) getRun(id string) run.Run {
	s.t.Helper()
	code, b := s.do("GET", "/api/v1/runs/"+id, "")
	var x run.Run
	if code != http.StatusOK || json.Unmarshal(b, &x) != nil {
		s.t.Fatalf("GET run %s: %d %s", id, code, b)
	}
	return x
}

func (s *server) wait(id string, want run.State) run.Run {
	s.t.Helper()
	var x run.Run
	poll.Until(s.t, 2*time.Minute, "run "+id+" "+string(want), func() (bool, string) {
		x = s.getRun(id)
		return x.State == want, string(x.State) + " " + x.Reason
	})
	return x
}

func (s *server) pipeline(commands ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "app: /ktv/account\nbuild:\n  image: %s\n  commands:\n", s.img)
	for _, c := range commands {
		fmt.Fprintf(&b, "    - %q\n", c)
	}
	b.WriteString("image:\n  base: " + s.img + "\n  files: [{from: out, to: /out}]\n")
	return b.String()
}

// TestPushToImage: a push to a bare repository runs the post-receive hook,
// which queues a run through the generic hook; the run builds in a fresh
// container and pushes the product image; the API shows the run, its
// log while it runs, and filters runs.
func TestPushToImage(t *testing.T) {
	s := start(t, true)
	sha := s.repo.Commit("first", map[string]string{".garrison.yml": s.pipeline("mkdir -p out", "echo $CI_COMMIT_SHA > out/rev", "echo building; sleep 1; echo built")})
	out := s.repo.Push()
	if !strings.Contains(out, `"run":"account.1"`) {
		t.Fatalf("push output:\n%s", out)
	}
	// Follow the log while the run is in flight: the response ends when
	// the run does, with everything it wrote.
	resp, err := http.Get(s.url + "/api/v1/runs/account.1/log")
	if err != nil {
		t.Fatal(err)
	}
	logText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	x := s.getRun("account.1")
	if x.State != run.Passed {
		t.Fatalf("the followed log ended while the run is %s %s:\n%s", x.State, x.Reason, logText)
	}
	for _, want := range []string{"*** checkout " + sha, "building\n", "built\n", "*** pushed " + s.reg + "/ktv/account:1-" + sha[:12], "*** passed"} {
		if !bytes.Contains(logText, []byte(want)) {
			t.Errorf("log lacks %q:\n%s", want, logText)
		}
	}
	if x.Push.After != sha || x.Push.Committer.Email != "mei@ktv.example" || x.Image != s.reg+"/ktv/account:1-"+sha[:12] {
		t.Errorf("run = %+v", x)
	}
	d := dockertest.Client(t)
	t.Cleanup(func() {
		d.ImageRemove(context.Background(), x.Image, image.RemoveOptions{Force: true})
		d.ImageRemove(context.Background(), "ktv/account:"+x.Version, image.RemoveOptions{Force: true})
	})

	// The same project hears from a GitHub-format webhook too, signed with
	// its secret; a forged copy is refused and runs nothing.
	sha2 := s.repo.Commit("second", map[string]string{"CHANGES": "2"})
	// Pushed with the post-receive hook unconfigured: GitHub tells this time.
	gittest.Git(t, s.repo.Bare, "config", "--unset", "garrison.token")
	gittest.Git(t, s.repo.Work, "push", "-q", "origin", "main")
	gittest.Git(t, s.repo.Bare, "config", "garrison.token", "hook-secret")
	payload, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": sha, "after": sha2, "deleted": false,
		"repository": map[string]any{"full_name": "ktv/account", "clone_url": s.repo.Bare},
		"pusher":     map[string]any{"name": "mei", "email": "mei@ktv.example"},
		"head_commit": map[string]any{"id": sha2, "message": "second",
			"committer": map[string]any{"name": "Mei", "email": "mei@ktv.example"}},
		"commits": []any{map[string]any{"id": sha2, "modified": []string{"CHANGES"}}},
	})
	mac := hmac.New(sha256.New, []byte("hook-secret"))
	mac.Write(payload)
	post := func(sig string) (int, string) {
		req, _ := http.NewRequest("POST", s.url+"/api/v1/hooks/github?project=account", bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", "6b1c0a2e-0000-11f0-9e6a-0242ac120002")
		req.Header.Set("X-Hub-Signature-256", "sha256="+sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(strings.Repeat("0", 64)); code != http.StatusUnauthorized {
		t.Errorf("forged GitHub delivery: %d %s", code, body)
	}
	if code, body := post(hex.EncodeToString(mac.Sum(nil))); code != http.StatusAccepted || !strings.Contains(body, `"run":"account.2"`) {
		t.Fatalf("GitHub delivery: %d %s", code, body)
	}
	if x2 := s.wait("account.2", run.Passed); x2.Push.Provider != "github" || x2.Push.After != sha2 {
		t.Errorf("run 2 = %+v", x2)
	} else {
		t.Cleanup(func() {
			d.ImageRemove(context.Background(), x2.Image, image.RemoveOptions{Force: true})
			d.ImageRemove(context.Background(), "ktv/account:"+x2.Version, image.RemoveOptions{Force: true})
		})
	}

	// A branch the project does not build starts nothing.
	gittest.Git(t, s.repo.Work, "checkout", "-q", "-b", "feature")
	s.repo.Commit("feature", map[string]string{"f": "f"})
	if out := gittest.Git(t, s.repo.Work, "push", "origin", "feature"); !strings.Contains(out, "matches no branch filter") {
		t.Errorf("feature push output:\n%s", out)
	}

	code, b := s.do("GET", "/api/v1/runs?project=account&state=passed", "")
	var list struct{ Runs []run.Run }
	json.Unmarshal(b, &list)
	if code != http.StatusOK || len(list.Runs) != 2 || list.Runs[0].ID != "account.2" {
		t.Errorf("list: %d %s", code, b)
	}
	code, b = s.do("GET", "/api/v1/runs?state=failed", "")
	json.Unmarshal(b, &list)
	if code != http.StatusOK || len(list.Runs) != 0 {
		t.Errorf("failed runs: %d %s", code, b)
	}
	if code, b := s.do("GET", "/api/v1/runs?state=bogus", ""); code != http.StatusUnprocessableEntity || !strings.Contains(string(b), `"path":"/state"`) {
		t.Errorf("bad state filter: %d %s", code, b)
	}
	if code, _ := s.do("GET", "/api/v1/runs/account.99", ""); code != http.StatusNotFound {
		t.Errorf("unknown run: %d", code)
	}
	if code, _ := s.do("POST", "/api/v1/runs/account.1/cancel", ""); code != http.StatusConflict {
		t.Errorf("cancel of a finished run: %d, want 409", code)
	}
}

func TestCancelThroughTheAPI(t *testing.T) {
	s := start(t, false)
	s.repo.Commit("slow", map[string]string{".garrison.yml": s.pipeline("echo started", "sleep 600")})
	s.repo.Push()
	resp, err := http.Get(s.url + "/api/v1/runs/account.1/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("log ended before the step started: %v", err)
		}
		if line == "started\n" {
			break
		}
	}
	if code, b := s.do("POST", "/api/v1/runs/account.1/cancel", ""); code != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", code, b)
	}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "*** cancelled: cancelled by request") {
		t.Errorf("log after cancel:\n%s", rest)
	}
	if x := s.wait("account.1", run.Cancelled); x.Reason != "cancelled by request" {
		t.Errorf("run = %+v", x)
	}
}

func TestProjectsAPINeverShowsSecrets(t *testing.T) {
	s := start(t, false)
	code, b := s.do("GET", "/api/v1/projects/account", "")
	if code != http.StatusOK || strings.Contains(string(b), "hook-secret") || !strings.Contains(string(b), `"hasSecret":true`) {
		t.Fatalf("GET: %d %s", code, b)
	}
	code, b = s.do("PUT", "/api/v1/projects/billing", `{"repo":"/srv/git/billing.git","secret":"s3cret-value","secrets":{"NPM_TOKEN":"tok-value"},"paths":["src/**"]}`)
	if code != http.StatusCreated || strings.Contains(string(b), "s3cret-value") || strings.Contains(string(b), "tok-value") ||
		!strings.Contains(string(b), `"secretNames":["NPM_TOKEN"]`) {
		t.Fatalf("PUT new: %d %s", code, b)
	}
	// Written back without the secrets: they are kept.
	code, b = s.do("PUT", "/api/v1/projects/billing", `{"repo":"/srv/git/billing2.git","maxConcurrent":2}`)
	if code != http.StatusOK || !strings.Contains(string(b), `"hasSecret":true`) || !strings.Contains(string(b), `"secretNames":["NPM_TOKEN"]`) {
		t.Fatalf("PUT update: %d %s", code, b)
	}
	code, b = s.do("PUT", "/api/v1/projects/new", `{"repo":"ext::sh -c x","maxConcurrent":100}`)
	var fe struct {
		Message string
		Details []struct {
			Path   string
			Errors []string
		}
	}
	json.Unmarshal(b, &fe)
	if code != http.StatusUnprocessableEntity || len(fe.Details) != 3 || fe.Details[0].Path != "/repo" {
		t.Errorf("invalid PUT: %d %s", code, b)
	}
	if code, _ := s.do("PUT", "/api/v1/projects/new", `{"repo":"r","secret":"s","colour":"red"}`); code != http.StatusBadRequest {
		t.Errorf("unknown field: %d, want 400", code)
	}
	if code, _ := s.do("PUT", "/api/v1/projects/new", `{"repo":"`+strings.Repeat("x", 70<<10)+`"}`); code != http.StatusRequestEntityTooLarge {
		t.Errorf("large body: %d, want 413", code)
	}
	code, b = s.do("GET", "/api/v1/projects", "")
	if code != http.StatusOK || strings.Contains(string(b), "s3cret-value") || strings.Contains(string(b), "hook-secret") || !strings.Contains(string(b), "billing2") {
		t.Errorf("list: %d %s", code, b)
	}
	if code, _ := s.do("DELETE", "/api/v1/projects/billing", ""); code != http.StatusNoContent {
		t.Errorf("delete: %d", code)
	}
	if code, _ := s.do("GET", "/api/v1/projects/billing", ""); code != http.StatusNotFound {
		t.Errorf("after delete: %d", code)
	}
}
