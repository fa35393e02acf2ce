package nomadtest

import (
	"context"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// removeContainers removes the Docker containers of the agent's
// allocations that are left once it is gone: those that mount a
// directory under dir. Nomad stops them when it stops their jobs, but not
// always before it exits (seen with a -dev agent resumed once: two of
// three containers left running). Without a Docker engine there is
// nothing to remove.
func removeContainers(dir string) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "com.hashicorp.nomad.alloc_id"))})
	if err != nil {
		return
	}
	for _, c := range list {
		for _, m := range c.Mounts {
			if strings.HasPrefix(m.Source, dir+"/") {
				_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
				break
			}
		}
	}
}
