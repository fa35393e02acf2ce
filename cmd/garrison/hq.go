package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/gin-gonic/gin"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/api"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/auth"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/health"
	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/headquarter/marathon"
	"github.com/garrisonhq/garrison/headquarter/promsd"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/agent"
	"github.com/garrisonhq/garrison/internal/driverstats"
	"github.com/garrisonhq/garrison/scout/taskstats"
	"github.com/garrisonhq/garrison/signalman/docker"
	"github.com/garrisonhq/garrison/signalman/nomad"
	"github.com/garrisonhq/garrison/signalman/process"
)

// headquarter is the running scheduler with what it drives.
type headquarter struct {
	sched *scheduler.Scheduler
	store *store.Store
	bus   *events.Bus
	env   app.Environment
	// maxTotal bounds the instances of all apps together.
	maxTotal int
	docker   *client.Client // nil when no engine answers
	// dockerDriver is nil when no engine answers.
	dockerDriver *docker.Driver
	proc         *process.Driver
	stop         func()
	// leadership names the leader among headquarters sharing an etcd;
	// nil: this one alone.
	leadership marathon.Leadership

	// nomad is the cluster driver with --nomad, else nil.
	nomad *nomad.Driver
}

type hqSettings struct {
	host           string
	portRange      string
	ports          [2]int // portRange, parsed by validate
	drainDelay     time.Duration
	startup        time.Duration
	auth           auth.Credentials
	usersFile      string
	maxSubscribers int
	// maxInstances and maxTotal bound one app's and all apps' instances.
	maxInstances, maxTotal int
	// fetchFile lets apps fetch file:// URIs into their sandboxes.
	fetchFile bool
	// nomad is the Nomad HTTP API address apps run on; "" runs them on
	// this machine.
	nomad string
	// fence, set when this headquarter was elected, is its term's: the
	// scheduler's store writes and registrations are fenced by it.
	fence *leader.Fence
}

func (s *hqSettings) register(fs *flag.FlagSet) {
	fs.StringVar(&s.host, "advertise-host", "127.0.0.1", "address tasks are reached at (host networking); registered in the registry")
	fs.StringVar(&s.portRange, "task-ports", "31000-32000", "range of host ports handed to tasks")
	fs.DurationVar(&s.drainDelay, "drain-delay", time.Second, "pause between taking a task out of the registry and stopping it")
	fs.DurationVar(&s.startup, "health-startup-interval", 250*time.Millisecond, "until a task's first passing health check, check it this often (0: the check's own interval, as Marathon)")
	fs.StringVar(&s.auth.Username, "auth-user", "", "HTTP basic auth user (with --auth-password) required on every route but /ping and /health; empty leaves the API open")
	fs.StringVar(&s.auth.Password, "auth-password", "", "HTTP basic auth password of --auth-user")
	fs.StringVar(&s.usersFile, "auth-users-file", "", "htpasswd file of more basic-auth users, bcrypt hashes only (htpasswd -B); read at start")
	fs.StringVar(&s.auth.Token, "auth-token", "", "bearer token accepted on every route but /ping and /health (Authorization: Bearer <token>)")
	fs.IntVar(&s.maxSubscribers, "max-event-subscribers", events.DefaultMaxSubscribers, "most concurrent /v2/events streams; more get 503")
	fs.IntVar(&s.maxInstances, "max-instances-per-app", app.DefaultMaxInstances, "most instances one app may have (422 above)")
	fs.BoolVar(&s.fetchFile, "fetch-allow-file", false, "let apps' fetch/uris copy file:// URIs (any file garrison can read) into their sandboxes")
	fs.StringVar(&s.nomad, "nomad", "", "run apps as jobs on the Nomad cluster at this HTTP API address (e.g. http://127.0.0.1:4646; NOMAD_TOKEN, NOMAD_NAMESPACE and NOMAD_CACERT apply); empty runs them on this machine")
	fs.IntVar(&s.maxTotal, "max-instances-total", marathon.DefaultMaxInstancesTotal, "most instances all apps together may have (422 above)")
}

// validate checks the settings and parses the task port range.
func (s *hqSettings) validate() error {
	var first, last int
	if n, err := fmt.Sscanf(s.portRange, "%d-%d", &first, &last); err != nil || n != 2 || first <= 0 || last < first || last > 65535 ||
		fmt.Sprintf("%d-%d", first, last) != s.portRange {
		return fmt.Errorf("--task-ports %q: want FIRST-LAST with 0 < FIRST <= LAST <= 65535, e.g. 31000-32000", s.portRange)
	}
	s.ports = [2]int{first, last}
	if s.maxSubscribers < 1 {
		return errors.New("--max-event-subscribers must be at least 1")
	}
	if s.usersFile != "" && s.auth.Users == nil {
		users, err := auth.LoadUsersFile(s.usersFile)
		if err != nil {
			return fmt.Errorf("--auth-users-file: %w", err)
		}
		s.auth.Users = users
	}
	return s.auth.Validate()
}

// startHeadquarter starts the scheduler, its drivers, health checks and
// event bus; stop ends them and waits. Tasks keep running across a stop:
// the next start adopts them.
func startHeadquarter(ctx context.Context, cli *clientv3.Client, dataDir string, s hqSettings, reg prometheus.Registerer, logger *slog.Logger) (*headquarter, error) {
	if s.ports == ([2]int{}) {
		if err := s.validate(); err != nil {
			return nil, usageError{err.Error()}
		}
	}
	hostname, _ := os.Hostname()
	st, registry := store.New(cli), cli
	if s.fence != nil {
		st, registry = st.Fenced(*s.fence), fencedClient(cli, *s.fence)
	}
	hq := &headquarter{store: st, maxTotal: s.maxTotal,
		env: app.Environment{Hostname: hostname, MaxInstances: s.maxInstances, CheckUser: process.CheckUser, AllowFileFetch: s.fetchFile},
		bus: events.NewBus(events.WithRegisterer(reg), events.WithLogger(logger), events.WithMaxSubscribers(s.maxSubscribers))}

	namespace, err := hq.store.ClusterID(ctx)
	if err != nil {
		return nil, err
	}
	var dockerDriver scheduler.Driver
	dcli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		// The term is checked between a container's create and start too:
		// a leader paused right before a launch never starts it on resume.
		d, derr := docker.New(dcli, docker.WithNamespace(namespace), docker.WithGuard(hq.store.Guard))
		pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if derr == nil {
			derr = d.Ping(pingCtx)
		}
		cancel()
		if derr == nil {
			dockerDriver, hq.docker, hq.dockerDriver = d, dcli, d
			logger.Info("Docker engine answers: apps with a container image run in Docker", "host", dcli.DaemonHost())
		} else {
			dcli.Close()
			logger.Warn("no Docker engine answers: apps with a container image are refused", "error", derr)
		}
	}
	proc, err := process.New(filepath.Join(dataDir, "tasks"), process.WithLogger(logger), process.WithFileFetch(s.fetchFile))
	if err != nil {
		return nil, fmt.Errorf("process driver: %w", err)
	}
	hq.proc = proc

	cfg := scheduler.Config{
		Store: hq.store, Process: proc, Registry: registry, Events: hq.bus,
		HealthOptions: []health.Option{health.WithRegisterer(reg), health.WithStartupInterval(s.startup)},
		Host:          s.host, Hostname: hostname, PortRange: s.ports, DrainDelay: s.drainDelay, Logger: logger,
		// The scheduler's own bound, with room for rolling restarts above
		// the API's total instance limit.
		MaxTasks: 2 * s.maxTotal,
	}
	if dockerDriver != nil {
		cfg.Docker = dockerDriver
		// COMMAND checks of containers run in them (docker exec).
		cfg.HealthOptions = append(cfg.HealthOptions, health.WithContainerExec(hq.dockerDriver))
	}
	if s.nomad != "" {
		cluster, err := nomadCluster(s.nomad, hq.store.Guard, logger)
		if err != nil {
			return nil, err
		}
		cfg.Cluster, hq.nomad = cluster, cluster
		// Nomad places instances: constraints are checked against its
		// translation, users on its clients.
		hq.env.Cluster, hq.env.CheckUser = true, nil
		logger.Info("apps run on Nomad", "address", s.nomad)
	}
	hq.sched = scheduler.New(cfg)

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	if hq.docker != nil {
		// On one machine garrison up is also the host's agent: containers
		// labelled garrison.service register without a separate process.
		ag, err := agent.New(agent.Config{Docker: hq.docker, Etcd: cli, Node: hostname + "/garrison-up",
			AdvertiseHost: s.host, Logger: logger.With("component", "agent"), Registerer: reg, SkipNomad: true})
		if err != nil {
			cancel()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ag.Run(runCtx); err != nil && runCtx.Err() == nil {
				logger.Error("agent stopped", "error", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := hq.sched.Run(runCtx); err != nil {
			logger.Error("scheduler stopped", "error", err)
		}
	}()
	hq.stop = func() {
		cancel()
		wg.Wait()
		hq.bus.Close()
		if err := proc.Close(); err != nil {
			logger.Warn("process driver close", "error", err)
		}
		if hq.docker != nil {
			hq.docker.Close()
		}
	}
	return hq, nil
}

// taskLimits tells the per-task exporter what each app's tasks were given.
func (hq *headquarter) taskLimits(appID string) (float64, float64, bool) {
	a, ok := hq.sched.App(appID)
	if !ok {
		return 0, 0, false
	}
	return a.CPUs, a.Mem, true
}

// exportTaskStats registers the per-task CPU and memory exporter (the Mesos
// exporter of the origin design) on garrison's /metrics.
func (hq *headquarter) exportTaskStats(reg prometheus.Registerer, logger *slog.Logger) {
	drivers := []taskstats.Tasks{driverstats.Adapt[process.Usage](hq.proc)}
	if hq.dockerDriver != nil {
		drivers = append(drivers, driverstats.Adapt[docker.Usage](hq.dockerDriver))
	}
	reg.MustRegister(taskstats.New(hq.taskLimits, drivers, taskstats.WithLogger(logger)))
}

// routes adds headquarter's Marathon API and Prometheus' service discovery
// of the registered instances to the router.
// Auth is the router's: it covers these routes too.
func (hq *headquarter) routes(r *gin.Engine, addr string, cli *clientv3.Client, logger *slog.Logger) {
	r.GET("/api/v1/prometheus/sd", gin.WrapH(promsd.New(cli, promsd.WithLogger(logger))))
	api.RegisterTaskLogs(r, hq)
	marathon.Register(r, marathon.Config{
		Scheduler: hq.sched, Store: hq.store, Events: hq.bus, Environment: hq.env, MaxInstancesTotal: hq.maxTotal,
		Leader: addr, Leadership: hq.leadership, Version: version, Hostname: hq.env.Hostname, Logger: logger,
	})
}

// nomadCluster is the Nomad driver for --nomad. guard is the term's check
// (a no-op without an election): the driver makes it between reading a
// job's modify index and changing the job with that index enforced, so a
// leader paused after the check cannot overwrite the next leader's change.
func nomadCluster(addr string, guard func(context.Context) error, logger *slog.Logger) (*nomad.Driver, error) {
	conf := nomadapi.DefaultConfig()
	conf.Address = addr
	c, err := nomadapi.NewClient(conf)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--nomad %q: %v", addr, err)}
	}
	d, err := nomad.New(c, nomad.WithGuard(guard), nomad.WithLogger(logger.With("component", "nomad")))
	if err != nil {
		return nil, fmt.Errorf("nomad driver: %w", err)
	}
	return d, nil
}
