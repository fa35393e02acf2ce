package runnerd_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/ci/runnerd"
	"github.com/garrisonhq/garrison/internal/poll"
)

func post(t *testing.T, url string, job runnerd.Job) (*http.Response, string) {
	t.Helper()
	b, _ := json.Marshal(job)
	resp, err := http.Post(url+"/jobs", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(out)
}

func metric(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestRunnerTakesOneJobAtATime: a job runs in its directory with its env
// and nothing of the runner's, its exit code comes after its output; a
// second job while one runs is refused (409) and the busy gauge shows it;
// a job past its timeout is killed with its children.
func TestRunnerTakesOneJobAtATime(t *testing.T) {
	srv := httptest.NewServer(runnerd.New(nil).Handler())
	defer srv.Close()
	dir := t.TempDir()
	t.Setenv("RUNNER_SECRET", "host-only")
	resp, out := post(t, srv.URL, runnerd.Job{ID: "a", Dir: dir, Script: "pwd; echo $N; echo x$RUNNER_SECRET; exit 3", Env: map[string]string{"N": "seven"}})
	if resp.StatusCode != 200 || resp.Trailer.Get(runnerd.ExitCodeTrailer) != "3" || out != dir+"\nseven\nx\n" {
		t.Fatalf("job: %d %v %q", resp.StatusCode, resp.Trailer, out)
	}

	done := make(chan string)
	go func() {
		resp, _ := post(t, srv.URL, runnerd.Job{ID: "slow", Dir: dir, Script: "sleep 30 & sleep 30", Timeout: 2 * time.Second})
		done <- resp.Trailer.Get(runnerd.ErrorTrailer)
	}()
	poll.Until(t, 10*time.Second, "busy", func() (bool, string) {
		v := metric(t, srv.URL, "garrison_runner_busy")
		return v == "1", v
	})
	if resp, _ := post(t, srv.URL, runnerd.Job{ID: "b", Dir: dir, Script: "true"}); resp.StatusCode != http.StatusConflict {
		t.Errorf("second job while busy: %d, want 409", resp.StatusCode)
	}
	if msg := <-done; !strings.Contains(msg, "timed out after 2s") {
		t.Errorf("slow job's error trailer %q", msg)
	}
	if v := metric(t, srv.URL, "garrison_runner_busy"); v != "0" {
		t.Errorf("busy after the jobs: %q", v)
	}
	if resp, out := post(t, srv.URL, runnerd.Job{ID: "c", Dir: "relative", Script: "true"}); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("relative dir: %d %s", resp.StatusCode, out)
	}
}
