package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/store"
	"github.com/garrisonhq/garrison/internal/etcdtest"
)

// BenchmarkFencedStoreWrite measures what a leader's fenced view costs the
// scheduler's writes: the same task records and app changes through the
// plain store and through Fenced (the caller's transaction nested in the
// fence's), alternated on one embedded etcd so both see the same machine.
// It reports both latencies and their ratio (fenced/plain).
func BenchmarkFencedStoreWrite(b *testing.B) {
	etcd := etcdtest.New(b)
	cli := etcd.Client(b)
	var term term
	select {
	case term = <-elect(b, cli, "bench:8080"):
	case <-time.After(time.Minute):
		b.Fatal("no term within a minute")
	}
	plain := store.New(cli)
	fenced := plain.Fenced(term.fence)
	ctx := b.Context()

	// One iteration is a scenario of its own (make bench runs 1x).
	const writes = 200
	var took [2]time.Duration
	rev := [2]int64{}
	for b.Loop() {
		for i := range writes {
			for k, s := range []*store.Store{plain, fenced} {
				app := fmt.Sprintf("/bench/app%d", k)
				start := time.Now()
				if err := s.PutTask(ctx, app, fmt.Sprintf("t%d", i), []byte(`{"id":"t"}`)); err != nil {
					b.Fatal(err)
				}
				r, err := s.CommitAt(ctx, store.Change{
					PutApps:        []store.AppWrite{{ID: app, Version: fmt.Sprintf("v%09d", i), Data: []byte(`{"instances":1}`), Expect: rev[k]}},
					PutDeployments: []store.Record{{Key: fmt.Sprintf("d%d", k), Data: []byte(`{}`)}}})
				if err != nil {
					b.Fatal(err)
				}
				rev[k] = r
				took[k] += time.Since(start)
			}
		}
	}
	n := float64(b.N * writes)
	b.ReportMetric(float64(took[0].Microseconds())/n, "plain-µs/record+change")
	b.ReportMetric(float64(took[1].Microseconds())/n, "fenced-µs/record+change")
	b.ReportMetric(float64(took[1])/float64(took[0]), "fenced/plain")
}
