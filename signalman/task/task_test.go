package task

import "testing"

func TestEnvironmentFollowsMarathon(t *testing.T) {
	s := Spec{
		ID: "ktv_account.abc", AppID: "/ktv/account", Version: "2026-01-02T03:04:05.000Z",
		Image: "registry.local/account:1", CPUs: 0.5, MemMB: 128, Host: "127.0.0.1",
		Ports:  []Port{{Name: "http", Host: 31001}, {Host: 31002, Requested: 8080}},
		Labels: map[string]string{"team.name": "ktv", "tier": "web"},
		Env:    map[string]string{"PORT1": "9999", "EXTRA": "x"},
	}
	env := s.Environment()
	want := map[string]string{
		"PORT0": "31001", "PORT": "31001", "PORTS": "31001,31002", "PORT_HTTP": "31001",
		"PORT_31001": "31001", "PORT_8080": "31002", "PORT1": "9999", // the app's env wins
		"HOST": "127.0.0.1", "MARATHON_APP_ID": "/ktv/account", "MESOS_TASK_ID": "ktv_account.abc",
		"MARATHON_APP_VERSION": "2026-01-02T03:04:05.000Z", "MARATHON_APP_DOCKER_IMAGE": "registry.local/account:1",
		"MARATHON_APP_RESOURCE_CPUS": "0.5", "MARATHON_APP_RESOURCE_MEM": "128",
		"MARATHON_APP_LABELS": "TEAM_NAME TIER", "MARATHON_APP_LABEL_TEAM_NAME": "ktv", "EXTRA": "x",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := (Spec{}).Environment()["PORT"]; ok {
		t.Error("PORT set for a task without ports")
	}
}

// A driver whose host ports are chosen later passes references for them;
// PORT_<port> needs a number and is left out when neither is known.
func TestEnvironmentWithLateHostPorts(t *testing.T) {
	s := Spec{Ports: []Port{{Name: "http", Requested: 10001}, {}}}
	env := s.EnvironmentWith(func(i int) string { return "${P" + string(rune('0'+i)) + "}" })
	want := map[string]string{"PORT0": "${P0}", "PORT1": "${P1}", "PORT_HTTP": "${P0}", "PORT_10001": "${P0}", "PORTS": "${P0},${P1}"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if v, ok := env["PORT_0"]; ok {
		t.Errorf("PORT_0 = %q for a port with no number yet", v)
	}
}

func TestTailLines(t *testing.T) {
	for _, c := range []struct {
		in      string
		n       int
		partial bool
		want    string
	}{
		{"a\nb\nc\n", 2, false, "b\nc\n"},
		{"a\nb\nc", 2, false, "b\nc"},
		{"a\nb\nc\n", 5, false, "a\nb\nc\n"},
		{"a\nb\nc\n", 0, false, ""},
		{"", 3, false, ""},
		{"cut\nb\nc\n", 5, true, "b\nc\n"},
		{"onlycut", 5, true, "onlycut"},
	} {
		if got := string(TailLines([]byte(c.in), c.n, c.partial)); got != c.want {
			t.Errorf("TailLines(%q, %d, %v) = %q, want %q", c.in, c.n, c.partial, got, c.want)
		}
	}
}
