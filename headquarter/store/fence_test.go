package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// term is one replica's latest term as its Elector handed it over.
type term struct {
	fence leader.Fence
	ctx   context.Context
}

// elect runs an Elector for name and returns the terms it wins.
func elect(t testing.TB, cli *clientv3.Client, name string) <-chan term {
	t.Helper()
	el, err := leader.New(leader.Config{Client: cli, Name: name, TTL: 2 * time.Second, Pause: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	terms := make(chan term, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		el.Run(ctx, func(ctx context.Context, f leader.Fence) {
			terms <- term{f, ctx}
			<-ctx.Done()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return terms
}

// dump is everything under /garrison/ but the election keys.
func dump(t *testing.T, cli *clientv3.Client) []string {
	t.Helper()
	resp, err := cli.Get(t.Context(), store.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		if !strings.HasPrefix(string(kv.Key), leader.DefaultPrefix+"/") {
			out = append(out, fmt.Sprintf("%s=%s@%d", kv.Key, kv.Value, kv.ModRevision))
		}
	}
	return out
}

// TestFencedStoreRefusesAFormerLeader runs two leaders in-process on one
// etcd. The first one's term is ended behind its back (its lease revoked,
// as etcd expires the lease of a paused leader) and the second one takes
// over; the first one then writes with the store view of its term, as a
// resumed process would: every kind of write fails with ErrNotLeader,
// nothing changes in etcd, while the new leader's view writes.
func TestFencedStoreRefusesAFormerLeader(t *testing.T) {
	srv := etcdtest.New(t)
	admin := srv.Client(t)
	ctx := t.Context()
	base := store.New(admin)
	id, err := base.ClusterID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := base.Commit(ctx, store.Change{PutApps: []store.AppWrite{{ID: "/web", Version: "v1", Data: []byte(`{"v":1}`), Expect: 0}}}); err != nil {
		t.Fatal(err)
	}

	aTerms := elect(t, srv.Client(t), "a:8080")
	var a term
	select {
	case a = <-aTerms:
	case <-time.After(time.Minute):
		t.Fatal("a never leads")
	}
	old := base.Fenced(a.fence)
	if err := old.Guard(ctx); err != nil {
		t.Fatalf("guard of a live term: %v", err)
	}
	if err := old.PutTask(ctx, "/web", "web.1", []byte(`{"id":"web.1"}`)); err != nil {
		t.Fatalf("leader's fenced write: %v", err)
	}
	app, err := old.App(ctx, "/web")
	if err != nil {
		t.Fatal(err)
	}
	// The caller's own compare still fails as a conflict under a live term.
	stale := store.Change{PutApps: []store.AppWrite{{ID: "/web", Version: "v2", Data: []byte(`{"v":2}`), Expect: app.Revision - 1}}}
	if err := old.Commit(ctx, stale); !errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("stale commit under a live term: %v, want ErrConflict", err)
	}

	bTerms := elect(t, srv.Client(t), "b:8080")
	// a pauses: its lease expires (here: is revoked) while it does nothing.
	get, err := admin.Get(ctx, a.fence.Key())
	if err != nil || len(get.Kvs) != 1 {
		t.Fatalf("read a's election key: %v %v", get, err)
	}
	if _, err := admin.Revoke(ctx, clientv3.LeaseID(get.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	var b term
	select {
	case b = <-bTerms:
	case <-time.After(time.Minute):
		t.Fatal("b never takes over")
	}
	before := dump(t, admin)

	// a resumes and acts with what it had.
	writes := map[string]func() error{
		"PutTask":    func() error { return old.PutTask(ctx, "/web", "web.2", []byte(`{}`)) },
		"DeleteTask": func() error { return old.DeleteTask(ctx, "/web", "web.1") },
		"Commit": func() error {
			return old.Commit(ctx, store.Change{PutApps: []store.AppWrite{{ID: "/web", Version: "v3", Data: []byte(`{"v":3}`), Expect: app.Revision}},
				PutDeployments: []store.Record{{Key: "d1", Data: []byte(`{}`)}}})
		},
		"Commit delete": func() error {
			return old.Commit(ctx, store.Change{DeleteApps: []store.Expect{{ID: "/web", Expect: -1}}})
		},
		"PutDecision": func() error { return old.PutDecision(ctx, "/web", "0001", []byte(`{}`)) },
		"PutRules":    func() error { return old.PutRules(ctx, []byte("rules: []")) },
		"Guard":       func() error { return old.Guard(ctx) },
		"ClusterID": func() error {
			_, err := old.ClusterID(ctx)
			return err
		},
	}
	for name, write := range writes {
		err := write()
		if !errors.Is(err, store.ErrNotLeader) || !strings.Contains(err.Error(), "not the leader") {
			t.Errorf("%s by the former leader: %v, want an error wrapping ErrNotLeader", name, err)
		}
	}
	if after := dump(t, admin); !slices.Equal(before, after) {
		t.Errorf("the former leader's refused writes changed etcd:\nbefore %v\nafter  %v", before, after)
	}
	// The refused write ended a's term in a itself.
	poll.True(t, time.Minute, "a's term ends", func() bool { return a.ctx.Err() != nil })

	// The new leader's view writes; a transaction's Else branch (here a
	// read) keeps its meaning inside the fence's.
	cur := base.Fenced(b.fence)
	if got, err := cur.ClusterID(ctx); err != nil || got != id {
		t.Fatalf("cluster id through the new leader's view: %q %v, want %q", got, err, id)
	}
	if err := cur.PutTask(ctx, "/web", "web.3", []byte(`{}`)); err != nil {
		t.Fatalf("new leader's write: %v", err)
	}
	if err := cur.Commit(ctx, store.Change{PutApps: []store.AppWrite{{ID: "/web", Version: "v4", Data: []byte(`{"v":4}`), Expect: app.Revision}}}); err != nil {
		t.Fatalf("new leader's commit: %v", err)
	}
	tasks, err := base.Tasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range tasks {
		ids = append(ids, r.Key)
	}
	if want := []string{"web.1", "web.3"}; !slices.Equal(ids, want) {
		t.Fatalf("task records %v, want %v", ids, want)
	}
}
