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
	flag.Parse()

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
