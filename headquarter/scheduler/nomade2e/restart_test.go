package nomade2e

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/scheduler"
	garrisonagent "github.com/garrisonhq/garrison/internal/agent"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/nomadtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/registrar"
)

// Nomad restarted under a running garrison. While Nomad is down the API
// answers from garrison's view and takes writes, and nothing is deleted;
// once Nomad is back garrison reconciles: every app runs at its stored
// count, once, and its instances are registered in etcd again. A Nomad
// that kept its state (stateKept) still runs the old tasks, which garrison
// adopts; one that lost it (stateLost: a -dev agent destroys its
// allocations and forgets its jobs) gets the jobs again from garrison's
// store, the source of truth.
func TestNomadRestarted(t *testing.T) {
	cli := dockertest.Client(t)
	image := dockertest.BuildGoImage(t, cli, "garrison-test/testserver:nomade2e", dockertest.TestServerPackage)
	for _, tc := range []struct {
		name       string
		persistent bool
	}{{"stateKept", true}, {"stateLost", false}} {
		t.Run(tc.name, func(t *testing.T) { testNomadRestarted(t, cli, image, tc.persistent) })
	}
}

func testNomadRestarted(t *testing.T, cli *client.Client, image string, persistent bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var opts []nomadtest.Option
	if persistent {
		opts = append(opts, nomadtest.Persistent())
	}
	scope := dockertest.UniqueName("")
	// Runs after the agent's Stop (cleanups run last first): nothing of
	// the test's is left running.
	t.Cleanup(func() { noContainersLeft(t, cli, scope) })
	ag := nomadtest.New(t, opts...)
	proxy := ag.NewProxy(t)
	s := newStackAt(t, ag, proxy.URL)
	registerContainers(ctx, t, cli, s.etcd, scope)

	service := "restart-" + scope
	web := map[string]any{"id": "/web", "instances": 2, "cpus": 0.05, "mem": 32,
		"container":       map[string]any{"type": "DOCKER", "docker": map[string]any{"image": image}},
		"portDefinitions": []map[string]any{{"port": 0, "name": "http"}},
		// GARRISON_SERVICE names the service as on one machine; the
		// scheduler labels the containers for the agent by itself.
		"labels": map[string]string{scheduler.LabelService: service, "garrison.e2e": scope},
		"env":    map[string]string{"TESTSERVER_ID": "w"}}
	s.expect("POST", "/v2/apps", web, 201, nil)
	before := s.settled("/web", 2, "w")
	registered(t, s.etcd, service, before)

	ag.Halt()
	// The API answers from garrison's view, and takes writes. (A -dev
	// agent kills its tasks on the way out, and may report some of it.)
	if a := s.app("/web"); a.Instances != 2 || persistent && len(a.Tasks) != 2 {
		t.Errorf("during the outage /v2/apps/web says %d instances, tasks %+v", a.Instances, a.Tasks)
	}
	s.expect("PUT", "/v2/apps/web", map[string]any{"instances": 3}, 200, nil)
	s.expect("POST", "/v2/apps", rawApp("/later", 1, "l"), 201, nil)
	// Job syncs and the watch keep trying meanwhile.
	seen := proxy.Requests.Load()
	poll.True(t, wait, "garrison's calls to the stopped Nomad", func() bool { return proxy.Requests.Load() >= seen+10 })
	var stored struct{ Apps []mApp }
	s.expect("GET", "/v2/apps", nil, 200, &stored)
	if len(stored.Apps) != 2 {
		t.Fatalf("apps during the outage: %+v, want /web and /later", stored.Apps)
	}

	if err := ag.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	after := s.settled("/web", 3, "w")
	s.settled("/later", 1, "l")
	for _, tk := range before {
		if kept := containsTask(after, tk.ID); kept != persistent {
			t.Errorf("task %s kept after the restart: %v, want %v (tasks now %+v)", tk.ID, kept, persistent, after)
		}
	}
	// Nomad runs each app once, at its count.
	jobs, err := s.driver.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, j := range jobs {
		if !j.Stopped {
			counts[j.AppID] = j.Instances
		}
	}
	if len(jobs) != 2 || counts["/web"] != 3 || counts["/later"] != 1 {
		t.Errorf("Nomad's jobs %+v, want /web at 3 and /later at 1", jobs)
	}
	for app, n := range counts {
		tasks, err := s.driver.Allocations(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		live := 0
		for _, tk := range tasks {
			if !tk.State.Terminal() {
				live++
			}
		}
		if live != n {
			t.Errorf("%s: %d live allocations in Nomad, want %d: %+v", app, live, n, tasks)
		}
	}
	var all struct{ Tasks []mTask }
	s.expect("GET", "/v2/tasks", nil, 200, &all)
	if len(all.Tasks) != 4 {
		t.Errorf("/v2/tasks lists %d tasks, want 4: %+v", len(all.Tasks), all.Tasks)
	}
	registered(t, s.etcd, service, after)
}

// noContainersLeft fails the test if a container of the scope is left.
func noContainersLeft(t *testing.T, cli *client.Client, scope string) {
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "garrison.e2e="+scope))})
	if err != nil {
		t.Errorf("list containers: %v", err)
		return
	}
	for _, c := range list {
		t.Errorf("container %s (%s) left after the agent stopped", c.ID[:12], c.State)
	}
}

// registerContainers runs the garrison agent against the test's etcd, for
// the containers of this test (labelled garrison.e2e=scope): what the
// agent's system job does on every Nomad client.
func registerContainers(ctx context.Context, t *testing.T, cli *client.Client, etcd *clientv3.Client, scope string) {
	a, err := garrisonagent.New(garrisonagent.Config{Docker: cli, Etcd: etcd, Node: "node-" + scope,
		Select: []string{"garrison.e2e=" + scope}, ResyncInterval: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("agent: %v", err)
		}
	})
}

// registered waits until the service's registry entries are exactly the
// tasks' addresses.
func registered(t *testing.T, etcd *clientv3.Client, service string, tasks []mTask) {
	t.Helper()
	var want []string
	for _, tk := range tasks {
		want = append(want, tk.Host+":"+strconv.Itoa(tk.Ports[0]))
	}
	slices.Sort(want)
	poll.Until(t, wait, fmt.Sprintf("%s registered at %v", service, want), func() (bool, string) {
		resp, err := etcd.Get(context.Background(), registrar.ServicePrefix(service), clientv3.WithPrefix())
		if err != nil {
			return false, err.Error()
		}
		var got []string
		for _, kv := range resp.Kvs {
			in, err := registrar.DecodeInstance(kv.Key, kv.Value)
			if err != nil {
				return false, err.Error()
			}
			got = append(got, in.Endpoint.Addr)
		}
		slices.Sort(got)
		return slices.Equal(got, want), fmt.Sprint(got)
	})
}
