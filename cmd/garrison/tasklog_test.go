package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// A task's log tail comes from the driver that runs it: a process task's
// sandbox files and a Docker task's container log, through the API and
// `garrison tasks log`.
func TestTaskLogs(t *testing.T) {
	s := startCLIStack(t)
	dcli := dockertest.Client(t)
	image := "garrison-test/testserver:tasklog"
	dockertest.BuildGoImage(t, dcli, image, dockertest.TestServerPackage)
	const dockerApp = "/logs/docker"
	t.Cleanup(func() { removeAppContainers(dcli, dockerApp) })

	env := "env:\n  TESTSERVER_LOG_LINES: \"300\"\n"
	s.ok("apps", "create", "-f", writeFile(t, "proc.yaml", s.webApp("/logs/proc", 1, env)), "--wait")
	s.ok("apps", "create", "-f", writeFile(t, "docker.yaml", fmt.Sprintf(`id: %s
instances: 1
cpus: 0.01
mem: 16
container:
  type: DOCKER
  docker:
    image: %s
%s`, dockerApp, image, env)), "--wait")

	base := "http://" + s.addr + "/api/v1/tasks/"
	get := func(path string) (int, string) {
		t.Helper()
		code, body := marathonCallAuth(t, http.MethodGet, base+path, s.token)
		return code, string(body)
	}
	taskOf := func(app string) string {
		t.Helper()
		var tasks []struct {
			ID string `json:"id"`
		}
		s.okJSON(&tasks, "tasks", app)
		if len(tasks) != 1 {
			t.Fatalf("%s has %d tasks, want 1", app, len(tasks))
		}
		return tasks[0].ID
	}

	t.Run("process", func(t *testing.T) {
		id := taskOf("/logs/proc")
		// Written by the task, read from its sandbox: poll until all is there.
		poll.Until(t, 30*time.Second, "the process task's log", func() (bool, string) {
			code, body := get(id + "/log")
			return code == http.StatusOK && body == dockertest.LogLines(101, 300), fmt.Sprintf("%d %q", code, body)
		})
		if code, body := get(id + "/log?tail=5"); code != http.StatusOK || body != dockertest.LogLines(296, 300) {
			t.Errorf("tail=5: %d %q, want %q", code, body, dockertest.LogLines(296, 300))
		}
		if code, body := get(id + "/log?tail=5000"); code != http.StatusOK || body != dockertest.LogLines(1, 300) {
			t.Errorf("tail=5000: %d %q", code, body)
		}
		// The CLI prints the same tail.
		if out := s.ok("tasks", "log", id, "--tail", "2"); out != dockertest.LogLines(299, 300) {
			t.Errorf("garrison tasks log --tail 2 printed %q, want %q", out, dockertest.LogLines(299, 300))
		}
	})

	t.Run("docker", func(t *testing.T) {
		id := taskOf(dockerApp)
		poll.Until(t, 30*time.Second, "the docker task's log", func() (bool, string) {
			code, body := get(id + "/log?tail=400")
			return code == http.StatusOK && strings.Contains(body, "testserver log line 300\n") &&
				strings.Contains(body, "testserver stderr line\n"), fmt.Sprintf("%d %q", code, body)
		})
		// Docker interleaves the streams in its own order: the default tail
		// is 200 of the 301 lines, the oldest ones left out.
		code, body := get(id + "/log")
		if lines := strings.Count(body, "\n"); code != http.StatusOK || lines != 200 || strings.Contains(body, "testserver log line 100\n") {
			t.Errorf("default tail: %d, %d lines, want 200 from line 101: %q", code, lines, body)
		}
		code, body = get(id + "/log?tail=3")
		if lines := strings.Count(body, "\n"); code != http.StatusOK || lines != 3 || !strings.Contains(body, "testserver log line 300\n") {
			t.Errorf("tail=3: %d %q", code, body)
		}
		if out := s.ok("tasks", "log", id, "--tail", "3"); strings.Count(out, "\n") != 3 {
			t.Errorf("garrison tasks log --tail 3 printed %q", out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		if code, body := get("logs_nosuch.1234/log"); code != http.StatusNotFound || !strings.Contains(body, "does not exist") {
			t.Errorf("unknown task: %d %s, want 404", code, body)
		}
		for _, tail := range []string{"0", "5001", "x"} {
			if code, body := get("logs_nosuch.1234/log?tail=" + tail); code != http.StatusBadRequest || !strings.Contains(body, "tail") {
				t.Errorf("tail=%s: %d %s, want 400", tail, code, body)
			}
		}
		// Auth covers the route as every other.
		if code, _ := marathonCallAuth(t, http.MethodGet, base+"logs_nosuch.1234/log", "wrong"); code != http.StatusUnauthorized {
			t.Errorf("without the token: %d, want 401", code)
		}
		if r := s.run("tasks", "log", "logs_nosuch.1234"); r.code != 1 || !strings.Contains(r.stderr, "404") {
			t.Errorf("tasks log of an unknown task: %s", r)
		}
		if r := s.run("tasks", "log", "x", "--tail", "5001"); r.code != 2 || !strings.Contains(r.stderr, "--tail") {
			t.Errorf("tasks log --tail 5001: %s", r)
		}
	})
}
