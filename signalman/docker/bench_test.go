package docker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/task"
)

// BenchmarkLaunch20 launches 20 containers through Driver.Launch and 20
// through the bare Docker API (create + start, same image, host network),
// one after the other in the same run, and reports the time per launch of
// each and their ratio. Each iteration is bounded by a 2-minute context and
// removes its containers; run it with -benchtime=1x for one round.
func BenchmarkLaunch20(b *testing.B) {
	const n = 20
	d, cli := newDriver(b)
	img := image(b, cli)
	label := dockertest.UniqueName("bench-")
	b.Cleanup(func() { removeLabelled(b, cli, label) })

	var driverTime, rawTime time.Duration
	round := 0
	for b.Loop() {
		ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
		// Alternate which goes first, so neither always meets a warm engine.
		runs := []func(){
			func() { driverTime += launchDriver(ctx, b, d, label, n) },
			func() { rawTime += launchRaw(ctx, b, cli, img, label, n) },
		}
		if round%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, run := range runs {
			run()
			removeLabelled(b, cli, label)
		}
		cancel()
		round++
	}
	launches := float64(round * n)
	b.ReportMetric(float64(driverTime.Milliseconds())/launches, "ms/driver-launch")
	b.ReportMetric(float64(rawTime.Milliseconds())/launches, "ms/raw-launch")
	b.ReportMetric(float64(driverTime)/float64(rawTime), "driver/raw")
	// ns/op stays as measured (it includes the clean-up between rounds):
	// reporting 0 over it erased the benchmark's own figure.
}

func launchDriver(ctx context.Context, b *testing.B, d *docker.Driver, label string, n int) time.Duration {
	start := time.Now()
	for range n {
		spec := task.Spec{
			ID: dockertest.UniqueName("bench."), AppID: "/signalman/bench", Version: "v1",
			Image: taskServerImage, Labels: map[string]string{dockertest.LabelTest: label},
		}
		if _, err := d.Launch(ctx, spec); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

func launchRaw(ctx context.Context, b *testing.B, cli *client.Client, img, label string, n int) time.Duration {
	start := time.Now()
	for range n {
		c, err := cli.ContainerCreate(ctx,
			&container.Config{Image: img, Labels: map[string]string{dockertest.LabelTest: label}},
			&container.HostConfig{NetworkMode: "host"}, nil, nil, dockertest.UniqueName("bench-raw-"))
		if err != nil {
			b.Fatal(err)
		}
		if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// removeLabelled force-removes every container the benchmark labelled.
func removeLabelled(b *testing.B, cli *client.Client, label string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, err := cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", fmt.Sprintf("%s=%s", dockertest.LabelTest, label))),
	})
	if err != nil {
		b.Fatalf("list benchmark containers: %v", err)
	}
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			b.Errorf("remove benchmark container %.12s: %v", c.ID, err)
		}
	}
}
