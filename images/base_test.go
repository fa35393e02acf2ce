package images_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/garrisonhq/garrison/images"
	"github.com/garrisonhq/garrison/internal/dockertest"
)

// BusyboxTag is the base image the pipeline's tests build and run.
const busyboxTag = "garrison-test/busybox:ci"

func TestBusyboxImageRunsShellCommands(t *testing.T) {
	cli := dockertest.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	if err := images.BuildBusybox(ctx, cli, busyboxTag, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	id := dockertest.Run(t, cli, dockertest.Spec{Image: busyboxTag, Cmd: []string{"/bin/sh", "-c", "echo hello | tr a-z A-Z; test -d /tmp && which wget"}})
	waitC, errC := cli.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case w := <-waitC:
		if w.StatusCode != 0 {
			t.Errorf("exit code %d", w.StatusCode)
		}
	case err := <-errC:
		t.Fatal(err)
	}
	rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out bytes.Buffer
	stdcopy.StdCopy(&out, io.Discard, rc)
	if out.String() != "HELLO\n/usr/bin/wget\n" {
		t.Errorf("output %q", out.String())
	}
}
