package leader_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/internal/poll"
)

// The test binary doubles as a campaigner process, so that a test can
// kill -9 or SIGSTOP a leader as an operating system would.
const childEnv = "GARRISON_LEADER_TEST_CHILD"

func TestMain(m *testing.M) {
	if ep := os.Getenv(childEnv); ep != "" {
		runChild(ep)
		return
	}
	os.Exit(m.Run())
}

// runChild campaigns against endpoint and, once it leads, writes through
// the term's fence every few milliseconds for as long as it lives, whether
// or not it still leads: the in-flight action of a process that was paused.
// It reports on stdout: "lead <rev>", "ack <revision>", "refused".
func runChild(endpoint string) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	el, err := leader.New(leader.Config{Client: cli, Name: "child:8080", TTL: testTTL, Pause: 200 * time.Millisecond})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	var once sync.Once
	el.Run(context.Background(), func(ctx context.Context, f leader.Fence) {
		say("lead %d", f.Rev())
		once.Do(func() {
			go func() {
				for {
					wctx, cancel := context.WithTimeout(context.Background(), time.Second)
					resp, err := f.Do(wctx, clientv3.OpPut("/test/child", "x"))
					cancel()
					switch {
					case err == nil:
						say("ack %d", resp.Header.Revision)
					case errors.Is(err, leader.ErrNotLeader):
						say("refused")
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
		})
		<-ctx.Done()
	})
}

// child is a campaigner process and what it reported.
type child struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	lead int64   // its term's revision, 0 until it leads
	acks []int64 // revisions of its acknowledged fenced writes, in order
	refs int     // refused fenced writes
	done chan struct{}
}

func startChild(t *testing.T, endpoint string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+endpoint)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			word, arg, _ := strings.Cut(sc.Text(), " ")
			n, _ := strconv.ParseInt(arg, 10, 64)
			c.mu.Lock()
			switch word {
			case "lead":
				c.lead = n
			case "ack":
				c.acks = append(c.acks, n)
			case "refused":
				c.refs++
			}
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
		<-c.done
	})
	return c
}

func (c *child) state() (lead int64, acks []int64, refused int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lead, append([]int64(nil), c.acks...), c.refs
}

// leadingChild starts a campaigner process on member 0 and, once it leads,
// two in-process replicas on members 1 and 2.
func leadingChild(t *testing.T) (*child, []*replica) {
	c := newCluster(t)
	ch := startChild(t, c.Endpoints[0])
	poll.True(t, wait, "the process leads", func() bool {
		lead, acks, _ := ch.state()
		return lead > 0 && len(acks) > 0
	})
	return ch, []*replica{startReplica(t, c, 1, leader.DefaultPrefix), startReplica(t, c, 2, leader.DefaultPrefix)}
}

func TestTakeoverAfterLeaderKilled(t *testing.T) {
	ch, rs := leadingChild(t)
	killed := time.Now()
	if err := ch.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	next := waitLeader(t, rs, "a new leader after kill -9 of the leading process")
	_, _, began, _ := next.term()
	t.Logf("takeover after kill -9 of the leader: %s (session TTL %s)", began.Sub(killed).Round(time.Millisecond), testTTL)
}

// TestStoppedLeaderIsFencedOnResume pauses the leading process (SIGSTOP)
// until another replica leads, then resumes it: its writer, which does not
// look at leadership at all, has every fenced write refused.
func TestStoppedLeaderIsFencedOnResume(t *testing.T) {
	ch, rs := leadingChild(t)
	stopped := time.Now()
	if err := ch.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	next := waitLeader(t, rs, "a new leader while the leading process is stopped")
	f, _, began, _ := next.term()
	t.Logf("takeover after SIGSTOP of the leader: %s (session TTL %s)", began.Sub(stopped).Round(time.Millisecond), testTTL)

	if err := ch.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	poll.True(t, wait, "the resumed process's fenced writes are refused", func() bool {
		_, _, refused := ch.state()
		return refused >= 3
	})
	// A write etcd committed just before the stop may be reported after
	// the resume; what counts is that none was committed in the new term.
	_, acks, _ := ch.state()
	for _, rev := range acks {
		if rev >= f.Rev() {
			t.Fatalf("the old leader wrote at revision %d, after the new term began at %d", rev, f.Rev())
		}
	}
	if ls := leaders(rs); len(ls) != 1 || ls[0] != next {
		t.Fatalf("leaders after the resume: %v", ls)
	}
}
