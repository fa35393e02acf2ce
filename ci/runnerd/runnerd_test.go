package runnerd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/internal/citest"
	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/ci/runnerd"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/garrisontest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/pooltest"
)

const poolApp = "/test/runners"

// startRunner runs a runner in this process until the returned stop is
// called (or the test ends); stop waits for it.
func startRunner(t *testing.T, cli *clientv3.Client, id string, drain time.Duration) (addr string, stop func()) {
	t.Helper()
	return startRunnerWith(t, runnerd.Config{Etcd: cli, App: poolApp, ID: id, WorkDir: t.TempDir(), Drain: drain})
}

func startRunnerWith(t *testing.T, cfg runnerd.Config) (addr string, stop func()) {
	t.Helper()
	cli, id := cfg.Etcd, cfg.ID
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runnerd.Serve(ctx, l, cfg)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("runner %s: %v", id, err)
			}
		})
	}
	t.Cleanup(stop)
	poll.Until(t, 10*time.Second, "runner registered", func() (bool, string) {
		addrs, err := pool.Instances(context.Background(), cli, poolApp)
		return err == nil && len(addrs) > 0, fmt.Sprint(addrs, err)
	})
	return l.Addr().String(), stop
}

func metric(t *testing.T, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

func count(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// TestRunnerTakesJobsThroughEtcdAndTheAPI: a runner that shares nothing
// with garrison but etcd and HTTP claims a queued job, runs it in its own
// copy of the workspace (garrison's files unchanged) with the job's env
// and nothing of its own, and its exit code comes after its output; one
// job at a time (a second waits in the queue, the busy gauge shows it);
// a job past its timeout is killed with its children; a job garrison
// gives up is killed on the runner.
func TestRunnerTakesJobsThroughEtcdAndTheAPI(t *testing.T) {
	cli := etcdtest.New(t).Client(t)
	p := citest.PoolHQ(t, cli, poolApp)
	addr, _ := startRunner(t, cli, "r1", time.Minute)
	ctx := context.Background()

	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, "sub"), 0o755)
	os.WriteFile(filepath.Join(ws, "sub", "in.txt"), []byte("from the workspace\n"), 0o644)
	os.Symlink("sub/in.txt", filepath.Join(ws, "link"))
	t.Setenv("RUNNER_SECRET", "host-only")
	var log garrisontest.Buffer
	code, err := p.Run(ctx, pool.Job{ID: "a", Env: map[string]string{"N": "seven"}, Timeout: time.Minute,
		Script: `echo "$N x$RUNNER_SECRET"; cat link; test "$(pwd)" = "$CI_WORKSPACE" && test "$HOME" = "$CI_WORKSPACE" && echo in-ws; echo new > sub/in.txt; echo made > out; exit 3`}, ws, &log)
	if err != nil || code != 3 {
		t.Fatalf("job: %d %v\n%s", code, err, log.String())
	}
	if out := log.String(); !strings.Contains(out, "seven x\nfrom the workspace\nin-ws\n") || !strings.Contains(out, "runner r1 took the job") {
		t.Errorf("output:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "sub", "in.txt")); string(b) != "from the workspace\n" {
		t.Errorf("garrison's workspace changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(ws, "out")); err == nil {
		t.Error("the job's file appeared in garrison's workspace")
	}

	// One job at a time: b waits in the queue while slow runs, and slow
	// is killed with its children at its timeout.
	slowDone := make(chan error, 1)
	var slowLog garrisontest.Buffer
	go func() {
		_, err := p.Run(ctx, pool.Job{ID: "slow", Script: "sleep 30 & sleep 30", Timeout: 2 * time.Second}, ws, &slowLog)
		slowDone <- err
	}()
	poll.Until(t, 10*time.Second, "busy", func() (bool, string) {
		v := metric(t, addr, "garrison_runner_busy")
		return v == "1", v
	})
	bDone := make(chan error, 1)
	go func() {
		_, err := p.Run(ctx, pool.Job{ID: "b", Script: "true", Timeout: time.Minute}, ws, io.Discard)
		bDone <- err
	}()
	poll.Until(t, 10*time.Second, "b queued", func() (bool, string) {
		n := count(t, cli, pool.QueuePrefix(poolApp))
		return n == 1, fmt.Sprint(n)
	})
	if err := <-slowDone; err == nil || !strings.Contains(err.Error(), "timed out after 2s") {
		t.Errorf("slow job: %v", err)
	}
	if err := <-bDone; err != nil {
		t.Errorf("b: %v", err)
	}

	// garrison gives a job up (its step was cancelled): the runner kills
	// it, and the job's next line never comes.
	jctx, cancel := context.WithCancelCause(ctx)
	var gaveUp garrisontest.Buffer
	go func() {
		p.Run(jctx, pool.Job{ID: "given-up", Script: "echo started; sleep 3; echo still-there > /dev/stderr; sleep 30", Timeout: time.Minute}, ws, &gaveUp)
	}()
	poll.Until(t, 10*time.Second, "given-up running", func() (bool, string) {
		return strings.Contains(gaveUp.String(), "started"), gaveUp.String()
	})
	cancel(errors.New("cancelled by request"))
	poll.Until(t, 10*time.Second, "the runner free again", func() (bool, string) {
		v := metric(t, addr, "garrison_runner_busy")
		return v == "0", v
	})
	if n := count(t, cli, pool.ClaimPrefix(poolApp)) + count(t, cli, pool.QueuePrefix(poolApp)); n != 0 {
		t.Errorf("%d keys left in the queue and claims", n)
	}
}

// TestStoppingRunnerFinishesItsJob: a runner told to stop (a scale-down)
// leaves the registry at once and takes no new job but lets the running
// one finish; past the drain it kills it.
func TestStoppingRunnerFinishesItsJob(t *testing.T) {
	for _, tc := range []struct {
		name   string
		drain  time.Duration
		script string
		check  func(code int, err error, out string) bool
	}{
		{"finishes", time.Minute, "echo started; sleep 2; echo done", func(code int, err error, out string) bool {
			return code == 0 && err == nil && strings.HasSuffix(out, "done\n")
		}},
		{"killed past the drain", 100 * time.Millisecond, "echo started; sleep 30", func(code int, err error, out string) bool {
			return err != nil && strings.Contains(err.Error(), "drain")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli := etcdtest.New(t).Client(t)
			p := citest.PoolHQ(t, cli, poolApp)
			addr, stop := startRunner(t, cli, "r1", tc.drain)
			var log garrisontest.Buffer
			type result struct {
				code int
				err  error
			}
			done := make(chan result, 1)
			go func() {
				code, err := p.Run(context.Background(), pool.Job{ID: "j", Script: tc.script, Timeout: time.Minute}, t.TempDir(), &log)
				done <- result{code, err}
			}()
			poll.Until(t, 10*time.Second, "job started", func() (bool, string) {
				return strings.Contains(log.String(), "started"), log.String()
			})
			stopped := make(chan struct{})
			go func() { stop(); close(stopped) }()
			poll.Until(t, 10*time.Second, "the runner out of the registry", func() (bool, string) {
				addrs, err := pool.Instances(context.Background(), cli, poolApp)
				return err == nil && len(addrs) == 0, fmt.Sprint(addrs, err)
			})
			r := <-done
			if !tc.check(r.code, r.err, log.String()) {
				t.Errorf("job: %d %v\n%s", r.code, r.err, log.String())
			}
			<-stopped
			if _, err := http.Get("http://" + addr + "/health"); err == nil {
				t.Error("a stopped runner still answers")
			}
		})
	}
}

// TestLostRunnerFailsItsJob: a runner that dies mid-job (its claims'
// lease gone) fails the job as lost instead of leaving it waiting.
func TestLostRunnerFailsItsJob(t *testing.T) {
	cli := etcdtest.New(t).Client(t)
	p := citest.PoolHQ(t, cli, poolApp)
	startRunner(t, cli, "r1", time.Minute)
	var log garrisontest.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := p.Run(context.Background(), pool.Job{ID: "j", Script: "echo started; sleep 30", Timeout: time.Minute}, t.TempDir(), &log)
		done <- err
	}()
	poll.Until(t, 10*time.Second, "job started", func() (bool, string) {
		return strings.Contains(log.String(), "started"), log.String()
	})
	resp, err := cli.Get(context.Background(), pool.ClaimKey(poolApp, "j"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("claim: %v %v", resp, err)
	}
	// What a dead runner's lease does when its TTL ends.
	if _, err := cli.Revoke(context.Background(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
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

// TestRunnerAuthenticatesToGarrison: a runner sends its credentials with
// every call to garrison's API; one without them gets the job failed with
// garrison's refusal, not a hang.
func TestRunnerAuthenticatesToGarrison(t *testing.T) {
	cli := etcdtest.New(t).Client(t)
	p := pooltest.HQ(t, cli, poolApp, pooltest.Options{Token: "s3cret"})
	for _, tc := range []struct {
		token string
		check func(code int, err error) bool
	}{
		{"s3cret", func(code int, err error) bool { return code == 0 && err == nil }},
		{"", func(code int, err error) bool { return err != nil && strings.Contains(err.Error(), "401") }},
	} {
		_, stop := startRunnerWith(t, runnerd.Config{Etcd: cli, App: poolApp, ID: "r-" + tc.token, WorkDir: t.TempDir(), Token: tc.token})
		var log garrisontest.Buffer
		code, err := p.Run(context.Background(), pool.Job{ID: "with-" + tc.token, Script: "true", Timeout: time.Minute}, t.TempDir(), &log)
		if !tc.check(code, err) {
			t.Errorf("token %q: %d %v\n%s", tc.token, code, err, log.String())
		}
		stop()
	}
}

// TestLongJobOutlivesTheServerTimeouts: a job's output stream lasts as
// long as the job, past the read timeout of garrison's API server (here
// 1 s; the job runs 3 s).
func TestLongJobOutlivesTheServerTimeouts(t *testing.T) {
	cli := etcdtest.New(t).Client(t)
	p := pooltest.HQ(t, cli, poolApp, pooltest.Options{Timeout: time.Second})
	startRunner(t, cli, "r1", time.Minute)
	var log garrisontest.Buffer
	code, err := p.Run(context.Background(), pool.Job{ID: "long", Script: "echo a; sleep 3; echo b", Timeout: time.Minute}, t.TempDir(), &log)
	if code != 0 || err != nil || !strings.HasSuffix(log.String(), "a\nb\n") {
		t.Errorf("job: %d %v\n%s", code, err, log.String())
	}
}
