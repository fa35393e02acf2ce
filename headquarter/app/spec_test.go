package app

import (
	"testing"
	"time"
)

func TestToSpec(t *testing.T) {
	a, err := Parse([]byte(`{"id":"/ktv/account","args":["--v"],"cpus":0.5,"mem":256,"disk":10,"env":{"A":"1"},"labels":{"team":"ktv"},
		"container":{"docker":{"image":"reg/account:1"}},"portDefinitions":[{"port":0,"name":"http"},{"port":9090}],
		"taskKillGracePeriodSeconds":12,"version":"2026-01-02T03:04:05.000Z"}`), box1)
	if err != nil {
		t.Fatal(err)
	}
	if a, err = AssignServicePorts(a, nil); err != nil {
		t.Fatal(err)
	}
	tid := TaskID(a.ID)
	s := ToSpec(a, tid, []int{31001, 31002}, "box1")
	if s.ID != tid || s.AppID != "/ktv/account" || s.Image != "reg/account:1" || s.Args[0] != "--v" || s.CPUs != 0.5 ||
		s.MemMB != 256 || s.DiskMB != 10 || s.Host != "box1" || s.KillGrace != 12*time.Second || s.Version != "2026-01-02T03:04:05.000Z" {
		t.Errorf("spec %+v", s)
	}
	if len(s.Ports) != 2 || s.Ports[0].Name != "http" || s.Ports[0].Host != 31001 || s.Ports[0].Requested != 10000 || s.Ports[1].Requested != 9090 {
		t.Errorf("ports %+v", s.Ports)
	}
	env := s.Environment()
	if env["PORT_HTTP"] != "31001" || env["PORT_9090"] != "31002" || env["A"] != "1" || env["MARATHON_APP_LABEL_TEAM"] != "ktv" {
		t.Errorf("environment %v", env)
	}
	s.Env["A"] = "changed"
	if a.Env["A"] != "1" {
		t.Error("spec shares the app's env map")
	}

	a.RequirePorts = true
	if s := ToSpec(a, tid, nil, "box1"); s.Ports[1].Host != 9090 || s.Ports[0].Host != 10000 {
		t.Errorf("requirePorts: %+v", s.Ports)
	}
}
