package marathon_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/marathon"
)

const settle = 40 * time.Second

// TestMarathonClientsDriveTheAPI drives the API the way go-marathon,
// marathon-lb (and its zdd.py) and marathon-autoscale do, with their
// request and response shapes, over a real scheduler running real tasks.
func TestMarathonClientsDriveTheAPI(t *testing.T) {
	s := newStack(t)

	// marathon-lb's exact subscription.
	stream := s.subscribe("plan-format=light&event_type=api_post_event&event_type=status_update_event&event_type=health_status_changed_event")

	// go-marathon CreateApplication: a relative id, null ports and
	// dependencies, and a field garrison does not know.
	body := webApp("web", 1, map[string]any{
		"labels":           map[string]string{"HAPROXY_GROUP": "external"},
		"fetch":            []any{},
		"someFutureField":  map[string]any{"x": 1},
		"portDefinitions":  []map[string]any{{"port": 0, "name": "http"}},
		"upgradeStrategy":  map[string]any{"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
		"backoffSeconds":   1,
		"requirePorts":     false,
		"acceptedResource": nil,
	})
	r := s.do("POST", "/v2/apps", body).expect(t, 201, "POST /v2/apps")
	if loc := r.header.Get("Location"); loc != "/web" {
		t.Fatalf("Location %q, want /web", loc)
	}
	created := r.obj(t)
	if created["id"] != "/web" {
		t.Fatalf("created id %v", created["id"])
	}
	if _, has := created["tasks"]; has {
		t.Fatalf("POST answer carries tasks: %s", r.body)
	}
	for _, k := range []string{"tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy"} {
		if created[k] != 0.0 {
			t.Fatalf("POST answer %s = %v, want 0", k, created[k])
		}
	}
	deps := created["deployments"].([]any)
	createDep := deps[0].(map[string]any)["id"].(string)
	if len(deps) != 1 || r.header.Get(marathon.DeploymentHeader) != createDep {
		t.Fatalf("deployments %v, header %q", deps, r.header.Get(marathon.DeploymentHeader))
	}
	var def marathonApp
	r.decode(t, &def)
	if len(def.PortDefinitions) != 1 || def.PortDefinitions[0].Port < 10000 || def.PortDefinitions[0].Port > 20000 {
		t.Fatalf("service port not assigned in 10000-20000: %+v", def.PortDefinitions)
	}
	servicePort := def.PortDefinitions[0].Port
	firstVersion := def.Version

	ev := nextEvent(t, stream, "api_post_event", 10*time.Second, nil)
	if d, _ := ev["appDefinition"].(map[string]any); d["id"] != "/web" || ev["uri"] != "/v2/apps" {
		t.Fatalf("api_post_event %v", ev)
	}

	// A second create of the same id: 409 without deployments.
	r = s.do("POST", "/v2/apps", body).expect(t, 409, "second POST")
	if m := r.obj(t); m["message"] != "An app with id [/web] already exists." || m["deployments"] != nil {
		t.Fatalf("409 body %s", r.body)
	}

	// go-marathon WaitOnApplication: poll GET /v2/apps/{id} until every
	// task runs; then WaitOnDeployment.
	waitFor(t, "the app to run", settle, func() bool { return allTasksRunning(s.app("/web")) })
	s.deploymentGone(createDep, settle)
	nextEvent(t, stream, "status_update_event", 10*time.Second, func(m map[string]any) bool {
		return m["appId"] == "/web" && m["taskStatus"] == "TASK_RUNNING"
	})
	web := s.app("/web")
	if len(web.Tasks) != 1 || web.Tasks[0].AppID != "/web" || len(web.Tasks[0].Ports) != 1 ||
		!slices.Equal(web.Tasks[0].ServicePorts, []int{servicePort}) || web.TasksHealthy != 1 {
		t.Fatalf("GET /v2/apps/web: %+v", web)
	}
	if !strings.HasPrefix(web.Tasks[0].ID, "web.") {
		t.Fatalf("task id %q is not <safeAppId>.<uuid>", web.Tasks[0].ID)
	}

	// Scale as go-marathon, autoscale and zdd.py do: PUT {"instances":N}.
	r = s.do("PUT", "/v2/apps/web", map[string]any{"id": "web", "instances": 3, "ports": nil, "dependencies": nil})
	scale := r.deployed(t, 200, "PUT instances")
	s.deploymentGone(scale.DeploymentID, settle)
	waitFor(t, "three tasks", settle, func() bool { return allTasksRunning(s.app("/web")) })
	web = s.app("/web")
	if web.Instances != 3 || web.Version != scale.Version || web.VersionInfo["lastConfigChangeAt"] != firstVersion {
		t.Fatalf("after scale: instances %d version %s versionInfo %v (first %s)", web.Instances, web.Version, web.VersionInfo, firstVersion)
	}
	if web.Labels["HAPROXY_GROUP"] != "external" || web.PortDefinitions[0].Port != servicePort {
		t.Fatalf("scale lost fields: %+v", web)
	}

	// PATCH a label: a configuration change, so a rolling restart.
	before := taskIDs(web.Tasks)
	r = s.do("PATCH", "/v2/apps/web", map[string]any{"labels": map[string]string{"HAPROXY_GROUP": "internal"}})
	patched := r.deployed(t, 200, "PATCH app")
	s.deploymentGone(patched.DeploymentID, settle)
	web = s.app("/web")
	if web.Labels["HAPROXY_GROUP"] != "internal" || web.Instances != 3 || web.Cmd != testServer {
		t.Fatalf("after PATCH: %+v", web)
	}
	for _, tk := range web.Tasks {
		if slices.Contains(before, tk.ID) || tk.Version != patched.Version {
			t.Fatalf("task %s (version %s) survived the restart to %s", tk.ID, tk.Version, patched.Version)
		}
	}

	// go-marathon RestartApplication: POST .../restart with {}.
	before = taskIDs(web.Tasks)
	restart := s.do("POST", "/v2/apps/web/restart", "{}").deployed(t, 200, "restart")
	s.deploymentGone(restart.DeploymentID, settle)
	web = s.app("/web")
	if len(web.Tasks) != 3 {
		t.Fatalf("after restart %d tasks", len(web.Tasks))
	}
	for _, tk := range web.Tasks {
		if slices.Contains(before, tk.ID) {
			t.Fatalf("task %s survived the restart", tk.ID)
		}
	}

	// marathon-lb: GET /v2/apps?embed=apps.tasks and GET /v2/tasks.
	var list struct {
		Apps []marathonApp `json:"apps"`
	}
	s.do("GET", "/v2/apps?embed=apps.tasks&embed=apps.lastTaskFailure&embed=apps.taskStats", nil).expect(t, 200, "list").decode(t, &list)
	if len(list.Apps) != 1 || len(list.Apps[0].Tasks) != 3 || list.Apps[0].TasksRunning != 3 || list.Apps[0].Deployments == nil {
		t.Fatalf("GET /v2/apps?embed=apps.tasks: %s", s.do("GET", "/v2/apps?embed=apps.tasks", nil).body)
	}
	var stats struct {
		TotalSummary struct {
			Stats struct {
				Counts map[string]int `json:"counts"`
			} `json:"stats"`
		} `json:"totalSummary"`
	}
	if err := json.Unmarshal(list.Apps[0].TaskStats, &stats); err != nil || stats.TotalSummary.Stats.Counts["running"] != 3 {
		t.Fatalf("taskStats %s (%v)", list.Apps[0].TaskStats, err)
	}
	list.Apps = nil
	s.do("GET", "/v2/apps", nil).decode(t, &list)
	if list.Apps[0].Tasks != nil || list.Apps[0].TasksRunning != 3 {
		t.Fatalf("plain GET /v2/apps embeds tasks or lacks counts: %+v", list.Apps[0])
	}
	for _, q := range []string{"id=WE", "cmd=testserver", "label=HAPROXY_GROUP==internal"} {
		list.Apps = nil
		s.do("GET", "/v2/apps?"+q, nil).decode(t, &list)
		if len(list.Apps) != 1 {
			t.Fatalf("GET /v2/apps?%s: %d apps", q, len(list.Apps))
		}
	}
	for _, q := range []string{"id=nope", "label=HAPROXY_GROUP!=internal", "label=absent"} {
		list.Apps = nil
		s.do("GET", "/v2/apps?"+q, nil).decode(t, &list)
		if len(list.Apps) != 0 {
			t.Fatalf("GET /v2/apps?%s: %d apps", q, len(list.Apps))
		}
	}
	var tasks struct {
		Tasks []marathonTask `json:"tasks"`
	}
	s.do("GET", "/v2/tasks", nil).expect(t, 200, "GET /v2/tasks").decode(t, &tasks)
	if len(tasks.Tasks) != 3 || tasks.Tasks[0].State != "TASK_RUNNING" || tasks.Tasks[0].StartedAt == "" {
		t.Fatalf("GET /v2/tasks: %+v", tasks)
	}
	tasks.Tasks = nil
	s.do("GET", "/v2/tasks?status=running", nil).decode(t, &tasks)
	if len(tasks.Tasks) != 3 {
		t.Fatalf("status=running: %d tasks", len(tasks.Tasks))
	}
	tasks.Tasks = nil
	s.do("GET", "/v2/tasks?status[]=staging", nil).decode(t, &tasks)
	if len(tasks.Tasks) != 0 {
		t.Fatalf("status[]=staging: %d tasks", len(tasks.Tasks))
	}
	tasks.Tasks = nil
	s.do("GET", "/v2/apps/web/tasks", nil).expect(t, 200, "app tasks").decode(t, &tasks)
	if len(tasks.Tasks) != 3 {
		t.Fatalf("GET /v2/apps/web/tasks: %d tasks", len(tasks.Tasks))
	}

	// zdd.py: POST /v2/tasks/delete?scale=true kills exactly the tasks
	// named (here the oldest, which a plain scale-down would keep).
	victim := tasks.Tasks[0].ID
	survivors := taskIDs(tasks.Tasks[1:])
	del := s.do("POST", "/v2/tasks/delete?scale=true", map[string]any{"ids": []string{victim}}).deployed(t, 200, "tasks/delete")
	s.deploymentGone(del.DeploymentID, settle)
	web = s.app("/web")
	if web.Instances != 2 || !slices.Equal(taskIDs(web.Tasks), survivors) {
		t.Fatalf("after tasks/delete?scale=true of %s: instances %d tasks %v, want %v", victim, web.Instances, taskIDs(web.Tasks), survivors)
	}

	// go-marathon KillTask: DELETE /v2/apps/{id}/tasks/{taskId}, without
	// scale the task is replaced.
	victim = web.Tasks[0].ID
	r = s.do("DELETE", "/v2/apps/web/tasks/"+victim, nil).expect(t, 200, "kill task")
	var killed struct {
		Task marathonTask `json:"task"`
	}
	r.decode(t, &killed)
	if killed.Task.ID != victim {
		t.Fatalf("kill task answer %s", r.body)
	}
	waitFor(t, "a replacement", settle, func() bool {
		w := s.app("/web")
		return allTasksRunning(w) && !slices.Contains(taskIDs(w.Tasks), victim)
	})
	s.do("DELETE", "/v2/apps/web/tasks/web.00000000-0000-4000-8000-000000000000", nil).expect(t, 404, "kill unknown task")
	// DELETE /v2/apps/{id}/tasks?scale=true on the host kills them all.
	r = s.do("DELETE", "/v2/apps/web/tasks?host=test-host&scale=true", nil)
	all := r.deployed(t, 200, "kill all tasks with scale")
	s.deploymentGone(all.DeploymentID, settle)
	if w := s.app("/web"); w.Instances != 0 || len(w.Tasks) != 0 {
		t.Fatalf("after killing all with scale: %+v", w)
	}

	// Versions, newest first; a version is the bare app; PUT
	// {"version":ts} rolls back (go-marathon SetApplicationVersion).
	var versions struct {
		Versions []string `json:"versions"`
	}
	s.do("GET", "/v2/apps/web/versions", nil).expect(t, 200, "versions").decode(t, &versions)
	if len(versions.Versions) < 6 || versions.Versions[len(versions.Versions)-1] != firstVersion || !slices.IsSortedFunc(versions.Versions, func(a, b string) int { return strings.Compare(b, a) }) {
		t.Fatalf("versions %v, want newest first ending with %s", versions.Versions, firstVersion)
	}
	var old marathonApp
	s.do("GET", "/v2/apps/web/versions/"+firstVersion, nil).expect(t, 200, "version").decode(t, &old)
	if old.ID != "/web" || old.Instances != 1 || old.Labels["HAPROXY_GROUP"] != "external" || old.Version != firstVersion {
		t.Fatalf("version %s: %+v", firstVersion, old)
	}
	s.do("GET", "/v2/apps/web/versions/2001-01-01T00:00:00.000Z", nil).expect(t, 404, "unknown version")
	back := s.do("PUT", "/v2/apps/web", map[string]string{"version": firstVersion}).deployed(t, 200, "rollback")
	s.deploymentGone(back.DeploymentID, settle)
	waitFor(t, "the rolled-back app to run", settle, func() bool { return allTasksRunning(s.app("/web")) })
	web = s.app("/web")
	if web.Instances != 1 || web.Labels["HAPROXY_GROUP"] != "external" || web.Version == firstVersion {
		t.Fatalf("after rollback: %+v", web)
	}

	// Queue, info, leader, pods.
	var queue struct {
		Queue []map[string]any `json:"queue"`
	}
	s.do("GET", "/v2/queue", nil).expect(t, 200, "queue").decode(t, &queue)
	if queue.Queue == nil {
		t.Fatalf("queue: %s", s.do("GET", "/v2/queue", nil).body)
	}
	s.do("DELETE", "/v2/queue/web/delay", nil).expect(t, 204, "reset delay")
	s.do("DELETE", "/v2/queue/nope/delay", nil).expect(t, 404, "reset delay of nothing")
	info := s.do("GET", "/v2/info", nil).expect(t, 200, "info").obj(t)
	leader := strings.TrimPrefix(s.url, "http://")
	if info["name"] != "garrison" || info["leader"] != leader || info["frameworkId"] != "garrison-test" || info["elected"] != true {
		t.Fatalf("info %v", info)
	}
	if mc := info["marathon_config"].(map[string]any); mc["local_port_min"] != 10000.0 || mc["framework_name"] != "garrison" {
		t.Fatalf("marathon_config %v", mc)
	}
	lr := s.do("GET", "/v2/leader", nil).expect(t, 200, "leader")
	if l := lr.obj(t); l["leader"] != leader {
		t.Fatalf("leader %v", l)
	}
	// A single headquarter names itself on every /v2 answer.
	if h := lr.header.Get("X-Marathon-Leader"); h != "http://"+leader {
		t.Fatalf("X-Marathon-Leader %q, want http://%s", h, leader)
	}
	if m := s.do("DELETE", "/v2/leader", nil).expect(t, 200, "abdicate").obj(t); !strings.HasPrefix(m["message"].(string), "Leadership abdicated") {
		t.Fatalf("abdicate %v", m)
	}
	s.do("HEAD", "/v2/pods", nil).expect(t, 404, "HEAD /v2/pods")
	s.do("HEAD", "/v2/pods/::status", nil).expect(t, 404, "HEAD /v2/pods/::status")

	// go-marathon DeleteApplication; force defaults to true.
	gone := s.do("DELETE", "/v2/apps/web", nil).deployed(t, 200, "DELETE app")
	s.deploymentGone(gone.DeploymentID, settle)
	nf := s.do("GET", "/v2/apps/web", nil).expect(t, 404, "GET deleted app").obj(t)
	if nf["message"] != "App '/web' does not exist" {
		t.Fatalf("404 body %v", nf)
	}
	if b := string(s.do("GET", "/v2/apps", nil).body); b != `{"apps":[]}` {
		t.Fatalf("GET /v2/apps after delete: %s", b)
	}
	if tk := s.sched.Tasks(""); len(tk) != 0 {
		t.Fatalf("tasks left after delete: %v", tk)
	}
}

func taskIDs(ts []marathonTask) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

// TestAppEndpoints covers the single-app routes' edge cases without tasks.
func TestAppEndpoints(t *testing.T) {
	s := newStack(t)
	// PUT creates a missing app: 201, Location and a deployment.
	r := s.do("PUT", "/v2/apps/shop/web", map[string]any{"cmd": "sleep 1000", "instances": 0})
	dr := r.deployed(t, 201, "PUT create")
	if r.header.Get("Location") != "/shop/web" {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	s.deploymentGone(dr.DeploymentID, settle)
	s.deploy("PUT", "/v2/apps/shop/db?partialUpdate=false", map[string]any{"id": "db", "cmd": "sleep 1000", "instances": 0}, 201)
	a := s.app("/shop/db")
	if a.ID != "/shop/db" || a.Cmd != "sleep 1000" {
		t.Fatalf("created %+v", a)
	}
	// PATCH never creates.
	if m := s.do("PATCH", "/v2/apps/shop/nope", map[string]any{"instances": 0}).expect(t, 404, "PATCH missing").obj(t); m["message"] != "App '/shop/nope' does not exist" {
		t.Fatalf("PATCH 404 %v", m)
	}
	s.do("DELETE", "/v2/apps/shop/nope", nil).expect(t, 404, "DELETE missing")
	s.do("POST", "/v2/apps/shop/nope/restart", nil).expect(t, 404, "restart missing")
	s.do("GET", "/v2/apps/shop/nope/tasks", nil).expect(t, 404, "tasks of missing")
	s.do("GET", "/v2/apps/shop/nope/versions", nil).expect(t, 404, "versions of missing")
	s.do("GET", "/v2/apps/shop/web/restart", nil).expect(t, 405, "GET restart")

	// partialUpdate=false replaces: labels left out are gone.
	s.deploy("PATCH", "/v2/apps/shop/web", map[string]any{"labels": map[string]string{"a": "b"}}, 200)
	s.deploy("PUT", "/v2/apps/shop/web", map[string]any{"cpus": 0.5}, 200)
	if a := s.app("/shop/web"); a.Labels["a"] != "b" {
		t.Fatalf("partial PUT lost labels: %+v", a)
	}
	s.deploy("PUT", "/v2/apps/shop/web?partialUpdate=false", map[string]any{"cmd": "sleep 999", "instances": 0}, 200)
	if a := s.app("/shop/web"); len(a.Labels) != 0 || a.Cmd != "sleep 999" {
		t.Fatalf("full PUT kept labels: %+v", a)
	}

	// The group form and the group tree.
	var group map[string][]marathonApp
	s.do("GET", "/v2/apps/shop/*", nil).expect(t, 200, "group apps").decode(t, &group)
	if len(group["*"]) != 2 || group["*"][0].ID != "/shop/db" {
		t.Fatalf("GET /v2/apps/shop/*: %+v", group)
	}
	s.do("GET", "/v2/apps/none/*", nil).expect(t, 404, "empty group")
	var tree struct {
		ID     string `json:"id"`
		Groups []struct {
			ID   string        `json:"id"`
			Apps []marathonApp `json:"apps"`
		} `json:"groups"`
	}
	s.do("GET", "/v2/groups", nil).expect(t, 200, "groups").decode(t, &tree)
	if tree.ID != "/" || len(tree.Groups) != 1 || tree.Groups[0].ID != "/shop" || len(tree.Groups[0].Apps) != 2 {
		t.Fatalf("group tree %+v", tree)
	}
	s.do("GET", "/v2/groups/shop", nil).expect(t, 200, "group /shop")
	s.do("GET", "/v2/groups/none", nil).expect(t, 404, "group /none")

	// Bulk PUT and PATCH /v2/apps.
	bulk := []map[string]any{{"id": "/shop/web", "instances": 0, "env": map[string]string{"X": "1"}}, {"id": "shop/cache", "cmd": "sleep 5", "instances": 0}}
	s.deploy("PUT", "/v2/apps", bulk, 200)
	if a := s.app("/shop/cache"); a.Cmd != "sleep 5" {
		t.Fatalf("bulk PUT did not create: %+v", a)
	}
	if a := s.app("/shop/web"); a.Env["X"] != "1" || a.Cmd != "sleep 999" {
		t.Fatalf("bulk PUT did not merge: %+v", a)
	}
	s.do("PATCH", "/v2/apps", []map[string]any{{"id": "/shop/web", "instances": 0}, {"id": "/shop/gone", "instances": 1}}).expect(t, 404, "bulk PATCH with unknown")
	r = s.do("PUT", "/v2/apps", []map[string]any{{"id": "/shop/web", "cpus": -1}}).expect(t, 422, "bulk PUT invalid")
	if !strings.Contains(string(r.body), `"path":"/(0)/cpus"`) {
		t.Fatalf("bulk 422 body %s", r.body)
	}
	s.do("PUT", "/v2/apps", `{"id":"x"}`).expect(t, 400, "bulk PUT of an object")

	// The version field may only come with id.
	s.do("PUT", "/v2/apps/shop/web", map[string]any{"version": a.Version, "cmd": "x"}).expect(t, 422, "version with cmd")
	s.do("PUT", "/v2/apps/shop/web", map[string]any{"version": "2001-01-01T00:00:00.000Z"}).expect(t, 404, "rollback to unknown version")

	// Docker apps without a Docker engine are refused, naming the image.
	r = s.do("POST", "/v2/apps", map[string]any{"id": "/img", "instances": 0, "container": map[string]any{"type": "DOCKER", "docker": map[string]any{"image": "nginx"}}})
	r.expect(t, 422, "Docker app without an engine")
	var ve struct {
		Message string `json:"message"`
		Details []struct {
			Path   string   `json:"path"`
			Errors []string `json:"errors"`
		} `json:"details"`
	}
	r.decode(t, &ve)
	if len(ve.Details) != 1 || ve.Details[0].Path != "/container/docker/image" || !strings.Contains(ve.Details[0].Errors[0], "no Docker engine") {
		t.Fatalf("Docker refusal body %s", r.body)
	}
	if _, ok := s.sched.App("/img"); ok {
		t.Fatal("refused Docker app stored")
	}
}
