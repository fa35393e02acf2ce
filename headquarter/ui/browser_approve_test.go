package ui_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/garrisonhq/garrison/deploy"
	"github.com/garrisonhq/garrison/internal/etcdtest"
)

// Releases that need an approval for production: the page shows who
// approved what, offers Approve only where the API would take it, shows
// the API's 403 (the signed-in user committed it) and 409 (approved
// meanwhile) on the page, and offers Promote once a release is approved.
func TestConsoleApprovesReleases(t *testing.T) {
	ctx := browser(t)
	etcd := etcdtest.New(t)
	base := startGarrisonOn(t, etcd.Endpoints, "--auth-user", "ops", "--auth-password", "s3cret")
	const app = "/ui/gated"

	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	store := deploy.NewStore(cli)
	for i, r := range []deploy.Release{
		{Version: "v1", Committer: "ops", Passed: true}, // the signed-in user's own
		{Version: "v2", Committer: "Bob", Passed: true},
		{Version: "v3", Committer: "Cy", Passed: true},
		{Version: "v4", Committer: "Di"}, // failed its tests
	} {
		r.App, r.Image, r.Project, r.Revision = app, "garrison-test/none:1", "shop", strings.Repeat(fmt.Sprint(i+1), 16)
		r.Created, r.Environments, r.NeedsApproval = time.Now().Add(time.Duration(i-10)*time.Minute).UTC(), []string{"alpha", "production"}, []string{"production"}
		r.Definition = map[string]any{"cmd": "sleep 600", "instances": 1, "cpus": 0.01, "mem": 16}
		if err := store.Put(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}

	step(t, ctx, "releases page", chromedp.Navigate(base+"/ui/#/releases"+app), chromedp.WaitVisible(chromedp.CSS("#login-user")))
	step(t, ctx, "sign in", chromedp.SendKeys(chromedp.CSS("#login-user"), "ops"), chromedp.SendKeys(chromedp.CSS("#login-password"), "s3cret"),
		chromedp.Click(chromedp.CSS("#login-submit")), chromedp.WaitVisible(chromedp.CSS(`tr[data-release="v4"]`)))
	offered := func(version string) string {
		return fmt.Sprintf(`[...document.querySelectorAll('tr[data-release="%s"] button[data-release-action]')].map(b => b.dataset.releaseAction + ':' + b.dataset.environment).join(',')`, version)
	}
	approval := func(version string) string {
		return fmt.Sprintf(`document.querySelector('tr[data-release="%s"] [data-approval="production"]').textContent`, version)
	}
	approve := func(version string) chromedp.Action[chromedp.Void] {
		return chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-release="%s"] button[data-release-action="approve"][data-environment="production"]`, version)))
	}
	// Approve, never Promote, before an approval; nothing for the failed v4.
	waitJS(t, ctx, "approve offered, promote not", offered("v1")+` === 'approve:production' && `+offered("v2")+` === 'approve:production' && `+offered("v4")+` === ''`)
	waitJS(t, ctx, "approvals shown as needed", approval("v2")+` === 'production: needs approval'`)
	waitJS(t, ctx, "confirm answered yes", `(window.confirm = () => true, true)`)

	// ops committed v1: the API's 403 stays on the page.
	step(t, ctx, "approve own release", approve("v1"))
	waitJS(t, ctx, "the 403 shown", `document.querySelector('#release-refusal').textContent.includes('(403)') && document.querySelector('#release-refusal').textContent.includes('cannot approve')`)
	shot(t, ctx, "approve-403")

	// Bob's v2: recorded, and Promote takes Approve's place.
	step(t, ctx, "approve v2", approve("v2"))
	waitJS(t, ctx, "v2 approved by ops", approval("v2")+` === 'production: approved by ops'`)
	waitJS(t, ctx, "promote offered for v2", offered("v2")+` === 'promote:production'`)
	waitJS(t, ctx, "the refusal cleared", `document.querySelector('#release-refusal').textContent === ''`)
	shot(t, ctx, "approved")

	// v3 approved behind the page's back: its stale button gets the 409.
	if code, body := asOps(t, "POST", base+"/api/v1/releases/approve", `{"app":"`+app+`","version":"v3","environment":"production"}`); code != http.StatusOK {
		t.Fatalf("approve v3 through the API = %d %s", code, body)
	}
	step(t, ctx, "approve v3 again", approve("v3"))
	waitJS(t, ctx, "the 409 shown", `document.querySelector('#release-refusal').textContent.includes('(409)') && document.querySelector('#release-refusal').textContent.includes('already approved')`)
	waitJS(t, ctx, "v3 shown approved after all", approval("v3")+` === 'production: approved by ops' && `+offered("v3")+` === 'promote:production'`)

	// The API holds the page's approval.
	if _, body := asOps(t, "GET", base+"/api/v1/releases?app="+app, ""); !strings.Contains(body, `"approvals":[{"environment":"production","by":"ops"`) {
		t.Errorf("GET /api/v1/releases after approving in the console: %s", body)
	}
}

// asOps calls the API as the basic-auth user ops.
func asOps(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("ops", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}
