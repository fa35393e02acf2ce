// Package agent registers the containers of one Docker host that cannot
// register themselves (a PHP service, a third-party image): it follows the
// engine's container events and keeps /service/<name>/<instance-id> in etcd
// in step with the containers labelled garrison.service=<name>.
//
// Each container gets its own lease (registrar.Register), so a container that
// stops is deregistered at once by revoking its lease, and a crashed agent's
// keys expire with their TTL. On start-up, after every etcd reconnect, after
// the event stream broke and every ResyncInterval, the agent reconciles: it
// lists the running containers, registers those that should be, deregisters
// those that should not, and deletes keys this node's agent wrote earlier
// (metadata agent=<node>, registeredBy=garrison-agent) that no live
// registration of this agent owns, so an agent crash leaves no stale entry.
//
// A started container is registered once its port accepts a TCP connection
// (or after ReadyTimeout, for a server the agent cannot reach): Docker
// reports the start before the process inside listens, and a caller sent
// there in between would get a refused connection.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
)

// Container labels the agent reads.
const (
	// LabelNomadAlloc is the label Nomad's Docker driver puts on every
	// container it runs.
	LabelNomadAlloc = "com.hashicorp.nomad.alloc_id"
	// LabelService names the service; only containers with it are registered.
	LabelService = "garrison.service"
	// LabelPort is the host-network port the container serves on. Without
	// it the agent takes PORT0, then PORT from the container's environment.
	LabelPort = "garrison.port"
	// LabelInstance overrides the instance id (default: the 12-character
	// short container id).
	LabelInstance = "garrison.instance"
)

// Metadata keys the agent writes into each endpoint.
const (
	MetaContainer    = "container"
	MetaAgent        = "agent"
	MetaRegisteredBy = "registeredBy"
	MetaImage        = "image"
	MetaName         = "name"
	// RegisteredBy is the MetaRegisteredBy value of the agent's keys.
	RegisteredBy = "garrison-agent"
)

// Docker is the part of the Docker client the agent uses;
// *github.com/docker/docker/client.Client satisfies it.
type Docker interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
}

// NewDockerClient connects to the engine named by the environment
// (DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY;
// the local socket by default), negotiating the API version.
func NewDockerClient() (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return cli, nil
}

// Config configures an Agent. Docker and Etcd are required; the zero value
// of every other field is a working default.
type Config struct {
	// Docker is the local engine (see NewDockerClient).
	Docker Docker
	// Etcd holds the registry (see registrar.NewClient).
	Etcd registrar.Client
	// Node names this host in the keys' metadata; default os.Hostname().
	// Two agents must not share a node name: each deletes the other's keys.
	Node string
	// AdvertiseHost is the host part of every registered address; default
	// 127.0.0.1.
	AdvertiseHost string
	// TTL of each container's lease; default registrar.DefaultTTL (10 s).
	TTL time.Duration
	// Select restricts the agent to containers that carry these labels too
	// (Docker filter syntax: "key" or "key=value"), e.g. one environment.
	Select []string
	// ResyncInterval is how often the agent reconciles even when nothing
	// happened; default one minute.
	ResyncInterval time.Duration
	// ProbeInterval is how often etcd is probed to notice a reconnect, which
	// triggers a reconcile; default one second.
	ProbeInterval time.Duration
	// OpTimeout bounds each call to Docker or etcd; default five seconds.
	OpTimeout time.Duration
	// ReadyTimeout is how long a started container's port may refuse
	// connections before the agent registers it anyway; default 30 s.
	ReadyTimeout time.Duration
	// SkipNomad leaves containers that Nomad runs (they carry its
	// allocation label) to the agent on Nomad's clients: `garrison up`,
	// the agent of one machine, must not register another garrison's
	// Nomad tasks that share its Docker engine into its own registry.
	SkipNomad bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer, when set, receives the agent's counters.
	Registerer prometheus.Registerer
}

// Agent keeps the registry in step with the labelled containers of one host.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	metrics metrics

	// Owned by Run's goroutine.
	instances map[string]*instance // by full container id
	skipped   map[string]string    // container id -> why it is not registered, to log once
	stopping  map[string]bool      // sent a stop signal, not yet dead: stays deregistered
	// waiting: a probe of the container's port runs; unprobed: it never
	// accepted within ReadyTimeout, register it without asking again.
	waiting  map[string]bool
	unprobed map[string]bool
	ready    chan probed // probes that ended
	probes   sync.WaitGroup

	etcdUp  atomic.Bool
	running atomic.Bool
}

type instance struct {
	service string
	id      string
	ep      registrar.Endpoint
	reg     *registrar.Registration
}

type metrics struct {
	registrations   prometheus.Counter
	deregistrations prometheus.Counter
	staleRemoved    prometheus.Counter
	reconciles      prometheus.Counter
	errors          *prometheus.CounterVec
}

// New checks cfg, fills in defaults and registers the counters.
func New(cfg Config) (*Agent, error) {
	if cfg.Docker == nil {
		return nil, errors.New("agent: no Docker client")
	}
	if cfg.Etcd == nil {
		return nil, errors.New("agent: no etcd client")
	}
	if cfg.Node == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: node name: %w", err)
		}
		cfg.Node = host
	}
	if cfg.AdvertiseHost == "" {
		cfg.AdvertiseHost = "127.0.0.1"
	}
	if cfg.TTL == 0 {
		cfg.TTL = registrar.DefaultTTL
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("agent: TTL %s is below etcd's one-second granularity", cfg.TTL)
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = time.Minute
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 5 * time.Second
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Logger.With("node", cfg.Node),
		instances: make(map[string]*instance),
		skipped:   make(map[string]string),
		stopping:  make(map[string]bool),
		waiting:   make(map[string]bool),
		unprobed:  make(map[string]bool),
		ready:     make(chan probed),
		metrics: metrics{
			registrations: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "garrison_agent_registrations_total", Help: "Containers the agent registered.",
			}),
			deregistrations: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "garrison_agent_deregistrations_total", Help: "Containers the agent deregistered.",
			}),
			staleRemoved: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "garrison_agent_stale_keys_removed_total", Help: "Registry keys of this node's agent that no container backed any more, deleted on reconcile.",
			}),
			reconciles: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "garrison_agent_reconciles_total", Help: "Full reconciles of running containers against the registry.",
			}),
			errors: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "garrison_agent_errors_total", Help: "Failed Docker or etcd operations, by operation.",
			}, []string{"op"}),
		},
	}
	a.etcdUp.Store(true)
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{a.metrics.registrations, a.metrics.deregistrations, a.metrics.staleRemoved, a.metrics.reconciles, a.metrics.errors} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("agent: register metrics: %w", err)
			}
		}
	}
	return a, nil
}

// Node is the node name the agent writes into its keys.
func (a *Agent) Node() string { return a.cfg.Node }

// Run follows the Docker engine until ctx ends, then deregisters every
// container it registered (the containers are no longer watched, so nobody
// would deregister them when they stop) and returns nil. A broken event
// stream or an unreachable engine is retried, never returned. Run may be
// called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer a.deregisterAll(ctx)
	defer a.probes.Wait()

	reconnected := make(chan struct{}, 1)
	probeCtx, stopProbe := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.probeEtcd(probeCtx, reconnected)
	}()
	defer wg.Wait()
	defer stopProbe()

	pause := 100 * time.Millisecond
	for {
		start := time.Now()
		err := a.follow(ctx, reconnected)
		if ctx.Err() != nil {
			return nil
		}
		a.metrics.errors.WithLabelValues("events").Inc()
		if time.Since(start) > 10*time.Second {
			pause = 100 * time.Millisecond
		}
		a.log.Warn("docker event stream broke; reconnecting and reconciling", "error", err, "retry_in", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// follow subscribes to container events from now, reconciles the running
// containers, then applies events until the stream breaks or ctx ends.
// Events since the moment before the listing are replayed by Docker, so
// nothing that happens during the reconcile is missed; applying an event
// twice is harmless, as each one re-reads the container's state.
func (a *Agent) follow(ctx context.Context, reconnected <-chan struct{}) error {
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	since := time.Now()
	args := a.filter()
	args.Add("type", string(events.ContainerEventType))
	msgs, errs := a.cfg.Docker.Events(streamCtx, events.ListOptions{
		Since:   fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		Filters: args,
	})
	a.reconcile(ctx, "start of event stream")

	resync := time.NewTicker(a.cfg.ResyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			if err == nil {
				err = errors.New("stream closed")
			}
			return fmt.Errorf("docker events: %w", err)
		case msg := <-msgs:
			a.handle(ctx, msg)
		case p := <-a.ready:
			delete(a.waiting, p.id)
			if !p.accepted {
				a.unprobed[p.id] = true
			}
			a.sync(ctx, p.id)
		case <-reconnected:
			a.reconcile(ctx, "etcd reconnected")
		case <-resync.C:
			a.reconcile(ctx, "periodic resync")
		}
	}
}

func (a *Agent) filter() filters.Args {
	args := filters.NewArgs(filters.Arg("label", LabelService))
	for _, sel := range a.cfg.Select {
		args.Add("label", sel)
	}
	return args
}

// handle applies one container event.
func (a *Agent) handle(ctx context.Context, msg events.Message) {
	if msg.Type != events.ContainerEventType || msg.Actor.ID == "" {
		return
	}
	action := string(msg.Action)
	id := msg.Actor.ID
	switch {
	case action == "kill":
		// Drain before stop: `docker stop` sends the stop signal first and
		// the container may take a while to exit; callers should stop
		// sending it requests now, as a self-registered instance revokes
		// its lease before it stops serving.
		if sig := msg.Actor.Attributes["signal"]; stopSignal(sig) {
			a.stopping[id] = true
			a.deregister(ctx, id, "container sent signal "+sig)
		}
	case action == "die" || action == "destroy":
		delete(a.stopping, id)
		delete(a.unprobed, id)
		a.deregister(ctx, id, "container "+action)
		if action == "destroy" {
			delete(a.skipped, id)
		}
	case action == "start" || action == "restart":
		delete(a.stopping, id)
		a.sync(ctx, id)
	case action == "pause" || action == "unpause" ||
		action == "rename" || action == "update" || strings.HasPrefix(action, "health_status"):
		a.log.Debug("container event", "container", short(id), "action", action)
		a.sync(ctx, id)
	}
}

// stopSignal says whether a kill event's signal (a number, or a name in
// some engine versions) ends the container: SIGTERM (docker stop's default),
// SIGINT, SIGQUIT (a common STOPSIGNAL for graceful shutdown) or SIGKILL.
// Other signals (SIGHUP to reload, SIGUSR1) leave it registered.
func stopSignal(sig string) bool {
	switch strings.TrimPrefix(strings.ToUpper(sig), "SIG") {
	case "15", "TERM", "2", "INT", "3", "QUIT", "9", "KILL":
		return true
	}
	return false
}

// reconcile brings the registry in step with the running containers and
// deletes this node's stale keys.
func (a *Agent) reconcile(ctx context.Context, why string) {
	a.metrics.reconciles.Inc()
	listCtx, cancel := context.WithTimeout(ctx, a.cfg.OpTimeout)
	list, err := a.cfg.Docker.ContainerList(listCtx, container.ListOptions{Filters: a.filter()})
	cancel()
	if err != nil {
		a.metrics.errors.WithLabelValues("list").Inc()
		a.log.Warn("reconcile: list containers", "why", why, "error", err)
		return
	}
	running := make(map[string]bool, len(list))
	for _, c := range list {
		running[c.ID] = true
	}
	for id := range a.instances {
		if !running[id] {
			a.deregister(ctx, id, "not running")
		}
	}
	for id := range a.skipped {
		if !running[id] {
			delete(a.skipped, id)
		}
	}
	for id := range a.stopping {
		if !running[id] {
			delete(a.stopping, id)
		}
	}
	for _, c := range list {
		a.sync(ctx, c.ID)
	}
	removed, err := a.removeStale(ctx)
	if err != nil {
		a.metrics.errors.WithLabelValues("stale").Inc()
		a.log.Warn("reconcile: remove stale keys", "why", why, "error", err)
	}
	a.log.Info("reconciled", "why", why, "running", len(list), "registered", len(a.instances), "stale_removed", removed)
}

// removeStale deletes the keys under /service/ that this node's agent wrote
// but that none of its current leases holds: left by an agent that crashed
// or lost etcd while their container stopped. A key is deleted only if it was
// not written again since it was read.
func (a *Agent) removeStale(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.OpTimeout)
	defer cancel()
	resp, err := a.cfg.Etcd.Get(ctx, registrar.Prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", registrar.Prefix, err)
	}
	ours := make(map[clientv3.LeaseID]bool, len(a.instances))
	for _, in := range a.instances {
		if lease := in.reg.Lease(); lease != 0 {
			ours[lease] = true
		}
	}
	removed := 0
	var errs []error
	for _, kv := range resp.Kvs {
		inst, err := registrar.DecodeInstance(kv.Key, kv.Value)
		if err != nil {
			continue // not an endpoint, so not the agent's
		}
		md := inst.Endpoint.Metadata
		if md[MetaRegisteredBy] != RegisteredBy || md[MetaAgent] != a.cfg.Node || ours[clientv3.LeaseID(kv.Lease)] {
			continue
		}
		key := string(kv.Key)
		txn, err := a.cfg.Etcd.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(key)).
			Commit()
		if err != nil {
			errs = append(errs, fmt.Errorf("delete stale %s: %w", key, err))
			continue
		}
		if txn.Succeeded {
			removed++
			a.metrics.staleRemoved.Inc()
			a.log.Info("removed stale registration", "key", key, "container", short(md[MetaContainer]), "lease", fmt.Sprintf("%x", kv.Lease))
		}
	}
	return removed, errors.Join(errs...)
}

// sync re-reads one container and registers or deregisters it.
func (a *Agent) sync(ctx context.Context, id string) {
	inspectCtx, cancel := context.WithTimeout(ctx, a.cfg.OpTimeout)
	info, err := a.cfg.Docker.ContainerInspect(inspectCtx, id)
	cancel()
	if cerrdefs.IsNotFound(err) {
		a.deregister(ctx, id, "container removed")
		delete(a.skipped, id)
		return
	}
	if err != nil {
		a.metrics.errors.WithLabelValues("inspect").Inc()
		a.log.Warn("inspect container", "container", short(id), "error", err)
		return
	}
	want, why := a.desired(info)
	if want != nil && a.stopping[id] {
		want, why = nil, "stopping"
	}
	if want == nil {
		a.deregister(ctx, id, why)
		if a.skipped[id] != why {
			a.skipped[id] = why
			if misconfigured(why) {
				a.log.Warn("not registering container", "container", short(id), "name", containerName(info), "reason", why)
			} else {
				a.log.Debug("not registering container yet", "container", short(id), "reason", why)
			}
		}
		return
	}
	delete(a.skipped, id)
	cur := a.instances[id]
	if cur != nil && cur.service == want.service && cur.id == want.id && sameEndpoint(cur.ep, want.ep) {
		return
	}
	if cur == nil && !a.unprobed[id] && !a.accepts(ctx, want.ep.Addr) {
		a.awaitPort(ctx, id, want.ep.Addr)
		return
	}
	if !a.etcdUp.Load() {
		// Registering would block until the timeout; the reconcile on
		// reconnect picks the container up.
		a.log.Info("etcd unreachable; container is registered after reconnect", "container", short(id))
		return
	}
	regCtx, cancel := context.WithTimeout(ctx, a.cfg.OpTimeout)
	defer cancel()
	reg, err := registrar.Register(regCtx, a.cfg.Etcd, want.service, want.id, want.ep,
		registrar.WithTTL(a.cfg.TTL), registrar.WithLogger(a.log.With("container", short(id))))
	if err != nil {
		a.metrics.errors.WithLabelValues("register").Inc()
		a.log.Warn("register container", "container", short(id), "service", want.service, "error", err)
		return
	}
	want.reg = reg
	a.instances[id] = want
	a.metrics.registrations.Inc()
	a.log.Info("registered container", "container", short(id), "key", reg.Key(), "addr", want.ep.Addr)
	if cur != nil {
		// Make before break: when the key is the same, the new lease holds
		// it now and revoking the old one leaves it in place.
		a.closeRegistration(ctx, id, cur, "registration changed")
	}
}

// desired returns the registration a container should have, or nil and why
// it should have none.
func (a *Agent) desired(info container.InspectResponse) (*instance, string) {
	if info.ContainerJSONBase == nil || info.Config == nil || info.State == nil {
		return nil, "no config or state"
	}
	service, ok := info.Config.Labels[LabelService]
	if !ok {
		return nil, "no " + LabelService + " label"
	}
	if a.cfg.SkipNomad && info.Config.Labels[LabelNomadAlloc] != "" {
		return nil, "run by Nomad (its clients' agent registers it)"
	}
	if err := registrar.ValidateName("service name", service); err != nil {
		return nil, fmt.Sprintf("label %s: %v", LabelService, err)
	}
	switch {
	case !info.State.Running:
		return nil, "not running"
	case info.State.Paused:
		return nil, "paused"
	case info.State.Restarting:
		return nil, "restarting"
	}
	if h := info.State.Health; h != nil && h.Status != container.NoHealthcheck && h.Status != container.Healthy {
		return nil, "health " + h.Status
	}
	port, err := containerPort(info.Config)
	if err != nil {
		return nil, err.Error()
	}
	id := info.Config.Labels[LabelInstance]
	if id == "" {
		id = short(info.ID)
	}
	if err := registrar.ValidateName("instance id", id); err != nil {
		return nil, fmt.Sprintf("label %s: %v", LabelInstance, err)
	}
	return &instance{
		service: service,
		id:      id,
		ep: registrar.Endpoint{
			Addr: net.JoinHostPort(a.cfg.AdvertiseHost, strconv.Itoa(port)),
			Metadata: map[string]string{
				MetaContainer:    info.ID,
				MetaAgent:        a.cfg.Node,
				MetaRegisteredBy: RegisteredBy,
				MetaImage:        info.Config.Image,
				MetaName:         containerName(info),
			},
		},
	}, ""
}

// Reasons that mean the container is labelled but will never be registered
// as it is: logged as warnings.
const (
	reasonNoPort  = "no usable port"
	reasonBadPort = "bad port"
)

func misconfigured(why string) bool {
	return strings.HasPrefix(why, reasonNoPort) || strings.HasPrefix(why, reasonBadPort) || strings.HasPrefix(why, "label ")
}

// containerPort takes the port from the garrison.port label, else PORT0,
// else PORT in the container's environment.
func containerPort(cfg *container.Config) (int, error) {
	source, value := "", ""
	if v, ok := cfg.Labels[LabelPort]; ok {
		source, value = "label "+LabelPort, v
	} else {
		env := make(map[string]string, len(cfg.Env))
		for _, kv := range cfg.Env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		for _, name := range []string{"PORT0", "PORT"} {
			if v, ok := env[name]; ok {
				source, value = "env "+name, v
				break
			}
		}
	}
	if source == "" {
		return 0, fmt.Errorf("%s: set label %s or env PORT0/PORT to the host-network port", reasonNoPort, LabelPort)
	}
	port, err := strconv.Atoi(strings.TrimSpace(value))
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("%s: %s=%q is not a port number", reasonBadPort, source, value)
	}
	return port, nil
}

// probeEtcd reads from etcd every ProbeInterval and signals reconnected
// (coalesced) when a read succeeds after one failed: keys may have expired
// or been left behind meanwhile.
func (a *Agent) probeEtcd(ctx context.Context, reconnected chan<- struct{}) {
	tick := time.NewTicker(a.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		probeCtx, cancel := context.WithTimeout(ctx, max(a.cfg.ProbeInterval, time.Second))
		_, err := a.cfg.Etcd.Get(probeCtx, registrar.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if a.etcdUp.Swap(false) {
				a.metrics.errors.WithLabelValues("etcd").Inc()
				a.log.Warn("etcd unreachable", "error", err)
			}
			continue
		}
		if !a.etcdUp.Swap(true) {
			a.log.Info("etcd reachable again; reconciling")
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}
	}
}

// accepts reports whether addr takes a TCP connection now.
func (a *Agent) accepts(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// awaitPort probes addr in the background until it accepts a connection or
// ReadyTimeout passes, then hands the container back to the event loop,
// which syncs it again (the container may have stopped meanwhile).
func (a *Agent) awaitPort(ctx context.Context, id, addr string) {
	if a.waiting[id] {
		return
	}
	a.waiting[id] = true
	a.log.Debug("container started; registering once its port accepts connections", "container", short(id), "addr", addr)
	a.probes.Add(1)
	go func() {
		defer a.probes.Done()
		deadline := time.Now().Add(a.cfg.ReadyTimeout)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		p := probed{id: id, accepted: true}
		for !a.accepts(ctx, addr) {
			if time.Now().After(deadline) {
				a.log.Warn("container port refuses connections; registering it anyway", "container", short(id), "addr", addr, "after", a.cfg.ReadyTimeout)
				p.accepted = false
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		select {
		case a.ready <- p:
		case <-ctx.Done():
		}
	}()
}

// probed is the end of one container's port probe.
type probed struct {
	id       string
	accepted bool
}

// deregister revokes a container's lease, which deletes its key at once.
func (a *Agent) deregister(ctx context.Context, id, why string) {
	in := a.instances[id]
	if in == nil {
		return
	}
	delete(a.instances, id)
	a.closeRegistration(ctx, id, in, why)
}

func (a *Agent) closeRegistration(ctx context.Context, id string, in *instance, why string) {
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.OpTimeout)
	defer cancel()
	a.metrics.deregistrations.Inc()
	if err := in.reg.Close(closeCtx); err != nil {
		a.metrics.errors.WithLabelValues("deregister").Inc()
		a.log.Warn("deregister container", "container", short(id), "key", in.reg.Key(), "reason", why, "error", err)
		return
	}
	a.log.Info("deregistered container", "container", short(id), "key", in.reg.Key(), "reason", why)
}

func (a *Agent) deregisterAll(ctx context.Context) {
	for id := range a.instances {
		a.deregister(ctx, id, "agent stopping")
	}
}

func sameEndpoint(x, y registrar.Endpoint) bool {
	if x.Addr != y.Addr || len(x.Metadata) != len(y.Metadata) {
		return false
	}
	for k, v := range x.Metadata {
		if y.Metadata[k] != v {
			return false
		}
	}
	return true
}

func containerName(info container.InspectResponse) string {
	if info.ContainerJSONBase == nil {
		return ""
	}
	return strings.TrimPrefix(info.Name, "/")
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
