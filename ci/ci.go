// Package ci puts garrison's pipeline on its HTTP server: the Git webhooks
// (/api/v1/hooks/...), runs and their logs (/api/v1/runs), and projects
// (/api/v1/projects), and starts the runner, which runs pipelines only
// while this garrison is the leader. Every replica serves the API; a run
// queued or cancelled on any of them is seen by the leader through etcd.
package ci

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/gin-gonic/gin"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/executor"
	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/ci/runner"
	"github.com/garrisonhq/garrison/ci/webhook"
	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/images"
)

// Config is what the pipeline needs from garrison.
type Config struct {
	Etcd *clientv3.Client
	// Docker runs build steps; nil serves the API and queues runs but
	// runs nothing (garrison without a Docker engine).
	Docker client.APIClient
	// Namespace labels step containers (garrison's cluster id).
	Namespace string
	DataDir   string
	Node      string
	// Registry (host:port) receives product images; empty builds none.
	Registry string
	// Marathon is the base URL of the Marathon API runs deploy through;
	// MarathonHandler, when set instead, serves it in-process (garrison's
	// own router). Neither deploys nothing and runs no tests.
	Marathon        string
	MarathonHandler http.Handler
	MarathonAuth    deploy.Auth
	// ProjectsFile, when set, is loaded into etcd at start (projects
	// there keep any other projects configured through the API).
	ProjectsFile string
	// IsLeader reports whether this garrison leads; nil means always.
	IsLeader func() bool
	// Auth guards every route but the hooks (which carry their own
	// signatures); nil leaves them open.
	Auth   gin.HandlerFunc
	Logger *slog.Logger
	// Poll shortens the runner's checks in tests (default 1s).
	Poll time.Duration
}

// Start mounts the pipeline's routes on r and starts the runner; stop ends
// the runner (runs in flight are recorded failed) and waits for it.
func Start(ctx context.Context, r *gin.Engine, cfg Config) (stop func(), err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	logger := cfg.Logger.With("component", "ci")
	projects := project.NewStore(cfg.Etcd)
	if cfg.ProjectsFile != "" {
		ps, err := project.LoadFile(cfg.ProjectsFile)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if err := projects.Put(ctx, p); err != nil {
				return nil, fmt.Errorf("projects file %s: %w", cfg.ProjectsFile, err)
			}
		}
		logger.Info("projects loaded", "file", cfg.ProjectsFile, "count", len(ps))
	}
	runs := run.NewStore(cfg.Etcd)
	hooks := webhook.New(webhook.Config{Projects: projects, Trigger: runs,
		Claims: webhook.NewEtcdClaims(cfg.Etcd, 0), Logger: logger})
	var releases *deploy.Manager
	switch {
	case cfg.MarathonHandler != nil:
		releases = deploy.NewManager(deploy.NewStore(cfg.Etcd), deploy.NewMarathonHandler(cfg.MarathonHandler, cfg.MarathonAuth))
	case cfg.Marathon != "":
		releases = deploy.NewManager(deploy.NewStore(cfg.Etcd), deploy.NewMarathon(cfg.Marathon, cfg.MarathonAuth))
	}
	mount(r, &api{runs: runs, projects: projects, hooks: hooks, releases: releases, dataDir: cfg.DataDir, log: logger}, cfg.Auth)

	if cfg.Docker == nil {
		logger.Warn("no Docker engine: pipeline runs are queued but not run")
		return func() {}, nil
	}
	rcfg := runner.Config{Runs: runs, Projects: projects, Steps: executor.New(cfg.Docker, cfg.Namespace),
		Watcher: cfg.Etcd, DataDir: cfg.DataDir, Node: cfg.Node, IsLeader: cfg.IsLeader, Poll: cfg.Poll, Logger: logger}
	if cfg.Registry != "" {
		rcfg.Products = images.NewBuilder(cfg.Docker, cfg.Registry)
	}
	if releases != nil {
		rcfg.Releases = releases
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := runner.New(rcfg).Run(rctx); err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("pipeline runner stopped", "error", err)
		}
	}()
	return func() { cancel(); wg.Wait() }, nil
}
