// Package leaderproxy makes a headquarter that does not lead answer with
// the leader's answer, as Marathon's LeaderProxyFilter does: only the
// leader's scheduler holds the live state, so a follower forwards each API
// request to the leader (streams too: /v2/events) and passes the answer
// back, adding X-Marathon-Via. While leadership changes hands it holds the
// request back (10 x 250 ms), then answers 503 "Could not determine the
// current leader". A leader that does not answer within 10 s (paused, hung)
// gets 504, as Marathon's proxy read timeout gives.
package leaderproxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Marathon's header and messages (JavaUrlConnectionRequestForwarder).
const (
	ViaHeader         = "X-Marathon-Via"
	msgNoLeader       = "Could not determine the current leader"
	msgLoop           = "Detected proxying loop."
	msgRefused        = "Connection to leader refused."
	msgTimeout        = "Connection to leader timed out."
	msgBadConnection  = "Failed to successfully establish a connection to the leader."
	defaultTries      = 10
	defaultRetryPause = 250 * time.Millisecond
	// DefaultResponseTimeout is Marathon's leader_proxy_read_timeout.
	DefaultResponseTimeout = 10 * time.Second
)

// Leadership is what the proxy asks (a *leader.Elector answers).
type Leadership interface {
	Leader() string // the leader's host:port, "" when unknown
	IsLeader() bool
}

// Config sets the proxy up.
type Config struct {
	Leadership Leadership
	// Self is this headquarter's advertised host:port, the election value.
	Self string
	// Scheme of the leader's URL: "http" (default) or "https".
	Scheme string
	// Transport reaches the leader (http.DefaultTransport's settings when
	// nil; set its TLS config for https).
	Transport http.RoundTripper
	// ResponseTimeout bounds the wait for the leader's response headers
	// on an *http.Transport (DefaultResponseTimeout): a paused or hung
	// leader gets 504 "Connection to leader timed out." instead of holding
	// the request forever. Event streams are not cut: only their headers
	// are awaited.
	ResponseTimeout time.Duration
	// Prefixes are the paths proxied (default /v2/ and /api/); the rest
	// (/ping, /metrics, the console's files) is this replica's own.
	Prefixes []string
	// Tries and RetryPause bound the wait for a leader (10 x 250 ms).
	Tries      int
	RetryPause time.Duration
	Logger     *slog.Logger
}

// New returns a handler that serves requests with next while this replica
// leads (and for paths outside Prefixes), and proxies them otherwise.
func New(cfg Config, next http.Handler) http.Handler {
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.ResponseTimeout <= 0 {
		cfg.ResponseTimeout = DefaultResponseTimeout
	}
	if t, ok := cfg.Transport.(*http.Transport); ok && t.ResponseHeaderTimeout == 0 {
		t = t.Clone()
		t.ResponseHeaderTimeout = cfg.ResponseTimeout
		cfg.Transport = t
	}
	if cfg.Prefixes == nil {
		cfg.Prefixes = []string{"/v2/", "/api/"}
	}
	if cfg.Tries <= 0 {
		cfg.Tries = defaultTries
	}
	if cfg.RetryPause <= 0 {
		cfg.RetryPause = defaultRetryPause
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	via := "1.1 " + cfg.Self
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		path := req.URL.Path
		if !slices.ContainsFunc(cfg.Prefixes, func(p string) bool { return strings.HasPrefix(path, p) }) {
			next.ServeHTTP(w, req)
			return
		}
		leader, ok := waitLeader(req.Context(), cfg)
		if !ok {
			fail(w, http.StatusServiceUnavailable, msgNoLeader)
			return
		}
		if leader == "" { // this replica leads
			next.ServeHTTP(w, req)
			return
		}
		if slices.Contains(req.Header.Values(ViaHeader), via) {
			fail(w, http.StatusBadGateway, msgLoop)
			return
		}
		target := &url.URL{Scheme: cfg.Scheme, Host: leader}
		rp := &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(target)
				r.Out.Header.Add(ViaHeader, via)
				r.SetXForwarded()
			},
			Transport:     cfg.Transport,
			FlushInterval: -1, // event streams
			ModifyResponse: func(resp *http.Response) error {
				resp.Header.Add(ViaHeader, via)
				return nil
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				cfg.Logger.Warn("proxy to the leader failed", "leader", leader, "path", r.URL.Path, "error", err)
				status, msg := http.StatusBadGateway, msgBadConnection
				var nerr net.Error
				switch {
				case errors.As(err, &nerr) && nerr.Timeout():
					status, msg = http.StatusGatewayTimeout, msgTimeout
				case isRefused(err):
					msg = msgRefused
				}
				fail(w, status, msg)
			},
		}
		rp.ServeHTTP(w, req)
	})
}

// waitLeader returns "" when this replica leads, the leader's address when
// another does, and false when no leader showed up in time.
func waitLeader(ctx context.Context, cfg Config) (string, bool) {
	for i := range cfg.Tries {
		if cfg.Leadership.IsLeader() {
			return "", true
		}
		if l := cfg.Leadership.Leader(); l != "" && l != cfg.Self {
			return l, true
		}
		if i == cfg.Tries-1 {
			break
		}
		select {
		case <-ctx.Done():
			return "", false
		case <-time.After(cfg.RetryPause):
		}
	}
	return "", false
}

func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// fail answers in Marathon's {"message"} shape.
func fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}
