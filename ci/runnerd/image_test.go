package runnerd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/ci/internal/citest"
	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/garrisontest"
)

// TestContainerRunnerStepCannotReadTheHost: a runner in its image (as
// garrison runs the pool app) runs a test step that reads its workspace
// but cannot read a file of the host, nor see the host's directories: the
// step sees the image and its own copy of the workspace, nothing else.
func TestContainerRunnerStepCannotReadTheHost(t *testing.T) {
	etcd := etcdtest.New(t)
	cli := etcd.Client(t)
	d := dockertest.Client(t)
	image := citest.RunnerImage(t, d)
	citest.StartContainerRunner(t, d, image, etcd.Endpoints, poolApp, "c1")
	p := citest.PoolHQ(t, cli, poolApp)

	hostDir := t.TempDir()
	secret := filepath.Join(hostDir, "host-secret.txt")
	if err := os.WriteFile(secret, []byte("the host's secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	os.WriteFile(filepath.Join(ws, "in.txt"), []byte("from the workspace\n"), 0o644)
	// A link the checkout left pointing at the host file is copied as a
	// link, and leads nowhere on the runner.
	os.Symlink(secret, filepath.Join(ws, "escape"))
	var log garrisontest.Buffer
	code, err := p.Run(context.Background(), pool.Job{ID: "isolated", Timeout: time.Minute,
		Env: map[string]string{"SECRET": secret, "HOSTDIR": hostDir},
		Script: `cat in.txt
cat "$SECRET" || echo "cannot read the host file"
cat escape || echo "cannot follow the link"
test -e "$HOSTDIR" || echo "no host directory"
test -e /usr/local/go || echo "no host toolchain"
exit 7`}, ws, &log)
	out := log.String()
	if err != nil || code != 7 {
		t.Fatalf("job: %d %v\n%s", code, err, out)
	}
	if strings.Contains(out, "the host's secret") {
		t.Fatalf("the step read the host file:\n%s", out)
	}
	for _, want := range []string{"from the workspace", "cannot read the host file", "cannot follow the link", "no host directory", "no host toolchain"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
