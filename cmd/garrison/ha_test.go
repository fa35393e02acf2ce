package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// answer is one HTTP exchange with a garrison.
type answer struct {
	status int
	header http.Header
	body   map[string]any
}

// askClient bounds each exchange: a stopped garrison never answers.
var askClient = &http.Client{Timeout: 15 * time.Second}

func ask(t *testing.T, method, url, body string) (answer, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := askClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	json.Unmarshal(b, &a.body)
	return a, nil
}

// TestUpElectsOneLeaderOnSharedEtcd runs two `garrison up` on one external
// etcd: one leads, the other answers with the leader's answers; killed
// with -9, the leader is replaced within the election TTL and nothing
// acknowledged is lost; the new leader abdicating stops it, as Marathon.
func TestUpElectsOneLeaderOnSharedEtcd(t *testing.T) {
	etcd := etcdtest.New(t)
	t.Setenv("GARRISON_ETCD", strings.Join(etcd.Endpoints, ","))
	addrs := freeAddrs(t, 2)
	procs := map[string]*garrisonProc{}
	for _, a := range addrs {
		procs[a] = startGarrison(t, "up", "--addr", a, "--data-dir", t.TempDir(), "--leader-ttl", "3s")
	}
	for _, a := range addrs {
		waitHTTP(t, "http://"+a+"/ping", 30*time.Second)
	}
	var leaderAddr string
	poll.Until(t, time.Minute, "both name one leader", func() (bool, string) {
		var names []string
		for _, a := range addrs {
			ans, err := ask(t, "GET", "http://"+a+"/v2/leader", "")
			if err != nil || ans.status != 200 {
				return false, a + " has no leader yet"
			}
			names = append(names, ans.body["leader"].(string))
		}
		leaderAddr = names[0]
		return names[0] == names[1], strings.Join(names, " vs ")
	})
	follower := addrs[0]
	if follower == leaderAddr {
		follower = addrs[1]
	}

	// A write sent to the follower is the leader's: it answers through it.
	created, err := ask(t, "POST", "http://"+follower+"/v2/apps", `{"id":"/ha/web","cmd":"sleep 600","instances":0}`)
	if err != nil || created.status != 201 {
		t.Fatalf("create through the follower: %v %+v", err, created)
	}
	if via, l := created.header.Get("X-Marathon-Via"), created.header.Get("X-Marathon-Leader"); via != "1.1 "+follower || l != "http://"+leaderAddr {
		t.Fatalf("headers of a proxied answer: via %q leader %q", via, l)
	}

	killed := time.Now()
	procs[leaderAddr].Cmd.Process.Signal(syscall.SIGKILL)
	procs[leaderAddr].WaitExit(t, 10*time.Second)
	poll.Until(t, time.Minute, "the follower takes over", func() (bool, string) {
		ans, err := ask(t, "GET", "http://"+follower+"/v2/leader", "")
		if err != nil || ans.status != 200 {
			return false, "no leader"
		}
		return ans.body["leader"] == follower && ans.header.Get("X-Marathon-Via") == "", ans.body["leader"].(string)
	})
	t.Logf("takeover after kill -9 of the leading garrison up: %s (leader TTL 3s)", time.Since(killed).Round(time.Millisecond))
	app, err := ask(t, "GET", "http://"+follower+"/v2/apps/ha/web", "")
	if err != nil || app.status != 200 {
		t.Fatalf("the app created through the old leader after the takeover: %v %+v", err, app)
	}

	// DELETE /v2/leader: the leader steps down, and stops as Marathon does.
	ab, err := ask(t, "DELETE", "http://"+follower+"/v2/leader", "")
	if err != nil || ab.status != 200 || ab.body["message"] != "Leadership abdicated" {
		t.Fatalf("abdicate: %v %+v", err, ab)
	}
	if err := procs[follower].WaitExit(t, 30*time.Second); err == nil || !strings.Contains(procs[follower].Stderr(), "lost leadership") {
		t.Fatalf("after abdicating: exit %v; stderr:\n%s", err, procs[follower].Stderr())
	}
}
