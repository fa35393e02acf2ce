// Package images builds container images through the Docker API from tar
// build contexts streamed from memory and from directories: garrison's
// base images (FROM scratch, static binaries only, since no public
// registry is reachable) and each run's product image with its metadata,
// which it then pushes to the configured private registry.
package images

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// MaxContextSize bounds a build context (the product's files): a build
// that left more is refused rather than filling the engine's disk.
const MaxContextSize = 2 << 30

// Context is a build context: files from memory and from file systems,
// written as a tar stream while the engine reads it.
type Context struct {
	entries []entry
	size    int64
	err     error
}

type entry struct {
	hdr  tar.Header
	data []byte
	fsys fs.FS
	path string
}

// NewContext starts an empty build context.
func NewContext() *Context { return &Context{} }

// Add puts a file held in memory in the context.
func (c *Context) Add(name string, mode int64, data []byte) {
	c.add(entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: data})
}

func (c *Context) add(e entry) {
	// Fixed times: the same files give the same context and cache hits.
	e.hdr.ModTime = time.Unix(0, 0)
	c.size += e.hdr.Size
	if c.size > MaxContextSize && c.err == nil {
		c.err = fmt.Errorf("build context over %d bytes", int64(MaxContextSize))
	}
	c.entries = append(c.entries, e)
}

func (c *Context) addDir(name string, mode int64) {
	c.add(entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}})
}

// AddFS puts src (a file or a directory, walked) from fsys in the context
// under name. Symbolic links are kept as links, never followed: a link a
// build left pointing at a host file adds the link, not the file. fsys
// should be an os.Root's FS so that no path leaves its directory.
func (c *Context) AddFS(name string, fsys fs.FS, src string) error {
	return fs.WalkDir(fsys, src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("build context: %w", err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, src), "/")
		target := path.Join(name, rel)
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("build context: %s: %w", p, err)
		}
		mode := int64(info.Mode().Perm())
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := fs.ReadLink(fsys, p)
			if err != nil {
				return fmt.Errorf("build context: %s: %w", p, err)
			}
			c.add(entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: target, Linkname: link, Mode: 0o777}})
		case d.IsDir():
			c.addDir(target, mode)
		case d.Type().IsRegular():
			c.add(entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: target, Mode: mode, Size: info.Size()}, fsys: fsys, path: p})
		default:
			return fmt.Errorf("build context: %s is neither a file, a directory nor a link", p)
		}
		return nil
	})
}

func (c *Context) write(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, e := range c.entries {
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return fmt.Errorf("build context: %s: %w", e.hdr.Name, err)
		}
		switch {
		case e.fsys != nil:
			f, err := e.fsys.Open(e.path)
			if err != nil {
				return fmt.Errorf("build context: %w", err)
			}
			// Exactly the size announced: a file that grew meanwhile is cut.
			_, err = io.CopyN(tw, f, e.hdr.Size)
			f.Close()
			if err != nil {
				return fmt.Errorf("build context: %s: %w", e.path, err)
			}
		case e.data != nil:
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("build context: %s: %w", e.hdr.Name, err)
			}
		}
	}
	return tw.Close()
}

// Build builds the context (its Dockerfile at the root) with the classic
// builder, writing the build's output to log. Intermediate containers run
// with host networking: the engine here has no bridge.
func (c *Context) Build(ctx context.Context, cli client.APIClient, opts build.ImageBuildOptions, log io.Writer) error {
	if c.err != nil {
		return c.err
	}
	opts.Dockerfile = "Dockerfile"
	opts.Remove, opts.ForceRemove = true, true
	opts.Version = build.BuilderV1
	if opts.NetworkMode == "" {
		opts.NetworkMode = "host"
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(c.write(pw)) }()
	defer pr.Close()
	resp, err := cli.ImageBuild(ctx, pr, opts)
	if err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	defer resp.Body.Close()
	return readStream(resp.Body, log)
}

// readStream copies a Docker JSON progress stream's text to log and
// returns the error it reports: build and push fail inside the stream,
// not with an HTTP status. aux, when not nil, receives each aux message.
func readStream(r io.Reader, log io.Writer, aux ...func(json.RawMessage)) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Stream   string          `json:"stream"`
			Status   string          `json:"status"`
			Progress string          `json:"progress"`
			Error    string          `json:"error"`
			Aux      json.RawMessage `json:"aux"`
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
		if msg.Aux != nil {
			for _, f := range aux {
				f(msg.Aux)
			}
		}
	}
}
