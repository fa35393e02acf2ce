// Package dockertest runs real containers for tests against the local Docker
// engine: a client that fails the test when no engine answers, images built
// FROM scratch around static Go binaries (nothing can be pulled here), and
// host-network containers removed with the test.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/garrisonhq/garrison/images"
	"github.com/garrisonhq/garrison/internal/testport"
)

// TestServerPackage is the Go package of the small HTTP server test images
// run (see testserver/main.go).
const TestServerPackage = "github.com/garrisonhq/garrison/internal/dockertest/testserver"

// LabelTest marks every container these helpers create, with the test's name.
const LabelTest = "garrison.test"

// Client connects to the Docker engine named by the environment (DOCKER_HOST,
// else the local socket) and fails the test when it does not answer: the test
// set-up provides one, so tests never skip for want of Docker.
func Client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		t.Fatalf("no Docker engine answers at %s: %v (run `make test`, which installs docker.io and starts dockerd)", cli.DaemonHost(), err)
	}
	return cli
}

// BuildGoImage compiles goPackage statically (CGO_ENABLED=0) and builds the
// image tag FROM scratch with the binary as /app, its entrypoint. The image
// carries the binary's hash in a label; when tag already holds that binary
// (an earlier test or run built it) the Docker build is skipped, and go's
// build cache makes the compile cheap, so calling it from every test is fine.
// It returns the image id.
func BuildGoImage(t testing.TB, cli client.APIClient, tag, goPackage string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := goBuild(ctx, t.TempDir(), goPackage)
	if err != nil {
		t.Fatalf("build image %s: %v", tag, err)
	}
	sum := sha256.Sum256(bin)
	hash := hex.EncodeToString(sum[:])
	if img, err := cli.ImageInspect(ctx, tag); err == nil && img.Config != nil && img.Config.Labels[labelBinHash] == hash {
		return img.ID
	}
	if err := imageBuild(ctx, cli, tag, bin, hash); err != nil {
		t.Fatalf("build image %s from %s: %v", tag, goPackage, err)
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatalf("inspect built image %s: %v", tag, err)
	}
	return img.ID
}

const labelBinHash = "garrison.test.binhash"

// BusyboxImage is the tag of the image the pipeline's tests run steps in.
const BusyboxImage = "garrison-test/busybox:ci"

// Busybox builds BusyboxImage, images/'s busybox base FROM scratch
// (Docker's cache makes a rebuild cheap), and returns its tag.
func Busybox(t testing.TB, cli client.APIClient) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	if err := images.BuildBusybox(ctx, cli, BusyboxImage, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	return BusyboxImage
}

func goBuild(ctx context.Context, dir, goPackage string) ([]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "app")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", out, goPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if output, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", goPackage, err, output)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("read binary of %s: %w", goPackage, err)
	}
	return bin, nil
}

func imageBuild(ctx context.Context, cli client.APIClient, tag string, bin []byte, hash string) error {
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY app /app\nLABEL %s=%s\nENTRYPOINT [\"/app\"]\n", labelBinHash, hash)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {"app", 0o755, bin}}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return fmt.Errorf("build context: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  "Dockerfile",
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	defer resp.Body.Close()
	// The build reports failures inside the stream, not as an HTTP status.
	var log strings.Builder
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		log.WriteString(msg.Stream)
		if msg.Error != "" {
			return fmt.Errorf("image build: %s\n%s", msg.Error, log.String())
		}
	}
}

// Spec describes a test container. It always runs with host networking.
type Spec struct {
	Image       string
	Name        string // optional; Docker picks one when empty
	Cmd         []string
	Env         []string
	Labels      map[string]string
	Healthcheck *container.HealthConfig
}

// Run creates and starts a container from spec and returns its full id. The
// container is labelled with the test's name and force-removed with the test.
func Run(t testing.TB, cli client.APIClient, spec Spec) string {
	t.Helper()
	id := Create(t, cli, spec)
	Start(t, cli, id)
	return id
}

// Create creates a container from spec without starting it, removed with
// the test.
func Create(t testing.TB, cli client.APIClient, spec Spec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	labels := map[string]string{LabelTest: t.Name()}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	resp, err := cli.ContainerCreate(ctx,
		&container.Config{Image: spec.Image, Cmd: spec.Cmd, Env: spec.Env, Labels: labels, Healthcheck: spec.Healthcheck},
		&container.HostConfig{NetworkMode: "host"},
		nil, nil, spec.Name)
	if err != nil {
		t.Fatalf("create container from %s: %v", spec.Image, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cli.ContainerRemove(ctx, resp.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container %.12s: %v", resp.ID, err)
		}
	})
	return resp.ID
}

// Start starts a created or stopped container.
func Start(t testing.TB, cli client.APIClient, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		t.Fatalf("start container %.12s: %v", id, err)
	}
}

// Stop stops a container (SIGTERM, then SIGKILL after 10 s) and returns once
// it is no longer running.
func Stop(t testing.TB, cli client.APIClient, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cli.ContainerStop(ctx, id, container.StopOptions{}); err != nil {
		t.Fatalf("stop container %.12s: %v", id, err)
	}
}

// UniqueName returns prefix followed by random hex: a label value or name
// no other test or run shares.
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// LogLines is what the test server prints with TESTSERVER_LOG_LINES=n:
// stdout's lines from first to n, then its stderr line.
func LogLines(first, n int) string {
	var b strings.Builder
	for i := first; i <= n; i++ {
		fmt.Fprintf(&b, "testserver log line %d\n", i)
	}
	return b.String() + "testserver stderr line\n"
}

// EnvServerID is the environment variable the test server answers GET /id
// with, so a test can tell its own container from whatever else holds a port.
const EnvServerID = "TESTSERVER_ID"

// servingAttempts bounds how many ports RunServing tries.
const servingAttempts = 10

// ServingTimeout bounds how long RunServing waits for one container to
// serve; generous, as a loaded machine starts containers slowly.
const ServingTimeout = 60 * time.Second

// RunServing runs a container of the test server (TestServerPackage) that
// serves on a free host port, and returns once this container answers on
// it. spec gets the port and puts it where the server reads it (PORT, PORT0,
// -port). The port was free when picked, but the server binds it later and
// someone may take it first: then the container exits with "address already
// in use", and RunServing tries again on another port.
func RunServing(t testing.TB, cli client.APIClient, spec func(port int) Spec) (id string, port int) {
	t.Helper()
	for range servingAttempts {
		port = testport.Take(t, 1)[0]
		s := spec(port)
		token := UniqueName("srv-")
		s.Env = append(slices.Clone(s.Env), EnvServerID+"="+token)
		id = Run(t, cli, s)
		err := waitServing(cli, id, port, token)
		if err == nil {
			return id, port
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("container %.12s on port %d: %v", id, port, err)
		}
		t.Logf("container %.12s: port %d was taken before it bound it; trying another", id, port)
	}
	t.Fatalf("test server: no free port after %d attempts", servingAttempts)
	return "", 0
}

// waitServing polls until the container with token answers on port, or
// fails when it exits; a bind failure wraps syscall.EADDRINUSE.
func waitServing(cli client.APIClient, id string, port int, token string) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/id", port)
	hc := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(ServingTimeout)
	for {
		if resp, err := hc.Get(url); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.TrimSpace(string(body)) == token {
				return nil
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		info, err := cli.ContainerInspect(ctx, id)
		cancel()
		if err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		if info.State != nil && !info.State.Running && info.State.Status != "created" {
			logs := containerLogs(cli, id)
			if strings.Contains(logs, "address already in use") {
				return fmt.Errorf("%s: %w", strings.TrimSpace(logs), syscall.EADDRINUSE)
			}
			return fmt.Errorf("exited (%s, code %d) before serving: %s", info.State.Status, info.State.ExitCode, logs)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving on port %d after %s", port, ServingTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// containerLogs is the container's output, for error messages (the stream
// headers Docker interleaves do not matter there).
func containerLogs(cli client.APIClient, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "(logs: " + err.Error() + ")"
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 64<<10))
	return strings.Map(func(r rune) rune {
		if r < ' ' && r != '\n' {
			return -1
		}
		return r
	}, string(b))
}
