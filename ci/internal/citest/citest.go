// Package citest holds what the pipeline's tests share: the busybox base
// image they run steps in, and garrison's side of a runner pool.
package citest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/ci/runnerd"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/pooltest"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/registrar"
)

// Busybox builds the image steps run in and returns its tag: the
// pipeline's tests and cmd/garrison's share dockertest.Busybox.
func Busybox(t testing.TB, cli client.APIClient) string {
	t.Helper()
	return dockertest.Busybox(t, cli)
}

// PoolHQ is garrison's side of the runner pool poolApp, serving the
// runners' routes on 127.0.0.1 as garrison's API does with no auth:
// pooltest.HQ with its defaults.
func PoolHQ(t testing.TB, cli *clientv3.Client, poolApp string) *pool.Pool {
	t.Helper()
	return pooltest.HQ(t, cli, poolApp, pooltest.Options{})
}

var runnerImage struct {
	once sync.Once
	tag  string
	err  error
}

// RunnerImage builds garrison statically and the runner image around it,
// once per test binary; the image is tagged with the binary's digest, so
// an unchanged garrison reuses it.
func RunnerImage(t testing.TB, cli client.APIClient) string {
	t.Helper()
	runnerImage.once.Do(func() {
		bin, cleanup, err := testbin.Build("github.com/garrisonhq/garrison/cmd/garrison", true)
		if err != nil {
			runnerImage.err = err
			return
		}
		defer cleanup()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		var log bytes.Buffer
		runnerImage.tag, runnerImage.err = runnerd.BuildImage(ctx, cli, bin, &log)
		if runnerImage.err != nil {
			runnerImage.err = fmt.Errorf("%w\n%s", runnerImage.err, log.String())
		}
	})
	if runnerImage.err != nil {
		t.Fatal(runnerImage.err)
	}
	return runnerImage.tag
}

// StartContainerRunner runs a runner of poolApp in a container of image
// (host networking, as garrison runs the pool app) with etcd its only
// setting, and waits until it is registered. The container goes with the
// test.
func StartContainerRunner(t testing.TB, cli client.APIClient, image string, etcd []string, poolApp, id string) {
	t.Helper()
	dockertest.Run(t, cli, dockertest.Spec{Image: image, Name: dockertest.UniqueName("runner-" + id + "-"),
		Cmd: []string{"--etcd", strings.Join(etcd, ","), "--app", poolApp, "--id", id, "--addr", "127.0.0.1:0"}})
	ec, err := registrar.NewClient(etcd)
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	poll.Until(t, time.Minute, "runner "+id+" registered", func() (bool, string) {
		resp, err := ec.Get(context.Background(), registrar.Key(app.ServiceName(poolApp), id))
		return err == nil && len(resp.Kvs) == 1, fmt.Sprint(err)
	})
}
