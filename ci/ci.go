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
	"github.com/garrisonhq/garrison/ci/pool"
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
	// TokenIdentity is who a request with the bearer token is, in
	// release history and approvals (default "token").
	TokenIdentity string
	// Approvers are the users who may approve releases for environments
	// that need an approval; empty: every user but the committer.
	Approvers []string
	// Mail sends the pipelines' notification mail; nil sends none.
	Mail runner.Mailer
	// RunnerPool is the app id of the warm runner pool test steps without
	// an image run on. garrison creates the app (one instance, the runner
	// image made around RunnerBinary, a static garrison) when it is
	// missing and updates it, keeping its instance count, when it differs
	// from what this garrison would create (an upgrade); its autoscale
	// rule (source runners) sizes it. The runners reach this garrison's
	// API at RunnerHQ (a base URL) and etcd with RunnerEtcd, with
	// MarathonAuth's credentials. Empty: no pool.
	RunnerPool   string
	RunnerBinary string
	RunnerHQ     string
	RunnerEtcd   RunnerEtcd
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
	var target *deploy.Marathon
	switch {
	case cfg.MarathonHandler != nil:
		target = deploy.NewMarathonHandler(cfg.MarathonHandler, cfg.MarathonAuth)
	case cfg.Marathon != "":
		target = deploy.NewMarathon(cfg.Marathon, cfg.MarathonAuth)
	}
	if target != nil {
		releases = deploy.NewManager(deploy.NewStore(cfg.Etcd), target)
	}
	mount(r, &api{runs: runs, projects: projects, hooks: hooks, releases: releases, dataDir: cfg.DataDir, log: logger, tokenIdentity: cfg.TokenIdentity, approvers: cfg.Approvers}, cfg.Auth)

	if cfg.Docker == nil {
		logger.Warn("no Docker engine: pipeline runs are queued but not run")
		return func() {}, nil
	}
	rcfg := runner.Config{Runs: runs, Projects: projects, Steps: executor.New(cfg.Docker, cfg.Namespace),
		Watcher: cfg.Etcd, DataDir: cfg.DataDir, Node: cfg.Node, IsLeader: cfg.IsLeader, Poll: cfg.Poll, Logger: logger, Mail: cfg.Mail}
	if cfg.Registry != "" {
		rcfg.Products = images.NewBuilder(cfg.Docker, cfg.Registry)
	}
	if releases != nil {
		rcfg.Releases = releases
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var runners *pool.Pool
	if cfg.RunnerPool != "" {
		if target == nil {
			cancel()
			return nil, errors.New("a runner pool needs a Marathon API to run it on")
		}
		if cfg.RunnerHQ == "" || len(cfg.RunnerEtcd.Endpoints) == 0 {
			cancel()
			return nil, errors.New("a runner pool needs the URL its runners reach garrison's API at, and etcd's")
		}
		runnerArgs, runnerVolumes, err := runnerSettings(cfg.RunnerEtcd, cfg.MarathonAuth, cfg.DataDir)
		if err != nil {
			cancel()
			return nil, err
		}
		runners = pool.New(cfg.Etcd, cfg.RunnerPool, cfg.RunnerHQ)
		rcfg.Pool = runners
		mountPool(r, runners, cfg.Auth)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ensurePool(rctx, target, cfg, runnerArgs, runnerVolumes, logger)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := runner.New(rcfg).Run(rctx); err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("pipeline runner stopped", "error", err)
		}
	}()
	return func() {
		cancel()
		wg.Wait()
		if runners != nil {
			runners.Close()
		}
	}, nil
}

// mountPool serves the runners' routes: the workspaces of the jobs they
// took, and their output.
func mountPool(r *gin.Engine, p *pool.Pool, auth gin.HandlerFunc) {
	h := []gin.HandlerFunc{gin.WrapH(p.Handler())}
	if auth != nil {
		h = append([]gin.HandlerFunc{auth}, h...)
	}
	r.GET(pool.JobsPath+":id/workspace", h...)
	r.POST(pool.JobsPath+":id/output", h...)
}
