package docker

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/signalman/task"
)

func TestContainerConfigFollowsMarathon(t *testing.T) {
	base := task.Spec{
		ID: "ktv_account.abc", AppID: "/ktv/account", Version: "v1", Image: "img:1", Host: "h",
		Ports: []task.Port{{Host: 31001}, {Host: 31002}}, Labels: map[string]string{"tier": "web"},
	}
	for _, tc := range []struct {
		name             string
		cmd              string
		args             []string
		entrypoint, argv []string
	}{
		{name: "image only: the image's entrypoint and cmd"},
		{name: "args follow the image's entrypoint", args: []string{"-a", "b c"}, argv: []string{"-a", "b c"}},
		{name: "cmd runs through the shell", cmd: "exec app --port $PORT0", entrypoint: []string{"/bin/sh", "-c"}, argv: []string{"exec app --port $PORT0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := base
			spec.Cmd, spec.Args = tc.cmd, tc.args
			cfg, host, err := containerConfig(spec)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.Entrypoint, tc.entrypoint) || !slices.Equal(cfg.Cmd, tc.argv) {
				t.Errorf("entrypoint %q cmd %q, want %q %q", cfg.Entrypoint, cfg.Cmd, tc.entrypoint, tc.argv)
			}
			if !host.NetworkMode.IsHost() {
				t.Errorf("network mode %q", host.NetworkMode)
			}
			if !slices.Equal(cfg.Env, spec.Environ()) {
				t.Errorf("env %q, want the spec's Environ", cfg.Env)
			}
			for k, v := range map[string]string{LabelTask: spec.ID, LabelApp: spec.AppID, LabelVersion: "v1", LabelHost: "h", LabelPorts: "31001,31002", LabelMesosTaskID: spec.ID, "tier": "web"} {
				if cfg.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
				}
			}
			if got := statusFromLabels(cfg.Labels); got.ID != spec.ID || got.AppID != spec.AppID || !slices.Equal(got.Ports, []int{31001, 31002}) {
				t.Errorf("status from the labels: %+v", got)
			}
		})
	}
}

func TestContainerName(t *testing.T) {
	for id, want := range map[string]string{
		"ktv_account.1f0c-ab": "garrison-ktv_account.1f0c-ab",
		"odd/id:x":            "garrison-odd_id_x-",
	} {
		got := ContainerName(id)
		if !strings.HasPrefix(got, want) || (got != want && !strings.HasSuffix(want, "-")) {
			t.Errorf("ContainerName(%q) = %q, want %q…", id, got, want)
		}
	}
	if ContainerName("a/b") == ContainerName("a:b") {
		t.Error("two ids that sanitize alike share a container name")
	}
}

func TestGraceSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{time.Second: 1, 1500 * time.Millisecond: 2, time.Millisecond: 1, 10 * time.Second: 10} {
		if got := graceSeconds(d); got != want {
			t.Errorf("graceSeconds(%s) = %d, want %d", d, got, want)
		}
	}
}

func TestExitMessage(t *testing.T) {
	for _, tc := range []struct {
		code int
		oom  bool
		want string
	}{
		{0, false, "exited with code 0"},
		{137, false, "exited with code 137 (signal 9)"},
		{137, true, "exited with code 137 (signal 9), killed for exceeding its memory limit"},
		{2, false, "exited with code 2"},
	} {
		if got := exitMessage(tc.code, tc.oom, ""); got != tc.want {
			t.Errorf("exitMessage(%d, %v) = %q, want %q", tc.code, tc.oom, got, tc.want)
		}
	}
}
