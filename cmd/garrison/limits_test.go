package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/etcdtest"
)

// The per-app instance limit bounds apps and autoscale rules alike: a rule
// cannot scale an app past what the API would refuse.
func TestUpInstanceLimitBoundsRules(t *testing.T) {
	srv := etcdtest.New(t)
	api := freeAddrs(t, 1)[0]
	startGarrison(t, "up", "--data-dir", t.TempDir(), "--addr", api, "--etcd", strings.Join(srv.Endpoints, ","), "--max-instances-per-app", "5")
	base := "http://" + api
	waitHTTP(t, base+"/ping", 60*time.Second)

	code, body := call(t, http.DefaultClient, "POST", base+"/v2/apps", `{"id":"/lim/a","cmd":"sleep 60","instances":6,"cpus":0.1,"mem":16}`, "")
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "/instances") {
		t.Fatalf("6 instances over a limit of 5: %d %s", code, body)
	}
	code, body = call(t, http.DefaultClient, "PUT", base+"/api/v1/rules", "rules:\n  - app: /lim/a\n    min: 1\n    max: 6\n    up: { qps: 10 }\n", "")
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "max") {
		t.Fatalf("a rule with max 6 over a limit of 5: %d %s", code, body)
	}
	code, body = call(t, http.DefaultClient, "PUT", base+"/api/v1/rules", "rules:\n  - app: /lim/a\n    min: 1\n    max: 5\n    up: { qps: 10 }\n", "")
	if code != http.StatusOK {
		t.Fatalf("a rule within the limit: %d %s", code, body)
	}
}
