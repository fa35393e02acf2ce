// Package store keeps headquarter's desired state in etcd, the system of
// record: app definitions with every version, deployments and task records.
// Each API write that changes several of them is one etcd transaction, so a
// crash of garrison never leaves half of a change behind, and a write is
// acknowledged only once etcd has committed it.
//
// Layout under /garrison/:
//
//	apps/<key>                  current app definition (JSON)
//	versions/<key>/<version>    every stored version of it
//	deployments/<id>            running deployments
//	tasks/<key>/<task-id>       tasks garrison launched, written before launch
//
// where <key> is the app id without its leading slash and with "/" written
// as "_" (Marathon ids cannot contain "_", so this cannot collide).
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"

	"github.com/garrisonhq/garrison/headquarter/leader"
)

// Prefix is where headquarter's state lives in etcd.
const Prefix = "/garrison/"

// MaxVersions is how many versions of an app are kept, as Marathon's
// zk_max_versions default.
const MaxVersions = 50

// ErrConflict means a compare of the transaction failed: someone else
// changed the app (or created it) since the caller read it.
var ErrConflict = errors.New("store: concurrent change")

// ErrNotLeader means a fenced store refused a write: the leadership term
// it was made for is over (leader.ErrNotLeader).
var ErrNotLeader = leader.ErrNotLeader

// Store reads and writes headquarter's state.
type Store struct {
	kv  clientv3.KV // namespaced
	raw clientv3.KV // as given to New
	// fence guards the writes of a leader's view (Fenced); the zero Fence
	// on an unfenced store is never used.
	fence  leader.Fence
	fenced bool
}

// New returns a store over the given etcd KV, rooted at Prefix.
func New(kv clientv3.KV) *Store {
	return &Store{kv: namespace.NewKV(kv, Prefix), raw: kv}
}

// Fenced returns a view of the store whose every write applies only while
// the leadership term of f lasts (leader.Fence.KV): once it is over, each
// write fails with an error wrapping ErrNotLeader, changes nothing, and
// ends the term in this replica. A leader gives this view to what acts for
// one term (scheduler, autoscaler).
func (s *Store) Fenced(f leader.Fence) *Store {
	return &Store{kv: namespace.NewKV(f.KV(s.raw), Prefix), raw: s.raw, fence: f, fenced: true}
}

// Guard returns nil when the store's writes may apply: always for an
// unfenced store; for a fenced one only while its term lasts (one etcd
// read), else an error wrapping ErrNotLeader. Call it right before an
// action etcd cannot fence (a driver's launch or kill).
func (s *Store) Guard(ctx context.Context) error {
	if !s.fenced {
		return nil
	}
	return s.fence.Check(ctx)
}

// Record is a stored value with the revision it was last changed at, which
// a later conditional write compares against.
type Record struct {
	Key      string // the app id, deployment id or task id
	Data     []byte
	Revision int64 // etcd ModRevision; 0 when absent
}

// AppKey turns an app id into its key segment.
func AppKey(appID string) string {
	return strings.ReplaceAll(strings.TrimPrefix(appID, "/"), "/", "_")
}

func appKeyToID(key string) string { return "/" + strings.ReplaceAll(key, "_", "/") }

// Apps returns every current app definition, sorted by id.
func (s *Store) Apps(ctx context.Context) ([]Record, error) {
	return s.list(ctx, "apps/", func(k string) string { return appKeyToID(k) })
}

// App returns one app; Revision is 0 when it does not exist.
func (s *Store) App(ctx context.Context, appID string) (Record, error) {
	return s.get(ctx, "apps/"+AppKey(appID), appID)
}

// Versions lists the stored versions of an app, oldest first.
func (s *Store) Versions(ctx context.Context, appID string) ([]string, error) {
	resp, err := s.kv.Get(ctx, "versions/"+AppKey(appID)+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", appID, err)
	}
	out := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key[strings.LastIndexByte(string(kv.Key), '/')+1:]))
	}
	return out, nil
}

// Version returns one stored version of an app; Revision 0 when absent.
func (s *Store) Version(ctx context.Context, appID, version string) (Record, error) {
	return s.get(ctx, "versions/"+AppKey(appID)+"/"+version, version)
}

// Deployment returns one deployment record; Revision 0 when absent. After
// a commit whose outcome is unknown (the connection failed), it tells
// whether the deployment written with it was committed.
func (s *Store) Deployment(ctx context.Context, id string) (Record, error) {
	return s.get(ctx, "deployments/"+id, id)
}

// Deployments returns every running deployment.
func (s *Store) Deployments(ctx context.Context) ([]Record, error) {
	return s.list(ctx, "deployments/", func(k string) string { return k })
}

// Tasks returns every task record.
func (s *Store) Tasks(ctx context.Context) ([]Record, error) {
	return s.list(ctx, "tasks/", func(k string) string { return k[strings.IndexByte(k, '/')+1:] })
}

// PutTask records a task; written before the task is launched, so that a
// restarted garrison knows about every task it may have started.
func (s *Store) PutTask(ctx context.Context, appID, taskID string, data []byte) error {
	if _, err := s.kv.Put(ctx, "tasks/"+AppKey(appID)+"/"+taskID, string(data)); err != nil {
		return fmt.Errorf("record task %s: %w", taskID, err)
	}
	return nil
}

// DeleteTask forgets a task that is gone.
func (s *Store) DeleteTask(ctx context.Context, appID, taskID string) error {
	if _, err := s.kv.Delete(ctx, "tasks/"+AppKey(appID)+"/"+taskID); err != nil {
		return fmt.Errorf("forget task %s: %w", taskID, err)
	}
	return nil
}

// Change is a set of writes applied all together or not at all.
type Change struct {
	// Apps to create or replace. Each also stores its version.
	PutApps []AppWrite
	// Apps to delete, with their versions and task records.
	DeleteApps []Expect
	// Deployments to write and to remove.
	PutDeployments    []Record
	DeleteDeployments []string
}

// AppWrite is one app definition to store.
type AppWrite struct {
	ID      string
	Version string
	Data    []byte
	// Expect is the revision the caller read: 0 means the app must not
	// exist yet, -1 means do not compare.
	Expect int64
}

// Expect names an app and the revision the caller read (-1: any).
type Expect struct {
	ID     string
	Expect int64
}

// Commit applies the change in one transaction. It returns ErrConflict when
// an app was changed since the caller read it.
func (s *Store) Commit(ctx context.Context, c Change) error {
	_, err := s.CommitAt(ctx, c)
	return err
}

// CommitAt is Commit that also returns the revision the change was
// committed at: the ModRevision of every key it wrote, which a later
// conditional write compares against.
func (s *Store) CommitAt(ctx context.Context, c Change) (int64, error) {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	compare := func(appID string, rev int64) {
		if rev >= 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision("apps/"+AppKey(appID)), "=", rev))
		}
	}
	for _, a := range c.PutApps {
		compare(a.ID, a.Expect)
		ops = append(ops,
			clientv3.OpPut("apps/"+AppKey(a.ID), string(a.Data)),
			clientv3.OpPut("versions/"+AppKey(a.ID)+"/"+a.Version, string(a.Data)))
	}
	for _, a := range c.DeleteApps {
		compare(a.ID, a.Expect)
		ops = append(ops,
			clientv3.OpDelete("apps/"+AppKey(a.ID)),
			clientv3.OpDelete("versions/"+AppKey(a.ID)+"/", clientv3.WithPrefix()))
	}
	for _, d := range c.PutDeployments {
		ops = append(ops, clientv3.OpPut("deployments/"+d.Key, string(d.Data)))
	}
	for _, id := range c.DeleteDeployments {
		ops = append(ops, clientv3.OpDelete("deployments/"+id))
	}
	resp, err := s.kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, fmt.Errorf("commit change: %w", err)
	}
	if !resp.Succeeded {
		return 0, ErrConflict
	}
	// Committed: a failure from here on must not be reported as a failed
	// commit (the caller would keep the old state while etcd holds the new
	// one). Pruning is best effort; the next write of the app prunes again.
	for _, a := range c.PutApps {
		if err := s.pruneVersions(ctx, a.ID); err != nil {
			slog.Warn("prune app versions (kept for the next write to prune)", "app", a.ID, "error", err)
		}
	}
	return resp.Header.Revision, nil
}

// pruneVersions keeps the newest MaxVersions versions of an app. Versions
// are ISO-8601 timestamps, so key order is time order.
func (s *Store) pruneVersions(ctx context.Context, appID string) error {
	versions, err := s.Versions(ctx, appID)
	if err != nil || len(versions) <= MaxVersions {
		return err
	}
	for _, v := range versions[:len(versions)-MaxVersions] {
		if _, err := s.kv.Delete(ctx, "versions/"+AppKey(appID)+"/"+v); err != nil {
			return fmt.Errorf("prune version %s of %s: %w", v, appID, err)
		}
	}
	return nil
}

func (s *Store) get(ctx context.Context, key, name string) (Record, error) {
	resp, err := s.kv.Get(ctx, key)
	if err != nil {
		return Record{}, fmt.Errorf("read %s: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return Record{Key: name}, nil
	}
	return Record{Key: name, Data: resp.Kvs[0].Value, Revision: resp.Kvs[0].ModRevision}, nil
}

func (s *Store) list(ctx context.Context, prefix string, name func(string) string) ([]Record, error) {
	resp, err := s.kv.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", strings.TrimSuffix(prefix, "/"), err)
	}
	out := make([]Record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, Record{Key: name(strings.TrimPrefix(string(kv.Key), prefix)), Data: kv.Value, Revision: kv.ModRevision})
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Rules returns the autoscale rules document (YAML) and its revision; nil
// when none is stored.
func (s *Store) Rules(ctx context.Context) (Record, error) {
	return s.get(ctx, "rules", "rules")
}

// PutRules stores the autoscale rules document.
func (s *Store) PutRules(ctx context.Context, data []byte) error {
	if _, err := s.kv.Put(ctx, "rules", string(data)); err != nil {
		return fmt.Errorf("store rules: %w", err)
	}
	return nil
}

// MaxDecisions is how many autoscale decisions are kept per app.
const MaxDecisions = 200

// PutDecision records an autoscale decision under its app, keyed by a
// sortable id (a timestamp), and drops the oldest beyond MaxDecisions.
func (s *Store) PutDecision(ctx context.Context, appID, id string, data []byte) error {
	prefix := "decisions/" + AppKey(appID) + "/"
	if _, err := s.kv.Put(ctx, prefix+id, string(data)); err != nil {
		return fmt.Errorf("record decision for %s: %w", appID, err)
	}
	resp, err := s.kv.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("count decisions of %s: %w", appID, err)
	}
	if extra := resp.Count - MaxDecisions; extra > 0 {
		old, err := s.kv.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(extra))
		if err != nil {
			return fmt.Errorf("list old decisions of %s: %w", appID, err)
		}
		for _, kv := range old.Kvs {
			if _, err := s.kv.Delete(ctx, string(kv.Key)); err != nil {
				return fmt.Errorf("drop old decision of %s: %w", appID, err)
			}
		}
	}
	return nil
}

// Decisions returns the newest decisions of an app (every app when appID is
// ""), newest first, at most limit.
func (s *Store) Decisions(ctx context.Context, appID string, limit int) ([]Record, error) {
	prefix := "decisions/"
	if appID != "" {
		prefix += AppKey(appID) + "/"
	}
	resp, err := s.kv.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list decisions: %w", err)
	}
	out := make([]Record, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		out = append(out, Record{Key: key[strings.LastIndexByte(key, '/')+1:], Data: kv.Value, Revision: kv.ModRevision})
	}
	// Ids are timestamps: newest first across apps too.
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(b.Key, a.Key) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ClusterID names the garrison this etcd holds: created once, at first use,
// and the same for every headquarter and agent that shares the etcd. It
// keeps garrisons that share a Docker engine out of each other's containers.
func (s *Store) ClusterID(ctx context.Context) (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("cluster id: %w", err)
	}
	fresh := hex.EncodeToString(b[:])
	resp, err := s.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision("cluster-id"), "=", 0)).
		Then(clientv3.OpPut("cluster-id", fresh)).
		Else(clientv3.OpGet("cluster-id")).Commit()
	if err != nil {
		return "", fmt.Errorf("cluster id: %w", err)
	}
	if resp.Succeeded {
		return fresh, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return "", errors.New("cluster id: vanished while read")
	}
	return string(kvs[0].Value), nil
}
