package leaderproxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/garrisonhq/garrison/headquarter/leader"
	"github.com/garrisonhq/garrison/headquarter/leaderproxy"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// hq is one replica: an elector and an API server behind the proxy.
type hq struct {
	name string
	el   *leader.Elector
	srv  *http.Server
	stop func()
}

func startHQ(t *testing.T, etcd *etcdtest.Server) *hq {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hq{name: l.Addr().String()}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	h.el, err = leader.New(leader.Config{Client: etcd.Client(t), Name: h.name, TTL: 3 * time.Second, Pause: 200 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/v2/whoami", func(c *gin.Context) { c.String(200, h.name) })
	r.POST("/v2/echo", func(c *gin.Context) {
		b, _ := io.ReadAll(c.Request.Body)
		c.String(201, h.name+":"+string(b))
	})
	r.GET("/ping", func(c *gin.Context) { c.String(200, "pong "+h.name) })
	h.srv = &http.Server{Handler: leaderproxy.New(leaderproxy.Config{Leadership: h.el, Self: h.name, RetryPause: 20 * time.Millisecond, Logger: logger}, r)}
	go h.srv.Serve(l)
	t.Cleanup(func() { h.srv.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.el.Run(ctx, func(ctx context.Context, _ leader.Fence) { <-ctx.Done() })
	}()
	h.stop = func() { cancel(); <-done }
	t.Cleanup(h.stop)
	return h
}

func call(t *testing.T, method, url, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestFollowerAnswersWithTheLeader(t *testing.T) {
	etcd := etcdtest.New(t)
	a, b := startHQ(t, etcd), startHQ(t, etcd)
	var ld, fl *hq
	poll.True(t, time.Minute, "one leads, the other follows it", func() bool {
		switch {
		case a.el.IsLeader() && b.el.Leader() == a.name:
			ld, fl = a, b
		case b.el.IsLeader() && a.el.Leader() == b.name:
			ld, fl = b, a
		default:
			return false
		}
		return true
	})

	status, h, body := call(t, "GET", "http://"+fl.name+"/v2/whoami", "")
	if status != 200 || body != ld.name || h.Get(leaderproxy.ViaHeader) != "1.1 "+fl.name {
		t.Fatalf("follower's GET: %d %q via %q", status, body, h.Get(leaderproxy.ViaHeader))
	}
	if status, _, body := call(t, "POST", "http://"+fl.name+"/v2/echo", "payload"); status != 201 || body != ld.name+":payload" {
		t.Fatalf("follower's POST: %d %q", status, body)
	}
	if status, h, body := call(t, "GET", "http://"+ld.name+"/v2/whoami", ""); status != 200 || body != ld.name || h.Get(leaderproxy.ViaHeader) != "" {
		t.Fatalf("leader's own GET: %d %q", status, body)
	}
	// Not proxied: the replica's own routes.
	if _, _, body := call(t, "GET", "http://"+fl.name+"/ping", ""); body != "pong "+fl.name {
		t.Fatalf("follower's ping: %q", body)
	}
	// A request that already went through this replica is a loop.
	if status, _, body := call(t, "GET", "http://"+fl.name+"/v2/whoami", "", leaderproxy.ViaHeader, "1.1 "+fl.name); status != 502 || !strings.Contains(body, "Detected proxying loop.") {
		t.Fatalf("loop: %d %q", status, body)
	}
	// The leader leads in etcd but its API is gone.
	ld.srv.Close()
	if status, _, body := call(t, "GET", "http://"+fl.name+"/v2/whoami", ""); status != 502 || !strings.Contains(body, "Connection to leader refused.") {
		t.Fatalf("leader unreachable: %d %q", status, body)
	}
	// Nobody leads: held back, then 503.
	ld.stop()
	fl.stop()
	if status, _, body := call(t, "GET", "http://"+fl.name+"/v2/whoami", ""); status != 503 || !strings.Contains(body, "Could not determine the current leader") {
		t.Fatalf("no leader: %d %q", status, body)
	}
}

// fixedLeader names a leader that is not this replica.
type fixedLeader string

func (f fixedLeader) Leader() string { return string(f) }
func (fixedLeader) IsLeader() bool   { return false }

// TestPausedLeaderTimesOut: a leader that accepts connections but never
// answers (a stopped process: the kernel still completes the handshake)
// gets 504, as Marathon's proxy read timeout gives; before, the follower
// held the request for as long as the leader stayed stopped. A stream whose
// headers come at once is not cut by the timeout.
func TestPausedLeaderTimesOut(t *testing.T) {
	stuck, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close() // never accepted: nothing answers
	const timeout = 300 * time.Millisecond
	follower := func(leader string) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: leaderproxy.New(leaderproxy.Config{Leadership: fixedLeader(leader), Self: l.Addr().String(),
			ResponseTimeout: timeout, Logger: slog.New(slog.DiscardHandler)}, http.NotFoundHandler())}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		return l.Addr().String()
	}
	client := &http.Client{Timeout: 20 * timeout}
	resp, err := client.Post("http://"+follower(stuck.Addr().String())+"/v2/apps", "application/json", strings.NewReader(`{"id":"/a"}`))
	if err != nil {
		t.Fatalf("stopped leader: no answer from the follower: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(body), "Connection to leader timed out.") {
		t.Fatalf("stopped leader: %d %q", resp.StatusCode, body)
	}

	streaming := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		time.Sleep(3 * timeout)
		io.WriteString(w, "event")
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: streaming}
	go srv.Serve(l)
	defer srv.Close()
	if status, _, body := call(t, "GET", "http://"+follower(l.Addr().String())+"/v2/events", ""); status != 200 || body != "event" {
		t.Fatalf("slow stream through the proxy: %d %q", status, body)
	}
}
