package app

import (
	"strings"
	"testing"
)

// validateBody decodes, normalizes and validates body on the machine "box1".
func validateBody(t *testing.T, body string, env Environment) []FieldError {
	t.Helper()
	a, err := Decode([]byte(body))
	if err != nil {
		t.Fatalf("Decode(%s): %v", body, err)
	}
	return Validate(Normalize(a), env)
}

var box1 = Environment{Hostname: "box1"}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name, body, path, msg string
	}{
		{"id upper case", `{"id":"/Web","cmd":"run x"}`, "/id", "must fully match regular expression"},
		{"id underscore", `{"id":"/my_app","cmd":"run x"}`, "/id", "must fully match regular expression"},
		{"id trailing dash", `{"id":"/web-","cmd":"run x"}`, "/id", "must fully match regular expression"},
		{"id absolute with dotdot", `{"id":"/a/../b","cmd":"run x"}`, "/id", "must fully match regular expression"},
		{"id root", `{"id":"/","cmd":"run x"}`, "/id", "must not be root"},
		{"id reserved suffix", `{"id":"/web/tasks","cmd":"run x"}`, "/id", "reserved keywords"},
		{"id missing", `{"cmd":"run x"}`, "/id", "error.path.missing"},
		{"cmd and args", `{"id":"/a","cmd":"run x","args":["run"]}`, "/", "one of 'cmd' or 'args', and/or a 'container'"},
		{"nothing to run", `{"id":"/a"}`, "/", "one of 'cmd' or 'args', and/or a 'container'"},
		{"cmd empty", `{"id":"/a","cmd":""}`, "/cmd", "must not be an empty string"},
		{"instances negative", `{"id":"/a","cmd":"run x","instances":-1}`, "/instances", "got -1, expected 0 or more"},
		{"cpus zero", `{"id":"/a","cmd":"run x","cpus":0}`, "/cpus", "expected 0.001 or more"},
		{"mem negative", `{"id":"/a","cmd":"run x","mem":-1}`, "/mem", "expected 0 or more"},
		{"disk negative", `{"id":"/a","cmd":"run x","disk":-5}`, "/disk", "expected 0 or more"},
		{"gpus", `{"id":"/a","cmd":"run x","gpus":1}`, "/gpus", "not supported"},
		{"docker image empty", `{"id":"/a","container":{"type":"DOCKER","docker":{"image":""}}}`, "/container/docker/image", "must not be empty"},
		{"docker missing", `{"id":"/a","cmd":"run x","container":{"type":"DOCKER"}}`, "/container/docker", "not defined"},
		{"container type", `{"id":"/a","cmd":"run x","container":{"type":"RKT"}}`, "/container/type", "is not one of (DOCKER,MESOS)"},
		{"docker bridge", `{"id":"/a","container":{"docker":{"image":"i","network":"BRIDGE"}}}`, "/container/docker/network", "host networking only"},
		{"docker network bogus", `{"id":"/a","container":{"docker":{"image":"i","network":"WIFI"}}}`, "/container/docker/network", "is not one of"},
		{"docker network and networks", `{"id":"/a","container":{"docker":{"image":"i","network":"HOST"}},"networks":[{"mode":"host"}]}`, "/", "must not specify both container.docker.network and networks"},
		{"docker parameter key", `{"id":"/a","container":{"docker":{"image":"i","parameters":[{"key":"","value":"v"}]}}}`, "/container/docker/parameters(0)/key", "must not be empty"},
		{"bridge network", `{"id":"/a","cmd":"run x","networks":[{"mode":"container/bridge"}]}`, "/networks(0)/mode", "host networking only"},
		{"network mode bogus", `{"id":"/a","cmd":"run x","networks":[{"mode":"mesh"}]}`, "/networks(0)/mode", "is not one of"},
		{"two networks", `{"id":"/a","cmd":"run x","networks":[{"mode":"host"},{"mode":"host"}]}`, "/networks", "at most one network"},
		{"port mappings in host mode", `{"id":"/a","container":{"docker":{"image":"i"},"portMappings":[{"containerPort":80}]}}`, "/", "portMappings are not allowed with host-networking"},
		{"persistent volume", `{"id":"/a","container":{"docker":{"image":"i"},"volumes":[{"containerPath":"data","mode":"RW","persistent":{"size":10}}]}}`, "/container/volumes(0)/persistent", "not supported"},
		{"external volume", `{"id":"/a","container":{"docker":{"image":"i"},"volumes":[{"containerPath":"/d","external":{"name":"x"}}]}}`, "/container/volumes(0)/external", "not supported"},
		{"volume without hostPath", `{"id":"/a","container":{"docker":{"image":"i"},"volumes":[{"containerPath":"/d","mode":"RO"}]}}`, "/container/volumes(0)/hostPath", "must not be empty"},
		{"volume mode", `{"id":"/a","container":{"docker":{"image":"i"},"volumes":[{"containerPath":"/d","hostPath":"/h","mode":"RX"}]}}`, "/container/volumes(0)/mode", "is not one of (RO,RW)"},
		{"residency", `{"id":"/a","cmd":"run x","residency":{"taskLostBehavior":"WAIT_FOREVER"}}`, "/residency", "not supported"},
		{"port names unique", `{"id":"/a","cmd":"run x","portDefinitions":[{"port":0,"name":"http"},{"port":0,"name":"http"}]}`, "/portDefinitions", "Port names must be unique."},
		{"ports unique", `{"id":"/a","cmd":"run x","portDefinitions":[{"port":8080},{"port":8080}]}`, "/portDefinitions", "Ports must be unique."},
		{"legacy ports unique", `{"id":"/a","cmd":"run x","ports":[8080,8080]}`, "/portDefinitions", "Ports must be unique."},
		{"port range", `{"id":"/a","cmd":"run x","portDefinitions":[{"port":70000}]}`, "/portDefinitions(0)/port", "expected between 0 and 65535"},
		{"port name pattern", `{"id":"/a","cmd":"run x","portDefinitions":[{"port":0,"name":"HTTP"}]}`, "/portDefinitions(0)/name", "must fully match regular expression"},
		{"port protocol", `{"id":"/a","cmd":"run x","portDefinitions":[{"port":0,"protocol":"sctp"}]}`, "/portDefinitions(0)/protocol", "is not one of"},
		{"ports and portDefinitions", `{"id":"/a","cmd":"run x","ports":[1],"portDefinitions":[{"port":2}]}`, "/", "cannot specify both ports and port definitions"},
		{"health port index out of range", `{"id":"/a","cmd":"run x","healthChecks":[{"portIndex":1}]}`, "/healthChecks(0)", "port indices must address an element"},
		{"health check without ports", `{"id":"/a","cmd":"run x","portDefinitions":[],"healthChecks":[{"protocol":"TCP"}]}`, "/healthChecks(0)", "port indices must address an element"},
		{"health command missing", `{"id":"/a","cmd":"run x","healthChecks":[{"protocol":"COMMAND"}]}`, "/healthChecks(0)/command", "command.value"},
		{"health path", `{"id":"/a","cmd":"run x","healthChecks":[{"path":"health"}]}`, "/healthChecks(0)/path", `must start with "/"`},
		{"health interval zero", `{"id":"/a","cmd":"run x","healthChecks":[{"intervalSeconds":0}]}`, "/healthChecks(0)/intervalSeconds", "without pause"},
		{"health timeout zero", `{"id":"/a","cmd":"run x","healthChecks":[{"timeoutSeconds":0}]}`, "/healthChecks(0)/timeoutSeconds", "could never pass"},
		{"health protocol", `{"id":"/a","cmd":"run x","healthChecks":[{"protocol":"UDP"}]}`, "/healthChecks(0)/protocol", "is not one of"},
		{"health failures negative", `{"id":"/a","cmd":"run x","healthChecks":[{"maxConsecutiveFailures":-1}]}`, "/healthChecks(0)/maxConsecutiveFailures", "expected 0 or more"},
		{"health grace negative", `{"id":"/a","cmd":"run x","healthChecks":[{"gracePeriodSeconds":-1}]}`, "/healthChecks(0)/gracePeriodSeconds", "expected 0 or more"},
		{"health port zero", `{"id":"/a","cmd":"run x","healthChecks":[{"port":0}]}`, "/healthChecks(0)/port", "expected between 1 and 65535"},
		{"two mesos checks", `{"id":"/a","cmd":"run x","healthChecks":[{"protocol":"MESOS_HTTP"},{"protocol":"MESOS_TCP"}]}`, "/", "at most one Mesos health check"},
		{"health ipv6", `{"id":"/a","cmd":"run x","healthChecks":[{"ipProtocol":"IPv6"}]}`, "/healthChecks(0)", "IPv6 can only be used"},
		{"readiness port name", `{"id":"/a","cmd":"run x","readinessChecks":[{"portName":"web"}]}`, "/readinessChecks(0)/portName", "No port definition reference for portName web"},
		{"two readiness checks", `{"id":"/a","cmd":"run x","portDefinitions":[{"name":"http-api"}],"readinessChecks":[{},{}]}`, "/readinessChecks", "expected 1 or less"},
		{"min health capacity", `{"id":"/a","cmd":"run x","upgradeStrategy":{"minimumHealthCapacity":1.5}}`, "/upgradeStrategy/minimumHealthCapacity", "is greater than 1"},
		{"max over capacity", `{"id":"/a","cmd":"run x","upgradeStrategy":{"maximumOverCapacity":-0.1}}`, "/upgradeStrategy/maximumOverCapacity", "is less than 0"},
		{"single instance upgrade", `{"id":"/a","cmd":"run x","labels":{"MARATHON_SINGLE_INSTANCE_APP":"true"}}`, "/upgradeStrategy/minimumHealthCapacity", "expected 0"},
		{"single instance count", `{"id":"/a","cmd":"run x","instances":2,"labels":{"MARATHON_SINGLE_INSTANCE_APP":"true"},"upgradeStrategy":{"minimumHealthCapacity":0,"maximumOverCapacity":0}}`, "/", "Single instance app may only have one instance"},
		{"backoff factor", `{"id":"/a","cmd":"run x","backoffFactor":0.5}`, "/backoffFactor", "got 0.5, expected 1 or more"},
		{"backoff seconds", `{"id":"/a","cmd":"run x","backoffSeconds":-1}`, "/backoffSeconds", "expected 0 or more"},
		{"max launch delay", `{"id":"/a","cmd":"run x","maxLaunchDelaySeconds":-1}`, "/maxLaunchDelaySeconds", "expected 0 or more"},
		{"kill grace", `{"id":"/a","cmd":"run x","taskKillGracePeriodSeconds":-1}`, "/taskKillGracePeriodSeconds", "expected 0 or more"},
		{"kill selection", `{"id":"/a","cmd":"run x","killSelection":"RANDOM"}`, "/killSelection", "is not one of (YOUNGEST_FIRST,OLDEST_FIRST)"},
		{"unreachable order", `{"id":"/a","cmd":"run x","unreachableStrategy":{"inactiveAfterSeconds":600,"expungeAfterSeconds":300}}`, "/unreachableStrategy", "must be less or equal to expungeAfterSeconds"},
		{"constraint arity", `{"id":"/a","cmd":"run x","constraints":[["hostname"]]}`, "/constraints(0)", "either 2 or 3 fields"},
		{"constraint operator", `{"id":"/a","cmd":"run x","constraints":[["hostname","IN","a"]]}`, "/constraints(0)", "Constraint operator must be one of"},
		{"unique with value", `{"id":"/a","cmd":"run x","constraints":[["hostname","UNIQUE","x"]]}`, "/constraints(0)", "Value specified but not used"},
		{"cluster without value", `{"id":"/a","cmd":"run x","constraints":[["hostname","CLUSTER"]]}`, "/constraints(0)", "Missing value"},
		{"like bad regexp", `{"id":"/a","cmd":"run x","constraints":[["hostname","LIKE","("]]}`, "/constraints(0)", "is not a valid regular expression"},
		{"max per not a number", `{"id":"/a","cmd":"run x","constraints":[["hostname","MAX_PER","x"]]}`, "/constraints(0)", "Value was not specified or is not a number"},
		{"group by not a number", `{"id":"/a","cmd":"run x","constraints":[["hostname","GROUP_BY","x"]]}`, "/constraints(0)", "Value was specified but is not a number"},
		{"attribute constraint", `{"id":"/a","cmd":"run x","constraints":[["rack","CLUSTER","r1"]]}`, "/constraints(0)", "is not supported on a single machine until the Nomad driver exists"},
		{"unique needs machines", `{"id":"/a","cmd":"run x","instances":2,"constraints":[["hostname","UNIQUE"]]}`, "/constraints(0)", "needs 2 machines"},
		{"cluster elsewhere", `{"id":"/a","cmd":"run x","constraints":[["hostname","CLUSTER","box2"]]}`, "/constraints(0)", `does not match this machine ("box1")`},
		{"like elsewhere", `{"id":"/a","cmd":"run x","constraints":[["hostname","LIKE","web-.*"]]}`, "/constraints(0)", "does not match this machine"},
		{"unlike here", `{"id":"/a","cmd":"run x","constraints":[["@hostname","UNLIKE","box.*"]]}`, "/constraints(0)", "does not match this machine"},
		{"max per exceeded", `{"id":"/a","cmd":"run x","instances":3,"constraints":[["hostname","MAX_PER","1"]]}`, "/constraints(0)", "needs more than one machine"},
		{"group by spread", `{"id":"/a","cmd":"run x","constraints":[["hostname","GROUP_BY","3"]]}`, "/constraints(0)", "spreading over 3 machines"},
		{"env secret", `{"id":"/a","cmd":"run x","env":{"DB":{"secret":"db-pass"}}}`, "/env/DB", "secrets are not supported"},
		{"secrets", `{"id":"/a","cmd":"run x","secrets":{"s":{"source":"x"}}}`, "/secrets", "secrets are not supported"},
		{"env empty key", `{"id":"/a","cmd":"run x","env":{"":"x"}}`, "/env", "must not be empty"},
		{"executor", `{"id":"/a","cmd":"run x","executor":"/opt/exec"}`, "/executor", "custom executors are not supported"},
		{"accepted roles empty", `{"id":"/a","cmd":"run x","acceptedResourceRoles":[]}`, "/acceptedResourceRoles", "must not be empty"},
		{"uris and fetch", `{"id":"/a","cmd":"run x","uris":["http://x/a"],"fetch":[{"uri":"http://x/b"}]}`, "/uris", "may not be set in conjunction with fetch"},
		{"fetch uri", `{"id":"/a","cmd":"run x","fetch":[{"extract":false}]}`, "/fetch(0)/uri", "must not be empty"},
		{"dependency id", `{"id":"/a","cmd":"run x","dependencies":["/Bad"]}`, "/dependencies(0)", "must fully match regular expression"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := validateBody(t, tc.body, box1)
			for _, fe := range errs {
				if fe.Path != tc.path {
					continue
				}
				for _, m := range fe.Errors {
					if strings.Contains(m, tc.msg) {
						return
					}
				}
			}
			t.Errorf("no error at %q containing %q; got %+v", tc.path, tc.msg, errs)
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		env        Environment
	}{
		{"minimal", `{"id":"web","cmd":"sleep 100"}`, box1},
		{"docker image only", `{"id":"/ktv/account","container":{"type":"DOCKER","docker":{"image":"registry.local/account:1"}}}`, box1},
		{"legacy docker host network", `{"id":"/a","container":{"docker":{"image":"i","network":"HOST"}}}`, box1},
		{"args", `{"id":"/a","args":["/bin/server","-v"]}`, box1},
		{"instances zero", `{"id":"/a","cmd":"run x","instances":0}`, box1},
		{"hostname unique one instance", `{"id":"/a","cmd":"run x","constraints":[["hostname","UNIQUE"]]}`, box1},
		{"hostname cluster here", `{"id":"/a","cmd":"run x","instances":3,"constraints":[["hostname","CLUSTER","box1"]]}`, box1},
		{"hostname like here", `{"id":"/a","cmd":"run x","constraints":[["@hostname","like","box[0-9]"]]}`, box1},
		{"hostname max per", `{"id":"/a","cmd":"run x","instances":2,"constraints":[["hostname","MAX_PER","2"]]}`, box1},
		{"hostname group by", `{"id":"/a","cmd":"run x","instances":4,"constraints":[["hostname","GROUP_BY"]]}`, box1},
		{"hostname unknown", `{"id":"/a","cmd":"run x","constraints":[["hostname","CLUSTER","elsewhere"]]}`, Environment{}},
		{"cluster lifts single machine limits", `{"id":"/a","cmd":"run x","instances":3,"constraints":[["rack","GROUP_BY","3"],["hostname","UNIQUE"]]}`, Environment{Cluster: true}},
		{"health checks", `{"id":"/a","cmd":"run x","portDefinitions":[{"port":0,"name":"http"},{"port":0}],"healthChecks":[{"protocol":"HTTP","path":"/health","portIndex":1},{"protocol":"TCP","port":22},{"protocol":"COMMAND","command":{"value":"true"}}]}`, box1},
		{"no ports", `{"id":"/a","cmd":"run x","portDefinitions":[]}`, box1},
		{"host volume", `{"id":"/a","container":{"docker":{"image":"i"},"volumes":[{"containerPath":"/d","hostPath":"/srv/d","mode":"RO"}]}}`, box1},
		{"health timeout equal to interval", `{"id":"/a","cmd":"run x","healthChecks":[{"intervalSeconds":2,"timeoutSeconds":2}]}`, box1},
		{"health timeout above interval", `{"id":"/a","cmd":"run x","healthChecks":[{"intervalSeconds":2,"timeoutSeconds":5}]}`, box1},
		{"cmd of spaces", `{"id":"/a","cmd":" "}`, box1},
		{"single instance", `{"id":"/a","cmd":"run x","labels":{"MARATHON_SINGLE_INSTANCE_APP":"true"},"upgradeStrategy":{"minimumHealthCapacity":0,"maximumOverCapacity":0}}`, box1},
		{"unreachable disabled", `{"id":"/a","cmd":"run x","unreachableStrategy":"disabled"}`, box1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if errs := validateBody(t, tc.body, tc.env); len(errs) > 0 {
				t.Errorf("unexpected errors: %+v", errs)
			}
		})
	}
}

func TestParseErrorKinds(t *testing.T) {
	if _, err := Parse([]byte(`{"id":`), box1); err == nil {
		t.Fatal("no error for truncated JSON")
	} else if _, ok := err.(*DecodeError); !ok {
		t.Errorf("truncated JSON: %T, want *DecodeError", err)
	}
	_, err := Parse([]byte(`{"id":"/a","cmd":"run x","upgradeStrategy":{"minimumHealthCapacity":2}}`), box1)
	ve, ok := err.(*ValidationError)
	if !ok {
		t.Fatalf("got %T %v, want *ValidationError", err, err)
	}
	b, _ := ve.MarshalJSON()
	want := `{"message":"Object is not valid","details":[{"path":"/upgradeStrategy/minimumHealthCapacity","errors":["is greater than 1"]}]}`
	if string(b) != want {
		t.Errorf("422 body\n got %s\nwant %s", b, want)
	}
}
