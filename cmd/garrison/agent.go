package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/agent"
	"github.com/garrisonhq/garrison/internal/driverstats"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/scout/taskstats"
	"github.com/garrisonhq/garrison/signalman/docker"
)

type agentSettings struct {
	etcd          etcdSettings
	node          string
	advertiseHost string
	ttl           time.Duration
	selectLabels  string
	metricsAddr   string
	logLevel      string
}

// runAgent registers the labelled containers of the local Docker engine in
// the registry until ctx ends (`garrison agent`, one per host).
func runAgent(ctx context.Context, args []string, stderr io.Writer) error {
	var s agentSettings
	fs := flag.NewFlagSet("garrison agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s.etcd.register(fs, "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	fs.StringVar(&s.node, "node", "", "name of this host in the registry's metadata (default: the hostname); unique per agent")
	fs.StringVar(&s.advertiseHost, "advertise-host", "127.0.0.1", "host part of every registered address")
	fs.DurationVar(&s.ttl, "ttl", registrar.DefaultTTL, "lease TTL of each container's registration")
	fs.StringVar(&s.selectLabels, "select", "", "comma-separated extra label filters (key or key=value) a container must carry")
	fs.StringVar(&s.metricsAddr, "metrics-addr", "127.0.0.1:9108", "address of the agent's /metrics; empty turns it off")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, s.logLevel)
	if err != nil {
		return err
	}
	if err := s.etcd.validate(); err != nil {
		return usageError{err.Error()}
	}
	dcli, err := agent.NewDockerClient()
	if err != nil {
		return err
	}
	defer dcli.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = dcli.Ping(pingCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("no Docker engine answers at %s: %w", dcli.DaemonHost(), err)
	}
	cli, err := s.etcd.connect(splitList(s.etcd.endpoints))
	if err != nil {
		return err
	}
	defer cli.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Per-task CPU and memory of the containers garrison launched on this
	// host, with what their apps give them, for Prometheus to scrape.
	st := store.New(cli)
	idCtx, cancelID := context.WithTimeout(ctx, 30*time.Second)
	namespace, err := st.ClusterID(idCtx)
	cancelID()
	if err != nil {
		return err
	}
	drv, err := docker.New(dcli, docker.WithNamespace(namespace))
	if err != nil {
		return err
	}
	reg.MustRegister(taskstats.New(appLimits(st), []taskstats.Tasks{driverstats.Adapt[docker.Usage](drv)},
		taskstats.WithLogger(logger)))
	a, err := agent.New(agent.Config{Docker: dcli, Etcd: cli, Node: s.node, AdvertiseHost: s.advertiseHost,
		TTL: s.ttl, Select: splitList(s.selectLabels), Logger: logger, Registerer: reg})
	if err != nil {
		return err
	}
	if s.metricsAddr != "" {
		l, err := net.Listen("tcp", s.metricsAddr)
		if err != nil {
			return fmt.Errorf("cannot serve the agent's metrics on %s (set --metrics-addr): %w", s.metricsAddr, err)
		}
		server := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
		go server.Serve(l)
		defer server.Close()
	}
	logger.Info("agent running", "docker", dcli.DaemonHost(), "etcd", s.etcd.endpoints)
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// appLimits reads what an app gives each task from its stored definition.
func appLimits(st *store.Store) taskstats.Limits {
	return func(appID string) (float64, float64, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rec, err := st.App(ctx, appID)
		if err != nil || rec.Revision == 0 {
			return 0, 0, false
		}
		a, err := app.Decode(rec.Data)
		if err != nil {
			return 0, 0, false
		}
		return a.CPUs, a.Mem, true
	}
}
