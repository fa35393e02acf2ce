package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/garrisonhq/garrison/images"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/registrytest"
)

func busybox(t *testing.T, cli client.APIClient) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	if err := images.BuildBusybox(ctx, cli, busyboxTag, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	return busyboxTag
}

func removeImages(t *testing.T, cli client.APIClient, refs ...string) {
	t.Cleanup(func() {
		for _, r := range refs {
			cli.ImageRemove(context.Background(), r, image.RemoveOptions{Force: true})
		}
	})
}

func runOutput(t *testing.T, cli client.APIClient, img string, cmd ...string) string {
	t.Helper()
	ctx := context.Background()
	id := dockertest.Run(t, cli, dockertest.Spec{Image: img, Cmd: cmd})
	waitC, errC := cli.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatal(err)
	}
	rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out bytes.Buffer
	stdcopy.StdCopy(&out, &out, rc)
	return out.String()
}

func TestProductImageIsLabelledTaggedAndPushed(t *testing.T) {
	cli := dockertest.Client(t)
	base := busybox(t, cli)
	reg := registrytest.Start(t)
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "out", "static"), 0o755)
	os.WriteFile(filepath.Join(ws, "out", "hello.txt"), []byte("hello from the build\n"), 0o644)
	os.WriteFile(filepath.Join(ws, "out", "static", "index.html"), []byte("<p>hi</p>\n"), 0o644)
	name := dockertest.UniqueName("garrison-test/product-")
	created := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	p := images.Product{
		Name: name, Version: "7-0d1a26e67d8f", Base: base, Workspace: ws,
		Files:      []images.File{{From: "out/hello.txt", To: "/app/"}, {From: "out/static", To: "/app/static"}},
		Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"cat /app/hello.txt /app/static/index.html; echo $MODE"},
		Env:      map[string]string{"MODE": `prod "quoted" $PATH \n`, "B": "2"},
		Revision: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", Source: "/srv/git/account.git", RunID: "account.7",
		Committer: "Mei $HOME <mei@ktv.example>", Created: created,
	}
	b := images.NewBuilder(cli, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := b.Build(ctx, p, &log)
	removeImages(t, cli, name+":7-0d1a26e67d8f", reg+"/"+name+":7-0d1a26e67d8f")
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if res.Ref != reg+"/"+name+":7-0d1a26e67d8f" || !strings.HasPrefix(res.Digest, "sha256:") {
		t.Errorf("result %+v", res)
	}
	img, err := cli.ImageInspect(ctx, name+":7-0d1a26e67d8f")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"org.opencontainers.image.revision": p.Revision, "org.opencontainers.image.source": p.Source,
		"org.opencontainers.image.version": "7-0d1a26e67d8f", "org.opencontainers.image.created": "2026-11-29T09:00:00Z",
		"garrison.run": "account.7", "garrison.committer": "Mei $HOME <mei@ktv.example>",
	}
	for k, v := range want {
		if img.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, img.Config.Labels[k], v)
		}
	}
	if out := runOutput(t, cli, res.Ref); out != "hello from the build\n<p>hi</p>\nprod \"quoted\" $PATH \\n\n" {
		t.Errorf("the image runs and prints %q", out)
	}
	// The registry holds it: its tag list, and a pull after removing the
	// local copies.
	resp, err := http.Get("http://" + reg + "/v2/" + name + "/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	var tags struct{ Tags []string }
	json.NewDecoder(resp.Body).Decode(&tags)
	resp.Body.Close()
	if len(tags.Tags) != 1 || tags.Tags[0] != "7-0d1a26e67d8f" {
		t.Errorf("registry tags %v", tags.Tags)
	}
	for _, r := range []string{name + ":7-0d1a26e67d8f", res.Ref} {
		if _, err := cli.ImageRemove(ctx, r, image.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := cli.ImagePull(ctx, res.Ref, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	if _, err := cli.ImageInspect(ctx, res.Ref); err != nil {
		t.Errorf("pulled image: %v", err)
	}
}

// TestProductFilesNeverLeaveTheWorkspace: links a build leaves behind are
// copied as links, and a path through a link out of the workspace fails.
func TestProductFilesNeverLeaveTheWorkspace(t *testing.T) {
	cli := dockertest.Client(t)
	base := busybox(t, cli)
	reg := registrytest.Start(t)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "secret.txt"), []byte("host-secret-4711"), 0o644)
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "out"), 0o755)
	os.Symlink(filepath.Join(host, "secret.txt"), filepath.Join(ws, "out", "link.txt"))
	os.Symlink(host, filepath.Join(ws, "escape"))
	name := dockertest.UniqueName("garrison-test/product-")
	b := images.NewBuilder(cli, reg)
	ctx := context.Background()
	var log bytes.Buffer
	_, err := b.Build(ctx, images.Product{Name: name, Version: "1", Base: base, Workspace: ws,
		Files: []images.File{{From: "escape/secret.txt", To: "/s"}}}, &log)
	if err == nil {
		removeImages(t, cli, name+":1", reg+"/"+name+":1")
		t.Fatal("a file through a link out of the workspace was copied")
	}
	res, err := b.Build(ctx, images.Product{Name: name, Version: "2", Base: base, Workspace: ws,
		Files: []images.File{{From: "out", To: "/out"}}}, &log)
	removeImages(t, cli, name+":2", reg+"/"+name+":2")
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	out := runOutput(t, cli, res.Ref, "/bin/sh", "-c", "readlink /out/link.txt; cat /out/link.txt")
	if strings.Contains(out, "host-secret-4711") || !strings.Contains(out, filepath.Join(host, "secret.txt")) {
		t.Errorf("image output %q: the link should be a dangling link", out)
	}
}

// TestScratchProductIsImported: a product FROM scratch is imported, one
// layer with what COPY would have made (modes, owner root, parent
// directories, a file to a path ending in / keeps its name, links stay
// links) and the same config and labels, tagged both ways and pushed.
func TestScratchProductIsImported(t *testing.T) {
	cli := dockertest.Client(t)
	reg := registrytest.Start(t)
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "out", "static"), 0o750)
	os.WriteFile(filepath.Join(ws, "out", "hello.txt"), []byte("hello from the build\n"), 0o600)
	os.WriteFile(filepath.Join(ws, "out", "static", "index.html"), []byte("<p>hi</p>\n"), 0o640)
	os.Symlink("index.html", filepath.Join(ws, "out", "static", "home.html"))
	bb, err := os.ReadFile(images.BusyboxBinary)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ws, "out", "busybox"), bb, 0o755)
	name := dockertest.UniqueName("garrison-test/scratch-")
	p := images.Product{
		Name: name, Version: "3-0d1a26e67d8f", Base: "scratch", Workspace: ws,
		Files:      []images.File{{From: "out/busybox", To: "/bin/"}, {From: "out/hello.txt", To: "/app/deep/hello.txt"}, {From: "out/static", To: "/app/static"}},
		Entrypoint: []string{"/bin/busybox", "sh", "-c"},
		Cmd: []string{`/bin/busybox cat /app/deep/hello.txt /app/static/home.html; echo "$MODE"; ` +
			`/bin/busybox stat -c '%n %a %u %F' /app /app/deep /app/deep/hello.txt /app/static /app/static/index.html /app/static/home.html /bin /bin/busybox`},
		Env:      map[string]string{"MODE": `prod "quoted" $PATH`},
		Revision: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", Source: "/srv/git/account.git", RunID: "account.3",
		Committer: "Mei <mei@ktv.example>", Created: time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := images.NewBuilder(cli, reg).Build(ctx, p, &log)
	removeImages(t, cli, name+":3-0d1a26e67d8f", reg+"/"+name+":3-0d1a26e67d8f")
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "FROM scratch: importing 3 file(s)") || !strings.HasPrefix(res.Digest, "sha256:") {
		t.Errorf("log %q, result %+v", log.String(), res)
	}
	img, err := cli.ImageInspect(ctx, name+":3-0d1a26e67d8f")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.RootFS.Layers) != 1 || img.ID != res.ID || img.Config.Labels["garrison.run"] != "account.3" ||
		img.Config.Labels["org.opencontainers.image.created"] != "2026-11-29T09:00:00Z" || img.Config.Labels["org.opencontainers.image.version"] != p.Version {
		t.Errorf("image: %d layers, id %s (built %s), labels %v", len(img.RootFS.Layers), img.ID, res.ID, img.Config.Labels)
	}
	want := `hello from the build
<p>hi</p>
prod "quoted" $PATH
/app 755 0 directory
/app/deep 755 0 directory
/app/deep/hello.txt 600 0 regular file
/app/static 750 0 directory
/app/static/index.html 640 0 regular file
/app/static/home.html 777 0 symbolic link
/bin 755 0 directory
/bin/busybox 755 0 regular file
`
	if out := runOutput(t, cli, res.Ref); out != want {
		t.Errorf("the image prints:\n%s\nwant:\n%s", out, want)
	}
}
