// Package pooltest serves garrison's side of a CI runner pool for tests:
// the pool's routes over HTTP on 127.0.0.1, as garrison's API serves them,
// so runners reach it as a runner on another machine would. It serves the
// ci tests and cmd/garrison's alike (ci/internal/citest is out of
// cmd/garrison's reach).
package pooltest

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/ci/pool"
	"github.com/garrisonhq/garrison/headquarter/auth"
)

// Options shape the server as garrison's API would be set up.
type Options struct {
	// Token, when set, is the API token (--auth-token): a call without
	// "Authorization: Bearer <Token>" gets 401, checked as garrison's API
	// checks it.
	Token string
	// Timeout, when set, is the server's read and write timeout.
	Timeout time.Duration
}

// HQ starts garrison's side of the runner pool poolApp; the server goes
// with the test.
func HQ(t testing.TB, cli *clientv3.Client, poolApp string, o Options) *pool.Pool {
	t.Helper()
	// The pool hands runners its own address: the listener comes first.
	srv := httptest.NewUnstartedServer(nil)
	p := pool.New(cli, poolApp, "http://"+srv.Listener.Addr().String())
	h := p.Handler()
	if o.Token != "" {
		cred, routes := auth.Credentials{Token: o.Token}, h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !cred.Allows(r) {
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			routes.ServeHTTP(w, r)
		})
	}
	srv.Config.Handler = h
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = o.Timeout, o.Timeout
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}
