package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/promtest"
)

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("rules:\n  - app: /ktv/account\n    min: 2\n    max: 20\n    up: { qps: 400, cpu: 0.75 }\n    down: { qps: 100, cpu: 0.25 }\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - app: /ktv/account\n    min: 5\n    max: 2\n    up: { qps: 400, cpu: 1.75x }\n    bogus: 1\n"), 0o600)

	p := startGarrison(t, "rules", "check", good)
	if err := p.WaitExit(t, 10*time.Second); err != nil {
		t.Fatalf("valid file: %v\n%s", err, p.Stderr())
	}
	p = startGarrison(t, "rules", "check", good, bad)
	err := p.WaitExit(t, 10*time.Second)
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("invalid file: exit %v, want 1", err)
	}
	out := p.Stderr()
	for _, want := range []string{bad + ":6:5: rules[0]", "bogus", bad + ":5:", "rules[0].up.cpu", "1 of 2 files invalid"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, good+":") {
		t.Errorf("the valid file was reported:\n%s", out)
	}
}

// Issue 11: `rules check` accepted a query that does not parse, and the
// error then came every evaluation. The queries of metrics read from
// Prometheus are parsed offline with Prometheus' own parser; a refusal
// names file, line, column and field. With --prometheus, that Prometheus
// (Debian's 2.42) parses them too: it refuses a quoted UTF-8 metric name,
// which the 3.x parser garrison links accepts.
func TestRulesCheckParsesPromQL(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	os.WriteFile(file, []byte(`rules:
  - app: /a
    max: 8
    up: { qps: 10 }
    queries:
      qps:
        value: 'sum(irate(http_requests_total{app="{{.App}}"}[{{.Window}}]))'
        instances: 'count(irate(http_requests_total{app="{{.App}}"}[{{.Window}}])'
  - app: /b
    max: 8
    up: { qps: 10 }
    queries: { qps: 'sum(rate(x[{{.Window}}]))' }
`), 0o600)
	check := func(args ...string) string {
		t.Helper()
		p := startGarrison(t, append([]string{"rules", "check"}, args...)...)
		err := p.WaitExit(t, 30*time.Second)
		if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 {
			t.Fatalf("rules check %v: exit %v, want 1\n%s", args, err, p.Stderr())
		}
		return p.Stderr()
	}
	refused := func(out string) {
		t.Helper()
		if !strings.Contains(out, file+":8:20: rules[0].queries.qps.instances: PromQL") || !strings.Contains(out, "unclosed left parenthesis") ||
			strings.Contains(out, "rules[1]") || strings.Contains(out, "rules[0].queries.qps.value") {
			t.Fatalf("output:\n%s", out)
		}
	}
	// Offline: the default source is Prometheus...
	refused(check("--metrics-source", "prometheus", file))
	// ...or the rule names it.
	named := filepath.Join(dir, "named.yaml")
	data, _ := os.ReadFile(file)
	os.WriteFile(named, []byte(strings.Replace(string(data), "    up: { qps: 10 }\n", "    up: { qps: 10 }\n    sources: { qps: prometheus }\n", 1)), 0o600)
	if out := check(named); !strings.Contains(out, named+":9:20: rules[0].queries.qps.instances: PromQL") {
		t.Fatalf("output:\n%s", out)
	}
	// The local source's query is a counter-name pattern, not PromQL.
	p := startGarrison(t, "rules", "check", file)
	if err := p.WaitExit(t, 10*time.Second); err != nil {
		t.Fatalf("with the local source: %v\n%s", err, p.Stderr())
	}

	// A Prometheus server: the default source is then prometheus.
	prom := promtest.New(t, promtest.Config{})
	refused(check("--prometheus", prom.URL, file))
	utf8 := filepath.Join(dir, "utf8.yaml")
	os.WriteFile(utf8, []byte(`rules:
  - app: /a
    max: 8
    up: { qps: 10 }
    queries: { qps: 'sum(irate({"http.requests_total", app="{{.App}}"}[{{.Window}}]))' }
`), 0o600)
	p = startGarrison(t, "rules", "check", "--metrics-source", "prometheus", utf8)
	if err := p.WaitExit(t, 10*time.Second); err != nil {
		t.Fatalf("offline, a query the 3.x parser accepts: %v\n%s", err, p.Stderr())
	}
	if out := check("--prometheus", prom.URL, utf8); !strings.Contains(out, utf8+":5:21: rules[0].queries.qps: PromQL") {
		t.Fatalf("output:\n%s", out)
	}
}
