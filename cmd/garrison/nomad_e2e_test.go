package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/nomadtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/signalman/nomad"
)

// garrison up --nomad runs apps as Nomad jobs: a raw_exec app posted to
// the Marathon API becomes a job whose allocation garrison shows as its
// task, with the node's address.
func TestUpRunsAppsOnNomad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	agent, err := nomadtest.Start(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Stop)
	c, ns := agent.Namespace(t)
	t.Setenv("NOMAD_NAMESPACE", ns)
	addrs := freeAddrs(t, 2)
	addr := addrs[0]
	startGarrison(t, "up", "--addr", addr, "--etcd-listen", "http://"+addrs[1], "--data-dir", t.TempDir(), "--nomad", agent.Addr)
	base := "http://" + addr
	waitHTTP(t, base+"/ping", time.Minute)

	code, _, body := marathonCall(t, "POST", base+"/v2/apps", map[string]any{
		"id": "/sleeper", "cmd": "exec sleep 600", "instances": 1, "cpus": 0.05, "mem": 16})
	if code != http.StatusCreated {
		t.Fatalf("POST /v2/apps: %d %s", code, body)
	}
	poll.Until(t, 3*time.Minute, "the app's task running on Nomad", func() (bool, string) {
		code, _, body := marathonCall(t, "GET", base+"/v2/tasks", nil)
		var tasks struct {
			Tasks []struct {
				ID    string `json:"id"`
				Host  string `json:"host"`
				State string `json:"state"`
			} `json:"tasks"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &tasks) != nil {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		return len(tasks.Tasks) == 1 && tasks.Tasks[0].State == "TASK_RUNNING" && tasks.Tasks[0].Host != "", string(body)
	})
	job, _, err := c.Jobs().Info(nomad.JobID("/sleeper"), nil)
	if err != nil {
		t.Fatalf("the app's Nomad job: %v", err)
	}
	if job.Meta[nomad.MetaAppID] != "/sleeper" {
		t.Errorf("job meta %v, want the app id", job.Meta)
	}
}
