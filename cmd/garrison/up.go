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
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci"
	"github.com/garrisonhq/garrison/headquarter/api"
	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/headquarter/leaderproxy"
	"github.com/garrisonhq/garrison/headquarter/ui"
	"github.com/garrisonhq/garrison/internal/diskguard"
	"github.com/garrisonhq/garrison/internal/etcdembed"
)

type upSettings struct {
	addr       string
	dataDir    string
	etcdListen string
	etcd       etcdSettings
	etcdQuota  byteSize
	minFree    byteSize
	logLevel   string
	http       httpSettings
	hq         hqSettings
	autoscale  autoscaleSettings
	ci         ciSettings
	// advertise and leaderTTL matter with an external etcd, where the
	// headquarters sharing it elect one leader.
	advertise string
	leaderTTL time.Duration
	// cluster is garrison hq: an external etcd is required, none is
	// embedded.
	cluster bool
}

func (s *upSettings) register(fs *flag.FlagSet) {
	fs.StringVar(&s.addr, "addr", "127.0.0.1:8080", "address of the HTTP API, console and /metrics")
	if s.cluster {
		fs.StringVar(&s.dataDir, "data-dir", "./garrison-data", "directory for this replica's own files (task sandboxes, build logs)")
		s.etcd.register(fs, "", "comma-separated client URLs of the etcd cluster the replicas share (required)")
	} else {
		fs.StringVar(&s.dataDir, "data-dir", "./garrison-data", "directory for garrison's state (embedded etcd, logs)")
		fs.StringVar(&s.etcdListen, "etcd-listen", "http://127.0.0.1:2379", "client URL of the embedded etcd server (its peer port is the next one)")
		s.etcd.register(fs, "", "comma-separated client URLs of an external etcd cluster; empty runs the embedded server")
	}
	s.etcdQuota = etcdembed.DefaultQuotaBytes
	fs.Var(&s.etcdQuota, "etcd-quota-bytes", "etcd's database quota: the embedded server's --quota-backend-bytes; for an external etcd older than 3.6, which does not report its own, what it was given. API writes are refused above 90% of it")
	s.minFree = 256 << 20
	fs.Var(&s.minFree, "min-free-space", "API writes are refused while the data directory has less free space than this")
	fs.StringVar(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	s.http.register(fs)
	s.hq.register(fs)
	s.autoscale.register(fs)
	s.ci.register(fs)
	fs.StringVar(&s.advertise, "advertise-addr", "", "with --etcd: host:port the other headquarters reach this one's API at, the value of its leader election (default: --addr)")
	fs.DurationVar(&s.leaderTTL, "leader-ttl", leader.DefaultTTL, "with --etcd: how long a leader that stopped renewing its etcd lease (crashed, paused, cut off) keeps the lead")
}

// validate checks every setting that needs no I/O, so that a mistake fails
// before anything starts.
func (s *upSettings) validate() error {
	if _, _, err := net.SplitHostPort(s.addr); err != nil {
		return fmt.Errorf("--addr %q: want host:port, e.g. 127.0.0.1:8080", s.addr)
	}
	if s.cluster && s.etcd.endpoints == "" {
		return errors.New("--etcd is required: garrison hq replicas share an external etcd cluster (garrison up embeds one)")
	}
	if s.etcd.endpoints == "" && s.etcd.secured() {
		return errors.New("--etcd-cacert, --etcd-cert, --etcd-key, --etcd-user and --etcd-password apply to an external etcd: set --etcd")
	}
	if s.etcdQuota == 0 {
		return errors.New("--etcd-quota-bytes must be positive")
	}
	if host, _, _ := net.SplitHostPort(s.addr); s.etcd.endpoints != "" && s.advertise == "" && (host == "" || net.ParseIP(host).IsUnspecified()) {
		return fmt.Errorf("--addr %q listens on every address: set --advertise-addr to the host:port the other headquarters reach this one at", s.addr)
	}
	if s.advertise != "" {
		if _, _, err := net.SplitHostPort(s.advertise); err != nil {
			return fmt.Errorf("--advertise-addr %q: want host:port, e.g. 10.0.0.5:8080", s.advertise)
		}
	}
	if s.leaderTTL < leader.MinTTL {
		return fmt.Errorf("--leader-ttl %s: etcd's shortest lease is %s", s.leaderTTL, leader.MinTTL)
	}
	if err := errors.Join(s.etcd.validate(), s.http.validate(), s.hq.validate()); err != nil {
		return err
	}
	return s.ci.validate(s.hq.auth)
}

// runUp runs everything garrison needs on one machine until ctx ends.
func runUp(ctx context.Context, args []string, stderr io.Writer) error {
	return runServer(ctx, upSettings{}, "garrison up", args, stderr)
}

// runHQ is garrison hq: one of several headquarter replicas on an external
// etcd cluster. It is garrison up --etcd: the replicas elect one leader,
// which runs the scheduler, the autoscaler and the pipeline runner; the
// others serve the API through it.
func runHQ(ctx context.Context, args []string, stderr io.Writer) error {
	return runServer(ctx, upSettings{cluster: true}, "garrison hq", args, stderr)
}

// runServer runs garrison up or garrison hq (s.cluster) until ctx ends.
func runServer(ctx context.Context, s upSettings, name string, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	s.register(fs)
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, s.logLevel)
	if err != nil {
		return err
	}
	if err := s.validate(); err != nil {
		return usageError{err.Error()}
	}
	// Built now so that unreadable TLS files fail before anything starts.
	server, err := s.http.server(nil)
	if err != nil {
		return err
	}

	// Take the data directory, then the API port, before starting etcd, so
	// a second garrison fails at once with a message about either, not
	// later (or never) inside etcd.
	lock, err := lockDataDir(s.dataDir)
	if err != nil {
		return err
	}
	defer lock.release()
	listener, err := net.Listen("tcp", s.addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("cannot serve the API on %s: the address is in use (is another garrison running? set --addr): %w", s.addr, err)
	}
	if err != nil {
		return fmt.Errorf("cannot serve the API on %s: %w", s.addr, err)
	}
	defer listener.Close()

	endpoints := splitList(s.etcd.endpoints)
	if len(endpoints) == 0 {
		srv, err := etcdembed.Start(ctx, etcdembed.Config{DataDir: filepath.Join(s.dataDir, "etcd"), ClientURL: s.etcdListen, QuotaBytes: int64(s.etcdQuota)})
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
	cli, err := s.etcd.connect(endpoints)
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
	gin.SetMode(gin.ReleaseMode)

	advertise := s.advertise
	if advertise == "" {
		advertise = listener.Addr().String()
	}
	serveErr := make(chan error, 1)
	var handler swapHandler
	var el *leader.Elector
	var lost <-chan struct{} // closes when this headquarter stops leading
	// act is the etcd client the leader acts with: with an election, every
	// KV write through it is fenced by the term (leader.Fence.KV).
	act := cli
	if s.etcd.endpoints != "" {
		// Headquarters sharing an external etcd elect one leader, which
		// alone runs the scheduler and the autoscaler; the others answer
		// API requests with the leader's answers (leaderproxy). The
		// embedded etcd has one headquarter: a leader of one, no election.
		el, err = leader.New(leader.Config{Client: cli, Name: advertise, TTL: s.leaderTTL, Logger: logger})
		if err != nil {
			return err
		}
		// Until elected: the console, /ping, /health, /metrics of its own (its request
		// metrics in a registry of their own: the leader's router
		// registers them on reg later); writes go to the leader, whose
		// disk guard gates them.
		follower, err := newRouter(api.Config{Registry: cli, Registerer: prometheus.NewRegistry(), Gatherer: reg, Logger: logger,
			Auth: s.hq.auth}, nil, advertise, cli)
		if err != nil {
			return err
		}
		handler.set(follower)
		scheme := "http"
		if server.TLSConfig != nil {
			scheme = "https"
		}
		// Requests wait (up to 10 s) while this replica is elected but its
		// scheduler is still starting.
		server.Handler = leaderproxy.New(leaderproxy.Config{Leadership: readyLeader{el, &handler}, Self: advertise, Scheme: scheme,
			Tries: 40, Logger: logger}, &handler)
		go func() { serveErr <- serve(server, listener) }()
		type term struct {
			ctx   context.Context
			fence leader.Fence
		}
		terms := make(chan term)
		elCtx, stopElector := context.WithCancel(context.WithoutCancel(ctx))
		elDone := make(chan struct{})
		go func() {
			defer close(elDone)
			el.Run(elCtx, func(ctx context.Context, f leader.Fence) {
				select {
				case terms <- term{ctx, f}:
				case <-ctx.Done():
				}
				<-ctx.Done()
			})
		}()
		// Runs after the scheduler has stopped: the next leader takes over
		// at once instead of after the lease's TTL.
		defer func() { stopElector(); <-elDone }()
		logger.Info("campaigning for leadership; answering as a follower meanwhile", "addr", advertise, "leader_ttl", s.leaderTTL)
		select {
		case t := <-terms:
			lost = t.ctx.Done()
			// A paused leader resumed after another took over must not
			// act: what it writes as leader (task records, deployments,
			// decisions, pipeline runs, registrations) is fenced by its
			// term, and its scheduler checks the term before each launch
			// and kill.
			s.hq.fence = &t.fence
			act = fencedClient(cli, t.fence)
		case <-ctx.Done():
			return shutdown(server, logger, ctx)
		case err := <-serveErr:
			return fmt.Errorf("API server on %s: %w", s.addr, err)
		}
		logger.Info("elected leader: starting the scheduler and the autoscaler", "addr", advertise)
	}

	hq, err := startHeadquarter(ctx, cli, s.dataDir, s.hq, reg, logger)
	if err != nil {
		return err
	}
	// Stopped before etcd closes: the scheduler's last writes must land.
	stopHQ := sync.OnceFunc(hq.stop)
	defer stopHQ()
	if el != nil {
		hq.leadership = el
	}
	scaler, stopScaler, err := startAutoscaler(ctx, s.autoscale, hq, act, reg, logger)
	if err != nil {
		return err
	}
	stopScaler = sync.OnceFunc(stopScaler)
	defer stopScaler()
	guard := diskguard.New(diskguard.Config{Dir: s.dataDir, MinFree: uint64(s.minFree), Etcd: cli, Endpoints: endpoints,
		Quota: int64(s.etcdQuota), Registerer: reg, Logger: logger.With("component", "diskguard")})
	guard.Check(ctx)
	guardCtx, stopGuard := context.WithCancel(ctx)
	guardDone := make(chan struct{})
	go func() { defer close(guardDone); guard.Run(guardCtx) }()
	defer func() { stopGuard(); <-guardDone }()

	router, err := newRouter(api.Config{Registry: act, Registerer: reg, Gatherer: reg, Logger: logger, Autoscale: scaler,
		Auth: s.hq.auth, Writes: guard}, hq, advertise, act)
	if err != nil {
		return err
	}
	s.ci.hqURL = runnerHQ(server.TLSConfig != nil, advertise)
	s.ci.etcd = s.etcd
	stopCI, err := startCI(ctx, router, act, hq, s.hq.auth, s.dataDir, s.ci, nil, logger)
	if err != nil {
		return err
	}
	stopCI = sync.OnceFunc(stopCI)
	defer stopCI()
	hq.exportTaskStats(reg, logger)
	if ip := net.ParseIP(listenerHost(listener)); ip != nil && !ip.IsLoopback() {
		if !s.hq.auth.Enabled() {
			logger.Warn("the API listens beyond this machine without authentication: set --auth-token or --auth-user/--auth-password", "addr", listener.Addr().String())
		} else if server.TLSConfig == nil {
			logger.Warn("the API listens beyond this machine without TLS: credentials travel in clear text; set --tls-cert/--tls-key", "addr", listener.Addr().String())
		}
	}
	// Event streams never end by themselves: close them when shutting down.
	server.RegisterOnShutdown(hq.bus.Close)
	if el == nil {
		server.Handler = router
		go func() { serveErr <- serve(server, listener) }()
	} else {
		handler.set(router)
		handler.ready.Store(true)
	}
	logger.Info("garrison is up", "addr", listener.Addr().String(), "etcd", endpoints)

	select {
	case <-ctx.Done():
		logger.Info("stopping")
	case <-lost:
		// As Marathon does: a headquarter that lost the lead stops (its
		// scheduler's state is the leader's); restarted by its supervisor,
		// it campaigns again and answers as a follower meanwhile.
		logger.Error("lost leadership: stopping; restart garrison to serve as a follower")
		// Stop acting first, then drain the API: the next leader acts now.
		stopCI()
		stopScaler()
		stopHQ()
		if err := shutdown(server, logger, ctx); err != nil {
			return err
		}
		return errLostLeadership
	case err := <-serveErr:
		return fmt.Errorf("API server on %s: %w", s.addr, err)
	}
	return shutdown(server, logger, ctx)
}

// fencedClient is cli with every KV write fenced by one leadership term;
// its connection, leases and watches are cli's (not to be closed).
func fencedClient(cli *clientv3.Client, f leader.Fence) *clientv3.Client {
	c := *cli
	c.KV = f.KV(cli.KV)
	return &c
}

// errLostLeadership ends garrison up when another headquarter took over.
var errLostLeadership = errors.New("lost leadership to another headquarter")

// shutdown drains the API server and returns why ctx ended, unless it was
// an ordinary stop.
func shutdown(server *http.Server, logger *slog.Logger, ctx context.Context) error {
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

// swapHandler serves with the handler set last: a follower's, then the
// leader's full router once elected (ready).
type swapHandler struct {
	h     atomic.Pointer[http.Handler]
	ready atomic.Bool
}

// readyLeader says this replica leads only once its router is the
// leader's: until then leaderproxy holds its API requests back.
type readyLeader struct {
	*leader.Elector
	handler *swapHandler
}

func (r readyLeader) IsLeader() bool { return r.handler.ready.Load() && r.Elector.IsLeader() }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// newRouter is the API and console with every route garrison serves; the
// auth and write gate of cfg cover them all but the console's assets,
// which carry no data. Without hq (a follower, whose API requests go to
// the leader) it has the console and garrison's own base routes.
func newRouter(cfg api.Config, hq *headquarter, addr string, cli *clientv3.Client) (*gin.Engine, error) {
	console, err := ui.New()
	if err != nil {
		return nil, err
	}
	cfg.OpenRoutes = append(cfg.OpenRoutes, ui.Routes...)
	// Webhooks prove themselves with their own signatures or tokens.
	cfg.OpenRoutes = append(cfg.OpenRoutes, ci.OpenRoutes...)
	router := api.NewRouter(cfg)
	if hq != nil {
		hq.routes(router, addr, cli, cfg.Logger)
	}
	console.Register(router)
	return router, nil
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
	_, err := cli.Get(ctx, "/garrison/", clientv3.WithCountOnly())
	for _, refused := range []error{rpctypes.ErrPermissionDenied, rpctypes.ErrUserEmpty, rpctypes.ErrAuthFailed, rpctypes.ErrInvalidAuthToken} {
		if errors.Is(err, refused) {
			return fmt.Errorf("etcd at %v refuses garrison's credentials (--etcd-user/--etcd-password, --etcd-cert): %w", endpoints, err)
		}
	}
	if err != nil {
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
