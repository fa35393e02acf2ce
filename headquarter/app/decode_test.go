package app

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestDecodeTypeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, path, code string
	}{
		{"id number", `{"id":5}`, "/id", "error.expected.jsstring"},
		{"instances string", `{"instances":"3"}`, "/instances", "error.expected.jsnumber"},
		{"instances fraction", `{"instances":1.5}`, "/instances", "error.expected.int"},
		{"instances overflow", `{"instances":1e12}`, "/instances", "error.expected.int"},
		{"cpus string", `{"cpus":"1"}`, "/cpus", "error.expected.jsnumber"},
		{"args string", `{"args":"ls"}`, "/args", "error.expected.jsarray"},
		{"args element", `{"args":["ls",1]}`, "/args(1)", "error.expected.jsstring"},
		{"args null element", `{"args":[null]}`, "/args(0)", "error.expected.jsstring"},
		{"env array", `{"env":[]}`, "/env", "error.expected.jsobject"},
		{"env number", `{"env":{"N":1}}`, "/env/N", "error.expected.jsstring"},
		{"labels number", `{"labels":{"a":true}}`, "/labels/a", "error.expected.jsstring"},
		{"docker image", `{"container":{"docker":{"image":5}}}`, "/container/docker/image", "error.expected.jsstring"},
		{"docker object", `{"container":{"docker":"nginx"}}`, "/container/docker", "error.expected.jsobject"},
		{"health interval", `{"healthChecks":[{"intervalSeconds":"x"}]}`, "/healthChecks(0)/intervalSeconds", "error.expected.jsnumber"},
		{"health second element", `{"healthChecks":[{},{"portIndex":0.5}]}`, "/healthChecks(1)/portIndex", "error.expected.int"},
		{"port string", `{"portDefinitions":[{"port":"80"}]}`, "/portDefinitions(0)/port", "error.expected.jsnumber"},
		{"ports element", `{"ports":["80"]}`, "/ports(0)", "error.expected.jsnumber"},
		{"constraint element", `{"constraints":[["hostname",1]]}`, "/constraints(0)(1)", "error.expected.jsstring"},
		{"constraint not array", `{"constraints":["hostname"]}`, "/constraints(0)", "error.expected.jsarray"},
		{"requirePorts", `{"requirePorts":"yes"}`, "/requirePorts", "error.expected.jsboolean"},
		{"version", `{"version":"yesterday"}`, "/version", "error.expected.date.isoformat"},
		{"versionInfo", `{"versionInfo":{"lastScalingAt":"x"}}`, "/versionInfo/lastScalingAt", "error.expected.date.isoformat"},
		{"upgrade strategy", `{"upgradeStrategy":{"minimumHealthCapacity":"1"}}`, "/upgradeStrategy/minimumHealthCapacity", "error.expected.jsnumber"},
		{"unreachable", `{"unreachableStrategy":"sometimes"}`, "/unreachableStrategy", `"disabled"`},
		{"unreachable long", `{"unreachableStrategy":{"inactiveAfterSeconds":0.5}}`, "/unreachableStrategy/inactiveAfterSeconds", "error.expected.long"},
		{"top level array", `[]`, "/", "error.expected.jsobject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.body))
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want *DecodeError", err)
			}
			i := slices.IndexFunc(de.Details, func(fe FieldError) bool { return fe.Path == tc.path })
			if i < 0 || !slices.Contains(de.Details[i].Errors, tc.code) && !containsSub(de.Details[i].Errors, tc.code) {
				t.Errorf("details %+v, want %s at %s", de.Details, tc.code, tc.path)
			}
		})
	}
}

func containsSub(msgs []string, sub string) bool {
	return slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, sub) })
}

func TestDecodeErrorBodies(t *testing.T) {
	_, err := Decode([]byte(`{"id":5}`))
	b, _ := json.Marshal(err)
	if want := `{"message":"Invalid JSON","details":[{"path":"/id","errors":["error.expected.jsstring"]}]}`; string(b) != want {
		t.Errorf("400 body\n got %s\nwant %s", b, want)
	}
	for _, body := range []string{``, `{"id":`, `{"id":"/a"} {}`, `{"id" "x"}`} {
		_, err := Decode([]byte(body))
		var de *DecodeError
		if !errors.As(err, &de) || de.Syntax == "" {
			t.Errorf("Decode(%q) = %v, want a syntax DecodeError", body, err)
			continue
		}
		var shape struct {
			Message string `json:"message"`
			Details string `json:"details"` // a plain string, as Jackson's
		}
		b, _ := json.Marshal(err)
		if err := json.Unmarshal(b, &shape); err != nil || shape.Message != "Invalid JSON" || shape.Details == "" {
			t.Errorf("Decode(%q) body %s", body, b)
		}
	}
}

// go-marathon sends every field of its Application struct that is not
// omitempty: "ports" and "dependencies" as null, plus fields garrison does
// not know.
func TestDecodeGoMarathonBody(t *testing.T) {
	body := `{"id":"/ktv/account","cmd":null,"args":null,"container":{"type":"DOCKER","docker":{"image":"registry.local/account:1","network":"HOST","parameters":null,"portMappings":null,"privileged":false},"volumes":null},
		"cpus":0.5,"mem":64,"instances":2,"ports":null,"dependencies":null,"env":{"A":"1"},"labels":{"team":"ktv"},
		"healthChecks":[{"protocol":"HTTP","path":"/ping","portIndex":0,"gracePeriodSeconds":10,"intervalSeconds":2,"timeoutSeconds":1,"maxConsecutiveFailures":3}],
		"uris":null,"fetch":null,"ipAddress":null,"residency":null,"secrets":null,"tty":null,"someFutureField":{"x":[1,2]}}`
	a, err := Parse([]byte(body), box1)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "/ktv/account" || a.Instances != 2 || a.CPUs != 0.5 || a.Mem != 64 || a.Image() != "registry.local/account:1" {
		t.Errorf("decoded %+v", a)
	}
	if len(a.PortDefinitions) != 1 || a.PortDefinitions[0].Name != "default" {
		t.Errorf("ports:null must mean absent, giving the default port; got %+v", a.PortDefinitions)
	}
	if len(a.Networks) != 1 || a.Networks[0].Mode != NetworkHost || a.Container.Docker.Network != "" {
		t.Errorf("docker HOST network not folded into networks: %+v %+v", a.Networks, a.Container.Docker)
	}
	if a.Residency || len(a.Secrets) > 0 {
		t.Error("null residency/secrets must be absent")
	}
	if a.Has("ports") || a.Has("dependencies") || !a.Has("instances") {
		t.Error("presence wrong for null fields")
	}
}

func TestDecodeNestedDefaults(t *testing.T) {
	a, err := Decode([]byte(`{"id":"/a","cmd":"x y","healthChecks":[{"protocol":"TCP","intervalSeconds":5}],
		"fetch":[{"uri":"http://x/a.tgz"}],"upgradeStrategy":{"minimumHealthCapacity":0.5},"env":{"S":{"secret":"s1"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	h := a.HealthChecks[0]
	if h.IntervalSeconds != 5 || h.GracePeriodSeconds != 300 || h.TimeoutSeconds != 20 || h.MaxConsecutiveFailures != 3 || h.DelaySeconds != 15 {
		t.Errorf("health check defaults: %+v", h)
	}
	if !a.Fetch[0].Extract {
		t.Error("fetch extract defaults to true")
	}
	if a.UpgradeStrategy != (UpgradeStrategy{0.5, 1}) {
		t.Errorf("upgradeStrategy %+v", a.UpgradeStrategy)
	}
	if a.EnvSecrets["S"] != "s1" {
		t.Errorf("env secret %+v", a.EnvSecrets)
	}
}

func TestUnmarshalJSONRoundTrip(t *testing.T) {
	a, err := Parse([]byte(`{"id":"/a","cmd":"x y","instances":0,"healthChecks":[{"port":8080,"protocol":"HTTPS"}],
		"version":"2015-09-25T15:13:48.343Z","versionInfo":{"lastScalingAt":"2015-09-25T15:13:48.343Z","lastConfigChangeAt":"2015-09-24T15:13:48.000Z"}}`), box1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var back App
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(Normalize(&back))
	if string(b) != string(b2) {
		t.Errorf("round trip changed the app\n got %s\nwant %s", b2, b)
	}
	if back.Instances != 0 {
		t.Error("explicit instances 0 lost")
	}
}
