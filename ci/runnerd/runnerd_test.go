package runnerd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// TestStoppingRunnerFinishesItsJob: a runner told to stop (a scale-down)
// takes no new job but lets the running one finish; past the drain it
// kills it.
func TestStoppingRunnerFinishesItsJob(t *testing.T) {
	for _, tc := range []struct {
		name   string
		drain  time.Duration
		script string
		check  func(resp *http.Response, out string) bool
	}{
		{"finishes", time.Minute, "touch started; sleep 1; echo done", func(resp *http.Response, out string) bool {
			return resp.Trailer.Get(runnerd.ExitCodeTrailer) == "0" && out == "done\n"
		}},
		{"killed past the drain", 100 * time.Millisecond, "touch started; sleep 30", func(resp *http.Response, out string) bool {
			return resp.Trailer.Get(runnerd.ExitCodeTrailer) == "" && resp.Trailer.Get(runnerd.ErrorTrailer) != ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			url := "http://" + l.Addr().String()
			ctx, stop := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- runnerd.ServeListener(ctx, l, tc.drain, nil) }()
			dir := t.TempDir()
			type result struct {
				resp *http.Response
				out  string
			}
			done := make(chan result, 1)
			go func() {
				b, _ := json.Marshal(runnerd.Job{ID: "j", Dir: dir, Script: tc.script})
				resp, err := http.Post(url+"/jobs", "application/json", bytes.NewReader(b))
				if err != nil {
					done <- result{}
					return
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				done <- result{resp, string(out)}
			}()
			poll.Until(t, 10*time.Second, "job started", func() (bool, string) {
				_, err := os.Stat(filepath.Join(dir, "started"))
				return err == nil, fmt.Sprint(err)
			})
			stop()
			r := <-done
			if r.resp == nil || !tc.check(r.resp, r.out) {
				t.Errorf("job: %+v %q", r.resp, r.out)
			}
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
			if _, err := http.Get(url + "/health"); err == nil {
				t.Error("a stopped runner still answers")
			}
		})
	}
}
