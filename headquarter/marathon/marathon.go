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
	"maps"
	"slices"
	"sync"
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
	AppRevision(id string) (*app.App, int64, bool)
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
	// Environment is what apps are validated against; its MaxInstances is
	// the per-app instance limit (app.DefaultMaxInstances when 0).
	Environment app.Environment
	// MaxInstancesTotal bounds the instances of all apps together
	// (DefaultMaxInstancesTotal when 0).
	MaxInstancesTotal int
	// EtcdRequestBytes is the largest transaction the etcd behind the
	// store accepts, its --max-request-bytes (DefaultEtcdRequestBytes, etcd's
	// default, when 0). Deployments that would write more are refused with
	// 413, and the default body limit derives from it.
	EtcdRequestBytes int64

	// Leader is this headquarter's advertised address as host:port
	// (/v2/info's http_port). Without Leadership it is the leader: GET
	// /v2/leader and X-Marathon-Leader name it; "" answers GET /v2/leader
	// with 404 "There is no leader".
	Leader string
	// Leadership names the leader when several headquarters share an etcd
	// (a *leader.Elector); nil: this headquarter alone, always the leader.
	Leadership Leadership
	// Version is garrison's version, shown by /v2/info.
	Version string
	// FrameworkID and FrameworkName identify garrison in /v2/info;
	// FrameworkName defaults to "garrison".
	FrameworkID   string
	FrameworkName string
	// Hostname is this machine's name (/v2/info marathon_config.hostname).
	Hostname string

	// Auth protects /v2 when set; the zero value leaves it open.
	Auth Auth
	// MaxBodyBytes bounds request bodies; the default is what etcd takes
	// once an app is written three times (about 490 KiB with etcd's
	// default 1.5 MiB).
	MaxBodyBytes int64
	Logger       *slog.Logger
	// Now is the clock for task lifetimes and queue delays (time.Now).
	Now func() time.Time
}

// Leadership is who leads the headquarters that share an etcd.
type Leadership interface {
	// Leader is the leader's advertised host:port, "" when none leads.
	Leader() string
	// IsLeader says whether this headquarter leads.
	IsLeader() bool
	// Abdicate makes the leader step down (leader.ErrNoLeader: none leads).
	Abdicate(ctx context.Context) error
}

// LeaderHeader names the leader on every /v2 answer, as Marathon's
// LeaderProxyFilter does: the leader's URL, http://host:port.
const LeaderHeader = "X-Marathon-Leader"

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
	// writeMu makes the limit checks and deploys of app writes take turns.
	writeMu sync.Mutex
}

// Register adds the Marathon v2 routes to r.
func Register(r gin.IRouter, cfg Config) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FrameworkName == "" {
		cfg.FrameworkName = "garrison"
	}
	if cfg.MaxInstancesTotal <= 0 {
		cfg.MaxInstancesTotal = DefaultMaxInstancesTotal
	}
	if cfg.EtcdRequestBytes <= 0 {
		cfg.EtcdRequestBytes = DefaultEtcdRequestBytes
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = bodyLimit(cfg.EtcdRequestBytes)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &api{cfg: cfg, log: cfg.Logger}

	v2 := r.Group("/v2")
	v2.Use(a.leaderHeader)
	if cfg.Auth.Enabled() {
		v2.Use(auth.Middleware(cfg.Auth))
	}
	// Every path answers the methods it lacks with 405 and an Allow
	// header, as Marathon's JAX-RS resources do (gin alone would answer
	// 404, or redirect DELETE /v2/apps to /v2/apps/ with 307).
	routes := []struct {
		path     string
		handlers map[string]gin.HandlerFunc
	}{
		{"/apps", map[string]gin.HandlerFunc{"GET": a.wrap(a.listApps), "POST": a.wrap(a.createApp),
			"PUT": a.wrap(a.updateApps(false)), "PATCH": a.wrap(a.updateApps(true))}},
		{"/apps/*path", map[string]gin.HandlerFunc{"GET": a.wrap(a.appPath), "PUT": a.wrap(a.appPath),
			"PATCH": a.wrap(a.appPath), "DELETE": a.wrap(a.appPath), "POST": a.wrap(a.appPath)}},
		{"/tasks", map[string]gin.HandlerFunc{"GET": a.wrap(a.listTasks)}},
		{"/tasks/delete", map[string]gin.HandlerFunc{"POST": a.wrap(a.deleteTasks)}},
		{"/deployments", map[string]gin.HandlerFunc{"GET": a.wrap(a.listDeployments)}},
		{"/deployments/:id", map[string]gin.HandlerFunc{"DELETE": a.wrap(a.cancelDeployment)}},
		{"/queue", map[string]gin.HandlerFunc{"GET": a.wrap(a.queue)}},
		{"/queue/*path", map[string]gin.HandlerFunc{"DELETE": a.wrap(a.resetDelay)}},
		{"/groups", map[string]gin.HandlerFunc{"GET": a.wrap(a.group)}},
		{"/groups/*path", map[string]gin.HandlerFunc{"GET": a.wrap(a.group)}},
		{"/info", map[string]gin.HandlerFunc{"GET": a.wrap(a.info)}},
		{"/leader", map[string]gin.HandlerFunc{"GET": a.wrap(a.leader), "DELETE": a.wrap(a.abdicate)}},
	}
	if cfg.Events != nil {
		routes = append(routes, struct {
			path     string
			handlers map[string]gin.HandlerFunc
		}{"/events", map[string]gin.HandlerFunc{"GET": events.Handler(cfg.Events, cfg.EventOptions...)}})
	}
	for _, r := range routes {
		allowed := slices.Sorted(maps.Keys(r.handlers))
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			h, ok := r.handlers[m]
			if !ok {
				h = a.wrap(notAllowed(allowed))
			}
			v2.Handle(m, r.path, h)
		}
	}

	noPods := a.wrap(func(*gin.Context) (any, error) {
		return nil, &httpError{status: 404, message: "garrison does not support pods"}
	})
	for _, m := range []string{"HEAD", "GET", "POST", "PUT", "DELETE"} {
		v2.Handle(m, "/pods", noPods)
		v2.Handle(m, "/pods/*path", noPods)
	}
}
