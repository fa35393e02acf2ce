package main

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// TestDeployAnswersWhileTheReplacedInstanceDrains: a pipeline's deploy
// (promotion, rollback) is done once the new version's instance is healthy;
// the instance it replaces drains meanwhile (here for a minute) and stops
// after. Before, every promotion waited for the drain and the kill.
func TestDeployAnswersWhileTheReplacedInstanceDrains(t *testing.T) {
	cli := dockertest.Client(t)
	dockertest.BuildGoImage(t, cli, echoImage, "github.com/garrisonhq/garrison/examples/echo")
	addrs := freeAddrs(t, 2)
	base := "http://" + addrs[0]
	dir := t.TempDir()
	const app = "/e2e/drain"
	t.Cleanup(func() { removeAppContainers(cli, app) })
	startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", "http://"+addrs[1], "--data-dir", filepath.Join(dir, "data"),
		"--task-ports", "19900-19949", "--drain-delay", "1m")
	waitHTTP(t, base+"/ping", 30*time.Second)
	m := deploy.NewMarathon(base, deploy.Auth{})
	def := func(release string) map[string]any {
		return map[string]any{"instances": 1, "cpus": 0.05, "mem": 32, "args": []string{"-register=false"},
			"env": map[string]string{"RELEASE": release}, "portDefinitions": []any{map[string]any{"port": 0}},
			"healthChecks": []any{map[string]any{"protocol": "HTTP", "path": "/health", "portIndex": 0}}}
	}
	type taskView struct {
		ID                 string
		Version            string
		State              string
		HealthCheckResults []struct{ Alive bool }
	}
	tasks := func() []taskView {
		code, _, raw := marathonCall(t, "GET", base+"/v2/apps"+app+"/tasks", nil)
		var ts struct{ Tasks []taskView }
		if err := json.Unmarshal(raw, &ts); code != 200 || err != nil {
			t.Fatalf("tasks: %d %s", code, raw)
		}
		return ts.Tasks
	}
	if err := m.Deploy(t.Context(), app, def("1"), echoImage); err != nil {
		t.Fatal(err)
	}
	first := tasks()
	if len(first) != 1 {
		t.Fatalf("release 1: tasks %+v", first)
	}
	if err := m.Deploy(t.Context(), app, def("2"), echoImage); err != nil {
		t.Fatal(err)
	}
	// Right after: the new instance healthy, the old one still there,
	// draining for its minute.
	var old, fresh *taskView
	after := tasks()
	for i, tv := range after {
		if tv.ID == first[0].ID {
			old = &after[i]
		} else {
			fresh = &after[i]
		}
	}
	if old == nil || fresh == nil || fresh.State != "TASK_RUNNING" || len(fresh.HealthCheckResults) != 1 || !fresh.HealthCheckResults[0].Alive {
		t.Fatalf("after the second deploy returned: tasks %+v (the old one is %s)", after, first[0].ID)
	}
	// And the deployment goes on: the old instance leaves once drained.
	poll.Until(t, 3*time.Minute, "the replaced instance gone", func() (bool, string) {
		ts := tasks()
		return len(ts) == 1 && ts[0].ID == fresh.ID, "tasks still there"
	})
}
