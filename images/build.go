// Package images builds container images through the Docker API from tar
// build contexts made in memory: garrison's base images (FROM scratch,
// static binaries only, since no public registry is reachable) and each
// run's product image with its metadata, which it then pushes to the
// configured private registry.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// Context is a build context being assembled in memory.
type Context struct {
	buf bytes.Buffer
	tw  *tar.Writer
	err error
}

// NewContext starts an empty build context.
func NewContext() *Context {
	c := &Context{}
	c.tw = tar.NewWriter(&c.buf)
	return c
}

// Add puts a file in the context. Times are fixed so the same files give
// the same context (and Docker's build cache hits).
func (c *Context) Add(name string, mode int64, data []byte) {
	if c.err != nil {
		return
	}
	if err := c.tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
		c.err = fmt.Errorf("build context: %s: %w", name, err)
		return
	}
	if _, err := c.tw.Write(data); err != nil {
		c.err = fmt.Errorf("build context: %s: %w", name, err)
	}
}

// AddReader puts a file of known size in the context, streamed from r.
func (c *Context) AddReader(name string, mode, size int64, r io.Reader) {
	if c.err != nil {
		return
	}
	if err := c.tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
		c.err = fmt.Errorf("build context: %s: %w", name, err)
		return
	}
	if _, err := io.CopyN(c.tw, r, size); err != nil {
		c.err = fmt.Errorf("build context: %s: %w", name, err)
	}
}

// Build builds the context (its Dockerfile at the root) with the classic
// builder, writing the build's output to log. Intermediate containers run
// with host networking: the engine here has no bridge.
func (c *Context) Build(ctx context.Context, cli client.APIClient, opts build.ImageBuildOptions, log io.Writer) error {
	if c.err != nil {
		return c.err
	}
	if err := c.tw.Close(); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	opts.Dockerfile = "Dockerfile"
	opts.Remove, opts.ForceRemove = true, true
	opts.Version = build.BuilderV1
	if opts.NetworkMode == "" {
		opts.NetworkMode = "host"
	}
	resp, err := cli.ImageBuild(ctx, &c.buf, opts)
	if err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	defer resp.Body.Close()
	return readStream(resp.Body, log)
}

// readStream copies a Docker JSON progress stream's text to log and
// returns the error it reports: build and push fail inside the stream,
// not with an HTTP status.
func readStream(r io.Reader, log io.Writer) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Stream   string `json:"stream"`
			Status   string `json:"status"`
			Progress string `json:"progress"`
			Error    string `json:"error"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read Docker output: %w", err)
		}
		switch {
		case msg.Error != "":
			fmt.Fprintln(log, msg.Error)
			return errors.New(strings.TrimSpace(msg.Error))
		case msg.Stream != "":
			io.WriteString(log, msg.Stream)
		case msg.Status != "" && msg.Progress == "":
			fmt.Fprintln(log, msg.Status)
		}
	}
}
