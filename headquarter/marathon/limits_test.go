package marathon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/headquarter/marathon"
	"github.com/garrisonhq/garrison/headquarter/scheduler"
)

// expectShaped fails unless r has status want and Marathon's error shape
// with a detail at path.
func expectShaped(t *testing.T, r *response, want int, path, what string) {
	t.Helper()
	r.expect(t, want, what)
	var e errorBody
	r.decode(t, &e)
	if e.Message == "" || !e.has(path) {
		t.Errorf("%s: body %s: want a message and a detail at %s", what, r.body, path)
	}
}

// Issue 10: instances: 2147483647 answered 201 and garrison ran out of
// memory; now the per-app limit refuses it, on create and on update.
func TestHugeInstancesAre422(t *testing.T) {
	s := newStack(t)
	expectShaped(t, s.do("POST", "/v2/apps", `{"id":"/huge","cmd":"sleep 100","instances":2147483647,"portDefinitions":[]}`), 422, "/instances", "POST huge")
	s.deploy("POST", "/v2/apps", map[string]any{"id": "/small", "cmd": "sleep 100", "instances": 0}, 201)
	expectShaped(t, s.do("PUT", "/v2/apps/small", `{"instances":2147483647}`), 422, "/instances", "PUT huge")
	expectShaped(t, s.do("PATCH", "/v2/apps", `[{"id":"/small","instances":1001}]`), 422, "/(0)/instances", "PATCH huge")
	if n := s.app("/small").Instances; n != 0 {
		t.Errorf("instances %d after refused updates, want 0", n)
	}
}

func TestTotalInstanceLimit(t *testing.T) {
	s := newStack(t, func(c *marathon.Config) { c.MaxInstancesTotal = 4 })
	s.deploy("POST", "/v2/apps", map[string]any{"id": "/a", "cmd": "sleep 100", "instances": 3, "portDefinitions": []any{}}, 201)
	expectShaped(t, s.do("POST", "/v2/apps", `{"id":"/b","cmd":"sleep 100","instances":2,"portDefinitions":[]}`), 422, "/instances", "second app over the total")
	s.deploy("POST", "/v2/apps", map[string]any{"id": "/b", "cmd": "sleep 100", "instances": 1, "portDefinitions": []any{}}, 201)
	expectShaped(t, s.do("PUT", "/v2/apps", `[{"id":"/a","instances":2},{"id":"/b","instances":3}]`), 422, "/", "PUT /v2/apps over the total")
	// Moving instances between apps within the total is fine.
	s.deploy("PUT", "/v2/apps", []map[string]any{{"id": "/a", "instances": 1}, {"id": "/b", "instances": 3}}, 200)
}

// Issue 10: PUT /v2/apps with more apps than one transaction takes
// answered 500, which makes go-marathon mark the member down.
func TestPutAppsOverChangeLimitIs422(t *testing.T) {
	s := newStack(t)
	var items []string
	for i := range 61 {
		items = append(items, fmt.Sprintf(`{"id":"/many/a%d","cmd":"sleep 100","instances":0}`, i))
	}
	expectShaped(t, s.do("PUT", "/v2/apps", "["+strings.Join(items, ",")+"]"), 422, "/", "61 apps")
}

// Issue 10: an app JSON between about 1 MB and the body limit made etcd
// refuse the transaction (request too large), answered 500.
func TestAppsEtcdCannotStoreAre413(t *testing.T) {
	s := newStack(t)
	big := strings.Repeat("x", 1<<20+200<<10)
	expectShaped(t, s.do("POST", "/v2/apps", fmt.Sprintf(`{"id":"/big","cmd":"sleep 100","instances":0,"labels":{"blob":%q}}`, big)), 413, "/", "1.2 MB app")

	// A body under the limit that normalizes to more than etcd takes:
	// every {} health check grows to Marathon's full default form.
	checks := strings.Repeat(`{"protocol":"TCP","port":1},`, 17000)
	body := `{"id":"/grown","cmd":"sleep 100","instances":0,"healthChecks":[` + strings.TrimSuffix(checks, ",") + `]}`
	expectShaped(t, s.do("POST", "/v2/apps", body), 413, "/", "app that grows past etcd's limit")

	// The largest body the limit lets through is stored, and updated.
	labels := strings.Repeat("y", 400<<10)
	s.deploy("POST", "/v2/apps", map[string]any{"id": "/fits", "cmd": "sleep 100", "instances": 0, "labels": map[string]string{"blob": labels}}, 201)
	s.deploy("PUT", "/v2/apps/fits", map[string]any{"labels": map[string]string{"blob": labels + "z"}}, 200)
	s.do("GET", "/v2/apps/nothere", nil).expect(t, 404, "still serving")
}

// An etcd with a smaller request limit than garrison was told still gets
// Marathon's 413, not a 500.
func TestEtcdRequestTooLargeMapsTo413(t *testing.T) {
	s := newStack(t, func(c *marathon.Config) { c.EtcdRequestBytes = 64 << 20; c.MaxBodyBytes = 8 << 20 })
	// Written twice: about 1.6 MB reaches etcd, which refuses it (request
	// too large); 2.5 MB the client refuses to send (resource exhausted).
	for _, size := range []int{800 << 10, 1<<20 + 200<<10} {
		big := strings.Repeat("x", size)
		expectShaped(t, s.do("POST", "/v2/apps", fmt.Sprintf(`{"id":"/big","cmd":"sleep 100","instances":0,"labels":{"blob":%q}}`, big)), 413, "/", fmt.Sprintf("%d bytes", size))
		s.do("GET", "/v2/apps/big", nil).expect(t, 404, "refused app")
	}
}

// Issue 10: wrong methods answer 405 (with Allow), DELETE /v2/apps too
// (it was redirected to /v2/apps/ with 307).
func TestWrongMethodsAre405(t *testing.T) {
	s := newStack(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct{ method, path, allow string }{
		{"DELETE", "/v2/apps", "GET, PATCH, POST, PUT"},
		{"POST", "/v2/tasks", "GET"},
		{"GET", "/v2/tasks/delete", "POST"},
		{"PUT", "/v2/info", "GET"},
		{"POST", "/v2/deployments", "GET"},
		{"GET", "/v2/deployments/abc", "DELETE"},
		{"POST", "/v2/leader", "DELETE, GET"},
		{"DELETE", "/v2/groups", "GET"},
		{"GET", "/v2/apps/x/restart", "POST"},
		{"POST", "/v2/apps/x/versions", "GET"},
	} {
		req, err := http.NewRequest(tc.method, s.url+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Message string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 405 || err != nil || body.Message == "" || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: status %d, Allow %q, body %+v (%v); want 405, Allow %q and a message",
				tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), body, err, tc.allow)
		}
	}
}

// Issue 10: an unknown status filter is a 400, not an empty list.
func TestUnknownTaskStatusIs400(t *testing.T) {
	s := newStack(t)
	s.do("GET", "/v2/tasks?status=runing", nil).expect(t, 400, "status=runing")
	s.do("GET", "/v2/tasks?status[]=running&status[]=bogus", nil).expect(t, 400, "status[]=bogus")
	s.do("GET", "/v2/tasks?status=running&status=STAGING", nil).expect(t, 200, "running and staging")
}

// gatheringDeploys holds each Deploy until all n have come in (or a short
// while passes), forcing the race between checking the total limit and
// deploying that concurrent writes would otherwise hit only by chance.
type gatheringDeploys struct {
	marathon.Scheduler
	mu      sync.Mutex
	arrived int
	all     chan struct{}
	n       int
}

func (g *gatheringDeploys) Deploy(ctx context.Context, changes []scheduler.Change, force bool, source string) (*scheduler.DeployResult, error) {
	g.mu.Lock()
	if g.arrived++; g.arrived == g.n {
		close(g.all)
	}
	g.mu.Unlock()
	select {
	case <-g.all:
	case <-time.After(200 * time.Millisecond): // writes that take turns never all arrive
	}
	return g.Scheduler.Deploy(ctx, changes, force, source)
}

// Concurrent creates cannot all pass the total limit on the same count.
func TestTotalInstanceLimitUnderConcurrentWrites(t *testing.T) {
	s := newStack(t, func(c *marathon.Config) {
		c.MaxInstancesTotal = 3
		c.Scheduler = &gatheringDeploys{Scheduler: c.Scheduler, all: make(chan struct{}), n: 12}
	})
	codes := make(chan int, 12)
	for i := range 12 {
		go func() {
			r := s.do("POST", "/v2/apps", fmt.Sprintf(`{"id":"/c%d","cmd":"sleep 100","instances":1,"portDefinitions":[]}`, i))
			codes <- r.status
		}()
	}
	created := 0
	for range 12 {
		switch c := <-codes; c {
		case 201:
			created++
		case 422:
		default:
			t.Errorf("status %d", c)
		}
	}
	if created != 3 {
		t.Errorf("%d apps of 1 instance created under a total limit of 3", created)
	}
}
