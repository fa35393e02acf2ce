package images

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// BusyboxBinary is Debian's static busybox (package busybox-static).
const BusyboxBinary = "/bin/busybox"

// busyboxDockerfile installs busybox's applets as links in /bin: sh, cat,
// wget and the rest, enough for build and test steps' shell commands. A
// Go toolchain is not in it: a step that sets hostGo gets the host's,
// mounted read-only (see ci/pipeline).
//
//go:embed busybox/Dockerfile
var busyboxDockerfile []byte

// BuildBusybox builds tag FROM scratch around the host's static busybox:
// the base of garrison's build and test images (images/busybox/build.sh
// builds the same with the docker command).
func BuildBusybox(ctx context.Context, cli client.APIClient, tag string, log io.Writer) error {
	if _, err := os.Stat(BusyboxBinary); err != nil {
		return fmt.Errorf("busybox image needs a static busybox (apt-get install busybox-static): %w", err)
	}
	c := NewContext()
	c.Add("Dockerfile", 0o644, busyboxDockerfile)
	if err := c.AddFS("busybox", os.DirFS(filepath.Dir(BusyboxBinary)), filepath.Base(BusyboxBinary)); err != nil {
		return err
	}
	if err := c.Build(ctx, cli, build.ImageBuildOptions{Tags: []string{tag}}, log); err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	return nil
}
