package nomadtest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
)

// Proxy is an HTTP proxy before an agent that a test can break: Down makes
// it answer 503 (Nomad unreachable), and its server's
// CloseClientConnections breaks open event streams.
type Proxy struct {
	*httptest.Server
	// Down, when true, refuses every request with 503.
	Down atomic.Bool
	// Requests counts every request; Refused those refused while Down.
	Requests, Refused atomic.Int64
}

// NewProxy starts a proxy before the agent, closed at the test's end (after
// the test's later cleanups, such as cancelling a watch, so that Close does
// not wait on an open stream).
func (a *Agent) NewProxy(t testing.TB) *Proxy {
	t.Helper()
	target, err := url.Parse(a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1 // stream events as they come
	// A stopped agent is what some tests want: no line per refused dial.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p := &Proxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Requests.Add(1)
		if p.Down.Load() {
			p.Refused.Add(1)
			http.Error(w, "nomad is down", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}
