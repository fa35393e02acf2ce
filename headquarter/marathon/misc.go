package marathon

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/leader"
)

type infoJSON struct {
	Name            string         `json:"name"`
	Version         string         `json:"version"`
	Buildref        string         `json:"buildref"`
	Elected         bool           `json:"elected"`
	Leader          *string        `json:"leader"`
	FrameworkID     string         `json:"frameworkId"`
	MarathonConfig  marathonConfig `json:"marathon_config"`
	ZookeeperConfig map[string]any `json:"zookeeper_config"`
	HTTPConfig      httpConfig     `json:"http_config"`
	EventSubscriber any            `json:"event_subscriber"`
}

type marathonConfig struct {
	Master                     string   `json:"master"`
	FrameworkName              string   `json:"framework_name"`
	HA                         bool     `json:"ha"`
	Hostname                   string   `json:"hostname"`
	Checkpoint                 bool     `json:"checkpoint"`
	Executor                   string   `json:"executor"`
	FailoverTimeout            int64    `json:"failover_timeout"`
	LocalPortMin               int      `json:"local_port_min"`
	LocalPortMax               int      `json:"local_port_max"`
	MesosRole                  string   `json:"mesos_role"`
	MesosUser                  string   `json:"mesos_user"`
	ReconciliationInitialDelay int64    `json:"reconciliation_initial_delay"`
	ReconciliationInterval     int64    `json:"reconciliation_interval"`
	TaskLaunchTimeout          int64    `json:"task_launch_timeout"`
	TaskReservationTimeout     int64    `json:"task_reservation_timeout"`
	EnvVarsPrefix              string   `json:"env_vars_prefix"`
	WebuiURL                   *string  `json:"webui_url"`
	Features                   []string `json:"features"`
}

type httpConfig struct {
	HTTPPort  int `json:"http_port"`
	HTTPSPort int `json:"https_port"`
}

// info is GET /v2/info: Marathon's shape, filled with what garrison is.
func (a *api) info(*gin.Context) (any, error) {
	cfg := a.cfg
	out := infoJSON{
		Name: cfg.FrameworkName, Version: cfg.Version, Buildref: cfg.Version,
		Elected: a.isLeader(), FrameworkID: cfg.FrameworkID,
		MarathonConfig: marathonConfig{
			FrameworkName: cfg.FrameworkName, Hostname: cfg.Hostname, Checkpoint: true, Executor: "//cmd",
			LocalPortMin: app.ServicePortMin, LocalPortMax: app.ServicePortMax,
			MesosRole: "*", Features: []string{},
		},
		ZookeeperConfig: map[string]any{},
		HTTPConfig:      httpConfig{},
	}
	if l := a.currentLeader(); l != "" {
		out.Leader = &l
	}
	if _, port, err := net.SplitHostPort(cfg.Leader); err == nil {
		out.HTTPConfig.HTTPPort, _ = strconv.Atoi(port)
	}
	return out, nil
}

// currentLeader is the leader's host:port, "" when none leads.
func (a *api) currentLeader() string {
	if a.cfg.Leadership == nil {
		return a.cfg.Leader
	}
	return a.cfg.Leadership.Leader()
}

func (a *api) isLeader() bool {
	if a.cfg.Leadership == nil {
		return a.cfg.Leader != ""
	}
	return a.cfg.Leadership.IsLeader()
}

// leaderHeader names the current leader on every /v2 answer. Marathon sets
// it on the leader's answers and on those a follower proxies to the
// leader; garrison's followers answer themselves, naming the leader too.
func (a *api) leaderHeader(c *gin.Context) {
	if l := a.currentLeader(); l != "" {
		scheme := "http"
		if c.Request.TLS != nil {
			scheme = "https"
		}
		c.Header(LeaderHeader, scheme+"://"+l)
	}
}

// leader is GET /v2/leader.
func (a *api) leader(*gin.Context) (any, error) {
	l := a.currentLeader()
	if l == "" {
		return nil, notFound("There is no leader")
	}
	return gin.H{"leader": l}, nil
}

// abdicate is DELETE /v2/leader: the leader steps down, 404 when none
// leads (Marathon's LeaderResource). With a single headquarter (no
// Leadership) there is nobody to hand over to: it answers 200 saying so,
// and stays leader. Marathon's backup and restore parameters are refused:
// garrison keeps its state in etcd, backed up with etcd's own tools.
func (a *api) abdicate(c *gin.Context) (any, error) {
	var details []app.FieldError
	for _, p := range []string{"backup", "restore"} {
		if _, ok := c.GetQuery(p); ok {
			details = append(details, app.FieldError{Path: "/" + p, Errors: []string{
				"garrison does not back up or restore on abdication: its state is in etcd (use etcdctl snapshot)"}})
		}
	}
	if details != nil {
		return nil, &app.ValidationError{Details: details}
	}
	if a.cfg.Leadership == nil {
		return message{"Leadership abdicated: this is the only headquarter, so it remains the leader"}, nil
	}
	if err := a.cfg.Leadership.Abdicate(c.Request.Context()); err != nil {
		if errors.Is(err, leader.ErrNoLeader) {
			return nil, notFound("There is no leader")
		}
		return nil, fmt.Errorf("abdicate leadership: %w", err)
	}
	return message{"Leadership abdicated"}, nil
}

// groupJSON is Marathon's GroupInfo, read-only: the groups are the parents
// of the app ids.
type groupJSON struct {
	ID           string       `json:"id"`
	Apps         []rawApp     `json:"apps"`
	Groups       []*groupJSON `json:"groups"`
	Pods         []any        `json:"pods"`
	Dependencies []string     `json:"dependencies"`
	Version      string       `json:"version,omitempty"`
	EnforceRole  bool         `json:"enforceRole"`
}

type rawApp []byte

func (r rawApp) MarshalJSON() ([]byte, error) { return r, nil }

// group is GET /v2/groups and /v2/groups/{id}: the tree of implicit
// groups with their apps. embed=group.apps.{tasks,counts,...} adds status.
func (a *api) group(c *gin.Context) (any, error) {
	want := app.CanonicalID(c.Param("path"), "/")
	e := parseEmbeds(c.QueryArray("embed"), "group.apps.", embeds{})
	root := &groupJSON{ID: "/"}
	all := map[string]*groupJSON{"/": root}
	var node func(id string) *groupJSON
	node = func(id string) *groupJSON {
		if g, ok := all[id]; ok {
			return g
		}
		parent := node(parentOf(id))
		g := &groupJSON{ID: id}
		all[id] = g
		parent.Groups = append(parent.Groups, g)
		return g
	}
	for _, ap := range a.cfg.Scheduler.Apps() {
		g := node(parentOf(ap.ID))
		b, err := a.appInfo(nil, ap, e)
		if err != nil {
			return nil, err
		}
		g.Apps = append(g.Apps, b)
		v := app.FormatVersion(ap.Version)
		for id := g.ID; ; id = parentOf(id) {
			if all[id].Version < v {
				all[id].Version = v
			}
			if id == "/" {
				break
			}
		}
	}
	g, ok := all[want]
	if !ok {
		return nil, &httpError{status: http.StatusNotFound, message: fmt.Sprintf("Group '%s' does not exist", want)}
	}
	for _, x := range all {
		if x.Apps == nil {
			x.Apps = []rawApp{}
		}
		if x.Groups == nil {
			x.Groups = []*groupJSON{}
		}
		slices.SortFunc(x.Groups, func(p, q *groupJSON) int { return strings.Compare(p.ID, q.ID) })
		x.Pods, x.Dependencies = []any{}, []string{}
	}
	return g, nil
}

func parentOf(id string) string {
	i := strings.LastIndexByte(id, '/')
	if i <= 0 {
		return "/"
	}
	return id[:i]
}
