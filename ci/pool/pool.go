// Package pool hands test jobs to the warm runners (ci/runnerd) of the
// runner pool, a Marathon app garrison runs, and is the protocol between
// them. Runners may run on any machine: they share nothing with garrison
// but etcd and its HTTP API.
//
//   - garrison queues a job in etcd (a key under QueuePrefix, on a lease,
//     so a garrison that dies leaves no phantom queue) with the base URL
//     of its API;
//   - a free runner claims it with one transaction that deletes the queue
//     key and writes a claim under ClaimPrefix on the runner's own lease
//     (a runner that dies loses its claims, and the job fails as lost);
//   - the runner fetches the job's workspace from garrison's API as a tar
//     stream (GET WorkspacePath), runs the script in a copy of it, and
//     streams the output back (POST OutputPath) with the exit code in the
//     request's trailer;
//   - garrison deletes the claim when it gives the job up (cancelled, timed
//     out): the runner kills the job.
//
// The pool's autoscale rule reads the queue and the claims (scout/runners).
package pool

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/registrar"
)

// Limits, stated in the README.
const (
	// MaxJob bounds a queued job (its script and env): it is one etcd
	// value, and etcd takes requests of 1.5 MiB.
	MaxJob = 1 << 20
	// MaxWorkspace bounds the workspace sent to a runner, as a build
	// context is bounded.
	MaxWorkspace = 2 << 30
	// MaxTimeout bounds a job's run, as a step's timeout is bounded.
	MaxTimeout = 2 * time.Hour
)

// ExitCodeTrailer carries the job's exit code after its output; a job
// that could not run has none and ErrorTrailer says why.
const (
	ExitCodeTrailer = "Garrison-Exit-Code"
	ErrorTrailer    = "Garrison-Error"
)

// Job is one test step as it waits in etcd for a runner.
type Job struct {
	ID      string            `json:"id"`
	Script  string            `json:"script"`
	Env     map[string]string `json:"env,omitempty"`
	Timeout time.Duration     `json:"timeout"`
	// HQ is the base URL of the garrison API that holds the job's
	// workspace and takes its output.
	HQ string `json:"hq"`
}

func prefix(poolApp string) string { return "/garrison/ci/pool/" + url.PathEscape(poolApp) }

// QueuePrefix holds the jobs waiting for a runner of the pool app.
func QueuePrefix(poolApp string) string { return prefix(poolApp) + "/queue/" }

// ClaimPrefix holds the jobs runners took (a Claim each).
func ClaimPrefix(poolApp string) string { return prefix(poolApp) + "/claims/" }

// ClaimKey is job id's claim.
func ClaimKey(poolApp, id string) string { return ClaimPrefix(poolApp) + url.PathEscape(id) }

// Claim is the value of a claim: the runner that took the job, and why
// it gives the job up when it cannot tell garrison through the API (its
// calls were refused).
type Claim struct {
	Runner string `json:"runner"`
	Error  string `json:"error,omitempty"`
}

// JobsPath holds the runners' routes on garrison's API.
const JobsPath = "/api/v1/ci/pool/jobs/"

// JobPath is job id's route; WorkspacePath and OutputPath are under it.
func JobPath(id string) string { return JobsPath + url.PathEscape(id) }

// WorkspacePath serves a job's workspace (GET, a tar stream).
func WorkspacePath(id string) string { return JobPath(id) + "/workspace" }

// OutputPath takes a job's output (POST, chunked, the exit code in a
// trailer).
func OutputPath(id string) string { return JobPath(id) + "/output" }

// Instances lists the addresses (host:port) of the pool app's registered
// runners.
func Instances(ctx context.Context, kv clientv3.KV, poolApp string) ([]string, error) {
	resp, err := kv.Get(ctx, registrar.ServicePrefix(app.ServiceName(poolApp)), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list runners of %s: %w", poolApp, err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		inst, err := registrar.DecodeInstance(kv.Key, kv.Value)
		if err != nil {
			continue
		}
		if id := inst.Endpoint.Metadata["appId"]; id != "" && id != poolApp {
			continue
		}
		out = append(out, inst.Endpoint.Addr)
	}
	return out, nil
}

// Pool is garrison's side of one pool app: it queues jobs and serves
// their workspaces and output routes.
type Pool struct {
	etcd *clientv3.Client
	app  string
	hq   string

	// lease holds every queued job's key: a garrison that dies leaves no
	// phantom queue.
	lease *Lease

	mu   sync.Mutex
	jobs map[string]*waiting
}

// New returns the pool of app poolApp; hq is the base URL runners reach
// this garrison's API at (http://127.0.0.1:8080).
func New(etcd *clientv3.Client, poolApp, hq string) *Pool {
	return &Pool{etcd: etcd, app: poolApp, hq: hq, jobs: map[string]*waiting{}, lease: NewLease(context.Background(), etcd)}
}

// App is the pool's app id.
func (p *Pool) App() string { return p.app }

// ErrLost is a runner that went away during a job (its claim ended
// without an exit code).
var ErrLost = errors.New("the runner went away during the job")

// ClaimGone is what a runner reports when its claim went while it ran the
// job: garrison gave the job up, or the runner's own lease ended. garrison
// deletes a claim only after it stopped waiting for the output, so a
// report of it that still finds garrison waiting is the lease: the runner
// was lost, even when its report is read before the claim's deletion.
const ClaimGone = "the job's claim is gone (garrison gave the job up, or the runner's lease ended)"

type result struct {
	code int
	err  error
}

// waiting is a job this garrison queued: its workspace, and its log until
// Run returns.
type waiting struct {
	dir    string
	result chan result
	posted bool // under Pool.mu: one output stream per job

	mu  sync.Mutex
	log io.Writer // nil once Run returned
}

func (w *waiting) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.log != nil {
		w.log.Write(b)
	}
	return len(b), nil
}

// Run queues job with the workspace dir until a runner takes it, copies
// its output to log and returns its exit code. When ctx ends first the
// runner is told to stop the job.
func (p *Pool) Run(ctx context.Context, job Job, dir string, log io.Writer) (int, error) {
	job.HQ = p.hq
	if job.Timeout <= 0 || job.Timeout > MaxTimeout {
		job.Timeout = MaxTimeout
	}
	body, err := json.Marshal(job)
	if err != nil {
		return -1, fmt.Errorf("encode job %s: %w", job.ID, err)
	}
	if len(body) > MaxJob {
		return -1, fmt.Errorf("job %s: its script and env take %d bytes, over the warm runners' %d", job.ID, len(body), MaxJob)
	}
	w := &waiting{dir: dir, log: log, result: make(chan result, 1)}
	p.mu.Lock()
	if _, dup := p.jobs[job.ID]; dup {
		p.mu.Unlock()
		return -1, fmt.Errorf("job %s is already queued", job.ID)
	}
	p.jobs[job.ID] = w
	p.mu.Unlock()
	claim, queued := ClaimKey(p.app, job.ID), QueuePrefix(p.app)+url.PathEscape(job.ID)
	answered := false
	defer func() {
		p.mu.Lock()
		delete(p.jobs, job.ID)
		p.mu.Unlock()
		w.mu.Lock()
		w.log = nil
		w.mu.Unlock()
		if answered {
			return // the runner ends its claim itself
		}
		// Out of the queue, and a runner still on the job stops it.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		p.etcd.Txn(dctx).Then(clientv3.OpDelete(queued), clientv3.OpDelete(claim)).Commit()
	}()
	lease, err := p.lease.ID(ctx)
	if err != nil {
		return -1, fmt.Errorf("queue job %s: %w", job.ID, err)
	}
	put, err := p.etcd.Put(ctx, queued, string(body), clientv3.WithLease(lease))
	if err != nil {
		return -1, fmt.Errorf("queue job %s: %w", job.ID, err)
	}
	rev, lost := put.Header.Revision, ErrLost
	fmt.Fprintf(log, "*** waiting for a warm runner of %s\n", p.app)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	for {
		watch := p.etcd.Watch(clientv3.WithRequireLeader(wctx), claim, clientv3.WithRev(rev+1))
		for wr := range watch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				rev = ev.Kv.ModRevision
				if ev.Type == clientv3.EventTypePut {
					var c Claim
					json.Unmarshal(ev.Kv.Value, &c)
					if c.Error != "" {
						lost = fmt.Errorf("%w: runner %s: %s", ErrLost, c.Runner, c.Error)
					} else {
						fmt.Fprintf(log, "*** runner %s took the job\n", c.Runner)
					}
					continue
				}
				// The runner ends its claim after its output: a claim
				// gone with no result is a runner gone.
				select {
				case r := <-w.result:
					answered = true
					return r.code, r.err
				default:
					return -1, lost
				}
			}
		}
		select {
		case r := <-w.result:
			answered = true
			return r.code, r.err
		case <-ctx.Done():
			return -1, context.Cause(ctx)
		case <-time.After(time.Second): // etcd unreachable: watch again
		}
	}
}

// Handler serves the runners' routes under JobsPath: the workspaces of
// the jobs they took, and their output.
func (p *Pool) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+JobsPath+"{id}/workspace", func(w http.ResponseWriter, r *http.Request) {
		p.ServeWorkspace(w, r, r.PathValue("id"))
	})
	mux.HandleFunc("POST "+JobsPath+"{id}/output", func(w http.ResponseWriter, r *http.Request) {
		p.ServeOutput(w, r, r.PathValue("id"))
	})
	return mux
}

// Close gives up the queue's lease: jobs still queued leave the queue.
func (p *Pool) Close() { p.lease.Close() }

func (p *Pool) job(id string) *waiting {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.jobs[id]
}

// ServeWorkspace writes job id's workspace as a tar stream: files,
// directories and symbolic links (kept as links, never followed).
func (p *Pool) ServeWorkspace(w http.ResponseWriter, r *http.Request, id string) {
	j := p.job(id)
	if j == nil {
		http.Error(w, fmt.Sprintf("no job %s waits on this garrison", id), http.StatusNotFound)
		return
	}
	root, err := os.OpenRoot(j.dir)
	if err != nil {
		http.Error(w, "workspace: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer root.Close()
	// A large workspace takes longer than the server's write timeout.
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(30 * time.Minute))
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Trailer", ErrorTrailer)
	tw := tar.NewWriter(&capped{w: w, left: MaxWorkspace})
	err = tw.AddFS(root.FS())
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		// The status is sent: the trailer says the stream is not whole.
		w.Header().Set(ErrorTrailer, "workspace: "+err.Error())
	}
}

// capped fails writes past its limit.
type capped struct {
	w    io.Writer
	left int64
}

func (c *capped) Write(b []byte) (int, error) {
	if int64(len(b)) > c.left {
		return 0, fmt.Errorf("the workspace is over %d bytes", int64(MaxWorkspace))
	}
	c.left -= int64(len(b))
	return c.w.Write(b)
}

// ServeOutput takes job id's output, copied to the job's log as it comes,
// and its exit code from the request's trailer.
func (p *Pool) ServeOutput(w http.ResponseWriter, r *http.Request, id string) {
	p.mu.Lock()
	j := p.jobs[id]
	taken := j != nil && j.posted
	if j != nil {
		j.posted = true
	}
	p.mu.Unlock()
	switch {
	case j == nil:
		http.Error(w, fmt.Sprintf("no job %s waits on this garrison", id), http.StatusNotFound)
		return
	case taken:
		http.Error(w, fmt.Sprintf("job %s already has its output", id), http.StatusConflict)
		return
	}
	// The output comes for as long as the job runs (its own timeout
	// bounds it), past the server's read and write timeouts.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	res := result{code: -1}
	if _, err := io.Copy(j, r.Body); err != nil {
		res.err = fmt.Errorf("%w: %v", ErrLost, err)
	} else if msg := r.Trailer.Get(ErrorTrailer); strings.Contains(msg, ClaimGone) {
		res.err = fmt.Errorf("%w: runner: %s", ErrLost, msg)
	} else if msg != "" {
		res.err = fmt.Errorf("runner: %s", msg)
	} else if code, err := strconv.Atoi(r.Trailer.Get(ExitCodeTrailer)); err != nil {
		res.err = ErrLost
	} else {
		res.code = code
	}
	j.result <- res // buffered, and sent once (posted)
	rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	w.WriteHeader(http.StatusNoContent)
}
