package leader

import (
	"context"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotLeader means a fenced write was refused because the term it was
// made in is over: the election key it was won with is gone (lease expired
// or revoked, resigned, deleted by an abdication) or was re-created.
var ErrNotLeader = errors.New("leader: not the leader")

// notLeaderKey is compared by the zero Fence; no key has a create revision
// below 0, so the compare never holds.
const notLeaderKey = "\x00garrison-not-leader"

// Fence makes etcd writes conditional on one term of leadership: the
// election key this replica won with still exists with the create revision
// it had when the term began. etcd checks it in the same transaction as the
// write, so a former leader that was paused (or cut off) while another
// replica took over cannot change anything once it resumes.
//
// The zero Fence belongs to no term and refuses every write. A Fence is a
// value; copy it freely.
type Fence struct {
	kv  clientv3.KV
	key string // the election key, as stored
	rel string // the key as compared: relative to a namespace (Under)
	rev int64  // its create revision when the term began
	// end ends the term in this replica at once when a fenced write or a
	// Check finds it over in etcd, before the Elector's own watch does.
	end context.CancelCauseFunc
}

// errFencedOut ends a term that a refused write found over.
var errFencedOut = errors.New("a fenced write found the term over")

// Key returns the election key the fence compares, as stored in etcd.
func (f Fence) Key() string { return f.key }

// Rev returns the create revision of the election key the term holds.
func (f Fence) Rev() int64 { return f.rev }

// Cmps returns the compares to add to a write transaction's If so that it
// applies only while the term lasts. When the transaction's Succeeded is
// false, call Check to tell a lost term (ErrNotLeader) from the failure of
// the caller's own compares.
func (f Fence) Cmps() []clientv3.Cmp {
	if f.key == "" {
		return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(notLeaderKey), "<", 0)}
	}
	return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(f.rel), "=", f.rev)}
}

// Check reads the election key and returns nil while the term lasts, an
// error wrapping ErrNotLeader once it is over, or etcd's error. A term never
// comes back, so a Check that finds it over after a failed fenced
// transaction proves the fence (not the caller's compares) failed it.
func (f Fence) Check(ctx context.Context) error {
	if f.key == "" {
		return fmt.Errorf("%w: no term", ErrNotLeader)
	}
	resp, err := f.kv.Get(ctx, f.key)
	if err != nil {
		return fmt.Errorf("read election key %s: %w", f.key, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != f.rev {
		return f.lost()
	}
	return nil
}

// Under returns the fence for transactions sent through a KV wrapped by
// namespace.NewKV(kv, prefix), which prefixes every key it is given: the
// compare then names the election key without prefix. The election key
// must lie under prefix.
func (f Fence) Under(prefix string) (Fence, error) {
	if f.key == "" {
		return f, nil
	}
	if !strings.HasPrefix(f.key, prefix) || len(f.key) == len(prefix) {
		return Fence{}, fmt.Errorf("election key %s is not under namespace %q", f.key, prefix)
	}
	f.rel = f.key[len(prefix):]
	return f, nil
}

// Do applies ops in one transaction on the fence's own client (keys as
// stored, no namespace), only while the term lasts; otherwise it returns
// an error wrapping ErrNotLeader and changes nothing.
func (f Fence) Do(ctx context.Context, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	if f.key == "" {
		return nil, fmt.Errorf("%w: no term", ErrNotLeader)
	}
	resp, err := f.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(f.key), "=", f.rev)).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("fenced write: %w", err)
	}
	if !resp.Succeeded {
		return nil, f.lost()
	}
	return resp, nil
}

func (f Fence) lost() error {
	if f.end != nil {
		f.end(errFencedOut)
	}
	return fmt.Errorf("%w: election key %s (create revision %d) is gone", ErrNotLeader, f.key, f.rev)
}
