package docker

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// Exec runs argv inside the running container of task taskID (docker
// exec), as Mesos runs a COMMAND health check in the task's namespaces,
// and returns its exit code and the first maxOutput bytes of its stdout
// and stderr. When ctx ends first the error says so; the command may go
// on in the container until it ends by itself (Docker cannot kill an exec).
func (d *Driver) Exec(ctx context.Context, taskID string, argv []string, maxOutput int) (int, string, error) {
	c, err := d.find(ctx, taskID)
	if errors.Is(err, ErrUnknownTask) {
		return -1, "", fmt.Errorf("docker: task %s: exec: %w", taskID, ErrUnknownTask)
	}
	if err != nil {
		return -1, "", fmt.Errorf("docker: task %s: exec: %w", taskID, err)
	}
	created, err := d.cli.ContainerExecCreate(ctx, c.ID, container.ExecOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, "", fmt.Errorf("docker: task %s: exec %q: %w", taskID, argv, err)
	}
	att, err := d.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, "", fmt.Errorf("docker: task %s: exec %q: attach: %w", taskID, argv, err)
	}
	defer att.Close()
	out := &capped{max: maxOutput}
	done := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(out, out, att.Reader)
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		att.Close() // ends the copy
		<-done
		return -1, out.String(), fmt.Errorf("docker: task %s: exec %q: %w", taskID, argv, ctx.Err())
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return -1, out.String(), fmt.Errorf("docker: task %s: exec %q: read output: %w", taskID, argv, err)
	}
	info, err := d.cli.ContainerExecInspect(ctx, created.ID)
	if err != nil {
		return -1, out.String(), fmt.Errorf("docker: task %s: exec %q: inspect: %w", taskID, argv, err)
	}
	return info.ExitCode, out.String(), nil
}

// capped keeps the first max bytes written to it.
type capped struct {
	buf []byte
	max int
}

func (c *capped) Write(b []byte) (int, error) {
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, b[:min(room, len(b))]...)
	}
	return len(b), nil
}

func (c *capped) String() string { return string(c.buf) }
