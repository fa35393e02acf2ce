package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/signalman/docker"
)

func TestAgentCommandRegistersLabelledContainer(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	docker := dockertest.Client(t)
	image := "garrison-test/testserver:cmd"
	dockertest.BuildGoImage(t, docker, image, dockertest.TestServerPackage)
	ports := testport.Take(t, 2)
	service := fmt.Sprintf("agentcmd%d", time.Now().UnixNano()%100000)
	marker := "garrison.test.agentcmd=" + service
	startGarrison(t, "agent", "--etcd", srv.Endpoints[0], "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--node", "cmd-test-"+service, "--select", marker)
	id := dockertest.Run(t, docker, dockertest.Spec{Image: image,
		Env:    []string{fmt.Sprintf("PORT0=%d", ports[0])},
		Labels: map[string]string{"garrison.service": service, "garrison.test.agentcmd": service}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := cli.Get(t.Context(), registrar.ServicePrefix(service), clientv3.WithPrefix())
		if err == nil && len(resp.Kvs) == 1 {
			inst, err := registrar.DecodeInstance(resp.Kvs[0].Key, resp.Kvs[0].Value)
			if err != nil || inst.Endpoint.Addr != fmt.Sprintf("127.0.0.1:%d", ports[0]) || inst.ID != id[:12] {
				t.Fatalf("registered %+v (%v), want 127.0.0.1:%d as %s", inst, err, ports[0], id[:12])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s not registered by `garrison agent` within 30 s", id[:12])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body := waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1]), 5*time.Second); len(body) == 0 {
		t.Fatal("agent /metrics is empty")
	}
}

// The agent exports the CPU and memory of garrison's containers on this
// host, labelled with app and task, with what their app gives them.
func TestAgentCommandExportsTaskStats(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	dcli := dockertest.Client(t)
	image := "garrison-test/testserver:cmd"
	dockertest.BuildGoImage(t, dcli, image, dockertest.TestServerPackage)
	a, err := app.Parse([]byte(fmt.Sprintf(`{"id":"/agent/web","cpus":0.5,"mem":64,"container":{"type":"DOCKER","docker":{"image":%q}}}`, image)), app.Environment{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(a)
	if err := store.New(cli).Commit(t.Context(), store.Change{PutApps: []store.AppWrite{{ID: a.ID, Version: "2026-01-01T00:00:00.000Z", Data: data, Expect: 0}}}); err != nil {
		t.Fatal(err)
	}
	namespace, err := store.New(cli).ClusterID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	drv, err := docker.New(dcli, docker.WithNamespace(namespace))
	if err != nil {
		t.Fatal(err)
	}
	ports := testport.Take(t, 2)
	taskID := app.TaskID(a.ID)
	if _, err := drv.Launch(t.Context(), app.ToSpec(a, taskID, ports[:1], "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Kill(context.Background(), taskID, 0) })
	metrics := fmt.Sprintf("127.0.0.1:%d", ports[1])
	startGarrison(t, "agent", "--etcd", srv.Endpoints[0], "--metrics-addr", metrics, "--node", "stats-"+taskID, "--select", "garrison.test.none")
	labels := fmt.Sprintf(`{app="/agent/web",task=%q}`, taskID)
	poll.Until(t, 30*time.Second, "task figures on the agent's /metrics", func() (bool, string) {
		body := waitHTTP(t, "http://"+metrics+"/metrics", 5*time.Second)
		return strings.Contains(body, "garrison_task_cpus"+labels+" 0.5") &&
			strings.Contains(body, "garrison_task_memory_limit_bytes"+labels+" 6.7108864e+07") &&
			strings.Contains(body, "garrison_task_memory_bytes"+labels), body[:min(len(body), 300)]
	})
}
