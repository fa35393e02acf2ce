package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/gin-gonic/gin"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci"
	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/headquarter/auth"
)

type ciSettings struct {
	registry string
	projects string
}

func (s *ciSettings) register(fs *flag.FlagSet) {
	fs.StringVar(&s.registry, "ci-registry", "", "host:port of the registry pipeline runs push product images to (a loopback one needs no TLS); empty builds no image")
	fs.StringVar(&s.projects, "ci-projects", "", "YAML file of pipeline projects loaded at start (projects: [{name, repo, secret, branches, paths, ...}])")
}

// startCI mounts the pipeline's routes and starts its runner, which runs
// pipelines only while isLeader says so (nil: always, a single garrison).
// Runs deploy through this garrison's own Marathon API, called in-process
// on r (with creds, as any client).
func startCI(ctx context.Context, r *gin.Engine, cli *clientv3.Client, hq *headquarter, creds auth.Credentials, dataDir string, s ciSettings, isLeader func() bool, logger *slog.Logger) (func(), error) {
	namespace, err := hq.store.ClusterID(ctx)
	if err != nil {
		return nil, err
	}
	cfg := ci.Config{Etcd: cli, Namespace: namespace, DataDir: dataDir, Node: hq.env.Hostname,
		Registry: s.registry, ProjectsFile: s.projects, IsLeader: isLeader, Logger: logger,
		MarathonHandler: r, MarathonAuth: deploy.Auth{Token: creds.Token, Username: creds.Username, Password: creds.Password}}
	if hq.docker != nil {
		cfg.Docker = hq.docker
	}
	return ci.Start(ctx, r, cfg)
}
