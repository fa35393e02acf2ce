package autoscale_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/headquarter/rulefmt"
	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	scoutprom "github.com/garrisonhq/garrison/scout/prometheus"
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

// Issue 11: a query that does not parse was accepted and failed every
// evaluation. With the sources' checks set, Check and Put refuse it with
// its line and field, for a metric read from Prometheus (named in the rule
// or the default source) and not for one read elsewhere; the document
// stored before is still loaded at start.
func TestRulesRefuseAQueryItsSourceCannotParse(t *testing.T) {
	srv := etcdtest.New(t)
	st := store.New(srv.Client(t))
	bad := "rules:\n  - app: /a\n    max: 3\n    up: { qps: 10 }\n    queries: { qps: 'sum(rate(x[{{.Window}}])' }\n"
	// Stored by a garrison without the check.
	if err := st.PutRules(t.Context(), []byte(bad)); err != nil {
		t.Fatal(err)
	}
	m := autoscale.New(autoscale.Config{Target: &memTarget{}})
	rules := autoscale.NewRules(m, st, nil, nil)
	rules.SetQueryChecks("prometheus", map[string]rulefmt.QueryCheck{"prometheus": scoutprom.CheckSyntax})
	if err := rules.Load(t.Context()); err != nil || len(m.Rules()) != 1 {
		t.Fatalf("stored document: %v, %d rules in force", err, len(m.Rules()))
	}
	for _, put := range []func() error{
		func() error { _, err := rules.Check([]byte(bad), "rules.yaml"); return err },
		func() error { _, err := rules.Put(t.Context(), []byte(bad), "rules.yaml"); return err },
	} {
		err := put()
		var list rulefmt.Errors
		if !errors.As(err, &list) || len(list) != 1 || list[0].Line != 5 || list[0].Column != 21 ||
			list[0].Path != "rules[0].queries.qps" || !strings.Contains(list[0].Msg, "unclosed left parenthesis") {
			t.Fatalf("%v", err)
		}
	}
	// The local source's query is a counter-name pattern: not PromQL.
	local := strings.Replace(bad, "    queries:", "    sources: { qps: local }\n    queries:", 1)
	if _, err := rules.Put(t.Context(), []byte(local), "rules.yaml"); err != nil {
		t.Fatal(err)
	}
	rules.SetQueryChecks("local", map[string]rulefmt.QueryCheck{"prometheus": scoutprom.CheckSyntax})
	if _, err := rules.Check([]byte(bad), "rules.yaml"); err != nil {
		t.Fatal(err)
	}
}
