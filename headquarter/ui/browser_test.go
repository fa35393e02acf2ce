package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/garrisontest"
	"github.com/garrisonhq/garrison/internal/loadgen"
	"github.com/garrisonhq/garrison/internal/testbin"
	"github.com/garrisonhq/garrison/internal/testport"
)

// The console is tested in Debian's chromium, headless, against a real
// `garrison up` running real processes: what a person sees, clicked as a
// person would.

var garrisonBin, echoBin string

func TestMain(m *testing.M) {
	echo, cleanup, err := testbin.Build("github.com/garrisonhq/garrison/examples/echo", false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	echoBin = echo
	defer cleanup()
	testbin.Main(m, "github.com/garrisonhq/garrison/cmd/garrison", false, &garrisonBin)
}

// chromium finds Debian's browser; the test set-up installs it, so only a
// developer's machine without it may skip, never CI.
func chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: scripts/test-deps.sh installs it")
	}
	t.Skip("chromium is not installed (make test installs it)")
	return ""
}

// startGarrison runs `garrison up` against a test etcd on a port the kernel
// picks, and returns its base URL.
func startGarrison(t testing.TB, extra ...string) string {
	t.Helper()
	return startGarrisonOn(t, etcdtest.New(t).Endpoints, extra...)
}

// startGarrisonOn runs `garrison up` against the etcd at endpoints.
func startGarrisonOn(t testing.TB, endpoints []string, extra ...string) string {
	t.Helper()
	base, _ := runGarrison(t, endpoints, extra...)
	return base
}

// runGarrison is startGarrisonOn that also returns a stop, which sends
// SIGTERM and waits for garrison to exit (the test's cleanup kills it
// otherwise). Later flags in extra override the defaults (--addr, --data-dir).
func runGarrison(t testing.TB, endpoints []string, extra ...string) (string, func()) {
	t.Helper()
	// Task ports of its own: other packages' garrisons run beside this one
	// and hand out the default range too.
	low := testport.Consecutive(t, 64)
	args := append([]string{"up", "--addr", "127.0.0.1:0", "--etcd", strings.Join(endpoints, ","),
		"--data-dir", t.TempDir(), "--drain-delay", "0s", "--task-ports", fmt.Sprintf("%d-%d", low, low+63)}, extra...)
	p := garrisontest.Start(t, garrisonBin, args...)
	return "http://" + p.Addr(t, 2*time.Minute), func() { p.Stop(30 * time.Second) }
}

// browser starts headless chromium and returns a context for its one tab.
func browser(t testing.TB) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first call starts the browser; no timeout on it, which would kill it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// step runs actions with a deadline generous enough for a loaded machine.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		shot(t, ctx, "failed-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS polls a JavaScript condition in the page until it is true.
func waitJS(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok, err := chromedp.Run(sctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			shot(t, ctx, "failed-"+strings.ReplaceAll(what, " ", "-"))
			t.Fatalf("waiting for %s: %s stayed false (last error %v)", what, expr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// shot keeps a screenshot as a test artifact: under $GARRISON_ARTIFACTS
// when set (CI keeps that folder), else in the test's temporary folder.
func shot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("GARRISON_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot: %s", path)
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

func TestConsoleDeployScaleAndFieldErrors(t *testing.T) {
	ctx := browser(t)
	base := startGarrison(t)

	step(t, ctx, "open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#app-create")))
	waitJS(t, ctx, "an empty apps table", `document.querySelector('caption') && document.querySelector('caption').textContent === '0 of 0 apps'`)

	// A definition the API refuses: the 422 shows next to the field it names.
	step(t, ctx, "open the editor", chromedp.Click(chromedp.CSS("#app-create")), chromedp.WaitVisible(chromedp.CSS("#app-editor")))
	bad := `{"id": "/ui/echo", "cmd": "sleep 60", "instances": -1, "cpus": 0.1, "mem": 32}`
	step(t, ctx, "submit a bad app", chromedp.SetValue(chromedp.CSS("#app-editor"), bad), chromedp.Click(chromedp.CSS("#app-editor-save")),
		chromedp.WaitVisible(chromedp.CSS(`#app-editor-errors li[data-path="/instances"]`)))
	if got := text(t, ctx, `#app-editor-errors li[data-path="/instances"]`); !strings.Contains(got, "/instances") {
		t.Errorf("field error = %q, want it to name /instances", got)
	}
	waitJS(t, ctx, "the editor marked invalid", `document.querySelector('#app-editor').getAttribute('aria-invalid') === 'true'`)
	shot(t, ctx, "editor-422")

	// A good one: the page moves to the app, whose tasks turn healthy with
	// no reload (the console follows /v2/events).
	good := fmt.Sprintf(`{"id": "/ui/echo", "cmd": %q, "instances": 2, "cpus": 0.1, "mem": 32,
	  "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 2, "timeoutSeconds": 1}]}`, echoBin+" -register=false")
	step(t, ctx, "create the app", chromedp.SetValue(chromedp.CSS("#app-editor"), good), chromedp.Click(chromedp.CSS("#app-editor-save")),
		chromedp.WaitVisible(chromedp.CSS("#scale-apply")))
	waitJS(t, ctx, "marker set", `(window.__noReload = true)`)
	waitJS(t, ctx, "two healthy tasks", `document.querySelectorAll('tr[data-task] .badge.ok').length === 2`)
	shot(t, ctx, "app")

	// Scale from the page. The page re-renders on every event of the app:
	// a number typed and not yet applied survives that (a CI run lost it
	// to a health event and scaled to 2). A task killed behind the page's
	// back (garrison replaces it; no deployment) forces one here.
	step(t, ctx, "type 3", chromedp.SetValue(chromedp.CSS("#scale-n"), "3"))
	waitJS(t, ctx, "the page's scale button marked", `(window.__applyBefore = document.querySelector('#scale-apply'), true)`)
	task, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('tr[data-task]').getAttribute('data-task')`))
	if err != nil || task == "" {
		t.Fatalf("a task id from the page: %q %v", task, err)
	}
	req, err := http.NewRequest(http.MethodDelete, base+"/v2/apps/ui/echo/tasks/"+task, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("kill %s: %s", task, resp.Status)
	}
	waitJS(t, ctx, "the page re-rendered", `document.querySelector('#scale-apply') !== window.__applyBefore`)
	step(t, ctx, "scale to 3", chromedp.Click(chromedp.CSS("#scale-apply")))
	waitJS(t, ctx, "three healthy tasks", `document.querySelectorAll('tr[data-task] .badge.ok').length === 3`)
	waitJS(t, ctx, "no reload happened", `window.__noReload === true`)

	// The API agrees with the page.
	resp, err = http.Get(base + "/v2/apps/ui/echo")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"instances":3`) {
		t.Errorf("GET /v2/apps/ui/echo after scaling from the console: %s", body)
	}

	// The other pages render what the API holds.
	step(t, ctx, "apps page", chromedp.Navigate(base+"/ui/#/apps"), chromedp.WaitVisible(chromedp.CSS(`tr[data-app="/ui/echo"]`)))
	shot(t, ctx, "apps")
	step(t, ctx, "registry page", chromedp.Navigate(base+"/ui/#/services"), chromedp.WaitVisible(chromedp.CSS("table")))
	waitJS(t, ctx, "three registered instances", `[...document.querySelectorAll('td')].filter(td => td.textContent === 'ui_echo').length === 3`)
	shot(t, ctx, "registry")
	step(t, ctx, "events page", chromedp.Navigate(base+"/ui/#/events"), chromedp.WaitVisible(chromedp.CSS("#event-list")))
	step(t, ctx, "autoscaler page", chromedp.Navigate(base+"/ui/#/autoscaler"), chromedp.WaitVisible(chromedp.CSS("#rules-editor")))
	shot(t, ctx, "autoscaler")
}

func TestConsoleLogin(t *testing.T) {
	ctx := browser(t)
	base := startGarrison(t, "--auth-user", "ops", "--auth-password", "s3cret")

	step(t, ctx, "open the console", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#login-user")))
	step(t, ctx, "wrong password",
		chromedp.SendKeys(chromedp.CSS("#login-user"), "ops"),
		chromedp.SendKeys(chromedp.CSS("#login-password"), "nope"),
		chromedp.Click(chromedp.CSS("#login-submit")))
	waitJS(t, ctx, "refusal shown", `document.querySelector('#login-error').textContent.includes('refused')`)
	shot(t, ctx, "login-refused")
	step(t, ctx, "right password",
		chromedp.SetValue(chromedp.CSS("#login-password"), "s3cret"),
		chromedp.Click(chromedp.CSS("#login-submit")))
	waitJS(t, ctx, "the dialog closed and the apps listed", `!document.querySelector('#login').open && document.querySelector('caption') && document.querySelector('caption').textContent === '0 of 0 apps'`)
	waitJS(t, ctx, "the live stream connected with the credentials", `document.querySelector('#live').textContent === 'live'`)
}

// A bounded load on an app with a rule: the decision appears on the
// autoscaler page's chart and in its table, with no reload.
func TestConsoleShowsAutoscaleDecision(t *testing.T) {
	ctx := browser(t)
	base := startGarrison(t)

	app := fmt.Sprintf(`{"id": "/ui/scaled", "cmd": %q, "instances": 1, "cpus": 0.1, "mem": 32,
	  "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 2, "timeoutSeconds": 1}]}`, echoBin+" -register=false")
	send(t, "POST", base+"/v2/apps", "application/json", app, http.StatusCreated)
	rules := "rules:\n  - app: /ui/scaled\n    min: 1\n    max: 3\n    quorum: 1\n    up: { qps: 5 }\n    down: { qps: 1 }\n" +
		"    schedules:\n      - cron: \"0 3 * * *\"\n        for: 1h\n        min: 2\n"
	send(t, "PUT", base+"/api/v1/rules", "application/yaml", rules, http.StatusOK)
	addr := taskAddr(t, base, "/ui/scaled")

	step(t, ctx, "autoscaler page", chromedp.Navigate(base+"/ui/#/autoscaler"), chromedp.WaitVisible(chromedp.CSS("#rules-editor")))
	waitJS(t, ctx, "the rule's first evaluation listed", `!!document.querySelector('tr[data-evaluation="/ui/scaled"]')`)
	// The nightly floor is shown ahead (a daily window always falls in the
	// next 48 hours).
	waitJS(t, ctx, "the cron floor ahead", `[...document.querySelectorAll('tr[data-floor="/ui/scaled"]')].some(tr => tr.textContent.includes('0 3 * * *'))`)

	// 30 req/s against up.qps 5: a scale-up. Bounded in time and count, and
	// stopped as soon as the page shows the decision.
	loadCtx, stopLoad := context.WithCancel(t.Context())
	loadDone := make(chan loadgen.Result, 1)
	go func() {
		loadDone <- loadgen.Run(loadCtx, loadgen.Config{Target: func() (string, error) { return "http://" + addr + "/", nil },
			Rate: 30, Duration: 90 * time.Second, MaxRequests: 2700})
	}()
	waitJS(t, ctx, "an up decision dot on the app's chart", `!!document.querySelector('figure[data-chart="/ui/scaled"] circle[data-decision]')`)
	waitJS(t, ctx, "the decision in the table", `[...document.querySelectorAll('tr[data-decision]')].some(tr => tr.textContent.includes('/ui/scaled') && tr.textContent.includes('up'))`)
	shot(t, ctx, "autoscaler-decision")
	stopLoad()
	if res := <-loadDone; res.Sent == 0 {
		t.Fatalf("the load sent nothing: %+v", res)
	}

	// The rules editor checks as you type: a bad edit shows its line.
	step(t, ctx, "a bad rule", chromedp.SetValue(chromedp.CSS("#rules-editor"), "rules:\n  - app: /ui/scaled\n    min: 5\n    max: 2\n"))
	waitJS(t, ctx, "the check's error", `document.querySelector('#rules-editor').dispatchEvent(new Event('input')) || document.querySelector('#rules-errors li') !== null`)
	waitJS(t, ctx, "the error names its line", `[...document.querySelectorAll('#rules-errors li')].some(li => li.textContent.includes('line'))`)
}

func send(t *testing.T, method, url, contentType, body string, want int) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d %s, want %d", method, url, resp.StatusCode, b, want)
	}
}

// taskAddr waits for the app's first task to run and returns host:port.
func taskAddr(t *testing.T, base, id string) string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/v2/apps" + id + "/tasks")
		if err == nil {
			var out struct {
				Tasks []struct {
					Host               string
					Ports              []int
					State              string
					HealthCheckResults []struct{ Alive bool }
				}
			}
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			for _, task := range out.Tasks {
				if len(task.Ports) > 0 && len(task.HealthCheckResults) > 0 && task.HealthCheckResults[0].Alive {
					return fmt.Sprintf("%s:%d", task.Host, task.Ports[0])
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s has no healthy task", id)
	return ""
}
