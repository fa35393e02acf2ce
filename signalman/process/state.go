package process

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/garrisonhq/garrison/internal/atomicfile"
	"github.com/garrisonhq/garrison/signalman/task"
)

// record is a task's state file: enough of the spec to report the task and
// to find its process again after garrison restarts.
type record struct {
	ID          string       `json:"id"`
	AppID       string       `json:"appId"`
	Version     string       `json:"version"`
	Host        string       `json:"host,omitempty"`
	Ports       []portRecord `json:"ports,omitempty"`
	CPUs        float64      `json:"cpus,omitempty"`
	MemMB       float64      `json:"mem,omitempty"`
	KillGraceMs int64        `json:"killGraceMs,omitempty"`

	// Pid and StartTime (field 22 of /proc/<pid>/stat) identify the process
	// on the boot BootID; a pid alone may have been reused.
	Pid       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"`
	BootID    string `json:"bootId,omitempty"`
	// Cgroup is the task's cgroup directory, "" when limits are not enforced;
	// Limits says which limits apply, for Status.Message.
	Cgroup string `json:"cgroup,omitempty"`
	Limits string `json:"limits,omitempty"`

	StagedAt  time.Time `json:"stagedAt"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	// KillRequested is set once garrison asked the task to stop, so that its
	// end reads TASK_KILLED even when another garrison sees it.
	KillRequested bool       `json:"killRequested,omitempty"`
	State         task.State `json:"state"`
	ExitCode      int        `json:"exitCode,omitempty"`
	Message       string     `json:"message,omitempty"`
	FinishedAt    time.Time  `json:"finishedAt,omitzero"`
}

type portRecord struct {
	Name      string `json:"name,omitempty"`
	Host      int    `json:"host"`
	Requested int    `json:"requested,omitempty"`
}

func (r record) status() task.Status {
	st := task.Status{
		ID: r.ID, AppID: r.AppID, Version: r.Version, State: r.State, Host: r.Host,
		StagedAt: r.StagedAt, StartedAt: r.StartedAt, ExitCode: r.ExitCode, Message: r.Message,
	}
	for _, p := range r.Ports {
		st.Ports = append(st.Ports, p.Host)
	}
	if !r.State.Terminal() && st.Message == "" {
		st.Message = r.Limits
	}
	return st
}

const stateFile = "state.json"

// writeRecord replaces the state file atomically: a temporary file in the
// same directory, synced, renamed over the old one, and the directory synced.
func writeRecord(taskDir string, r record) error { return writeRecordSync(taskDir, r, true) }

// writeRecordSync is writeRecord, without the fsyncs when durable is false:
// the rename alone is atomic for a garrison that crashes, and only a machine
// crash, which ends every task anyway, loses an unsynced write.
func writeRecordSync(taskDir string, r record, durable bool) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state of task %s: %w", r.ID, err)
	}
	if err := atomicfile.Write(filepath.Join(taskDir, stateFile), append(b, '\n'), durable); err != nil {
		return fmt.Errorf("write state of task %s: %w", r.ID, err)
	}
	return nil
}

func readRecord(taskDir string) (record, error) {
	var r record
	b, err := os.ReadFile(filepath.Join(taskDir, stateFile))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode %s: %w", filepath.Join(taskDir, stateFile), err)
	}
	return r, nil
}
