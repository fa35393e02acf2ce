package leader_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"

	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/internal/poll"
)

// testTTL keeps takeovers short; etcd's minimum is 2 s.
const testTTL = 3 * time.Second

// wait bounds every poll: generous, the machine is shared.
const wait = 60 * time.Second

// replica is one headquarter's elector, talking to one etcd member.
type replica struct {
	name   string
	cli    *clientv3.Client
	el     *leader.Elector
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	fence   leader.Fence    // of the latest term
	termCtx context.Context // of the latest term
	began   time.Time       // when the latest term began
	terms   int
}

func startReplica(t *testing.T, c *cluster, member int, prefix string) *replica {
	t.Helper()
	r := &replica{name: fmt.Sprintf("hq%d:8080", member), cli: c.Client(t, member), done: make(chan struct{})}
	el, err := leader.New(leader.Config{
		Client: r.cli, Name: r.name, Prefix: prefix, TTL: testTTL, Pause: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	r.el = el
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		el.Run(ctx, func(ctx context.Context, f leader.Fence) {
			r.mu.Lock()
			r.fence, r.termCtx, r.began = f, ctx, time.Now()
			r.terms++
			r.mu.Unlock()
			<-ctx.Done()
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// crash stops the replica as a killed process would: its etcd client goes
// away without resigning or revoking, so only the lease's TTL ends its term.
func (r *replica) crash() { r.cli.Close() }

func (r *replica) term() (leader.Fence, context.Context, time.Time, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fence, r.termCtx, r.began, r.terms
}

// leaders returns the replicas that say they lead.
func leaders(rs []*replica) []*replica {
	var out []*replica
	for _, r := range rs {
		if r.el.IsLeader() {
			out = append(out, r)
		}
	}
	return out
}

// waitLeader polls until exactly one replica of rs leads and every one of
// rs names it, and returns it.
func waitLeader(t *testing.T, rs []*replica, what string) *replica {
	t.Helper()
	var l *replica
	poll.Until(t, wait, what, func() (bool, string) {
		ls := leaders(rs)
		if len(ls) != 1 {
			return false, fmt.Sprintf("%d leaders", len(ls))
		}
		l = ls[0]
		if _, ctx, _, _ := l.term(); ctx == nil || ctx.Err() != nil {
			return false, l.name + "'s lead callback has not run yet"
		}
		for _, r := range rs {
			if got := r.el.Leader(); got != l.name {
				return false, fmt.Sprintf("%s names %q, %s leads", r.name, got, l.name)
			}
		}
		return true, ""
	})
	return l
}

func startThree(t *testing.T, c *cluster, prefix string) []*replica {
	return []*replica{startReplica(t, c, 0, prefix), startReplica(t, c, 1, prefix), startReplica(t, c, 2, prefix)}
}

func others(rs []*replica, not *replica) []*replica {
	return slices.DeleteFunc(slices.Clone(rs), func(r *replica) bool { return r == not })
}

func TestOneLeaderAmongThree(t *testing.T) {
	c := newCluster(t)
	rs := startThree(t, c, "/garrison/leader")
	l := waitLeader(t, rs, "one leader among three campaigners")
	// The others keep waiting: still one leader a while later, the same.
	for range 20 {
		if ls := leaders(rs); len(ls) != 1 || ls[0] != l {
			t.Fatalf("leaders changed without cause: %v", ls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f, _, _, _ := l.term()
	if !strings.HasPrefix(f.Key(), "/garrison/leader/") || f.Rev() <= 0 {
		t.Fatalf("fence key %q rev %d", f.Key(), f.Rev())
	}
	if _, err := f.Do(t.Context(), clientv3.OpPut("/test/by-leader", l.name)); err != nil {
		t.Fatalf("leader's fenced write: %v", err)
	}
	for _, r := range others(rs, l) {
		if f, _, _, n := r.term(); n != 0 || f.Key() != "" {
			t.Fatalf("%s had a term", r.name)
		}
		// The zero fence refuses.
		var zero leader.Fence
		if _, err := zero.Do(t.Context(), clientv3.OpPut("/test/by-follower", r.name)); !errors.Is(err, leader.ErrNotLeader) {
			t.Fatalf("zero fence: %v", err)
		}
		if err := r.el.Resign(t.Context()); !errors.Is(err, leader.ErrNotLeader) {
			t.Fatalf("follower resign: %v", err)
		}
	}
}

func TestTakeoverAfterLeaderCrash(t *testing.T) {
	c := newCluster(t)
	rs := startThree(t, c, "/garrison/leader")
	old := waitLeader(t, rs, "first leader")
	_, oldCtx, _, _ := old.term()
	crashed := time.Now()
	old.crash()
	rest := others(rs, old)
	next := waitLeader(t, rest, "a new leader after the leader crashed")
	_, _, began, _ := next.term()
	t.Logf("takeover after the leader's crash: %s (session TTL %s)", began.Sub(crashed).Round(time.Millisecond), testTTL)
	select {
	case <-oldCtx.Done():
	default:
		t.Fatalf("the crashed leader's term is still on")
	}
	if old.el.IsLeader() {
		t.Fatal("crashed replica still says it leads")
	}
}

func TestRevokedLeaderCannotWriteThroughFence(t *testing.T) {
	c := newCluster(t)
	rs := startThree(t, c, "/garrison/leader")
	old := waitLeader(t, rs, "first leader")
	oldFence, _, _, _ := old.term()
	ctx := t.Context()

	// The store's way: a namespaced KV, the fence's compares beside the
	// caller's own, Check to tell a lost term from a conflict.
	admin := c.Client(t, 0)
	kv := namespace.NewKV(admin, "/garrison/")
	fenced := func(f leader.Fence, cmps []clientv3.Cmp, ops ...clientv3.Op) error {
		nf, err := f.Under("/garrison/")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := kv.Txn(ctx).If(append(cmps, nf.Cmps()...)...).Then(ops...).Commit()
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			if err := f.Check(ctx); err != nil {
				return err
			}
			return errConflict
		}
		return nil
	}
	if err := fenced(oldFence, nil, clientv3.OpPut("tasks/a", "1")); err != nil {
		t.Fatalf("leader's fenced write: %v", err)
	}
	notThere := clientv3.Compare(clientv3.CreateRevision("tasks/a"), "=", 0)
	if err := fenced(oldFence, []clientv3.Cmp{notThere}, clientv3.OpPut("tasks/a", "2")); !errors.Is(err, errConflict) {
		t.Fatalf("own compare failing under a live fence: got %v, want a conflict", err)
	}

	// The leader "pauses": its lease is revoked behind its back, as etcd
	// expires the lease of a leader that stopped renewing.
	get, err := admin.Get(ctx, oldFence.Key())
	if err != nil || len(get.Kvs) != 1 {
		t.Fatalf("read election key: %v %v", get, err)
	}
	if _, err := admin.Revoke(ctx, clientv3.LeaseID(get.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	next := waitLeader(t, others(rs, old), "a new leader after the old one's lease was revoked")
	nextFence, _, _, _ := next.term()

	// The old leader resumes and writes with what it had: refused.
	if _, err := oldFence.Do(ctx, clientv3.OpPut("/garrison/tasks/a", "stale")); !errors.Is(err, leader.ErrNotLeader) {
		t.Fatalf("paused leader's write: got %v, want ErrNotLeader", err)
	}
	if err := fenced(oldFence, nil, clientv3.OpPut("tasks/b", "stale")); !errors.Is(err, leader.ErrNotLeader) {
		t.Fatalf("paused leader's store write: got %v, want ErrNotLeader", err)
	}
	if err := oldFence.Check(ctx); !errors.Is(err, leader.ErrNotLeader) {
		t.Fatalf("old fence check: %v", err)
	}
	if err := fenced(nextFence, nil, clientv3.OpPut("tasks/b", "new")); err != nil {
		t.Fatalf("new leader's write: %v", err)
	}
	got, err := kv.Get(ctx, "tasks/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var vals []string
	for _, kv := range got.Kvs {
		vals = append(vals, string(kv.Key)+"="+string(kv.Value))
	}
	if want := []string{"tasks/a=1", "tasks/b=new"}; !slices.Equal(vals, want) {
		t.Fatalf("stored %v, want %v", vals, want)
	}
	// The old replica noticed, and campaigns again as a follower.
	poll.True(t, wait, "old leader steps down", func() bool { return !old.el.IsLeader() && old.el.Leader() == next.name })
}

var errConflict = errors.New("conflict")

func TestResignHandsOver(t *testing.T) {
	c := newCluster(t)
	rs := startThree(t, c, "/garrison/leader")
	first := waitLeader(t, rs, "first leader")
	firstFence, firstCtx, _, _ := first.term()
	if err := first.el.Resign(t.Context()); err != nil {
		t.Fatalf("resign: %v", err)
	}
	// Resign returns once the key is gone: the term is over at once.
	if first.el.IsLeader() || firstCtx.Err() == nil {
		t.Fatal("still leading after Resign returned")
	}
	if err := firstFence.Check(t.Context()); !errors.Is(err, leader.ErrNotLeader) {
		t.Fatalf("resigned fence: %v", err)
	}
	second := waitLeader(t, rs, "a leader after the first resigned")
	if second == first {
		t.Fatal("the resigned replica led again although others were waiting")
	}

	// Abdicate from a follower makes the leader step down (DELETE
	// /v2/leader on any replica).
	follower := others(rs, second)[0]
	_, secondCtx, _, _ := second.term()
	if err := follower.el.Abdicate(t.Context()); err != nil {
		t.Fatalf("abdicate from a follower: %v", err)
	}
	poll.True(t, wait, "the leader's term ends after an abdication", func() bool { return secondCtx.Err() != nil })
	third := waitLeader(t, rs, "a leader after the abdication")
	_, _, _, n := third.term()
	t.Logf("leader after resign and abdicate: %s (its term %d)", third.name, n)
}

func TestAbdicateWithoutLeader(t *testing.T) {
	c := newCluster(t)
	el, err := leader.New(leader.Config{Client: c.Client(t, 0), Name: "hq0:8080", Prefix: "/garrison/leader"})
	if err != nil {
		t.Fatal(err)
	}
	if err := el.Abdicate(t.Context()); !errors.Is(err, leader.ErrNoLeader) {
		t.Fatalf("abdicate without leader: %v", err)
	}
	if el.Leader() != "" || el.IsLeader() {
		t.Fatal("names a leader before any campaign")
	}
	if _, err := leader.New(leader.Config{Client: c.Client(t, 0), Name: "x:1", TTL: time.Second}); err == nil {
		t.Fatal("a TTL below etcd's minimum was accepted")
	}
}

// write is a fenced write that etcd acknowledged.
type write struct {
	by  string
	rev int64 // the election key's create revision: the term
	at  int64 // etcd revision of the write
}

// TestPartitionedMemberNoTwoLeaders cuts the etcd member the leader talks
// to off from the other two. Every replica keeps writing with the fence of
// its latest term whether or not it still thinks it leads, as a paused or
// cut-off process would: the acknowledged writes, in etcd's order, come in
// one block per term, never interleaved, and the cut-off leader steps down.
func TestPartitionedMemberNoTwoLeaders(t *testing.T) {
	c := newCluster(t)
	rs := startThree(t, c, "/garrison/leader")
	old := waitLeader(t, rs, "first leader")
	member := slices.Index(rs, old)

	var mu sync.Mutex
	var acked []write
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			for ctx.Err() == nil {
				f, _, _, _ := r.term()
				if f.Key() == "" {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				wctx, cancel := context.WithTimeout(ctx, time.Second)
				resp, err := f.Do(wctx, clientv3.OpPut("/test/last-writer", r.name))
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, write{r.name, f.Rev(), resp.Header.Revision})
					mu.Unlock()
				} else {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	poll.True(t, wait, "the leader's writes are acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) > 10
	})

	cut := time.Now()
	c.Isolate(member)
	rest := others(rs, old)
	next := waitLeader(t, rest, "a leader on the majority side")
	_, _, began, _ := next.term()
	t.Logf("takeover after the leader's etcd member was cut off: %s (session TTL %s)", began.Sub(cut).Round(time.Millisecond), testTTL)
	poll.True(t, wait, "the cut-off leader steps down", func() bool { return !old.el.IsLeader() })
	if ls := leaders(rs); len(ls) != 1 || ls[0] != next {
		t.Fatalf("leaders while partitioned: %v", ls)
	}
	poll.True(t, wait, "the new leader's writes are acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acked[len(acked)-1].by == next.name
	})

	c.Heal()
	// The old replica rejoins as a follower; the new leader keeps leading.
	poll.True(t, wait, "the healed replica names the new leader", func() bool { return old.el.Leader() == next.name })
	if ls := leaders(rs); len(ls) != 1 || ls[0] != next {
		t.Fatalf("leaders after healing: %v", ls)
	}
	stop()
	wg.Wait()

	slices.SortFunc(acked, func(a, b write) int { return int(a.at - b.at) })
	seen := map[int64]bool{}
	for i, w := range acked {
		if i > 0 && acked[i-1].rev == w.rev {
			continue
		}
		if seen[w.rev] {
			t.Fatalf("writes of term %d (%s) resumed after another term's at revision %d", w.rev, w.by, w.at)
		}
		if i > 0 && w.rev < acked[i-1].rev {
			t.Fatalf("an older term (%d, %s) wrote after a newer one (%d)", w.rev, w.by, acked[i-1].rev)
		}
		seen[w.rev] = true
	}
	if len(seen) < 2 {
		t.Fatalf("writes of %d terms, want the old and the new leader's", len(seen))
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
