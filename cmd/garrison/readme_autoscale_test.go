package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/autoscale"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testbin"
)

// readmeAutoscaling is the README's Autoscaling section: its rule file,
// the app it creates and the load command, as written.
type readmeAutoscaling struct {
	rules   string
	appJSON string
	load    []string
}

func readReadmeAutoscaling(t *testing.T) readmeAutoscaling {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "## Autoscaling\n")
	end := strings.Index(text[start+1:], "\n## ")
	if start < 0 || end < 0 {
		t.Fatal("README has no Autoscaling section")
	}
	section := text[start : start+1+end]
	var out readmeAutoscaling
	rules := regexp.MustCompile("(?s)```yaml\n# rules.yaml\n(.*?)```").FindStringSubmatch(section)
	app := regexp.MustCompile(`(?m)^curl -X POST http://127\.0\.0\.1:8080/v2/apps -H 'Content-Type: application/json' -d '(.*)'$`).FindStringSubmatch(section)
	load := regexp.MustCompile(`(?m)^\./bin/load ([^#\n]*?)\s*(#.*)?$`).FindStringSubmatch(section)
	if rules == nil || app == nil || load == nil {
		t.Fatalf("README's Autoscaling section lacks the rules file (%v), the app (%v) or the load command (%v)", rules != nil, app != nil, load != nil)
	}
	out.rules, out.appJSON, out.load = rules[1], app[1], strings.Fields(load[1])
	return out
}

// TestReadmeAutoscalingDemo runs the README's autoscaling demo as written:
// garrison up with the README's rules file and default settings, the echo
// app at 2 instances, the README's load. It must scale up to the count the
// load needs, and down after the scale-down window once the load is gone.
func TestReadmeAutoscalingDemo(t *testing.T) {
	demo := readReadmeAutoscaling(t)
	echo, cleanEcho, err := testbin.Build("github.com/garrisonhq/garrison/examples/echo", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanEcho)
	load, cleanLoad, err := testbin.Build("github.com/garrisonhq/garrison/bench/load", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanLoad)

	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(demo.rules), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(garrisonBinary, "rules", "check", rulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("garrison rules check on the README's rules: %v\n%s", err, out)
	}
	addrs := freeAddrs(t, 2)
	base, etcd := "http://"+addrs[0], "http://"+addrs[1]
	// The README's `garrison up --rules rules.yaml`, on free addresses.
	startGarrison(t, "up", "--addr", addrs[0], "--etcd-listen", etcd, "--data-dir", filepath.Join(dir, "data"),
		"--task-ports", "49200-49399", "--rules", rulesFile)
	waitHTTP(t, base+"/ping", 30*time.Second)

	// The README's app, with its $PWD/bin/echo.
	appJSON := strings.ReplaceAll(demo.appJSON, `'"$PWD"'/bin/echo`, echo)
	var def map[string]any
	if err := json.Unmarshal([]byte(appJSON), &def); err != nil {
		t.Fatalf("the README's app JSON: %v\n%s", err, appJSON)
	}
	appID := def["id"].(string)
	code, _, body := marathonCall(t, "POST", base+"/v2/apps", def)
	if code != http.StatusCreated {
		t.Fatalf("POST the README's app: %d %s", code, body)
	}
	t.Cleanup(func() {
		// t.Context() is over by now: a plain request stops the processes.
		req, _ := http.NewRequest("DELETE", base+"/v2/apps"+appID+"?force=true", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	status := func() (int, int) {
		st, ok := getApp(t, base, appID)
		if !ok {
			return -1, -1
		}
		return st.App.Instances, st.App.TasksHealthy
	}
	poll.Until(t, 60*time.Second, "the README's app at 2 healthy instances", func() (bool, string) {
		want, healthy := status()
		return want == 2 && healthy == 2, fmt.Sprintf("instances %d, healthy %d", want, healthy)
	})
	evaluations := func() []autoscale.Evaluation {
		code, _, body := marathonCall(t, "GET", base+"/api/v1/evaluations?app="+appID, nil)
		var out struct{ Evaluations []autoscale.Evaluation }
		if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
			t.Fatalf("GET /api/v1/evaluations: %d %s", code, body)
		}
		return out.Evaluations
	}
	poll.Until(t, 30*time.Second, "an evaluation with QPS data", func() (bool, string) {
		evs := evaluations()
		return len(evs) == 1 && evs[0].Inputs[0].HasData, fmt.Sprintf("%+v", evs)
	})

	// The README's load command, pointed at this garrison's etcd.
	var loadOut bytes.Buffer
	ctx, stopLoad := context.WithCancel(t.Context())
	defer stopLoad()
	cmd := exec.CommandContext(ctx, load, append(demo.load, "-etcd", etcd)...)
	cmd.Stdout, cmd.Stderr = &loadOut, &loadOut
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	loadDone := make(chan error, 1)
	go func() { loadDone <- cmd.Wait() }()

	// Up: 200 req/s against 50 per instance needs 4.
	poll.Until(t, 60*time.Second, "the app scaled up to 4 healthy instances", func() (bool, string) {
		want, healthy := status()
		return want >= 4 && healthy >= 4, fmt.Sprintf("instances %d, healthy %d", want, healthy)
	})
	var up *autoscale.Record
	for _, d := range decisionsOf(t, base, appID) {
		if d.Action == autoscale.Up && d.Acted {
			up = &d
		}
	}
	if up == nil || up.From != 2 || up.To != 4 {
		t.Fatalf("want one scale-up 2 -> 4, got %+v", up)
	}
	t.Logf("scale-up: %s", up.Reason)
	stopLoad()
	<-loadDone
	stopped := time.Now()
	t.Logf("load: %s", strings.TrimSpace(loadOut.String()))

	// Down: after the window, one step.
	poll.Until(t, 3*time.Minute, "a scale-down after the load stopped", func() (bool, string) {
		want, _ := status()
		return want < 4, fmt.Sprintf("instances %d", want)
	})
	for _, d := range decisionsOf(t, base, appID) {
		if d.Action == autoscale.Down && d.Acted && d.At.Sub(stopped) < time.Minute {
			t.Fatalf("scaled down %s after the load stopped, before the README's 1m window: %+v", d.At.Sub(stopped), d)
		}
	}
}

func decisionsOf(t *testing.T, base, appID string) []autoscale.Record {
	t.Helper()
	code, _, body := marathonCall(t, "GET", base+"/api/v1/decisions?app="+appID, nil)
	var out struct{ Decisions []autoscale.Record }
	if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
		t.Fatalf("GET /api/v1/decisions: %d %s", code, body)
	}
	return out.Decisions
}
