package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/signalman/task"
)

// launchOrder is a task about to be launched, prepared under the lock.
type launchOrder struct {
	t    *taskState
	spec task.Spec
}

// DefaultLaunchConcurrency bounds parallel launches: Docker serialises
// much of a container start anyway, and a burst must not starve the API.
const DefaultLaunchConcurrency = 8

// prepareLaunchLocked allocates a task id and ports and registers the task
// in memory as launching.
func (s *Scheduler) prepareLaunchLocked(as *appState, now time.Time) (launchOrder, bool) {
	a := as.app
	driver, name, err := s.driverFor(a)
	if err != nil {
		s.log.Warn("cannot launch", "app", a.ID, "error", err)
		return launchOrder{}, false
	}
	var ports []int
	if a.RequirePorts {
		for _, pd := range a.PortDefinitions {
			ports = append(ports, pd.Port)
		}
		s.ports.take(ports)
	} else {
		var ok bool
		ports, ok = s.ports.allocate(len(a.PortDefinitions))
		if !ok {
			s.log.Warn("no free host ports", "app", a.ID, "range", fmt.Sprintf("%d-%d", s.cfg.PortRange[0], s.cfg.PortRange[1]))
			return launchOrder{}, false
		}
	}
	id := app.TaskID(a.ID)
	var servicePorts []int
	for _, pd := range a.PortDefinitions {
		servicePorts = append(servicePorts, pd.Port)
	}
	rec := taskRecord{ID: id, AppID: a.ID, Version: app.FormatVersion(a.Version), ConfigVersion: configVersion(a),
		Ports: ports, ServicePorts: servicePorts, Driver: name, StagedAt: now}
	t := &taskState{record: rec, driver: driver, launching: true,
		status: task.Status{ID: id, AppID: a.ID, Version: rec.Version, State: task.Staging, Host: s.cfg.Host, Ports: ports, StagedAt: now}}
	s.putTaskLocked(t)
	s.launching++
	spec := app.ToSpec(a, id, ports, s.cfg.Host)
	spec.Labels = cloneStrings(spec.Labels)
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	spec.Labels["garrison.config-version"] = rec.ConfigVersion
	return launchOrder{t: t, spec: spec}, true
}

// launchEndedLocked marks a task's launch as returned, freeing its slot.
func (s *Scheduler) launchEndedLocked(t *taskState) {
	if t.launching {
		t.launching = false
		s.launching--
	}
}

func (s *Scheduler) startLaunch(ctx context.Context, o launchOrder) {
	s.effects.Add(1)
	go func() {
		defer s.effects.Done()
		s.launch(ctx, o)
	}()
}

// launch writes the task record first, so that a garrison that crashes
// during the launch finds and adopts the task, then starts it.
func (s *Scheduler) launch(ctx context.Context, o launchOrder) {
	t := o.t
	id := t.record.ID
	data, err := json.Marshal(t.record)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
		err = s.cfg.Store.PutTask(pctx, t.record.AppID, id, data)
		cancel()
	}
	if err != nil {
		s.log.Warn("record task before launch", "task", id, "error", err)
		s.mu.Lock()
		s.launchEndedLocked(t)
		s.dropTaskLocked(t)
		s.ports.release(t.record.Ports)
		s.mu.Unlock()
		return
	}
	// A leader paused since the record was written must not launch on
	// resume: the launch, which etcd cannot fence, waits on the term.
	if err := s.guard(ctx); err != nil {
		s.log.Warn("launch", "task", id, "error", err)
		s.mu.Lock()
		s.launchEndedLocked(t)
		s.mu.Unlock()
		s.forgetTask(ctx, id)
		return
	}
	s.publishStatus(t, task.Staging, "")
	// Like a kill, a launch under way finishes even while garrison stops
	// (its record is written: the next start adopts the task), within
	// launchGrace. Cut short, a driver may remove a task it did start
	// (Docker force-removes a container whose start call failed), one the
	// next leader adopted.
	lctx, cancel := outlive(ctx, launchGrace)
	st, err := t.driver.Launch(lctx, o.spec)
	cancel()
	if err != nil {
		s.log.Warn("launch failed", "task", id, "app", t.record.AppID, "error", err)
		failed := task.Status{ID: id, AppID: t.record.AppID, State: task.Failed, Message: err.Error(), ExitCode: -1}
		s.mu.Lock()
		s.launchEndedLocked(t)
		t.status.State = task.Failed
		if as, ok := s.apps[t.record.AppID]; ok {
			s.noteFailure(as, t, failed, s.cfg.Now())
		}
		s.mu.Unlock()
		s.publishStatus(t, task.Failed, err.Error())
		// A launch cut short by the end of the term may have started the
		// task, which the next leader adopts: only a leader removes it.
		if gerr := s.guard(context.WithoutCancel(ctx)); gerr != nil {
			s.log.Warn("leave failed launch to the next leader", "task", id, "error", gerr)
		} else if rerr := t.driver.Remove(context.WithoutCancel(ctx), id); rerr != nil {
			s.log.Debug("remove failed launch", "task", id, "error", rerr)
		}
		s.forgetTask(ctx, id)
		s.poke()
		return
	}
	s.mu.Lock()
	s.launchEndedLocked(t)
	s.launchSeq++
	t.launchedSeq = s.launchSeq
	t.status.State = st.State
	t.status.StartedAt = st.StartedAt
	if t.status.StartedAt.IsZero() && st.State == task.Running {
		t.status.StartedAt = s.cfg.Now()
	}
	// The task may have ended before Launch returned (cmd "typo" exits at
	// once): the status that said so arrived while it was launching.
	end := t.pending
	t.pending = nil
	if end == nil && st.State.Terminal() {
		end = &st
	}
	killNow := t.killing
	if end != nil {
		// In the same critical section: no pass may see it running.
		s.applyStatusLocked(ctx, t, *end)
	} else {
		s.mu.Unlock()
		s.publishStatus(t, st.State, "")
	}
	if killNow { // a kill came while it was launching
		s.kill(ctx, t)
	}
	s.poke()
}

// launchGrace is how long a launch under way may go on once the
// scheduler stops (a fetch of the task's files can be slow).
const launchGrace = 30 * time.Second

// outlive returns a context that ends grace after ctx does; cancel
// releases it.
func outlive(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	out, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		timer := time.AfterFunc(grace, cancel)
		context.AfterFunc(out, func() { timer.Stop() })
	})
	return out, func() { stop(); cancel() }
}

func (s *Scheduler) startKill(ctx context.Context, t *taskState) {
	s.effects.Add(1)
	go func() {
		defer s.effects.Done()
		s.kill(ctx, t)
	}()
}

// kill drains a task: out of the registry first, a pause for callers to
// notice, then SIGTERM and, after the app's grace period, SIGKILL.
func (s *Scheduler) kill(ctx context.Context, t *taskState) {
	id := t.record.ID
	s.mu.Lock()
	prev := t.status.State
	t.status.State = task.Killing
	grace := time.Duration(app.DefaultTaskKillGracePeriodSeconds) * time.Second
	if as, ok := s.apps[t.record.AppID]; ok {
		grace = time.Duration(as.app.TaskKillGracePeriodSeconds) * time.Second
	}
	s.mu.Unlock()
	if prev != task.Killing {
		s.publishStatus(t, task.Killing, "")
	}
	if s.deregister(ctx, t) {
		select {
		case <-time.After(s.cfg.DrainDelay):
		case <-ctx.Done():
		}
	}
	s.health.Remove(id)
	// The kill must finish even while garrison stops: a half-killed task
	// would be adopted again by the next start.
	killCtx := context.WithoutCancel(ctx)
	// A kill cannot be fenced by etcd: confirm the term right before it, so
	// a leader paused until another took over does not kill on resume.
	err := s.guard(killCtx)
	if err == nil {
		err = t.driver.Kill(killCtx, id, grace)
	}
	if err != nil {
		s.log.Warn("kill task", "task", id, "error", err)
		if s.stillRuns(killCtx, t) {
			// Forgetting it would leave a process no one counts or stops:
			// keep it; the next reconcile pass decides again.
			s.mu.Lock()
			t.killing = false
			t.status.State = prev
			t.healthAdded = false // its checks were removed above: add them again
			s.mu.Unlock()
			s.publishStatus(t, prev, "kill failed: "+err.Error())
			s.poke()
			return
		}
	}
	if err := t.driver.Remove(killCtx, id); err != nil {
		s.log.Debug("remove killed task", "task", id, "error", err)
	}
	s.mu.Lock()
	t.status.State = task.Killed
	s.mu.Unlock()
	s.publishStatus(t, task.Killed, "")
	s.forgetTask(killCtx, id)
	s.poke()
}

// guard returns nil while this scheduler's store may write: always on one
// machine; for a leader's fenced store, while its term lasts.
func (s *Scheduler) guard(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	if err := s.cfg.Store.Guard(ctx); err != nil {
		return fmt.Errorf("not acting: %w", err)
	}
	return nil
}

// stillRuns asks the driver whether a task runs (true also when the driver
// cannot tell: a task is never forgotten on a guess).
func (s *Scheduler) stillRuns(ctx context.Context, t *taskState) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	listed, err := t.driver.List(ctx)
	if err != nil {
		s.log.Warn("list tasks after a failed kill", "task", t.record.ID, "error", err)
		return true
	}
	for _, st := range listed {
		if st.ID == t.record.ID {
			return !st.State.Terminal()
		}
	}
	return false
}

func (s *Scheduler) startRegister(ctx context.Context, t *taskState) {
	s.effects.Add(1)
	go func() {
		defer s.effects.Done()
		s.register(ctx, t)
	}()
}

// register puts a healthy task into the registry under its app's service
// name, bound to a lease garrison keeps alive on the task's behalf.
func (s *Scheduler) register(ctx context.Context, t *taskState) {
	s.mu.Lock()
	as, ok := s.apps[t.record.AppID]
	var name string
	if ok {
		name = serviceName(as.app)
	}
	s.mu.Unlock()
	done := func(r *registrar.Registration) {
		s.mu.Lock()
		t.registering = false
		t.registered = r
		// The kill started, or the task died and was forgotten, while
		// registering: callers must not be sent to it.
		revoke := t.killing || t.ended || t.gone
		s.mu.Unlock()
		if revoke && r != nil {
			r.Close(context.WithoutCancel(ctx))
			s.mu.Lock()
			t.registered = nil
			s.mu.Unlock()
		}
	}
	if !ok || s.cfg.Registry == nil || len(t.record.Ports) == 0 {
		done(nil)
		return
	}
	regCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ep := registrar.Endpoint{
		Addr: s.cfg.Host + ":" + strconv.Itoa(t.record.Ports[0]),
		Metadata: map[string]string{
			"appId": t.record.AppID, "taskId": t.record.ID, "version": t.record.Version,
			"ports": joinInts(t.record.Ports), "registeredBy": "garrison",
		},
	}
	r, err := registrar.Register(regCtx, s.cfg.Registry, name, t.record.ID, ep,
		registrar.WithTTL(s.cfg.RegistryTTL), registrar.WithLogger(s.log))
	if err != nil {
		s.log.Warn("register task", "task", t.record.ID, "service", name, "error", err)
		done(nil)
		s.poke()
		return
	}
	done(r)
}

// deregister takes a task out of the registry at once; it reports whether
// the task had been registered.
func (s *Scheduler) deregister(ctx context.Context, t *taskState) bool {
	s.mu.Lock()
	r := t.registered
	t.registered = nil
	s.mu.Unlock()
	if r == nil {
		return false
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.Close(closeCtx); err != nil {
		s.log.Warn("deregister task", "task", t.record.ID, "error", err)
	}
	return true
}

func joinInts(xs []int) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ","
		}
		out += strconv.Itoa(x)
	}
	return out
}
