package ui_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/gittest"
	"github.com/garrisonhq/garrison/internal/poll"
)

// A push starts a pipeline run (its step runs busybox in Docker): the runs
// page lists it, its page streams the log live while it runs, and Cancel
// ends it. Releases recorded for an app are shown with their tests and
// environments; Promote and Roll back are offered only where the API
// would accept them, and clicking them deploys.
func TestConsoleRunsAndReleases(t *testing.T) {
	ctx := browser(t)
	docker := dockertest.Client(t)
	stepImage := dockertest.Busybox(t, docker)
	repo := gittest.New(t)
	projects := filepath.Join(t.TempDir(), "projects.yaml")
	os.WriteFile(projects, []byte("projects:\n  - name: shop\n    repo: "+repo.Bare+"\n    secret: hook-secret\n"), 0o600)
	etcd := etcdtest.New(t)
	base := startGarrisonOn(t, etcd.Endpoints, "--ci-projects", projects)
	const app = "/ui/shop"
	// Registered after garrison started, so it runs before garrison stops:
	// Docker tasks outlive garrison by design.
	t.Cleanup(func() {
		for _, id := range []string{"/qa" + app, app} {
			req, _ := http.NewRequest("DELETE", base+"/v2/apps"+id+"?force=true", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		poll.Until(t, 2*time.Minute, "the release apps removed", func() (bool, string) {
			resp, err := http.Get(base + "/v2/tasks")
			if err != nil {
				return false, err.Error()
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return !strings.Contains(string(body), app), string(body)
		})
	})

	repo.HookGarrison("../../ci/hooks/post-receive", base, "shop", "hook-secret")
	repo.Commit("a slow build", map[string]string{".garrison.yml": "app: " + app + "\nbuild:\n  image: " + stepImage +
		"\n  commands: [\"echo first-line\", \"sleep 4\", \"echo second-line\", \"sleep 600\"]\nimage:\n  files: [{from: x, to: /x}]\n"})
	if out := repo.Push(); !strings.Contains(out, `"run":"shop.1"`) {
		t.Fatalf("push output:\n%s", out)
	}

	step(t, ctx, "runs page", chromedp.Navigate(base+"/ui/#/runs"), chromedp.WaitVisible(chromedp.CSS(`tr[data-run="shop.1"]`)))
	waitJS(t, ctx, "the run running", `document.querySelector('tr[data-run="shop.1"]').textContent.includes('running')`)
	shot(t, ctx, "runs")
	step(t, ctx, "the run's page", chromedp.Click(chromedp.CSS(`tr[data-run="shop.1"] a`)), chromedp.WaitVisible(chromedp.CSS("#run-log")))
	waitJS(t, ctx, "marker set", `(window.__noReload = true)`)
	waitJS(t, ctx, "the first line in the log", `document.querySelector('#run-log').textContent.includes('first-line')`)
	waitJS(t, ctx, "the second line, streamed live", `document.querySelector('#run-log').textContent.includes('second-line')`)
	if got := text(t, ctx, "#run-log"); strings.Index(got, "first-line") > strings.Index(got, "second-line") {
		t.Errorf("log out of order:\n%s", got)
	}
	waitJS(t, ctx, "said to follow live", `document.querySelector('#run-log-state').textContent.includes('live')`)
	shot(t, ctx, "run-log")

	// Cancel, confirming the question: the run ends, the button goes.
	waitJS(t, ctx, "confirm answered yes", `(window.confirm = () => true, true)`)
	step(t, ctx, "cancel", chromedp.Click(chromedp.CSS(`button[data-cancel="shop.1"]`)))
	waitJS(t, ctx, "the run cancelled", `document.querySelector('#run-state').textContent === 'cancelled'`)
	waitJS(t, ctx, "no Cancel offered", `!document.querySelector('button[data-cancel]')`)
	waitJS(t, ctx, "the log ended", `document.querySelector('#run-log-state').textContent.includes('cancelled')`)
	waitJS(t, ctx, "no reload happened", `window.__noReload === true`)

	// Releases: recorded as a pipeline would, in the registry's etcd.
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	store := deploy.NewStore(cli)
	def := map[string]any{"cmd": "sleep 600", "instances": 1, "cpus": 0.01, "mem": 16}
	for i, r := range []deploy.Release{
		{Version: "v1", Revision: "1111111111111111", Committer: "Ann", Passed: true, Tests: []deploy.TestResult{{Name: "smoke", Passed: true}}},
		{Version: "v2", Revision: "2222222222222222", Committer: "Bob", Passed: true, Tests: []deploy.TestResult{{Name: "smoke", Passed: true}}},
		{Version: "v3", Revision: "3333333333333333", Committer: "Cy", Tests: []deploy.TestResult{{Name: "smoke", ExitCode: 1}}},
	} {
		r.App, r.Image, r.Project, r.RunID = app, stepImage, "shop", "shop.1"
		r.Created, r.Environments, r.Definition = time.Now().Add(time.Duration(i-10)*time.Minute).UTC(), []string{"alpha", "qa", "production"}, def
		if err := store.Put(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	promote := func(version, env string) string {
		return fmt.Sprintf(`tr[data-release="%s"] button[data-release-action="promote"][data-environment="%s"]`, version, env)
	}
	offered := func(version string) string {
		return fmt.Sprintf(`[...document.querySelectorAll('tr[data-release="%s"] button[data-release-action]')].map(b => b.dataset.environment).join(',')`, version)
	}
	step(t, ctx, "releases page", chromedp.Navigate(base+"/ui/#/releases"+app), chromedp.WaitVisible(chromedp.CSS(`tr[data-release="v3"]`)))
	// Only qa at first (production takes what qa ran), never the failed v3.
	waitJS(t, ctx, "promote to qa offered for v1 and v2 only", offered("v1")+` === 'qa' && `+offered("v2")+` === 'qa' && `+offered("v3")+` === ''`)
	if got := text(t, ctx, `tr[data-release="v3"]`); !strings.Contains(got, "smoke failed") || !strings.Contains(got, "Cy") {
		t.Errorf("v3 row %q", got)
	}
	step(t, ctx, "promote v1 to qa", chromedp.Click(chromedp.CSS(promote("v1", "qa"))))
	waitJS(t, ctx, "qa runs v1", `(document.querySelector('tr[data-environment="qa"]') || {textContent: ''}).textContent.includes('v1')`)
	waitJS(t, ctx, "v1 now offered to production only", offered("v1")+` === 'production'`)
	step(t, ctx, "promote v2 to qa", chromedp.Click(chromedp.CSS(promote("v2", "qa"))))
	waitJS(t, ctx, "a rollback to v1 offered on qa", `!!document.querySelector('tr[data-environment="qa"] button[data-release-action="rollback"]') && document.querySelector('tr[data-environment="qa"] button').textContent === 'Roll back to v1'`)
	shot(t, ctx, "releases")
	step(t, ctx, "roll qa back", chromedp.Click(chromedp.CSS(`tr[data-environment="qa"] button[data-release-action="rollback"]`)))
	waitJS(t, ctx, "qa runs v1 again and offers v2 back", `document.querySelector('tr[data-environment="qa"]').textContent.includes('(rollback)') && document.querySelector('tr[data-environment="qa"] button').textContent === 'Roll back to v2'`)

	// The API agrees: qa runs v1, from the release's image.
	resp, err := http.Get(base + "/api/v1/releases?app=" + app)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"name":"qa","app":"/ui/shop","current":"v1"`) {
		t.Errorf("GET /api/v1/releases after the rollback: %s", body)
	}
}
