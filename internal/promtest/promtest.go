// Package promtest starts Debian's Prometheus for tests: a real server on a
// free 127.0.0.1 port with its own configuration and data directory,
// scraping and evaluating every second, torn down with the test. A missing
// binary fails the test (`make test` installs it), it never skips.
package promtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/garrisonhq/garrison/internal/testport"
)

// Binary is Debian's prometheus; `make test` installs it.
const Binary = "/usr/bin/prometheus"

// Job is one scrape job.
type Job struct {
	// Name is the job name; "job" + index when empty.
	Name string
	// Targets are static host:port targets.
	Targets []string
	// Labels are attached to the static targets.
	Labels map[string]string
	// HTTPSD is an http_sd_configs URL refreshed every second.
	HTTPSD string
	// HonorLabels keeps the scraped series' own labels (app, task) when they
	// clash with the target's, as a job scraping garrison's per-task
	// exporter must.
	HonorLabels bool
}

// Config is what the server scrapes.
type Config struct {
	Jobs []Job
	// Interval is the scrape and evaluation interval; 1s when zero.
	Interval time.Duration
}

// Server is a running Prometheus.
type Server struct {
	// URL is the base URL, http://127.0.0.1:<port>.
	URL     string
	t       testing.TB
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// New starts Prometheus with cfg and waits until /-/ready answers 200.
func New(t testing.TB, cfg Config) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("prometheus: %v (run `make test`, which installs Debian's prometheus)", err)
	}
	dir := t.TempDir()
	configPath := filepath.Join(dir, "prometheus.yml")
	body, err := renderConfig(cfg)
	if err != nil {
		t.Fatalf("prometheus config: %v", err)
	}
	if err := os.WriteFile(configPath, body, 0o644); err != nil {
		t.Fatalf("prometheus config: %v", err)
	}
	// A free port can be taken between our probe and Prometheus binding it;
	// try a few.
	var lastErr error
	for range 10 {
		port := testport.Take(t, 1)[0]
		s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), t: t, logPath: filepath.Join(dir, "prometheus.log")}
		if lastErr = s.start(configPath, filepath.Join(dir, "data"), port); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("prometheus did not start: %v", lastErr)
	return nil
}

// DefaultInterval is the scrape and evaluation interval unless told.
const DefaultInterval = time.Second

func renderConfig(cfg Config) ([]byte, error) {
	interval := cfg.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	type staticConfig struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels,omitempty"`
	}
	type httpSD struct {
		URL             string `yaml:"url"`
		RefreshInterval string `yaml:"refresh_interval"`
	}
	type scrapeConfig struct {
		JobName       string         `yaml:"job_name"`
		HonorLabels   bool           `yaml:"honor_labels,omitempty"`
		ScrapeTimeout string         `yaml:"scrape_timeout,omitempty"`
		Static        []staticConfig `yaml:"static_configs,omitempty"`
		HTTPSD        []httpSD       `yaml:"http_sd_configs,omitempty"`
	}
	doc := struct {
		Global struct {
			ScrapeInterval     string `yaml:"scrape_interval"`
			ScrapeTimeout      string `yaml:"scrape_timeout"`
			EvaluationInterval string `yaml:"evaluation_interval"`
		} `yaml:"global"`
		Scrape []scrapeConfig `yaml:"scrape_configs"`
	}{}
	d := promDuration(interval)
	doc.Global.ScrapeInterval, doc.Global.ScrapeTimeout, doc.Global.EvaluationInterval = d, d, d
	for i, j := range cfg.Jobs {
		sc := scrapeConfig{JobName: j.Name, HonorLabels: j.HonorLabels}
		if sc.JobName == "" {
			sc.JobName = "job" + strconv.Itoa(i)
		}
		if len(j.Targets) > 0 {
			sc.Static = []staticConfig{{Targets: j.Targets, Labels: j.Labels}}
		}
		if j.HTTPSD != "" {
			sc.HTTPSD = []httpSD{{URL: j.HTTPSD, RefreshInterval: "1s"}}
		}
		if sc.Static == nil && sc.HTTPSD == nil {
			return nil, fmt.Errorf("job %q has neither targets nor an http_sd URL", sc.JobName)
		}
		doc.Scrape = append(doc.Scrape, sc)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return buf.Bytes(), nil
}

// promDuration spells d in milliseconds, which Prometheus always accepts.
func promDuration(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

func (s *Server) start(configPath, dataDir string, port int) error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	cmd := exec.Command(Binary,
		"--config.file="+configPath,
		"--storage.tsdb.path="+dataDir,
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--web.console.templates=/nonexistent",
		"--web.console.libraries=/nonexistent",
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", Binary, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(s.exited) }()
	if err := s.waitReady(60*time.Second, dataDir); err != nil {
		s.Stop()
		return err
	}
	return nil
}

// waitReady polls until the server answers ready, and checks that it is
// this one: another test's Prometheus may have bound the probed port first
// (then this one exits), and its answer must not pass for ours.
func (s *Server) waitReady(timeout time.Duration, dataDir string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s.checkOwn(client, dataDir)
			}
			err = fmt.Errorf("/-/ready: %s", resp.Status)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("prometheus exited while starting: %s", s.logTail())
		case <-time.After(50 * time.Millisecond): // poll interval
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prometheus at %s not ready after %s: %w; log: %s", s.URL, timeout, err, s.logTail())
		}
	}
}

func (s *Server) checkOwn(client *http.Client, dataDir string) error {
	resp, err := client.Get(s.URL + "/api/v1/status/flags")
	if err != nil {
		return fmt.Errorf("status/flags: %w", err)
	}
	defer resp.Body.Close()
	var flags struct {
		Data map[string]string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&flags); err != nil {
		return fmt.Errorf("status/flags: %w", err)
	}
	if got := flags.Data["storage.tsdb.path"]; got != dataDir {
		return fmt.Errorf("the Prometheus at %s is another one (data in %q): its port was taken", s.URL, got)
	}
	return nil
}

// Stop ends Prometheus (SIGTERM, then SIGKILL after 10s). It is safe to call
// twice; the test's cleanup calls it too.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Log returns the server's log so far.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(log %s: %v)", s.logPath, err)
	}
	return string(b)
}

func (s *Server) logTail() string {
	l := s.Log()
	if len(l) > 4000 {
		l = l[len(l)-4000:]
	}
	return strings.TrimSpace(l)
}

// WaitTargetsUp polls the targets API until at least n active targets are
// up, or fails the test after timeout.
func (s *Server) WaitTargetsUp(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		up, body, err := s.targetsUp(t.Context())
		if err == nil && up >= n {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = body
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus: %d targets not up within %s; last: %s", n, timeout, last)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond): // poll interval
		}
	}
}

func (s *Server) targetsUp(ctx context.Context) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/api/v1/targets?state=active", nil)
	if err != nil {
		return 0, "", fmt.Errorf("targets: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("targets: %w", err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return 0, "", fmt.Errorf("targets: %w", err)
	}
	body := buf.String()
	return strings.Count(body, `"health":"up"`), body, nil
}
