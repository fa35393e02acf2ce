package ui_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testport"
)

// An app's page left open across a garrison restart (SIGTERM, then the
// same address, etcd and data folder): the live marker says the stream is
// down, turns back to live once garrison is back, and the page shows what
// changed meanwhile, all with no reload.
func TestConsoleAppPageSurvivesRestart(t *testing.T) {
	ctx := browser(t)
	etcd := etcdtest.New(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testport.Take(t, 1)[0])
	flags := []string{"--addr", addr, "--data-dir", t.TempDir()}
	base, stop := runGarrison(t, etcd.Endpoints, flags...)

	app := fmt.Sprintf(`{"id": "/ui/restarted", "cmd": %q, "instances": 1, "cpus": 0.1, "mem": 32,
	  "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 2, "timeoutSeconds": 1}]}`, echoBin+" -register=false")
	send(t, "POST", base+"/v2/apps", "application/json", app, http.StatusCreated)
	step(t, ctx, "the app's page", chromedp.Navigate(base+"/ui/#/apps/ui/restarted"), chromedp.WaitVisible(chromedp.CSS("#scale-apply")))
	waitJS(t, ctx, "marker set", `(window.__noReload = true)`)
	waitJS(t, ctx, "one healthy task", `document.querySelectorAll('tr[data-task] .badge.ok').length === 1`)
	waitJS(t, ctx, "the stream live", `document.querySelector('#live').textContent === 'live'`)
	// The create's deployment ends once the task is also registered: stopped
	// before, the app stays locked by it for the next garrison.
	poll.Until(t, time.Minute, "the create's deployment done", func() (bool, string) {
		resp, err := http.Get(base + "/v2/deployments")
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.TrimSpace(string(b)) == "[]", string(b)
	})

	stop()
	waitJS(t, ctx, "the stream said down", `document.querySelector('#live').textContent !== 'live'`)
	shot(t, ctx, "restart-down")

	// Scaled while the page's garrison is down, through a second one on the
	// same etcd (stopped before the first comes back, which then leads
	// again): no event of it reaches the page, which must fetch the app
	// again once its stream is back.
	other, stopOther := runGarrison(t, etcd.Endpoints)
	send(t, "PUT", other+"/v2/apps/ui/restarted", "application/json", `{"instances": 3}`, http.StatusOK)
	stopOther()

	again, _ := runGarrison(t, etcd.Endpoints, flags...)
	if again != base {
		t.Fatalf("garrison came back on %s, not %s", again, base)
	}
	waitJS(t, ctx, "the stream live again", `document.querySelector('#live').textContent === 'live'`)
	waitJS(t, ctx, "three instances shown", `[...document.querySelectorAll('.card')].some(c => c.textContent === 'Instances3')`)
	waitJS(t, ctx, "three healthy tasks", `document.querySelectorAll('tr[data-task] .badge.ok').length === 3`)
	waitJS(t, ctx, "no reload happened", `window.__noReload === true`)
	shot(t, ctx, "restart-back")
}
