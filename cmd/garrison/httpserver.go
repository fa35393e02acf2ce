package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"
)

// httpSettings bound what a slow or stalled client can hold, and turn on
// TLS for the API.
type httpSettings struct {
	readTimeout  time.Duration
	writeTimeout time.Duration
	idleTimeout  time.Duration
	tlsCert      string
	tlsKey       string
}

func (s *httpSettings) register(fs *flag.FlagSet) {
	fs.DurationVar(&s.readTimeout, "read-timeout", 30*time.Second, "longest time to read a request, headers and body: a stalled upload is cut after it")
	fs.DurationVar(&s.writeTimeout, "write-timeout", time.Minute, "longest time to answer a request (the /v2/events stream is exempt; each of its writes has its own deadline)")
	fs.DurationVar(&s.idleTimeout, "idle-timeout", 2*time.Minute, "how long an idle keep-alive connection is kept open")
	fs.StringVar(&s.tlsCert, "tls-cert", "", "PEM certificate (chain) of the API; with --tls-key the API serves HTTPS only")
	fs.StringVar(&s.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
}

func (s *httpSettings) validate() error {
	switch {
	case (s.tlsCert == "") != (s.tlsKey == ""):
		return errors.New("--tls-cert and --tls-key go together: set both or neither")
	case s.readTimeout <= 0 || s.writeTimeout <= 0 || s.idleTimeout <= 0:
		return errors.New("--read-timeout, --write-timeout and --idle-timeout must be positive")
	}
	return nil
}

// server builds the API's http.Server. Header reads get at most 10 s (or
// the read timeout if shorter), so a client trickling headers is cut early.
func (s *httpSettings) server(h http.Handler) (*http.Server, error) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(10*time.Second, s.readTimeout),
		ReadTimeout:       s.readTimeout,
		WriteTimeout:      s.writeTimeout,
		IdleTimeout:       s.idleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	if s.tlsCert != "" {
		// Loaded now, so that a wrong file fails at start with its name.
		pair, err := tls.LoadX509KeyPair(s.tlsCert, s.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	}
	return srv, nil
}

// serve runs srv on l, over TLS when it has a certificate.
func serve(srv *http.Server, l net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(l, "", "")
	}
	return srv.Serve(l)
}
