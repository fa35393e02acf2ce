package runners_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/registrar"
	"github.com/garrisonhq/garrison/scout/runners"
	"github.com/garrisonhq/garrison/scout/sample"
)

// TestReadsQueueClaimsAndRunnersFromEtcd: qps is the jobs queued plus
// claimed, cpu the claims over the registered runners (at most 1), all
// from etcd; a pool with no runner has no cpu, and another pool's keys
// do not count.
func TestReadsQueueClaimsAndRunnersFromEtcd(t *testing.T) {
	cli := etcdtest.New(t).Client(t)
	ctx := context.Background()
	put := func(k, v string) {
		t.Helper()
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	runner := func(poolApp, id string) {
		ep, _ := json.Marshal(registrar.Endpoint{Addr: "127.0.0.1:1", Metadata: map[string]string{"appId": poolApp}})
		put(registrar.Key(app.ServiceName(poolApp), id), string(ep))
	}
	const a, b, empty = "/ci/runners", "/ci/other", "/ci/empty"
	put(pool.QueuePrefix(a)+"j1", "{}")
	put(pool.QueuePrefix(a)+"j2", "{}")
	put(pool.ClaimKey(a, "j3"), "r1")
	runner(a, "r1")
	runner(a, "r2")
	put(pool.QueuePrefix(b)+"x", "{}")
	for _, id := range []string{"k1", "k2", "k3"} {
		put(pool.ClaimKey(b, id), "s1")
	}
	runner(b, "s1") // a stopping runner left the registry before its jobs ended
	put(pool.QueuePrefix(empty)+"y", "{}")

	got, err := runners.New(cli).Read(ctx, sample.Request{Apps: []sample.App{{ID: a}, {ID: b}, {ID: empty}}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(id string, m sample.Metric, want float64, ok bool) {
		t.Helper()
		v, found := got[id][m]
		if found != ok || (ok && (!v.OK || v.Value != want)) {
			t.Errorf("%s %s: %+v (found %v), want %v", id, m, v, found, want)
		}
	}
	check(a, sample.QPS, 3, true)
	check(a, sample.CPU, 0.5, true)
	check(b, sample.QPS, 4, true)
	check(b, sample.CPU, 1, true)
	check(empty, sample.QPS, 1, true)
	check(empty, sample.CPU, 0, false)
}
