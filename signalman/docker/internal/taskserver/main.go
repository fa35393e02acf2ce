// Command taskserver is the program the Docker driver's test images run: a
// static binary that serves HTTP on 127.0.0.1:$PORT0 (any free port when
// PORT0 is unset) with
//
//	GET /     "ok"
//	GET /env  its environment, as a JSON object
//	GET /args its argv after the program name, as a JSON array
//
// On SIGTERM it exits 0 at once, or, with -ignore-term, ignores the signal
// so only SIGKILL ends it. As PID 1 in a container it gets no default
// signal handling, so both behaviours are explicit.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ignoreTerm := flag.Bool("ignore-term", false, "ignore SIGTERM: only SIGKILL stops the server")
	flag.String("marker", "", "a word /args reports with the rest of argv; lets tests see how argv arrived")
	exists := flag.String("exists", "", "exit 0 when this path exists, else 1: a command tests run inside the container with docker exec")
	flag.Parse()
	if *exists != "" {
		if _, err := os.Stat(*exists); err != nil {
			fmt.Println("missing:", err)
			os.Exit(1)
		}
		return
	}

	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	} else {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
		go func() {
			<-term
			os.Exit(0)
		}()
	}

	addr := "127.0.0.1:" + os.Getenv("PORT0")
	if os.Getenv("PORT0") == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "taskserver:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, _ *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		writeJSON(w, env)
	})
	mux.HandleFunc("GET /args", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, os.Args[1:]) })
	// /self reports who the process runs as and what it can see: tests of
	// user, volumes and read-only roots read it.
	mux.HandleFunc("GET /self", func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{"uid": os.Getuid(), "gid": os.Getgid()}
		if p := r.URL.Query().Get("read"); p != "" {
			b, err := os.ReadFile(p)
			out["read"], out["readError"] = string(b), errString(err)
		}
		if p := r.URL.Query().Get("write"); p != "" {
			out["writeError"] = errString(os.WriteFile(p, []byte("x"), 0o644))
		}
		writeJSON(w, out)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "taskserver:", err)
		os.Exit(1)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "taskserver: write response:", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
