package nomad

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/signalman/task"
)

func TestToJobProcess(t *testing.T) {
	a := App{
		Task: task.Spec{
			AppID: "/prod/web", Version: "2026-01-02T03:04:05.000Z", Cmd: "exec ./server",
			Env:    map[string]string{"MODE": "x"},
			Labels: map[string]string{"team": "a"},
			Ports:  []task.Port{{Name: "http", Requested: 10001}, {Requested: 10002}},
			CPUs:   0.5, MemMB: 64, KillGrace: 7 * time.Second, User: "nobody",
		},
		Instances: 3,
		Upgrade:   Upgrade{MinimumHealthCapacity: 0.5},
	}
	job, err := toJob(a, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if *job.ID != "prod_web" || job.Meta[MetaAppID] != "/prod/web" || job.Meta[MetaVersion] != a.Task.Version || job.Meta["team"] != "a" {
		t.Errorf("id %s meta %v", *job.ID, job.Meta)
	}
	g := job.TaskGroups[0]
	if *g.Count != 3 || len(g.Networks) != 1 || len(g.Networks[0].DynamicPorts) != 2 || g.Networks[0].DynamicPorts[1].Label != "p1" {
		t.Errorf("count %d networks %+v", *g.Count, g.Networks)
	}
	tk := g.Tasks[0]
	if tk.Driver != "raw_exec" || tk.Config["command"] != "/bin/sh" || !reflect.DeepEqual(tk.Config["args"], []string{"-c", "exec ./server"}) {
		t.Errorf("driver %s config %v", tk.Driver, tk.Config)
	}
	if *tk.Resources.CPU != 1000 || *tk.Resources.MemoryMB != 64 || *tk.KillTimeout != 7*time.Second || tk.User != "nobody" {
		t.Errorf("cpu %d mem %d kill %v user %q", *tk.Resources.CPU, *tk.Resources.MemoryMB, *tk.KillTimeout, tk.User)
	}
	want := map[string]string{
		"PORT0": "${NOMAD_HOST_PORT_p0}", "PORT1": "${NOMAD_HOST_PORT_p1}", "PORT": "${NOMAD_HOST_PORT_p0}",
		"PORTS": "${NOMAD_HOST_PORT_p0},${NOMAD_HOST_PORT_p1}", "PORT_HTTP": "${NOMAD_HOST_PORT_p0}",
		"PORT_10001": "${NOMAD_HOST_PORT_p0}", "PORT_10002": "${NOMAD_HOST_PORT_p1}",
		"HOST": "${NOMAD_IP_p0}", "MESOS_TASK_ID": "${NOMAD_JOB_ID}.${NOMAD_ALLOC_ID}",
		"MARATHON_APP_ID": "/prod/web", "MARATHON_APP_LABEL_TEAM": "a", "MODE": "x",
	}
	for k, v := range want {
		if tk.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, tk.Env[k], v)
		}
	}
	u := g.Update
	if *u.MaxParallel != 1 || *u.Canary != 0 || *u.HealthCheck != "task_states" || *u.MinHealthyTime != 0 || *u.AutoRevert {
		t.Errorf("update %+v", u)
	}
	if *g.RestartPolicy.Attempts != 0 || *g.ReschedulePolicy.Delay != 5*time.Second || !*g.ReschedulePolicy.Unlimited {
		t.Errorf("restart %+v reschedule %+v", g.RestartPolicy, g.ReschedulePolicy)
	}
}

func TestToJobDocker(t *testing.T) {
	a := App{
		Task: task.Spec{AppID: "/web", Image: "img:1", Args: []string{"-port", "1"}, Labels: map[string]string{"a": "b"}, CPUs: 1, MemMB: 1,
			Privileged: true, Volumes: []task.Volume{{HostPath: "/srv", ContainerPath: "/data", ReadOnly: true}}},
		Instances: 4,
		Upgrade:   Upgrade{MinimumHealthCapacity: 1, MaximumOverCapacity: 0.5},
		Checks: []Check{
			{Protocol: "HTTP", Path: "/health", Interval: 2 * time.Second, Timeout: time.Second, Grace: 10 * time.Second, MaxConsecutiveFailures: 3},
			{Protocol: "COMMAND"},
		},
		RequirePorts: true,
	}
	a.Task.Ports = []task.Port{{Requested: 18080}}
	job, err := toJob(a, 1000)
	if err != nil {
		t.Fatal(err)
	}
	g := job.TaskGroups[0]
	tk := g.Tasks[0]
	if tk.Driver != "docker" || tk.Config["network_mode"] != "host" || tk.Config["image"] != "img:1" || !reflect.DeepEqual(tk.Config["args"], []string{"-port", "1"}) {
		t.Errorf("config %v", tk.Config)
	}
	if tk.Config["privileged"] != true || !reflect.DeepEqual(tk.Config["volumes"], []string{"/srv:/data:ro"}) {
		t.Errorf("privileged %v volumes %v", tk.Config["privileged"], tk.Config["volumes"])
	}
	labels := tk.Config["labels"].([]map[string]string)
	if len(labels) != 1 || labels[0]["a"] != "b" || labels[0]["MESOS_TASK_ID"] == "" {
		t.Errorf("docker labels %v: want a list of one map", labels)
	}
	// The agent registers the container under the task id, so the local
	// metric source (and a caller) can tell whose instance it is.
	if got := labels[0]["garrison.instance"]; got != "${NOMAD_JOB_ID}.${NOMAD_ALLOC_ID}" {
		t.Errorf("garrison.instance label %q, want the task id", got)
	}
	if *tk.Resources.MemoryMB != 10 {
		t.Errorf("mem %d, want Nomad's minimum 10", *tk.Resources.MemoryMB)
	}
	if len(g.Networks[0].ReservedPorts) != 1 || g.Networks[0].ReservedPorts[0].Value != 18080 {
		t.Errorf("requirePorts: networks %+v", g.Networks)
	}
	if len(tk.Services) != 1 || len(tk.Services[0].Checks) != 1 {
		t.Fatalf("services %+v: want the HTTP check only", tk.Services)
	}
	c := tk.Services[0].Checks[0]
	if c.Type != "http" || c.Path != "/health" || c.PortLabel != "p0" || c.CheckRestart.Limit != 3 || *c.CheckRestart.Grace != 10*time.Second {
		t.Errorf("check %+v", c)
	}
	u := g.Update
	if *u.Canary != 2 || !*u.AutoPromote || *u.MaxParallel != 2 || *u.HealthCheck != "checks" {
		t.Errorf("update canary %d promote %v parallel %d health %s", *u.Canary, *u.AutoPromote, *u.MaxParallel, *u.HealthCheck)
	}
}

func TestToJobRefuses(t *testing.T) {
	for name, a := range map[string]App{
		"no id":          {Task: task.Spec{Cmd: "x"}},
		"cmd and args":   {Task: task.Spec{AppID: "/a", Cmd: "x", Args: []string{"y"}}},
		"nothing to run": {Task: task.Spec{AppID: "/a"}},
		"constraint":     {Task: task.Spec{AppID: "/a", Cmd: "x"}, Constraints: [][]string{{"hostname", "CLUSTER"}}},
		"check port":     {Task: task.Spec{AppID: "/a", Cmd: "x"}, Checks: []Check{{Protocol: "TCP"}}},
		"negative count": {Task: task.Spec{AppID: "/a", Cmd: "x"}, Instances: -1},
	} {
		if _, err := toJob(a, 1000); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Validate refuses what toJob refuses, without a Nomad to ask: a
// constraint's error names its place.
func TestValidate(t *testing.T) {
	d := &Driver{}
	if err := d.Validate(App{Task: task.Spec{AppID: "/a", Cmd: "x"}, Constraints: [][]string{{"hostname", "UNIQUE"}}}); err != nil {
		t.Errorf("a translatable app: %v", err)
	}
	err := d.Validate(App{Task: task.Spec{AppID: "/a", Cmd: "x"}, Constraints: [][]string{{"hostname", "UNIQUE"}, {"@zone", "IS", "a"}}})
	var ce *ConstraintError
	if !errors.As(err, &ce) || ce.Path() != "/constraints(1)" {
		t.Errorf("an untranslatable constraint: %v, want a *ConstraintError at /constraints(1)", err)
	}
}
