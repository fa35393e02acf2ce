package main

import (
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"garrison/internal/dockertest"
	"garrison/internal/etcdtest"
	"garrison/registrar"
)

func TestAgentCommandRegistersLabelledContainer(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	docker := dockertest.Client(t)
	image := "garrison-test/testserver:cmd"
	dockertest.BuildGoImage(t, docker, image, dockertest.TestServerPackage)
	ports, err := registrar.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
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
