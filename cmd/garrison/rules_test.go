package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("rules:\n  - app: /ktv/account\n    min: 2\n    max: 20\n    up: { qps: 400, cpu: 0.75 }\n    down: { qps: 100, cpu: 0.25 }\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - app: /ktv/account\n    min: 5\n    max: 2\n    up: { qps: 400, cpu: 1.75x }\n    bogus: 1\n"), 0o600)

	p := startGarrison(t, "rules", "check", good)
	if err := p.waitExit(t, 10*time.Second); err != nil {
		t.Fatalf("valid file: %v\n%s", err, p.stderr.String())
	}
	p = startGarrison(t, "rules", "check", good, bad)
	err := p.waitExit(t, 10*time.Second)
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("invalid file: exit %v, want 1", err)
	}
	out := p.stderr.String()
	for _, want := range []string{bad + ":6:5: rules[0]", "bogus", bad + ":5:", "rules[0].up.cpu", "1 of 2 files invalid"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, good+":") {
		t.Errorf("the valid file was reported:\n%s", out)
	}
}
