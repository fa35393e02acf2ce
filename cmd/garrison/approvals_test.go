package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/internal/dockertest"
)

// TestApprovalsWithSeveralUsers: garrison with an htpasswd users file
// (bcrypt) next to --auth-user and the token. Production needs an
// approval: the committer (mei) is refused with 403, a user who is no
// approver (sam) too, a wrong password is 401; lin's approval is recorded
// as the authenticated user whatever the body claims, and the CLI and
// the release history show it.
func TestApprovalsWithSeveralUsers(t *testing.T) {
	docker := dockertest.Client(t)
	const serviceImage = "garrison-test/testserver:approvals"
	dockertest.BuildGoImage(t, docker, serviceImage, dockertest.TestServerPackage)

	var users strings.Builder
	for _, u := range []string{"mei", "lin", "sam"} {
		h, err := bcrypt.GenerateFromPassword([]byte(u+"-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		users.WriteString(u + ":" + string(h) + "\n")
	}
	usersFile := filepath.Join(t.TempDir(), "users")
	os.WriteFile(usersFile, []byte(users.String()), 0o600)
	s := startCLIStack(t, "--auth-users-file", usersFile, "--ci-approvers", "lin,mei")
	const app = "/approvals/shop"
	t.Cleanup(func() { removeAppContainers(docker, app) })

	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{s.etcd}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	if err := deploy.NewStore(etcd).Put(context.Background(), deploy.Release{App: app, Version: "v1", Image: serviceImage,
		Revision: "1111111111111111", Committer: "Mei Chen <mei@example.com>", Project: "shop", RunID: "shop.1", Created: time.Now().UTC(),
		Passed: true, Environments: []string{"alpha", "production"}, NeedsApproval: []string{"production"},
		Definition: map[string]any{"instances": 1, "cpus": 0.01, "mem": 16}}); err != nil {
		t.Fatal(err)
	}

	// as runs the CLI as a user of the file (no token).
	as := func(user, password string, args ...string) cliResult {
		t.Helper()
		env := slices.DeleteFunc(s.env(), func(kv string) bool { return strings.HasPrefix(kv, "GARRISON_TOKEN=") })
		return s.runEnv("", append(env, "GARRISON_USER="+user, "GARRISON_PASSWORD="+password), args...)
	}
	post := func(user, password, path string, body any) (int, string) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+s.addr+path, bytes.NewReader(b))
		req.SetBasicAuth(user, password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	change := map[string]string{"app": app, "version": "v1", "environment": "production"}

	if out := s.ok("releases", app); rowOf(t, out, 0, "v1")[4] != "production: needed" {
		t.Fatalf("releases before the approval:\n%s", out)
	}
	if r := as("mei", "mei-pw", "releases", "promote", app, "v1", "production"); r.code != 1 || !strings.Contains(r.stderr, "needs an approval") {
		t.Fatalf("promote unapproved: %s", r)
	}
	if r := as("mei", "mei-pw", "releases", "approve", app, "v1", "production"); r.code != 1 || !strings.Contains(r.stderr, "403") ||
		!strings.Contains(r.stderr, "mei committed release v1") {
		t.Fatalf("approval by the committer: %s", r)
	}
	if code, body := post("sam", "sam-pw", "/api/v1/releases/approve", change); code != http.StatusForbidden ||
		!strings.Contains(body, "sam may not approve releases: the approvers are lin, mei") {
		t.Fatalf("approval by sam, no approver: %d %s", code, body)
	}
	if code, body := post("lin", "mei-pw", "/api/v1/releases/approve", change); code != http.StatusUnauthorized {
		t.Fatalf("approval with a wrong password: %d %s", code, body)
	}
	// The body's "by" is no identity when there are credentials.
	claim := map[string]string{"app": app, "version": "v1", "environment": "production", "by": "mei"}
	if code, body := post("lin", "lin-pw", "/api/v1/releases/approve", claim); code != 200 || !strings.Contains(body, `"by":"lin"`) {
		t.Fatalf("approval by lin: %d %s", code, body)
	}
	if r := as("lin", "lin-pw", "releases", "approve", app, "v1", "production"); r.code != 1 || !strings.Contains(r.stderr, "already approved for production by lin") {
		t.Fatalf("second approval: %s", r)
	}
	if out := s.ok("releases", app); rowOf(t, out, 0, "v1")[4] != "production: lin" {
		t.Fatalf("releases after the approval:\n%s", out)
	}
	if out := as("mei", "mei-pw", "releases", "promote", app, "v1", "production"); out.code != 0 || out.stdout != "production now runs v1 of "+app+"\n" {
		t.Fatalf("promote by mei after lin's approval: %s", out)
	}
	out := s.ok("releases", app)
	if row := rowOf(t, out, 0, "production"); row[2] != "v1" || row[5] != "mei, approved by lin" {
		t.Fatalf("production row %v:\n%s", row, out)
	}
	var doc struct {
		Releases     []deploy.Release     `json:"releases"`
		Environments []deploy.Environment `json:"environments"`
	}
	s.okJSON(&doc, "releases", app)
	if len(doc.Releases) != 1 || len(doc.Releases[0].Approvals) != 1 || doc.Releases[0].Approvals[0].By != "lin" ||
		len(doc.Environments) != 1 || len(doc.Environments[0].History) != 1 ||
		doc.Environments[0].History[0].By != "mei" || doc.Environments[0].History[0].ApprovedBy != "lin" {
		t.Fatalf("releases -o json: %+v", doc)
	}
	s.ok("apps", "rm", app, "--wait", "--force")
}
