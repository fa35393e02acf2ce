package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2015, 9, 25, 15, 13, 48, 343_900_000, time.FixedZone("CEST", 2*3600))

const testStamp = `"timestamp":"2015-09-25T13:13:48.343Z"`

// autoscaleDecision stands in for the autoscaler's own event type.
type autoscaleDecision struct {
	AppID string `json:"appId"`
	From  int    `json:"from"`
	To    int    `json:"to"`
}

func (autoscaleDecision) EventType() string { return "autoscale_decision_event" }

type emptyEvent struct{}

func (emptyEvent) EventType() string { return "empty_event" }

type stringEvent string

func (stringEvent) EventType() string { return "string_event" }

func TestMarshalGolden(t *testing.T) {
	plan := json.RawMessage(`{
		"id": "d1",
		"steps": [{"actions": [{"action": "ScaleApplication", "app": "/web"}]}],
		"version": "2015-09-25T15:13:48.343Z"
	}`)
	step := json.RawMessage(`{"actions":[{"action":"ScaleApplication","app":"/web"}]}`)
	compactPlan := `{"id":"d1","steps":[{"actions":[{"action":"ScaleApplication","app":"/web"}]}],"version":"2015-09-25T15:13:48.343Z"}`
	yes := true
	cases := []struct {
		name string
		ev   Event
		want string
	}{
		{"attached", EventStreamAttached{RemoteAddress: "127.0.0.1"},
			`{"remoteAddress":"127.0.0.1","eventType":"event_stream_attached",` + testStamp + `}`},
		{"detached", EventStreamDetached{RemoteAddress: "127.0.0.1"},
			`{"remoteAddress":"127.0.0.1","eventType":"event_stream_detached",` + testStamp + `}`},
		{"api post", APIPost{ClientIP: "10.0.0.1", URI: "/v2/apps/web", AppDefinition: json.RawMessage(`{"id": "/web", "instances": 2}`)},
			`{"clientIp":"10.0.0.1","uri":"/v2/apps/web","appDefinition":{"id":"/web","instances":2},"eventType":"api_post_event",` + testStamp + `}`},
		{"status update", StatusUpdate{
			SlaveID: "agent-1", TaskID: "web.0b1c", TaskStatus: "TASK_RUNNING", Message: "", AppID: "/web", Host: "node1",
			IPAddresses: []IPAddress{{IPAddress: "10.0.0.5", Protocol: "IPv4"}}, Ports: []int{31000, 31001}, Version: "2015-09-25T15:13:48.343Z",
		}, `{"slaveId":"agent-1","taskId":"web.0b1c","taskStatus":"TASK_RUNNING","message":"","appId":"/web","host":"node1",` +
			`"ipAddresses":[{"ipAddress":"10.0.0.5","protocol":"IPv4"}],"ports":[31000,31001],"version":"2015-09-25T15:13:48.343Z",` +
			`"eventType":"status_update_event",` + testStamp + `}`},
		{"status update, empty lists", StatusUpdate{TaskID: "web.1", TaskStatus: "TASK_KILLED", AppID: "/web"},
			`{"slaveId":"","taskId":"web.1","taskStatus":"TASK_KILLED","message":"","appId":"/web","host":"","ipAddresses":[],"ports":[],"version":"",` +
				`"eventType":"status_update_event",` + testStamp + `}`},
		{"instance changed", InstanceChanged{InstanceID: "web.instance-1", Condition: "Running", RunSpecID: "/web", AgentID: "agent-1", Host: "node1", RunSpecVersion: "v1"},
			`{"instanceId":"web.instance-1","condition":"Running","runSpecId":"/web","agentId":"agent-1","host":"node1","runSpecVersion":"v1","eventType":"instance_changed_event",` + testStamp + `}`},
		{"instance health unknown", InstanceHealthChanged{InstanceID: "i", RunSpecID: "/web", RunSpecVersion: "v1"},
			`{"instanceId":"i","runSpecId":"/web","healthy":null,"runSpecVersion":"v1","eventType":"instance_health_changed_event",` + testStamp + `}`},
		{"instance health", InstanceHealthChanged{InstanceID: "i", RunSpecID: "/web", Healthy: &yes, RunSpecVersion: "v1"},
			`{"instanceId":"i","runSpecId":"/web","healthy":true,"runSpecVersion":"v1","eventType":"instance_health_changed_event",` + testStamp + `}`},
		{"health status changed", HealthStatusChanged{AppID: "/web", TaskID: "web.1", InstanceID: "web.1", Version: "v1", Alive: false},
			`{"appId":"/web","taskId":"web.1","instanceId":"web.1","version":"v1","alive":false,"eventType":"health_status_changed_event",` + testStamp + `}`},
		{"failed health check", FailedHealthCheck{AppID: "/web", TaskID: "web.1", HealthCheck: json.RawMessage(`{"protocol":"HTTP","path":"/health"}`)},
			`{"appId":"/web","taskId":"web.1","healthCheck":{"protocol":"HTTP","path":"/health"},"eventType":"failed_health_check_event",` + testStamp + `}`},
		{"unhealthy instance kill", UnhealthyInstanceKill{AppID: "/web", TaskID: "web.1", InstanceID: "web.1", Version: "v1", Reason: "HealthCheck failed", Host: "node1", SlaveID: "agent-1"},
			`{"appId":"/web","taskId":"web.1","instanceId":"web.1","version":"v1","reason":"HealthCheck failed","host":"node1","slaveId":"agent-1","eventType":"unhealthy_instance_kill_event",` + testStamp + `}`},
		{"unhealthy task kill", UnhealthyTaskKill{AppID: "/web", TaskID: "web.1", Version: "v1", Reason: "r", Host: "node1", SlaveID: "agent-1"},
			`{"appId":"/web","taskId":"web.1","version":"v1","reason":"r","host":"node1","slaveId":"agent-1","eventType":"unhealthy_task_kill_event",` + testStamp + `}`},
		{"deployment info", DeploymentInfo{Plan: plan, CurrentStep: step},
			`{"plan":` + compactPlan + `,"currentStep":` + string(step) + `,"eventType":"deployment_info",` + testStamp + `}`},
		{"deployment step success", DeploymentStepSuccess{Plan: plan, CurrentStep: step},
			`{"plan":` + compactPlan + `,"currentStep":` + string(step) + `,"eventType":"deployment_step_success",` + testStamp + `}`},
		{"deployment step failure", DeploymentStepFailure{Plan: plan, CurrentStep: step},
			`{"plan":` + compactPlan + `,"currentStep":` + string(step) + `,"eventType":"deployment_step_failure",` + testStamp + `}`},
		{"deployment success", DeploymentSuccess{ID: "d1", Plan: plan},
			`{"id":"d1","plan":` + compactPlan + `,"eventType":"deployment_success",` + testStamp + `}`},
		{"deployment failed", DeploymentFailed{ID: "d1", Plan: plan, Reason: "timeout"},
			`{"id":"d1","plan":` + compactPlan + `,"reason":"timeout","eventType":"deployment_failed",` + testStamp + `}`},
		{"deployment failed without reason", DeploymentFailed{ID: "d1", Plan: plan},
			`{"id":"d1","plan":` + compactPlan + `,"eventType":"deployment_failed",` + testStamp + `}`},
		{"app terminated", AppTerminated{AppID: "/web"},
			`{"appId":"/web","eventType":"app_terminated_event",` + testStamp + `}`},
		{"group change failed", GroupChangeFailed{GroupID: "/", Version: "v1", Reason: "r"},
			`{"groupId":"/","version":"v1","reason":"r","eventType":"group_change_failed",` + testStamp + `}`},
		{"garrison type", autoscaleDecision{AppID: "/web", From: 2, To: 4},
			`{"appId":"/web","from":2,"to":4,"eventType":"autoscale_decision_event",` + testStamp + `}`},
		{"pointer to garrison type", &autoscaleDecision{AppID: "/web", From: 4, To: 2},
			`{"appId":"/web","from":4,"to":2,"eventType":"autoscale_decision_event",` + testStamp + `}`},
		{"no fields", emptyEvent{},
			`{"eventType":"empty_event",` + testStamp + `}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Marshal(tc.ev, testTime)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Marshal:\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) || strings.ContainsAny(string(got), "\r\n") {
				t.Errorf("not one line of valid JSON: %q", got)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	cases := []struct {
		name string
		ev   Event
		want string
	}{
		{"not an object", stringEvent("x"), "does not encode as a JSON object"},
		{"invalid raw plan", DeploymentSuccess{ID: "d1", Plan: json.RawMessage(`{"id":`)}, "encode deployment_success"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Marshal(tc.ev, testTime)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestTrimPlan(t *testing.T) {
	cases := []struct {
		name, plan, want string
		changed          bool
	}{
		{"heavy", `{"id":"d1","original":{"id":"/"},"target":{"id":"/"},"steps":[],"version":"v"}`, `{"id":"d1","steps":[],"version":"v"}`, true},
		{"light already", `{"id":"d1","steps":[],"version":"v"}`, `{"id":"d1","steps":[],"version":"v"}`, false},
		{"word only in a value", `{"id":"d1","steps":[{"actions":[{"app":"\"target\""}]}]}`, `{"id":"d1","steps":[{"actions":[{"app":"\"target\""}]}]}`, false},
		{"not an object", `"target"`, `"target"`, false},
		{"null", `null`, `null`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := trimPlan(json.RawMessage(tc.plan))
			if string(got) != tc.want || changed != tc.changed {
				t.Errorf("trimPlan = %s, %v; want %s, %v", got, changed, tc.want, tc.changed)
			}
		})
	}
}
