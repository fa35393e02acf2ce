// Package events is garrison's copy of Marathon's event bus: typed events
// with Marathon's JSON field names, a fan-out Bus that never blocks its
// publishers, and the server-sent-events endpoint GET /v2/events that
// marathon-lb and go-marathon read.
//
// An event is any value with an EventType method. On the wire each event is
// one JSON object: the value's own fields, then "eventType" and
// "timestamp" (ISO-8601 UTC, milliseconds), the order Marathon's play-json
// writers use. Event types outside Marathon's set (the autoscaler's
// autoscale_decision_event) are plain structs with an EventType method.
package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Event is anything that can be published. EventType names the SSE event
// and fills "eventType"; it must be a constant for the type. The value
// must marshal to a JSON object without "eventType" or "timestamp" keys:
// Marshal adds both.
type Event interface {
	EventType() string
}

// TimestampLayout is Marathon's timestamp format: ISO-8601, UTC, millis.
const TimestampLayout = "2006-01-02T15:04:05.000Z"

// Marshal encodes ev as Marathon does: its fields, then eventType and
// timestamp (at, in UTC with milliseconds). The result is one line.
func Marshal(ev Event, at time.Time) ([]byte, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", ev.EventType(), err)
	}
	body = bytes.TrimSpace(body)
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return nil, fmt.Errorf("events: encode %s: %T does not encode as a JSON object", ev.EventType(), ev)
	}
	typ, err := json.Marshal(ev.EventType())
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: event type: %w", ev.EventType(), err)
	}
	out := make([]byte, 0, len(body)+len(typ)+64)
	out = append(out, body[:len(body)-1]...)
	if len(bytes.TrimSpace(body[1:len(body)-1])) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"eventType":`...)
	out = append(out, typ...)
	out = append(out, `,"timestamp":"`...)
	out = at.UTC().AppendFormat(out, TimestampLayout)
	out = append(out, `"}`...)
	return out, nil
}

// Marathon's event type names (Events.scala).
const (
	TypeEventStreamAttached   = "event_stream_attached"
	TypeEventStreamDetached   = "event_stream_detached"
	TypeAPIPost               = "api_post_event"
	TypeStatusUpdate          = "status_update_event"
	TypeInstanceChanged       = "instance_changed_event"
	TypeInstanceHealthChanged = "instance_health_changed_event"
	TypeHealthStatusChanged   = "health_status_changed_event"
	TypeFailedHealthCheck     = "failed_health_check_event"
	TypeAddHealthCheck        = "add_health_check_event"
	TypeRemoveHealthCheck     = "remove_health_check_event"
	TypeUnhealthyInstanceKill = "unhealthy_instance_kill_event"
	TypeUnhealthyTaskKill     = "unhealthy_task_kill_event"
	TypeGroupChangeSuccess    = "group_change_success"
	TypeGroupChangeFailed     = "group_change_failed"
	TypeDeploymentInfo        = "deployment_info"
	TypeDeploymentSuccess     = "deployment_success"
	TypeDeploymentFailed      = "deployment_failed"
	TypeDeploymentStepSuccess = "deployment_step_success"
	TypeDeploymentStepFailure = "deployment_step_failure"
	TypeAppTerminated         = "app_terminated_event"
)

// EventStreamAttached is published when an SSE client connects.
// RemoteAddress is the client's IP, as Marathon's request.getRemoteAddr.
type EventStreamAttached struct {
	RemoteAddress string `json:"remoteAddress"`
}

// EventType implements Event.
func (EventStreamAttached) EventType() string { return TypeEventStreamAttached }

// EventStreamDetached is published when an SSE client goes away.
type EventStreamDetached struct {
	RemoteAddress string `json:"remoteAddress"`
}

// EventType implements Event.
func (EventStreamDetached) EventType() string { return TypeEventStreamDetached }

// APIPost is published on app create and update (marathon-lb re-syncs on
// it). AppDefinition is the full app JSON as the API returns it.
type APIPost struct {
	ClientIP      string          `json:"clientIp"`
	URI           string          `json:"uri"`
	AppDefinition json.RawMessage `json:"appDefinition"`
}

// EventType implements Event.
func (APIPost) EventType() string { return TypeAPIPost }

// IPAddress is one entry of a task's ipAddresses.
type IPAddress struct {
	IPAddress string `json:"ipAddress"`
	Protocol  string `json:"protocol"` // "IPv4" or "IPv6"
}

// StatusUpdate is a task state change (TASK_RUNNING, TASK_KILLED, ...).
// Version is the app version the task runs, a Marathon timestamp.
type StatusUpdate struct {
	SlaveID     string      `json:"slaveId"`
	TaskID      string      `json:"taskId"`
	TaskStatus  string      `json:"taskStatus"`
	Message     string      `json:"message"`
	AppID       string      `json:"appId"`
	Host        string      `json:"host"`
	IPAddresses []IPAddress `json:"ipAddresses"`
	Ports       []int       `json:"ports"`
	Version     string      `json:"version"`
}

// EventType implements Event.
func (StatusUpdate) EventType() string { return TypeStatusUpdate }

// MarshalJSON writes empty lists, not null, as Marathon's Seq writers do.
func (e StatusUpdate) MarshalJSON() ([]byte, error) {
	type plain StatusUpdate
	if e.IPAddresses == nil {
		e.IPAddresses = []IPAddress{}
	}
	if e.Ports == nil {
		e.Ports = []int{}
	}
	return json.Marshal(plain(e))
}

// InstanceChanged is Marathon's instance-level status change. Condition is
// Marathon's name (Running, Staging, Killed, Unreachable, ...).
type InstanceChanged struct {
	InstanceID     string `json:"instanceId"`
	Condition      string `json:"condition"`
	RunSpecID      string `json:"runSpecId"`
	AgentID        string `json:"agentId"`
	Host           string `json:"host"`
	RunSpecVersion string `json:"runSpecVersion"`
}

// EventType implements Event.
func (InstanceChanged) EventType() string { return TypeInstanceChanged }

// InstanceHealthChanged reports an instance's aggregated health; Healthy is
// null while unknown.
type InstanceHealthChanged struct {
	InstanceID     string `json:"instanceId"`
	RunSpecID      string `json:"runSpecId"`
	Healthy        *bool  `json:"healthy"`
	RunSpecVersion string `json:"runSpecVersion"`
}

// EventType implements Event.
func (InstanceHealthChanged) EventType() string { return TypeInstanceHealthChanged }

// HealthStatusChanged is a health check result flip. Marathon writes
// instanceId; go-marathon reads taskId, so both are sent.
type HealthStatusChanged struct {
	AppID      string `json:"appId"`
	TaskID     string `json:"taskId"`
	InstanceID string `json:"instanceId"`
	Version    string `json:"version"`
	Alive      bool   `json:"alive"`
}

// EventType implements Event.
func (HealthStatusChanged) EventType() string { return TypeHealthStatusChanged }

// FailedHealthCheck is one failed check. TaskID holds the instance id, as in
// Marathon; HealthCheck is the check's JSON.
type FailedHealthCheck struct {
	AppID       string          `json:"appId"`
	TaskID      string          `json:"taskId"`
	HealthCheck json.RawMessage `json:"healthCheck"`
}

// EventType implements Event.
func (FailedHealthCheck) EventType() string { return TypeFailedHealthCheck }

// AddHealthCheck is published when a check starts running for an app version.
type AddHealthCheck struct {
	AppID       string          `json:"appId"`
	Version     string          `json:"version"`
	HealthCheck json.RawMessage `json:"healthCheck"`
}

// EventType implements Event.
func (AddHealthCheck) EventType() string { return TypeAddHealthCheck }

// RemoveHealthCheck is published when an app's checks stop.
type RemoveHealthCheck struct {
	AppID string `json:"appId"`
}

// EventType implements Event.
func (RemoveHealthCheck) EventType() string { return TypeRemoveHealthCheck }

// UnhealthyInstanceKill is published when the health checker kills an
// instance (Marathon ≥ 1.4 name).
type UnhealthyInstanceKill struct {
	AppID      string `json:"appId"`
	TaskID     string `json:"taskId"`
	InstanceID string `json:"instanceId"`
	Version    string `json:"version"`
	Reason     string `json:"reason"`
	Host       string `json:"host"`
	SlaveID    string `json:"slaveId"`
}

// EventType implements Event.
func (UnhealthyInstanceKill) EventType() string { return TypeUnhealthyInstanceKill }

// UnhealthyTaskKill is the pre-1.4 name of UnhealthyInstanceKill, which
// go-marathon still knows; a health checker may publish both.
type UnhealthyTaskKill struct {
	AppID   string `json:"appId"`
	TaskID  string `json:"taskId"`
	Version string `json:"version"`
	Reason  string `json:"reason"`
	Host    string `json:"host"`
	SlaveID string `json:"slaveId"`
}

// EventType implements Event.
func (UnhealthyTaskKill) EventType() string { return TypeUnhealthyTaskKill }

// GroupChangeSuccess is published when a group update has been applied.
type GroupChangeSuccess struct {
	GroupID string `json:"groupId"`
	Version string `json:"version"`
}

// EventType implements Event.
func (GroupChangeSuccess) EventType() string { return TypeGroupChangeSuccess }

// GroupChangeFailed is published when a group update failed.
type GroupChangeFailed struct {
	GroupID string `json:"groupId"`
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

// EventType implements Event.
func (GroupChangeFailed) EventType() string { return TypeGroupChangeFailed }

// DeploymentInfo ("deployment_info") is published when a deployment starts
// a step. Plan is {id, steps:[{actions:[{action,app}]}], version} and
// CurrentStep {actions:[...]}, both given by the caller as JSON.
type DeploymentInfo struct {
	Plan        json.RawMessage `json:"plan"`
	CurrentStep json.RawMessage `json:"currentStep"`
}

// EventType implements Event.
func (DeploymentInfo) EventType() string { return TypeDeploymentInfo }

// DeploymentStepSuccess is published when a step completes.
type DeploymentStepSuccess struct {
	Plan        json.RawMessage `json:"plan"`
	CurrentStep json.RawMessage `json:"currentStep"`
}

// EventType implements Event.
func (DeploymentStepSuccess) EventType() string { return TypeDeploymentStepSuccess }

// DeploymentStepFailure is published when a step fails.
type DeploymentStepFailure struct {
	Plan        json.RawMessage `json:"plan"`
	CurrentStep json.RawMessage `json:"currentStep"`
}

// EventType implements Event.
func (DeploymentStepFailure) EventType() string { return TypeDeploymentStepFailure }

// DeploymentSuccess is published when a deployment finishes.
type DeploymentSuccess struct {
	ID   string          `json:"id"`
	Plan json.RawMessage `json:"plan"`
}

// EventType implements Event.
func (DeploymentSuccess) EventType() string { return TypeDeploymentSuccess }

// DeploymentFailed is published when a deployment fails or is cancelled.
type DeploymentFailed struct {
	ID     string          `json:"id"`
	Plan   json.RawMessage `json:"plan"`
	Reason string          `json:"reason,omitempty"`
}

// EventType implements Event.
func (DeploymentFailed) EventType() string { return TypeDeploymentFailed }

// AppTerminated is published when an app is deleted.
type AppTerminated struct {
	AppID string `json:"appId"`
}

// EventType implements Event.
func (AppTerminated) EventType() string { return TypeAppTerminated }

// planEvent is implemented by the deployment events, whose plans
// plan-format=light trims.
type planEvent interface {
	lightPlan() (Event, bool)
}

func (e DeploymentInfo) lightPlan() (Event, bool) {
	p, ok := trimPlan(e.Plan)
	e.Plan = p
	return e, ok
}

func (e DeploymentStepSuccess) lightPlan() (Event, bool) {
	p, ok := trimPlan(e.Plan)
	e.Plan = p
	return e, ok
}

func (e DeploymentStepFailure) lightPlan() (Event, bool) {
	p, ok := trimPlan(e.Plan)
	e.Plan = p
	return e, ok
}

func (e DeploymentSuccess) lightPlan() (Event, bool) {
	p, ok := trimPlan(e.Plan)
	e.Plan = p
	return e, ok
}

func (e DeploymentFailed) lightPlan() (Event, bool) {
	p, ok := trimPlan(e.Plan)
	e.Plan = p
	return e, ok
}

// trimPlan drops what Marathon 1.6–1.8 left out of plans for
// plan-format=light, the group trees before and after ("original",
// "target"), from a plan object. It reports whether it
// changed anything; plans that are not objects are left alone.
func trimPlan(plan json.RawMessage) (json.RawMessage, bool) {
	if !bytes.Contains(plan, []byte(`"original"`)) && !bytes.Contains(plan, []byte(`"target"`)) {
		return plan, false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(plan, &fields); err != nil {
		return plan, false
	}
	changed := false
	for _, k := range []string{"original", "target"} {
		if _, ok := fields[k]; ok {
			delete(fields, k)
			changed = true
		}
	}
	if !changed {
		return plan, false
	}
	out, err := json.Marshal(fields)
	if err != nil {
		return plan, false
	}
	return out, true
}
