package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/signalman/docker"
)

// marathonCall sends a JSON request to garrison's Marathon API.
func marathonCall(t *testing.T, method, url string, body any) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out
}

type appStatus struct {
	App struct {
		Instances    int `json:"instances"`
		TasksRunning int `json:"tasksRunning"`
		TasksHealthy int `json:"tasksHealthy"`
		Tasks        []struct {
			ID string `json:"id"`
		} `json:"tasks"`
	} `json:"app"`
}

func getApp(t *testing.T, base, id string) (appStatus, bool) {
	code, _, body := marathonCall(t, "GET", base+"/v2/apps"+id, nil)
	var s appStatus
	if code != http.StatusOK || json.Unmarshal(body, &s) != nil {
		return s, false
	}
	return s, true
}

func deploymentCount(t *testing.T, base string) int {
	code, _, body := marathonCall(t, "GET", base+"/v2/deployments", nil)
	var deps []json.RawMessage
	if code != http.StatusOK || json.Unmarshal(body, &deps) != nil {
		return -1
	}
	return len(deps)
}

// garrison killed with SIGKILL in the middle of a deployment and started
// again finishes the deployment, with no duplicate or orphan container and
// the acknowledged app intact.
func TestKillGarrisonMidDeployment(t *testing.T) {
	cli := dockertest.Client(t)
	image := "garrison-test/testserver:e2e"
	dockertest.BuildGoImage(t, cli, image, dockertest.TestServerPackage)
	addrs := freeAddrs(t, 2)
	base := "http://" + addrs[0]
	args := []string{"up", "--addr", addrs[0], "--etcd-listen", "http://" + addrs[1], "--data-dir", t.TempDir(),
		"--task-ports", "17000-17999", "--drain-delay", "100ms"}
	p := startGarrison(t, args...)
	waitHTTP(t, base+"/ping", 30*time.Second)
	const appID = "/e2e/web"
	t.Cleanup(func() { removeAppContainers(cli, appID) })

	code, hdr, body := marathonCall(t, "POST", base+"/v2/apps", map[string]any{
		"id": appID, "instances": 4, "cpus": 0.05, "mem": 32,
		"container": map[string]any{"type": "DOCKER", "docker": map[string]any{"image": image}},
		"healthChecks": []map[string]any{{"protocol": "HTTP", "path": "/health", "gracePeriodSeconds": 10,
			"intervalSeconds": 2, "timeoutSeconds": 1, "maxConsecutiveFailures": 3}},
	})
	if code != http.StatusCreated || hdr.Get("Marathon-Deployment-Id") == "" {
		t.Fatalf("POST /v2/apps = %d %s", code, body)
	}
	// Kill garrison once the deployment has started some tasks.
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, ok := getApp(t, base, appID)
		if ok && len(s.App.Tasks) > 0 && deploymentCount(t, base) == 1 {
			t.Logf("killing garrison with %d tasks started, %d healthy, the deployment running", len(s.App.Tasks), s.App.TasksHealthy)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment never got under way: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Cmd.Process.Signal(syscall.SIGKILL)
	p.WaitExit(t, 10*time.Second)

	startGarrison(t, args...)
	waitHTTP(t, base+"/ping", 30*time.Second)
	deadline = time.Now().Add(120 * time.Second)
	var s appStatus
	for {
		var ok bool
		s, ok = getApp(t, base, appID)
		if ok && s.App.TasksHealthy == 4 && deploymentCount(t, base) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment not finished after the restart: %+v (deployments %d)", s, deploymentCount(t, base))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var taskIDs []string
	for _, task := range s.App.Tasks {
		taskIDs = append(taskIDs, task.ID)
	}
	containers, err := cli.ContainerList(t.Context(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", docker.LabelApp+"="+appID))})
	if err != nil {
		t.Fatal(err)
	}
	var containerTasks []string
	for _, c := range containers {
		if c.State != "running" {
			t.Errorf("container %s of task %s is %s", c.ID[:12], c.Labels[docker.LabelTask], c.State)
		}
		containerTasks = append(containerTasks, c.Labels[docker.LabelTask])
	}
	slices.Sort(taskIDs)
	slices.Sort(containerTasks)
	if !slices.Equal(taskIDs, containerTasks) || len(taskIDs) != 4 {
		t.Fatalf("tasks %v but containers %v: a duplicate or an orphan", taskIDs, containerTasks)
	}

	// Scale up and down through the API: containers follow.
	for _, n := range []int{6, 2} {
		code, hdr, body := marathonCall(t, "PUT", base+"/v2/apps"+appID, map[string]any{"instances": n})
		if code != http.StatusOK || hdr.Get("Marathon-Deployment-Id") == "" {
			t.Fatalf("scale to %d: %d %s", n, code, body)
		}
		poll.Until(t, 90*time.Second, fmt.Sprintf("%d healthy containers", n), func() (bool, string) {
			s, ok := getApp(t, base, appID)
			list, err := cli.ContainerList(t.Context(), container.ListOptions{
				Filters: filters.NewArgs(filters.Arg("label", docker.LabelApp+"="+appID))})
			return ok && err == nil && s.App.TasksHealthy == n && len(list) == n && deploymentCount(t, base) == 0,
				fmt.Sprintf("healthy %d, containers %d", s.App.TasksHealthy, len(list))
		})
	}

	code, _, body = marathonCall(t, "DELETE", base+"/v2/apps"+appID, nil)
	if code != http.StatusOK {
		t.Fatalf("DELETE = %d %s", code, body)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		list, err := cli.ContainerList(t.Context(), container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", docker.LabelApp+"="+appID))})
		if err == nil && len(list) == 0 && deploymentCount(t, base) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containers left after DELETE: %d", len(list))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, _ := marathonCall(t, "GET", base+"/v2/apps"+appID, nil); code != http.StatusNotFound {
		t.Fatalf("GET deleted app = %d", code)
	}
}

// removeAppContainers cleans up after a failed test; garrison is gone by then.
func removeAppContainers(cli *client.Client, appID string) {
	ctx := context.Background()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", docker.LabelApp+"="+appID))})
	if err != nil {
		return
	}
	for _, c := range list {
		cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}
