package images_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/garrisonhq/garrison/internal/dockertest"
)

const debootstrapScript = "./debootstrap.sh"

// TestDebootstrapMirrorIsAptsOwn: the script takes the mirror of the
// first `deb` source carrying the suite, from one-line sources.list
// entries (with options) and deb822 .sources stanzas alike, skipping
// deb-src, other suites and comments; a suite no source carries is an
// error that says what to do.
func TestDebootstrapMirrorIsAptsOwn(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "sources.list"), []byte(`# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://list.example/debian bullseye main
`), 0o644)
	os.WriteFile(filepath.Join(dir, "sources.list.d", "debian.sources"), []byte(`Types: deb-src
URIs: http://src822.example/debian
Suites: bookworm trixie
Components: main

Types: deb
# a comment inside a stanza
URIs: http://mirror.example/debian http://second.example/debian
Suites: bookworm bookworm-updates
Components: main
`), 0o644)
	mirror := func(suite string) (string, error) {
		cmd := exec.Command("sh", debootstrapScript, "-p", "-s", suite)
		cmd.Env = append(os.Environ(), "APT_SOURCES="+dir)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for suite, want := range map[string]string{
		"bullseye":         "http://list.example/debian",
		"bookworm":         "http://mirror.example/debian",
		"bookworm-updates": "http://mirror.example/debian",
	} {
		if got, err := mirror(suite); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", suite, got, err, want)
		}
	}
	if got, err := mirror("trixie"); err == nil || !strings.Contains(got, "no deb source for trixie") || !strings.Contains(got, "give -m") {
		t.Errorf("trixie (only deb-src): %q, %v", got, err)
	}
}

// TestDebootstrapImage builds a minbase image of this machine's suite from
// apt's own mirror and runs it: Debian's apt and dpkg inside, the suite
// and mirror in its labels and apt sources, no apt lists left. It
// installs 88 packages (90 s to 2.5 min on the 2-core test machine), so
// it runs under `make test` (which CI runs), CI=true or
// GARRISON_TEST_DEBOOTSTRAP=1;
// downloaded packages are kept in ~/.cache/garrison/debootstrap.
func TestDebootstrapImage(t *testing.T) {
	if os.Getenv("CI") != "true" && os.Getenv("GARRISON_TEST_DEBOOTSTRAP") != "1" {
		t.Skip("builds a Debian minbase (90 s or more): runs under make test, CI=true or GARRISON_TEST_DEBOOTSTRAP=1")
	}
	if os.Geteuid() != 0 {
		t.Fatal("debootstrap needs root")
	}
	cli := dockertest.Client(t)
	tag := dockertest.UniqueName("garrison-test/debian-") + ":minbase"
	t.Cleanup(func() { cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true}) })
	cacheHome, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "sh", debootstrapScript, "-c", filepath.Join(cacheHome, "garrison", "debootstrap"), tag).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("built %s in %s", tag, time.Since(start).Round(time.Second))
	mirror, err := exec.Command("sh", debootstrapScript, "-p").Output()
	if err != nil {
		t.Fatal(err)
	}
	suite := strings.TrimSpace(string(must(exec.Command("sh", "-c", ". /etc/os-release && echo $VERSION_CODENAME").Output())))

	run, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none", tag, "sh", "-c",
		`. /etc/os-release; echo $VERSION_CODENAME; dpkg-query -W -f '${Package}\n' apt dpkg; cat /etc/apt/sources.list; ls /var/lib/apt/lists | grep -c _ || true`).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s: %v\n%s", tag, err, run)
	}
	want := suite + "\napt\ndpkg\ndeb " + strings.TrimSpace(string(mirror)) + " " + suite + " main\n0\n"
	if string(run) != want {
		t.Errorf("inside %s:\n%s\nwant:\n%s", tag, run, want)
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	if l := img.Config.Labels; l["org.opencontainers.image.version"] != suite || l["garrison.debootstrap.variant"] != "minbase" ||
		l["org.opencontainers.image.source"] != strings.TrimSpace(string(mirror)) || l["org.opencontainers.image.created"] == "" {
		t.Errorf("labels %v", l)
	}
	if c := img.Config.Cmd; len(c) != 1 || c[0] != "/bin/bash" {
		t.Errorf("cmd %v", c)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
