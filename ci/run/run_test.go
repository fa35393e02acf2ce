package run_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/garrisonhq/garrison/ci/push"
	"github.com/garrisonhq/garrison/ci/run"
	"github.com/garrisonhq/garrison/internal/etcdtest"
)

func TestCreateNumbersRunsOnceEachUnderContention(t *testing.T) {
	s := run.NewStore(etcdtest.New(t).Client(t))
	ctx := context.Background()
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Create(ctx, "account", push.Push{Ref: "refs/heads/main", After: "a"})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- r.ID
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Errorf("id %s given twice", id)
		}
		seen[id] = true
	}
	runs, err := s.List(ctx, run.Filter{Project: "account"})
	if err != nil || len(runs) != 20 || runs[0].ID != "account.1" || runs[19].ID != "account.20" || runs[9].Number != 10 {
		t.Fatalf("list: %d runs, %v", len(runs), err)
	}
}

func TestUpdateRefusesFinishedRuns(t *testing.T) {
	s := run.NewStore(etcdtest.New(t).Client(t))
	ctx := context.Background()
	r, _ := s.Create(ctx, "account", push.Push{})
	got, err := s.Update(ctx, r.ID, func(r *run.Run) error { r.State = run.Failed; r.Reason = "x"; return nil })
	if err != nil || got.Finished == nil {
		t.Fatalf("update: %+v %v", got, err)
	}
	if _, err := s.Update(ctx, r.ID, func(r *run.Run) error { r.State = run.Passed; return nil }); !errors.Is(err, run.ErrFinished) {
		t.Fatalf("update of a failed run = %v, want ErrFinished", err)
	}
	if got, _ := s.Get(ctx, r.ID); got.State != run.Failed {
		t.Fatalf("state %s", got.State)
	}
	if _, err := s.Get(ctx, "account.99"); !errors.Is(err, run.ErrNotFound) {
		t.Errorf("Get(unknown) = %v", err)
	}
	if _, err := s.Get(ctx, "garbage"); !errors.Is(err, run.ErrNotFound) {
		t.Errorf("Get(garbage) = %v", err)
	}
}

func TestQueueLimitAndPrune(t *testing.T) {
	s := run.NewStore(etcdtest.New(t).Client(t))
	ctx := context.Background()
	for i := 0; i < run.MaxQueuedPerProject; i++ {
		if _, err := s.Create(ctx, "p", push.Push{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Create(ctx, "p", push.Push{})
	var full *run.QueueFullError
	if !errors.As(err, &full) || !full.LimitReached() {
		t.Fatalf("run past the limit: %v", err)
	}
	if _, err := s.Create(ctx, "other", push.Push{}); err != nil {
		t.Fatalf("the limit is per project: %v", err)
	}
	runs, _ := s.List(ctx, run.Filter{Project: "p", State: run.Queued})
	for _, r := range runs[:10] {
		s.Update(ctx, r.ID, func(r *run.Run) error { r.State = run.Passed; return nil })
	}
	dropped, err := s.Prune(ctx, "p", 3)
	if err != nil || len(dropped) != 7 || dropped[0].ID != "p.1" || dropped[6].ID != "p.7" {
		t.Fatalf("prune: %d %v", len(dropped), err)
	}
	left, _ := s.List(ctx, run.Filter{Project: "p"})
	if len(left) != run.MaxQueuedPerProject-7 || left[0].ID != "p.8" {
		t.Fatalf("left %d, first %s", len(left), left[0].ID)
	}
}
