package nomadtest

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/hashicorp/nomad/api"

	"github.com/garrisonhq/garrison/internal/dockertest"
)

// An agent whose RPC port (base+1) is taken fails with errBind, which
// Start answers by trying other ports. (A taken HTTP port fails the same
// way, only a minute later: Nomad binds it last.)
func TestStartReportsPortInUse(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := start(ctx, bin, port-1, options{})
	if err == nil {
		a.Stop()
		t.Fatalf("agent started with RPC port %d, which a listener holds", port)
	}
	if !errors.Is(err, errBind) {
		t.Fatalf("start: %v, want errBind", err)
	}
}

func TestStartServesAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodes, _, err := a.Client.Nodes().List(nil)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("nodes %v %v: want the dev node", nodes, err)
	}
	a.Stop()
	if _, _, err := a.Client.Nodes().List(nil); err == nil {
		t.Error("the agent still answers after Stop")
	}
}

// Halt and Resume: a Persistent agent comes back with its job and the
// same allocation, still running; a -dev agent comes back empty.
func TestHaltResume(t *testing.T) {
	eachMode(t, func(t *testing.T, ctx context.Context, persistent bool, opts []Option) {
		a := New(t, opts...)
		job := api.NewServiceJob("sleeper", "sleeper", "global", 50)
		job.Datacenters = []string{"*"}
		tg := api.NewTaskGroup("g", 1)
		tg.AddTask(api.NewTask("t", "raw_exec").SetConfig("command", "/bin/sleep").SetConfig("args", []string{"600"}).
			Require(&api.Resources{CPU: ptr(20), MemoryMB: ptr(16)}))
		job.AddTaskGroup(tg)
		if _, _, err := a.Client.Jobs().Register(job, nil); err != nil {
			t.Fatal(err)
		}
		if err := WaitRunning(ctx, a.Client, "sleeper", "g", 1); err != nil {
			t.Fatal(err)
		}
		before, _, err := a.Client.Jobs().Allocations("sleeper", false, nil)
		if err != nil || len(before) != 1 {
			t.Fatalf("allocations %v %v: want one", before, err)
		}

		a.Halt()
		if _, _, err := a.Client.Jobs().List(nil); err == nil {
			t.Fatal("the halted agent answers")
		}
		if err := a.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		jobs, _, err := a.Client.Jobs().List(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !persistent {
			if len(jobs) != 0 {
				t.Errorf("jobs after the -dev agent's restart: %v, want none", jobs)
			}
			return
		}
		if err := WaitRunning(ctx, a.Client, "sleeper", "g", 1); err != nil {
			t.Fatal(err)
		}
		after, _, err := a.Client.Jobs().Allocations("sleeper", false, nil)
		if err != nil || len(after) != 1 || after[0].ID != before[0].ID || after[0].ClientStatus != api.AllocClientStatusRunning {
			t.Fatalf("allocations after the restart %+v %v: want %s, running", after, err, before[0].ID)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// eachMode runs test with a Persistent agent's options and a -dev one's.
func eachMode(t *testing.T, test func(t *testing.T, ctx context.Context, persistent bool, opts []Option)) {
	for name, persistent := range map[string]bool{"persistent": true, "dev": false} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var opts []Option
			if persistent {
				opts = append(opts, Persistent())
			}
			test(t, ctx, persistent, opts)
		})
	}
}

// Agents running at once give out dynamic ports from windows that do not
// overlap.
func TestPortWindowsApart(t *testing.T) {
	a, b := leasePorts(), leasePorts()
	defer a.release()
	defer b.release()
	if a.f == nil || b.f == nil || a.max >= b.min && b.max >= a.min {
		t.Fatalf("windows %d-%d and %d-%d: want two locked windows apart", a.min, a.max, b.min, b.max)
	}
	if a.min < minDynamicPort || a.max > maxDynamicPort || b.min < minDynamicPort || b.max > maxDynamicPort {
		t.Errorf("windows %d-%d and %d-%d leave the range %d-%d", a.min, a.max, b.min, b.max, minDynamicPort, maxDynamicPort)
	}
	a.release()
	c := leasePorts()
	defer c.release()
	if c.f == nil {
		t.Error("no window free after one was released")
	}
}

// Stop leaves no container of the agent's behind, whether its jobs ran
// through a restart or not.
func TestStopRemovesContainers(t *testing.T) {
	cli := dockertest.Client(t)
	image := dockertest.BuildGoImage(t, cli, "garrison-test/testserver:nomadtest", dockertest.TestServerPackage)
	eachMode(t, func(t *testing.T, ctx context.Context, persistent bool, opts []Option) {
		a, err := Start(ctx, opts...)
		if err != nil {
			t.Fatal(err)
		}
		job := api.NewServiceJob("box", "box", "global", 50)
		job.Datacenters = []string{"*"}
		tg := api.NewTaskGroup("g", 2)
		tg.Networks = []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: "http"}}}}
		tg.AddTask(api.NewTask("t", "docker").SetConfig("image", image).SetConfig("network_mode", "host").
			Require(&api.Resources{CPU: ptr(20), MemoryMB: ptr(16)}))
		tg.Tasks[0].Env = map[string]string{"PORT": "${NOMAD_PORT_http}"}
		job.AddTaskGroup(tg)
		if _, _, err := a.Client.Jobs().Register(job, nil); err != nil {
			t.Fatal(err)
		}
		if err := WaitRunning(ctx, a.Client, "box", "g", 2); err != nil {
			t.Fatal(err)
		}
		a.Halt()
		if err := a.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		if persistent {
			if err := WaitRunning(ctx, a.Client, "box", "g", 2); err != nil {
				t.Fatal(err)
			}
		}
		dir := a.dir
		a.Stop()
		list, err := cli.ContainerList(ctx, container.ListOptions{All: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			for _, m := range c.Mounts {
				if strings.HasPrefix(m.Source, dir+"/") {
					t.Errorf("container %s (%s) of the stopped agent is left", c.ID[:12], c.State)
					break
				}
			}
		}
	})
}
