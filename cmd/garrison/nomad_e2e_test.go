package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/nomadtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/signalman/nomad"
)

// garrison up --nomad runs apps as Nomad jobs: a raw_exec app posted to
// the Marathon API becomes a job whose allocation garrison shows as its
// task, with the node's address; the task's log tail is read from the
// Nomad client that runs it, through the API (the console's Log button)
// and `garrison tasks log`.
func TestUpRunsAppsOnNomad(t *testing.T) {
	agent := nomadtest.New(t)
	c, ns := agent.Namespace(t)
	t.Setenv("NOMAD_NAMESPACE", ns)
	s := startCLIStack(t, "--nomad", agent.Addr)

	env := "env:\n  TESTSERVER_LOG_LINES: \"300\"\n"
	s.ok("apps", "create", "-f", writeFile(t, "nomad.yaml", s.webApp("/logs/nomad", 1, env)), "--wait")
	var tasks []struct {
		ID    string `json:"id"`
		Host  string `json:"host"`
		State string `json:"state"`
	}
	s.okJSON(&tasks, "tasks", "/logs/nomad")
	if len(tasks) != 1 || tasks[0].State != "TASK_RUNNING" || tasks[0].Host == "" {
		t.Fatalf("tasks of /logs/nomad: %+v, want one running with its host", tasks)
	}
	job, _, err := c.Jobs().Info(nomad.JobID("/logs/nomad"), nil)
	if err != nil {
		t.Fatalf("the app's Nomad job: %v", err)
	}
	if job.Meta[nomad.MetaAppID] != "/logs/nomad" {
		t.Errorf("job meta %v, want the app id", job.Meta)
	}

	id := tasks[0].ID
	base := "http://" + s.addr + "/api/v1/tasks/"
	get := func(path string) (int, string) {
		t.Helper()
		code, body := marathonCallAuth(t, http.MethodGet, base+path, s.token)
		return code, string(body)
	}
	poll.Until(t, time.Minute, "the Nomad task's log", func() (bool, string) {
		code, body := get(id + "/log")
		return code == http.StatusOK && body == dockertest.LogLines(101, 300), fmt.Sprintf("%d %q", code, body)
	})
	if code, body := get(id + "/log?tail=5"); code != http.StatusOK || body != dockertest.LogLines(296, 300) {
		t.Errorf("tail=5: %d %q, want %q", code, body, dockertest.LogLines(296, 300))
	}
	if out := s.ok("tasks", "log", id, "--tail", "2"); out != dockertest.LogLines(299, 300) {
		t.Errorf("garrison tasks log --tail 2 printed %q, want %q", out, dockertest.LogLines(299, 300))
	}
	// An allocation Nomad does not hold is an unknown task.
	if code, body := get("logs_nomad.00000000-0000-0000-0000-000000000000/log"); code != http.StatusNotFound {
		t.Errorf("unknown task: %d %s, want 404", code, body)
	}
}
