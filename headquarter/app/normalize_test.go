package app

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/normalize/*.golden")

// TestNormalizeGolden expands each testdata/normalize/*.json to Marathon's
// full response shape, service ports assigned, and compares it with the
// .golden file beside it (go test -update rewrites them).
func TestNormalizeGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/normalize/*.json")
	if len(inputs) == 0 {
		t.Fatal("no testdata")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			// Normalize alone: some inputs carry fields Validate refuses
			// (uris, dependencies), whose normalization is still Marathon's.
			a, err := Decode(body)
			if err != nil {
				t.Fatal(err)
			}
			a = Normalize(a)
			if a, err = AssignServicePorts(a, map[int]bool{10000: true}); err != nil {
				t.Fatal(err)
			}
			got := checkGolden(t, strings.TrimSuffix(in, ".json")+".golden", a)
			if again, _ := json.MarshalIndent(Normalize(a), "", "  "); !bytes.Equal(append(again, '\n'), got) {
				t.Error("Normalize is not idempotent")
			}
		})
	}
}

func TestNormalizeDetails(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		check      func(*App) bool
	}{
		{"relative id", `{"id":"prod/web","cmd":"x y"}`, func(a *App) bool { return a.ID == "/prod/web" }},
		{"dotdot relative", `{"id":"a/../b/./c","cmd":"x y"}`, func(a *App) bool { return a.ID == "/b/c" }},
		{"slashes", `{"id":"//a//b/","cmd":"x y"}`, func(a *App) bool { return a.ID == "/a/b" }},
		{"dependency relative to group", `{"id":"/prod/web","cmd":"x y","dependencies":["db","../x","/abs"]}`,
			func(a *App) bool { return strings.Join(a.Dependencies, ",") == "/prod/db,/x,/abs" }},
		{"explicit zero instances kept", `{"id":"a","cmd":"x y","instances":0,"mem":0}`, func(a *App) bool { return a.Instances == 0 && a.Mem == 0 }},
		{"no ports when asked", `{"id":"a","cmd":"x y","portDefinitions":[]}`, func(a *App) bool { return len(a.PortDefinitions) == 0 }},
		{"legacy ports", `{"id":"a","cmd":"x y","ports":[80,0]}`, func(a *App) bool {
			return len(a.PortDefinitions) == 2 && a.PortDefinitions[0].Port == 80 && a.PortDefinitions[1].Protocol == "tcp" && a.Ports == nil
		}},
		{"equal ports and definitions", `{"id":"a","cmd":"x y","ports":[80],"portDefinitions":[{"port":80,"name":"http"}]}`, func(a *App) bool {
			return a.Ports == nil && a.PortDefinitions[0].Name == "http"
		}},
		{"no default port with port mappings", `{"id":"a","container":{"docker":{"image":"i"},"portMappings":[{"containerPort":80}]}}`,
			func(a *App) bool { return len(a.PortDefinitions) == 0 }},
		{"health defaults", `{"id":"a","cmd":"x y","healthChecks":[{},{"protocol":"TCP","port":22},{"command":{"value":"true"}}]}`, func(a *App) bool {
			h := a.HealthChecks
			return h[0].Protocol == "HTTP" && h[0].Path == "/" && *h[0].PortIndex == 0 &&
				h[1].PortIndex == nil && h[1].Path == "" && h[2].Protocol == "COMMAND" && h[2].PortIndex == nil
		}},
		{"go literal app", ``, func(a *App) bool {
			return a.Instances == 1 && a.CPUs == 1 && a.Mem == 128 && a.BackoffFactor == 1.15 && a.MaxLaunchDelaySeconds == 300 &&
				a.UpgradeStrategy == (UpgradeStrategy{1, 1}) && a.TaskKillGracePeriodSeconds == 3 && a.KillSelection == KillYoungestFirst
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &App{ID: "lit", Cmd: "x y"}
			if tc.body != "" {
				var err error
				if a, err = Decode([]byte(tc.body)); err != nil {
					t.Fatal(err)
				}
			}
			n := Normalize(a)
			if !tc.check(n) {
				b, _ := json.Marshal(n)
				t.Errorf("normalized: %s", b)
			}
		})
	}
}

func TestNormalizeDoesNotMutate(t *testing.T) {
	a, _ := Decode([]byte(`{"id":"a","cmd":"x y","ports":[80],"healthChecks":[{}]}`))
	before, _ := json.Marshal(a)
	Normalize(a)
	if after, _ := json.Marshal(a); !bytes.Equal(before, after) {
		t.Errorf("Normalize changed its input:\n%s\n%s", before, after)
	}
}

func TestAssignServicePorts(t *testing.T) {
	a := Normalize(&App{ID: "/a", Cmd: "x y", PortDefinitions: []PortDefinition{{Port: 0}, {Port: 10001}, {Port: 0}}})
	got, err := AssignServicePorts(a, map[int]bool{10000: true, 10002: true})
	if err != nil {
		t.Fatal(err)
	}
	if p := portNumbers(got.PortDefinitions); p[0] != 10003 || p[1] != 10001 || p[2] != 10004 {
		t.Errorf("assigned %v, want [10003 10001 10004]", p)
	}
	if a.PortDefinitions[0].Port != 0 {
		t.Error("input mutated")
	}

	dup := Normalize(&App{ID: "/a", Cmd: "x y", PortDefinitions: []PortDefinition{{Port: 80}, {Port: 80}}})
	if _, err := AssignServicePorts(dup, nil); err == nil || !strings.Contains(err.Error(), "Ports must be unique.") {
		t.Errorf("duplicate ports: %v", err)
	}
	if _, err := AssignServicePorts(Normalize(&App{ID: "/a", Cmd: "x y", PortDefinitions: []PortDefinition{{Port: 10005}}}),
		map[int]bool{10005: true}); err == nil || !strings.Contains(err.Error(), "/portDefinitions(0)/port") {
		t.Errorf("port used by another app: %v", err)
	}
	full := map[int]bool{}
	for p := ServicePortMin; p <= ServicePortMax; p++ {
		full[p] = true
	}
	if _, err := AssignServicePorts(Normalize(&App{ID: "/a", Cmd: "x y"}), full); err == nil {
		t.Error("no error when the range is exhausted")
	}
}
