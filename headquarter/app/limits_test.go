package app

import (
	"errors"
	"strings"
	"testing"
)

// wantError fails unless errs has an entry at path containing msg.
func wantError(t *testing.T, errs []FieldError, path, msg string) {
	t.Helper()
	for _, fe := range errs {
		if fe.Path != path {
			continue
		}
		for _, m := range fe.Errors {
			if strings.Contains(m, msg) {
				return
			}
		}
	}
	t.Errorf("no error at %q containing %q; got %+v", path, msg, errs)
}

func wantValid(t *testing.T, errs []FieldError) {
	t.Helper()
	if len(errs) > 0 {
		t.Errorf("unexpected errors: %+v", errs)
	}
}

func TestValidateBoundsInstances(t *testing.T) {
	wantError(t, validateBody(t, `{"id":"/a","cmd":"run x","instances":2147483647}`, box1), "/instances", "expected 1000 or less")
	wantValid(t, validateBody(t, `{"id":"/a","cmd":"run x","instances":1000}`, box1))
	small := Environment{Hostname: "box1", MaxInstances: 10}
	wantError(t, validateBody(t, `{"id":"/a","cmd":"run x","instances":11}`, small), "/instances", "expected 10 or less")
	wantValid(t, validateBody(t, `{"id":"/a","cmd":"run x","instances":10}`, small))
}

func TestValidateBoundsIDLength(t *testing.T) {
	id := "/" + strings.Repeat("a", MaxIDLength-1)
	wantValid(t, validateBody(t, `{"id":"`+id+`","cmd":"run x"}`, box1))
	if tid := TaskID(id); len(tid) != 200 {
		t.Errorf("task id of the longest app id is %d characters, want the process driver's 200", len(tid))
	}
	wantError(t, validateBody(t, `{"id":"`+id+`b","cmd":"run x"}`, box1), "/id", "more than garrison's 164")
	// Segments count too: the whole id is what the task id carries.
	long := "/" + strings.Repeat("abcdefghi/", 17)
	wantError(t, validateBody(t, `{"id":"`+long+`","cmd":"run x"}`, box1), "/id", "characters long")
}

func TestValidateRequirePortsOnOneMachine(t *testing.T) {
	body := `{"id":"/a","cmd":"run x","instances":2,"requirePorts":true,"portDefinitions":[{"port":8080}]}`
	wantError(t, validateBody(t, body, box1), "/requirePorts", "only one can run here")
	wantValid(t, validateBody(t, body, Environment{Cluster: true}))
	wantValid(t, validateBody(t, `{"id":"/a","cmd":"run x","instances":1,"requirePorts":true,"portDefinitions":[{"port":8080}]}`, box1))
	wantValid(t, validateBody(t, `{"id":"/a","cmd":"run x","instances":3,"requirePorts":true,"portDefinitions":[]}`, box1))
}

// Fields garrison cannot honour are refused by name, never accepted and
// dropped.
func TestValidateRefusesFieldsItCannotHonour(t *testing.T) {
	for _, tc := range []struct{ name, body, path, msg string }{
		{"readiness", `{"id":"/a","cmd":"run x","portDefinitions":[{"name":"http-api"}],"readinessChecks":[{}]}`, "/readinessChecks", "not supported"},
		{"dependencies", `{"id":"/prod/web","cmd":"run x","dependencies":["db"]}`, "/dependencies", "not supported"},
		{"fetch of a container", `{"id":"/a","container":{"docker":{"image":"i"}},"fetch":[{"uri":"http://x/a.tgz"}]}`, "/fetch", "only into the sandbox of process apps"},
		{"uris of a container", `{"id":"/a","container":{"docker":{"image":"i"}},"uris":["http://x/a.tgz"]}`, "/uris", "only into the sandbox of process apps"},
		{"file uri", `{"id":"/a","cmd":"run x","uris":["file:///etc/passwd"]}`, "/uris(0)/uri", "file:// URIs are off"},
		{"ftp uri", `{"id":"/a","cmd":"run x","fetch":[{"uri":"ftp://x/a"}]}`, "/fetch(0)/uri", `scheme "ftp" is not supported`},
		{"destPath outside", `{"id":"/a","cmd":"run x","fetch":[{"uri":"http://x/a","destPath":"../a"}]}`, "/fetch(0)/destPath", "inside the sandbox"},
		{"destPath absolute", `{"id":"/a","cmd":"run x","fetch":[{"uri":"http://x/a","destPath":"/etc/a"}]}`, "/fetch(0)/destPath", "inside the sandbox"},
		{"checksum", `{"id":"/a","cmd":"run x","fetch":[{"uri":"http://x/a","checksum":"md5:abc"}]}`, "/fetch(0)/checksum", "sha256"},
		{"storeUrls", `{"id":"/a","cmd":"run x","storeUrls":["http://x/a"]}`, "/storeUrls", "not supported"},
		{"forcePullImage", `{"id":"/a","container":{"docker":{"image":"i","forcePullImage":true}}}`, "/container/docker/forcePullImage", "never pulls"},
		{"unknown docker parameter", `{"id":"/a","container":{"docker":{"image":"i","parameters":[{"key":"hostname","value":"h"}]}}}`, "/container/docker/parameters(0)/key", `"hostname" is not supported`},
		{"bad docker parameter value", `{"id":"/a","container":{"docker":{"image":"i","parameters":[{"key":"ulimit","value":"nofile=lots"}]}}}`, "/container/docker/parameters(0)/value", "not a number"},
		{"garrison's label", `{"id":"/a","container":{"docker":{"image":"i","parameters":[{"key":"label","value":"garrison.task=x"}]}}}`, "/container/docker/parameters(0)/value", "garrison's own"},
		{"volume of a process app", `{"id":"/a","cmd":"run x","container":{"type":"MESOS","volumes":[{"containerPath":"/d","hostPath":"/h","mode":"RO"}]}}`, "/container/volumes(0)", "need a container image"},
		{"relative host path", `{"id":"/a","container":{"docker":{"image":"i"},"volumes":[{"containerPath":"/d","hostPath":"data","mode":"RO"}]}}`, "/container/volumes(0)/hostPath", "absolute path"},
		{"relative container path", `{"id":"/a","container":{"docker":{"image":"i"},"volumes":[{"containerPath":"d","hostPath":"/h","mode":"RO"}]}}`, "/container/volumes(0)/containerPath", "absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, validateBody(t, tc.body, box1), tc.path, tc.msg)
		})
	}
}

func TestValidateAcceptsHonouredFields(t *testing.T) {
	wantValid(t, validateBody(t, `{"id":"/a","user":"nobody","container":{"docker":{"image":"i","privileged":true,
		"parameters":[{"key":"label","value":"team=ktv"},{"key":"--log-driver","value":"json-file"},{"key":"log-opt","value":"max-size=10m"},
		{"key":"ulimit","value":"nofile=1024:2048"},{"key":"cap-add","value":"NET_ADMIN"},{"key":"shm-size","value":"64m"},{"key":"read-only","value":"true"}]},
		"volumes":[{"containerPath":"/d","hostPath":"/srv/d","mode":"RW"}]}}`, box1))
}

func TestValidateAcceptsFetchOfProcessApps(t *testing.T) {
	wantValid(t, validateBody(t, `{"id":"/a","cmd":"run x","uris":["http://x/a.tgz"]}`, box1))
	wantValid(t, validateBody(t, `{"id":"/a","cmd":"run x","fetch":[{"uri":"https://x/tool","executable":true,"extract":false,"destPath":"bin/tool",
		"checksum":"sha256:`+strings.Repeat("ab", 32)+`"}]}`, box1))
	wantValid(t, validateBody(t, `{"id":"/a","cmd":"run x","uris":["file:///srv/app.tgz"]}`, Environment{AllowFileFetch: true}))
}

func TestValidateAsksWhetherAProcessMayRunAsUser(t *testing.T) {
	var asked []string
	env := Environment{Hostname: "box1", CheckUser: func(u string) error {
		asked = append(asked, u)
		if u == "nobody" {
			return nil
		}
		return errors.New("no such user")
	}}
	wantValid(t, validateBody(t, `{"id":"/a","cmd":"run x","user":"nobody"}`, env))
	wantError(t, validateBody(t, `{"id":"/a","cmd":"run x","user":"ghost"}`, env), "/user", "no such user")
	// A container resolves its user in its image.
	wantValid(t, validateBody(t, `{"id":"/a","user":"ghost","container":{"docker":{"image":"i"}}}`, env))
	if strings.Join(asked, ",") != "nobody,ghost" {
		t.Errorf("asked about %v, want nobody and ghost", asked)
	}
}

func TestToSpecCarriesContainerFields(t *testing.T) {
	a, err := Parse([]byte(`{"id":"/a","user":"app","container":{"docker":{"image":"i","privileged":true,
		"parameters":[{"key":"cap-add","value":"NET_ADMIN"}]},"volumes":[{"containerPath":"/d","hostPath":"/srv/d","mode":"RO"}]}}`), box1)
	if err != nil {
		t.Fatal(err)
	}
	s := ToSpec(a, TaskID(a.ID), nil, "box1")
	if s.User != "app" || !s.Privileged || len(s.Parameters) != 1 || s.Parameters[0].Key != "cap-add" ||
		len(s.Volumes) != 1 || s.Volumes[0].HostPath != "/srv/d" || s.Volumes[0].ContainerPath != "/d" || !s.Volumes[0].ReadOnly {
		t.Errorf("spec %+v", s)
	}
}

func TestToSpecCarriesFetch(t *testing.T) {
	a, err := Parse([]byte(`{"id":"/a","cmd":"./run","uris":["http://x/a.tgz"],"fetch":null}`), box1)
	if err != nil {
		t.Fatal(err)
	}
	s := ToSpec(a, TaskID(a.ID), nil, "box1")
	if len(s.Fetch) != 1 || s.Fetch[0].URI != "http://x/a.tgz" || !s.Fetch[0].Extract {
		t.Errorf("fetch %+v", s.Fetch)
	}
}
