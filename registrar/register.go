package registrar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultTTL is how long an instance stays registered after it stops
// refreshing its lease (a crash): the origin design's 10 s.
const DefaultTTL = 10 * time.Second

// Client is the part of the etcd client a registration uses.
type Client interface {
	clientv3.KV
	clientv3.Lease
}

// Option changes how an instance is registered.
type Option func(*options)

type options struct {
	ttl        time.Duration
	retryMin   time.Duration
	retryMax   time.Duration
	logger     *slog.Logger
	onRegister func(clientv3.LeaseID)
}

// WithTTL sets the lease TTL, rounded up to whole seconds (etcd's unit).
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithRetry bounds the pause between attempts to register again after the
// lease was lost; the pause doubles from min up to max.
func WithRetry(min, max time.Duration) Option {
	return func(o *options) { o.retryMin, o.retryMax = min, max }
}

// WithLogger sets where lease losses and re-registrations are logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithOnRegister is called with the new lease each time the instance has
// (re-)registered; tests and metrics use it.
func WithOnRegister(f func(clientv3.LeaseID)) Option {
	return func(o *options) { o.onRegister = f }
}

// Registration is one instance kept in the registry until Close. While etcd
// is unreachable or the lease was lost (expired, revoked by someone else) it
// keeps trying to register again in the background.
type Registration struct {
	cli      Client
	key      string
	value    string
	opts     options
	cancel   context.CancelFunc
	done     chan struct{}
	lease    atomic.Int64 // current lease, 0 while not registered
	closeErr error
	once     sync.Once
}

// Register writes the instance under /service/<service>/<instanceID> bound
// to a fresh lease and keeps that lease alive. It returns once the first
// write succeeded, or with the error of the last attempt when ctx ends first.
// Call Close to deregister at once; cancelling ctx afterwards has no effect.
func Register(ctx context.Context, cli Client, service, instanceID string, ep Endpoint, opts ...Option) (*Registration, error) {
	if err := ValidateName("service name", service); err != nil {
		return nil, err
	}
	if err := ValidateName("instance id", instanceID); err != nil {
		return nil, err
	}
	if ep.Addr == "" {
		return nil, errors.New("register: endpoint has no address")
	}
	o := options{ttl: DefaultTTL, retryMin: 100 * time.Millisecond, retryMax: time.Second, logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.ttl < time.Second {
		return nil, fmt.Errorf("register: TTL %s is below etcd's one-second granularity", o.ttl)
	}
	value, err := json.Marshal(ep)
	if err != nil {
		return nil, fmt.Errorf("register %s: encode endpoint: %w", instanceID, err)
	}
	r := &Registration{cli: cli, key: Key(service, instanceID), value: string(value), opts: o, done: make(chan struct{})}
	r.opts.logger = o.logger.With("key", r.key)

	lease, err := r.registerUntil(ctx)
	if err != nil {
		return nil, err
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	go r.keepAlive(loopCtx, lease)
	return r, nil
}

// Key is the etcd key this instance is registered under.
func (r *Registration) Key() string { return r.key }

// Lease is the current lease, or 0 while the instance is not registered.
func (r *Registration) Lease() clientv3.LeaseID { return clientv3.LeaseID(r.lease.Load()) }

// Registered says whether the instance currently holds a live lease.
func (r *Registration) Registered() bool { return r.lease.Load() != 0 }

// Close stops refreshing and revokes the lease, which deletes the key at
// once: callers stop sending traffic before the instance stops serving.
// When etcd cannot be reached the key still disappears when its TTL ends.
func (r *Registration) Close(ctx context.Context) error {
	r.once.Do(func() {
		r.cancel()
		<-r.done
		lease := clientv3.LeaseID(r.lease.Swap(0))
		if lease == 0 {
			return
		}
		if _, err := r.cli.Revoke(ctx, lease); err != nil {
			r.closeErr = fmt.Errorf("deregister %s: revoke lease %x (the key expires with its TTL): %w", r.key, int64(lease), err)
		}
	})
	return r.closeErr
}

// Orphan stops refreshing the lease without revoking it: the key stays until
// its TTL ends. A supervisor that stops (garrison restarting) orphans the
// registrations it holds for tasks that keep running, so they stay
// discoverable while the next supervisor takes over with fresh leases.
func (r *Registration) Orphan() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
		r.lease.Store(0)
	})
}

func (r *Registration) keepAlive(ctx context.Context, lease clientv3.LeaseID) {
	defer close(r.done)
	for {
		ch, err := r.cli.KeepAlive(ctx, lease)
		if err == nil {
			// The channel closes when the lease is gone (expired, revoked) or
			// could not be refreshed within its TTL, or when ctx ends.
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return
		}
		r.lease.CompareAndSwap(int64(lease), 0)
		r.opts.logger.Warn("registration lost its lease; registering again", "lease", fmt.Sprintf("%x", int64(lease)), "error", err)
		lease, err = r.registerUntil(ctx)
		if err != nil { // only when ctx ended
			return
		}
		r.opts.logger.Info("registered again", "lease", fmt.Sprintf("%x", int64(lease)))
	}
}

// registerUntil retries registerOnce with capped exponential pauses until it
// succeeds or ctx ends.
func (r *Registration) registerUntil(ctx context.Context) (clientv3.LeaseID, error) {
	pause := r.opts.retryMin
	for {
		lease, err := r.registerOnce(ctx)
		if err == nil {
			return lease, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("register %s: %w", r.key, err)
		}
		r.opts.logger.Debug("register attempt failed", "error", err, "retry_in", pause)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("register %s: %w", r.key, err)
		case <-time.After(pause):
		}
		pause = min(2*pause, r.opts.retryMax)
	}
}

func (r *Registration) registerOnce(ctx context.Context) (clientv3.LeaseID, error) {
	// One attempt must not outlive the lease it would create.
	attemptCtx, cancel := context.WithTimeout(ctx, r.opts.ttl)
	defer cancel()
	ttlSeconds := int64((r.opts.ttl + time.Second - 1) / time.Second)
	grant, err := r.cli.Grant(attemptCtx, ttlSeconds)
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	if _, err := r.cli.Put(attemptCtx, r.key, r.value, clientv3.WithLease(grant.ID)); err != nil {
		// The unused lease expires by itself; revoking is only tidier.
		revokeCtx, cancelRevoke := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancelRevoke()
		if _, rerr := r.cli.Revoke(revokeCtx, grant.ID); rerr != nil {
			r.opts.logger.Debug("revoke unused lease", "error", rerr)
		}
		return 0, fmt.Errorf("put %s: %w", r.key, err)
	}
	r.lease.Store(int64(grant.ID))
	if r.opts.onRegister != nil {
		r.opts.onRegister(grant.ID)
	}
	return grant.ID, nil
}
