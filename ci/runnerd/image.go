package runnerd

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"

	"github.com/garrisonhq/garrison/images"
)

// BaseImage is the runner image's base: images/'s busybox, FROM scratch.
const BaseImage = "garrison/busybox:latest"

// ImageRepo is the runner image's repository; its tag is the garrison
// binary's digest, so each build of garrison has its own.
const ImageRepo = "garrison/runner"

// runnerDockerfile: the shell and tools of the base for the steps, the
// garrison binary to be the runner.
const runnerDockerfile = "FROM " + BaseImage + "\nCOPY garrison /garrison\nENTRYPOINT [\"/garrison\", \"runnerd\"]\n"

// BuildImage makes the runner image around exe (a static garrison binary)
// unless the engine has it, and returns its tag.
func BuildImage(ctx context.Context, cli client.APIClient, exe string, log io.Writer) (string, error) {
	sum, err := staticDigest(exe)
	if err != nil {
		return "", err
	}
	tag := ImageRepo + ":" + sum[:12]
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	}
	if err := images.BuildBusybox(ctx, cli, BaseImage, log); err != nil {
		return "", fmt.Errorf("runner image: %w", err)
	}
	// The context names the binary garrison, whatever its file is called.
	dir, err := linkDir(exe)
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	c := images.NewContext()
	c.Add("Dockerfile", 0o644, []byte(runnerDockerfile))
	if err := c.AddFS("garrison", os.DirFS(dir), "garrison"); err != nil {
		return "", fmt.Errorf("runner image: %w", err)
	}
	if err := c.Build(ctx, cli, build.ImageBuildOptions{Tags: []string{tag}, Remove: true}, log); err != nil {
		return "", fmt.Errorf("runner image %s: %w", tag, err)
	}
	return tag, nil
}

// linkDir is a temporary directory holding exe as "garrison" (a hard link
// when it can, else a copy).
func linkDir(exe string) (string, error) {
	dir, err := os.MkdirTemp("", "garrison-runner-image-")
	if err != nil {
		return "", fmt.Errorf("runner image: %w", err)
	}
	dst := filepath.Join(dir, "garrison")
	if os.Link(exe, dst) == nil {
		return dir, nil
	}
	src, err := os.Open(exe)
	if err == nil {
		var out *os.File
		if out, err = os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755); err == nil {
			_, err = io.Copy(out, src)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		src.Close()
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("runner image: copy %s: %w", exe, err)
	}
	return dir, nil
}

// staticDigest checks that exe runs FROM scratch (no dynamic loader) and
// returns its SHA-256.
func staticDigest(exe string) (string, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return "", fmt.Errorf("runner image: %s: %w", exe, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			f.Close()
			return "", fmt.Errorf("runner image: %s is dynamically linked; the runner container needs a static garrison (build it with CGO_ENABLED=0, as `make build` does)", exe)
		}
	}
	f.Close()
	h := sha256.New()
	r, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("runner image: %w", err)
	}
	defer r.Close()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("runner image: %s: %w", exe, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
