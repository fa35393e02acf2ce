// Package leader elects one headquarter among the replicas that share an
// etcd, with etcd's own concurrency.Election, and fences the leader's
// writes so that only the current leader's take effect.
//
// Every replica runs an Elector. Run campaigns with this replica's
// advertised API address (host:port) as the election value, under a
// Session whose lease lives TTL (10 s by default) without renewal. While
// this replica leads, Run calls lead with a context that is cancelled the
// moment leadership is lost (the session ended: lease expired or revoked,
// etcd unreachable for a TTL; the election key was deleted: Resign,
// Abdicate from another replica, an operator; etcd did not confirm the
// lease before it could have expired, which ends the term before another
// replica can win, even when this one is cut off with an etcd member that
// lost quorum; Run's context ended) and with the term's Fence. After a term Run deletes its key, revokes its
// lease, pauses (Pause, 2 s) and campaigns again with a new session.
// Leader names the current leader for every replica, IsLeader says whether
// this one leads, Resign steps down, Abdicate makes whichever replica leads
// step down (DELETE /v2/leader).
//
// # Fencing
//
// A paused or cut-off former leader may still run code that believes it
// leads (a Session notices a lost lease only when its renewal fails). Every
// etcd write a leader makes as leader (task records before a launch or
// after a kill, scale and deployment steps of the reconciler, autoscaler
// decisions) must therefore carry the term's Fence in the same
// transaction:
//
//	resp, err := kv.Txn(ctx).If(append(cmps, fence.Cmps()...)...).Then(ops...).Commit()
//	if err != nil { ... }
//	if !resp.Succeeded {
//		if err := fence.Check(ctx); err != nil {
//			return err // wraps leader.ErrNotLeader: stop acting
//		}
//		return ErrConflict // the caller's own compares failed
//	}
//
// The compare is etcd's own leadership test (the one Election.Proclaim
// and Mutex.IsOwner use): the election key still has the create revision
// it had when the term began. A term never comes back: a new campaign
// creates a new key with a new revision, so a write prepared in an old term
// fails even if this replica leads again.
//
// KV wraps any clientv3.KV so that every write through it is fenced this
// way (the caller's transaction nested in the fence's), and a refused write
// ends the term in this replica at once. headquarter/store's Fenced gives
// the store view a leader acts with: the scheduler and the autoscaler of a
// term get it, and stop with the term. Writes by the API (desired state
// sent by users) are the leader's too, since followers proxy the API to it;
// a request that a paused former leader resumes is refused.
//
// Writes outside etcd (Docker, Nomad, processes) cannot be fenced by etcd:
// the leader writes the fenced record first (a task record before a launch)
// and checks the fence (Check) right before each driver call, so at most
// the one call in flight when leadership is lost can still happen. Where
// the target has its own check-and-set (Nomad's job modify index), the
// driver reads the index, then Checks, then writes with the index
// enforced, which closes that window too.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Defaults of Config.
const (
	DefaultPrefix = "/garrison/leader"
	DefaultTTL    = 10 * time.Second
	DefaultPause  = 2 * time.Second
	// MinTTL is etcd's smallest lease with its default election timeout;
	// etcd silently raises shorter ones.
	MinTTL = 2 * time.Second
)

// ErrNoLeader means no replica leads at the moment.
var ErrNoLeader = errors.New("leader: there is no leader")

// Why a term ended, for the log.
var (
	errResigned   = errors.New("resigned")
	errKeyDeleted = errors.New("election key deleted")
	errRunEnded   = errors.New("elector stopped")
	// The lease's expiry could not be confirmed in time.
	errLeaseUnconfirmed = errors.New("lease renewal not confirmed by etcd before it could expire")
	errLeaseExpired     = errors.New("lease expired")
)

// Config sets up an Elector.
type Config struct {
	// Client is the etcd client to campaign with.
	Client *clientv3.Client
	// Name is this replica's advertised API address (host:port), the value
	// the election shows to the others.
	Name string
	// Prefix holds the election keys, one per campaigner; nothing else may
	// live under it (DefaultPrefix).
	Prefix string
	// TTL of the session lease: how long a leader that stopped renewing
	// (crashed, paused, cut off) keeps the lead (DefaultTTL; at least MinTTL;
	// whole seconds, rounded up).
	TTL time.Duration
	// Pause between the end of a term (or a failed campaign) and the next
	// campaign (DefaultPause).
	Pause time.Duration
	// OnChange is called with the new leader's name ("" for none) each time
	// the leader this replica observes changes; it must not block.
	OnChange func(leader string)
	Logger   *slog.Logger
}

// Elector campaigns for one replica and follows who leads.
type Elector struct {
	cfg Config
	ttl int // whole seconds
	log *slog.Logger

	mu     sync.Mutex
	leader string // name of the leader observed in etcd
	term   *term  // this replica's term, nil when not leading
}

type term struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	ended  chan struct{} // closed once the key is deleted after the term
}

// New checks cfg and returns an Elector; Run starts it.
func New(cfg Config) (*Elector, error) {
	if cfg.Client == nil {
		return nil, errors.New("leader: no etcd client")
	}
	if cfg.Name == "" {
		return nil, errors.New("leader: empty name: set the advertised API address")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < MinTTL {
		return nil, fmt.Errorf("leader: TTL %s is below etcd's minimum lease of %s", cfg.TTL, MinTTL)
	}
	if cfg.Pause <= 0 {
		cfg.Pause = DefaultPause
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Elector{
		cfg: cfg,
		ttl: int(math.Ceil(cfg.TTL.Seconds())),
		log: cfg.Logger.With("component", "leader", "name", cfg.Name),
	}, nil
}

// Leader returns the name of the replica that leads, "" when none does,
// etcd cannot tell (no quorum) or Run is not running: while Run runs it
// follows etcd's watch.
func (e *Elector) Leader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.term != nil && e.term.ctx.Err() == nil {
		return e.cfg.Name
	}
	return e.leader
}

// IsLeader reports whether this replica leads now.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.term != nil && e.term.ctx.Err() == nil
}

// Resign ends this replica's term: lead's context is cancelled, the key is
// deleted (another campaigner takes over at once), and Run campaigns again
// after Pause. It returns once the key is gone, or ErrNotLeader when this
// replica does not lead.
func (e *Elector) Resign(ctx context.Context) error {
	e.mu.Lock()
	t := e.term
	e.mu.Unlock()
	if t == nil || t.ctx.Err() != nil {
		return ErrNotLeader
	}
	t.cancel(errResigned)
	select {
	case <-t.ended:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("resign: %w", ctx.Err())
	}
}

// Abdicate makes the current leader step down, whichever replica it is, as
// Marathon's DELETE /v2/leader does (Marathon proxies it to the leader;
// here any replica deletes the leader's election key, which ends that
// leader's term and fails its fence at once). ErrNoLeader when none leads.
func (e *Elector) Abdicate(ctx context.Context) error {
	if err := e.Resign(ctx); !errors.Is(err, ErrNotLeader) {
		return err
	}
	cli := e.cfg.Client
	resp, err := cli.Get(ctx, e.cfg.Prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return fmt.Errorf("read leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return ErrNoLeader
	}
	kv := resp.Kvs[0]
	// Only that term's key: if it changed meanwhile, that leader is gone
	// already and the new one stays.
	_, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(string(kv.Key)), "=", kv.CreateRevision)).
		Then(clientv3.OpDelete(string(kv.Key))).Commit()
	if err != nil {
		return fmt.Errorf("remove leader %s: %w", kv.Value, err)
	}
	e.log.Info("made the leader step down", "leader", string(kv.Value))
	return nil
}

// Run campaigns until ctx ends. Each time this replica wins, it calls lead
// with a context cancelled the moment the term ends and the term's Fence,
// and waits both for lead to return and for the term to end; lead should
// return only once everything it started has stopped, so that no work of
// an old term overlaps the next one's. Run returns nil when ctx ends,
// after giving up the lead.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, f Fence)) error {
	obsCtx, stopObserving := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.observe(obsCtx) })
	defer func() {
		stopObserving()
		wg.Wait()
		e.setLeader("") // no longer followed
	}()
	for {
		if err := e.campaign(ctx, lead); err != nil && ctx.Err() == nil {
			e.log.Warn("campaign failed; retrying", "error", err, "pause", e.cfg.Pause)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(e.cfg.Pause):
		}
	}
}

// campaign runs one session: wait to win, lead for one term, give up.
func (e *Elector) campaign(ctx context.Context, lead func(context.Context, Fence)) error {
	cli := e.cfg.Client
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(e.ttl), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	// Revoke on the way out, also when ctx has ended (Session.Close would
	// revoke with ctx): the next leader need not wait for the lease.
	defer func() {
		s.Orphan()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.TTL)
		defer cancel()
		cli.Revoke(rctx, s.Lease()) // an expired lease cannot be revoked; either way it is gone
	}()

	el := concurrency.NewElection(s, e.cfg.Prefix)
	// Campaign does not watch its own session (etcd#19597): run it under
	// the session's context and check the session after it returns.
	if err := el.Campaign(s.Ctx(), e.cfg.Name); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	select {
	case <-s.Done():
		return errors.New("session ended while campaigning")
	default:
	}
	fence := Fence{kv: cli, key: el.Key(), rel: el.Key(), rev: el.Rev()}
	// Confirm at a revision of our own that the key is the oldest; the
	// term's watch starts after it.
	resp, err := cli.Get(s.Ctx(), e.cfg.Prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return fmt.Errorf("confirm leadership: %w", err)
	}
	if len(resp.Kvs) == 0 || string(resp.Kvs[0].Key) != fence.key || resp.Kvs[0].CreateRevision != fence.rev {
		return fmt.Errorf("won the election but %s is not the oldest key", fence.key)
	}
	sent := time.Now()
	ttl, err := cli.TimeToLive(clientv3.WithRequireLeader(s.Ctx()), s.Lease())
	if err != nil {
		return fmt.Errorf("read lease of %s: %w", fence.key, err)
	}
	if ttl.TTL < 1 {
		return fmt.Errorf("lease of %s is about to expire (%d s left)", fence.key, ttl.TTL)
	}
	deadline := sent.Add(time.Duration(ttl.TTL) * time.Second)

	tctx, cancel := context.WithCancelCause(s.Ctx())
	fence.end = cancel
	t := &term{ctx: tctx, cancel: cancel, ended: make(chan struct{})}
	e.mu.Lock()
	e.term = t
	e.mu.Unlock()
	e.log.Info("leading", "key", fence.key, "revision", fence.rev)

	var wg sync.WaitGroup
	wg.Go(func() { e.watchTerm(tctx, cancel, fence, resp.Header.Revision) })
	wg.Go(func() { e.guardLease(tctx, cancel, s.Lease(), deadline) })
	lead(tctx, fence)
	<-tctx.Done()
	wg.Wait()
	cause := context.Cause(tctx)
	select {
	case <-s.Done():
		cause = errors.New("session ended (lease expired or revoked, or etcd unreachable for the TTL)")
	default:
	}
	if ctx.Err() != nil {
		cause = errRunEnded
	}

	// Delete the key whatever ended the term (a no-op when it is gone), so
	// another campaigner takes over at once.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.TTL)
	if err := el.Resign(rctx); err != nil {
		e.log.Warn("delete election key", "key", fence.key, "error", err)
	}
	rcancel()
	e.mu.Lock()
	e.term = nil
	e.mu.Unlock()
	close(t.ended)
	e.log.Info("no longer leading", "key", fence.key, "cause", cause)
	return nil
}

// watchTerm ends the term when its election key is deleted: resigned,
// lease revoked or expired, deleted by an abdication.
func (e *Elector) watchTerm(ctx context.Context, end context.CancelCauseFunc, f Fence, rev int64) {
	cli := e.cfg.Client
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range cli.Watch(wctx, f.key, clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					cancel()
					end(errKeyDeleted)
					return
				}
			}
			rev = wr.Header.Revision
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		// The watch broke (etcd lost its leader, compaction): read the key.
		resp, err := cli.Get(clientv3.WithRequireLeader(ctx), f.key)
		if err == nil {
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != f.rev {
				end(errKeyDeleted)
				return
			}
			rev = resp.Header.Revision
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// guardLease ends the term before etcd can expire its lease unseen. A
// Session notices a lost lease only when a renewal is answered late or
// not at all, which can be after etcd expired it and another replica took
// over; here the term ends at a deadline that is never later than the
// lease's expiry: a TimeToLive answer's remaining seconds (rounded down by
// etcd) counted from before the request was sent. Each answer moves the
// deadline; unanswered (etcd cut off, no quorum), it passes. The first
// deadline comes from the same reading, taken when the term began.
func (e *Elector) guardLease(ctx context.Context, end context.CancelCauseFunc, lease clientv3.LeaseID, deadline time.Time) {
	cli := e.cfg.Client
	every := e.cfg.TTL / 3
	for {
		left := time.Until(deadline)
		if left <= 0 {
			end(errLeaseUnconfirmed)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(checkIn(every, left)):
		}
		if time.Until(deadline) <= 0 {
			continue
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(ctx, deadline)
		resp, err := cli.TimeToLive(clientv3.WithRequireLeader(rctx), lease)
		cancel()
		switch {
		case err != nil:
			// Keep the deadline: only etcd's answer can move it.
		case resp.TTL < 0:
			end(errLeaseExpired)
			return
		default:
			if d := sent.Add(time.Duration(resp.TTL) * time.Second); d.After(deadline) {
				deadline = d
			}
		}
	}
}

// checkIn is how long guardLease waits before asking etcd again, with left
// until the deadline: its period, but never so late that the answer cannot
// arrive before the deadline. (Waiting the whole of left asked only once
// the deadline had passed: with a 3 s TTL etcd's rounded-down answer is
// often 1 s, a third of the TTL, and terms ended while the lease was fine.)
func checkIn(every, left time.Duration) time.Duration {
	return min(every, left/2)
}

// observe follows the oldest election key: the leader every replica names.
func (e *Elector) observe(ctx context.Context) {
	cli := e.cfg.Client
	for ctx.Err() == nil {
		rctx := clientv3.WithRequireLeader(ctx)
		resp, err := cli.Get(rctx, e.cfg.Prefix+"/", clientv3.WithFirstCreate()...)
		if err != nil {
			// Without an etcd quorum nobody can tell who leads.
			e.setLeader("")
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		name := ""
		if len(resp.Kvs) > 0 {
			name = string(resp.Kvs[0].Value)
		}
		e.setLeader(name)
		// Wait for any change under the prefix, then read again.
		wctx, cancel := context.WithCancel(rctx)
		wr, ok := <-cli.Watch(wctx, e.cfg.Prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		cancel()
		if !ok || wr.Err() != nil {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func (e *Elector) setLeader(name string) {
	e.mu.Lock()
	changed := e.leader != name
	e.leader = name
	e.mu.Unlock()
	if changed {
		e.log.Debug("leader changed", "leader", name)
		if e.cfg.OnChange != nil {
			e.cfg.OnChange(name)
		}
	}
}
