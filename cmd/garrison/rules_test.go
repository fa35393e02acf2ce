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
// error then came every evaluation. With --prometheus, that Prometheus
// (Debian's) parses every query; a refusal names file, line, column and
// field.
func TestRulesCheckParsesPromQL(t *testing.T) {
	prom := promtest.New(t, promtest.Config{})
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
	p := startGarrison(t, "rules", "check", "--prometheus", prom.URL, file)
	err := p.WaitExit(t, 30*time.Second)
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1\n%s", err, p.Stderr())
	}
	out := p.Stderr()
	if !strings.Contains(out, file+":8:20: rules[0].queries.qps.instances: PromQL") || !strings.Contains(out, "parse error") ||
		strings.Contains(out, "rules[1]") || strings.Contains(out, "rules[0].queries.qps.value") {
		t.Fatalf("output:\n%s", out)
	}
	// Without the server only the file's own checks run.
	p = startGarrison(t, "rules", "check", file)
	if err := p.WaitExit(t, 10*time.Second); err != nil {
		t.Fatalf("without --prometheus: %v\n%s", err, p.Stderr())
	}
}
