package ci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/ci/runner"
	"github.com/garrisonhq/garrison/ci/webhook"
	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/headquarter/auth"
)

// Limits of the API, stated in the README.
const (
	// MaxProjectBody bounds a PUT /api/v1/projects body.
	MaxProjectBody = 64 << 10
	// MaxLogFollowers bounds the log streams open at once.
	MaxLogFollowers = 64
)

type api struct {
	runs     *run.Store
	projects *project.Store
	hooks    *webhook.Handler
	// releases is nil when garrison deploys nothing.
	releases *deploy.Manager
	dataDir  string
	log      *slog.Logger
	// followers holds a slot per open log stream.
	followers chan struct{}
	// tokenIdentity is who a bearer-token request is, in release history
	// and approvals.
	tokenIdentity string
	// approvers may approve releases; empty: every user.
	approvers []string
	// logPoll is how often a followed log is checked for more.
	logPoll time.Duration
}

// OpenRoutes are the routes that need no API credentials: a webhook proves
// itself with its provider's signature or token instead.
var OpenRoutes = []string{"/api/v1/hooks/:provider"}

func mount(r *gin.Engine, a *api, auth gin.HandlerFunc) {
	a.followers = make(chan struct{}, MaxLogFollowers)
	if a.logPoll == 0 {
		a.logPoll = 200 * time.Millisecond
	}
	r.POST("/api/v1/hooks/:provider", func(c *gin.Context) {
		a.hooks.Serve(c.Writer, c.Request, c.Param("provider"), c.Query("project"))
	})
	g := r.Group("/api/v1")
	if auth != nil {
		g.Use(auth)
	}
	g.GET("/runs", a.listRuns)
	g.GET("/runs/:id", a.getRun)
	g.GET("/runs/:id/log", a.runLog)
	g.POST("/runs/:id/cancel", a.cancelRun)
	g.GET("/projects", a.listProjects)
	g.GET("/projects/:name", a.getProject)
	g.PUT("/projects/:name", a.putProject)
	g.DELETE("/projects/:name", a.deleteProject)
	g.GET("/releases", a.listReleases)
	g.POST("/releases/promote", a.promote)
	g.POST("/releases/rollback", a.rollback)
	g.POST("/releases/approve", a.approve)
}

type message struct {
	Message string `json:"message"`
}

// fieldErrors is Marathon's 422 body.
type fieldErrors struct {
	Message string        `json:"message"`
	Details []fieldDetail `json:"details"`
}

type fieldDetail struct {
	Path   string   `json:"path"`
	Errors []string `json:"errors"`
}

func (a *api) fail(c *gin.Context, err error) {
	var inv *project.InvalidError
	switch {
	case errors.Is(err, run.ErrNotFound), errors.Is(err, project.ErrNotFound), errors.Is(err, deploy.ErrNotFound):
		c.JSON(http.StatusNotFound, message{err.Error()})
	case errors.As(err, &inv):
		body := fieldErrors{Message: "Object is not valid"}
		for _, fe := range inv.Errs {
			body.Details = append(body.Details, fieldDetail{Path: "/" + fe.Path, Errors: []string{fe.Msg}})
		}
		c.JSON(http.StatusUnprocessableEntity, body)
	case deploy.IsForbidden(err):
		c.JSON(http.StatusForbidden, message{err.Error()})
	case deploy.IsRefused(err):
		c.JSON(http.StatusConflict, message{err.Error()})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		c.JSON(http.StatusServiceUnavailable, message{err.Error()})
	default:
		a.log.Warn("pipeline API request failed", "path", c.Request.URL.Path, "error", err)
		c.JSON(http.StatusInternalServerError, message{err.Error()})
	}
}

func (a *api) listRuns(c *gin.Context) {
	f := run.Filter{Project: c.Query("project"), State: run.State(c.Query("state"))}
	if f.State != "" && !f.State.Valid() {
		c.JSON(http.StatusUnprocessableEntity, fieldErrors{Message: "Object is not valid",
			Details: []fieldDetail{{Path: "/state", Errors: []string{"must be queued, running, passed, failed or cancelled"}}}})
		return
	}
	runs, err := a.runs.List(c.Request.Context(), f)
	if err != nil {
		a.fail(c, err)
		return
	}
	// Newest first, as a build history reads.
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].Created.After(runs[j].Created) })
	c.JSON(http.StatusOK, gin.H{"runs": runs})
}

func (a *api) getRun(c *gin.Context) {
	x, err := a.runs.Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, x)
}

func (a *api) cancelRun(c *gin.Context) {
	x, err := a.runs.Update(c.Request.Context(), c.Param("id"), func(x *run.Run) error {
		x.CancelRequested = true
		return nil
	})
	if errors.Is(err, run.ErrFinished) {
		c.JSON(http.StatusConflict, message{fmt.Sprintf("run %s already ended: %s", x.ID, x.State)})
		return
	}
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusAccepted, x)
}

// runLog writes the run's log; while the run is queued or running it keeps
// the response open and writes what the steps add until the run ends
// (?follow=false answers with what is there now).
func (a *api) runLog(c *gin.Context) {
	ctx := c.Request.Context()
	id := c.Param("id")
	x, err := a.runs.Get(ctx, id)
	if err != nil {
		a.fail(c, err)
		return
	}
	follow := c.Query("follow") != "false"
	if follow && !x.State.Final() {
		select {
		case a.followers <- struct{}{}:
			defer func() { <-a.followers }()
		default:
			c.JSON(http.StatusServiceUnavailable, message{fmt.Sprintf("%d logs are followed already; try ?follow=false", MaxLogFollowers)})
			return
		}
	}
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Status(http.StatusOK)
	path := runner.LogPath(a.dataDir, id)
	var f *os.File
	tick := time.NewTicker(a.logPoll)
	defer tick.Stop()
	for {
		if f == nil {
			if f, err = os.Open(path); err == nil {
				defer f.Close()
			}
		}
		if f != nil {
			if _, err := io.Copy(c.Writer, f); err != nil {
				return
			}
			c.Writer.Flush()
		}
		if !follow || x.State.Final() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Read the state before the file: what a finished run wrote is
		// all on disk by the time its state says so.
		if x, err = a.runs.Get(ctx, id); err != nil {
			return
		}
	}
}

func (a *api) listProjects(c *gin.Context) {
	ps, err := a.projects.List(c.Request.Context())
	if err != nil {
		a.fail(c, err)
		return
	}
	views := make([]project.View, 0, len(ps))
	for _, p := range ps {
		views = append(views, p.Redacted())
	}
	c.JSON(http.StatusOK, gin.H{"projects": views})
}

func (a *api) getProject(c *gin.Context) {
	p, err := a.projects.Get(c.Request.Context(), c.Param("name"))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, p.Redacted())
}

// putProject creates or replaces a project. The secret and secrets may be
// left out to keep the stored ones: the API never shows them, so a client
// that read a project can write it back.
func (a *api) putProject(c *gin.Context) {
	ctx := c.Request.Context()
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxProjectBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		c.JSON(http.StatusRequestEntityTooLarge, message{fmt.Sprintf("request body larger than %d bytes", MaxProjectBody)})
		return
	} else if err != nil {
		c.JSON(http.StatusBadRequest, message{"reading the body: " + err.Error()})
		return
	}
	var p project.Project
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		c.JSON(http.StatusBadRequest, message{"invalid JSON: " + err.Error()})
		return
	}
	name := c.Param("name")
	if p.Name != "" && p.Name != name {
		c.JSON(http.StatusUnprocessableEntity, fieldErrors{Message: "Object is not valid",
			Details: []fieldDetail{{Path: "/name", Errors: []string{fmt.Sprintf("must be %q, the name in the path, or left out", name)}}}})
		return
	}
	p.Name = name
	status := http.StatusCreated
	if old, err := a.projects.Get(ctx, name); err == nil {
		status = http.StatusOK
		if p.Secret == "" {
			p.Secret = old.Secret
		}
		if p.Secrets == nil {
			p.Secrets = old.Secrets
		}
	} else if !errors.Is(err, project.ErrNotFound) {
		a.fail(c, err)
		return
	}
	if err := a.projects.Put(ctx, p); err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(status, p.WithDefaults().Redacted())
}

func (a *api) deleteProject(c *gin.Context) {
	if err := a.projects.Delete(c.Request.Context(), c.Param("name")); err != nil {
		a.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *api) noReleases(c *gin.Context) bool {
	if a.releases == nil {
		c.JSON(http.StatusNotFound, message{"this garrison deploys no releases (no Marathon target configured)"})
		return true
	}
	return false
}

// listReleases answers an app's releases, newest first, and what each
// environment runs with its history.
func (a *api) listReleases(c *gin.Context) {
	if a.noReleases(c) {
		return
	}
	app := c.Query("app")
	if app == "" {
		c.JSON(http.StatusUnprocessableEntity, fieldErrors{Message: "Object is not valid",
			Details: []fieldDetail{{Path: "/app", Errors: []string{"required: ?app=/ktv/account"}}}})
		return
	}
	rs, err := a.releases.Store().List(c.Request.Context(), app)
	if err != nil {
		a.fail(c, err)
		return
	}
	envs, err := a.releases.Store().Environments(c.Request.Context(), app)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"releases": rs, "environments": envs})
}

type releaseChange struct {
	App         string `json:"app"`
	Version     string `json:"version"`
	Environment string `json:"environment"`
	By          string `json:"by"`
	// Approve (promote only) approves the release for the environment
	// first, as POST /releases/approve does.
	Approve bool `json:"approve,omitempty"`
}

func (a *api) readChange(c *gin.Context, needVersion bool) (releaseChange, bool) {
	var rc releaseChange
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, MaxProjectBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		c.JSON(http.StatusBadRequest, message{"invalid JSON: " + err.Error()})
		return rc, false
	}
	var details []fieldDetail
	if rc.App == "" {
		details = append(details, fieldDetail{Path: "/app", Errors: []string{"required"}})
	}
	if rc.Environment == "" {
		details = append(details, fieldDetail{Path: "/environment", Errors: []string{"required"}})
	}
	if needVersion && rc.Version == "" {
		details = append(details, fieldDetail{Path: "/version", Errors: []string{"required"}})
	}
	if len(details) > 0 {
		c.JSON(http.StatusUnprocessableEntity, fieldErrors{Message: "Object is not valid", Details: details})
		return rc, false
	}
	rc.By = a.caller(c, rc.By)
	return rc, true
}

// caller is who makes the request: the basic-auth user or the token's
// identity (the auth middleware checked both); "by" from the body only
// when the request carries no credentials (an API without auth).
func (a *api) caller(c *gin.Context, by string) string {
	if u := auth.User(c); u != "" {
		return u
	}
	// Without auth a basic-auth name is as much a claim as the body's.
	if u, _, ok := c.Request.BasicAuth(); ok && u != "" {
		return u
	}
	if h := c.GetHeader("Authorization"); h != "" {
		if a.tokenIdentity != "" {
			return a.tokenIdentity
		}
		return "token"
	}
	if by != "" {
		return by
	}
	return "api"
}

// approve records the caller's approval of a release for an environment
// that needs one; 403 when the caller committed it.
func (a *api) approve(c *gin.Context) {
	if a.noReleases(c) {
		return
	}
	rc, ok := a.readChange(c, true)
	if !ok {
		return
	}
	r, err := a.approveAs(c, rc)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, r)
}

// approveAs records rc.By's approval, when they are one of the approvers.
func (a *api) approveAs(c *gin.Context, rc releaseChange) (deploy.Release, error) {
	if len(a.approvers) > 0 && !slices.Contains(a.approvers, rc.By) {
		return deploy.Release{}, &deploy.ForbiddenError{Msg: fmt.Sprintf("%s may not approve releases: the approvers are %s (--ci-approvers)",
			rc.By, strings.Join(a.approvers, ", "))}
	}
	return a.releases.Approve(c.Request.Context(), rc.App, rc.Version, rc.Environment, rc.By)
}

// promote deploys a release to an environment and answers once it runs
// there (deployments of garrison's apps take seconds).
func (a *api) promote(c *gin.Context) {
	if a.noReleases(c) {
		return
	}
	rc, ok := a.readChange(c, true)
	if !ok {
		return
	}
	if rc.Approve {
		// Approval and promotion in one call: the approver promotes.
		if _, err := a.approveAs(c, rc); err != nil {
			a.fail(c, err)
			return
		}
	}
	var log strings.Builder
	if err := a.releases.Promote(c.Request.Context(), rc.App, rc.Version, rc.Environment, rc.By, &log); err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"app": rc.App, "version": rc.Version, "environment": rc.Environment, "log": log.String()})
}

// rollback deploys to an environment the release it ran before (or the
// version given, which it must have run).
func (a *api) rollback(c *gin.Context) {
	if a.noReleases(c) {
		return
	}
	rc, ok := a.readChange(c, false)
	if !ok {
		return
	}
	if rc.Approve {
		c.JSON(http.StatusUnprocessableEntity, fieldErrors{Message: "Object is not valid",
			Details: []fieldDetail{{Path: "/approve", Errors: []string{"only for promote: a rollback returns to a release the environment ran"}}}})
		return
	}
	var log strings.Builder
	v, err := a.releases.Rollback(c.Request.Context(), rc.App, rc.Environment, rc.Version, rc.By, &log)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"app": rc.App, "version": v, "environment": rc.Environment, "log": log.String()})
}
