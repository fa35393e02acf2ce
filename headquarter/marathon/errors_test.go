package marathon_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/garrisonhq/garrison/headquarter/marathon"
)

// errorBody is Marathon's 400/422 body.
type errorBody struct {
	Message string `json:"message"`
	Details []struct {
		Path   string   `json:"path"`
		Errors []string `json:"errors"`
	} `json:"details"`
}

func (e errorBody) has(path string) bool {
	for _, d := range e.Details {
		if d.Path == path && len(d.Errors) > 0 {
			return true
		}
	}
	return false
}

// TestInvalidAppsChangeNothing posts invalid app definitions: each is
// refused with 422 (400 for wrong JSON types) naming the field, and the
// apps stay exactly as they were.
func TestInvalidAppsChangeNothing(t *testing.T) {
	s := newStack(t)
	s.deploy("POST", "/v2/apps", map[string]any{"id": "/keep", "cmd": "sleep 100", "instances": 0}, 201)
	before := string(s.do("GET", "/v2/apps", nil).expect(t, 200, "GET /v2/apps").body)
	versionsBefore := string(s.do("GET", "/v2/apps/keep/versions", nil).body)

	hc := func(extra string) string {
		return `{"id":"/x","cmd":"a","healthChecks":[{"protocol":"HTTP","path":"/"` + extra + `}]}`
	}
	cases := []struct {
		name   string
		body   string
		status int
		path   string // "" for a body that is not JSON at all
	}{
		{"upper-case id", `{"id":"/Bad","cmd":"a"}`, 422, "/id"},
		{"underscore in id", `{"id":"/a_b","cmd":"a"}`, 422, "/id"},
		{"missing id", `{"cmd":"a"}`, 422, "/id"},
		{"reserved last segment", `{"id":"/x/restart","cmd":"a"}`, 422, "/id"},
		{"leading dash", `{"id":"/-x","cmd":"a"}`, 422, "/id"},
		{"neither cmd nor args nor container", `{"id":"/x"}`, 422, "/"},
		{"cmd and args", `{"id":"/x","cmd":"a","args":["b"]}`, 422, "/"},
		{"empty cmd", `{"id":"/x","cmd":"","args":["b"]}`, 422, "/cmd"},
		{"negative instances", `{"id":"/x","cmd":"a","instances":-1}`, 422, "/instances"},
		{"zero cpus", `{"id":"/x","cmd":"a","cpus":0}`, 422, "/cpus"},
		{"negative mem", `{"id":"/x","cmd":"a","mem":-1}`, 422, "/mem"},
		{"negative disk", `{"id":"/x","cmd":"a","disk":-5}`, 422, "/disk"},
		{"gpus", `{"id":"/x","cmd":"a","gpus":1}`, 422, "/gpus"},
		{"secret env", `{"id":"/x","cmd":"a","env":{"PW":{"secret":"pw"}}}`, 422, "/env/PW"},
		{"secrets", `{"id":"/x","cmd":"a","secrets":{"pw":{"source":"x"}}}`, 422, "/secrets"},
		{"single instance app with two", `{"id":"/x","cmd":"a","instances":2,"labels":{"MARATHON_SINGLE_INSTANCE_APP":"true"},"upgradeStrategy":{"minimumHealthCapacity":0,"maximumOverCapacity":0}}`, 422, "/"},
		{"unknown container type", `{"id":"/x","cmd":"a","container":{"type":"RKT"}}`, 422, "/container/type"},
		{"empty image", `{"id":"/x","container":{"type":"DOCKER","docker":{"image":""}}}`, 422, "/container/docker/image"},
		{"bridge docker network", `{"id":"/x","container":{"type":"DOCKER","docker":{"image":"nginx","network":"BRIDGE"}}}`, 422, "/container/docker/network"},
		{"bridge networks", `{"id":"/x","cmd":"a","networks":[{"mode":"container/bridge"}]}`, 422, "/networks(0)/mode"},
		{"port mappings in host mode", `{"id":"/x","container":{"type":"DOCKER","docker":{"image":"nginx"},"portMappings":[{"containerPort":80}]}}`, 422, "/"},
		{"ports and portDefinitions", `{"id":"/x","cmd":"a","ports":[8080],"portDefinitions":[{"port":9090}]}`, 422, "/"},
		{"port out of range", `{"id":"/x","cmd":"a","portDefinitions":[{"port":70000}]}`, 422, "/portDefinitions(0)/port"},
		{"port protocol", `{"id":"/x","cmd":"a","portDefinitions":[{"port":0,"protocol":"sctp"}]}`, 422, "/portDefinitions(0)/protocol"},
		{"port name", `{"id":"/x","cmd":"a","portDefinitions":[{"port":0,"name":"Bad_Name"}]}`, 422, "/portDefinitions(0)/name"},
		{"duplicate port names", `{"id":"/x","cmd":"a","portDefinitions":[{"port":0,"name":"a"},{"port":0,"name":"a"}]}`, 422, "/portDefinitions"},
		{"health check protocol", `{"id":"/x","cmd":"a","healthChecks":[{"protocol":"GOPHER"}]}`, 422, "/healthChecks(0)/protocol"},
		{"health check path", `{"id":"/x","cmd":"a","healthChecks":[{"protocol":"HTTP","path":"health"}]}`, 422, "/healthChecks(0)/path"},
		{"health check port index", hc(`,"portIndex":3`), 422, "/healthChecks(0)"},
		{"health check interval zero", hc(`,"intervalSeconds":0`), 422, "/healthChecks(0)/intervalSeconds"},
		// Issue 10: limits and fields garrison cannot honour.
		{"huge instances", `{"id":"/x","cmd":"a","instances":2147483647}`, 422, "/instances"},
		{"id longer than a task id can carry", `{"id":"/` + strings.Repeat("a", 200) + `","cmd":"a"}`, 422, "/id"},
		{"requirePorts with two instances", `{"id":"/x","cmd":"a","instances":2,"requirePorts":true,"portDefinitions":[{"port":18080}]}`, 422, "/requirePorts"},
		{"readiness checks", `{"id":"/x","cmd":"a","portDefinitions":[{"port":0,"name":"http"}],"readinessChecks":[{"portName":"http"}]}`, 422, "/readinessChecks"},
		{"dependencies", `{"id":"/x","cmd":"a","dependencies":["/db"]}`, 422, "/dependencies"},
		{"file uri", `{"id":"/x","cmd":"a","uris":["file:///etc/passwd"]}`, 422, "/uris(0)/uri"},
		{"fetch of a container", `{"id":"/x","container":{"type":"DOCKER","docker":{"image":"nginx"}},"fetch":[{"uri":"http://a/x.tgz"}]}`, 422, "/fetch"},
		{"forcePullImage", `{"id":"/x","container":{"type":"DOCKER","docker":{"image":"nginx","forcePullImage":true}}}`, 422, "/container/docker/forcePullImage"},
		{"unmapped docker parameter", `{"id":"/x","container":{"type":"DOCKER","docker":{"image":"nginx","parameters":[{"key":"hostname","value":"h"}]}}}`, 422, "/container/docker/parameters(0)/key"},
		{"host volume of a process app", `{"id":"/x","cmd":"a","container":{"type":"MESOS","volumes":[{"containerPath":"/d","hostPath":"/h","mode":"RO"}]}}`, 422, "/container/volumes(0)"},
		{"health check negative grace", hc(`,"gracePeriodSeconds":-1`), 422, "/healthChecks(0)/gracePeriodSeconds"},
		{"COMMAND check without command", `{"id":"/x","cmd":"a","healthChecks":[{"protocol":"COMMAND"}]}`, 422, "/healthChecks(0)/command"},
		{"readiness port name", `{"id":"/x","cmd":"a","readinessChecks":[{"portName":"nope"}]}`, 422, "/readinessChecks(0)/portName"},
		{"minimumHealthCapacity above 1", `{"id":"/x","cmd":"a","upgradeStrategy":{"minimumHealthCapacity":1.5,"maximumOverCapacity":1}}`, 422, "/upgradeStrategy/minimumHealthCapacity"},
		{"negative maximumOverCapacity", `{"id":"/x","cmd":"a","upgradeStrategy":{"minimumHealthCapacity":1,"maximumOverCapacity":-0.5}}`, 422, "/upgradeStrategy/maximumOverCapacity"},
		{"kill selection", `{"id":"/x","cmd":"a","killSelection":"RANDOM"}`, 422, "/killSelection"},
		{"backoff factor below 1", `{"id":"/x","cmd":"a","backoffFactor":0.5}`, 422, "/backoffFactor"},
		{"negative backoff", `{"id":"/x","cmd":"a","backoffSeconds":-1}`, 422, "/backoffSeconds"},
		{"unreachable inactive after expunge", `{"id":"/x","cmd":"a","unreachableStrategy":{"inactiveAfterSeconds":10,"expungeAfterSeconds":5}}`, 422, "/unreachableStrategy"},
		{"constraint operator", `{"id":"/x","cmd":"a","constraints":[["hostname","SOMETIMES"]]}`, 422, "/constraints(0)"},
		{"constraint arity", `{"id":"/x","cmd":"a","constraints":[["hostname"]]}`, 422, "/constraints(0)"},
		{"empty accepted roles", `{"id":"/x","cmd":"a","acceptedResourceRoles":[]}`, 422, "/acceptedResourceRoles"},
		{"uris and fetch", `{"id":"/x","cmd":"a","uris":["http://a"],"fetch":[{"uri":"http://b"}]}`, 422, "/uris"},
		{"custom executor", `{"id":"/x","cmd":"a","executor":"/opt/exec"}`, 422, "/executor"},
		{"resident app", `{"id":"/x","cmd":"a","residency":{"taskLostBehavior":"WAIT_FOREVER"}}`, 422, "/residency"},
		{"Docker app without a Docker engine", `{"id":"/docker","container":{"type":"DOCKER","docker":{"image":"nginx"}}}`, 422, "/container/docker/image"},
		// Wrong JSON types are 400 "Invalid JSON" with play-json's codes.
		{"instances as a string", `{"id":"/x","cmd":"a","instances":"three"}`, 400, "/instances"},
		{"fractional instances", `{"id":"/x","cmd":"a","instances":1.5}`, 400, "/instances"},
		{"id as a number", `{"id":1,"cmd":"a"}`, 400, "/id"},
		{"cpus as a string", `{"id":"/x","cmd":"a","cpus":"lots"}`, 400, "/cpus"},
		{"env as an array", `{"id":"/x","cmd":"a","env":[]}`, 400, "/env"},
		{"health checks as an object", `{"id":"/x","cmd":"a","healthChecks":{}}`, 400, "/healthChecks"},
		{"args with a number", `{"id":"/x","args":["a",1]}`, 400, "/args(1)"},
		{"an array", `[]`, 400, "/"},
		{"not JSON", `{"id":`, 400, ""},
		{"empty body", ``, 400, ""},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do("POST", "/v2/apps", tc.body).expect(t, tc.status, tc.name)
			if r.header.Get(marathon.DeploymentHeader) != "" {
				t.Fatalf("refused request carries %s", marathon.DeploymentHeader)
			}
			var e errorBody
			if tc.path == "" {
				var raw struct {
					Message string `json:"message"`
					Details string `json:"details"`
				}
				r.decode(t, &raw)
				if raw.Message != "Invalid JSON" || raw.Details == "" {
					t.Fatalf("body %s", r.body)
				}
				return
			}
			r.decode(t, &e)
			want := map[int]string{400: "Invalid JSON", 422: "Object is not valid"}[tc.status]
			if e.Message != want || !e.has(tc.path) {
				t.Fatalf("body %s: want message %q and a detail at %s", r.body, want, tc.path)
			}
		})
	}

	// The same bodies as updates of the existing app change nothing either.
	for _, body := range []string{`{"cpus":0}`, `{"instances":"x"}`, `{"healthChecks":[{"protocol":"GOPHER"}]}`, `{"version":"2020-01-01T00:00:00.000Z","cmd":"b"}`} {
		r := s.do("PUT", "/v2/apps/keep", body)
		if r.status != 400 && r.status != 422 {
			t.Fatalf("PUT %s: status %d %s", body, r.status, r.body)
		}
		s.do("PATCH", "/v2/apps/keep", body)
	}
	s.do("PUT", "/v2/apps/keep", `{"cmd":"a","args":["b"]}`).expect(t, 422, "PUT cmd and args")
	s.do("POST", "/v2/apps", `{"id":"/keep","cmd":"sleep 100","instances":0}`).expect(t, 409, "duplicate")
	s.do("GET", "/v2/apps?label=a+in+(", nil).expect(t, 400, "bad label selector")

	if after := string(s.do("GET", "/v2/apps", nil).body); after != before {
		t.Fatalf("GET /v2/apps changed:\nbefore %s\nafter  %s", before, after)
	}
	if after := string(s.do("GET", "/v2/apps/keep/versions", nil).body); after != versionsBefore {
		t.Fatalf("versions changed: %s -> %s", versionsBefore, after)
	}
	if d := s.sched.Deployments(); len(d) != 0 {
		t.Fatalf("deployments after refused requests: %+v", d)
	}
}

// slowApp is an app whose health check never passes (the test server
// starts unhealthy and is never killed for it), so its deployment never
// finishes.
func slowApp(id string, instances int) map[string]any {
	return webApp(id, instances, map[string]any{"env": map[string]string{"START_UNHEALTHY": "1"}})
}

// TestLockedAppAnswers409 holds an app in a deployment that never ends:
// writes without force are 409 naming the deployment; with force they
// replace it.
func TestLockedAppAnswers409(t *testing.T) {
	s := newStack(t)
	r := s.do("POST", "/v2/apps", slowApp("/slow", 1)).expect(t, 201, "create slow app")
	dep := r.header.Get(marathon.DeploymentHeader)
	waitFor(t, "the slow app's task to run, unhealthy", settle, func() bool {
		a := s.app("/slow")
		return a.TasksRunning == 1 && len(a.Deployments) == 1 && a.Deployments[0].ID == dep
	})

	type locked struct {
		Message     string          `json:"message"`
		Deployments []deploymentRef `json:"deployments"`
	}
	for _, req := range []struct{ method, path, body string }{
		{"PUT", "/v2/apps/slow", `{"instances":2}`},
		{"PATCH", "/v2/apps/slow", `{"instances":2}`},
		{"PUT", "/v2/apps", `[{"id":"/slow","instances":2}]`},
		{"POST", "/v2/apps/slow/restart", `{}`},
		{"DELETE", "/v2/apps/slow?force=false", ``},
		{"POST", "/v2/tasks/delete?scale=true", `{"ids":["` + s.app("/slow").Tasks[0].ID + `"]}`},
	} {
		r := s.do(req.method, req.path, req.body).expect(t, 409, req.method+" "+req.path+" while locked")
		var l locked
		r.decode(t, &l)
		if len(l.Deployments) != 1 || l.Deployments[0].ID != dep ||
			l.Message != "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/"+dep+"'." {
			t.Fatalf("%s %s: 409 body %s", req.method, req.path, r.body)
		}
	}
	if a := s.app("/slow"); a.Instances != 1 || len(a.Tasks) != 1 {
		t.Fatalf("a refused write changed the app: %+v", a)
	}

	forced := s.do("PUT", "/v2/apps/slow?force=true", `{"instances":2}`).deployed(t, 200, "PUT with force")
	var deps []struct {
		ID           string   `json:"id"`
		AffectedApps []string `json:"affectedApps"`
	}
	s.do("GET", "/v2/deployments", nil).decode(t, &deps)
	if len(deps) != 1 || deps[0].ID != forced.DeploymentID || deps[0].AffectedApps[0] != "/slow" {
		t.Fatalf("deployments after force: %+v", deps)
	}
	waitFor(t, "two tasks", settle, func() bool { return s.app("/slow").TasksRunning == 2 })
	// DELETE's force defaults to true: it goes through the lock.
	s.deploy("DELETE", "/v2/apps/slow", nil, 200)
	s.do("GET", "/v2/apps/slow", nil).expect(t, 404, "deleted")
}

// TestCancelDeployment: DELETE /v2/deployments/{id} rolls back (200 with
// the rollback's id), or with force=true only cancels (202, no body).
func TestCancelDeployment(t *testing.T) {
	s := newStack(t)
	s.do("DELETE", "/v2/deployments/nope", nil).expect(t, 404, "cancel unknown")

	// Rolling back a create deletes the app.
	r := s.do("POST", "/v2/apps", slowApp("/never", 1)).expect(t, 201, "create")
	dep := r.header.Get(marathon.DeploymentHeader)
	rb := s.do("DELETE", "/v2/deployments/"+dep, nil).deployed(t, 200, "cancel create")
	if rb.DeploymentID == dep {
		t.Fatal("the rollback reuses the cancelled deployment's id")
	}
	s.deploymentGone(rb.DeploymentID, settle)
	s.do("GET", "/v2/apps/never", nil).expect(t, 404, "rolled-back create")
	waitFor(t, "its task gone", settle, func() bool { return len(s.sched.Tasks("/never")) == 0 })

	// Rolling back an update restores the previous definition.
	s.deploy("POST", "/v2/apps", webApp("/svc", 1, nil), 201)
	waitFor(t, "the app to run", settle, func() bool { return allTasksRunning(s.app("/svc")) })
	r = s.do("PATCH", "/v2/apps/svc", map[string]any{"env": map[string]string{"START_UNHEALTHY": "1"}})
	bad := r.deployed(t, 200, "unhealthy update")
	waitFor(t, "the update to be stuck", settle, func() bool {
		a := s.app("/svc")
		return a.TasksRunning == 2 && len(a.Deployments) == 1
	})
	rb = s.do("DELETE", "/v2/deployments/"+bad.DeploymentID+"?force=false", nil).deployed(t, 200, "rollback update")
	s.deploymentGone(rb.DeploymentID, settle)
	waitFor(t, "the old version alone", settle, func() bool {
		a := s.app("/svc")
		return allTasksRunning(a) && len(a.Tasks) == 1
	})
	if a := s.app("/svc"); a.Env["START_UNHEALTHY"] != "" {
		t.Fatalf("rollback kept the new env: %+v", a.Env)
	}

	// force=true only cancels: 202, no body, the app stays as it is.
	bad = s.do("PATCH", "/v2/apps/svc", map[string]any{"env": map[string]string{"START_UNHEALTHY": "1"}}).deployed(t, 200, "unhealthy update again")
	r = s.do("DELETE", "/v2/deployments/"+bad.DeploymentID+"?force=true", nil).expect(t, 202, "force cancel")
	if len(r.body) != 0 || r.header.Get(marathon.DeploymentHeader) != "" {
		t.Fatalf("force cancel answered %q with header %q", r.body, r.header.Get(marathon.DeploymentHeader))
	}
	if body := string(s.do("GET", "/v2/deployments", nil).body); body != "[]" {
		t.Fatalf("deployments after force cancel: %s", body)
	}
	if a := s.app("/svc"); a.Env["START_UNHEALTHY"] != "1" || len(a.Deployments) != 0 {
		t.Fatalf("force cancel changed the app: %+v", a)
	}
}

// TestAuth: with credentials configured, /v2 answers 401 with a challenge
// unless the request carries them; /ping stays open.
func TestAuth(t *testing.T) {
	s := newStack(t, func(c *marathon.Config) {
		c.Auth = marathon.Auth{Username: "admin", Password: "s3cret", Token: "tok"}
	})
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	for _, h := range []string{"", basic("admin", "wrong"), basic("root", "s3cret"), "Bearer nope", "token=nope", "Basic !!"} {
		var r *response
		if h == "" {
			r = s.do("GET", "/v2/apps", nil)
		} else {
			r = s.do("GET", "/v2/apps", nil, "Authorization", h)
		}
		r.expect(t, 401, "GET /v2/apps with "+h)
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic realm=") {
			t.Fatalf("401 without a challenge: %v", r.header)
		}
	}
	for _, h := range []string{basic("admin", "s3cret"), "Bearer tok", "token=tok"} {
		s.do("GET", "/v2/apps", nil, "Authorization", h).expect(t, 200, "GET /v2/apps with "+h)
	}
	s.do("POST", "/v2/apps", `{"id":"/x","cmd":"a","instances":0}`).expect(t, 401, "POST without credentials")
	if len(s.sched.Apps()) != 0 {
		t.Fatal("an unauthenticated POST created an app")
	}
	s.do("GET", "/ping", nil).expect(t, 200, "ping")
	s.do("GET", "/v2/events", nil, "Accept", "text/event-stream").expect(t, 401, "events without credentials")
}
