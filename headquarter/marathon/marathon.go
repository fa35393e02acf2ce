// Package marathon serves Marathon's REST API v2 over garrison's scheduler,
// so that Marathon clients (go-marathon, marathon-lb, marathon-autoscale,
// curl scripts) drive garrison unchanged:
//
//	/v2/apps                    GET POST PUT PATCH
//	/v2/apps/{id}               GET PUT PATCH DELETE   ({group}/* for a group's apps)
//	/v2/apps/{id}/restart       POST
//	/v2/apps/{id}/tasks         GET DELETE
//	/v2/apps/{id}/tasks/{task}  DELETE
//	/v2/apps/{id}/versions[/v]  GET
//	/v2/tasks                   GET;  /v2/tasks/delete POST
//	/v2/deployments             GET;  /v2/deployments/{id} DELETE
//	/v2/queue                   GET;  /v2/queue/{id}/delay DELETE
//	/v2/groups[/{id}]           GET (read-only tree)
//	/v2/info, /v2/leader, /v2/events, /v2/pods (404: no pods)
//
// Handlers return (value, error); one adapter (wrap) turns the scheduler's
// and the app package's typed errors into Marathon's status codes and
// bodies, so every endpoint fails the same way.
package marathon

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/auth"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
	"github.com/garrisonhq/garrison/headquarter/store"
)

// Scheduler is what the API needs of headquarter's scheduler; a
// *scheduler.Scheduler satisfies it.
type Scheduler interface {
	Deploy(ctx context.Context, changes []scheduler.Change, force bool, source string) (*scheduler.DeployResult, error)
	CancelDeployment(ctx context.Context, id string, force bool) (*scheduler.DeployResult, error)
	KillTasks(ctx context.Context, ids []string, scale, force bool) ([]scheduler.TaskInfo, *scheduler.DeployResult, error)
	ResetDelay(appID string) error

	Apps() []*app.App
	App(id string) (*app.App, bool)
	Tasks(appID string) []scheduler.TaskInfo
	Task(id string) (scheduler.TaskInfo, bool)
	Counts(appID string) scheduler.Counts
	LastFailure(appID string) *scheduler.TaskFailure
	Deployments() []scheduler.Deployment
	DeploymentsOf(appID string) []string
	Queue() []scheduler.QueueEntry
}

// Versions is what the API reads of the store: an app's stored versions.
// A *store.Store satisfies it.
type Versions interface {
	Versions(ctx context.Context, appID string) ([]string, error)
	Version(ctx context.Context, appID, version string) (store.Record, error)
}

// Config wires the API.
type Config struct {
	Scheduler Scheduler
	Store     Versions
	// Events is the bus GET /v2/events streams and api_post_event is
	// published on; nil disables both.
	Events *events.Bus
	// EventOptions tune the SSE handler (heartbeat, gzip).
	EventOptions []events.HandlerOption
	// Environment is what apps are validated against.
	Environment app.Environment

	// Leader is this headquarter's address as host:port (GET /v2/leader,
	// /v2/info). "" answers GET /v2/leader with 404 "There is no leader".
	Leader string
	// Version is garrison's version, shown by /v2/info.
	Version string
	// FrameworkID and FrameworkName identify garrison in /v2/info;
	// FrameworkName defaults to "garrison".
	FrameworkID   string
	FrameworkName string
	// Hostname is this machine's name (/v2/info marathon_config.hostname).
	Hostname string
	// Abdicate is called by DELETE /v2/leader; nil (a single headquarter)
	// answers that leadership stays here.
	Abdicate func(ctx context.Context) error

	// Auth protects /v2 when set; the zero value leaves it open.
	Auth Auth
	// MaxBodyBytes bounds request bodies (default 8 MiB).
	MaxBodyBytes int64
	Logger       *slog.Logger
	// Now is the clock for task lifetimes and queue delays (time.Now).
	Now func() time.Time
}

// Auth is the API's optional authentication (see auth.Credentials).
type Auth = auth.Credentials

// api holds the handlers' shared state.
type api struct {
	cfg  Config
	log  *slog.Logger
	defs defCache
	// listSize is the length of the last GET /v2/apps answer, to size the
	// next one's buffer at once.
	listSize atomic.Int64
}

// Register adds the Marathon v2 routes to r.
func Register(r gin.IRouter, cfg Config) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FrameworkName == "" {
		cfg.FrameworkName = "garrison"
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 8 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &api{cfg: cfg, log: cfg.Logger}

	v2 := r.Group("/v2")
	if cfg.Auth.Enabled() {
		v2.Use(auth.Middleware(cfg.Auth))
	}
	v2.GET("/apps", a.wrap(a.listApps))
	v2.POST("/apps", a.wrap(a.createApp))
	v2.PUT("/apps", a.wrap(a.updateApps(false)))
	v2.PATCH("/apps", a.wrap(a.updateApps(true)))
	for _, m := range []string{"GET", "PUT", "PATCH", "DELETE", "POST"} {
		v2.Handle(m, "/apps/*path", a.wrap(a.appPath))
	}

	v2.GET("/tasks", a.wrap(a.listTasks))
	v2.POST("/tasks/delete", a.wrap(a.deleteTasks))

	v2.GET("/deployments", a.wrap(a.listDeployments))
	v2.DELETE("/deployments/:id", a.wrap(a.cancelDeployment))

	v2.GET("/queue", a.wrap(a.queue))
	v2.DELETE("/queue/*path", a.wrap(a.resetDelay))

	v2.GET("/groups", a.wrap(a.group))
	v2.GET("/groups/*path", a.wrap(a.group))

	v2.GET("/info", a.wrap(a.info))
	v2.GET("/leader", a.wrap(a.leader))
	v2.DELETE("/leader", a.wrap(a.abdicate))

	if cfg.Events != nil {
		v2.GET("/events", events.Handler(cfg.Events, cfg.EventOptions...))
	}

	noPods := a.wrap(func(*gin.Context) (any, error) {
		return nil, &httpError{status: 404, message: "garrison does not support pods"}
	})
	for _, m := range []string{"HEAD", "GET", "POST", "PUT", "DELETE"} {
		v2.Handle(m, "/pods", noPods)
		v2.Handle(m, "/pods/*path", noPods)
	}
}
