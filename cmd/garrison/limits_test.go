package main

import (
	"encoding/json"
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

// Cron floors are shown before they arrive: GET /api/v1/schedules lists the
// windows open now and those coming.
func TestUpShowsCronFloorsAhead(t *testing.T) {
	srv := etcdtest.New(t)
	api := freeAddrs(t, 1)[0]
	startGarrison(t, "up", "--data-dir", t.TempDir(), "--addr", api, "--etcd", strings.Join(srv.Endpoints, ","))
	base := "http://" + api
	waitHTTP(t, base+"/ping", 60*time.Second)
	rules := "rules:\n  - app: /cron/a\n    min: 1\n    max: 5\n    up: { qps: 10 }\n    schedules:\n      - cron: \"0 * * * *\"\n        for: 30m\n        min: 3\n"
	if code, body := call(t, http.DefaultClient, "PUT", base+"/api/v1/rules", rules, ""); code != http.StatusOK {
		t.Fatalf("PUT rules: %d %s", code, body)
	}
	before := time.Now()
	code, body := call(t, http.DefaultClient, "GET", base+"/api/v1/schedules?within=3h", "", "")
	after := time.Now()
	if code != http.StatusOK {
		t.Fatalf("GET schedules: %d %s", code, body)
	}
	var out struct {
		Schedules []struct {
			App, Cron  string
			Min        int
			Start, End time.Time
			Active     bool
		}
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	if n := len(out.Schedules); n < 3 || n > 4 {
		t.Fatalf("hourly 30-minute windows over 3 hours: %d, want 3 or 4: %s", n, body)
	}
	for i, w := range out.Schedules {
		if w.App != "/cron/a" || w.Min != 3 || w.End.Sub(w.Start) != 30*time.Minute || w.Start.Minute() != 0 {
			t.Errorf("window %d = %+v", i, w)
		}
		if i > 0 && !w.Start.After(out.Schedules[i-1].Start) {
			t.Errorf("windows out of order: %s", body)
		}
		if w.End.Before(before) || w.Start.After(after.Add(3*time.Hour)) {
			t.Errorf("window %d outside [now, now+3h]: %+v", i, w)
		}
		if w.Active != !w.Start.After(after) && w.Start.After(before) == w.Start.After(after) {
			t.Errorf("window %d active = %v: %+v", i, w.Active, w)
		}
	}
	if code, _ := call(t, http.DefaultClient, "GET", base+"/api/v1/schedules?within=forever", "", ""); code != http.StatusBadRequest {
		t.Errorf("within=forever: %d, want 400", code)
	}
}
