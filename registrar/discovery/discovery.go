// Package discovery keeps the live instances of one service, read from the
// registry that registrar writes (/service/<name>/<instance-id>), current
// through an etcd watch, and picks one of them for each call.
//
// Discovery is available before it is consistent: while etcd cannot be
// reached a Service keeps serving the instances it last knew and says they
// are stale; it never empties a service because the registry went quiet.
// Once etcd answers again it lists the service afresh, so changes made
// during the outage (deletions included) are seen, and the stale flag clears.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/registrar"
)

// Registry is the part of the etcd client that discovery reads with;
// *clientv3.Client satisfies it.
type Registry interface {
	clientv3.KV
	clientv3.Watcher
}

// ErrNoEndpoints is returned by Pick when the service has no instance.
var ErrNoEndpoints = errors.New("discovery: no endpoints")

// Option changes how a Service follows the registry.
type Option func(*options)

type options struct {
	probeInterval time.Duration
	probeTimeout  time.Duration
	listTimeout   time.Duration
	retryMin      time.Duration
	retryMax      time.Duration
	picker        Picker
	logger        *slog.Logger
	now           func() time.Time
}

// WithProbe sets how often a Service checks that etcd still answers, and how
// long one check may take. A watch alone cannot tell a quiet registry from
// an unreachable one (the etcd client silently retries its stream), so a
// cheap linearizable read is made every interval; a failed one marks the
// instances stale. Defaults: every second, one-second timeout.
func WithProbe(interval, timeout time.Duration) Option {
	return func(o *options) { o.probeInterval, o.probeTimeout = interval, timeout }
}

// WithListTimeout bounds one attempt to list the service (default 5 s).
func WithListTimeout(d time.Duration) Option { return func(o *options) { o.listTimeout = d } }

// WithRetry bounds the pause between failed attempts to list the service;
// it doubles from min up to max (defaults 100 ms and 1 s, so a Service is
// back in sync about a second after etcd is).
func WithRetry(min, max time.Duration) Option {
	return func(o *options) { o.retryMin, o.retryMax = min, max }
}

// WithPicker sets how Pick chooses an instance (default NewRoundRobin()).
func WithPicker(p Picker) Option { return func(o *options) { o.picker = p } }

// WithLogger sets where outages and resyncs are logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithClock sets the clock that stamps Snapshot.Since; tests inject one.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Snapshot is what a Service knows about its instances at one moment.
type Snapshot struct {
	// Instances are sorted by instance id. Treat them as read-only.
	Instances []registrar.Instance
	// Stale is true while etcd cannot be reached: Instances are the last
	// ones known, which may have changed since.
	Stale bool
	// Since is when the Service went stale; zero when it is not.
	Since time.Time
	// Revision is the etcd revision Instances reflect.
	Revision int64
}

// Service follows the instances of one service. Its methods are safe for
// concurrent use. Close it to stop following.
type Service struct {
	name    string
	prefix  string
	reg     Registry
	opts    options
	state   atomic.Pointer[Snapshot]
	updates chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once

	// byID is owned by the goroutine that follows the registry (and by New
	// before that goroutine starts).
	byID map[string]registrar.Instance
}

// New lists the instances of service and keeps following them by a watch
// until Close. It returns once the first listing succeeded, or with the
// error of the last attempt when ctx ends first; cancelling ctx after New
// returned has no effect.
func New(ctx context.Context, reg Registry, service string, opts ...Option) (*Service, error) {
	if err := registrar.ValidateName("service name", service); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	o := options{
		probeInterval: time.Second,
		probeTimeout:  time.Second,
		listTimeout:   5 * time.Second,
		retryMin:      100 * time.Millisecond,
		retryMax:      time.Second,
		logger:        slog.Default(),
		now:           time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.picker == nil {
		o.picker = NewRoundRobin()
	}
	if o.probeInterval <= 0 || o.probeTimeout <= 0 || o.listTimeout <= 0 || o.retryMin <= 0 || o.retryMax < o.retryMin {
		return nil, fmt.Errorf("discovery %s: probe interval/timeout, list timeout and retry pauses must be positive, retry max >= min", service)
	}
	s := &Service{
		name:    service,
		prefix:  registrar.ServicePrefix(service),
		reg:     reg,
		opts:    o,
		updates: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	s.opts.logger = o.logger.With("service", service)
	s.state.Store(&Snapshot{})
	rev, err := s.listUntil(ctx)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go s.run(runCtx, rev)
	return s, nil
}

// Name is the service followed.
func (s *Service) Name() string { return s.name }

// Snapshot returns the current instances and whether they are stale.
func (s *Service) Snapshot() Snapshot {
	snap := *s.state.Load()
	snap.Instances = slices.Clone(snap.Instances)
	return snap
}

// Updates receives a value after the instances or the stale flag changed.
// It holds at most one pending value (later changes coalesce into it), so a
// slow reader never blocks the Service: read Snapshot when it fires.
func (s *Service) Updates() <-chan struct{} { return s.updates }

// Pick chooses an instance with the Service's picker. Stale instances are
// still picked: the last known endpoints beat none while etcd is away.
func (s *Service) Pick() (registrar.Instance, error) {
	instances := s.state.Load().Instances
	if len(instances) == 0 {
		return registrar.Instance{}, fmt.Errorf("pick %s: %w", s.name, ErrNoEndpoints)
	}
	return s.opts.picker.Pick(instances), nil
}

// Report tells the picker how a call to addr went, when the picker learns
// from outcomes (see Weighted); otherwise it does nothing.
func (s *Service) Report(addr string, latency time.Duration, err error) {
	if r, ok := s.opts.picker.(Reporter); ok {
		r.Report(addr, latency, err)
	}
}

// Close stops following the registry and returns once its goroutines ended.
// The last snapshot stays readable.
func (s *Service) Close() error {
	s.once.Do(func() {
		s.cancel()
		<-s.done
	})
	return nil
}

// run follows the registry: watch from the listed revision, and list again
// whenever the watch cannot go on (compaction, cancellation, etcd away).
func (s *Service) run(ctx context.Context, rev int64) {
	defer close(s.done)
	for {
		err := s.watch(ctx, rev+1)
		if ctx.Err() != nil {
			return
		}
		s.opts.logger.Info("listing the service again", "reason", err)
		if !errors.Is(err, rpctypes.ErrCompacted) {
			// A watch that etcd keeps refusing must not spin list+watch.
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.opts.retryMin):
			}
		}
		rev, err = s.listUntil(ctx)
		if err != nil { // only when ctx ended
			return
		}
	}
}

// listUntil retries list with capped exponential pauses until it succeeds
// or ctx ends; a failed attempt marks the instances stale.
func (s *Service) listUntil(ctx context.Context) (int64, error) {
	pause := s.opts.retryMin
	for {
		rev, err := s.list(ctx)
		if err == nil {
			return rev, nil
		}
		if ctx.Err() != nil {
			return 0, err
		}
		s.markStale(err)
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(pause):
		}
		pause = min(2*pause, s.opts.retryMax)
	}
}

// list replaces the known instances with a fresh, linearizable read of the
// service's prefix and clears the stale flag.
func (s *Service) list(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, s.opts.listTimeout)
	defer cancel()
	resp, err := s.reg.Get(lctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("discovery: list %s: %w", s.prefix, err)
	}
	s.byID = s.decodeAll(resp.Kvs)
	if old := s.state.Load(); old.Stale {
		s.opts.logger.Info("etcd answers again; instances are current", "stale_for", s.opts.now().Sub(old.Since))
	}
	s.publish(resp.Header.Revision, false, time.Time{})
	return resp.Header.Revision, nil
}

// watch applies the changes from revision from on, until the watch cannot
// go on or etcd stops answering; it returns why.
func (s *Service) watch(ctx context.Context, from int64) error {
	// The probe cancels the session: Watch itself blocks until etcd has
	// created the watch, which never happens while etcd is away.
	wctx, cancel := context.WithCancelCause(ctx)
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		s.probe(wctx, cancel)
	}()
	defer func() {
		cancel(nil)
		<-probeDone
	}()
	// WithRequireLeader: a member cut off from its cluster cancels the watch
	// instead of silently serving nothing.
	wch := s.reg.Watch(clientv3.WithRequireLeader(wctx), s.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	for {
		var resp clientv3.WatchResponse
		ok := false
		select {
		case <-wctx.Done():
		case resp, ok = <-wch:
		}
		if wctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			err := context.Cause(wctx)
			s.markStale(err)
			return err
		}
		if !ok {
			err := errors.New("discovery: watch channel closed")
			s.markStale(err)
			return err
		}
		if err := resp.Err(); err != nil || resp.Canceled {
			if err == nil {
				err = errors.New("watch canceled")
			}
			err = fmt.Errorf("discovery: watch %s from revision %d: %w", s.prefix, from, err)
			// A compaction only means the watch fell behind: etcd is there,
			// so the instances are not stale unless the next list fails.
			if !errors.Is(err, rpctypes.ErrCompacted) {
				s.markStale(err)
			}
			return err
		}
		if resp.IsProgressNotify() || len(resp.Events) == 0 {
			continue
		}
		s.apply(resp.Events)
		s.publish(resp.Header.Revision, false, time.Time{})
		from = resp.Header.Revision + 1
	}
}

// probe reads one key that is never an instance every probe interval, and
// at the first failure cancels the watch session with the reason.
func (s *Service) probe(ctx context.Context, fail context.CancelCauseFunc) {
	t := time.NewTicker(s.opts.probeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, s.opts.probeTimeout)
		_, err := s.reg.Get(pctx, s.prefix, clientv3.WithCountOnly())
		cancel()
		if err != nil && ctx.Err() == nil {
			fail(fmt.Errorf("discovery: etcd did not answer the probe (get %s within %s): %w", s.prefix, s.opts.probeTimeout, err))
			return
		}
	}
}

// apply updates byID with watch events. A key whose new value is not an
// endpoint no longer names an instance, so it is dropped.
func (s *Service) apply(events []*clientv3.Event) {
	for _, ev := range events {
		id := strings.TrimPrefix(string(ev.Kv.Key), s.prefix)
		switch ev.Type {
		case mvccpb.PUT:
			if inst, ok := s.decode(ev.Kv.Key, ev.Kv.Value); ok {
				s.byID[inst.ID] = inst
				continue
			}
			delete(s.byID, id)
		case mvccpb.DELETE:
			delete(s.byID, id)
		}
	}
}

// decodeAll decodes a listing. JSON decoding is most of the cost of
// loading a large service, so big listings are split across the CPUs.
func (s *Service) decodeAll(kvs []*mvccpb.KeyValue) map[string]registrar.Instance {
	decoded := make([]registrar.Instance, len(kvs))
	valid := make([]bool, len(kvs))
	workers := min(runtime.GOMAXPROCS(0), len(kvs)/decodeChunk)
	if workers <= 1 {
		for i, kv := range kvs {
			decoded[i], valid[i] = s.decode(kv.Key, kv.Value)
		}
	} else {
		var wg sync.WaitGroup
		per := (len(kvs) + workers - 1) / workers
		for lo := 0; lo < len(kvs); lo += per {
			hi := min(lo+per, len(kvs))
			wg.Go(func() {
				for i := lo; i < hi; i++ {
					decoded[i], valid[i] = s.decode(kvs[i].Key, kvs[i].Value)
				}
			})
		}
		wg.Wait()
	}
	byID := make(map[string]registrar.Instance, len(kvs))
	for i, inst := range decoded {
		if valid[i] {
			byID[inst.ID] = inst
		}
	}
	return byID
}

// decodeChunk is the least number of entries worth a goroutine.
const decodeChunk = 1024

// decode reads one registry entry, skipping those that are not an endpoint
// of this service (bad JSON, no address, a deeper key), as etcd's resolver
// does.
func (s *Service) decode(key, value []byte) (registrar.Instance, bool) {
	inst, err := registrar.DecodeInstance(key, value)
	if err != nil {
		s.opts.logger.Debug("skipping registry entry", "error", err)
		return registrar.Instance{}, false
	}
	if inst.Service != s.name {
		return registrar.Instance{}, false
	}
	return inst, true
}

// publish stores a new snapshot built from byID and signals Updates.
func (s *Service) publish(rev int64, stale bool, since time.Time) {
	instances := make([]registrar.Instance, 0, len(s.byID))
	for _, inst := range s.byID {
		instances = append(instances, inst)
	}
	slices.SortFunc(instances, func(a, b registrar.Instance) int { return strings.Compare(a.ID, b.ID) })
	s.state.Store(&Snapshot{Instances: instances, Stale: stale, Since: since, Revision: rev})
	s.notify()
}

// markStale flags the current instances as stale, keeping them and the time
// the outage began.
func (s *Service) markStale(cause error) {
	old := s.state.Load()
	if old.Stale {
		return
	}
	s.opts.logger.Warn("etcd unreachable; serving the last known instances as stale", "instances", len(old.Instances), "error", cause)
	snap := *old
	snap.Stale, snap.Since = true, s.opts.now()
	s.state.Store(&snap)
	s.notify()
}

func (s *Service) notify() {
	select {
	case s.updates <- struct{}{}:
	default: // a signal is already pending; the reader will see the latest
	}
}
