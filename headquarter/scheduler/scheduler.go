// Package scheduler is headquarter's heart: it holds the desired state (apps
// and deployments, persisted in the store), compares it with the tasks the
// drivers run, and starts, drains and kills tasks until they match, the way
// Marathon does over Mesos. It adopts the tasks it finds after a restart,
// replaces failed tasks with Marathon's backoff, rolls new versions out
// within the app's upgrade strategy, registers healthy tasks in the
// registry and takes them out of it before they are killed.
//
// With Config.Cluster (Nomad) it plans no tasks: apps are handed to the
// cluster whole after each store write, and the task view, deployments and
// queue follow what the cluster reports (cluster.go).
package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/health"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/signalman/task"
)

// Driver is what the scheduler needs of a signalman driver.
type Driver interface {
	Launch(ctx context.Context, spec task.Spec) (task.Status, error)
	Kill(ctx context.Context, taskID string, grace time.Duration) error
	List(ctx context.Context) ([]task.Status, error)
	Watch(ctx context.Context) (<-chan task.Status, error)
	Remove(ctx context.Context, taskID string) error
}

// Publisher receives the scheduler's events (Marathon's event bus).
type Publisher interface {
	Publish(ev events.Event) error
}

// Config wires a scheduler.
type Config struct {
	Store *store.Store
	// Docker runs apps with a container image; nil when no engine answers,
	// in which case such apps are refused.
	Docker Driver
	// Process runs apps with only a command.
	Process Driver
	// Cluster, when set, runs every app on a cluster scheduler instead
	// (Nomad): Docker and Process are not used, counts, placement and
	// rollouts are the cluster's, and the task view follows its stream.
	Cluster Cluster
	// Registry is where healthy tasks are registered; nil disables it.
	Registry registrar.Client
	// HealthOptions configure the health monitor the scheduler runs for
	// the apps' health checks (its callbacks are the scheduler's own).
	HealthOptions []health.Option
	Events        Publisher
	// Host is the address tasks are reached at (host networking).
	Host string
	// Hostname is this machine's name, for constraints.
	Hostname string
	// PortRange is where host ports are taken from, [first, last].
	PortRange [2]int
	// DrainDelay is the pause between taking a task out of the registry and
	// sending it SIGTERM, for callers to stop choosing it.
	DrainDelay time.Duration
	// Interval is how often the scheduler reconciles without a trigger.
	Interval time.Duration
	// ResyncInterval is how often every driver is listed and compared with
	// the tasks the scheduler knows (the driver is the source of truth), so
	// a missed status event is corrected within one period. Default 15s.
	ResyncInterval time.Duration
	// StoreTimeout bounds each etcd write the scheduler makes (a deploy's
	// transaction, a task record), so a stalled etcd cannot hold a writer
	// forever. Default 30s.
	StoreTimeout time.Duration
	// LaunchConcurrency bounds the launches in flight at once (default
	// 8): a burst must not start thousands of goroutines nor starve the API.
	LaunchConcurrency int
	// MaxTasks bounds the tasks the scheduler holds, whatever the stored
	// apps ask for (a huge count written before limits existed, or by hand
	// into etcd): above it nothing more is launched. Default
	// DefaultMaxTasks; set it above the API's total instance limit with
	// room for rolling restarts.
	MaxTasks int
	// RegistryTTL is the lease TTL of task registrations.
	RegistryTTL time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

// Scheduler reconciles apps and tasks. Its exported methods are safe for
// concurrent use; Run must be running for anything to happen to tasks.
type Scheduler struct {
	cfg     Config
	log     *slog.Logger
	trigger chan struct{}
	health  *health.Monitor

	// deployMu serialises deploys (see Deploy); taken before mu.
	deployMu sync.Mutex

	mu    sync.Mutex
	apps  map[string]*appState
	tasks map[string]*taskState
	// byApp indexes tasks by app id: the API reads one app's tasks for
	// every app it lists.
	byApp       map[string]map[string]*taskState
	deployments map[string]*deploymentRecord
	ports       *portAllocator
	// ready closes once the state is loaded and running tasks adopted.
	ready chan struct{}
	// effects are the launch, kill and registration goroutines in flight.
	effects sync.WaitGroup
	runCtx  context.Context
	// capWarned is when MaxTasks last held launches back (logged once a
	// minute).
	capWarned time.Time
	// launching counts the launches in flight (LaunchConcurrency bounds it).
	launching int
	// launchSeq counts finished launches: a re-list judges only tasks
	// whose launch finished before it listed.
	launchSeq uint64
	// cluster is the cluster path's state (Config.Cluster).
	cluster *clusterState
}

type appState struct {
	app         *app.App
	revision    int64
	failures    int
	lastFailure time.Time
	delayUntil  time.Time
	failure     *TaskFailure
}

// TaskFailure is Marathon's lastTaskFailure.
type TaskFailure struct {
	AppID     string `json:"appId"`
	Host      string `json:"host"`
	Message   string `json:"message"`
	State     string `json:"state"`
	TaskID    string `json:"taskId"`
	Timestamp string `json:"timestamp"`
	Version   string `json:"version"`
	SlaveID   string `json:"slaveId"`
}

type taskState struct {
	record       taskRecord
	status       task.Status
	driver       Driver
	launching    bool
	killing      bool
	registered   *registrar.Registration
	registering  bool
	healthAdded  bool
	healthChecks int
	// pending is a terminal status that arrived while the task was being
	// launched; applied once the launch returns.
	pending *task.Status
	// ended: the task's end is being handled (taskEnded runs once).
	ended bool
	// gone: the task was forgotten; a registration that completes after
	// that is revoked at once.
	gone bool
	// launchedSeq is launchSeq when its launch finished (0: adopted).
	launchedSeq uint64
	// clusterHealthy is the cluster's health of the task (nil: undecided),
	// clusterNode the node it was placed on.
	clusterHealthy *bool
	clusterNode    string
}

// taskRecord is what the store keeps about a task, written before launch.
type taskRecord struct {
	ID            string    `json:"id"`
	AppID         string    `json:"appId"`
	Version       string    `json:"version"`
	ConfigVersion string    `json:"configVersion"`
	Ports         []int     `json:"ports"`
	ServicePorts  []int     `json:"servicePorts"`
	Driver        string    `json:"driver"`
	StagedAt      time.Time `json:"stagedAt"`
}

const (
	driverDocker  = "docker"
	driverProcess = "process"
)

// DefaultMaxTasks is the default Config.MaxTasks: twice garrison's default
// total instance limit, for rolling restarts above capacity.
const DefaultMaxTasks = 20000

// DefaultResyncInterval is how often drivers are re-listed by default: a
// missed event is rare, and a list of a busy Docker engine costs an inspect
// per container.
const DefaultResyncInterval = 15 * time.Second

// ErrNoDocker refuses an app with a container image when no Docker engine
// answers, rather than running it some other way.
var ErrNoDocker = errors.New("no Docker engine answers on this machine: apps with a container image cannot run")

// New builds a scheduler; call Run to start it.
func New(cfg Config) *Scheduler {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.PortRange == [2]int{} {
		cfg.PortRange = [2]int{31000, 32000}
	}
	if cfg.DrainDelay == 0 {
		cfg.DrainDelay = time.Second
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = 30 * time.Second
	}
	if cfg.MaxTasks <= 0 {
		cfg.MaxTasks = DefaultMaxTasks
	}
	if cfg.LaunchConcurrency <= 0 {
		cfg.LaunchConcurrency = DefaultLaunchConcurrency
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.RegistryTTL == 0 {
		cfg.RegistryTTL = registrar.DefaultTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Scheduler{
		cfg:         cfg,
		log:         cfg.Logger,
		trigger:     make(chan struct{}, 1),
		apps:        map[string]*appState{},
		tasks:       map[string]*taskState{},
		byApp:       map[string]map[string]*taskState{},
		deployments: map[string]*deploymentRecord{},
		ports:       newPortAllocator(cfg.Host, cfg.PortRange),
		ready:       make(chan struct{}),
		cluster:     newClusterState(),
	}
	s.health = health.NewMonitor(append(cfg.HealthOptions, health.WithOnChange(s.OnHealthChange), health.WithOnUnhealthy(s.OnUnhealthy))...)
	return s
}

// Ready closes once the scheduler has loaded its state and adopted the
// running tasks; writes wait for it.
func (s *Scheduler) Ready() <-chan struct{} { return s.ready }

// poke asks for a reconcile pass; repeated pokes coalesce.
func (s *Scheduler) poke() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Run loads the desired state, adopts running tasks and reconciles until
// ctx ends. It returns after every goroutine it started has stopped.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := s.load(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if s.cfg.Cluster != nil {
		return s.runCluster(ctx)
	}
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()

	statuses := make(chan task.Status, 256)
	var watchers sync.WaitGroup
	watchers.Add(1)
	go func() {
		defer watchers.Done()
		if err := s.health.Run(ctx); err != nil {
			s.log.Error("health monitor stopped", "error", err)
		}
	}()
	for _, d := range s.drivers() {
		ch, err := d.Watch(ctx)
		if err != nil {
			return fmt.Errorf("watch tasks: %w", err)
		}
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			for st := range ch {
				select {
				case statuses <- st:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	defer func() {
		watchers.Wait()
		s.effects.Wait()
		s.orphanRegistrations()
	}()
	if err := s.adopt(ctx); err != nil {
		return err
	}
	close(s.ready)
	watchers.Add(1)
	go func() {
		defer watchers.Done()
		s.resyncLoop(ctx)
	}()

	ticker := time.NewTicker(s.cfg.Interval)
	defer ticker.Stop()
	for {
		s.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case st := <-statuses:
			s.onStatus(ctx, st)
		case <-s.trigger:
		case <-ticker.C:
		}
	}
}

// orphanRegistrations lets go of the task registrations without revoking
// them: the tasks keep running while garrison is down, and stay in the
// registry until their TTL ends or the next garrison registers them anew.
func (s *Scheduler) orphanRegistrations() {
	s.mu.Lock()
	var regs []*registrar.Registration
	for _, t := range s.tasks {
		if t.registered != nil {
			regs = append(regs, t.registered)
			t.registered = nil
		}
	}
	s.mu.Unlock()
	for _, r := range regs {
		r.Orphan()
	}
}

func (s *Scheduler) drivers() []Driver {
	var out []Driver
	if s.cfg.Docker != nil {
		out = append(out, s.cfg.Docker)
	}
	if s.cfg.Process != nil {
		out = append(out, s.cfg.Process)
	}
	return out
}

func (s *Scheduler) driverFor(a *app.App) (Driver, string, error) {
	if a.Image() != "" {
		if s.cfg.Docker == nil {
			return nil, "", ErrNoDocker
		}
		return s.cfg.Docker, driverDocker, nil
	}
	if s.cfg.Process == nil {
		return nil, "", errors.New("no process driver configured: apps with only a command cannot run")
	}
	return s.cfg.Process, driverProcess, nil
}

func (s *Scheduler) driverNamed(name string) Driver {
	if name == driverDocker {
		return s.cfg.Docker
	}
	return s.cfg.Process
}

// load reads apps, deployments and task records from the store.
func (s *Scheduler) load(ctx context.Context) error {
	apps, err := s.cfg.Store.Apps(ctx)
	if err != nil {
		return err
	}
	deps, err := s.cfg.Store.Deployments(ctx)
	if err != nil {
		return err
	}
	records, err := s.cfg.Store.Tasks(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range apps {
		a, err := app.Decode(r.Data)
		if err != nil {
			return fmt.Errorf("stored app %s is unreadable: %w", r.Key, err)
		}
		s.apps[a.ID] = &appState{app: app.Normalize(a), revision: r.Revision}
	}
	for _, r := range deps {
		var d deploymentRecord
		if err := json.Unmarshal(r.Data, &d); err != nil {
			return fmt.Errorf("stored deployment %s is unreadable: %w", r.Key, err)
		}
		s.deployments[d.ID] = &d
	}
	for _, r := range records {
		var rec taskRecord
		if err := json.Unmarshal(r.Data, &rec); err != nil {
			return fmt.Errorf("stored task %s is unreadable: %w", r.Key, err)
		}
		s.putTaskLocked(&taskState{record: rec, driver: s.driverNamed(rec.Driver),
			status: task.Status{ID: rec.ID, AppID: rec.AppID, Version: rec.Version, State: task.Staging, Host: s.cfg.Host, Ports: rec.Ports, StagedAt: rec.StagedAt}})
		s.ports.take(rec.Ports)
	}
	return nil
}

// adopt matches the tasks the drivers run with the records: a running task
// with a record is adopted; a record without a task is dropped (the launch
// never happened or the task died while garrison was down); a task without
// an app is an orphan and is killed.
func (s *Scheduler) adopt(ctx context.Context) error {
	seen := map[string]bool{}
	for _, d := range s.drivers() {
		listed, err := d.List(ctx)
		if err != nil {
			return fmt.Errorf("list tasks: %w", err)
		}
		for _, st := range listed {
			seen[st.ID] = true
			s.mu.Lock()
			t, known := s.tasks[st.ID]
			_, appExists := s.apps[st.AppID]
			switch {
			case st.State == task.Staging || st.State == task.Starting:
				// A launch cut short by a crash (created, never started):
				// remove it; the reconciler launches a fresh task.
				s.mu.Unlock()
				s.log.Info("removing a task whose launch was interrupted", "task", st.ID, "app", st.AppID)
				if err := d.Kill(ctx, st.ID, 0); err != nil {
					s.log.Warn("kill interrupted launch", "task", st.ID, "error", err)
				}
				if err := d.Remove(ctx, st.ID); err != nil {
					s.log.Warn("remove interrupted launch", "task", st.ID, "error", err)
				}
				s.forgetTask(ctx, st.ID)
				continue
			case st.State.Terminal():
				s.mu.Unlock()
				if err := d.Remove(ctx, st.ID); err != nil {
					s.log.Warn("remove ended task", "task", st.ID, "error", err)
				}
				if known {
					s.forgetTask(ctx, st.ID)
				}
				continue
			case !known && appExists:
				// Launched by a garrison that crashed before the record
				// write was seen; ports come from the driver.
				t = &taskState{driver: d, record: taskRecord{ID: st.ID, AppID: st.AppID, Version: st.Version,
					ConfigVersion: st.Version, Ports: st.Ports, Driver: s.driverName(d), StagedAt: st.StagedAt}}
				s.putTaskLocked(t)
				s.ports.take(st.Ports)
			case !appExists:
				s.mu.Unlock()
				s.log.Info("killing orphan task of a deleted app", "task", st.ID, "app", st.AppID)
				if err := d.Kill(ctx, st.ID, 0); err != nil {
					s.log.Warn("kill orphan", "task", st.ID, "error", err)
				}
				if err := d.Remove(ctx, st.ID); err != nil {
					s.log.Warn("remove orphan", "task", st.ID, "error", err)
				}
				s.forgetTask(ctx, st.ID)
				continue
			}
			t.driver = d
			t.status = st
			if t.status.Host == "" {
				t.status.Host = s.cfg.Host
			}
			s.mu.Unlock()
			s.log.Info("adopted running task", "task", st.ID, "app", st.AppID)
		}
	}
	s.mu.Lock()
	var gone []string
	for id := range s.tasks {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	s.mu.Unlock()
	for _, id := range gone {
		s.forgetTask(ctx, id)
	}
	return nil
}

func (s *Scheduler) driverName(d Driver) string {
	if d == s.cfg.Docker && d != nil {
		return driverDocker
	}
	return driverProcess
}

// putTaskLocked adds a task to the task map and its app's index.
func (s *Scheduler) putTaskLocked(t *taskState) {
	s.tasks[t.record.ID] = t
	if s.byApp[t.record.AppID] == nil {
		s.byApp[t.record.AppID] = map[string]*taskState{}
	}
	s.byApp[t.record.AppID][t.record.ID] = t
}

// markKillLocked marks a task for killing and says whether the caller
// starts the kill now. A task still launching is killed by its launch once
// Launch returns: a kill sent meanwhile could miss the process or container
// coming up, and leave it running with no task.
func (s *Scheduler) markKillLocked(t *taskState) bool {
	if t.killing {
		return false
	}
	t.killing = true
	return !t.launching
}

// dropTaskLocked removes a task from both.
func (s *Scheduler) dropTaskLocked(t *taskState) {
	delete(s.tasks, t.record.ID)
	if app := s.byApp[t.record.AppID]; app != nil {
		delete(app, t.record.ID)
		if len(app) == 0 {
			delete(s.byApp, t.record.AppID)
		}
	}
}

// tasksOfLocked is an app's tasks, or every task when appID is "".
func (s *Scheduler) tasksOfLocked(appID string) map[string]*taskState {
	if appID == "" {
		return s.tasks
	}
	return s.byApp[appID]
}

// forgetTask drops a task from memory and the store.
func (s *Scheduler) forgetTask(ctx context.Context, id string) {
	s.mu.Lock()
	t, ok := s.tasks[id]
	if ok {
		s.dropTaskLocked(t)
		s.ports.release(t.record.Ports)
		t.gone = true
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	s.deregister(ctx, t)
	s.health.Remove(id)
	if err := s.cfg.Store.DeleteTask(context.WithoutCancel(ctx), t.record.AppID, id); err != nil {
		s.log.Warn("forget task", "task", id, "error", err)
	}
}

// onStatus applies a status change reported by a driver.
func (s *Scheduler) onStatus(ctx context.Context, st task.Status) {
	s.mu.Lock()
	t, ok := s.tasks[st.ID]
	if !ok {
		s.mu.Unlock()
		return
	}
	if t.launching {
		// The launch has not returned yet: keep the end for when it does,
		// or the task would be shown running forever.
		if st.State.Terminal() {
			t.pending = &st
		}
		s.mu.Unlock()
		return
	}
	s.applyStatusLocked(ctx, t, st)
}

// applyStatusLocked records a driver's status of a task and, when it ended
// without garrison asking, handles its end. Called with s.mu held; unlocks.
func (s *Scheduler) applyStatusLocked(ctx context.Context, t *taskState, st task.Status) {
	if t.ended {
		s.mu.Unlock()
		return
	}
	prev := t.status.State
	t.status.State = st.State
	if !st.StartedAt.IsZero() {
		t.status.StartedAt = st.StartedAt
	}
	t.status.ExitCode, t.status.Message = st.ExitCode, st.Message
	killing := t.killing
	s.mu.Unlock()
	if prev != st.State {
		s.publishStatus(t, st.State, st.Message)
	}
	if st.State.Terminal() && !killing {
		s.taskEnded(ctx, t, st)
	}
}

// taskEnded handles a task that stopped without garrison asking: it is
// recorded as the app's last failure and replaced after the backoff delay.
func (s *Scheduler) taskEnded(ctx context.Context, t *taskState, st task.Status) {
	id := t.record.ID
	s.mu.Lock()
	if t.ended {
		s.mu.Unlock()
		return
	}
	t.ended = true
	s.mu.Unlock()
	s.log.Warn("task ended by itself", "task", id, "state", st.State, "exit_code", st.ExitCode, "message", st.Message)
	s.deregister(ctx, t)
	if err := t.driver.Remove(ctx, id); err != nil {
		s.log.Warn("remove ended task", "task", id, "error", err)
	}
	now := s.cfg.Now()
	s.mu.Lock()
	if as, ok := s.apps[t.record.AppID]; ok {
		s.noteFailure(as, t, st, now)
	}
	s.mu.Unlock()
	s.forgetTask(ctx, id)
	s.poke()
}

// noteFailure records a failed task and pushes the app's next launch back.
func (s *Scheduler) noteFailure(as *appState, t *taskState, st task.Status, now time.Time) {
	// A failure long after the previous one starts the backoff afresh.
	if !as.lastFailure.IsZero() && now.Sub(as.lastFailure) > time.Duration(as.app.MaxLaunchDelaySeconds)*time.Second {
		as.failures = 0
	}
	as.failures++
	as.lastFailure = now
	as.delayUntil = now.Add(backoffDelay(as.app, as.failures))
	msg := st.Message
	if msg == "" {
		msg = fmt.Sprintf("exited with code %d", st.ExitCode)
	}
	as.failure = &TaskFailure{AppID: as.app.ID, Host: s.cfg.Host, Message: msg, State: string(st.State),
		TaskID: t.record.ID, Timestamp: app.FormatVersion(now), Version: t.record.Version, SlaveID: s.cfg.Hostname}
}

// reconcile runs one pass over every app.
func (s *Scheduler) reconcile(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	var launches []launchOrder
	var kills []*taskState
	// Launches are prepared only for free slots: the work of a pass, and
	// the memory it allocates, never grows with an app's instance count.
	slots := min(s.cfg.LaunchConcurrency-s.launching, s.cfg.MaxTasks-len(s.tasks))
	for id, as := range s.apps {
		ts := s.byApp[id]
		views := make([]taskView, 0, len(ts))
		byID := map[string]*taskState{}
		for _, t := range ts {
			byID[t.record.ID] = t
			views = append(views, taskView{ID: t.record.ID, Current: t.record.ConfigVersion == configVersion(as.app),
				Healthy: s.servingLocked(as.app, t), Killing: t.killing, Staged: t.record.StagedAt})
		}
		st := planApp(as.app, views, s.restartingLocked(id))
		for _, kid := range st.Kill {
			if t := byID[kid]; t != nil && s.markKillLocked(t) {
				kills = append(kills, t)
			}
		}
		if st.Launch > 0 && len(s.tasks) >= s.cfg.MaxTasks && now.Sub(s.capWarned) > time.Minute {
			s.capWarned = now
			s.log.Warn("not launching: the scheduler holds its most tasks", "app", id, "missing", st.Launch, "max_tasks", s.cfg.MaxTasks)
		}
		if st.Launch > 0 && !now.Before(as.delayUntil) {
			for n := min(st.Launch, slots); n > 0; n-- {
				o, ok := s.prepareLaunchLocked(as, now)
				if !ok {
					break
				}
				launches = append(launches, o)
				slots--
			}
		}
	}
	// Tasks of deleted apps go.
	for id, ts := range s.byApp {
		if _, ok := s.apps[id]; !ok {
			for _, t := range ts {
				if s.markKillLocked(t) {
					kills = append(kills, t)
				}
			}
		}
	}
	var toRegister, toDeregister []*taskState
	for _, t := range s.tasks {
		as := s.apps[t.record.AppID]
		want := as != nil && registers(as.app) && !t.killing && !t.launching &&
			t.status.State == task.Running && s.healthyLocked(t)
		switch {
		case want && t.registered == nil && !t.registering:
			t.registering = true
			toRegister = append(toRegister, t)
		case !want && t.registered != nil && !t.killing:
			toDeregister = append(toDeregister, t)
		}
		if t.status.State == task.Running && !t.healthAdded && as != nil {
			spec := app.ToSpec(as.app, t.record.ID, t.record.Ports, s.cfg.Host)
			checks := healthChecks(as.app, spec.ID, t.record.Ports, s.cfg.Host, spec.Environ())
			t.healthChecks = len(checks)
			t.healthAdded = true
			if len(checks) > 0 {
				if err := s.health.Add(t.record.ID, t.record.ID, t.status.StartedAt, checks); err != nil {
					s.log.Warn("health checks refused", "task", t.record.ID, "error", err)
					t.healthChecks = 0
				}
			}
		}
	}
	finished := s.finishedDeploymentsLocked()
	s.mu.Unlock()

	for _, t := range kills {
		s.startKill(ctx, t)
	}
	for _, o := range launches {
		s.startLaunch(ctx, o)
	}
	for _, t := range toRegister {
		s.startRegister(ctx, t)
	}
	for _, t := range toDeregister {
		s.deregister(ctx, t)
	}
	for _, d := range finished {
		s.completeDeployment(ctx, d)
	}
}

// configVersion identifies an app's configuration: a task launched with
// another one is replaced by a rolling restart.
func configVersion(a *app.App) string {
	if a.VersionInfo != nil && !a.VersionInfo.LastConfigChangeAt.IsZero() {
		return app.FormatVersion(a.VersionInfo.LastConfigChangeAt)
	}
	return app.FormatVersion(a.Version)
}

// healthyLocked: running, and passing its health checks when it has any.
// servingLocked reports whether t serves callers: healthy and, when
// garrison registers the app's tasks, registered. A deployment counts a new
// task only then, so that an old one it replaces leaves the registry after
// its successor has entered it: callers find instances there, and an app
// of one instance would otherwise have none for the registration's time.
func (s *Scheduler) servingLocked(a *app.App, t *taskState) bool {
	if !s.healthyLocked(t) {
		return false
	}
	// A task without ports has no address to register.
	return t.registered != nil || !registers(a) || s.cfg.Registry == nil || len(t.record.Ports) == 0 ||
		t.record.Driver == driverCluster
}

func (s *Scheduler) healthyLocked(t *taskState) bool {
	if t.record.Driver == driverCluster {
		return clusterHealthyLocked(t)
	}
	if t.status.State != task.Running || t.launching {
		return false
	}
	if t.healthChecks == 0 {
		return t.healthAdded
	}
	healthy, known := s.health.Healthy(t.record.ID)
	return known && healthy
}

// Registration labels: GARRISON_REGISTER is "garrison" (default: garrison
// registers the task once healthy), "self" (the task registers itself) or
// "off"; GARRISON_SERVICE overrides the service name.
const (
	LabelRegister = "GARRISON_REGISTER"
	LabelService  = "GARRISON_SERVICE"
)

func registers(a *app.App) bool {
	v := a.Labels[LabelRegister]
	return v == "" || v == "garrison"
}

func serviceName(a *app.App) string {
	if name := a.Labels[LabelService]; name != "" {
		return name
	}
	return app.ServiceName(a.ID)
}

// healthChecks turns the app's Marathon health checks into checks on the
// task's host ports; a COMMAND check of a container runs in it.
func healthChecks(a *app.App, taskID string, ports []int, host string, env []string) []health.Check {
	var out []health.Check
	for _, hc := range a.HealthChecks {
		c := health.Check{
			Protocol:               health.Protocol(hc.Protocol),
			Path:                   hc.Path,
			Host:                   host,
			GracePeriod:            time.Duration(hc.GracePeriodSeconds) * time.Second,
			Interval:               time.Duration(hc.IntervalSeconds) * time.Second,
			Timeout:                time.Duration(hc.TimeoutSeconds) * time.Second,
			MaxConsecutiveFailures: hc.MaxConsecutiveFailures,
			IgnoreHTTP1xx:          hc.IgnoreHTTP1xx,
		}
		// Marathon honours delaySeconds only for checks Mesos runs.
		if hc.Protocol == app.ProtocolCommand || strings.HasPrefix(hc.Protocol, "MESOS_") {
			c.Delay = time.Duration(hc.DelaySeconds) * time.Second
		}
		switch {
		case hc.Port != nil:
			c.Port = *hc.Port
		case hc.PortIndex != nil && *hc.PortIndex < len(ports):
			c.Port = ports[*hc.PortIndex]
		case len(ports) > 0 && hc.Protocol != app.ProtocolCommand:
			c.Port = ports[0]
		}
		if hc.Command != nil {
			c.Command = hc.Command.Value
			c.Env = env
			if a.Image() != "" {
				c.Task = taskID
			}
		}
		out = append(out, c)
	}
	return out
}

func cloneStrings(m map[string]string) map[string]string { return maps.Clone(m) }
