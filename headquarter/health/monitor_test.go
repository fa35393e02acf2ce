package health

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTPSuccessMakesAlive(t *testing.T) {
	tg := newTarget(t, http.StatusOK)
	h := start(t)
	if healthy, known := h.m.Healthy("t1"); healthy || known {
		t.Fatalf("unknown task: Healthy = %v, %v; want false, false", healthy, known)
	}
	h.add(t, "t1", time.Now(), tg.check(t))

	c := recv(t, h.changes, "change to alive")
	if c.TaskID != "t1" || c.CheckIndex != 0 || !c.Alive || !c.Result.Alive {
		t.Fatalf("change = %+v, want t1 check 0 alive", c)
	}
	r := result(t, h.m, "t1", 0)
	if !r.Alive || r.FirstSuccess.IsZero() || r.LastSuccess.IsZero() || !r.LastFailure.IsZero() || r.ConsecutiveFailures != 0 {
		t.Fatalf("result = %+v", r)
	}
	if r.TaskID != "t1" || r.InstanceID != "inst-t1" {
		t.Fatalf("result ids = %q, %q", r.TaskID, r.InstanceID)
	}
	if healthy, known := h.m.Healthy("t1"); !healthy || !known {
		t.Fatalf("Healthy = %v, %v; want true, true", healthy, known)
	}
}

func TestHTTPStatuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		alive  bool
	}{
		{"200", 200, true},
		{"204", 204, true},
		{"302 is not followed and passes", 302, true},
		{"399", 399, true},
		{"404", 404, false},
		{"500", 500, false},
		{"503", 503, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					w.WriteHeader(http.StatusInternalServerError)
					return
				}
				if tc.status == 302 {
					http.Redirect(w, r, "/elsewhere", http.StatusFound)
					return
				}
				w.WriteHeader(tc.status)
			}))
			t.Cleanup(srv.Close)
			h := start(t)
			h.add(t, "t", time.Time{}, Check{Port: portOf(t, srv.Listener.Addr()), Interval: fast, Timeout: 5 * time.Second})
			eventually(t, "a counted check", func() bool {
				r := result(t, h.m, "t", 0)
				return !r.LastSuccess.IsZero() || !r.LastFailure.IsZero()
			})
			r := result(t, h.m, "t", 0)
			if r.Alive != tc.alive {
				t.Fatalf("alive = %v, want %v (result %+v)", r.Alive, tc.alive, r)
			}
			if !tc.alive && !strings.Contains(r.LastFailureCause, "HTTP "+http.StatusText(tc.status)) &&
				!strings.Contains(r.LastFailureCause, "HTTP "+strconv.Itoa(tc.status)) {
				t.Fatalf("cause = %q, want the status", r.LastFailureCause)
			}
		})
	}
}

func TestHTTPFailuresMakeUnhealthyOnce(t *testing.T) {
	tg := newTarget(t, http.StatusInternalServerError)
	h := start(t)
	c := tg.check(t)
	c.MaxConsecutiveFailures = 3
	h.add(t, "t1", time.Now(), c)

	u := recv(t, h.unhealthy, "unhealthy")
	if u.TaskID != "t1" || u.InstanceID != "inst-t1" || u.CheckIndex != 0 {
		t.Fatalf("unhealthy = %+v", u)
	}
	if u.Result.ConsecutiveFailures != 3 || u.Result.Alive {
		t.Fatalf("unhealthy result = %+v, want 3 failures, not alive", u.Result)
	}
	if !strings.Contains(u.Reason, "500") || !strings.Contains(u.Result.LastFailureCause, "500 Internal Server Error") {
		t.Fatalf("reason %q / cause %q do not name the status", u.Reason, u.Result.LastFailureCause)
	}
	// Failures go on; the task was reported once and is never alive.
	eventually(t, "more failures", func() bool { return result(t, h.m, "t1", 0).ConsecutiveFailures >= 8 })
	none(t, h.unhealthy, "second unhealthy for the same run of failures")
	none(t, h.changes, "change (the check was never alive)")
	if healthy, known := h.m.Healthy("t1"); healthy || !known {
		t.Fatalf("Healthy = %v, %v; want false, true", healthy, known)
	}

	// A success ends the run of failures; the next run is reported again.
	tg.status.Store(http.StatusOK)
	if c := recv(t, h.changes, "alive"); !c.Alive {
		t.Fatalf("change = %+v", c)
	}
	if r := result(t, h.m, "t1", 0); r.ConsecutiveFailures != 0 {
		t.Fatalf("failures after a success = %d", r.ConsecutiveFailures)
	}
	tg.status.Store(http.StatusInternalServerError)
	recv(t, h.unhealthy, "unhealthy after a new run of failures")
}

func TestMaxConsecutiveFailuresZeroNeverKills(t *testing.T) {
	tg := newTarget(t, http.StatusInternalServerError)
	h := start(t)
	h.add(t, "t1", time.Now(), tg.check(t))
	eventually(t, "many failures", func() bool { return result(t, h.m, "t1", 0).ConsecutiveFailures >= 10 })
	none(t, h.unhealthy, "unhealthy with maxConsecutiveFailures 0")
}

func TestGracePeriod(t *testing.T) {
	t.Run("failures before the first success are ignored", func(t *testing.T) {
		began := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
		clock := newClock(began.Add(time.Minute))
		tg := newTarget(t, http.StatusInternalServerError)
		h := start(t, WithNow(clock.now))
		c := tg.check(t)
		c.GracePeriod = 5 * time.Minute
		c.MaxConsecutiveFailures = 1
		h.add(t, "t1", began, c)

		tg.waitHits(t, 10)
		r := result(t, h.m, "t1", 0)
		if r.ConsecutiveFailures != 0 || !r.LastFailure.IsZero() || r.LastFailureCause != "" || r.Alive {
			t.Fatalf("in grace: result = %+v, want nothing recorded", r)
		}
		none(t, h.unhealthy, "unhealthy in the grace period")

		// The grace period is over: the next failure counts and kills.
		clock.set(began.Add(5*time.Minute + time.Second))
		u := recv(t, h.unhealthy, "unhealthy after the grace period")
		if u.Result.ConsecutiveFailures != 1 || !u.Result.LastFailure.Equal(clock.now()) {
			t.Fatalf("result = %+v", u.Result)
		}
	})
	t.Run("failures after the first success count", func(t *testing.T) {
		began := time.Now()
		tg := newTarget(t, http.StatusOK)
		h := start(t)
		c := tg.check(t)
		c.GracePeriod = time.Hour
		c.MaxConsecutiveFailures = 2
		h.add(t, "t1", began, c)
		recv(t, h.changes, "alive")
		tg.status.Store(http.StatusServiceUnavailable)
		if c := recv(t, h.changes, "dead"); c.Alive {
			t.Fatalf("change = %+v", c)
		}
		if u := recv(t, h.unhealthy, "unhealthy within the grace period"); u.Result.ConsecutiveFailures != 2 {
			t.Fatalf("unhealthy = %+v", u)
		}
	})
}

func TestTimeoutIsAFailure(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-r.Context().Done() // never answers; the client gives up
	}))
	t.Cleanup(srv.Close)
	h := start(t)
	h.add(t, "t1", time.Time{}, Check{
		Protocol:               HTTP,
		Port:                   portOf(t, srv.Listener.Addr()),
		Interval:               fast,
		Timeout:                50 * time.Millisecond,
		MaxConsecutiveFailures: 2,
	})
	u := recv(t, h.unhealthy, "unhealthy after timeouts")
	if !strings.Contains(u.Result.LastFailureCause, "timed out after 50ms") {
		t.Fatalf("cause = %q", u.Result.LastFailureCause)
	}
	if hits.Load() < 2 {
		t.Fatalf("server saw %d requests, want 2 or more", hits.Load())
	}
}

func TestHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	h := start(t)
	// The certificate is self-signed; Marathon does not verify it either.
	h.add(t, "t1", time.Time{}, Check{Protocol: MesosHTTPS, Port: portOf(t, srv.Listener.Addr()), Interval: fast})
	if c := recv(t, h.changes, "alive"); !c.Alive {
		t.Fatalf("change = %+v", c)
	}
}

// informationalServer answers every request with a bare 1xx and then
// nothing, counting requests.
func informationalServer(t *testing.T, code string) (port int, hits *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hits = &atomic.Int64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					hits.Add(1)
					if _, err := conn.Write([]byte("HTTP/1.1 " + code + "\r\n\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return portOf(t, ln.Addr()), hits
}

func TestHTTP1xx(t *testing.T) {
	t.Run("ignored", func(t *testing.T) {
		port, hits := informationalServer(t, "102 Processing")
		h := start(t)
		h.add(t, "t1", time.Time{}, Check{Port: port, Interval: fast, Timeout: 5 * time.Second, IgnoreHTTP1xx: true, MaxConsecutiveFailures: 1})
		eventually(t, "several checks", func() bool { return hits.Load() >= 5 })
		r := result(t, h.m, "t1", 0)
		if r.Alive || r.ConsecutiveFailures != 0 || !r.LastFailure.IsZero() || !r.LastSuccess.IsZero() {
			t.Fatalf("result = %+v, want unchanged", r)
		}
		none(t, h.unhealthy, "unhealthy on an ignored 1xx")
	})
	t.Run("failed", func(t *testing.T) {
		port, _ := informationalServer(t, "102 Processing")
		h := start(t)
		h.add(t, "t1", time.Time{}, Check{Port: port, Interval: fast, Timeout: 5 * time.Second, MaxConsecutiveFailures: 1})
		u := recv(t, h.unhealthy, "unhealthy on a 1xx")
		if !strings.Contains(u.Result.LastFailureCause, "HTTP 102 Processing") {
			t.Fatalf("cause = %q", u.Result.LastFailureCause)
		}
	})
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	h := start(t)
	h.add(t, "t1", time.Time{}, Check{Protocol: TCP, Port: portOf(t, ln.Addr()), Interval: fast, Timeout: 5 * time.Second, MaxConsecutiveFailures: 2})
	if c := recv(t, h.changes, "alive"); !c.Alive {
		t.Fatalf("change = %+v", c)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	<-accepted
	if c := recv(t, h.changes, "dead after the listener closed"); c.Alive {
		t.Fatalf("change = %+v", c)
	}
	u := recv(t, h.unhealthy, "unhealthy")
	if !strings.Contains(u.Result.LastFailureCause, "connection refused") {
		t.Fatalf("cause = %q", u.Result.LastFailureCause)
	}
}

func TestMesosTCPRunsAsTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// Connections wait in the backlog: connecting is all a TCP check needs.
	h := start(t)
	h.add(t, "t1", time.Time{}, Check{Protocol: MesosTCP, Port: portOf(t, ln.Addr()), Interval: fast})
	recv(t, h.changes, "alive")
}

func TestCommand(t *testing.T) {
	for _, tc := range []struct {
		name    string
		command string
		env     []string
		alive   bool
		cause   string
	}{
		{"exit 0", "exit 0", nil, true, ""},
		{"exit 1", "exit 1", nil, false, "exit status 1"},
		{"output in the cause", "echo boom >&2; exit 3", nil, false, "exit status 3: boom"},
		{"sees the task's env", `test "$GARRISON_TEST" = "yes" && test "$PORT0" = 31005`, []string{"GARRISON_TEST=yes", "PORT0=31005"}, true, ""},
		{"only the task's env", `test -z "$HOME"`, []string{"A=b"}, true, ""},
		{"wrong env fails", `test "$GARRISON_TEST" = "yes"`, []string{"GARRISON_TEST=no"}, false, "exit status 1"},
		{"finds programs on garrison's PATH", "true | cat", []string{"A=b"}, true, ""},
		{"timeout kills the command", "sleep 30", nil, false, "timed out after 100ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HOME", "/root-of-garrison")
			h := start(t)
			timeout := 5 * time.Second // forks may be slow on a busy machine
			if strings.HasPrefix(tc.command, "sleep") {
				timeout = 100 * time.Millisecond
			}
			h.add(t, "t1", time.Time{}, Check{Protocol: Command, Command: tc.command, Env: tc.env, Interval: fast, Timeout: timeout})
			eventually(t, "a counted check", func() bool {
				r := result(t, h.m, "t1", 0)
				return !r.LastSuccess.IsZero() || !r.LastFailure.IsZero()
			})
			r := result(t, h.m, "t1", 0)
			if r.Alive != tc.alive {
				t.Fatalf("alive = %v, want %v (result %+v)", r.Alive, tc.alive, r)
			}
			if !strings.Contains(r.LastFailureCause, tc.cause) {
				t.Fatalf("cause = %q, want it to contain %q", r.LastFailureCause, tc.cause)
			}
		})
	}
}

func TestChangeOnlyOnFlips(t *testing.T) {
	tg := newTarget(t, http.StatusOK)
	h := start(t)
	h.add(t, "t1", time.Time{}, tg.check(t))

	for _, want := range []struct {
		status int
		alive  bool
	}{{200, true}, {500, false}, {200, true}, {503, false}} {
		tg.status.Store(int64(want.status))
		c := recv(t, h.changes, "change")
		if c.Alive != want.alive || c.Result.Alive != want.alive {
			t.Fatalf("status %d: change = %+v, want alive %v", want.status, c, want.alive)
		}
		tg.waitHits(t, 5) // several more checks with the same outcome
		none(t, h.changes, "change without a flip")
	}
}

func TestSeveralChecksHealthyNeedsAll(t *testing.T) {
	up, down := newTarget(t, http.StatusOK), newTarget(t, http.StatusInternalServerError)
	h := start(t)
	h.add(t, "t1", time.Time{}, up.check(t), down.check(t))
	c := recv(t, h.changes, "first check alive")
	if c.CheckIndex != 0 {
		t.Fatalf("change = %+v", c)
	}
	down.waitHits(t, 3)
	if healthy, known := h.m.Healthy("t1"); healthy || !known {
		t.Fatalf("one check dead: Healthy = %v, %v", healthy, known)
	}
	down.status.Store(http.StatusOK)
	if c := recv(t, h.changes, "second check alive"); c.CheckIndex != 1 {
		t.Fatalf("change = %+v", c)
	}
	if healthy, known := h.m.Healthy("t1"); !healthy || !known {
		t.Fatalf("both alive: Healthy = %v, %v", healthy, known)
	}
	if rs := h.m.Results("t1"); len(rs) != 2 {
		t.Fatalf("%d results", len(rs))
	}
}

func TestRemoveStopsChecking(t *testing.T) {
	removed, kept := newTarget(t, http.StatusOK), newTarget(t, http.StatusOK)
	h := start(t)
	h.add(t, "gone", time.Time{}, removed.check(t))
	h.add(t, "kept", time.Time{}, kept.check(t))
	removed.waitHits(t, 3)

	h.m.Remove("gone")
	after := removed.hits.Load()
	// The kept task's checks are the clock: many intervals pass.
	kept.waitHits(t, 10)
	if n := removed.hits.Load(); n != after {
		t.Fatalf("%d requests reached the removed task's server after Remove", n-after)
	}
	if rs := h.m.Results("gone"); rs != nil {
		t.Fatalf("results of a removed task: %+v", rs)
	}
	if _, known := h.m.Healthy("gone"); known {
		t.Fatal("a removed task is still known")
	}
	h.m.Remove("gone") // removing twice is harmless
	h.m.Remove("never added")
}

func TestRemoveFromCallback(t *testing.T) {
	tg := newTarget(t, http.StatusInternalServerError)
	var h *harness
	removed := make(chan string, 1)
	h = start(t, WithOnUnhealthy(func(u Unhealthy) {
		// The reconciler's pattern: replace the task at once.
		h.m.Remove(u.TaskID)
		removed <- u.TaskID
	}))
	c := tg.check(t)
	c.MaxConsecutiveFailures = 1
	h.add(t, "t1", time.Time{}, c)
	if id := recv(t, removed, "removal from the callback"); id != "t1" {
		t.Fatalf("removed %q", id)
	}
	if h.m.Results("t1") != nil {
		t.Fatal("task still tracked")
	}
}

func TestAddAgain(t *testing.T) {
	tg := newTarget(t, http.StatusOK)
	h := start(t)
	began := time.Now()
	c := tg.check(t)
	h.add(t, "t1", began, c)
	recv(t, h.changes, "alive")
	first := result(t, h.m, "t1", 0).FirstSuccess

	h.add(t, "t1", began, c) // the reconciler re-adds every pass: nothing changes
	h.add(t, "t1", time.Time{}, c)
	if r := result(t, h.m, "t1", 0); !r.Alive || !r.FirstSuccess.Equal(first) {
		t.Fatalf("same Add reset the result: %+v", r)
	}
	none(t, h.changes, "change from a repeated Add")

	c.Path = "/other"
	h.add(t, "t1", began, c) // new checks: new results
	if r := result(t, h.m, "t1", 0); r.Alive || !r.FirstSuccess.IsZero() {
		// The new checker may already have passed; then it is a new success.
		if !r.FirstSuccess.After(first) {
			t.Fatalf("changed Add kept the old result: %+v", r)
		}
	}
	recv(t, h.changes, "alive again with the new check")

	h.add(t, "t1", began) // no checks: not tracked
	if _, known := h.m.Healthy("t1"); known {
		t.Fatal("a task without checks is known")
	}
}

func TestAddRejectsInvalidChecks(t *testing.T) {
	m := NewMonitor()
	err := m.Add("t1", "i1", time.Time{}, []Check{{Protocol: HTTP, Port: 8080}, {Protocol: "GOPHER", Port: 1}, {Protocol: Command}})
	if err == nil {
		t.Fatal("Add accepted invalid checks")
	}
	for _, want := range []string{"task t1", "check 1", `unknown protocol "GOPHER"`, "check 2", "empty command"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if m.Results("t1") != nil {
		t.Fatal("a rejected task is tracked")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check Check
		err   string
	}{
		{"defaults", Check{Port: 80}, ""},
		{"mesos http", Check{Protocol: MesosHTTP, Port: 80}, ""},
		{"command", Check{Protocol: Command, Command: "true"}, ""},
		{"no port", Check{Protocol: TCP}, "port 0 out of range"},
		{"port too big", Check{Protocol: HTTPS, Port: 70000}, "port 70000 out of range"},
		{"unknown", Check{Protocol: "UDP", Port: 1}, `unknown protocol "UDP"`},
		{"empty command", Check{Protocol: Command, Command: "  "}, "empty command"},
		{"negative", Check{Port: 1, Interval: -1, Timeout: -1, GracePeriod: -1, Delay: -1, MaxConsecutiveFailures: -1}, "negative interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.check.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestResultsBeforeAnyCheckAreNull(t *testing.T) {
	h := start(t)
	h.add(t, "t1", time.Time{}, Check{Port: 1, Delay: time.Hour})
	rs := h.m.Results("t1")
	if len(rs) != 1 {
		t.Fatalf("results = %+v", rs)
	}
	got := mustJSON(t, rs)
	want := `[{"alive":false,"consecutiveFailures":0,"firstSuccess":null,"lastSuccess":null,"lastFailure":null,"lastFailureCause":null,"taskId":"t1","instanceId":"inst-t1"}]`
	if got != want {
		t.Fatalf("JSON\n got %s\nwant %s", got, want)
	}
	if healthy, known := h.m.Healthy("t1"); healthy || !known {
		t.Fatalf("Healthy = %v, %v; want false, true", healthy, known)
	}
}

func TestRunLifecycle(t *testing.T) {
	tg := newTarget(t, http.StatusOK)
	m := NewMonitor()
	// Added before Run: checked once Run starts.
	if err := m.Add("early", "i", time.Time{}, []Check{tg.check(t)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	eventually(t, "the early task alive", func() bool { h, _ := m.Healthy("early"); return h })

	cancel()
	if err := recv(t, errc, "Run's return"); err != nil {
		t.Fatalf("Run = %v", err)
	}
	m.mu.Lock()
	e := m.tasks["early"]
	m.mu.Unlock()
	for _, c := range e.checkers {
		select {
		case <-c.done:
		default:
			t.Fatal("a check goroutine outlived Run")
		}
	}
	// Results stay readable; nothing runs any more.
	if h, _ := m.Healthy("early"); !h {
		t.Fatal("results lost at Run's end")
	}
	hits := tg.hits.Load()
	if err := m.Add("late", "i", time.Time{}, []Check{tg.check(t)}); err != nil {
		t.Fatal(err)
	}
	m.Remove("late") // would hang if a goroutine had started and not stopped
	if err := m.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Run = %v", err)
	}
	if n := tg.hits.Load(); n != hits {
		t.Fatalf("%d checks after Run returned", n-hits)
	}
}

func TestRunReturnsWhileChecksHang(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(srv.Close)
	m := NewMonitor()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	if err := m.Add("t1", "i", time.Time{}, []Check{
		{Port: portOf(t, srv.Listener.Addr()), Timeout: time.Hour},
		{Protocol: Command, Command: "sleep 3517.25", Timeout: time.Hour},
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the command running", func() bool { return commandRunning(t, "sleep 3517.25") })
	began := time.Now()
	cancel()
	if err := recv(t, errc, "Run's return"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("Run took %s to stop hanging checks", d)
	}
	if commandRunning(t, "sleep 3517.25") {
		t.Fatal("the hanging command survived Run")
	}
}

// commandRunning says whether a process of ours runs exactly this command
// line, as sh -c runs it.
func commandRunning(t *testing.T, cmdline string) bool {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil {
			continue // gone meanwhile, or not ours to read
		}
		args := strings.Join(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), " ")
		if args == cmdline || args == "/bin/sh -c "+cmdline {
			return true
		}
	}
	return false
}

func TestStartupIntervalChecksOftenUntilFirstSuccess(t *testing.T) {
	var up atomic.Bool
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	changes := make(chan Change, 4)
	m := NewMonitor(WithStartupInterval(20*time.Millisecond), WithOnChange(func(c Change) { changes <- c }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	if err := m.Add("t", "t", time.Now(), []Check{{Protocol: HTTP, Port: port, Interval: time.Hour, Timeout: time.Second, GracePeriod: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	// Several failed checks in quick succession, not one an hour.
	deadline := time.Now().Add(5 * time.Second)
	for hits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d checks within 5 s while starting", hits.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	up.Store(true)
	select {
	case c := <-changes:
		if !c.Alive {
			t.Fatalf("change %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no alive change within 5 s of the task answering")
	}
	// After the first success the check's own interval applies.
	after := hits.Load()
	time.Sleep(200 * time.Millisecond)
	if n := hits.Load(); n > after+1 {
		t.Fatalf("%d more checks after the first success with an hourly interval", n-after)
	}
}
