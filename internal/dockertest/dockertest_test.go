package dockertest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// TestRunServesOnHostNetwork builds the test server image FROM scratch,
// runs it with host networking and reaches it on 127.0.0.1; its own binary
// serves as the Docker HEALTHCHECK.
func TestRunServesOnHostNetwork(t *testing.T) {
	cli := dockertest.Client(t)
	image := dockertest.BuildGoImage(t, cli, "garrison-test/testserver:dev", dockertest.TestServerPackage)
	hc := &container.HealthConfig{
		Test:     []string{"CMD", "/app", "-healthcheck"},
		Interval: 200 * time.Millisecond,
		Timeout:  2 * time.Second,
		Retries:  1,
	}
	id, port := dockertest.RunServing(t, cli, func(port int) dockertest.Spec {
		return dockertest.Spec{Image: image, Env: []string{fmt.Sprintf("PORT=%d", port)}, Healthcheck: hc}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	waitFor(t, 20*time.Second, "server answers "+url, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("%s %q", resp.Status, body)
	})
	waitFor(t, 20*time.Second, "container healthy", func() (bool, string) {
		info, err := cli.ContainerInspect(context.Background(), id)
		if err != nil {
			return false, err.Error()
		}
		if info.State.Health == nil {
			return false, "no health state"
		}
		return info.State.Health.Status == container.Healthy, info.State.Health.Status
	})
	dockertest.Stop(t, cli, id)
	info, err := cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Running || info.State.ExitCode != 0 {
		t.Fatalf("after stop: running=%v exit code %d, want a clean exit on SIGTERM", info.State.Running, info.State.ExitCode)
	}
}

// TestRunServingRetriesATakenPort: the first container is given a port
// this test holds, as if someone had taken the probed port before the
// server bound it; RunServing sees it exit on "address already in use"
// and runs another on a new port.
func TestRunServingRetriesATakenPort(t *testing.T) {
	cli := dockertest.Client(t)
	image := dockertest.BuildGoImage(t, cli, "garrison-test/testserver:dev", dockertest.TestServerPackage)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	attempts := 0
	id, port := dockertest.RunServing(t, cli, func(port int) dockertest.Spec {
		attempts++
		if attempts == 1 {
			port = takenPort
		}
		return dockertest.Spec{Image: image, Env: []string{fmt.Sprintf("PORT=%d", port)}}
	})
	if attempts != 2 || port == takenPort {
		t.Fatalf("%d attempts, serving on %d (taken: %d); want a second attempt on another port", attempts, port, takenPort)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatalf("container %.12s on port %d: %v", id, port, err)
	}
	resp.Body.Close()
}

// waitFor polls cond until it holds or timeout passes.
var waitFor = poll.Until
