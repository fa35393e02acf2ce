// Command echo is the example service: an HTTP echo with a Prometheus
// request counter that registers itself in garrison's registry the way every
// service of the origin design does. It takes the port garrison hands it in
// PORT0 or, started by hand, a free port of its own; it registers once it
// listens, and on SIGTERM it deregisters first, drains, then stops.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/garrisonhq/garrison/registrar"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	name := fs.String("name", envOr("SERVICE_NAME", "echo"), "service name to register under /service/<name>/")
	etcd := fs.String("etcd", envOr("GARRISON_ETCD", "http://127.0.0.1:2379"), "comma-separated etcd client URLs")
	host := fs.String("host", envOr("HOST", "127.0.0.1"), "address to listen on and to advertise")
	ttl := fs.Duration("ttl", registrar.DefaultTTL, "registration lease TTL")
	drain := fs.Duration("drain", time.Second, "time between deregistering and stopping, for callers to notice")
	register := fs.Bool("register", true, "register in etcd; false when garrison registers the task itself")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	listener, err := listen(*host)
	if err != nil {
		return err
	}
	defer listener.Close()
	instanceID := envOr("MESOS_TASK_ID", fmt.Sprintf("%s-%d", hostname(), os.Getpid()))
	addr := net.JoinHostPort(*host, strconv.Itoa(registrar.Port(listener)))

	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "echo_requests_total",
		Help: "Requests served by the echo service, by status code and method.",
	}, []string{"code", "method"})
	reg.MustRegister(requests)
	// Start the counter at zero, as Prometheus advises: an idle instance
	// then shows a rate of 0 instead of no series at all, and an
	// autoscaler can tell idle from missing.
	requests.WithLabelValues("200", "get")
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("/", promhttp.InstrumentHandlerCounter(requests, echoHandler(*name, instanceID)))
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- server.Serve(listener) }()

	deregister := func(context.Context) error { return nil }
	if *register {
		cli, err := registrar.NewClient(strings.Split(*etcd, ","))
		if err != nil {
			return err
		}
		defer cli.Close()
		// Not cut short by SIGTERM: a registration interrupted half-way
		// would leave its key behind until the TTL ran out; finish it and
		// then stop the graceful way below.
		registerCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		registration, err := registrar.Register(registerCtx, cli, *name, instanceID,
			registrar.Endpoint{Addr: addr, Metadata: map[string]string{"pid": strconv.Itoa(os.Getpid())}},
			registrar.WithTTL(*ttl), registrar.WithLogger(logger))
		if err != nil {
			return err
		}
		deregister = registration.Close
		logger.Info("serving and registered", "addr", addr, "key", registration.Key())
	} else {
		logger.Info("serving", "addr", addr)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		deregister(context.Background())
		return fmt.Errorf("serve %s: %w", addr, err)
	}
	// Deregister first, so callers stop choosing this instance, then give
	// requests already on their way time to arrive before shutting down.
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelClose()
	if err := deregister(closeCtx); err != nil {
		logger.Warn("deregister", "error", err)
	}
	if *register {
		logger.Info("deregistered; draining", "for", *drain)
		time.Sleep(*drain)
	}
	if err := server.Shutdown(closeCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// listen takes the port garrison assigned (PORT0) or a free one.
func listen(host string) (net.Listener, error) {
	if port := os.Getenv("PORT0"); port != "" {
		l, err := net.Listen("tcp", net.JoinHostPort(host, port))
		if err != nil {
			return nil, fmt.Errorf("listen on assigned PORT0 %s: %w", port, err)
		}
		return l, nil
	}
	ls, err := registrar.Listen(host, 1)
	if err != nil {
		return nil, err
	}
	return ls[0], nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

func echoHandler(service, instanceID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"service":  service,
			"instance": instanceID,
			"method":   r.Method,
			"path":     r.URL.Path,
			"query":    r.URL.RawQuery,
			"headers":  r.Header,
			"body":     string(body),
		})
	})
}
