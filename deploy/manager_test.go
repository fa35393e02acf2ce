package deploy_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/internal/etcdtest"
)

// target records what was deployed where; the Marathon side is exercised
// end to end in cmd/garrison (TestPushToProduction).
type target struct {
	mu       sync.Mutex
	deployed map[string]string
}

func (t *target) Deploy(_ context.Context, id string, _ map[string]any, image string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deployed[id] = image
	return nil
}
func (t *target) Destroy(_ context.Context, id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.deployed, id)
	return nil
}
func (t *target) Endpoint(context.Context, string) (string, error) { return "127.0.0.1:1", nil }

func TestPromotionRulesAndRollback(t *testing.T) {
	store := deploy.NewStore(etcdtest.New(t).Client(t))
	tg := &target{deployed: map[string]string{}}
	m := deploy.NewManager(store, tg)
	ctx := context.Background()
	envs := []string{"alpha", "qa", "production"}
	for i, v := range []string{"1-aaa", "2-bbb", "3-ccc"} {
		if err := m.Record(ctx, deploy.Release{App: "/ktv/account", Version: v, Image: "reg/ktv/account:" + v, Passed: v != "3-ccc",
			Environments: envs, Created: time.Unix(int64(i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(err error, want string) {
		t.Helper()
		if !deploy.IsRefused(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want a refusal saying %q", err, want)
		}
	}
	refused(m.Promote(ctx, "/ktv/account", "1-aaa", "production", "lin", io.Discard), "has not been in qa yet")
	refused(m.Promote(ctx, "/ktv/account", "3-ccc", "qa", "lin", io.Discard), "failed its tests")
	refused(m.Promote(ctx, "/ktv/account", "1-aaa", "staging", "lin", io.Discard), "not an environment")
	refused(m.Promote(ctx, "/ktv/account", "1-aaa", "alpha", "lin", io.Discard), "not an environment")
	if err := m.Promote(ctx, "/ktv/account", "9-zzz", "qa", "lin", io.Discard); !strings.Contains(err.Error(), "no such release") {
		t.Errorf("unknown release: %v", err)
	}
	_, err := m.Rollback(ctx, "/ktv/account", "production", "", "lin", io.Discard)
	refused(err, "no earlier release")
	for _, v := range []string{"1-aaa", "2-bbb"} {
		for _, env := range []string{"qa", "production"} {
			if err := m.Promote(ctx, "/ktv/account", v, env, "lin", io.Discard); err != nil {
				t.Fatalf("promote %s to %s: %v", v, env, err)
			}
		}
	}
	if tg.deployed["/ktv/account"] != "reg/ktv/account:2-bbb" || tg.deployed["/qa/ktv/account"] != "reg/ktv/account:2-bbb" {
		t.Fatalf("deployed %v", tg.deployed)
	}
	_, err = m.Rollback(ctx, "/ktv/account", "production", "3-ccc", "lin", io.Discard)
	refused(err, "never ran release 3-ccc")
	v, err := m.Rollback(ctx, "/ktv/account", "production", "", "lin", io.Discard)
	if err != nil || v != "1-aaa" || tg.deployed["/ktv/account"] != "reg/ktv/account:1-aaa" {
		t.Fatalf("rollback: %s %v %v", v, err, tg.deployed)
	}
	e, _ := store.Environment(ctx, "production", "/ktv/account")
	if e.Current != "1-aaa" || len(e.History) != 3 || !e.History[2].Rollback || e.History[0].By != "lin" {
		t.Errorf("production: %+v", e)
	}
	rs, _ := store.List(ctx, "/ktv/account")
	if len(rs) != 3 || rs[0].Version != "3-ccc" {
		t.Errorf("releases newest first: %+v", rs)
	}
	if deploy.AppID("production", "/ktv/account") != "/ktv/account" || deploy.AppID("qa", "/ktv/account") != "/qa/ktv/account" ||
		deploy.AlphaID("account.12", "/ktv/account") != "/alpha/account.12/ktv/account" {
		t.Error("app ids")
	}
}

// TestProductionNeedsAnApprovalByAnotherUser: a release entering an
// environment that needs an approval waits for one; its committer's is
// refused as forbidden; another user's is recorded on the release and in
// the environment's history.
func TestProductionNeedsAnApprovalByAnotherUser(t *testing.T) {
	store := deploy.NewStore(etcdtest.New(t).Client(t))
	tg := &target{deployed: map[string]string{}}
	m := deploy.NewManager(store, tg)
	ctx := context.Background()
	const app = "/ktv/account"
	if err := m.Record(ctx, deploy.Release{App: app, Version: "1-aaa", Image: "reg/ktv/account:1-aaa", Passed: true,
		Committer: "Mei <mei@ktv.example>", Environments: []string{"alpha", "qa", "production"}, NeedsApproval: []string{"production"}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Promote(ctx, app, "1-aaa", "qa", "mei", io.Discard); err != nil {
		t.Fatalf("qa needs no approval: %v", err)
	}
	if err := m.Promote(ctx, app, "1-aaa", "production", "lin", io.Discard); !deploy.IsRefused(err) || !strings.Contains(err.Error(), "needs an approval") {
		t.Fatalf("promote without approval: %v", err)
	}
	for _, who := range []string{"mei", "MEI@ktv.example", "Mei", "Mei <mei@ktv.example>", ""} {
		if _, err := m.Approve(ctx, app, "1-aaa", "production", who); !deploy.IsForbidden(err) {
			t.Errorf("approval by committer %q: %v, want forbidden", who, err)
		}
	}
	if _, err := m.Approve(ctx, app, "1-aaa", "qa", "lin"); !deploy.IsRefused(err) || !strings.Contains(err.Error(), "needs no approval") {
		t.Errorf("approval for qa: %v", err)
	}
	r, err := m.Approve(ctx, app, "1-aaa", "production", "lin")
	if err != nil || len(r.Approvals) != 1 || r.Approvals[0].By != "lin" || r.Approvals[0].Environment != "production" {
		t.Fatalf("approve: %+v %v", r, err)
	}
	if _, err := m.Approve(ctx, app, "1-aaa", "production", "kai"); !deploy.IsRefused(err) || !strings.Contains(err.Error(), "already approved") {
		t.Errorf("second approval: %v", err)
	}
	// The committer may promote once another user approved.
	if err := m.Promote(ctx, app, "1-aaa", "production", "mei", io.Discard); err != nil || tg.deployed[app] != "reg/ktv/account:1-aaa" {
		t.Fatalf("promote approved: %v %v", err, tg.deployed)
	}
	e, _ := store.Environment(ctx, "production", app)
	if len(e.History) != 1 || e.History[0].By != "mei" || e.History[0].ApprovedBy != "lin" {
		t.Errorf("production history: %+v", e.History)
	}
	got, _ := store.Get(ctx, app, "1-aaa")
	if len(got.Approvals) != 1 || got.Approvals[0].By != "lin" || got.Approvals[0].At.IsZero() {
		t.Errorf("stored approvals: %+v", got.Approvals)
	}
}
