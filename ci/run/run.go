// Package run keeps pipeline runs in etcd under /garrison/runs/: their
// state, the push that started them and what each step did. Logs are not
// here; they are files under garrison's data directory.
package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/ci/push"
)

// State is where a run is.
type State string

// States. Passed, failed and cancelled are final.
const (
	Queued    State = "queued"
	Running   State = "running"
	Passed    State = "passed"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)

// Final reports whether s never changes again.
func (s State) Final() bool { return s == Passed || s == Failed || s == Cancelled }

// Valid reports whether s is a state.
func (s State) Valid() bool { return s == Queued || s == Running || s.Final() }

// Limits, stated in the README.
const (
	// MaxQueuedPerProject bounds the runs waiting per project; a push past
	// it is refused (the webhook answers 429 and the sender retries).
	MaxQueuedPerProject = 50
	// MaxCommits is how many of a push's commits a run keeps.
	MaxCommits = 20
)

// Run is one pipeline run.
type Run struct {
	ID      string    `json:"id"`
	Project string    `json:"project"`
	Number  int       `json:"number"`
	State   State     `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	Push    push.Push `json:"push"`
	// CancelRequested is set by the API on any replica; the leader's
	// runner stops the run and marks it cancelled.
	CancelRequested bool   `json:"cancelRequested,omitempty"`
	Version         string `json:"version,omitempty"`
	// Image is the product image pushed to the registry.
	Image string `json:"image,omitempty"`
	// Node is the garrison that ran it.
	Node     string     `json:"node,omitempty"`
	Steps    []Step     `json:"steps,omitempty"`
	Created  time.Time  `json:"created"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
}

// Step is what one step of a run did.
type Step struct {
	Name     string     `json:"name"`
	State    State      `json:"state"`
	ExitCode *int       `json:"exitCode,omitempty"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
}

// Prefix is where runs live in etcd; counters hold each project's last
// run number.
const (
	Prefix        = "/garrison/runs/"
	CounterPrefix = "/garrison/ci/counters/"
)

// ID is a run's id: its project and number, as Jenkins names builds.
func ID(project string, number int) string { return project + "." + strconv.Itoa(number) }

// key sorts a project's runs by number: numbers are zero-padded.
func key(project string, number int) string {
	return fmt.Sprintf("%s%s/%010d", Prefix, project, number)
}

// ParseID splits a run id.
func ParseID(id string) (project string, number int, err error) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 {
		return "", 0, fmt.Errorf("run id %q: want PROJECT.NUMBER", id)
	}
	n, err := strconv.Atoi(id[i+1:])
	if err != nil || n <= 0 {
		return "", 0, fmt.Errorf("run id %q: want PROJECT.NUMBER", id)
	}
	return id[:i], n, nil
}

// ErrNotFound is returned for an unknown run.
var ErrNotFound = errors.New("no such run")

// QueueFullError refuses a run past MaxQueuedPerProject.
type QueueFullError struct{ Project string }

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("project %s has %d runs queued already", e.Project, MaxQueuedPerProject)
}

// LimitReached marks the error as a limit (the webhook answers 429).
func (e *QueueFullError) LimitReached() bool { return true }

// Store keeps runs in etcd.
type Store struct {
	kv  clientv3.KV
	now func() time.Time
}

// NewStore returns a store over kv.
func NewStore(kv clientv3.KV) *Store { return &Store{kv: kv, now: time.Now} }

// Create queues a new run of project for ev, numbered after the project's
// last, in one transaction with the counter.
func (s *Store) Create(ctx context.Context, project string, ev push.Push) (*Run, error) {
	if len(ev.Commits) > MaxCommits {
		ev.Commits = ev.Commits[len(ev.Commits)-MaxCommits:]
	}
	queued, err := s.List(ctx, Filter{Project: project, State: Queued})
	if err != nil {
		return nil, err
	}
	if len(queued) >= MaxQueuedPerProject {
		return nil, &QueueFullError{Project: project}
	}
	counter := CounterPrefix + project
	for {
		resp, err := s.kv.Get(ctx, counter)
		if err != nil {
			return nil, fmt.Errorf("read run counter of %s: %w", project, err)
		}
		last, rev := 0, int64(0)
		if len(resp.Kvs) > 0 {
			last, _ = strconv.Atoi(string(resp.Kvs[0].Value))
			rev = resp.Kvs[0].ModRevision
		}
		r := &Run{ID: ID(project, last+1), Project: project, Number: last + 1, State: Queued, Push: ev, Created: s.now().UTC()}
		data, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encode run %s: %w", r.ID, err)
		}
		txn, err := s.kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(counter), "=", rev)).
			Then(clientv3.OpPut(counter, strconv.Itoa(r.Number)), clientv3.OpPut(key(project, r.Number), string(data))).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("store run %s: %w", r.ID, err)
		}
		if txn.Succeeded {
			return r, nil
		}
		// Another replica numbered a run meanwhile: take the next number.
	}
}

// Get returns a run by id.
func (s *Store) Get(ctx context.Context, id string) (*Run, error) {
	r, _, err := s.get(ctx, id)
	return r, err
}

func (s *Store) get(ctx context.Context, id string) (*Run, int64, error) {
	project, n, err := ParseID(id)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	resp, err := s.kv.Get(ctx, key(project, n))
	if err != nil {
		return nil, 0, fmt.Errorf("read run %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	var r Run
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return nil, 0, fmt.Errorf("decode run %s: %w", id, err)
	}
	return &r, resp.Kvs[0].ModRevision, nil
}

// ErrFinished refuses to change a run that already ended: a former leader
// that kept running a build cannot overwrite what the new one decided.
var ErrFinished = errors.New("run already finished")

// Update applies f to the stored run and writes it back if nothing else
// changed it meanwhile (retrying otherwise). A finished run is not
// changed: Update returns ErrFinished.
func (s *Store) Update(ctx context.Context, id string, f func(r *Run) error) (*Run, error) {
	for {
		r, rev, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if r.State.Final() {
			return r, fmt.Errorf("run %s is %s: %w", id, r.State, ErrFinished)
		}
		if err := f(r); err != nil {
			return r, err
		}
		if r.State.Final() && r.Finished == nil {
			t := s.now().UTC()
			r.Finished = &t
		}
		data, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encode run %s: %w", id, err)
		}
		k := key(r.Project, r.Number)
		txn, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, string(data))).Commit()
		if err != nil {
			return nil, fmt.Errorf("store run %s: %w", id, err)
		}
		if txn.Succeeded {
			return r, nil
		}
	}
}

// Filter selects runs; zero fields match all.
type Filter struct {
	Project string
	State   State
}

// List returns the runs that match f, each project's in number order.
func (s *Store) List(ctx context.Context, f Filter) ([]*Run, error) {
	prefix := Prefix
	if f.Project != "" {
		prefix += f.Project + "/"
	}
	resp, err := s.kv.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	out := make([]*Run, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r Run
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("decode run %s: %w", kv.Key, err)
		}
		if f.State == "" || r.State == f.State {
			out = append(out, &r)
		}
	}
	return out, nil
}

// Prune deletes the oldest finished runs of project beyond keep and
// returns them, so their logs can go too. Runs in flight are never pruned.
func (s *Store) Prune(ctx context.Context, project string, keep int) ([]*Run, error) {
	runs, err := s.List(ctx, Filter{Project: project})
	if err != nil {
		return nil, err
	}
	finished := slices.DeleteFunc(runs, func(r *Run) bool { return !r.State.Final() })
	if len(finished) <= keep {
		return nil, nil
	}
	drop := finished[:len(finished)-keep]
	for _, r := range drop {
		// Only if it is still final: nothing else rewrites a final run.
		if _, err := s.kv.Delete(ctx, key(r.Project, r.Number)); err != nil {
			return nil, fmt.Errorf("prune run %s: %w", r.ID, err)
		}
	}
	return drop, nil
}

// Watch returns a channel that receives a value whenever any run changes;
// it closes when ctx ends.
func Watch(ctx context.Context, w clientv3.Watcher) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for resp := range w.Watch(clientv3.WithRequireLeader(ctx), Prefix, clientv3.WithPrefix()) {
			if resp.Err() != nil {
				continue
			}
			select {
			case out <- struct{}{}:
			default: // a poke is already pending: coalesce
			}
		}
	}()
	return out
}

// Trigger queues a run of p for ev: the webhook's Trigger.
func (s *Store) Trigger(ctx context.Context, p project.Project, ev push.Push) (string, error) {
	r, err := s.Create(ctx, p.Name, ev)
	if err != nil {
		return "", err
	}
	return r.ID, nil
}
