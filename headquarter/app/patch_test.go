package app

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func current(t *testing.T) *App {
	t.Helper()
	a, err := Parse([]byte(`{"id":"/ktv/account","instances":2,"cpus":0.5,"env":{"A":"1"},"labels":{"team":"ktv"},
		"container":{"docker":{"image":"reg/account:1","privileged":true,"parameters":[{"key":"log-driver","value":"journald"}]}},
		"portDefinitions":[{"port":0,"name":"http"}],"healthChecks":[{"path":"/health"}],"version":"2026-01-02T03:04:05.000Z"}`), box1)
	if err != nil {
		t.Fatal(err)
	}
	if a, err = AssignServicePorts(a, nil); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestMergeKeepsUntouchedFields(t *testing.T) {
	cur := current(t)
	// What go-marathon's ScaleApplicationInstances sends.
	got, err := Merge(cur, []byte(`{"id":"/ktv/account","instances":5,"ports":null,"dependencies":null}`))
	if err != nil {
		t.Fatal(err)
	}
	got = Normalize(got)
	if errs := Validate(got, box1); len(errs) > 0 {
		t.Fatal(errs)
	}
	if got.Instances != 5 {
		t.Errorf("instances %d", got.Instances)
	}
	if got.CPUs != 0.5 || got.Env["A"] != "1" || got.Image() != "reg/account:1" || got.PortDefinitions[0].Port != 10000 ||
		got.HealthChecks[0].Path != "/health" || !got.Container.Docker.Privileged || got.Version != cur.Version {
		t.Errorf("untouched fields changed: %+v", got)
	}
	if IsUpgrade(cur, got) || !IsScale(cur, got) {
		t.Error("an instances-only patch must be a scale")
	}
	if cur.Instances != 2 {
		t.Error("Merge mutated current")
	}
}

// Marathon replaces top-level fields wholesale (marathon#4868): a patch of
// the image resets the container's other fields.
func TestMergeReplacesTopLevelFieldsWholesale(t *testing.T) {
	cur := current(t)
	got, err := Merge(cur, []byte(`{"container":{"docker":{"image":"reg/account:2"}},"env":{"B":"2"}}`))
	if err != nil {
		t.Fatal(err)
	}
	got = Normalize(got)
	if got.Image() != "reg/account:2" || got.Container.Docker.Privileged || len(got.Container.Docker.Parameters) != 0 {
		t.Errorf("container %+v", got.Container.Docker)
	}
	if _, ok := got.Env["A"]; ok || got.Env["B"] != "2" {
		t.Errorf("env %v", got.Env)
	}
	if got.Labels["team"] != "ktv" {
		t.Error("labels lost")
	}
	if !IsUpgrade(cur, got) {
		t.Error("an image change is an upgrade")
	}
}

func TestMergeLegacyTwins(t *testing.T) {
	got, err := Merge(current(t), []byte(`{"ports":[8080]}`))
	if err != nil {
		t.Fatal(err)
	}
	got = Normalize(got)
	if errs := Validate(got, box1); len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(got.PortDefinitions) != 1 || got.PortDefinitions[0].Port != 8080 || got.PortDefinitions[0].Name != "" {
		t.Errorf("ports did not replace portDefinitions: %+v", got.PortDefinitions)
	}
}

func TestPatchVersion(t *testing.T) {
	p, err := DecodePatch([]byte(`{"id":"/ktv/account","version":"2026-01-02T03:04:05.000Z","ports":null,"dependencies":null}`))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := p.Rollback()
	if !ok || !v.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("rollback = %v %v", v, ok)
	}
	_, err = DecodePatch([]byte(`{"version":"2026-01-02T03:04:05.000Z","instances":3}`))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Details[0].Path != "/" || ve.Details[0].Errors[0] != "The 'version' field may only be combined with the 'id' field." {
		t.Errorf("version with instances: %v", err)
	}
	if _, err := DecodePatch([]byte(`{"id":"/a","version":"2026-01-02T03:04:05.000Z","versionInfo":{}}`)); err != nil {
		t.Errorf("versionInfo is read-only and ignored: %v", err)
	}
	if p, _ := DecodePatch([]byte(`{"instances":3,"cmd":null}`)); p.Has("cmd") || !p.Has("instances") || len(p.Fields()) != 1 {
		t.Errorf("fields %v", p.Fields())
	}
	var de *DecodeError
	if _, err := Merge(current(t), []byte(`{"instances":"many"}`)); !errors.As(err, &de) || de.Details[0].Path != "/instances" {
		t.Errorf("bad patch type: %v", err)
	}
}

func TestIsUpgrade(t *testing.T) {
	base := `{"id":"/a","cmd":"x y","instances":2%s}`
	parse := func(extra string) *App {
		a, err := Parse([]byte(fmt.Sprintf(base, extra)), box1)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	old := parse("")
	for _, tc := range []struct {
		name, extra string
		upgrade     bool
	}{
		{"same", ``, false},
		{"instances", `,"instances":7`, false},
		{"version only", `,"version":"2026-01-02T03:04:05.000Z"`, false},
		{"cmd", `,"cmd":"x z"`, true},
		{"env", `,"env":{"A":"1"}`, true},
		{"cpus", `,"cpus":2`, true},
		{"labels", `,"labels":{"a":"b"}`, true},
		{"health checks", `,"healthChecks":[{}]`, true},
		{"upgrade strategy", `,"upgradeStrategy":{"minimumHealthCapacity":0.5}`, true},
		{"kill selection", `,"killSelection":"OLDEST_FIRST"`, true},
		{"ports", `,"portDefinitions":[]`, true},
		{"backoff", `,"backoffSeconds":3`, true},
		{"kill grace", `,"taskKillGracePeriodSeconds":30`, true},
		{"explicit defaults", `,"cpus":1,"mem":128,"backoffFactor":1.15`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsUpgrade(old, parse(tc.extra)); got != tc.upgrade {
				t.Errorf("IsUpgrade = %v, want %v", got, tc.upgrade)
			}
		})
	}
	other := parse("")
	other.ID = "/b"
	if IsUpgrade(old, other) {
		t.Error("different apps are not upgrades of each other")
	}
}

func TestBump(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.UTC)
	a := Bump(nil, current(t), t0, false)
	if FormatVersion(a.Version) != "2026-01-01T00:00:00.123Z" || !a.VersionInfo.LastConfigChangeAt.Equal(a.Version) {
		t.Errorf("create: %v %+v", a.Version, a.VersionInfo)
	}
	scaled := a.Clone()
	scaled.Instances = 9
	s := Bump(a, scaled, t0.Add(time.Hour), false)
	if !s.VersionInfo.LastConfigChangeAt.Equal(a.Version) || !s.VersionInfo.LastScalingAt.Equal(s.Version) {
		t.Errorf("scale: %+v", s.VersionInfo)
	}
	r := Bump(a, a, t0.Add(2*time.Hour), true)
	if !r.VersionInfo.LastConfigChangeAt.Equal(r.Version) {
		t.Errorf("restart: %+v", r.VersionInfo)
	}
}
