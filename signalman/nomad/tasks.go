package nomad

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/garrisonhq/garrison/signalman/task"
)

// Task is one allocation seen as a Marathon task.
type Task struct {
	task.Status
	AllocID string
	NodeID  string
	// Healthy is Nomad's deployment health of the allocation: nil until
	// Nomad decided (or when no deployment placed it).
	Healthy *bool
	// Replacing is true once Nomad plans a replacement of a failed
	// allocation (a follow-up evaluation or the next allocation). A failed
	// task without it stays down until Reschedule.
	Replacing bool
	// Index is Nomad's modify index of the allocation, growing with each
	// change.
	Index uint64
}

// allocView is the part of an allocation the driver reads; the list
// endpoint and the event stream hand out different types.
type allocView struct {
	ID, JobID, NodeID, NodeName    string
	JobVersion                     uint64
	ClientStatus, DesiredStatus    string
	ClientDescription, DesiredDesc string
	TaskStates                     map[string]*api.TaskState
	Resources                      *api.AllocatedResources
	Deployment                     *api.AllocDeploymentStatus
	CreateTime                     int64
	ModifyIndex                    uint64
	Replacing                      bool
}

func viewOfStub(s *api.AllocationListStub) allocView {
	return allocView{
		ID: s.ID, JobID: s.JobID, NodeID: s.NodeID, NodeName: s.NodeName, JobVersion: s.JobVersion,
		ClientStatus: s.ClientStatus, DesiredStatus: s.DesiredStatus,
		ClientDescription: s.ClientDescription, DesiredDesc: s.DesiredDescription,
		TaskStates: s.TaskStates, Resources: s.AllocatedResources, Deployment: s.DeploymentStatus,
		CreateTime: s.CreateTime, ModifyIndex: s.ModifyIndex,
		Replacing: s.FollowupEvalID != "" || s.NextAllocation != "",
	}
}

func viewOfAlloc(a *api.Allocation) allocView {
	v := allocView{
		ID: a.ID, JobID: a.JobID, NodeID: a.NodeID, NodeName: a.NodeName,
		ClientStatus: a.ClientStatus, DesiredStatus: a.DesiredStatus,
		ClientDescription: a.ClientDescription, DesiredDesc: a.DesiredDescription,
		TaskStates: a.TaskStates, Resources: a.AllocatedResources, Deployment: a.DeploymentStatus,
		CreateTime: a.CreateTime, ModifyIndex: a.ModifyIndex,
		Replacing: a.FollowupEvalID != "" || a.NextAllocation != "",
	}
	if a.Job != nil && a.Job.Version != nil {
		v.JobVersion = *a.Job.Version
	}
	return v
}

// taskOf maps an allocation onto a Marathon task (state table in the
// package doc).
func taskOf(appID, version string, a allocView) Task {
	t := Task{
		Status: task.Status{
			ID:       TaskID(a.JobID, a.ID),
			AppID:    appID,
			Version:  version,
			Host:     a.NodeName,
			StagedAt: time.Unix(0, a.CreateTime),
			Message:  a.ClientDescription,
		},
		AllocID:   a.ID,
		NodeID:    a.NodeID,
		Index:     a.ModifyIndex,
		Replacing: a.Replacing,
	}
	if a.Deployment != nil {
		t.Healthy = a.Deployment.Healthy
	}
	if r := a.Resources; r != nil {
		byLabel := map[string]api.PortMapping{}
		for _, p := range r.Shared.Ports {
			byLabel[p.Label] = p
		}
		for i := 0; ; i++ {
			p, ok := byLabel[portLabel(i)]
			if !ok {
				break
			}
			t.Ports = append(t.Ports, p.Value)
			if p.HostIP != "" {
				t.Host = p.HostIP
			}
		}
		if len(t.Ports) == 0 && len(r.Shared.Networks) > 0 && r.Shared.Networks[0].IP != "" {
			t.Host = r.Shared.Networks[0].IP
		}
	}
	stopping := a.DesiredStatus != api.AllocDesiredStatusRun
	ts := a.TaskStates[taskName]
	switch {
	case a.ClientStatus == api.AllocClientStatusLost || a.ClientStatus == api.AllocClientStatusUnknown:
		t.State = task.Lost
	case ts == nil:
		switch a.ClientStatus {
		case api.AllocClientStatusFailed:
			t.State = task.Failed
		case api.AllocClientStatusComplete:
			t.State = task.Killed
		default:
			t.State = task.Staging
			if stopping {
				t.State = task.Killing
			}
		}
	case ts.State == "dead":
		switch {
		case ts.Failed:
			t.State = task.Failed
		case stopping:
			t.State = task.Killed
		default:
			t.State = task.Finished
		}
		t.ExitCode, t.Message = lastExit(ts, t.Message)
	case stopping:
		t.State = task.Killing
	case ts.State == "running":
		t.State, t.StartedAt = task.Running, ts.StartedAt
	default: // pending: received, image pull, or restarting
		t.State = task.Starting
	}
	if t.Message == "" && stopping {
		t.Message = a.DesiredDesc
	}
	return t
}

// lastExit reads the exit code and message from the task's last
// termination event.
func lastExit(ts *api.TaskState, msg string) (int, string) {
	for i := len(ts.Events) - 1; i >= 0; i-- {
		ev := ts.Events[i]
		if ev.Type == api.TaskTerminated || ev.Type == api.TaskDriverFailure || ev.Type == api.TaskFailedValidation {
			if ev.DisplayMessage != "" {
				msg = ev.DisplayMessage
			}
			return ev.ExitCode, msg
		}
	}
	return 0, msg
}

// version is the garrison app version of a job version, from the job's
// meta (cached: a job version never changes).
func (d *Driver) version(ctx context.Context, jobID string, jobVersion uint64) (string, error) {
	d.mu.Lock()
	v, ok := d.versions[jobID][jobVersion]
	d.mu.Unlock()
	if ok {
		return v, nil
	}
	jobs, _, _, err := d.c.Jobs().Versions(jobID, false, d.q(ctx))
	if statusCode(err) == http.StatusNotFound {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("nomad: versions of job %s: %w", jobID, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.versions[jobID]
	if m == nil {
		m = map[uint64]string{}
		d.versions[jobID] = m
	}
	for _, j := range jobs {
		if j.Version != nil {
			m[*j.Version] = j.Meta[MetaVersion]
		}
	}
	// Nomad keeps the last six versions: an older one stays unknown.
	if _, ok := m[jobVersion]; !ok {
		m[jobVersion] = ""
	}
	return m[jobVersion], nil
}

// Allocations lists the app's tasks: every allocation Nomad still holds,
// terminal ones included (State says which; Marathon's task list shows the
// non-terminal ones).
func (d *Driver) Allocations(ctx context.Context, appID string) ([]Task, error) {
	id := JobID(appID)
	q := d.q(ctx)
	// The list endpoint gives ports and addresses only with resources=true
	// (the job's own allocations endpoint never does).
	q.Params = map[string]string{"resources": "true", "task_states": "true"}
	q.Filter = `JobID == ` + strconv.Quote(id)
	stubs, _, err := d.c.Allocations().List(q)
	if err != nil {
		return nil, fmt.Errorf("nomad: allocations of job %s: %w", id, err)
	}
	out := make([]Task, 0, len(stubs))
	for _, s := range stubs {
		if s.JobID != id {
			continue
		}
		v, err := d.version(ctx, id, s.JobVersion)
		if err != nil {
			return nil, err
		}
		out = append(out, taskOf(appID, v, viewOfStub(s)))
	}
	return out, nil
}
