package executor_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/garrisonhq/garrison/ci/executor"
	"github.com/garrisonhq/garrison/ci/internal/citest"
	"github.com/garrisonhq/garrison/ci/pipeline"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/garrisontest"
)

func setup(t *testing.T) (*executor.Docker, string, string) {
	t.Helper()
	cli := dockertest.Client(t)
	img := citest.Busybox(t, cli)
	ns := dockertest.UniqueName("ci-test-")
	ws := t.TempDir()
	return executor.New(cli, ns), img, ws
}

func TestStepRunsInWorkspaceAndReportsExitCode(t *testing.T) {
	d, img, ws := setup(t)
	os.WriteFile(filepath.Join(ws, "in.txt"), []byte("from the checkout"), 0o644)
	var log garrisontest.Buffer
	code, err := d.Run(context.Background(), executor.Spec{RunID: "p.1", Workspace: ws, Env: map[string]string{"CI_COMMIT_SHA": "abc"},
		Step: pipeline.Step{Name: "build", Image: img, Env: map[string]string{"GREETING": "hi"},
			Commands: []string{"cat in.txt", "echo \"$GREETING $CI_COMMIT_SHA\" > out.txt", "pwd", "echo to-stderr >&2"}}}, &log)
	if err != nil || code != 0 {
		t.Fatalf("code %d, err %v\n%s", code, err, log.String())
	}
	out, _ := os.ReadFile(filepath.Join(ws, "out.txt"))
	if string(out) != "hi abc\n" {
		t.Errorf("out.txt = %q", out)
	}
	// The shell's trace goes to stderr and the commands' output to stdout:
	// Docker keeps each stream's order, not their interleaving.
	for _, want := range []string{"+ cat in.txt\n", "from the checkout", "+ pwd\n", "/workspace\n", "to-stderr\n"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	code, err = d.Run(context.Background(), executor.Spec{RunID: "p.1", Workspace: ws,
		Step: pipeline.Step{Name: "fail", Image: img, Commands: []string{"echo before", "exit 3", "echo never"}}}, &log)
	if err != nil || code != 3 {
		t.Fatalf("code %d err %v, want 3", code, err)
	}
	if strings.Contains(log.String(), "never") {
		t.Error("a command after the failing one ran")
	}
}

// TestStepCannotReadTheHost: a build step sees its workspace and nothing
// else of the host's files.
func TestStepCannotReadTheHost(t *testing.T) {
	d, img, ws := setup(t)
	secretDir := t.TempDir()
	secretFile := filepath.Join(secretDir, "secret.txt")
	os.WriteFile(secretFile, []byte("host-secret-4711"), 0o644)
	var log garrisontest.Buffer
	code, err := d.Run(context.Background(), executor.Spec{RunID: "p.2", Workspace: ws,
		Step: pipeline.Step{Name: "snoop", Image: img, Commands: []string{
			"cat " + secretFile + " || true",
			"cat /workspace/../" + secretFile + " || true",
			"ls " + secretDir + " || true",
			"cat /proc/1/root" + secretFile + " || true",
			"find / -name secret.txt 2>/dev/null || true",
			"test ! -e " + secretFile,
		}}}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("the host's file exists in the container (exit %d):\n%s", code, log.String())
	}
	if strings.Contains(log.String(), "host-secret-4711") {
		t.Errorf("the step read the host's file:\n%s", log.String())
	}
}

func TestTimeoutAndCancelRemoveTheContainer(t *testing.T) {
	d, img, ws := setup(t)
	cli := dockertest.Client(t)
	var log garrisontest.Buffer
	code, err := d.Run(context.Background(), executor.Spec{RunID: "p.3", Workspace: ws,
		Step: pipeline.Step{Name: "slow", Image: img, Commands: []string{"sleep 600"}, Timeout: 2 * time.Second}}, &log)
	if err == nil || !strings.Contains(err.Error(), "timed out") || code != -1 {
		t.Fatalf("code %d err %v, want a timeout", code, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := d.Run(ctx, executor.Spec{RunID: "p.4", Workspace: ws,
			Step: pipeline.Step{Name: "slow", Image: img, Commands: []string{"echo started", "sleep 600"}}}, &log)
		done <- err
	}()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(log.String(), "started") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled step reported success")
		}
	case <-time.After(time.Minute):
		t.Fatal("cancel did not stop the step")
	}
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", executor.LabelRun))})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.Labels[executor.LabelRun] == "p.3" || c.Labels[executor.LabelRun] == "p.4" {
			t.Errorf("container %s of run %s left behind", c.ID[:12], c.Labels[executor.LabelRun])
		}
	}
}

func TestHostGoIsMountedReadOnlyOnlyWhenAsked(t *testing.T) {
	d, img, ws := setup(t)
	if _, err := os.Stat(pipeline.HostGoRoot + "/bin/go"); err != nil {
		t.Fatalf("the host has no Go at %s: %v", pipeline.HostGoRoot, err)
	}
	var log garrisontest.Buffer
	code, err := d.Run(context.Background(), executor.Spec{RunID: "p.5", Workspace: ws,
		Step: pipeline.Step{Name: "nogo", Image: img, Commands: []string{"test ! -e /usr/local/go"}}}, &log)
	if err != nil || code != 0 {
		t.Fatalf("without hostGo the toolchain is there: %d %v\n%s", code, err, log.String())
	}
	code, err = d.Run(context.Background(), executor.Spec{RunID: "p.5", Workspace: ws,
		Step: pipeline.Step{Name: "go", Image: img, HostGo: true, Commands: []string{"go version", "! touch /usr/local/go/x"}}}, &log)
	if err != nil || code != 0 || !strings.Contains(log.String(), "go version go1.") {
		t.Fatalf("hostGo: %d %v\n%s", code, err, log.String())
	}
}

// TestHostGoBuildsAStaticBinary: a build step with hostGo compiles a Go
// program in the busybox image, its caches inside the workspace.
func TestHostGoBuildsAStaticBinary(t *testing.T) {
	d, img, ws := setup(t)
	os.WriteFile(filepath.Join(ws, "go.mod"), []byte("module example.com/hello\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(ws, "main.go"), []byte("package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello from the build\\n\") }\n"), 0o644)
	var log garrisontest.Buffer
	code, err := d.Run(context.Background(), executor.Spec{RunID: "p.6", Workspace: ws,
		Step: pipeline.Step{Name: "go", Image: img, HostGo: true, Timeout: 10 * time.Minute,
			Commands: []string{"CGO_ENABLED=0 go build -o out/hello .", "./out/hello"}}}, &log)
	if err != nil || code != 0 {
		t.Fatalf("%d %v\n%s", code, err, log.String())
	}
	if !strings.Contains(log.String(), "\nhello from the build\n") {
		t.Errorf("log:\n%s", log.String())
	}
	if _, err := os.Stat(filepath.Join(ws, "out", "hello")); err != nil {
		t.Errorf("binary not in the workspace: %v", err)
	}
}

// TestRelativeWorkspaceIsMounted: garrison's default --data-dir is
// ./garrison-data, so a run's workspace path is relative; Docker refuses
// a relative bind source ("mount path must be absolute"), which failed
// every build of the README's pipeline walkthrough.
func TestRelativeWorkspaceIsMounted(t *testing.T) {
	d, img, ws := setup(t)
	t.Chdir(filepath.Dir(ws))
	os.WriteFile(filepath.Join(ws, "in.txt"), []byte("relative\n"), 0o644)
	var log garrisontest.Buffer
	code, err := d.Run(context.Background(), executor.Spec{RunID: "p.rel", Workspace: filepath.Base(ws),
		Step: pipeline.Step{Name: "build", Image: img, Commands: []string{"cat in.txt"}}}, &log)
	if err != nil || code != 0 || !strings.Contains(log.String(), "relative") {
		t.Fatalf("code %d, err %v\n%s", code, err, log.String())
	}
}
