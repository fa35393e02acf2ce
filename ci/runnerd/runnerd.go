// Package runnerd is the warm test runner: one instance of the runner
// pool, a Marathon app garrison runs in containers (`garrison runnerd` in
// the image BuildImage makes) and autoscales, as the origin ran Jenkins
// agents on Marathon. It is warm: a test step starts a shell in a
// container that is already up, not a new container; and isolated: the
// step sees the image and a copy of its workspace, nothing of the host.
//
// A runner shares nothing with garrison but etcd and garrison's API, so it
// may run on any machine: it registers itself in etcd like any instance,
// claims queued jobs there (ci/pool), fetches each job's workspace from
// the API and streams the output back. It takes one job at a time (a
// Jenkins agent with one executor).
//
// Its /metrics shows garrison_runner_busy (0 or 1) and /health answers
// garrison's health check.
package runnerd

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/registrar"
)

// DefaultDrain is how long a stopping runner lets its job finish: the
// pool app's taskKillGracePeriodSeconds matches it, so a scale-down that
// picks a busy runner waits for its job instead of failing it.
const DefaultDrain = 10 * time.Minute

// Config is what a runner needs.
type Config struct {
	Etcd *clientv3.Client
	// App is the pool app's id; ID this runner's instance id (its task id).
	App, ID string
	// Addr is the host:port of its /health and /metrics, as registered.
	Addr string
	// Token, or Username and Password, authenticate it to garrison's API.
	Token, Username, Password string
	// WorkDir holds the workspaces of its jobs (default: the temporary
	// directory).
	WorkDir string
	// Drain is how long a stopping runner lets its job finish.
	Drain  time.Duration
	Logger *slog.Logger
}

// Runner takes jobs one at a time.
type Runner struct {
	cfg  Config
	hc   *http.Client
	busy atomic.Bool
	jobs prometheus.Counter
	reg  *prometheus.Registry
}

// New returns a runner.
func New(cfg Config) *Runner {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = filepath.Join(os.TempDir(), "garrison-runner")
	}
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultDrain
	}
	r := &Runner{cfg: cfg, hc: &http.Client{}, reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounter(prometheus.CounterOpts{Name: "garrison_runner_jobs_total", Help: "Jobs this runner took."})}
	r.reg.MustRegister(r.jobs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "garrison_runner_busy", Help: "1 while a job runs."},
		func() float64 {
			if r.busy.Load() {
				return 1
			}
			return 0
		}))
	return r
}

// Handler serves /health and /metrics.
func (r *Runner) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	return mux
}

// Serve serves Handler on l and takes jobs until ctx ends (garrison's
// SIGTERM), then leaves the registry, takes no new job and lets the one
// running finish for up to the drain before killing it.
func Serve(ctx context.Context, l net.Listener, cfg Config) error {
	if cfg.Addr == "" {
		cfg.Addr = l.Addr().String()
	}
	r := New(cfg)
	srv := &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer srv.Close()
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx) }()
	select {
	case err := <-served:
		return fmt.Errorf("runnerd: %w", err)
	case err := <-ran:
		return err
	}
}

// Run registers the runner and takes jobs until ctx ends; a job running
// then gets the drain to finish.
func (r *Runner) Run(ctx context.Context) error {
	log := r.cfg.Logger
	reg, err := registrar.Register(ctx, r.cfg.Etcd, app.ServiceName(r.cfg.App), r.cfg.ID,
		registrar.Endpoint{Addr: r.cfg.Addr, Metadata: map[string]string{"appId": r.cfg.App}}, registrar.WithLogger(log))
	if err != nil {
		return fmt.Errorf("runnerd: register in etcd: %w", err)
	}
	deregister := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		reg.Close(cctx)
	}
	// Out of the registry at once when told to stop, even mid-job.
	defer context.AfterFunc(ctx, deregister)()
	defer deregister()
	// Claims live on a lease of their own, not the registration's: a
	// stopping runner leaves the registry at once but keeps its job.
	claims := pool.NewLease(context.WithoutCancel(ctx), r.cfg.Etcd)
	defer claims.Close()
	log.Info("runner taking jobs", "app", r.cfg.App, "id", r.cfg.ID, "addr", r.cfg.Addr)
	for {
		job, err := r.take(ctx, claims)
		if err == nil {
			// A claimed job runs even when the stop came meanwhile: its
			// claim is on this runner's lease, and returning would fail
			// it as lost (a rolling update of the pool stops runners at
			// any moment).
			r.drained(ctx, func(jctx context.Context) { r.run(jctx, job) })
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("runner: taking a job", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// drained runs f with a context that outlives ctx by the drain, so a job
// taken before the runner was told to stop can finish.
func (r *Runner) drained(ctx context.Context, f func(context.Context)) {
	jctx, kill := context.WithCancelCause(context.WithoutCancel(ctx))
	defer kill(nil)
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.cfg.Drain, func() {
			kill(fmt.Errorf("the runner stopped and the job ran past its drain of %s", r.cfg.Drain))
		})
		context.AfterFunc(jctx, func() { t.Stop() })
	})
	defer stop()
	f(jctx)
}

// take claims the oldest queued job, waiting for one.
func (r *Runner) take(ctx context.Context, claims *pool.Lease) (pool.Job, error) {
	queue := pool.QueuePrefix(r.cfg.App)
	var fresh []*mvccpb.KeyValue // jobs a watch just announced
	for {
		kvs, rev := fresh, int64(0)
		if kvs == nil {
			resp, err := r.cfg.Etcd.Get(ctx, queue, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
			if err != nil {
				return pool.Job{}, fmt.Errorf("read the queue: %w", err)
			}
			kvs, rev = resp.Kvs, resp.Header.Revision
		}
		fresh = nil
		for _, kv := range kvs {
			job, ok, err := r.claim(ctx, claims, kv)
			if err != nil || ok {
				return job, err
			}
			rev = max(rev, kv.ModRevision)
		}
		// Nothing to take: wait for a new job (or look again now and
		// then, should a watch event be missed).
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		watch := r.cfg.Etcd.Watch(clientv3.WithRequireLeader(wctx), queue, clientv3.WithPrefix(),
			clientv3.WithRev(rev+1), clientv3.WithFilterDelete())
		select {
		case wr := <-watch:
			// Claimed straight from the event: no read on the way.
			for _, ev := range wr.Events {
				fresh = append(fresh, ev.Kv)
			}
		case <-wctx.Done():
		}
		cancel()
		if ctx.Err() != nil {
			return pool.Job{}, ctx.Err()
		}
	}
}

// claim takes the queued job kv unless another runner did first.
func (r *Runner) claim(ctx context.Context, claims *pool.Lease, kv *mvccpb.KeyValue) (pool.Job, bool, error) {
	var job pool.Job
	if err := json.Unmarshal(kv.Value, &job); err != nil || job.ID == "" {
		return job, false, nil
	}
	lid, err := claims.ID(ctx)
	if err != nil {
		return job, false, err
	}
	claim, _ := json.Marshal(pool.Claim{Runner: r.cfg.ID})
	// Not cut short by a stop: a claim whose outcome is unknown may hold
	// a job nobody runs.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	txn, err := r.cfg.Etcd.Txn(tctx).
		If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
		Then(clientv3.OpDelete(string(kv.Key)), clientv3.OpPut(pool.ClaimKey(r.cfg.App, job.ID), string(claim), clientv3.WithLease(lid))).
		Commit()
	if err != nil {
		return job, false, fmt.Errorf("claim job %s: %w", job.ID, err)
	}
	return job, txn.Succeeded, nil
}

// run runs a claimed job: fetch the workspace, run the script, stream the
// output back; then give up the claim and remove the workspace.
func (r *Runner) run(ctx context.Context, job pool.Job) {
	r.busy.Store(true)
	defer r.busy.Store(false)
	r.jobs.Inc()
	log := r.cfg.Logger.With("job", job.ID)
	claim := pool.ClaimKey(r.cfg.App, job.ID)
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		r.cfg.Etcd.Delete(dctx, claim)
	}()
	if job.Timeout <= 0 || job.Timeout > pool.MaxTimeout {
		job.Timeout = pool.MaxTimeout
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go r.watchClaim(ctx, claim, cancel)

	// The output goes back as it comes, in one chunked request, which
	// outlives the job's context: a killed job still sends why.
	pr, pw := io.Pipe()
	pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), job.Timeout+time.Minute)
	defer pcancel()
	req, err := r.request(pctx, http.MethodPost, job.HQ+pool.OutputPath(job.ID), pr)
	if err != nil {
		log.Warn("runner: job without a valid garrison URL", "hq", job.HQ, "error", err)
		return
	}
	req.ContentLength = -1
	req.Trailer = http.Header{pool.ExitCodeTrailer: nil, pool.ErrorTrailer: nil}
	posted := make(chan error, 1)
	go func() {
		resp, err := r.hc.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
			}
		}
		if err != nil {
			// Nobody reads the output any more: stop the job.
			cancel(fmt.Errorf("sending the output to %s: %w", job.HQ, err))
			pr.CloseWithError(err)
		}
		posted <- err
	}()

	dir := filepath.Join(r.cfg.WorkDir, url.PathEscape(job.ID))
	defer os.RemoveAll(dir)
	code, err := r.fetch(ctx, job, dir)
	if err == nil {
		code, err = r.exec(ctx, job, dir, pw)
	}
	if err != nil {
		req.Trailer.Set(pool.ErrorTrailer, err.Error())
		log.Warn("runner: job failed to run", "error", err)
	} else {
		req.Trailer.Set(pool.ExitCodeTrailer, strconv.Itoa(code))
	}
	pw.Close()
	if err := <-posted; err != nil {
		log.Warn("runner: the job's output did not reach garrison", "error", err)
		// Said through etcd instead, before the claim goes.
		why, _ := json.Marshal(pool.Claim{Runner: r.cfg.ID, Error: "its output did not reach garrison: " + err.Error()})
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		r.cfg.Etcd.Put(pctx, claim, string(why), clientv3.WithIgnoreLease())
	}
}

// watchClaim cancels the job when its claim goes: garrison gave it up.
func (r *Runner) watchClaim(ctx context.Context, claim string, cancel context.CancelCauseFunc) {
	for ctx.Err() == nil {
		resp, err := r.cfg.Etcd.Get(ctx, claim)
		if err == nil && len(resp.Kvs) == 0 {
			cancel(errors.New(pool.ClaimGone))
			return
		}
		if err == nil {
			for wr := range r.cfg.Etcd.Watch(clientv3.WithRequireLeader(ctx), claim, clientv3.WithRev(resp.Header.Revision+1)) {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypeDelete {
						cancel(errors.New(pool.ClaimGone))
						return
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (r *Runner) request(ctx context.Context, method, target string, body io.Reader) (*http.Request, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("garrison URL %q: want http(s)://host:port", target)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	switch {
	case r.cfg.Token != "":
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	case r.cfg.Username != "":
		req.SetBasicAuth(r.cfg.Username, r.cfg.Password)
	}
	return req, nil
}

// fetch copies the job's workspace from garrison into dir.
func (r *Runner) fetch(ctx context.Context, job pool.Job, dir string) (int, error) {
	req, err := r.request(ctx, http.MethodGet, job.HQ+pool.WorkspacePath(job.ID), nil)
	if err != nil {
		return -1, err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return -1, fmt.Errorf("fetch the workspace: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return -1, fmt.Errorf("fetch the workspace: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return -1, fmt.Errorf("workspace: %w", err)
	}
	if err := untar(resp.Body, dir); err != nil {
		return -1, fmt.Errorf("fetch the workspace: %w", err)
	}
	// The rest of the stream: its trailer says whether it was whole.
	io.Copy(io.Discard, resp.Body)
	if msg := resp.Trailer.Get(pool.ErrorTrailer); msg != "" {
		return -1, fmt.Errorf("fetch the workspace: %s", msg)
	}
	return 0, nil
}

// untar writes a tar stream into dir through an os.Root: no entry, and
// no link it made, leads out of dir.
func untar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(name, mode|0o700)
		case tar.TypeSymlink:
			err = root.Symlink(h.Linkname, name)
		case tar.TypeReg:
			var f *os.File
			f, err = root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err == nil {
				_, err = io.Copy(f, tr)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		default:
			err = fmt.Errorf("%s: unsupported entry type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

// exec runs the script in dir in its own process group, killed whole
// when ctx ends or the timeout passes.
func (r *Runner) exec(ctx context.Context, job pool.Job, dir string, out io.Writer) (int, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, job.Timeout, fmt.Errorf("timed out after %s", job.Timeout))
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", job.Script)
	cmd.Dir = dir
	// The job's env and a PATH, nothing of the runner's own.
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for k, v := range job.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "HOME="+dir, "CI_WORKSPACE="+dir)
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
