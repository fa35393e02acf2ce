package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/garrisontest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/registrar"
)

// cliStack is a `garrison up` (process driver apps, auth by token) for the
// command-line client to talk to.
type cliStack struct {
	t       testing.TB
	addr    string // host:port of the API
	etcd    string // client URL of the embedded etcd
	token   string
	dataDir string
	server  string // path of the test server binary, a task's command
}

const cliToken = "cli-test-token"

// startCLIStack starts garrison with its API on port 0 (read back from
// the log) and its embedded etcd on a port pair testport reserved.
func startCLIStack(t testing.TB, extraArgs ...string) *cliStack {
	t.Helper()
	server, cleanup, err := testbin.Build(dockertest.TestServerPackage, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	s := &cliStack{t: t, token: cliToken, dataDir: t.TempDir(), server: server, etcd: "http://" + freeAddrs(t, 1)[0]}
	args := append([]string{"up", "--addr", "127.0.0.1:0", "--etcd-listen", s.etcd, "--data-dir", s.dataDir,
		"--task-ports", "15000-15199", "--drain-delay", "50ms",
		"--auth-token", cliToken, "--auth-user", "ops", "--auth-password", "s3cret"}, extraArgs...)
	p := startGarrison(t, args...)
	s.addr = p.Addr(t, 60*time.Second)
	return s
}

// cliResult is one finished run of the client.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// env is the client's environment: this machine's, without GARRISON_*
// settings, plus the stack's address and token.
func (s *cliStack) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GARRISON_") {
			env = append(env, kv)
		}
	}
	return append(append(env, "GARRISON_ADDR="+s.addr, "GARRISON_TOKEN="+s.token), extra...)
}

func (s *cliStack) command(stdin string, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *garrisontest.Buffer) {
	cmd := exec.Command(garrisonBinary, args...)
	cmd.Env = env
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout bytes.Buffer
	stderr := &garrisontest.Buffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	return cmd, &stdout, stderr
}

// runEnv runs `garrison args...` to its end.
func (s *cliStack) runEnv(stdin string, env []string, args ...string) cliResult {
	s.t.Helper()
	cmd, stdout, stderr := s.command(stdin, env, args...)
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		s.t.Fatalf("garrison %v still running after 3m; stderr:\n%s", args, stderr.String())
	}
	code := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func (s *cliStack) run(args ...string) cliResult {
	s.t.Helper()
	return s.runEnv("", s.env(), args...)
}

// ok runs a command that must succeed and returns its stdout.
func (s *cliStack) ok(args ...string) string {
	s.t.Helper()
	r := s.run(args...)
	if r.code != 0 {
		s.t.Fatalf("garrison %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// okJSON runs a command with -o json and decodes its stdout.
func (s *cliStack) okJSON(v any, args ...string) {
	s.t.Helper()
	out := s.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		s.t.Fatalf("garrison %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// tableRows splits a table into rows of cells (columns are two or more
// spaces apart; a cell never holds two spaces in a row).
func tableRows(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		rows = append(rows, regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1))
	}
	return rows
}

// rowOf finds the table row whose first cell (or the cell at col) is key.
func rowOf(t *testing.T, out string, col int, key string) []string {
	t.Helper()
	for _, r := range tableRows(out) {
		if len(r) > col && r[col] == key {
			return r
		}
	}
	t.Fatalf("no row with %q in column %d:\n%s", key, col, out)
	return nil
}

type cliApp struct {
	ID           string            `json:"id"`
	Instances    int               `json:"instances"`
	TasksRunning int               `json:"tasksRunning"`
	TasksHealthy int               `json:"tasksHealthy"`
	Env          map[string]string `json:"env"`
	Tasks        []struct {
		ID string `json:"id"`
	} `json:"tasks"`
}

func (s *cliStack) webApp(id string, instances int, extra string) string {
	return fmt.Sprintf(`id: %s
cmd: %s
instances: %d
cpus: 0.01
mem: 16
healthChecks:
  - protocol: HTTP
    path: /health
    gracePeriodSeconds: 10
    intervalSeconds: 2
    timeoutSeconds: 1
%s`, id, s.server, instances, extra)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCLI(t *testing.T) {
	s := startCLIStack(t, "--autoscale-interval", "300ms")
	t.Run("Apps", func(t *testing.T) { s.t = t; testCLIApps(t, s) })
	t.Run("WaitOnFailingDeployment", func(t *testing.T) { s.t = t; testCLIWaitFails(t, s) })
	t.Run("WaitByPolling", func(t *testing.T) { s.t = t; testCLIWaitByPolling(t, s) })
	t.Run("Errors", func(t *testing.T) { s.t = t; testCLIErrors(t, s) })
	t.Run("Registry", func(t *testing.T) { s.t = t; testCLIRegistry(t, s) })
	t.Run("RulesAndDecisions", func(t *testing.T) { s.t = t; testCLIRulesDecisions(t, s) })
	t.Run("Events", func(t *testing.T) { s.t = t; testCLIEvents(t, s) })
	t.Run("Confirm", func(t *testing.T) { s.t = t; testCLIConfirm(t, s) })
	t.Run("AuthVersionCompletion", func(t *testing.T) { s.t = t; testCLIAuthVersionCompletion(t, s) })
}

func testCLIApps(t *testing.T, s *cliStack) {
	const id = "/cli/web"
	file := writeFile(t, "web.yaml", s.webApp(id, 2, ""))
	out := s.ok("apps", "create", "-f", file, "--wait")
	if !regexp.MustCompile(`^created /cli/web: deployment [0-9a-f-]+ finished in `).MatchString(out) {
		t.Fatalf("apps create --wait printed %q", out)
	}

	// Table for people: the app is running with its two healthy tasks.
	out = s.ok("apps", "ls")
	if h := tableRows(out)[0]; strings.Join(h, " ") != "ID STATUS RUNNING HEALTHY STAGED CPUS MEM UPDATED" {
		t.Fatalf("apps ls headers %v", h)
	}
	if row := rowOf(t, out, 0, id); row[1] != "Running" || row[2] != "2/2" || row[3] != "2" || row[5] != "0.01" || row[6] != "16" {
		t.Fatalf("apps ls row %v", row)
	}
	// -o wide adds columns: unhealthy count, what runs, deployments, version.
	out = s.ok("apps", "ls", "-o", "wide")
	if h := tableRows(out)[0]; strings.Join(h, " ") != "ID STATUS RUNNING HEALTHY STAGED CPUS MEM UPDATED UNHEALTHY IMAGE/COMMAND DEPLOYMENTS VERSION" {
		t.Fatalf("apps ls -o wide headers %v", h)
	}
	if row := rowOf(t, out, 0, id); row[8] != "0" || row[9] != s.server || row[10] != "-" || !strings.HasPrefix(row[11], "20") {
		t.Fatalf("apps ls -o wide row %v", row)
	}
	var apps []cliApp
	s.okJSON(&apps, "apps", "ls")
	if len(apps) != 1 || apps[0].ID != id || apps[0].Instances != 2 || apps[0].TasksHealthy != 2 {
		t.Fatalf("apps ls -o json: %+v", apps)
	}
	var yamlApps []map[string]any
	if err := yaml.Unmarshal([]byte(s.ok("apps", "ls", "-o", "yaml")), &yamlApps); err != nil || len(yamlApps) != 1 || yamlApps[0]["id"] != id {
		t.Fatalf("apps ls -o yaml: %v %v", yamlApps, err)
	}

	var one cliApp
	s.okJSON(&one, "apps", "show", "cli/web")
	if one.ID != id || len(one.Tasks) != 2 {
		t.Fatalf("apps show -o json: %+v", one)
	}
	out = s.ok("apps", "show", id)
	for _, want := range []string{"ID         /cli/web", "STATUS     Running", "INSTANCES  2 (running 2, healthy 2, unhealthy 0, staged 0)", "COMMAND    " + s.server} {
		if !strings.Contains(out, want) {
			t.Errorf("apps show lacks %q:\n%s", want, out)
		}
	}
	for _, task := range one.Tasks {
		if row := rowOf(t, out, 0, task.ID); row[1] != "RUNNING" || row[2] != "healthy" || row[3] != "127.0.0.1" {
			t.Errorf("apps show task row %v", row)
		}
	}

	out = s.ok("tasks", id, "-o", "wide")
	if h := tableRows(out)[0]; strings.Join(h, " ") != "ID STATE HEALTH HOST PORTS AGE VERSION STAGED STARTED" {
		t.Fatalf("tasks -o wide headers %v", h)
	}
	for _, task := range one.Tasks {
		if row := rowOf(t, out, 0, task.ID); len(row) != 9 || !strings.HasPrefix(row[7], "20") || !strings.HasPrefix(row[8], "20") {
			t.Errorf("tasks -o wide row %v", row)
		}
	}

	// tasks: all apps' (with an APP column) and one app's.
	out = s.ok("tasks")
	if h := tableRows(out)[0]; strings.Join(h, " ") != "APP ID STATE HEALTH HOST PORTS AGE VERSION" {
		t.Fatalf("tasks headers %v", h)
	}
	for _, task := range one.Tasks {
		if row := rowOf(t, out, 1, task.ID); row[0] != id || row[2] != "RUNNING" || row[3] != "healthy" {
			t.Errorf("tasks row %v", row)
		}
	}
	var tasks []map[string]any
	s.okJSON(&tasks, "tasks", id)
	if len(tasks) != 2 || tasks[0]["appId"] != id {
		t.Fatalf("tasks APP -o json: %v", tasks)
	}

	// Shell completion offers app ids (cobra's __complete, as bash and zsh call it).
	if out := s.ok("__complete", "apps", "show", "/cli/"); !strings.Contains(out, id+"\n") {
		t.Errorf("completion of apps show: %q", out)
	}
	// An app id also completes without its leading slash; a second argument
	// gets no app ids; task ids complete for every argument of tasks kill;
	// a prefix that matches nothing offers nothing.
	if out := s.ok("__complete", "apps", "show", "cli/"); !strings.Contains(out, id+"\n") {
		t.Errorf("completion of apps show without the slash: %q", out)
	}
	if out := s.ok("__complete", "apps", "show", id, ""); strings.Contains(out, id) {
		t.Errorf("completion of a second apps show argument offered apps: %q", out)
	}
	for _, args := range [][]string{{"tasks", "kill", ""}, {"tasks", "kill", one.Tasks[0].ID, ""}} {
		out := s.ok(append([]string{"__complete"}, args...)...)
		for _, task := range one.Tasks {
			if !strings.Contains(out, task.ID+"\n") {
				t.Errorf("completion of %v: %q lacks %s", args, out, task.ID)
			}
		}
	}
	if out := s.ok("__complete", "tasks", "kill", "no-such-task"); strings.Contains(out, one.Tasks[0].ID) {
		t.Errorf("completion of a prefix matching nothing: %q", out)
	}

	// scale --wait: three healthy tasks when it returns.
	if out := s.ok("apps", "scale", id, "3", "--wait"); !strings.Contains(out, "scaled /cli/web to 3: deployment") {
		t.Fatalf("apps scale printed %q", out)
	}
	s.okJSON(&one, "apps", "show", id)
	if one.Instances != 3 || one.TasksHealthy != 3 {
		t.Fatalf("after scale --wait: %+v", one)
	}

	// tasks kill: garrison replaces the task.
	victim := one.Tasks[0].ID
	if out := s.ok("tasks", "kill", victim); out != "killed "+victim+"\n" {
		t.Fatalf("tasks kill printed %q", out)
	}
	poll.Until(t, 60*time.Second, "a replacement task", func() (bool, string) {
		var a cliApp
		s.okJSON(&a, "apps", "show", id)
		for _, tk := range a.Tasks {
			if tk.ID == victim {
				return false, "the killed task is still listed"
			}
		}
		return a.TasksHealthy == 3, fmt.Sprintf("%d healthy", a.TasksHealthy)
	})

	// tasks kill --scale --wait: the app shrinks.
	s.okJSON(&one, "apps", "show", id)
	var res map[string]any
	s.okJSON(&res, "tasks", "kill", one.Tasks[0].ID, "--scale", "--wait")
	if res["succeeded"] != true || res["deploymentId"] == "" {
		t.Fatalf("tasks kill --scale --wait -o json: %v", res)
	}
	s.okJSON(&one, "apps", "show", id)
	if one.Instances != 2 || len(one.Tasks) != 2 {
		t.Fatalf("after kill --scale: %+v", one)
	}

	// restart --wait replaces every task.
	before := map[string]bool{one.Tasks[0].ID: true, one.Tasks[1].ID: true}
	s.ok("apps", "restart", id, "--wait")
	s.okJSON(&one, "apps", "show", id)
	for _, tk := range one.Tasks {
		if before[tk.ID] {
			t.Fatalf("task %s survived apps restart --wait", tk.ID)
		}
	}

	// apply -f - (stdin) replaces the definition.
	r := s.runEnv(s.webApp(id, 1, "env:\n  COLOUR: blue\n"), s.env(), "apps", "apply", "-f", "-", "--wait", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"succeeded": true`) {
		t.Fatalf("apps apply -f - --wait: %s", r)
	}
	s.okJSON(&one, "apps", "show", id)
	if one.Instances != 1 || one.Env["COLOUR"] != "blue" {
		t.Fatalf("after apply: %+v", one)
	}

	// rollback to the first version: two instances, no env.
	var versions struct {
		Versions []string `json:"versions"`
	}
	code, body := marathonCallAuth(t, "GET", "http://"+s.addr+"/v2/apps/cli/web/versions", s.token)
	if code != 200 || json.Unmarshal(body, &versions) != nil || len(versions.Versions) < 2 {
		t.Fatalf("versions: %d %s", code, body)
	}
	first := versions.Versions[len(versions.Versions)-1]
	if out := s.ok("apps", "show", id); !strings.Contains(out, "VERSION") {
		t.Fatalf("apps show has no versions:\n%s", out)
	}
	s.ok("apps", "rollback", id, first, "--wait")
	var back cliApp
	s.okJSON(&back, "apps", "show", id)
	if back.Instances != 2 || back.Env["COLOUR"] != "" || back.TasksHealthy != 2 {
		t.Fatalf("after rollback to %s: %+v", first, back)
	}

	// No deployment left: the table is its header alone.
	if out := s.ok("deployments", "ls"); strings.TrimSpace(out) != "ID  APPS  ACTIONS  STEP  AGE" {
		t.Fatalf("deployments ls with none: %q", out)
	}

	// rm --wait: the app and its tasks are gone when it returns.
	s.ok("apps", "rm", id, "--wait")
	s.okJSON(&apps, "apps", "ls")
	if len(apps) != 0 {
		t.Fatalf("apps after rm: %+v", apps)
	}
	r = s.run("apps", "show", id)
	if r.code != 1 || !strings.Contains(r.stderr, "404 App '/cli/web' does not exist") || r.stdout != "" {
		t.Fatalf("apps show of a removed app: %s", r)
	}
}

// marathonCallAuth is a bare GET with the stack's token.
func marathonCallAuth(t *testing.T, method, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

type cliDeployment struct {
	ID           string   `json:"id"`
	AffectedApps []string `json:"affectedApps"`
}

func testCLIWaitFails(t *testing.T, s *cliStack) {
	// A command that exits at once never turns healthy: its deployment
	// never finishes.
	const id = "/cli/crash"
	def := fmt.Sprintf(`{"id":%q,"cmd":"exit 3","instances":1,"cpus":0.01,"mem":16,
		"healthChecks":[{"protocol":"HTTP","path":"/health","gracePeriodSeconds":1,"intervalSeconds":2,"timeoutSeconds":1}]}`, id)
	r := s.runEnv(def, s.env(), "apps", "create", "-f", "-", "--wait", "--timeout", "2s")
	if r.code != 1 || !regexp.MustCompile(`deployment [0-9a-f-]+ still running after 2s`).MatchString(r.stderr) {
		t.Fatalf("create --wait of a crashing app: %s", r)
	}
	var deps []cliDeployment
	s.okJSON(&deps, "deployments", "ls")
	if len(deps) != 1 || len(deps[0].AffectedApps) != 1 || deps[0].AffectedApps[0] != id {
		t.Fatalf("deployments ls -o json: %+v", deps)
	}
	if row := rowOf(t, s.ok("deployments", "ls"), 0, deps[0].ID); row[1] != id || row[2] != "StartApplication "+id || row[3] != "1/1" {
		t.Fatalf("deployments ls row %v", row)
	}
	if out := s.ok("apps", "show", id); !strings.Contains(out, `LAST FAILURE  TASK_FAILED`) || !strings.Contains(out, "exited with status 3") {
		t.Errorf("apps show lacks the last failure:\n%s", out)
	}

	// A waiting scale whose deployment is cancelled fails, with the reason.
	cmd, stdout, stderr := s.command("", s.env(), "apps", "scale", id, "2", "--force", "--wait", "--timeout", "2m")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var scaleID string
	poll.Until(t, 30*time.Second, "the scale deployment", func() (bool, string) {
		var deps []cliDeployment
		s.okJSON(&deps, "deployments", "ls")
		for _, d := range deps {
			if d.ID != "" && strings.Contains(stderr.String(), "waiting for deployment "+d.ID) {
				scaleID = d.ID
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v; stderr %q", deps, stderr.String())
	})
	if out := s.ok("deployments", "cancel", scaleID, "--force"); out != "cancelled "+scaleID+"\n" {
		t.Fatalf("deployments cancel --force printed %q", out)
	}
	err := cmd.Wait()
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("scale --wait of a cancelled deployment: %v\nstdout %s\nstderr %s", err, stdout, stderr.String())
	}
	if want := "deployment " + scaleID + " failed after "; !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), ": cancelled") {
		t.Fatalf("scale --wait stderr lacks %q ... cancelled:\n%s", want, stderr.String())
	}

	// Cancel without --force rolls back with a new deployment, which
	// --wait follows; then remove the app.
	r = s.run("apps", "scale", id, "3", "--force")
	if r.code != 0 {
		t.Fatal(r)
	}
	depID := regexp.MustCompile(`deployment ([0-9a-f-]+)`).FindStringSubmatch(r.stdout)[1]
	r = s.run("deployments", "cancel", depID, "--wait", "--timeout", "1s")
	if r.code != 1 || !strings.Contains(r.stderr, "cancelled "+depID+", rolling back: waiting for deployment") || !strings.Contains(r.stderr, "still running after 1s") {
		t.Fatalf("deployments cancel --wait (a rollback that cannot finish): %s", r)
	}
	s.ok("apps", "rm", id, "--force", "--wait")
}

// Without the event stream (a proxy refuses /v2/events), --wait polls
// /v2/deployments and judges the end from the apps.
func testCLIWaitByPolling(t *testing.T, s *cliStack) {
	target, _ := url.Parse("http://" + s.addr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/events" {
			http.Error(w, `{"message":"no event stream here"}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	env := s.env("GARRISON_ADDR=" + front.URL)

	r := s.runEnv("id: /cli/poll\ncmd: sleep 600\ninstances: 2\ncpus: 0.01\nmem: 16\n", env, "apps", "create", "-f", "-", "--wait")
	if r.code != 0 || !strings.Contains(r.stderr, "following the deployment by polling") || !strings.Contains(r.stdout, "finished in") {
		t.Fatalf("create --wait by polling: %s", r)
	}
	var a cliApp
	s.okJSON(&a, "apps", "show", "/cli/poll")
	if a.TasksRunning != 2 {
		t.Fatalf("after create --wait by polling: %+v", a)
	}

	// A cancelled deployment, seen only by polling, fails: the app runs
	// fewer tasks than it should.
	const id = "/cli/pollcrash"
	def := fmt.Sprintf(`{"id":%q,"cmd":"exit 3","instances":1,"cpus":0.01,"mem":16,
		"healthChecks":[{"protocol":"HTTP","path":"/health","gracePeriodSeconds":1,"intervalSeconds":2,"timeoutSeconds":1}]}`, id)
	if r := s.runEnv(def, s.env(), "apps", "create", "-f", "-"); r.code != 0 {
		t.Fatal(r)
	}
	cmd, _, stderr := s.command("", env, "apps", "scale", id, "2", "--force", "--wait", "--timeout", "2m")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var depID string
	poll.Until(t, 30*time.Second, "the scale deployment", func() (bool, string) {
		m := regexp.MustCompile(`waiting for deployment ([0-9a-f-]+)`).FindStringSubmatch(stderr.String())
		if m != nil {
			depID = m[1]
		}
		return m != nil, stderr.String()
	})
	s.ok("deployments", "cancel", depID, "--force")
	err := cmd.Wait()
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 ||
		!strings.Contains(stderr.String(), "deployment "+depID+" failed after ") || !strings.Contains(stderr.String(), "app "+id+" runs ") {
		t.Fatalf("scale --wait by polling of a cancelled deployment: %v\n%s", err, stderr.String())
	}
	s.ok("apps", "rm", id, "--force", "--wait")
	s.ok("apps", "rm", "/cli/poll", "--wait")
}

func testCLIErrors(t *testing.T, s *cliStack) {
	// 422: every refused field on its own line, on stderr; nothing on stdout.
	r := s.runEnv(`{"id":"/cli/bad","cmd":"sleep 1","instances":-1,"cpus":0.01,"mem":16}`, s.env(), "apps", "create", "-f", "-")
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "POST /v2/apps: 422 Object is not valid\n  /instances: ") {
		t.Fatalf("422 on create: %s", r)
	}
	r = s.runEnv(`[{"id":"/cli/ok","cmd":"sleep 1","cpus":0.01,"mem":16},{"id":"/cli/bad","cmd":"sleep 1","mem":-5}]`, s.env(), "apps", "apply", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "422 Object is not valid\n  /(1)/mem: ") {
		t.Fatalf("422 on apply of a list: %s", r)
	}
	r = s.runEnv("{\"id\": ", s.env(), "apps", "apply", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "400 Invalid JSON") {
		t.Fatalf("400 on bad JSON: %s", r)
	}
	r = s.runEnv("id: /cli/y\ninstances: [1\n", s.env(), "apps", "apply", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "stdin: yaml: line ") {
		t.Fatalf("bad YAML: %s", r)
	}
	r = s.runEnv("rules:\n  - app: /cli/x\n    min: 5\n    max: 2\n    up: { qps: 1, cpu: 0.5 }\n", s.env(), "rules", "apply", "-f", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "422 Rules are not valid\n  stdin:3:10: rules[0].min: ") {
		t.Fatalf("422 on rules apply: %s", r)
	}
	huge := writeFile(t, "huge.json", `{"id":"/cli/huge","cmd":"`+strings.Repeat("x", 17<<20)+`"}`)
	r = s.run("apps", "apply", "-f", huge)
	if r.code != 1 || !strings.Contains(r.stderr, "huge.json is larger than 16 MiB") {
		t.Fatalf("a file over the -f limit: %s", r)
	}
	r = s.run("apps", "show", "/cli/nothing")
	if r.code != 1 || !strings.Contains(r.stderr, "404") {
		t.Fatalf("404: %s", r)
	}
	r = s.runEnv("", s.env(), "--addr", "127.0.0.1:1", "apps", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "is garrison running there?") {
		t.Fatalf("nothing at --addr: %s", r)
	}

	// Usage errors exit 2 with the reason; help exits 0 on stdout.
	for _, args := range [][]string{
		{}, {"nosuch"}, {"apps"}, {"apps", "nosuch"}, {"apps", "ls", "extra"}, {"apps", "ls", "--bogus"},
		{"apps", "ls", "-o", "xml"}, {"apps", "scale", "/x", "many"}, {"apps", "scale", "/x"},
		{"apps", "create"}, {"tasks", "kill"}, {"tasks", "kill", "a.b", "--wait"}, {"deployments", "cancel"},
		{"rules"}, {"decisions", "a", "b"}, {"--addr", "ftp://x", "apps", "ls"},
	} {
		r := s.run(args...)
		if r.code != 2 || !strings.Contains(r.stderr, "garrison: ") || r.stdout != "" {
			t.Errorf("garrison %v: want exit 2 with a reason on stderr; %s", args, r)
		}
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"apps", "ls", "--help"}, {"apps", "scale", "-h"}} {
		r := s.run(args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("garrison %v: %s", args, r)
		}
	}
}

func testCLIRegistry(t *testing.T, s *cliStack) {
	cli, err := registrar.NewClient([]string{s.etcd})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	reg, err := registrar.Register(t.Context(), cli, "cli-svc", "i-1", registrar.Endpoint{Addr: "127.0.0.1:4555", Metadata: map[string]string{"v": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	if row := rowOf(t, s.ok("services"), 0, "cli-svc"); row[1] != "1" || row[2] != "127.0.0.1:4555" {
		t.Fatalf("services row %v", row)
	}
	row := rowOf(t, s.ok("services", "cli-svc"), 0, "i-1")
	if row[1] != "127.0.0.1:4555" || row[2] == "-" || row[3] != "v=2" {
		t.Fatalf("services NAME row %v", row)
	}
	var svc struct {
		Name      string `json:"name"`
		Instances []struct {
			ID, Addr string
		} `json:"instances"`
	}
	s.okJSON(&svc, "services", "cli-svc")
	if svc.Name != "cli-svc" || len(svc.Instances) != 1 || svc.Instances[0].Addr != "127.0.0.1:4555" {
		t.Fatalf("services NAME -o json: %+v", svc)
	}
	if r := s.run("services", "cli-nothing"); r.code != 1 || !strings.Contains(r.stderr, "404") {
		t.Fatalf("unknown service: %s", r)
	}
}

func testCLIRulesDecisions(t *testing.T, s *cliStack) {
	const id = "/cli/floor"
	// Follow decisions before there is one: --watch must print it.
	watch, _, watchErr := s.command("", s.env(), "decisions", id, "--watch", "-o", "json")
	pr, pw := io.Pipe()
	watch.Stdout = pw
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { watch.Process.Kill(); watch.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	s.runEnv(s.webApp(id, 1, ""), s.env(), "apps", "create", "-f", "-", "--wait")
	rules := writeFile(t, "rules.yaml", "rules:\n  - app: /cli/floor\n    min: 2\n    max: 3\n    up: { qps: 1000, cpu: 0.9 }\n    down: { qps: 1 }\n")
	if out := s.ok("rules", "check", rules); out != rules+": 1 rules, valid\n" {
		t.Fatalf("rules check printed %q", out)
	}
	out := s.ok("rules", "apply", "-f", rules)
	if row := rowOf(t, out, 0, id); strings.Join(row, "|") != "/cli/floor|2|3|2|qps=1000,cpu=0.9|qps=1|1m|-|active" {
		t.Fatalf("rules apply row %v", row)
	}
	if doc := s.ok("rules", "get", "-o", "yaml"); !strings.Contains(doc, "app: /cli/floor") || !strings.Contains(doc, "min: 2") {
		t.Fatalf("rules get -o yaml:\n%s", doc)
	}
	var got []map[string]any
	s.okJSON(&got, "rules", "get")
	if len(got) != 1 || got[0]["app"] != id || got[0]["max"] != 3.0 {
		t.Fatalf("rules get -o json: %v", got)
	}

	// The floor (min 2) makes the autoscaler scale up: the watcher sees it.
	var seen map[string]any
	deadline := time.After(60 * time.Second)
	for seen == nil {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("decisions --watch ended: %s", watchErr.String())
			}
			var d map[string]any
			if err := json.Unmarshal([]byte(line), &d); err != nil {
				t.Fatalf("decisions --watch -o json line %q: %v", line, err)
			}
			if d["app"] == id && d["action"] == "up" {
				seen = d
			}
		case <-deadline:
			t.Fatalf("no decision seen by --watch; stderr %s", watchErr.String())
		}
	}
	out = s.ok("decisions", id)
	if h := tableRows(out)[0]; strings.Join(h, " ") != "TIME APP ACTION FROM TO ACTED REASON" {
		t.Fatalf("decisions headers %v", h)
	}
	if row := rowOf(t, out, 2, "up"); row[1] != id || row[3] != "1" || row[4] != "2" || row[5] != "yes" || !strings.Contains(row[6], "min is 2") {
		t.Fatalf("decisions row %v", row)
	}
	var list []map[string]any
	s.okJSON(&list, "decisions")
	if !slices.ContainsFunc(list, func(d map[string]any) bool { return d["id"] == seen["id"] }) {
		t.Fatalf("decisions -o json lacks the watched decision %v: %v", seen["id"], list)
	}
	// evaluations: the rule's last look at its app, with the rule.
	out = s.ok("evaluations", id)
	if h := tableRows(out)[0]; strings.Join(h, " ") != "TIME APP ACTION FROM TO ACTED REASON" {
		t.Fatalf("evaluations headers %v", h)
	}
	if rows := tableRows(out); len(rows) != 2 || rows[1][1] != id || rows[1][6] == "" {
		t.Fatalf("evaluations table:\n%s", out)
	}
	var evals []map[string]any
	s.okJSON(&evals, "evaluations")
	if len(evals) != 1 || evals[0]["app"] != id || evals[0]["reason"] == "" {
		t.Fatalf("evaluations -o json: %v", evals)
	}
	if rule, _ := evals[0]["rule"].(map[string]any); rule["min"] != 2.0 {
		t.Fatalf("evaluations -o json rule: %v", evals[0]["rule"])
	}
	s.runEnv("rules: []\n", s.env(), "rules", "apply", "-f", "-")
	s.ok("apps", "rm", id, "--wait", "--force")
}

func testCLIEvents(t *testing.T, s *cliStack) {
	type follower struct {
		cmd   *exec.Cmd
		lines chan string
	}
	follow := func(args ...string) follower {
		cmd, _, _ := s.command("", s.env(), args...)
		pr, pw := io.Pipe()
		cmd.Stdout = pw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); pw.Close() })
		f := follower{cmd: cmd, lines: make(chan string, 64)}
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				f.lines <- sc.Text()
			}
		}()
		return f
	}
	next := func(f follower) string {
		select {
		case l := <-f.lines:
			return l
		case <-time.After(60 * time.Second):
			t.Fatal("no event line within 60s")
			return ""
		}
	}
	asJSON := follow("events", "-o", "json", "--type", "event_stream_attached", "--type", "deployment_success")
	asTable := follow("events", "--type", "event_stream_attached", "--type", "deployment_success")
	// Each stream starts with its own attach event: both are subscribed.
	var attached map[string]any
	if line := next(asJSON); json.Unmarshal([]byte(line), &attached) != nil || attached["eventType"] != "event_stream_attached" {
		t.Fatalf("first JSON event %q", line)
	}
	if line := next(asTable); !strings.Contains(line, "event_stream_attached") {
		t.Fatalf("first event line %q", line)
	}
	out := s.ok("apps", "create", "-f", writeFile(t, "e.yaml", "id: /cli/events\ncmd: sleep 600\ninstances: 1\ncpus: 0.01\nmem: 16\n"), "--wait")
	depID := regexp.MustCompile(`deployment ([0-9a-f-]+)`).FindStringSubmatch(out)[1]
	for {
		var ev map[string]any
		line := next(asJSON)
		if json.Unmarshal([]byte(line), &ev) != nil {
			t.Fatalf("events -o json line %q", line)
		}
		if ev["eventType"] == "deployment_success" && ev["id"] == depID {
			break
		}
	}
	for {
		line := next(asTable)
		if strings.Contains(line, "deployment_success") && strings.Contains(line, "id="+depID) {
			break
		}
	}
	s.ok("apps", "rm", "/cli/events", "--wait")
}

func testCLIAuthVersionCompletion(t *testing.T, s *cliStack) {
	noToken := s.env("GARRISON_TOKEN=")
	if r := s.runEnv("", noToken, "apps", "ls"); r.code != 1 || !strings.Contains(r.stderr, "401") {
		t.Fatalf("without a token: %s", r)
	}
	if r := s.runEnv("", noToken, "--token", "wrong", "apps", "ls"); r.code != 1 || !strings.Contains(r.stderr, "401") {
		t.Fatalf("with a wrong token: %s", r)
	}
	if r := s.runEnv("", noToken, "--token", cliToken, "apps", "ls"); r.code != 0 {
		t.Fatalf("with --token: %s", r)
	}
	// Basic auth, from the environment or flags.
	if r := s.runEnv("", append(noToken, "GARRISON_USER=ops", "GARRISON_PASSWORD=s3cret"), "apps", "ls"); r.code != 0 {
		t.Fatalf("with GARRISON_USER and GARRISON_PASSWORD: %s", r)
	}
	if r := s.runEnv("", noToken, "--user", "ops", "--password", "s3cret", "apps", "ls"); r.code != 0 {
		t.Fatalf("with --user and --password: %s", r)
	}
	if r := s.runEnv("", noToken, "--user", "ops", "--password", "wrong", "apps", "ls"); r.code != 1 || !strings.Contains(r.stderr, "401") {
		t.Fatalf("with a wrong password: %s", r)
	}
	// GARRISON_ADDR as a URL works as well as host:port.
	if r := s.runEnv("", s.env("GARRISON_ADDR=http://"+s.addr+"/"), "apps", "ls"); r.code != 0 {
		t.Fatalf("GARRISON_ADDR as a URL: %s", r)
	}

	if out := s.ok("version"); out != "garrison dev\nserver dev at http://"+s.addr+"\n" {
		t.Fatalf("version printed %q", out)
	}
	var v map[string]string
	s.okJSON(&v, "version")
	if v["client"] != "dev" || v["server"] != "dev" {
		t.Fatalf("version -o json: %v", v)
	}
	if out := s.ok("completion", "bash"); !strings.Contains(out, "__start_garrison") {
		t.Fatal("completion bash is not a bash completion script")
	}
	if out := s.ok("completion", "zsh"); !strings.HasPrefix(out, "#compdef garrison") {
		t.Fatal("completion zsh is not a zsh completion script")
	}
}
