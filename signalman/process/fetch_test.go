package process

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/garrisonhq/garrison/signalman/task"
)

func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Issue 10: fetch/uris were accepted and dropped; the driver now downloads
// them into the sandbox before the task starts, as Mesos' fetcher does.
func TestFetchIntoSandbox(t *testing.T) {
	files := map[string][]byte{
		"/app.tgz":  tarGz(t, map[string]string{"bin/run": "#!/bin/sh\necho unpacked\n"}),
		"/tool":     []byte("#!/bin/sh\necho tool\n"),
		"/evil.tgz": tarGz(t, map[string]string{"../escape": "x"}),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(files["/tool"])
	d, _ := newDriver(t)
	w := watch(t, d)
	spec := task.Spec{ID: "fetch.1", AppID: "/fetch", Cmd: "bin/run && ./tools/tool && cat app.tgz >/dev/null", Fetch: []task.Artifact{
		{URI: srv.URL + "/app.tgz", Extract: true},
		{URI: srv.URL + "/tool", Executable: true, DestPath: "tools/tool", Checksum: "sha256:" + hex.EncodeToString(sum[:])},
	}}
	launch(t, d, spec)
	if st := waitState(t, w, spec.ID, task.Finished); st.ExitCode != 0 {
		t.Fatalf("task: %+v; stderr %s", st, readFile(t, filepath.Join(d.Sandbox(spec.ID), "stderr")))
	}
	if got := readFile(t, filepath.Join(d.Sandbox(spec.ID), "stdout")); got != "unpacked\ntool\n" {
		t.Errorf("stdout %q", got)
	}

	for _, tc := range []struct {
		name string
		art  task.Artifact
		want string
	}{
		{"checksum mismatch", task.Artifact{URI: srv.URL + "/tool", Checksum: "sha256:" + strings.Repeat("0", 64)}, "checksum mismatch"},
		{"not found", task.Artifact{URI: srv.URL + "/nothing"}, "404"},
		{"archive escaping the sandbox", task.Artifact{URI: srv.URL + "/evil.tgz", Extract: true}, "leaves the sandbox"},
		{"file uri off", task.Artifact{URI: "file:///etc/hostname"}, "file:// URIs are off"},
		{"dest outside", task.Artifact{URI: srv.URL + "/tool", DestPath: "../../x"}, "leaves the sandbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "fetch." + strings.ReplaceAll(tc.name, " ", "-")
			_, err := d.Launch(t.Context(), task.Spec{ID: id, AppID: "/fetch", Cmd: "true", Fetch: []task.Artifact{tc.art}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("launch: %v, want an error with %q", err, tc.want)
			}
			if _, err := os.Stat(d.taskDir(id)); !os.IsNotExist(err) {
				t.Errorf("a failed fetch left the task directory: %v", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(d.dir, "fetch.archive-escaping-the-sandbox", "escape")); !os.IsNotExist(err) {
		t.Error("the archive wrote outside its sandbox")
	}

	// Allowed, file:// copies a local file.
	local := filepath.Join(t.TempDir(), "local.sh")
	if err := os.WriteFile(local, []byte("echo local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d2, _ := newDriver(t, WithFileFetch(true))
	w2 := watch(t, d2)
	launch(t, d2, task.Spec{ID: "fetch.file", AppID: "/fetch", Cmd: "sh local.sh", Fetch: []task.Artifact{{URI: "file://" + local}}})
	waitState(t, w2, "fetch.file", task.Finished)
	if got := readFile(t, filepath.Join(d2.Sandbox("fetch.file"), "stdout")); got != "local\n" {
		t.Errorf("stdout %q", got)
	}

	// The limit bounds a download.
	d3, _ := newDriver(t, WithFetchLimit(8))
	if _, err := d3.Launch(t.Context(), task.Spec{ID: "fetch.big", AppID: "/fetch", Cmd: "true", Fetch: []task.Artifact{{URI: srv.URL + "/tool"}}}); err == nil || !strings.Contains(err.Error(), "fetch limit") {
		t.Errorf("launch over the fetch limit: %v", err)
	}
}
