package marathon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/headquarter/marathon"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// hqReplica is one headquarter's Marathon API with its elector; the
// replicas of a test share one etcd.
type hqReplica struct {
	url  string
	name string
	el   *leader.Elector
	stop context.CancelFunc
	done chan struct{}
}

func startHQReplica(t *testing.T, etcd *etcdtest.Server) *hqReplica {
	t.Helper()
	engine := gin.New()
	srv := httptest.NewServer(engine)
	t.Cleanup(srv.Close)
	r := &hqReplica{url: srv.URL, name: strings.TrimPrefix(srv.URL, "http://"), done: make(chan struct{})}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	el, err := leader.New(leader.Config{Client: etcd.Client(t), Name: r.name, TTL: 3 * time.Second,
		Pause: 200 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	r.el = el
	marathon.Register(engine, marathon.Config{Leader: r.name, Leadership: el, Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = func() { cancel(); <-r.done }
	go func() {
		defer close(r.done)
		el.Run(ctx, func(ctx context.Context, _ leader.Fence) { <-ctx.Done() })
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *hqReplica) do(t *testing.T, method, path string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, r.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
	}
	return resp.StatusCode, resp.Header, body
}

// leaderOf polls until every replica names the same leader, other than
// not, on GET /v2/leader, in X-Marathon-Leader and /v2/info, and returns it.
func leaderOf(t *testing.T, rs []*hqReplica, not *hqReplica, what string) *hqReplica {
	t.Helper()
	var l *hqReplica
	poll.Until(t, 60*time.Second, what, func() (bool, string) {
		l = nil
		for _, r := range rs {
			if r.el.IsLeader() {
				l = r
			}
		}
		if l == nil || l == not {
			return false, "no new leader"
		}
		for _, r := range rs {
			status, h, body := r.do(t, "GET", "/v2/leader")
			if status != 200 || body["leader"] != l.name || h.Get("X-Marathon-Leader") != "http://"+l.name {
				return false, fmt.Sprintf("%s answers %d %v, header %q", r.name, status, body, h.Get("X-Marathon-Leader"))
			}
			_, _, info := r.do(t, "GET", "/v2/info")
			if info["leader"] != l.name || info["elected"] != (r == l) {
				return false, "info of " + r.name
			}
		}
		return true, ""
	})
	return l
}

func TestLeaderFollowsElection(t *testing.T) {
	etcd := etcdtest.New(t)
	rs := []*hqReplica{startHQReplica(t, etcd), startHQReplica(t, etcd)}
	first := leaderOf(t, rs, nil, "both replicas name the leader")
	follower := rs[0]
	if follower == first {
		follower = rs[1]
	}

	// DELETE /v2/leader on the follower makes the leader step down; the
	// follower, already campaigning, takes over.
	status, _, body := follower.do(t, "DELETE", "/v2/leader")
	if status != 200 || body["message"] != "Leadership abdicated" {
		t.Fatalf("DELETE /v2/leader: %d %v", status, body)
	}
	if second := leaderOf(t, rs, first, "a new leader after the abdication"); second != follower {
		t.Fatalf("%s leads after the abdication, want %s", second.name, follower.name)
	}
	// On the leader itself.
	status, _, body = follower.do(t, "DELETE", "/v2/leader")
	if status != 200 || body["message"] != "Leadership abdicated" {
		t.Fatalf("DELETE /v2/leader on the leader: %d %v", status, body)
	}
	if third := leaderOf(t, rs, follower, "a new leader after the leader abdicated"); third != first {
		t.Fatalf("%s leads after the second abdication, want %s", third.name, first.name)
	}
	status, _, body = first.do(t, "DELETE", "/v2/leader?backup=file:///tmp/b")
	if status != 422 || !strings.Contains(body["details"].([]any)[0].(map[string]any)["path"].(string), "/backup") {
		t.Fatalf("DELETE with backup: %d %v", status, body)
	}

	// Nobody campaigns: 404 and no header, as Marathon without a leader.
	for _, r := range rs {
		r.stop()
	}
	for _, r := range rs {
		poll.Until(t, 30*time.Second, "no leader named", func() (bool, string) {
			status, h, body := r.do(t, "GET", "/v2/leader")
			return status == 404 && body["message"] == "There is no leader" && h.Get("X-Marathon-Leader") == "", h.Get("X-Marathon-Leader")
		})
		if status, _, body := r.do(t, "DELETE", "/v2/leader"); status != 404 || body["message"] != "There is no leader" {
			t.Fatalf("DELETE without a leader: %d %v", status, body)
		}
	}
}
