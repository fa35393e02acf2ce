package garrisontest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

// The test binary doubles as a small server to pause: it answers every
// request with the time it handled it at.
const serverEnv = "GARRISONTEST_PAUSE_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(serverEnv) != "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "listening on %s\n", l.Addr())
		// Busy goroutines, as a server has: threads running when the
		// signal comes.
		for range 4 {
			go func() {
				for {
					time.Sleep(time.Millisecond)
				}
			}()
		}
		http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, time.Now().UnixNano())
		}))
		return
	}
	os.Exit(m.Run())
}

func startServer(t *testing.T) (*Proc, string) {
	t.Setenv(serverEnv, "1")
	p := Start(t, os.Args[0], "-test.run=^$")
	var addr string
	deadline := time.Now().Add(time.Minute)
	for addr == "" {
		if _, err := fmt.Sscanf(p.Stderr(), "listening on %s\n", &addr); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("the server does not say where it listens: %s", p.Stderr())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return p, addr
}

// A request sent once Pause returned is handled only after Resume. With
// SIGSTOP alone (Pause returning as soon as the signal is sent) some of
// these requests were answered while the process was meant to be stopped.
func TestPausedProcessAnswersOnlyAfterResume(t *testing.T) {
	p, addr := startServer(t)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 100 {
		p.Pause(t, time.Minute)
		answer := make(chan string, 1)
		go func() {
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				answer <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			answer <- string(b)
		}()
		// Time for a process that was not really stopped to answer.
		time.Sleep(10 * time.Millisecond)
		resumed := time.Now()
		p.Resume(t)
		got := <-answer
		at, err := strconv.ParseInt(got, 10, 64)
		if err != nil {
			t.Fatalf("try %d: %s", i, got)
		}
		if handled := time.Unix(0, at); handled.Before(resumed) {
			t.Fatalf("try %d: the paused process handled a request at %s, %s before it was resumed",
				i, handled.Format(time.RFC3339Nano), resumed.Sub(handled))
		}
	}
}

func TestListensNamesTheProcessThatServesAnAddress(t *testing.T) {
	a, addrA := startServer(t)
	b, addrB := startServer(t)
	for _, tc := range []struct {
		p    *Proc
		addr string
		want bool
	}{{a, addrA, true}, {a, addrB, false}, {b, addrB, true}, {b, addrA, false}} {
		got, err := tc.p.Listens(tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("pid %d Listens(%s) = %v, %v; want %v", tc.p.Cmd.Process.Pid, tc.addr, got, err, tc.want)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := l.Addr().String()
	l.Close()
	if got, err := a.Listens(free); err == nil || got {
		t.Errorf("Listens(%s), where nothing listens = %v, %v; want an error", free, got, err)
	}
}
