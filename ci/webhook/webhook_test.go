package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/ci/project"
	"github.com/garrisonhq/garrison/ci/push"
	"github.com/garrisonhq/garrison/ci/webhook"
	"github.com/garrisonhq/garrison/internal/etcdtest"
)

const secret = "It's a Secret to Everybody"

// recorder is the Trigger: it keeps what it was handed.
type recorder struct {
	mu     sync.Mutex
	pushes []push.Push
	fail   error
}

func (r *recorder) Trigger(_ context.Context, p project.Project, ev push.Push) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return "", r.fail
	}
	r.pushes = append(r.pushes, ev)
	return fmt.Sprintf("%s.%d", p.Name, len(r.pushes)), nil
}

func (r *recorder) got() []push.Push {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]push.Push(nil), r.pushes...)
}

type env struct {
	url  string
	rec  *recorder
	proj *project.Store
}

func newEnv(t *testing.T, projects ...project.Project) *env {
	t.Helper()
	cli := etcdtest.New(t).Client(t)
	store := project.NewStore(cli)
	if len(projects) == 0 {
		projects = []project.Project{{Name: "account", Repo: "https://github.com/ktv/account.git", Secret: secret}}
	}
	for _, p := range projects {
		if err := store.Put(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	h := webhook.New(webhook.Config{Projects: store, Trigger: rec, Claims: webhook.NewEtcdClaims(cli, 0), MaxBody: 64 << 10})
	mux := http.NewServeMux()
	mux.Handle("/api/v1/hooks/{provider}", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{url: srv.URL, rec: rec, proj: store}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexMAC(key string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func (e *env) post(t *testing.T, provider, project string, body []byte, headers map[string]string) (int, webhook.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+"/api/v1/hooks/"+provider+"?project="+project, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r webhook.Response
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, r
}

func githubHeaders(body []byte, event, delivery string) map[string]string {
	return map[string]string{
		"X-GitHub-Event":      event,
		"X-GitHub-Delivery":   delivery,
		"X-Hub-Signature-256": "sha256=" + hexMAC(secret, body),
		"User-Agent":          "GitHub-Hookshot/044aadd",
	}
}

func TestGitHubPushIsNormalised(t *testing.T) {
	e := newEnv(t)
	body := fixture(t, "github-push.json")
	code, resp := e.post(t, "github", "account", body, githubHeaders(body, "push", "72d3162e-cc78-11e3-81ab-4c9367dc0958"))
	if code != http.StatusAccepted || resp.Run != "account.1" {
		t.Fatalf("got %d %+v, want 202 with run account.1", code, resp)
	}
	got := e.rec.got()
	if len(got) != 1 {
		t.Fatalf("%d runs triggered, want 1", len(got))
	}
	p := got[0]
	if p.Provider != "github" || p.Delivery != "72d3162e-cc78-11e3-81ab-4c9367dc0958" || p.Ref != "refs/heads/main" ||
		p.Branch() != "main" || p.Before != "6113728f27ae82c7b1a177c8d03f9e96e0adf246" ||
		p.After != "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c" || p.RepoURL != "https://github.com/ktv/account.git" ||
		p.RepoName != "ktv/account" || p.Pusher != "lin" {
		t.Errorf("push = %+v", p)
	}
	if p.Committer.Email != "noreply@github.com" {
		t.Errorf("committer = %+v, want the head commit's", p.Committer)
	}
	if len(p.Commits) != 2 || p.Commits[0].Added[0] != "balance.go" || p.Commits[1].Removed[0] != "docs/old.md" {
		t.Errorf("commits = %+v", p.Commits)
	}
	if files := strings.Join(p.Files(), ","); files != "balance.go,main.go,docs/api.md,docs/old.md" {
		t.Errorf("files = %s", files)
	}
}

func TestGitHubFormEncodedPayload(t *testing.T) {
	e := newEnv(t)
	body := []byte("payload=" + url.QueryEscape(string(fixture(t, "github-push.json"))))
	h := githubHeaders(body, "push", "d1")
	h["Content-Type"] = "application/x-www-form-urlencoded"
	if code, resp := e.post(t, "github", "account", body, h); code != http.StatusAccepted {
		t.Fatalf("got %d %+v", code, resp)
	}
	if got := e.rec.got(); len(got) != 1 || got[0].After != "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c" {
		t.Fatalf("pushes = %+v", got)
	}
}

func TestGitHubPingAnswersPong(t *testing.T) {
	e := newEnv(t)
	body := fixture(t, "github-ping.json")
	code, resp := e.post(t, "github", "account", body, githubHeaders(body, "ping", "p1"))
	if code != http.StatusOK || resp.Message != "pong" {
		t.Fatalf("got %d %+v", code, resp)
	}
	if n := len(e.rec.got()); n != 0 {
		t.Fatalf("a ping started %d runs", n)
	}
}

func TestForgedDeliveriesAreRefused(t *testing.T) {
	gh := fixture(t, "github-push.json")
	gitea := fixture(t, "gitea-push.json")
	gl := fixture(t, "gitlab-push.json")
	generic := []byte(`{"repoURL":"/srv/git/account.git","ref":"refs/heads/main","before":"a","after":"b"}`)
	tampered := bytes.Replace(gh, []byte("refs/heads/main"), []byte("refs/heads/evil"), 1)
	now := strconv.FormatInt(time.Now().Unix(), 10)
	old := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	cases := []struct {
		name, provider string
		body           []byte
		headers        map[string]string
	}{
		{"github no signature", "github", gh, map[string]string{"X-GitHub-Event": "push"}},
		{"github wrong secret", "github", gh, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + hexMAC("guess", gh)}},
		{"github body changed after signing", "github", tampered, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + hexMAC(secret, gh)}},
		{"github sha1 only", "github", gh, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=0123"}},
		{"github ping unsigned", "github", fixture(t, "github-ping.json"), map[string]string{"X-GitHub-Event": "ping"}},
		{"github signature not hex", "github", gh, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=zz"}},
		{"gitea no signature", "gitea", gitea, map[string]string{"X-Gitea-Event": "push"}},
		{"gitea wrong", "gitea", gitea, map[string]string{"X-Gitea-Event": "push", "X-Gitea-Signature": hexMAC("guess", gitea)}},
		{"forgejo wrong, gitea right: no fallback", "gitea", gitea, map[string]string{"X-Forgejo-Event": "push",
			"X-Forgejo-Signature": hexMAC("guess", gitea), "X-Gitea-Signature": hexMAC(secret, gitea)}},
		{"gitlab no token", "gitlab", gl, map[string]string{"X-Gitlab-Event": "Push Hook"}},
		{"gitlab wrong token", "gitlab", gl, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}},
		{"gitlab token prefix", "gitlab", gl, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret[:5]}},
		{"generic no token", "generic", generic, nil},
		{"generic wrong token", "generic", generic, map[string]string{"Authorization": "Bearer guess"}},
		{"generic wrong standard signature", "generic", generic, map[string]string{"webhook-id": "msg_1", "webhook-timestamp": now,
			"webhook-signature": webhook.SignStandard("guess", "msg_1", now, generic)}},
		{"generic stale standard timestamp", "generic", generic, map[string]string{"webhook-id": "msg_1", "webhook-timestamp": old,
			"webhook-signature": webhook.SignStandard(secret, "msg_1", old, generic)}},
	}
	e := newEnv(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, resp := e.post(t, c.provider, "account", c.body, c.headers)
			if code != http.StatusUnauthorized {
				t.Errorf("got %d %+v, want 401", code, resp)
			}
		})
	}
	if n := len(e.rec.got()); n != 0 {
		t.Fatalf("forged deliveries started %d runs", n)
	}
}

func TestRedeliveryAndReplayRunOnce(t *testing.T) {
	e := newEnv(t)
	body := fixture(t, "github-push.json")
	if code, _ := e.post(t, "github", "account", body, githubHeaders(body, "push", "d-1")); code != http.StatusAccepted {
		t.Fatalf("first delivery: %d", code)
	}
	// GitHub's "Redeliver" sends the same delivery id.
	code, resp := e.post(t, "github", "account", body, githubHeaders(body, "push", "d-1"))
	if code != http.StatusOK || resp.Message != "already processed" {
		t.Fatalf("redelivery: got %d %+v, want 200 already processed", code, resp)
	}
	// A captured delivery replayed under a fresh id: the revision was built.
	code, resp = e.post(t, "github", "account", body, githubHeaders(body, "push", "d-2"))
	if code != http.StatusOK || !strings.HasPrefix(resp.Message, "already processed") {
		t.Fatalf("replay: got %d %+v", code, resp)
	}
	if n := len(e.rec.got()); n != 1 {
		t.Fatalf("%d runs, want 1", n)
	}
}

func TestFailedTriggerCanBeRetried(t *testing.T) {
	e := newEnv(t)
	body := fixture(t, "github-push.json")
	e.rec.fail = errors.New("etcd is away")
	if code, _ := e.post(t, "github", "account", body, githubHeaders(body, "push", "d-1")); code != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503", code)
	}
	e.rec.fail = &webhook.LimitError{Msg: "too many runs queued"}
	if code, _ := e.post(t, "github", "account", body, githubHeaders(body, "push", "d-1")); code != http.StatusTooManyRequests {
		t.Fatalf("got %d, want 429", code)
	}
	e.rec.fail = nil
	if code, resp := e.post(t, "github", "account", body, githubHeaders(body, "push", "d-1")); code != http.StatusAccepted {
		t.Fatalf("retry: got %d %+v, want 202", code, resp)
	}
}

func TestOversizedBodyIs413(t *testing.T) {
	e := newEnv(t)
	body := bytes.Repeat([]byte(" "), 64<<10+1)
	code, _ := e.post(t, "github", "account", body, githubHeaders(body, "push", "big"))
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %d, want 413", code)
	}
}

func TestUnknownProjectAndProvider(t *testing.T) {
	e := newEnv(t)
	body := fixture(t, "github-push.json")
	if code, _ := e.post(t, "github", "nobody", body, githubHeaders(body, "push", "x")); code != http.StatusNotFound {
		t.Errorf("unknown project: %d, want 404", code)
	}
	if code, _ := e.post(t, "bitbucket", "account", body, nil); code != http.StatusNotFound {
		t.Errorf("unknown provider: %d, want 404", code)
	}
	if code, _ := e.post(t, "github", "", body, nil); code != http.StatusBadRequest {
		t.Errorf("no project: %d, want 400", code)
	}
}

func TestBranchDeleteAndFiltersStartNothing(t *testing.T) {
	e := newEnv(t,
		project.Project{Name: "account", Repo: "r", Secret: secret},
		project.Project{Name: "release-only", Repo: "r", Secret: secret, Filter: push.Filter{Branches: []string{"release/*"}}},
		project.Project{Name: "docs-ignored", Repo: "r", Secret: secret, Filter: push.Filter{Paths: []string{"**/*.go", "go.mod"}}},
		project.Project{Name: "docs-only", Repo: "r", Secret: secret, Filter: push.Filter{Paths: []string{"docs/**"}}},
	)
	del := fixture(t, "github-delete.json")
	if code, resp := e.post(t, "github", "account", del, githubHeaders(del, "push", "del")); code != http.StatusOK || !strings.Contains(resp.Message, "deleted") {
		t.Errorf("delete: %d %+v", code, resp)
	}
	body := fixture(t, "github-push.json")
	if code, resp := e.post(t, "github", "release-only", body, githubHeaders(body, "push", "b")); code != http.StatusOK || !strings.Contains(resp.Message, "branch main") {
		t.Errorf("branch filter: %d %+v", code, resp)
	}
	if n := len(e.rec.got()); n != 0 {
		t.Fatalf("%d runs started, want none", n)
	}
	// balance.go matches **/*.go (** matches no directory too).
	if code, resp := e.post(t, "github", "docs-ignored", body, githubHeaders(body, "push", "c")); code != http.StatusAccepted {
		t.Errorf("path filter match: %d %+v", code, resp)
	}
	gl := fixture(t, "gitlab-push.json")
	h := map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}
	if code, resp := e.post(t, "gitlab", "docs-only", gl, h); code != http.StatusOK || !strings.Contains(resp.Message, "path filter") {
		t.Errorf("path filter miss: %d %+v", code, resp)
	}
	if n := len(e.rec.got()); n != 1 {
		t.Fatalf("%d runs started, want 1", n)
	}
}

func TestGitLabPush(t *testing.T) {
	e := newEnv(t)
	body := fixture(t, "gitlab-push.json")
	code, resp := e.post(t, "gitlab", "account", body, map[string]string{
		"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret,
		"X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e", "Idempotency-Key": "f5e5f430-f57b-4e6e-9fac-d9128cd7232f",
	})
	if code != http.StatusAccepted {
		t.Fatalf("got %d %+v", code, resp)
	}
	p := e.rec.got()[0]
	if p.Provider != "gitlab" || p.Delivery != "f5e5f430-f57b-4e6e-9fac-d9128cd7232f" || p.RepoURL != "http://example.com/mike/diaspora.git" ||
		p.RepoName != "mike/diaspora" || p.After != "da1560886d4f094c3e6c9ef40349f7d38b5d27d7" || p.Pusher != "jsmith" ||
		p.Committer.Name != "GitLab dev user" || len(p.Commits) != 2 || p.Commits[0].Added[0] != "CHANGELOG" {
		t.Errorf("push = %+v", p)
	}
	// Other GitLab events are answered, not run.
	code, resp = e.post(t, "gitlab", "account", []byte(`{"object_kind":"issue"}`), map[string]string{"X-Gitlab-Event": "Issue Hook", "X-Gitlab-Token": secret})
	if code != http.StatusOK || !strings.HasPrefix(resp.Message, "ignored") {
		t.Errorf("issue hook: %d %+v", code, resp)
	}
}

func TestGiteaAndForgejoPush(t *testing.T) {
	e := newEnv(t)
	body := fixture(t, "gitea-push.json")
	code, resp := e.post(t, "gitea", "account", body, map[string]string{
		"X-Gitea-Event": "push", "X-Gitea-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473", "X-Gitea-Signature": hexMAC(secret, body),
		// Gitea sends GitHub's headers too; its own are read.
		"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + hexMAC(secret, body),
	})
	if code != http.StatusAccepted {
		t.Fatalf("gitea: got %d %+v", code, resp)
	}
	p := e.rec.got()[0]
	if p.Provider != "gitea" || p.Delivery != "f6266f16-1bf3-46a5-9ea4-602e06ead473" || p.Branch() != "develop" ||
		p.RepoURL != "http://localhost:3000/gitea/webhooks.git" || p.Pusher != "gitea" || p.Committer.Email != "someone@gitea.io" {
		t.Errorf("gitea push = %+v", p)
	}
	fj := bytes.Replace(body, []byte("bffeb74224043ba2feb48d137756c8a9331c449a"), []byte("c0ffee4224043ba2feb48d137756c8a9331c449a"), -1)
	code, resp = e.post(t, "gitea", "account", fj, map[string]string{
		"X-Forgejo-Event": "push", "X-Forgejo-Delivery": "fj-1", "X-Forgejo-Signature": hexMAC(secret, fj), "X-Gitea-Signature": hexMAC(secret, fj),
	})
	if code != http.StatusAccepted {
		t.Fatalf("forgejo: got %d %+v", code, resp)
	}
	if p := e.rec.got()[1]; p.Provider != "forgejo" || p.Delivery != "fj-1" {
		t.Errorf("forgejo push = %+v", p)
	}
}

func TestGenericHook(t *testing.T) {
	e := newEnv(t)
	body := []byte(`{"repoURL":"/srv/git/account.git","ref":"refs/heads/main","before":"` + push.ZeroSHA + `","after":"1111111111111111111111111111111111111111",
		"committer":{"name":"Mei","email":"mei@ktv.example"},"commits":[{"id":"1111111111111111111111111111111111111111","added":["a.go"]}]}`)
	code, resp := e.post(t, "generic", "account", body, map[string]string{"Authorization": "Bearer " + secret, "X-Garrison-Delivery": "g-1"})
	if code != http.StatusAccepted {
		t.Fatalf("token: got %d %+v", code, resp)
	}
	p := e.rec.got()[0]
	if p.Provider != "generic" || p.Delivery != "g-1" || p.RepoURL != "/srv/git/account.git" || p.Committer.Name != "Mei" || p.Files()[0] != "a.go" {
		t.Errorf("push = %+v", p)
	}
	// Standard Webhooks signature.
	body2 := bytes.Replace(body, []byte("1111"), []byte("2222"), -1)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	code, resp = e.post(t, "generic", "account", body2, map[string]string{"webhook-id": "msg_2", "webhook-timestamp": ts,
		"webhook-signature": "v1,bm9wZQ== " + webhook.SignStandard(secret, "msg_2", ts, body2)})
	if code != http.StatusAccepted {
		t.Fatalf("standard webhooks: got %d %+v", code, resp)
	}
	if p := e.rec.got()[1]; p.Delivery != "msg_2" {
		t.Errorf("delivery = %q, want msg_2", p.Delivery)
	}
	code, resp = e.post(t, "generic", "account", nil, map[string]string{"X-Garrison-Token": secret, "X-Garrison-Event": "ping"})
	if code != http.StatusOK || resp.Message != "pong" {
		t.Errorf("ping: %d %+v", code, resp)
	}
	code, _ = e.post(t, "generic", "account", []byte(`{"ref":`), map[string]string{"X-Garrison-Token": secret})
	if code != http.StatusBadRequest {
		t.Errorf("malformed body: %d, want 400", code)
	}
}

// TestClaimSurvivesARevokedLease: a claim made after its shared lease was
// revoked takes a new lease instead of failing every later delivery.
func TestClaimSurvivesARevokedLease(t *testing.T) {
	cli := etcdtest.New(t).Client(t)
	c := webhook.NewEtcdClaims(cli, time.Hour)
	ctx := context.Background()
	if ok, err := c.Claim(ctx, "a"); !ok || err != nil {
		t.Fatalf("claim a: %v %v", ok, err)
	}
	leases, err := cli.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases: %+v %v", leases, err)
	}
	if _, err := cli.Revoke(ctx, leases.Leases[0].ID); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Claim(ctx, "b"); !ok || err != nil {
		t.Fatalf("claim b after revoke: %v %v", ok, err)
	}
	if ok, err := c.Claim(ctx, "b"); ok || err != nil {
		t.Fatalf("second claim of b: %v %v, want false", ok, err)
	}
}
