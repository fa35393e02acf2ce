// Command testserver is the program test images run: a static binary that
// serves HTTP on 127.0.0.1:$PORT (or $PORT0, or the -port flag) and answers
// 200 on /.
//
// Health is switchable so tests can drive a Docker HEALTHCHECK: GET /health
// answers 200 while healthy and 503 otherwise; POST /healthy and POST
// /unhealthy flip it; START_UNHEALTHY=1 starts unhealthy. GET /id answers
// $TESTSERVER_ID. An image FROM
// scratch has no shell or curl, so the binary is its own HEALTHCHECK
// command: `testserver -healthcheck` probes /health and exits 0 or 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	healthcheck := flag.Bool("healthcheck", false, "probe the running server's /health and exit 0 when healthy")
	port := ""
	flag.StringVar(&port, "port", "", "port to serve on (default $PORT, else $PORT0)")
	grace := flag.Duration("grace", 0, "keep serving this long after SIGTERM, as a server draining requests would")
	flag.Parse()
	if port == "" {
		port = os.Getenv("PORT")
	}
	if port == "" {
		port = os.Getenv("PORT0")
	}
	if port == "" {
		fmt.Fprintln(os.Stderr, "testserver: set PORT or PORT0")
		os.Exit(2)
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	if *healthcheck {
		if err := probe(addr); err != nil {
			fmt.Fprintln(os.Stderr, "testserver: unhealthy:", err)
			os.Exit(1)
		}
		return
	}
	// Known output for the tests of task logs: numbered lines on stdout,
	// then one on stderr.
	if n, _ := strconv.Atoi(os.Getenv("TESTSERVER_LOG_LINES")); n > 0 {
		for i := 1; i <= n; i++ {
			fmt.Printf("testserver log line %d\n", i)
		}
		fmt.Fprintln(os.Stderr, "testserver stderr line")
	}
	// A server that is slow to start: it listens only after this long.
	if d, err := time.ParseDuration(os.Getenv("TESTSERVER_LISTEN_AFTER")); err == nil {
		time.Sleep(d)
	}
	// PID 1 in a container gets no default signal handling: without this,
	// `docker stop` would wait for its timeout and then SIGKILL.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, addr, os.Getenv("START_UNHEALTHY") != "1", *grace); err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, addr string, healthy bool, grace time.Duration) error {
	var ok atomic.Bool
	ok.Store(healthy)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	// Which server this is: a test tells its own container from whatever
	// else may hold the port (dockertest.RunServing).
	mux.HandleFunc("GET /id", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, os.Getenv("TESTSERVER_ID")) })
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if !ok.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "healthy")
	})
	mux.HandleFunc("POST /healthy", func(w http.ResponseWriter, _ *http.Request) { ok.Store(true) })
	mux.HandleFunc("POST /unhealthy", func(w http.ResponseWriter, _ *http.Request) { ok.Store(false) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-time.After(grace):
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shut down %s: %w", addr, err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", addr, err)
	}
	return nil
}

func probe(addr string) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /health: %s", resp.Status)
	}
	return nil
}
