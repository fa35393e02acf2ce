// Package runnerd is the warm test runner: a small HTTP server that
// garrison runs as a Marathon app (the runner pool, `garrison runnerd`)
// and autoscales, as the origin ran Jenkins agents on Marathon. It is
// warm: a test step taken by it starts a shell in a process that is
// already up, not a container. Each runner takes one job at a time (a
// Jenkins agent with one executor): POST /jobs answers 409 while it is
// busy, and the pool client (ci/pool) tries the next one.
//
// Its /metrics shows garrison_runner_busy (0 or 1): the runners' busy
// fraction and the pool's queue are what its autoscale rule votes on
// (scout/runners).
package runnerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Limits, stated in the README.
const (
	// MaxJobBody bounds a POST /jobs body (a step's script and env).
	MaxJobBody = 4 << 20
	// MaxTimeout bounds a job's run, as a step's timeout is bounded.
	MaxTimeout = 2 * time.Hour
)

// ExitCodeTrailer carries the job's exit code after its output; a job
// that could not run has none and ErrorTrailer says why.
const (
	ExitCodeTrailer = "Garrison-Exit-Code"
	ErrorTrailer    = "Garrison-Error"
)

// Job is one test step: a shell script run in Dir (the run's workspace)
// with Env.
type Job struct {
	ID      string            `json:"id"`
	Script  string            `json:"script"`
	Env     map[string]string `json:"env,omitempty"`
	Dir     string            `json:"dir"`
	Timeout time.Duration     `json:"timeout"`
}

// Server runs jobs one at a time.
type Server struct {
	log  *slog.Logger
	busy atomic.Bool
	jobs prometheus.Counter
	reg  *prometheus.Registry
}

// New returns a runner.
func New(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{log: logger, reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounter(prometheus.CounterOpts{Name: "garrison_runner_jobs_total", Help: "Jobs this runner took."})}
	s.reg.MustRegister(s.jobs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "garrison_runner_busy", Help: "1 while a job runs."},
		func() float64 {
			if s.busy.Load() {
				return 1
			}
			return 0
		}))
	return s
}

// Handler serves /health, /metrics and POST /jobs.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /jobs", s.run)
	return mux
}

func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	var job Job
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxJobBody)).Decode(&job); err != nil {
		http.Error(w, "invalid job: "+err.Error(), http.StatusBadRequest)
		return
	}
	if st, err := os.Stat(job.Dir); !filepath.IsAbs(job.Dir) || err != nil || !st.IsDir() {
		http.Error(w, fmt.Sprintf("job dir %q: not an existing absolute directory on this runner's machine", job.Dir), http.StatusUnprocessableEntity)
		return
	}
	if job.Timeout <= 0 || job.Timeout > MaxTimeout {
		job.Timeout = MaxTimeout
	}
	if !s.busy.CompareAndSwap(false, true) {
		http.Error(w, "busy", http.StatusConflict)
		return
	}
	defer s.busy.Store(false)
	s.jobs.Inc()
	w.Header().Set("Trailer", ExitCodeTrailer+", "+ErrorTrailer)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	out := &flushWriter{w: w, rc: http.NewResponseController(w)}
	out.rc.Flush()
	code, err := s.exec(r.Context(), job, out)
	if err != nil {
		w.Header().Set(ErrorTrailer, err.Error())
		s.log.Warn("runner job failed to run", "job", job.ID, "error", err)
		return
	}
	w.Header().Set(ExitCodeTrailer, strconv.Itoa(code))
}

// exec runs the script in its own process group, killed whole when the
// caller goes away or the timeout passes.
func (s *Server) exec(ctx context.Context, job Job, out io.Writer) (int, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, job.Timeout, fmt.Errorf("timed out after %s", job.Timeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", job.Script)
	cmd.Dir = job.Dir
	// The job's env and a PATH, nothing of the runner's own.
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + job.Dir}
	for k, v := range job.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return -1, context.Cause(ctx)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// flushWriter sends each write at once: the run's log shows the test's
// output as it comes.
type flushWriter struct {
	mu sync.Mutex
	w  io.Writer
	rc *http.ResponseController
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.w.Write(p)
	f.rc.Flush()
	return n, err
}

// DefaultDrain is how long a stopping runner lets its job finish: the
// pool app's taskKillGracePeriodSeconds matches it, so a scale-down that
// picks a busy runner waits for its job instead of failing it.
const DefaultDrain = 10 * time.Minute

// Serve listens on addr (host:port; the port garrison assigned in PORT0
// when addr has none) and serves until ctx ends, then drains.
func Serve(ctx context.Context, addr string, drain time.Duration, logger *slog.Logger) error {
	if addr == "" {
		addr = "127.0.0.1:" + os.Getenv("PORT0")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("runnerd: listen on %s: %w", addr, err)
	}
	logger.Info("runnerd listening", "addr", l.Addr().String())
	return ServeListener(ctx, l, drain, logger)
}

// ServeListener serves on l until ctx ends (garrison's SIGTERM: the
// registry no longer lists this runner), then takes no new job and lets
// the one running finish for up to drain before killing it.
func ServeListener(ctx context.Context, l net.Listener, drain time.Duration, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	jobs, killJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer killJobs()
	srv := &http.Server{Handler: New(logger).Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return jobs }}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return fmt.Errorf("runnerd: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("runnerd: job still running after the drain: killed", "drain", drain)
		killJobs()
		// The killed job's caller still gets its error trailer.
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer kcancel()
		if srv.Shutdown(kctx) != nil {
			srv.Close()
		}
	}
	return nil
}
