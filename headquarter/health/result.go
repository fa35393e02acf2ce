package health

import (
	"encoding/json"
	"fmt"
	"time"
)

// timeLayout is Marathon's timestamp form: ISO-8601, UTC, milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z"

// Result is the state of one check of one task, marshalled exactly as an
// entry of a Marathon task's healthCheckResults. A zero time is null.
type Result struct {
	// Alive is true from a success until the next counted failure.
	Alive bool
	// ConsecutiveFailures counts failures since the last success; failures
	// ignored in the grace period do not count.
	ConsecutiveFailures int
	FirstSuccess        time.Time
	LastSuccess         time.Time
	LastFailure         time.Time
	// LastFailureCause says why the last counted check failed; it is null
	// in JSON while LastFailure is zero.
	LastFailureCause string
	// TaskID and InstanceID are both emitted: Marathon up to 1.3 and
	// go-marathon use taskId, Marathon 1.4+ instanceId.
	TaskID     string
	InstanceID string
}

// resultJSON fixes the key order of Marathon's healthCheckResults entries.
type resultJSON struct {
	Alive               bool    `json:"alive"`
	ConsecutiveFailures int     `json:"consecutiveFailures"`
	FirstSuccess        *string `json:"firstSuccess"`
	LastSuccess         *string `json:"lastSuccess"`
	LastFailure         *string `json:"lastFailure"`
	LastFailureCause    *string `json:"lastFailureCause"`
	TaskID              string  `json:"taskId"`
	InstanceID          string  `json:"instanceId"`
}

func formatTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(timeLayout)
	return &s
}

func parseTime(field string, s *string) (time.Time, error) {
	if s == nil {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return time.Time{}, fmt.Errorf("health result %s: %w", field, err)
	}
	return t, nil
}

// MarshalJSON writes the Marathon form, null for absent times and cause.
func (r Result) MarshalJSON() ([]byte, error) {
	j := resultJSON{
		Alive:               r.Alive,
		ConsecutiveFailures: r.ConsecutiveFailures,
		FirstSuccess:        formatTime(r.FirstSuccess),
		LastSuccess:         formatTime(r.LastSuccess),
		LastFailure:         formatTime(r.LastFailure),
		TaskID:              r.TaskID,
		InstanceID:          r.InstanceID,
	}
	if !r.LastFailure.IsZero() {
		cause := r.LastFailureCause
		j.LastFailureCause = &cause
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the Marathon form (any RFC 3339 timestamp).
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("health result: %w", err)
	}
	out := Result{
		Alive:               j.Alive,
		ConsecutiveFailures: j.ConsecutiveFailures,
		TaskID:              j.TaskID,
		InstanceID:          j.InstanceID,
	}
	var err error
	if out.FirstSuccess, err = parseTime("firstSuccess", j.FirstSuccess); err != nil {
		return err
	}
	if out.LastSuccess, err = parseTime("lastSuccess", j.LastSuccess); err != nil {
		return err
	}
	if out.LastFailure, err = parseTime("lastFailure", j.LastFailure); err != nil {
		return err
	}
	if j.LastFailureCause != nil {
		out.LastFailureCause = *j.LastFailureCause
	}
	*r = out
	return nil
}
