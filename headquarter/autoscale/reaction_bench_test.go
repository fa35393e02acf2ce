package autoscale_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/health"
	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/loadgen"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/scout/local"
	"github.com/garrisonhq/garrison/scout/sample"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/process"
)

const echoImage = "garrison-test/echo:reaction"

// BenchmarkReactionToLoadStep: a load step to four times one instance's
// QPS target on a one-instance Docker app, until the needed instances are
// running, healthy and registered; split into detect (load start to the
// scale-up decision), launch (decision to container running), healthy
// (running to first passing check) and registered (healthy to the key in
// etcd), next to one container create+start through the Docker API alone.
func BenchmarkReactionToLoadStep(b *testing.B) {
	cli := dockertest.Client(b)
	dockertest.BuildGoImage(b, cli, echoImage, "github.com/garrisonhq/garrison/examples/echo")
	srv := etcdtest.New(b)
	etcd := srv.Client(b)
	drv, err := docker.New(cli)
	if err != nil {
		b.Fatal(err)
	}
	proc, err := process.New(filepath.Join(b.TempDir(), "tasks"))
	if err != nil {
		b.Fatal(err)
	}
	defer proc.Close()
	st := store.New(etcd)
	sched := scheduler.New(scheduler.Config{Store: st, Docker: drv, Process: proc, Registry: etcd, HealthOptions: []health.Option{health.WithStartupInterval(250 * time.Millisecond)},
		Events: events.NewBus(), PortRange: [2]int{41000, 41499}, DrainDelay: 10 * time.Millisecond, Interval: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sched.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	src, err := local.New(local.FromDriver(drv), etcd)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	m := autoscale.New(autoscale.Config{Target: autoscale.SchedulerTarget(sched), Sources: map[string]sample.Source{"local": src}, DefaultSource: "local"})

	var detect, launch, healthy, registered, total, raw []float64
	for i := 0; b.Loop(); i++ {
		appID := fmt.Sprintf("/bench/react%d", i)
		service := app.ServiceName(appID)
		// The fastest check Marathon's fields allow: every 2 s, timeout 1 s.
		a, err := app.Parse([]byte(fmt.Sprintf(`{"id":%q,"instances":1,"cpus":0.1,"mem":32,"args":["-register=false"],
			"container":{"type":"DOCKER","docker":{"image":%q}},
			"healthChecks":[{"protocol":"HTTP","path":"/health","intervalSeconds":2,"timeoutSeconds":1,"gracePeriodSeconds":5}]}`, appID, echoImage)), app.Environment{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sched.Deploy(ctx, []scheduler.Change{{App: a, Create: true}}, false, "bench"); err != nil {
			b.Fatal(err)
		}
		waitReady(b, sched, appID, 1)
		rules, err := rulefmt.Parse([]byte(fmt.Sprintf("rules:\n  - app: %s\n    min: 1\n    max: 8\n    window: 1s\n    up: { qps: 50, mem: 0.01 }\n", appID)), "bench")
		if err != nil {
			b.Fatal(err)
		}
		m.SetRules(rules)
		m.Evaluate(ctx) // the first reading: rates need two

		seen := watchRegistrations(ctx, etcd, service)
		loadCtx, stopLoad := context.WithCancel(ctx)
		loadDone := make(chan struct{})
		loadStart := time.Now()
		go func() {
			defer close(loadDone)
			loadgen.Run(loadCtx, loadgen.Config{Rate: 200, Duration: time.Minute, MaxRequests: 12000, Target: func() (string, error) {
				for _, ti := range sched.Tasks(appID) {
					if ti.State == "TASK_RUNNING" {
						return "http://127.0.0.1:" + strconv.Itoa(ti.Ports[0]) + "/", nil
					}
				}
				return "", errors.New("no running task")
			}})
		}()
		var decision *autoscale.Record
		for decision == nil {
			time.Sleep(250 * time.Millisecond) // the evaluation interval
			for _, r := range m.Evaluate(ctx) {
				if r.Action == autoscale.Up && r.Acted {
					decision = &r
				}
			}
			if time.Since(loadStart) > time.Minute {
				b.Fatal("no scale-up within a minute of the load step")
			}
		}
		need := decision.To
		waitReady(b, sched, appID, need)
		allReady := time.Now()
		stopLoad()
		<-loadDone
		detect = append(detect, decision.At.Sub(loadStart).Seconds())
		total = append(total, allReady.Sub(loadStart).Seconds())
		regTimes := seen()
		for _, ti := range sched.Tasks(appID) {
			staged, _ := app.ParseVersion(ti.StagedAt)
			if staged.Before(decision.At) {
				continue // the first instance
			}
			started, _ := app.ParseVersion(ti.StartedAt)
			launch = append(launch, started.Sub(decision.At).Seconds())
			if len(ti.HealthCheckResults) > 0 && ti.HealthCheckResults[0].FirstSuccess.After(started) {
				ok := ti.HealthCheckResults[0].FirstSuccess
				healthy = append(healthy, ok.Sub(started).Seconds())
				if at, found := regTimes[ti.ID]; found {
					registered = append(registered, at.Sub(ok).Seconds())
				}
			}
		}
		if _, err := sched.Deploy(ctx, []scheduler.Change{{Delete: appID}}, true, "bench"); err != nil {
			b.Fatal(err)
		}
		for len(sched.Tasks(appID)) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		raw = append(raw, rawStart(b, cli).Seconds())
	}
	report := func(name string, xs []float64) {
		if len(xs) > 0 {
			slices.Sort(xs)
			b.ReportMetric(xs[len(xs)/2], name)
		}
	}
	report("detect-s", detect)
	report("launch-s", launch)
	report("healthy-s", healthy)
	report("registered-s", registered)
	report("total-s", total)
	report("docker-start-s", raw)
	if len(launch) > 0 && len(raw) > 0 {
		b.ReportMetric(launch[len(launch)/2]/raw[len(raw)/2], "launch/docker-start")
	}
}

func waitReady(b *testing.B, s *scheduler.Scheduler, appID string, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, _ := s.ScaleStatus(appID)
		if st.Ready >= n && !st.Deployment {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d ready after 2 minutes", appID, st.Ready, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// watchRegistrations notes when each instance of service first appears in
// the registry; the returned function stops watching and returns them.
func watchRegistrations(ctx context.Context, etcd *clientv3.Client, service string) func() map[string]time.Time {
	ctx, cancel := context.WithCancel(ctx)
	seen := map[string]time.Time{}
	var mu sync.Mutex
	done := make(chan struct{})
	ch := etcd.Watch(ctx, registrar.ServicePrefix(service), clientv3.WithPrefix())
	go func() {
		defer close(done)
		for resp := range ch {
			now := time.Now()
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				_, id, ok := registrar.ParseKey(string(ev.Kv.Key))
				mu.Lock()
				if _, dup := seen[id]; ok && !dup {
					seen[id] = now
				}
				mu.Unlock()
			}
		}
	}()
	return func() map[string]time.Time {
		cancel()
		<-done
		return seen
	}
}

// rawStart is the baseline: one container create+start through the Docker
// API, then removed.
func rawStart(b *testing.B, cli *client.Client) time.Duration {
	ctx := context.Background()
	start := time.Now()
	resp, err := cli.ContainerCreate(ctx, &container.Config{Image: echoImage, Cmd: []string{"-register=false"}, Env: []string{"PORT0=41999"}},
		&container.HostConfig{NetworkMode: "host"}, nil, nil, "")
	if err != nil {
		b.Fatal(err)
	}
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	if err := cli.ContainerRemove(ctx, resp.ID, container.RemoveOptions{Force: true}); err != nil {
		b.Fatal(err)
	}
	return took
}
