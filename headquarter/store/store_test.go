package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
)

func TestCommitIsConditionalAndKeepsVersions(t *testing.T) {
	srv := etcdtest.New(t)
	s := store.New(srv.Client(t))
	ctx := t.Context()
	create := store.Change{
		PutApps:        []store.AppWrite{{ID: "/ktv/account", Version: "2026-01-01T00:00:00.000Z", Data: []byte(`{"v":1}`), Expect: 0}},
		PutDeployments: []store.Record{{Key: "d1", Data: []byte(`{"id":"d1"}`)}},
	}
	if err := s.Commit(ctx, create); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, create); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	app, err := s.App(ctx, "/ktv/account")
	if err != nil || string(app.Data) != `{"v":1}` || app.Revision == 0 {
		t.Fatalf("app: %+v %v", app, err)
	}
	// A stale revision is refused; the current one goes through.
	update := store.Change{PutApps: []store.AppWrite{{ID: "/ktv/account", Version: "2026-01-01T00:00:01.000Z", Data: []byte(`{"v":2}`), Expect: app.Revision - 1}}}
	if err := s.Commit(ctx, update); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	update.PutApps[0].Expect = app.Revision
	update.DeleteDeployments = []string{"d1"}
	if err := s.Commit(ctx, update); err != nil {
		t.Fatal(err)
	}
	versions, err := s.Versions(ctx, "/ktv/account")
	if err != nil || len(versions) != 2 || versions[0] != "2026-01-01T00:00:00.000Z" {
		t.Fatalf("versions %v %v", versions, err)
	}
	old, err := s.Version(ctx, "/ktv/account", versions[0])
	if err != nil || string(old.Data) != `{"v":1}` {
		t.Fatalf("old version: %+v %v", old, err)
	}
	if deps, _ := s.Deployments(ctx); len(deps) != 0 {
		t.Fatalf("deployment not removed with the update: %+v", deps)
	}
	apps, err := s.Apps(ctx)
	if err != nil || len(apps) != 1 || apps[0].Key != "/ktv/account" {
		t.Fatalf("apps %+v %v", apps, err)
	}
	if err := s.Commit(ctx, store.Change{DeleteApps: []store.Expect{{ID: "/ktv/account", Expect: -1}}}); err != nil {
		t.Fatal(err)
	}
	if app, _ := s.App(ctx, "/ktv/account"); app.Revision != 0 {
		t.Fatal("app still there after delete")
	}
	if versions, _ := s.Versions(ctx, "/ktv/account"); len(versions) != 0 {
		t.Fatalf("versions left after delete: %v", versions)
	}
}

func TestVersionsArePrunedToMax(t *testing.T) {
	srv := etcdtest.New(t)
	s := store.New(srv.Client(t))
	for i := range store.MaxVersions + 5 {
		v := fmt.Sprintf("2026-01-01T00:%02d:%02d.000Z", i/60, i%60)
		if err := s.Commit(t.Context(), store.Change{PutApps: []store.AppWrite{{ID: "/a", Version: v, Data: []byte("{}"), Expect: -1}}}); err != nil {
			t.Fatal(err)
		}
	}
	versions, err := s.Versions(t.Context(), "/a")
	if err != nil || len(versions) != store.MaxVersions || versions[0] != "2026-01-01T00:00:05.000Z" {
		t.Fatalf("kept %d versions starting %v: %v", len(versions), versions[:1], err)
	}
}

func TestTasks(t *testing.T) {
	srv := etcdtest.New(t)
	s := store.New(srv.Client(t))
	ctx := t.Context()
	if err := s.PutTask(ctx, "/ktv/account", "ktv_account.abc", []byte(`{"id":"ktv_account.abc"}`)); err != nil {
		t.Fatal(err)
	}
	tasks, err := s.Tasks(ctx)
	if err != nil || len(tasks) != 1 || tasks[0].Key != "ktv_account.abc" {
		t.Fatalf("tasks %+v %v", tasks, err)
	}
	if err := s.DeleteTask(ctx, "/ktv/account", "ktv_account.abc"); err != nil {
		t.Fatal(err)
	}
	if tasks, _ := s.Tasks(ctx); len(tasks) != 0 {
		t.Fatalf("task left: %+v", tasks)
	}
}

func TestDecisionsAreBoundedAndNewestFirst(t *testing.T) {
	srv := etcdtest.New(t)
	s := store.New(srv.Client(t))
	ctx := t.Context()
	for i := range store.MaxDecisions + 3 {
		if err := s.PutDecision(ctx, "/a", fmt.Sprintf("%06d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	s.PutDecision(ctx, "/b", "999999", []byte("b"))
	all, err := s.Decisions(ctx, "/a", 0)
	if err != nil || len(all) != store.MaxDecisions || all[0].Key != fmt.Sprintf("%06d", store.MaxDecisions+2) {
		t.Fatalf("kept %d, newest %v: %v", len(all), all[:1], err)
	}
	any, err := s.Decisions(ctx, "", 2)
	if err != nil || len(any) != 2 || string(any[0].Data) != "b" {
		t.Fatalf("across apps: %+v %v", any, err)
	}
	if err := s.PutRules(ctx, []byte("rules: []\n")); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Rules(ctx); err != nil || string(r.Data) != "rules: []\n" {
		t.Fatalf("rules %+v %v", r, err)
	}
}

func TestClusterIDIsCreatedOnceAndShared(t *testing.T) {
	srv := etcdtest.New(t)
	a, err := store.New(srv.Client(t)).ClusterID(t.Context())
	if err != nil || len(a) != 24 {
		t.Fatalf("first: %q %v", a, err)
	}
	b, err := store.New(srv.Client(t)).ClusterID(t.Context())
	if err != nil || b != a {
		t.Fatalf("second: %q %v, want %q", b, err, a)
	}
}

func TestCommitAtReturnsTheRevisionOfTheWrittenApp(t *testing.T) {
	srv := etcdtest.New(t)
	s := store.New(srv.Client(t))
	rev, err := s.CommitAt(t.Context(), store.Change{PutApps: []store.AppWrite{{ID: "/r", Version: "2026-01-01T00:00:00.000Z", Data: []byte("{}"), Expect: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	if app, err := s.App(t.Context(), "/r"); err != nil || app.Revision != rev {
		t.Fatalf("CommitAt revision %d, stored %d (%v)", rev, app.Revision, err)
	}
}

// failingKV fails every read under a prefix, as a broken connection would
// after a write went through.
type failingKV struct {
	clientv3.KV
	prefix string
}

// Do is what etcd's namespace wrapper calls for a read.
func (f failingKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	if op.IsGet() && strings.HasPrefix(string(op.KeyBytes()), f.prefix) {
		return clientv3.OpResponse{}, errors.New("injected: connection lost")
	}
	return f.KV.Do(ctx, op)
}

// A failure after the transaction committed (pruning versions) does not
// report the commit as failed: the caller would keep the old state while
// etcd holds the new one.
func TestCommitSucceedsWhenPruningFails(t *testing.T) {
	srv := etcdtest.New(t)
	cli := srv.Client(t)
	s := store.New(failingKV{KV: cli, prefix: store.Prefix + "versions/"})
	rev, err := s.CommitAt(t.Context(), store.Change{PutApps: []store.AppWrite{{ID: "/a", Version: "2026-01-01T00:00:00.000Z", Data: []byte("{}"), Expect: 0}}})
	if err != nil || rev == 0 {
		t.Fatalf("commit whose pruning failed: rev %d, %v", rev, err)
	}
	rec, err := store.New(cli).App(t.Context(), "/a")
	if err != nil || rec.Revision != rev {
		t.Fatalf("stored app %+v, %v; want revision %d", rec, err, rev)
	}
}
