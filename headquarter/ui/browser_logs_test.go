package ui_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// A task row's Log button shows the end of the task's output below the
// table; Refresh reads it again.
func TestConsoleShowsTaskLog(t *testing.T) {
	ctx := browser(t)
	base := startGarrison(t)
	// The task prints known lines, then waits (bounded, should the delete
	// below not reach it: process tasks outlive garrison by design).
	send(t, http.MethodPost, base+"/v2/apps", "application/json",
		`{"id": "/ui/logs", "cmd": "echo console-log-line-1; echo console-log-line-2 >&2; exec sleep 300", "instances": 1, "cpus": 0.01, "mem": 16}`,
		http.StatusCreated)
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, base+"/v2/apps/ui/logs?force=true", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})

	step(t, ctx, "open the app", chromedp.Navigate(base+"/ui/#/apps/ui/logs"), chromedp.WaitVisible(chromedp.CSS("#scale-apply")))
	waitJS(t, ctx, "a running task", `[...document.querySelectorAll('tr[data-task] td')].some(td => td.textContent === 'TASK_RUNNING')`)
	step(t, ctx, "click Log", chromedp.Click(chromedp.CSS(`tr[data-task] button[aria-label^="Show the log"]`)))
	waitJS(t, ctx, "the log below the table", `document.querySelector('#task-log pre') !== null`)
	// The task may not have written yet when the first tail was read:
	// Refresh reads it again, as a person would.
	waitJS(t, ctx, "the task's lines", `document.querySelector('#task-log pre').textContent.includes('console-log-line-2') ||
		(document.querySelector('#log-refresh').click(), false)`)
	got := text(t, ctx, "#task-log pre")
	if !strings.Contains(got, "console-log-line-1\n") || !strings.Contains(got, "console-log-line-2") {
		t.Errorf("log shown = %q, want both known lines", got)
	}
	shot(t, ctx, "task-log")
	// Close takes the log away.
	step(t, ctx, "close the log", chromedp.Click(chromedp.CSS("#log-close")))
	waitJS(t, ctx, "the log closed", `document.querySelector('#task-log pre') === null`)
}
