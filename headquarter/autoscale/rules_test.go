package autoscale_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
)

func TestRulesFromFileStoreAndBadReloadKeepsTheLiveRules(t *testing.T) {
	srv := etcdtest.New(t)
	st := store.New(srv.Client(t))
	m := autoscale.New(autoscale.Config{Target: &memTarget{}})
	reg := prometheus.NewRegistry()
	rules := autoscale.NewRules(m, st, reg, nil)
	file := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(file, []byte("rules:\n  - app: /a\n    min: 1\n    max: 3\n    up: { cpu: 0.8, mem: 0.8 }\n"), 0o600)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- rules.WatchFile(ctx, file, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	poll.Until(t, 5*time.Second, "file rules in force", func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("watching the rules file: %v", err)
		default:
		}
		return len(m.Rules()) == 1, ""
	})
	// A valid edit replaces them; an invalid one is refused.
	os.WriteFile(file, []byte("rules:\n  - app: /a\n    min: 1\n    max: 3\n    up: { cpu: 0.8, mem: 0.8 }\n  - app: /b\n    min: 1\n    max: 2\n    up: { qps: 10, cpu: 0.5 }\n"), 0o600)
	poll.Until(t, 5*time.Second, "edited rules in force", func() (bool, string) { return len(m.Rules()) == 2, "" })
	os.WriteFile(file, []byte("rules:\n  - app: /a\n    min: 9\n    max: 3\n"), 0o600)
	poll.Until(t, 5*time.Second, "the bad edit refused", func() (bool, string) {
		v := gauge(t, reg, "garrison_rules_last_reload_successful")
		return v == 0, fmt.Sprint(v)
	})
	if n := len(m.Rules()); n != 2 {
		t.Fatalf("a bad edit changed the rules in force: %d rules", n)
	}
	// The good document was stored: a fresh manager loads it.
	m2 := autoscale.New(autoscale.Config{Target: &memTarget{}})
	if err := autoscale.NewRules(m2, st, nil, nil).Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(m2.Rules()); n != 2 {
		t.Fatalf("stored rules: %d, want 2", n)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// Issue 10: min: 4, max: 4 through the API scaled an app past what an app
// definition may have. The rules take the same per-app limit.
func TestRulesTakeTheInstanceLimit(t *testing.T) {
	srv := etcdtest.New(t)
	m := autoscale.New(autoscale.Config{Target: &memTarget{}})
	rules := autoscale.NewRules(m, store.New(srv.Client(t)), nil, nil)
	rules.SetInstanceLimit(20)
	if _, err := rules.Put(t.Context(), []byte("rules:\n  - app: /a\n    min: 30\n    max: 30\n    up: { qps: 10 }\n"), "request"); err == nil ||
		!strings.Contains(err.Error(), "rules[0].max: must be at most 20") {
		t.Fatalf("max above the limit: %v", err)
	}
	if len(m.Rules()) != 0 {
		t.Fatalf("refused rules in force: %v", m.Rules())
	}
	if _, err := rules.Put(t.Context(), []byte("rules:\n  - app: /a\n    min: 20\n    max: 20\n    up: { qps: 10 }\n"), "request"); err != nil {
		t.Fatal(err)
	}
}

// Check is what an editor calls as the user types: the same verdict as Put,
// with nothing stored or applied.
func TestRulesCheckAppliesNothing(t *testing.T) {
	srv := etcdtest.New(t)
	st := store.New(srv.Client(t))
	m := autoscale.New(autoscale.Config{Target: &memTarget{}})
	rules := autoscale.NewRules(m, st, nil, nil)
	rules.SetInstanceLimit(10)
	good := []byte("rules:\n  - app: /a\n    min: 1\n    max: 3\n    up: { cpu: 0.8, mem: 0.8 }\n")
	got, err := rules.Check(good, "editor")
	if err != nil || len(got) != 1 || got[0].App != "/a" {
		t.Fatalf("Check(good) = %v, %v", got, err)
	}
	if len(m.Rules()) != 0 || len(rules.Document()) != 0 {
		t.Fatalf("Check applied the rules: %d in force, document %q", len(m.Rules()), rules.Document())
	}
	stored, err := st.Rules(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Data) != 0 {
		t.Fatalf("Check stored the rules: %q", stored.Data)
	}
	// Above the instance limit Put would refuse: so does Check, with the line.
	_, err = rules.Check([]byte("rules:\n  - app: /a\n    min: 1\n    max: 30\n    up: { cpu: 0.8, mem: 0.8 }\n"), "editor")
	if err == nil || !strings.Contains(err.Error(), "editor:4:") || !strings.Contains(err.Error(), "max") {
		t.Fatalf("Check over the instance limit = %v, want a line-4 error on max", err)
	}
}
