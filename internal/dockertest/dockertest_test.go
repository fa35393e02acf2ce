package dockertest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/registrar"
)

// TestRunServesOnHostNetwork builds the test server image FROM scratch,
// runs it with host networking and reaches it on 127.0.0.1; its own binary
// serves as the Docker HEALTHCHECK.
func TestRunServesOnHostNetwork(t *testing.T) {
	cli := dockertest.Client(t)
	image := dockertest.BuildGoImage(t, cli, "garrison-test/testserver:dev", dockertest.TestServerPackage)
	ports, err := registrar.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	id := dockertest.Run(t, cli, dockertest.Spec{
		Image: image,
		Env:   []string{fmt.Sprintf("PORT=%d", ports[0])},
		Healthcheck: &container.HealthConfig{
			Test:     []string{"CMD", "/app", "-healthcheck"},
			Interval: 200 * time.Millisecond,
			Timeout:  2 * time.Second,
			Retries:  1,
		},
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", ports[0])
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

// waitFor polls cond until it holds or timeout passes.
var waitFor = poll.Until
