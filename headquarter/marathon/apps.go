package marathon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/headquarter/events"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
)

// What a /v2/apps/<path> request addresses. Marathon's JAX-RS patterns are
// {id:.+}, {id:.+}/restart, {id:.+}/tasks, {id:.+}/tasks/{taskId},
// {id:.+}/versions and {id:.+}/versions/{version}; restart, tasks and
// versions cannot end an app id, so the suffix decides.
type routeKind int

const (
	routeList routeKind = iota // "/v2/apps/" itself
	routeApp
	routeGroupApps // {group}/*
	routeRestart
	routeTasks
	routeTask
	routeVersions
	routeVersion
)

type appRoute struct {
	kind routeKind
	id   string // canonical app (or group) id
	arg  string // task id or version
}

func parseAppPath(p string) appRoute {
	segs := strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
	n := len(segs)
	id := func(k int) string { return app.CanonicalID(strings.Join(segs[:k], "/"), "/") }
	switch {
	case n == 0:
		return appRoute{kind: routeList}
	case n > 1 && segs[n-1] == "restart":
		return appRoute{kind: routeRestart, id: id(n - 1)}
	case n > 1 && segs[n-1] == "tasks":
		return appRoute{kind: routeTasks, id: id(n - 1)}
	case n > 2 && segs[n-2] == "tasks":
		return appRoute{kind: routeTask, id: id(n - 2), arg: segs[n-1]}
	case n > 1 && segs[n-1] == "versions":
		return appRoute{kind: routeVersions, id: id(n - 1)}
	case n > 2 && segs[n-2] == "versions":
		return appRoute{kind: routeVersion, id: id(n - 2), arg: segs[n-1]}
	case segs[n-1] == "*":
		return appRoute{kind: routeGroupApps, id: id(n - 1)}
	}
	return appRoute{kind: routeApp, id: id(n)}
}

// notAllowed answers 405 with the methods the path takes.
func notAllowed(allowed []string) handler {
	return func(*gin.Context) (any, error) { return nil, methodNotAllowed(allowed...) }
}

func methodNotAllowed(allowed ...string) error {
	return &httpError{status: http.StatusMethodNotAllowed, message: "HTTP 405 Method Not Allowed", allow: strings.Join(allowed, ", ")}
}

// appPath dispatches /v2/apps/*path.
func (a *api) appPath(c *gin.Context) (any, error) {
	r := parseAppPath(c.Param("path"))
	m := c.Request.Method
	switch r.kind {
	case routeList:
		switch m {
		case http.MethodGet:
			return a.listApps(c)
		case http.MethodPost:
			return a.createApp(c)
		case http.MethodPut:
			return a.updateApps(false)(c)
		case http.MethodPatch:
			return a.updateApps(true)(c)
		}
	case routeApp:
		switch m {
		case http.MethodGet:
			return a.getApp(c, r.id)
		case http.MethodPut:
			return a.updateApp(c, r.id, false)
		case http.MethodPatch:
			return a.updateApp(c, r.id, true)
		case http.MethodDelete:
			return a.deleteApp(c, r.id)
		}
	case routeGroupApps:
		if m == http.MethodGet {
			return a.groupApps(c, r.id)
		}
	case routeRestart:
		if m == http.MethodPost {
			return a.restartApp(c, r.id)
		}
	case routeTasks:
		switch m {
		case http.MethodGet:
			return a.appTasks(c, r.id)
		case http.MethodDelete:
			return a.killAppTasks(c, r.id)
		}
	case routeTask:
		if m == http.MethodDelete {
			return a.killAppTask(c, r.id, r.arg)
		}
	case routeVersions:
		if m == http.MethodGet {
			return a.versions(c, r.id)
		}
	case routeVersion:
		if m == http.MethodGet {
			return a.version(c, r.id, r.arg)
		}
	}
	return nil, methodNotAllowed(allowedOn(r.kind)...)
}

// allowedOn lists the methods a /v2/apps/<path> route takes.
func allowedOn(k routeKind) []string {
	switch k {
	case routeList:
		return []string{"GET", "PATCH", "POST", "PUT"}
	case routeApp:
		return []string{"DELETE", "GET", "PATCH", "PUT"}
	case routeRestart:
		return []string{"POST"}
	case routeTasks:
		return []string{"DELETE", "GET"}
	case routeTask:
		return []string{"DELETE"}
	}
	return []string{"GET"}
}

// listApps is GET /v2/apps: counts and deployments always, the rest by
// embed=apps.*; id= and cmd= are case-insensitive substring filters and
// label= a selector.
func (a *api) listApps(c *gin.Context) (any, error) {
	var sel app.Selector
	if q := c.Query("label"); q != "" {
		var err error
		if sel, err = app.ParseSelector(escapeTermChars(q)); err != nil {
			return nil, badRequest("%s", err.Error())
		}
	}
	idQ, cmdQ := strings.ToLower(c.Query("id")), strings.ToLower(c.Query("cmd"))
	e := parseEmbeds(c.QueryArray("embed"), "apps.", embeds{counts: true, deployments: true})
	buf := append(make([]byte, 0, max(4096, a.listSize.Load()*9/8)), `{"apps":[`...)
	first := true
	all := a.cfg.Scheduler.Apps()
	defer a.defs.prune(all)
	for _, ap := range all {
		if idQ != "" && !strings.Contains(strings.ToLower(ap.ID), idQ) ||
			cmdQ != "" && !strings.Contains(strings.ToLower(ap.Cmd), cmdQ) ||
			len(sel) > 0 && !sel.Match(ap.Labels) {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		var err error
		if buf, err = a.appInfo(buf, ap, e); err != nil {
			return nil, err
		}
	}
	buf = append(buf, "]}"...)
	a.listSize.Store(int64(len(buf)))
	return &reply{status: http.StatusOK, raw: buf}, nil
}

// escapeTermChars escapes '-', '_' and '.' in a label selector, which
// Marathon's LabelSelectorParsers accept unescaped in terms
// ("""(\\.|[-A-Za-z0-9_.])+""") but app.ParseSelector takes as letters
// and digits only: HAPROXY_GROUP==external must select, as marathon-lb
// users write it.
func escapeTermChars(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case c == '\\' && i+1 < len(q):
			b.WriteByte(c)
			b.WriteByte(q[i+1])
			i++
		case c == '-' || c == '_' || c == '.':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// singleEmbeds are what GET /v2/apps/{id} always carries.
var singleEmbeds = embeds{tasks: true, counts: true, deployments: true, lastTaskFailure: true}

func (a *api) getApp(c *gin.Context, id string) (any, error) {
	ap, ok := a.cfg.Scheduler.App(id)
	if !ok {
		return nil, appNotFound(id)
	}
	e := parseEmbeds(c.QueryArray("embed"), "app.", singleEmbeds)
	buf, err := a.appInfo(append(make([]byte, 0, 2048), `{"app":`...), ap, e)
	if err != nil {
		return nil, err
	}
	return &reply{status: http.StatusOK, raw: append(buf, '}')}, nil
}

// groupApps is GET /v2/apps/{group}/*: every app in the group, nested ones
// included, as {"*":[...]}.
func (a *api) groupApps(c *gin.Context, group string) (any, error) {
	prefix := strings.TrimSuffix(group, "/") + "/"
	e := parseEmbeds(c.QueryArray("embed"), "app.", singleEmbeds)
	buf := append(make([]byte, 0, 2048), `{"*":[`...)
	n := 0
	for _, ap := range a.cfg.Scheduler.Apps() {
		if !strings.HasPrefix(ap.ID, prefix) {
			continue
		}
		if n > 0 {
			buf = append(buf, ',')
		}
		n++
		var err error
		if buf, err = a.appInfo(buf, ap, e); err != nil {
			return nil, err
		}
	}
	if n == 0 && group != "/" {
		return nil, notFound("Group '%s' does not exist", group)
	}
	return &reply{status: http.StatusOK, raw: append(buf, "]}"...)}, nil
}

// createApp is POST /v2/apps: 201 with Location, the deployment header and
// the stored app with zero counts and its deployment.
func (a *api) createApp(c *gin.Context) (any, error) {
	force, err := boolParam(c, "force", false)
	if err != nil {
		return nil, err
	}
	body, err := a.body(c)
	if err != nil {
		return nil, err
	}
	def, err := app.Parse(body, a.cfg.Environment)
	if err != nil {
		return nil, err
	}
	res, err := a.deployChecked(c.Request.Context(), []scheduler.Change{{App: def, Create: true}}, force, "/instances")
	if err != nil {
		return nil, err
	}
	stored := res.Apps[0]
	a.published(c, res)
	b, err := json.Marshal(stored)
	if err != nil {
		return nil, fmt.Errorf("encode app %s: %w", stored.ID, err)
	}
	buf := append(b[:len(b)-1:len(b)-1], `,"tasksStaged":0,"tasksRunning":0,"tasksHealthy":0,"tasksUnhealthy":0,"deployments":`...)
	buf = append(appendDeploymentRefs(buf, []string{res.DeploymentID}), '}')
	return &reply{status: http.StatusCreated, raw: buf, deployment: res.DeploymentID, location: stored.ID}, nil
}

// updateRequest reads what every PUT and PATCH of apps takes: force
// (default false), partialUpdate (default true) and the body.
func (a *api) updateRequest(c *gin.Context) (force, partial bool, body []byte, err error) {
	if force, err = boolParam(c, "force", false); err != nil {
		return
	}
	if partial, err = boolParam(c, "partialUpdate", true); err != nil {
		return
	}
	body, err = a.body(c)
	return
}

// updateApp is PUT (patch=false) and PATCH (patch=true) /v2/apps/{id}.
// PUT creates a missing app (201) and honours partialUpdate (default
// true); PATCH always merges and never creates.
func (a *api) updateApp(c *gin.Context, id string, patch bool) (any, error) {
	force, partial, body, err := a.updateRequest(c)
	if err != nil {
		return nil, err
	}
	change, err := a.change(c, id, body, partial || patch, !patch)
	if err != nil {
		return nil, err
	}
	res, err := a.deployChecked(c.Request.Context(), []scheduler.Change{change}, force, "/instances")
	if err != nil {
		return nil, err
	}
	a.published(c, res)
	if res.Created[0] {
		r := deployment(http.StatusCreated, res)
		r.location = id
		return r, nil
	}
	return deployment(http.StatusOK, res), nil
}

// updateApps is PUT (patch=false) and PATCH (patch=true) /v2/apps: an
// array of updates, each naming its app, deployed together.
func (a *api) updateApps(patch bool) handler {
	return func(c *gin.Context) (any, error) {
		force, partial, body, err := a.updateRequest(c)
		if err != nil {
			return nil, err
		}
		var items []json.RawMessage
		if err := json.Unmarshal(body, &items); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				return nil, &app.DecodeError{Details: []app.FieldError{{Path: "/", Errors: []string{"error.expected.jsarray"}}}}
			}
			return nil, &app.DecodeError{Syntax: err.Error()}
		}
		if len(items) > scheduler.MaxChanges {
			return nil, tooManyChanges(len(items))
		}
		changes := make([]scheduler.Change, 0, len(items))
		seen := map[string]bool{}
		for i, item := range items {
			var head struct {
				ID *string `json:"id"`
			}
			if err := json.Unmarshal(item, &head); err != nil || head.ID == nil || *head.ID == "" {
				if err != nil {
					var typeErr *json.UnmarshalTypeError
					if !errors.As(err, &typeErr) {
						return nil, &app.DecodeError{Syntax: err.Error()}
					}
				}
				return nil, &app.ValidationError{Details: []app.FieldError{{Path: fmt.Sprintf("/(%d)/id", i), Errors: []string{"error.path.missing"}}}}
			}
			id := app.CanonicalID(*head.ID, "/")
			if seen[id] {
				return nil, &app.ValidationError{Details: []app.FieldError{{Path: fmt.Sprintf("/(%d)/id", i),
					Errors: []string{fmt.Sprintf("app %s is given more than once", id)}}}}
			}
			seen[id] = true
			ch, err := a.change(c, id, item, partial || patch, !patch)
			if err != nil {
				return nil, atIndex(err, i)
			}
			changes = append(changes, ch)
		}
		if len(changes) == 0 {
			return nil, &app.ValidationError{Details: []app.FieldError{{Path: "/", Errors: []string{"no apps given"}}}}
		}
		res, err := a.deployChecked(c.Request.Context(), changes, force, "/")
		if err != nil {
			return nil, err
		}
		a.published(c, res)
		return deployment(http.StatusOK, res), nil
	}
}

// atIndex prefixes the paths of an app error with the array index of the
// app it is about.
func atIndex(err error, i int) error {
	prefix := func(fes []app.FieldError) []app.FieldError {
		out := make([]app.FieldError, len(fes))
		for j, fe := range fes {
			fe.Path = fmt.Sprintf("/(%d)%s", i, strings.TrimSuffix(fe.Path, "/"))
			out[j] = fe
		}
		return out
	}
	var de *app.DecodeError
	var ve *app.ValidationError
	switch {
	case errors.As(err, &de) && de.Syntax == "":
		return &app.DecodeError{Details: prefix(de.Details)}
	case errors.As(err, &ve):
		return &app.ValidationError{Details: prefix(ve.Details)}
	}
	return err
}

// change builds the scheduler change for one update body of app id: a
// rollback ({"version": ts}), a merge onto the current app (partial), or a
// full definition. create says whether a missing app may be created.
func (a *api) change(c *gin.Context, id string, body []byte, partial, create bool) (scheduler.Change, error) {
	cur, rev, exists := a.cfg.Scheduler.AppRevision(id)
	if !exists && !create {
		return scheduler.Change{}, appNotFound(id)
	}
	p, err := app.DecodePatch(body)
	if err != nil {
		return scheduler.Change{}, err
	}
	var next *app.App
	var expect int64
	switch ts, rollback := p.Rollback(); {
	case rollback:
		if !exists {
			return scheduler.Change{}, appNotFound(id)
		}
		v := app.FormatVersion(ts)
		rec, err := a.cfg.Store.Version(c.Request.Context(), id, v)
		if err != nil {
			return scheduler.Change{}, fmt.Errorf("read version %s of %s: %w", v, id, err)
		}
		if rec.Revision == 0 {
			return scheduler.Change{}, notFound("App '%s' does not exist in version %s", id, v)
		}
		if next, err = app.Decode(rec.Data); err != nil {
			return scheduler.Change{}, fmt.Errorf("stored version %s of %s is unreadable: %w", v, id, err)
		}
	case exists && partial:
		if next, err = p.Apply(cur); err != nil {
			return scheduler.Change{}, err
		}
		expect = rev // a merge onto a stale read must not revert a newer change
	default:
		if next, err = app.Decode(body); err != nil {
			return scheduler.Change{}, err
		}
	}
	// The URL names the app; an id in the body (go-marathon sends one,
	// possibly relative) does not move it elsewhere.
	next.ID = id
	next = app.Normalize(next)
	if errs := app.Validate(next, a.cfg.Environment); len(errs) > 0 {
		return scheduler.Change{}, &app.ValidationError{Details: errs}
	}
	return scheduler.Change{App: next, Expect: expect}, nil
}

// published announces created or updated apps (api_post_event), on which
// marathon-lb re-syncs.
func (a *api) published(c *gin.Context, res *scheduler.DeployResult) {
	if a.cfg.Events == nil {
		return
	}
	for _, ap := range res.Apps {
		if ap == nil {
			continue
		}
		def, err := json.Marshal(ap)
		if err != nil {
			a.log.Warn("encode api_post_event", "app", ap.ID, "error", err)
			continue
		}
		ev := events.APIPost{ClientIP: c.ClientIP(), URI: c.Request.URL.Path, AppDefinition: def}
		if err := a.cfg.Events.Publish(ev); err != nil {
			a.log.Warn("publish api_post_event", "app", ap.ID, "error", err)
		}
	}
}

// deleteApp is DELETE /v2/apps/{id}; force defaults to true, as in
// Marathon's AppsResource.delete.
func (a *api) deleteApp(c *gin.Context, id string) (any, error) {
	force, err := boolParam(c, "force", true)
	if err != nil {
		return nil, err
	}
	res, err := a.cfg.Scheduler.Deploy(c.Request.Context(), []scheduler.Change{{Delete: id}}, force, "api")
	if err != nil {
		return nil, err
	}
	return deployment(http.StatusOK, res), nil
}

// restartApp is POST /v2/apps/{id}/restart: a rolling restart with the
// same definition under a new version.
func (a *api) restartApp(c *gin.Context, id string) (any, error) {
	force, err := boolParam(c, "force", false)
	if err != nil {
		return nil, err
	}
	cur, ok := a.cfg.Scheduler.App(id)
	if !ok {
		return nil, appNotFound(id)
	}
	res, err := a.cfg.Scheduler.Deploy(c.Request.Context(), []scheduler.Change{{App: cur.Clone(), Restart: true}}, force, "api")
	if err != nil {
		return nil, err
	}
	return deployment(http.StatusOK, res), nil
}

func (a *api) appTasks(c *gin.Context, id string) (any, error) {
	if _, ok := a.cfg.Scheduler.App(id); !ok {
		return nil, appNotFound(id)
	}
	return gin.H{"tasks": a.cfg.Scheduler.Tasks(id)}, nil
}

// killOptions reads scale, force and wipe; wipe (for persistent volumes,
// which garrison has none of) kills like a plain kill.
func killOptions(c *gin.Context) (scale, force bool, err error) {
	if scale, err = boolParam(c, "scale", false); err != nil {
		return
	}
	if force, err = boolParam(c, "force", false); err != nil {
		return
	}
	wipe, err := boolParam(c, "wipe", false)
	if err != nil {
		return
	}
	if scale && wipe {
		err = badRequest("You cannot use scale and wipe at the same time.")
	}
	return
}

// killAppTasks is DELETE /v2/apps/{id}/tasks[?host=&scale=&force=].
func (a *api) killAppTasks(c *gin.Context, id string) (any, error) {
	scale, force, err := killOptions(c)
	if err != nil {
		return nil, err
	}
	if _, ok := a.cfg.Scheduler.App(id); !ok {
		return nil, appNotFound(id)
	}
	host := c.Query("host")
	var ids []string
	for _, t := range a.cfg.Scheduler.Tasks(id) {
		if host == "" || t.Host == host || t.SlaveID == host {
			ids = append(ids, t.ID)
		}
	}
	killed, res, err := a.cfg.Scheduler.KillTasks(c.Request.Context(), ids, scale, force)
	if err != nil {
		return nil, err
	}
	if res != nil {
		return deployment(http.StatusOK, res), nil
	}
	return gin.H{"tasks": killed}, nil
}

// killAppTask is DELETE /v2/apps/{id}/tasks/{taskId}.
func (a *api) killAppTask(c *gin.Context, id, taskID string) (any, error) {
	scale, force, err := killOptions(c)
	if err != nil {
		return nil, err
	}
	if _, ok := a.cfg.Scheduler.App(id); !ok {
		return nil, appNotFound(id)
	}
	if t, ok := a.cfg.Scheduler.Task(taskID); !ok || t.AppID != id {
		return nil, notFound("Task '%s' does not exist", taskID)
	}
	killed, res, err := a.cfg.Scheduler.KillTasks(c.Request.Context(), []string{taskID}, scale, force)
	if err != nil {
		return nil, err
	}
	if res != nil {
		return deployment(http.StatusOK, res), nil
	}
	if len(killed) == 0 {
		return nil, notFound("Task '%s' does not exist", taskID)
	}
	return gin.H{"task": killed[0]}, nil
}

// versions is GET /v2/apps/{id}/versions, newest first.
func (a *api) versions(c *gin.Context, id string) (any, error) {
	vs, err := a.cfg.Store.Versions(c.Request.Context(), id)
	if err != nil {
		return nil, err
	}
	if _, ok := a.cfg.Scheduler.App(id); !ok && len(vs) == 0 {
		return nil, appNotFound(id)
	}
	slices.Reverse(vs)
	return gin.H{"versions": vs}, nil
}

// version is GET /v2/apps/{id}/versions/{v}: the bare app definition.
func (a *api) version(c *gin.Context, id, v string) (any, error) {
	ts, err := app.ParseVersion(v)
	if err != nil {
		return nil, notFound("App '%s' does not exist in version %s", id, v)
	}
	rec, err := a.cfg.Store.Version(c.Request.Context(), id, app.FormatVersion(ts))
	if err != nil {
		return nil, err
	}
	if rec.Revision == 0 {
		return nil, notFound("App '%s' does not exist in version %s", id, v)
	}
	def, err := app.Decode(rec.Data)
	if err != nil {
		return nil, fmt.Errorf("stored version %s of %s is unreadable: %w", v, id, err)
	}
	return app.Normalize(def), nil
}
