package nomad_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/signalman/nomad"
)

// errTermOver is a guard's answer once the leader's term is over.
var errTermOver = errors.New("the term is over")

// pausedAfterCheck is a leader's term check that a pause follows: on its
// first call the next leader acts (next), then the check passes, as it did
// before the pause; every later call finds the term over.
func pausedAfterCheck(next func()) func(context.Context) error {
	calls := 0
	return func(context.Context) error {
		if calls++; calls == 1 {
			next()
			return nil
		}
		return errTermOver
	}
}

// A leader paused between its term's check and its submit or scale must
// not overwrite what the next leader changed meanwhile. The driver reads
// the job's modify index before the check and has Nomad enforce it: the
// former leader's write is refused, and on the retry the check finds the
// term over. With the check made before the read (the scheduler's own,
// alone), the former leader's submit and scale went through.
func TestFormerLeadersChangesRefusedAfterTheNextLeaders(t *testing.T) {
	ctx := ctxFor(t)
	c, _ := agent.Namespace(t)
	next, err := nomad.New(c)
	if err != nil {
		t.Fatal(err)
	}
	a := rawApp("/it/guarded", "2026-01-01T00:00:00.000Z", 1)
	id := a.Task.AppID
	withCount := func(n int) nomad.App { b := a; b.Instances = n; return b }
	// settle waits until n instances run and no deployment is active:
	// Nomad refuses a scale during one before it compares the index.
	settle := func(n int) {
		waitRunning(ctx, t, next, id, n, nil)
		poll.Until(t, wait, "no active deployment", func() (bool, string) {
			r, ok, err := next.Deployment(ctx, id)
			return err == nil && (!ok || !r.Active), fmt.Sprintf("%+v %v", r, err)
		})
	}
	count := func() int {
		job, _, err := c.Jobs().Info(nomad.JobID(id), nil)
		if err != nil {
			t.Fatal(err)
		}
		return *job.TaskGroups[0].Count
	}
	if _, err := next.Submit(ctx, a); err != nil {
		t.Fatal(err)
	}
	settle(1)

	former, err := nomad.New(c, nomad.WithGuard(pausedAfterCheck(func() {
		if _, err := next.Submit(ctx, withCount(2)); err != nil {
			t.Fatal(err)
		}
	})))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := former.Submit(ctx, withCount(3)); !errors.Is(err, errTermOver) {
		t.Errorf("the former leader's submit: %v, want it refused", err)
	}
	if n := count(); n != 2 {
		t.Fatalf("the job asks for %d instances after the former leader's submit, want the next leader's 2", n)
	}
	settle(2)

	former, err = nomad.New(c, nomad.WithGuard(pausedAfterCheck(func() {
		if _, err := next.Submit(ctx, withCount(1)); err != nil {
			t.Fatal(err)
		}
		settle(1)
	})))
	if err != nil {
		t.Fatal(err)
	}
	if err := former.Scale(ctx, id, 5, false); !errors.Is(err, errTermOver) {
		t.Errorf("the former leader's scale: %v, want it refused", err)
	}
	if n := count(); n != 1 {
		t.Fatalf("the job asks for %d instances after the former leader's scale, want the next leader's 1", n)
	}
}
