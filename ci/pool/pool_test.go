package pool_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// TestLostRunnerReportReadBeforeItsClaimsDeletion: a runner whose lease
// ended sees its claim go and reports that with its output, which garrison
// can read before the watch brings it the claim's deletion. The job is
// lost all the same (it failed with the runner's words, as a step's own
// failure, when the report came first), driven here step by step: the
// claim, the report, then the lease's end.
func TestLostRunnerReportReadBeforeItsClaimsDeletion(t *testing.T) {
	const app = "/test/runners"
	cli := etcdtest.New(t).Client(t)
	srv := httptest.NewUnstartedServer(nil)
	p := pool.New(cli, app, "http://"+srv.Listener.Addr().String())
	srv.Config.Handler = p.Handler()
	srv.Start()
	t.Cleanup(srv.Close)

	done := make(chan error, 1)
	go func() {
		_, err := p.Run(context.Background(), pool.Job{ID: "j", Script: "true", Timeout: time.Minute}, t.TempDir(), new(strings.Builder))
		done <- err
	}()
	ctx := context.Background()
	poll.Until(t, 10*time.Second, "job queued", func() (bool, string) {
		resp, err := cli.Get(ctx, pool.QueuePrefix(app), clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 1, "not yet"
	})
	// The runner's claim, under its lease.
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, pool.ClaimKey(app, "j"), `{"runner":"r1"}`, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	// Its report, once it saw the claim go: read by garrison first.
	req, err := http.NewRequest(http.MethodPost, srv.URL+pool.OutputPath("j"), strings.NewReader("started\n"))
	if err != nil {
		t.Fatal(err)
	}
	req.Trailer = http.Header{pool.ErrorTrailer: []string{"run: " + pool.ClaimGone}}
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("output: %s", resp.Status)
	}
	select {
	case err := <-done:
		t.Fatalf("the job ended before its claim did: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	// Then the lease ends.
	if _, err := cli.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, pool.ErrLost) {
			t.Errorf("job: %v, want ErrLost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the job still waits for a lost runner")
	}
}
