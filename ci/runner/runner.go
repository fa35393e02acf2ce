// Package runner runs queued pipeline runs on the leader: it takes runs
// from etcd in order, at most each project's limit at a time, checks out
// the pushed revision, runs the build step in a fresh container, builds
// and pushes the product image, and records every outcome in etcd. Only
// the leader runs anything; on becoming leader it first fails the runs a
// previous leader left in flight and removes their containers.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/executor"
	"github.com/garrisonhq/garrison/ci/pipeline"
	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/images"
)

// Projects finds a project's configuration.
type Projects interface {
	Get(ctx context.Context, name string) (project.Project, error)
}

// Steps runs step containers and removes what a lost run left.
type Steps interface {
	Run(ctx context.Context, spec executor.Spec, log io.Writer) (int, error)
	RemoveRun(ctx context.Context, runID string) (int, error)
}

// Products builds and pushes a run's product image.
type Products interface {
	Build(ctx context.Context, p images.Product, log io.Writer) (images.Result, error)
}

// Releases deploys a run's alpha, records its release and promotes it.
type Releases interface {
	DeployAlpha(ctx context.Context, id string, def map[string]any, image string, log io.Writer) (string, error)
	Destroy(ctx context.Context, id string) error
	Record(ctx context.Context, r deploy.Release) error
	Promote(ctx context.Context, app, version, env, by string, log io.Writer) error
}

// Config is what the runner needs.
type Config struct {
	Runs     *run.Store
	Projects Projects
	Steps    Steps
	// Products is nil when no image is built (runs end after the build).
	Products Products
	// Releases is nil when nothing is deployed (runs end after the image).
	Releases Releases
	Watcher  clientv3.Watcher
	// DataDir holds logs (ci/logs) and workspaces (ci/workspaces).
	DataDir string
	// Node names this garrison in the runs it takes.
	Node string
	// IsLeader reports whether this garrison may run pipelines; nil means
	// always (one machine).
	IsLeader func() bool
	// Poll is how often leadership and the queue are checked besides etcd's
	// watch (default 1s).
	Poll   time.Duration
	Logger *slog.Logger
	// Pool runs test steps without an image on warm runners; nil fails
	// them.
	Pool Pool
	// Mail sends the pipelines' notification mail; nil sends none.
	Mail Mailer
}

// Pool hands a job and its workspace to a warm runner and waits for its
// exit code.
type Pool interface {
	Run(ctx context.Context, job pool.Job, workspace string, log io.Writer) (int, error)
}

// errNoPool fails a step meant for a warm runner on a garrison with none.
var errNoPool = errors.New("a test step without an image runs on a warm runner, and this garrison has no runner pool (--ci-runner-pool)")

// warm runs a test step on a warm runner, bounded by its timeout.
func (r *Runner) warm(ctx context.Context, x *run.Run, st pipeline.Step, ws string, env map[string]string, log io.Writer) (int, error) {
	if r.cfg.Pool == nil {
		return -1, errNoPool
	}
	ctx, cancel := context.WithTimeoutCause(ctx, st.Timeout, fmt.Errorf("step %s timed out after %s", st.Name, st.Timeout))
	defer cancel()
	for k, v := range st.Env {
		env[k] = v
	}
	// The runner works in its own copy of the workspace and sets
	// CI_WORKSPACE to it.
	return r.cfg.Pool.Run(ctx, pool.Job{ID: x.ID + "." + st.Name, Script: st.Script(), Env: env, Timeout: st.Timeout}, ws, log)
}

// Runner runs pipelines.
type Runner struct {
	cfg Config

	mu     sync.Mutex
	active map[string]context.CancelCauseFunc
	wg     sync.WaitGroup
	done   chan struct{} // a run ended: look at the queue again
}

// New returns a runner.
func New(cfg Config) *Runner {
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.IsLeader == nil {
		cfg.IsLeader = func() bool { return true }
	}
	return &Runner{cfg: cfg, active: map[string]context.CancelCauseFunc{}, done: make(chan struct{}, 1)}
}

// LogPath is the file holding a run's log.
func LogPath(dataDir, runID string) string {
	project, n, err := run.ParseID(runID)
	if err != nil {
		return filepath.Join(dataDir, "ci", "logs", "invalid")
	}
	return filepath.Join(dataDir, "ci", "logs", project, strconv.Itoa(n)+".log")
}

func (r *Runner) workspace(runID string) string {
	return filepath.Join(r.cfg.DataDir, "ci", "workspaces", runID)
}

var (
	errCancelled = errors.New("cancelled by request")
	errStopping  = errors.New("garrison stopped while the run was in flight")
	errDeposed   = errors.New("this garrison stopped being the leader while the run was in flight")
)

// Run runs pipelines while this garrison leads, until ctx ends. Runs in
// flight when it returns have been stopped and marked failed.
func (r *Runner) Run(ctx context.Context) error {
	tick := time.NewTicker(r.cfg.Poll)
	defer tick.Stop()
	for {
		if r.cfg.IsLeader() {
			r.lead(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// lead runs pipelines until ctx ends or leadership is lost, then stops
// the runs in flight and waits for them to be recorded.
func (r *Runner) lead(ctx context.Context) {
	lctx, cancel := context.WithCancelCause(ctx)
	defer func() {
		r.stopAll(errStopping)
		r.wg.Wait()
		cancel(nil)
	}()
	r.recover(lctx)
	poke := run.Watch(lctx, r.cfg.Watcher)
	tick := time.NewTicker(r.cfg.Poll)
	defer tick.Stop()
	for {
		if err := r.reconcile(lctx); err != nil && lctx.Err() == nil {
			r.cfg.Logger.Warn("runner: reading the queue", "error", err)
		}
		select {
		case <-lctx.Done():
			return
		case <-poke:
		case <-r.done:
		case <-tick.C:
			if !r.cfg.IsLeader() {
				r.cfg.Logger.Warn("runner: no longer the leader; stopping runs in flight")
				r.stopAll(errDeposed)
				return
			}
		}
	}
}

func (r *Runner) stopAll(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.active {
		c(cause)
	}
}

// recover fails the runs a previous leader (or this garrison, before a
// crash) left running, and removes every step container they left.
func (r *Runner) recover(ctx context.Context) {
	running, err := r.cfg.Runs.List(ctx, run.Filter{State: run.Running})
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.Error("runner: cannot list runs in flight", "error", err)
		}
		return
	}
	for _, lost := range running {
		n, err := r.cfg.Steps.RemoveRun(ctx, lost.ID)
		reason := fmt.Sprintf("garrison restarted while the run was in flight on %s; %d step container(s) removed", lost.Node, n)
		if err != nil {
			reason += "; removing its containers failed: " + err.Error()
		}
		if _, err := r.cfg.Runs.Update(ctx, lost.ID, func(x *run.Run) error {
			x.State, x.Reason = run.Failed, reason
			for i := range x.Steps {
				if !x.Steps[i].State.Final() {
					x.Steps[i].State = run.Failed
				}
			}
			return nil
		}); err != nil && !errors.Is(err, run.ErrFinished) {
			r.cfg.Logger.Error("runner: cannot fail a lost run", "run", lost.ID, "error", err)
			continue
		}
		r.appendLog(lost.ID, "\n*** "+reason+"\n")
		r.cfg.Logger.Warn("runner: failed a run left in flight", "run", lost.ID, "reason", reason)
	}
	// Containers of runs that never got to running (a crash between the
	// container's start and the state write) go too: nothing runs yet.
	if _, err := r.cfg.Steps.RemoveRun(ctx, ""); err != nil {
		r.cfg.Logger.Warn("runner: removing leftover step containers", "error", err)
	}
}

// reconcile cancels what was asked to stop and starts queued runs within
// their projects' limits, oldest first.
func (r *Runner) reconcile(ctx context.Context) error {
	runs, err := r.cfg.Runs.List(ctx, run.Filter{})
	if err != nil {
		return err
	}
	projects := map[string]*project.Project{}
	getProject := func(name string) (*project.Project, error) {
		if p, ok := projects[name]; ok {
			return p, nil
		}
		p, err := r.cfg.Projects.Get(ctx, name)
		if err != nil {
			if errors.Is(err, project.ErrNotFound) {
				projects[name] = nil
				return nil, nil
			}
			return nil, err
		}
		projects[name] = &p
		return &p, nil
	}
	inFlight := map[string]int{}
	for _, x := range runs {
		if x.State != run.Running {
			continue
		}
		inFlight[x.Project]++
		if x.CancelRequested {
			r.mu.Lock()
			if c, ok := r.active[x.ID]; ok {
				c(errCancelled)
			}
			r.mu.Unlock()
		}
	}
	for _, x := range runs {
		if x.State != run.Queued {
			continue
		}
		if x.CancelRequested {
			r.finish(ctx, x.ID, run.Cancelled, errCancelled.Error())
			continue
		}
		p, err := getProject(x.Project)
		if err != nil {
			return err
		}
		if p == nil {
			r.finish(ctx, x.ID, run.Failed, "project "+x.Project+" no longer exists")
			continue
		}
		if inFlight[x.Project] >= p.MaxConcurrent {
			continue
		}
		started, err := r.cfg.Runs.Update(ctx, x.ID, func(y *run.Run) error {
			if y.State != run.Queued || y.CancelRequested {
				return errSkip
			}
			now := time.Now().UTC()
			y.State, y.Node, y.Started = run.Running, r.cfg.Node, &now
			return nil
		})
		if err != nil {
			if errors.Is(err, errSkip) || errors.Is(err, run.ErrFinished) {
				continue
			}
			return err
		}
		inFlight[x.Project]++
		// Only the runner's own cancel stops a run, with a cause that
		// says why (cancelled, stopping, deposed).
		rctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		r.mu.Lock()
		r.active[x.ID] = cancel
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.execute(rctx, started, *p)
			cancel(nil)
			r.mu.Lock()
			delete(r.active, started.ID)
			r.mu.Unlock()
			select {
			case r.done <- struct{}{}:
			default:
			}
		}()
	}
	return nil
}

var errSkip = errors.New("skip")

func (r *Runner) finish(ctx context.Context, id string, state run.State, reason string) {
	if _, err := r.cfg.Runs.Update(context.WithoutCancel(ctx), id, func(x *run.Run) error {
		x.State, x.Reason = state, reason
		return nil
	}); err != nil && !errors.Is(err, run.ErrFinished) {
		r.cfg.Logger.Error("runner: recording the end of a run", "run", id, "state", state, "error", err)
	}
}

func (r *Runner) appendLog(id, text string) {
	path := LogPath(r.cfg.DataDir, id)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	f.WriteString(text)
	f.Close()
}

// env is what every step sees of the run.
func env(x *run.Run, p project.Project) map[string]string {
	e := map[string]string{
		"CI": "true", "GARRISON_RUN": x.ID, "GARRISON_PROJECT": x.Project,
		"CI_COMMIT_SHA": x.Push.After, "CI_COMMIT_REF": x.Push.Ref,
		"CI_COMMIT_BRANCH": x.Push.Branch(), "CI_COMMIT_TAG": x.Push.Tag(),
		"CI_COMMIT_AUTHOR": x.Push.Committer.Name, "CI_WORKSPACE": pipeline.Workspace,
	}
	for k, v := range p.Secrets {
		e[k] = v
	}
	return e
}

// execute takes one run from checkout to its end and records the end.
func (r *Runner) execute(ctx context.Context, x *run.Run, p project.Project) {
	logPath := LogPath(r.cfg.DataDir, x.ID)
	var log io.Writer = io.Discard
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err == nil {
		if f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			defer f.Close()
			log = f
		}
	}
	log = newMasker(log, p.Secrets)
	fmt.Fprintf(log, "*** run %s of %s: %s at %s (%s)\n", x.ID, p.Name, x.Push.Ref, x.Push.After, x.Push.Committer.Name)

	ws := r.workspace(x.ID)
	state, reason, pl := r.stages(ctx, x, p, ws, log)
	// Before the end is recorded: a finished run has no workspace left.
	if err := os.RemoveAll(ws); err != nil {
		r.cfg.Logger.Warn("runner: removing a workspace", "run", x.ID, "error", err)
	}
	if cause := context.Cause(ctx); ctx.Err() != nil {
		state, reason = run.Failed, cause.Error()
		if errors.Is(cause, errCancelled) {
			state = run.Cancelled
		}
	}
	fmt.Fprintf(log, "*** %s", state)
	if reason != "" {
		fmt.Fprintf(log, ": %s", reason)
	}
	fmt.Fprintln(log)
	r.finish(ctx, x.ID, state, reason)
	r.cfg.Logger.Info("run ended", "run", x.ID, "state", state, "reason", reason)
	if pl != nil {
		r.notify(ctx, x.ID, p, pl.Notify)
	}
	r.prune(ctx, p)
}

// stages runs checkout, build, image and release, stopping at the first
// failure. It returns the pipeline once the file was read.
func (r *Runner) stages(ctx context.Context, x *run.Run, p project.Project, ws string, log io.Writer) (run.State, string, *pipeline.Pipeline) {
	pl, state, reason := r.build(ctx, x, p, ws, log)
	return state, reason, pl
}

func (r *Runner) build(ctx context.Context, x *run.Run, p project.Project, ws string, log io.Writer) (*pipeline.Pipeline, run.State, string) {
	fmt.Fprintf(log, "*** checkout %s\n", x.Push.After)
	if err := checkout(ctx, p.Repo, x.Push.After, ws, log); err != nil {
		return nil, run.Failed, "checkout: " + err.Error()
	}
	data, err := os.ReadFile(filepath.Join(ws, p.Pipeline))
	if err != nil {
		return nil, run.Failed, fmt.Sprintf("the repository has no pipeline file %s at %s", p.Pipeline, x.Push.After)
	}
	pl, err := pipeline.Parse(data, p.Pipeline)
	if err != nil {
		fmt.Fprintf(log, "%s\n", err)
		return nil, run.Failed, "pipeline file: " + strings.SplitN(err.Error(), "\n", 2)[0]
	}
	code, err := r.step(ctx, x, p, pl.Build, ws, nil, log)
	if err != nil {
		return pl, run.Failed, "build step: " + err.Error()
	}
	if code != 0 {
		return pl, run.Failed, fmt.Sprintf("build step exited with code %d", code)
	}
	if r.cfg.Products == nil {
		fmt.Fprintln(log, "*** no image registry configured: the run ends after the build")
		return pl, run.Passed, ""
	}
	version := x.Push.After
	if len(version) > 12 {
		version = version[:12]
	}
	version = fmt.Sprintf("%d-%s", x.Number, version)
	prod := images.Product{
		Name: pl.ImageName(), Version: version, Base: pl.Image.Base, Workspace: ws,
		Entrypoint: pl.Image.Entrypoint, Cmd: pl.Image.Cmd, Env: pl.Image.Env,
		Revision: x.Push.After, Source: firstOf(x.Push.RepoURL, p.Repo), RunID: x.ID,
		Committer: strings.TrimSpace(x.Push.Committer.Name + " <" + x.Push.Committer.Email + ">"),
	}
	for _, f := range pl.Image.Files {
		prod.Files = append(prod.Files, images.File{From: f.From, To: f.To})
	}
	fmt.Fprintf(log, "*** image %s:%s\n", prod.Name, prod.Version)
	res, err := r.cfg.Products.Build(ctx, prod, log)
	if err != nil {
		return pl, run.Failed, "product image: " + err.Error()
	}
	if _, err := r.cfg.Runs.Update(ctx, x.ID, func(y *run.Run) error { y.Version, y.Image = version, res.Ref; return nil }); err != nil {
		return pl, run.Failed, "recording the image: " + err.Error()
	}
	fmt.Fprintf(log, "*** pushed %s (%s)\n", res.Ref, res.Digest)
	if pl.Deploy == nil || r.cfg.Releases == nil {
		if len(pl.Tests) > 0 {
			fmt.Fprintln(log, "*** nothing to deploy the tests against (no deploy section, or no Marathon target): tests skipped")
		}
		return pl, run.Passed, ""
	}
	state, reason := r.release(ctx, x, p, pl, prod, res.Ref, ws, log)
	return pl, state, reason
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// step runs one step, recording its start and end in the run; extra is
// added to the step's environment.
func (r *Runner) step(ctx context.Context, x *run.Run, p project.Project, st pipeline.Step, ws string, extra map[string]string, log io.Writer) (int, error) {
	now := time.Now().UTC()
	idx := -1
	if _, err := r.cfg.Runs.Update(ctx, x.ID, func(y *run.Run) error {
		y.Steps = append(y.Steps, run.Step{Name: st.Name, State: run.Running, Started: &now})
		idx = len(y.Steps) - 1
		return nil
	}); err != nil {
		return -1, err
	}
	where := st.Image
	if where == "" {
		where = "a warm runner"
	}
	fmt.Fprintf(log, "*** step %s in %s\n", st.Name, where)
	e := env(x, p)
	for k, v := range extra {
		e[k] = v
	}
	var code int
	var err error
	if st.Image == "" {
		code, err = r.warm(ctx, x, st, ws, e, log)
	} else {
		code, err = r.cfg.Steps.Run(ctx, executor.Spec{RunID: x.ID, Step: st, Workspace: ws, Env: e}, log)
	}
	end := time.Now().UTC()
	state := run.Passed
	if err != nil || code != 0 {
		state = run.Failed
	}
	r.cfg.Runs.Update(context.WithoutCancel(ctx), x.ID, func(y *run.Run) error {
		if idx < len(y.Steps) {
			y.Steps[idx].State, y.Steps[idx].Finished = state, &end
			if err == nil {
				c := code
				y.Steps[idx].ExitCode = &c
			}
		}
		return nil
	})
	return code, err
}

// checkout clones repo and checks out rev detached, with the git command.
func checkout(ctx context.Context, repo, rev, dir string, log io.Writer) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	os.RemoveAll(dir)
	gitEnv := append(os.Environ(), "GIT_TERMINAL_PROMPT=0",
		// ext:: and fd:: transports run commands: only fetch protocols.
		"GIT_ALLOW_PROTOCOL=file:git:http:https:ssh")
	for _, args := range [][]string{
		{"clone", "--quiet", "--no-checkout", "--", repo, dir},
		{"checkout", "--quiet", "--detach", rev},
	} {
		cmd := exec.CommandContext(ctx, "git", args...)
		if args[0] == "checkout" {
			cmd.Dir = dir
		}
		cmd.Env, cmd.Stdout, cmd.Stderr = gitEnv, log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("git %s (its output is in the log): %w", args[0], err)
		}
	}
	return nil
}

// prune drops the project's finished runs beyond its retention, with
// their logs.
func (r *Runner) prune(ctx context.Context, p project.Project) {
	dropped, err := r.cfg.Runs.Prune(context.WithoutCancel(ctx), p.Name, p.KeepRuns)
	if err != nil {
		r.cfg.Logger.Warn("runner: retention", "project", p.Name, "error", err)
		return
	}
	for _, d := range dropped {
		os.Remove(LogPath(r.cfg.DataDir, d.ID))
	}
}

// masker hides the project's secrets in the log. A secret split across
// two writes is not caught; steps' output arrives in lines in practice.
type masker struct {
	w       io.Writer
	secrets []string
}

func newMasker(w io.Writer, secrets map[string]string) io.Writer {
	m := &masker{w: w}
	for _, v := range secrets {
		if len(v) >= 4 {
			m.secrets = append(m.secrets, v)
		}
	}
	if len(m.secrets) == 0 {
		return w
	}
	return m
}

func (m *masker) Write(p []byte) (int, error) {
	s := string(p)
	for _, v := range m.secrets {
		s = strings.ReplaceAll(s, v, "****")
	}
	if _, err := io.WriteString(m.w, s); err != nil {
		return 0, err
	}
	return len(p), nil
}
