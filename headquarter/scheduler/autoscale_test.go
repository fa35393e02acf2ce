package scheduler_test

import (
	"errors"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/scheduler"
)

func TestAutoscalerScaleSupersedesOnlyItsOwnSmallerScale(t *testing.T) {
	h := newHarness(t)
	h.deploy([]scheduler.Change{{App: webApp(t, "/auto", 1, ""), Create: true}}, false)
	h.waitFor("one ready task", 20*time.Second, func() bool {
		st, _ := h.sched.ScaleStatus("/auto")
		return st.Ready == 1 && !st.Deployment
	})
	if _, err := h.sched.Scale(t.Context(), "/auto", 3, "test: first step"); err != nil {
		t.Fatal(err)
	}
	st, ok := h.sched.ScaleStatus("/auto")
	if !ok || !st.Deployment || !st.Autoscaled || st.Instances != 3 {
		t.Fatalf("status during the autoscaler's scale: %+v", st)
	}
	// A smaller or equal step does not replace it.
	var locked *scheduler.LockedError
	if _, err := h.sched.Scale(t.Context(), "/auto", 2, "test: smaller"); !errors.As(err, &locked) {
		t.Fatalf("smaller scale during the autoscaler's scale: %v, want LockedError", err)
	}
	// A larger one supersedes it.
	if _, err := h.sched.Scale(t.Context(), "/auto", 5, "test: larger"); err != nil {
		t.Fatalf("larger scale did not supersede: %v", err)
	}
	h.waitFor("five ready tasks", 30*time.Second, func() bool {
		st, _ := h.sched.ScaleStatus("/auto")
		return st.Ready == 5 && !st.Deployment && h.registered("auto") == 5
	})
	// A user's deployment is never superseded by the autoscaler.
	cur, _ := h.sched.App("/auto")
	user := cur.Clone()
	user.Env = map[string]string{"X": "1"}
	h.deploy([]scheduler.Change{{App: user}}, false)
	if _, err := h.sched.Scale(t.Context(), "/auto", 8, "test: during a restart"); !errors.As(err, &locked) {
		t.Fatalf("autoscaler scale during a user's restart: %v, want LockedError", err)
	}
	if st, _ := h.sched.ScaleStatus("/auto"); st.Autoscaled {
		t.Fatalf("a user's restart reported as the autoscaler's: %+v", st)
	}
}
