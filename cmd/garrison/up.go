package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/api"
	"github.com/garrisonhq/garrison/headquarter/marathon"
	"github.com/garrisonhq/garrison/headquarter/ui"
	"github.com/garrisonhq/garrison/internal/etcdembed"
	"github.com/garrisonhq/garrison/registrar"
)

type upSettings struct {
	addr       string
	dataDir    string
	etcdListen string
	etcd       string
	logLevel   string
	hq         hqSettings
	autoscale  autoscaleSettings
}

func (s *upSettings) register(fs *flag.FlagSet) {
	fs.StringVar(&s.addr, "addr", "127.0.0.1:8080", "address of the HTTP API, console and /metrics")
	fs.StringVar(&s.dataDir, "data-dir", "./garrison-data", "directory for garrison's state (embedded etcd, logs)")
	fs.StringVar(&s.etcdListen, "etcd-listen", "http://127.0.0.1:2379", "client URL of the embedded etcd server (its peer port is the next one)")
	fs.StringVar(&s.etcd, "etcd", "", "comma-separated client URLs of an external etcd cluster; empty runs the embedded server")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	s.hq.register(fs)
	s.autoscale.register(fs)
}

// runUp runs everything garrison needs on one machine until ctx ends.
func runUp(ctx context.Context, args []string, stderr io.Writer) error {
	var s upSettings
	fs := flag.NewFlagSet("garrison up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s.register(fs)
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, s.logLevel)
	if err != nil {
		return err
	}

	// Take the API port before starting etcd, so a second garrison fails at
	// once with a message about the port, not later about etcd's.
	listener, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("cannot serve the API on %s (is another garrison running? set --addr): %w", s.addr, err)
	}
	defer listener.Close()
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory %s is unusable: %w", s.dataDir, err)
	}

	endpoints := splitList(s.etcd)
	if len(endpoints) == 0 {
		srv, err := etcdembed.Start(ctx, etcdembed.Config{DataDir: filepath.Join(s.dataDir, "etcd"), ClientURL: s.etcdListen})
		if err != nil {
			return err
		}
		// Closing the server last means every acknowledged write is in its
		// WAL before the process exits.
		defer func() {
			srv.Close()
			logger.Info("embedded etcd stopped")
		}()
		endpoints = []string{srv.ClientURL}
		logger.Info("embedded etcd ready", "client_url", srv.ClientURL, "data_dir", filepath.Join(s.dataDir, "etcd"))
		var stopWatch context.CancelFunc
		ctx, stopWatch = cancelOnError(ctx, srv.Err(), logger)
		defer stopWatch()
	}
	cli, err := registrar.NewClient(endpoints)
	if err != nil {
		return err
	}
	defer cli.Close()
	if err := checkEtcd(ctx, cli, endpoints); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "garrison_build_info",
			Help:        "Always 1; the version label says which garrison runs.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	)
	hq, err := startHeadquarter(ctx, cli, s.dataDir, s.hq, reg, logger)
	if err != nil {
		return err
	}
	// Stopped before etcd closes: the scheduler's last writes must land.
	defer hq.stop()
	scaler, stopScaler, err := startAutoscaler(ctx, s.autoscale, hq, cli, reg, logger)
	if err != nil {
		return err
	}
	defer stopScaler()
	gin.SetMode(gin.ReleaseMode)
	router := api.NewRouter(api.Config{Registry: cli, Registerer: reg, Gatherer: reg, Logger: logger, Autoscale: scaler})
	hq.routes(router, listener.Addr().String(), s.hq.auth, cli, logger)
	hq.exportTaskStats(reg, logger)
	console, err := ui.New()
	if err != nil {
		return err
	}
	console.Register(router)
	if ip := net.ParseIP(listenerHost(listener)); ip != nil && !ip.IsLoopback() && s.hq.auth == (marathon.Auth{}) {
		logger.Warn("the API listens beyond this machine without authentication: set --auth-token or --auth-user/--auth-password", "addr", listener.Addr().String())
	}
	server := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	// Event streams never end by themselves: close them when shutting down.
	server.RegisterOnShutdown(hq.bus.Close)
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(listener) }()
	logger.Info("garrison is up", "addr", listener.Addr().String(), "etcd", endpoints)

	select {
	case <-ctx.Done():
		logger.Info("stopping")
	case err := <-serveErr:
		return fmt.Errorf("API server on %s: %w", s.addr, err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		logger.Warn("API server did not drain in time", "error", err)
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func listenerHost(l net.Listener) string {
	host, _, err := net.SplitHostPort(l.Addr().String())
	if err != nil {
		return ""
	}
	return host
}

// checkEtcd fails fast with a clear message when no etcd answers.
func checkEtcd(ctx context.Context, cli *clientv3.Client, endpoints []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "/garrison/", clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd at %v does not answer: %w", endpoints, err)
	}
	return nil
}

// cancelOnError returns a context that ends, with the error as its cause,
// when errc delivers one: a failing embedded etcd stops garrison. The
// returned stop ends the watch and waits for it.
func cancelOnError(ctx context.Context, errc <-chan error, logger *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case err, ok := <-errc:
			if ok && err != nil {
				logger.Error("embedded etcd failed", "error", err)
				cancel(fmt.Errorf("embedded etcd: %w", err))
			}
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled); <-done }
}
