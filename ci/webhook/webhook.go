// Package webhook receives Git push notifications from GitHub, GitLab,
// Gitea/Forgejo and anything else (the generic hook, used by the
// post-receive script for self-hosted repositories), checks each against
// its project's secret over the raw body before reading it, drops
// redeliveries and filtered pushes, and hands one normalised push.Push to
// a Trigger that queues a run.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/ci/push"
)

// DefaultMaxBody caps a delivery's body; a push notification is far
// smaller (GitHub's own cap is 25 MB, with most of it diffs we do not read).
const DefaultMaxBody = 5 << 20

// Projects finds a project's configuration.
type Projects interface {
	Get(ctx context.Context, name string) (project.Project, error)
}

// Trigger queues a run for a push that passed every check and returns its
// id. It must answer fast: senders give up after about 10 s.
type Trigger interface {
	Trigger(ctx context.Context, p project.Project, ev push.Push) (runID string, err error)
}

// Claims remembers what has already started a run: Claim returns false when
// key was claimed before (and not released); Release forgets a claim whose
// run could not be queued, so the sender's retry is not refused.
type Claims interface {
	Claim(ctx context.Context, key string) (bool, error)
	Release(ctx context.Context, key string) error
}

// Config is what the handlers need.
type Config struct {
	Projects Projects
	Trigger  Trigger
	Claims   Claims
	// MaxBody caps request bodies (default DefaultMaxBody); larger get 413.
	MaxBody int64
	Logger  *slog.Logger
}

// Handler serves every provider's hook.
type Handler struct {
	cfg Config
}

// New returns the hook handler.
func New(cfg Config) *Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Handler{cfg: cfg}
}

// Providers are the hook flavours, as the last path segment names them.
var Providers = []string{"github", "gitlab", "gitea", "generic"}

// Response is every hook answer's body.
type Response struct {
	Message string `json:"message"`
	Run     string `json:"run,omitempty"`
}

// Serve handles one delivery for provider (one of Providers) to project.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request, provider, projectName string) {
	status, resp := h.serve(r, provider, projectName)
	if status >= 400 {
		h.cfg.Logger.Info("webhook refused", "provider", provider, "project", projectName, "status", status, "reason", resp.Message)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(resp)
}

// ServeHTTP serves /.../{provider}?project=NAME.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.Serve(w, r, r.PathValue("provider"), r.URL.Query().Get("project"))
}

func (h *Handler) serve(r *http.Request, provider, projectName string) (int, Response) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, Response{Message: "hooks take POST"}
	}
	parse, ok := parsers[provider]
	if !ok {
		return http.StatusNotFound, Response{Message: fmt.Sprintf("unknown hook %q (github, gitlab, gitea, generic)", provider)}
	}
	if projectName == "" {
		return http.StatusBadRequest, Response{Message: "name the project: ?project=NAME"}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.cfg.MaxBody+1))
	if err != nil {
		return http.StatusBadRequest, Response{Message: "reading the body: " + err.Error()}
	}
	if int64(len(body)) > h.cfg.MaxBody {
		return http.StatusRequestEntityTooLarge, Response{Message: fmt.Sprintf("body over %d bytes", h.cfg.MaxBody)}
	}
	ctx := r.Context()
	p, err := h.cfg.Projects.Get(ctx, projectName)
	if errors.Is(err, project.ErrNotFound) {
		return http.StatusNotFound, Response{Message: fmt.Sprintf("no project %q", projectName)}
	} else if err != nil {
		return http.StatusServiceUnavailable, Response{Message: "reading the project: " + err.Error()}
	}
	d, err := parse(r, body, p.Secret)
	var ue unauthorizedError
	switch {
	case errors.As(err, &ue):
		return http.StatusUnauthorized, Response{Message: ue.Error()}
	case err != nil:
		return http.StatusBadRequest, Response{Message: err.Error()}
	}
	switch d.kind {
	case kindPing:
		return http.StatusOK, Response{Message: "pong"}
	case kindIgnored:
		return http.StatusOK, Response{Message: "ignored: " + d.reason}
	}
	ev := d.push
	ev.Provider = provider
	if d.push.Provider != "" {
		ev.Provider = d.push.Provider
	}
	// A sender retries on any non-2xx, so a repeat answers 200.
	var claimed []string
	release := func() {
		for _, k := range claimed {
			if err := h.cfg.Claims.Release(context.WithoutCancel(ctx), k); err != nil {
				h.cfg.Logger.Warn("webhook: release claim", "key", k, "error", err)
			}
		}
	}
	if ev.Delivery != "" {
		key := "delivery/" + provider + "/" + p.Name + "/" + ev.Delivery
		ok, err := h.cfg.Claims.Claim(ctx, key)
		if err != nil {
			return http.StatusServiceUnavailable, Response{Message: "recording the delivery: " + err.Error()}
		}
		if !ok {
			return http.StatusOK, Response{Message: "already processed"}
		}
		claimed = append(claimed, key)
	}
	if ev.IsDelete() {
		return http.StatusOK, Response{Message: "skipped: " + ev.Ref + " was deleted"}
	}
	if ok, why := p.Filter.Match(ev); !ok {
		return http.StatusOK, Response{Message: "skipped: " + why}
	}
	// A signature does not cover the delivery id, so a captured delivery
	// could be replayed under a new id: the revision itself is claimed too.
	key := "revision/" + p.Name + "/" + ev.Ref + "/" + ev.After
	ok, err = h.cfg.Claims.Claim(ctx, key)
	if err != nil {
		release()
		return http.StatusServiceUnavailable, Response{Message: "recording the revision: " + err.Error()}
	}
	if !ok {
		return http.StatusOK, Response{Message: "already processed: " + ev.After + " of " + ev.Ref + " was built"}
	}
	claimed = append(claimed, key)
	id, err := h.cfg.Trigger.Trigger(ctx, p, ev)
	if err != nil {
		release()
		status := http.StatusServiceUnavailable
		var le interface{ LimitReached() bool }
		if errors.As(err, &le) && le.LimitReached() {
			status = http.StatusTooManyRequests
		}
		return status, Response{Message: "queueing the run: " + err.Error()}
	}
	h.cfg.Logger.Info("webhook queued a run", "provider", ev.Provider, "project", p.Name, "ref", ev.Ref, "after", ev.After, "run", id)
	return http.StatusAccepted, Response{Message: "queued", Run: id}
}

// LimitError is a Trigger's refusal because a limit is reached (runs
// queued for the project); the hook answers 429 so the sender retries.
// Any error with a LimitReached method returning true counts as one.
type LimitError struct{ Msg string }

func (e *LimitError) Error() string { return e.Msg }

// LimitReached marks the error as a limit.
func (e *LimitError) LimitReached() bool { return true }

type kind int

const (
	kindPush kind = iota
	kindPing
	kindIgnored
)

type delivery struct {
	kind   kind
	reason string // why ignored
	push   push.Push
}

type unauthorizedError struct{ msg string }

func (e unauthorizedError) Error() string { return e.msg }

// parsers authenticate a delivery over its raw body, then read it.
var parsers = map[string]func(r *http.Request, body []byte, secret string) (delivery, error){
	"github":  parseGitHub,
	"gitlab":  parseGitLab,
	"gitea":   parseGitea,
	"generic": parseGeneric,
}
